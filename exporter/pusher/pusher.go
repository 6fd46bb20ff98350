// Package pusher pushes a prometheus.Gatherer to an opview relay (or any Pushgateway) at an
// interval. It is the one push loop of the repository: operators use it in process, and
// `opview-relay forward` runs it with a Gatherer that scrapes the operator's endpoint (package
// forward). A Pusher's Start(ctx) error method makes it a controller-runtime manager.Runnable
// without this package importing controller-runtime:
//
//	p, err := pusher.New(pusher.Config{
//		URL: "http://relay.example:9091", Job: "memcached-operator",
//		Gatherer: metrics.Registry, // sigs.k8s.io/controller-runtime/pkg/metrics
//	})
//	if err != nil { ... }
//	if err := mgr.Add(p); err != nil { ... }
//
// It pushes at once, then every Interval, and deletes its group when ctx is cancelled (the
// manager stopping), so that the operator's series go stale at once instead of after the relay's
// TTL. While the relay is unreachable it retries with exponential backoff. Each failure is
// logged once, saying which side failed, and so is each recovery.
package pusher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"

	"github.com/opview/opview/exporter/scrape"
	dto "github.com/prometheus/client_model/go"
)

// Defaults of the Config fields left zero.
const (
	DefaultInterval   = 15 * time.Second
	DefaultMinBackoff = time.Second
	DefaultMaxBackoff = 30 * time.Second
	// DefaultTimeout bounds one push or delete when Config.Client is nil or has no timeout.
	DefaultTimeout = 10 * time.Second
	// deleteTimeout bounds the delete Start makes when its context ends.
	deleteTimeout = 5 * time.Second
)

// Config configures a Pusher.
type Config struct {
	// URL is the relay's base URL, e.g. http://relay.example:9091, without a path: the pusher
	// adds /metrics/job/<Job>/instance/<Instance>.
	URL string
	// Job and Instance label the group; Instance defaults to the host name.
	Job, Instance string
	// Gatherer is what to push, e.g. controller-runtime's metrics.Registry. A Gatherer that also
	// implements ContextGatherer is called with the push's context.
	Gatherer prometheus.Gatherer
	// Interval between pushes; 0 means DefaultInterval.
	Interval time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries while the relay is unreachable or
	// failing (5xx); 0 means DefaultMinBackoff and DefaultMaxBackoff. Other failures are retried at
	// the Interval.
	MinBackoff, MaxBackoff time.Duration
	// Token is the relay's write token (sent as "Authorization: Bearer <token>"), if it needs one.
	// TokenFile holds it instead and is read at every push and delete, so a rotated token is
	// picked up. Give one or neither.
	Token     string
	TokenFile string
	// Client sends the pushes; nil means a client with a DefaultTimeout timeout. A client without
	// a timeout gets DefaultTimeout per request.
	Client *http.Client
	// Logger gets failures and recoveries (one line per change, not per push); nil discards.
	Logger *slog.Logger
}

// ContextGatherer is a Gatherer that can be cancelled, e.g. one that scrapes an endpoint.
// PushOnce calls GatherContext with its context instead of Gather.
type ContextGatherer interface {
	GatherContext(ctx context.Context) ([]*dto.MetricFamily, error)
}

// ConfigError is a Config field that New refused. Field is the field's name (URL, Job, Instance,
// Gatherer, Token, TokenFile) so that a command can name its own flag instead.
type ConfigError struct {
	Field string
	Err   error
}

func (e *ConfigError) Error() string { return "pusher: " + e.Field + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Side says which end of a failed push or delete was at fault.
type Side string

// The sides of a failure.
const (
	SideOperator Side = "operator" // reading the operator's metrics failed, or they can't be pushed
	SideRelay    Side = "relay"    // the relay could not be reached or failed (5xx)
	SideRejected Side = "rejected" // the relay answered and refused the request (4xx)
	SideConfig   Side = "config"   // the pusher's own configuration, e.g. an unreadable token file
)

// Op is the step that failed.
type Op string

// The steps of a push.
const (
	OpGather Op = "gather" // calling the Gatherer
	OpScrape Op = "scrape" // a Gatherer that scrapes an endpoint (opview-relay forward's) failed
	OpPush   Op = "push"   // the PUT of the group
	OpDelete Op = "delete" // the DELETE of the group
)

// Error is a failed push or delete: which step, which side and why. For SideRejected and a
// failing relay, Code and Reason are the relay's status code and answer (at most 4 KiB).
type Error struct {
	Op     Op
	Side   Side
	Code   int
	Reason string
	Err    error
}

func (e *Error) Error() string {
	switch e.Side {
	case SideOperator:
		switch e.Op {
		case OpScrape:
			return "scraping the operator failed: " + e.Err.Error()
		case OpGather:
			return "gathering the operator's metrics failed: " + e.Err.Error()
		}
		return "the operator's metrics can't be pushed: " + e.Err.Error()
	case SideRejected:
		return fmt.Sprintf("the relay refused the %s (HTTP %d): %s", e.Op, e.Code, e.Reason)
	case SideConfig:
		return fmt.Sprintf("cannot %s: %v", e.Op, e.Err)
	}
	if e.Code != 0 {
		return fmt.Sprintf("the relay failed the %s (HTTP %d): %s", e.Op, e.Code, e.Reason)
	}
	return "the relay is unreachable: " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Status is what a Pusher has done so far.
type Status struct {
	Pushes   int   // successful pushes
	Failures int   // failed pushes
	LastErr  error // the last push's error, nil after a success; an *Error
}

// Pusher pushes a Gatherer at an interval. Create it with New.
type Pusher struct {
	cfg     Config
	timeout time.Duration // of one request, enforced through its context

	mu     sync.Mutex
	status Status
}

// New checks cfg and returns a Pusher. Its errors are *ConfigError.
func New(cfg Config) (*Pusher, error) {
	base, err := CheckURL(cfg.URL)
	if err != nil {
		return nil, &ConfigError{"URL", err}
	}
	cfg.URL = base
	if cfg.Job == "" {
		return nil, &ConfigError{"Job", errors.New("required")}
	}
	if cfg.Gatherer == nil {
		return nil, &ConfigError{"Gatherer", errors.New("required (e.g. controller-runtime's metrics.Registry)")}
	}
	if cfg.Instance == "" {
		if cfg.Instance, err = os.Hostname(); err != nil || cfg.Instance == "" {
			return nil, &ConfigError{"Instance", fmt.Errorf("not given and the host name is unknown: %v", err)}
		}
	}
	switch {
	case cfg.Token != "" && cfg.TokenFile != "":
		return nil, &ConfigError{"Token", errors.New("give Token or TokenFile, not both")}
	case cfg.TokenFile != "":
		if _, err := readToken(cfg.TokenFile); err != nil {
			return nil, &ConfigError{"TokenFile", err}
		}
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MinBackoff = min(cfg.MinBackoff, cfg.MaxBackoff)
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: DefaultTimeout}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	timeout := cfg.Client.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Pusher{cfg: cfg, timeout: timeout}, nil
}

// CheckURL checks that raw is a relay's base URL (http or https, a host, no path, query or
// fragment) and returns it without a trailing slash. Its error does not name a field, so that a
// command can name its flag.
func CheckURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not a relay's base URL (want http://host:9091 or https://host:9091)", scrape.RedactURL(raw))
	}
	if u.User != nil {
		return "", fmt.Errorf("%q: give the relay's write token as a token (a token file), not in the URL, where logs would show it", scrape.RedactURL(raw))
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%q: give the relay's base URL, without a path or query (the pusher adds /metrics/job/<job>/instance/<instance>)", raw)
	}
	return strings.TrimSuffix(raw, "/"), nil
}

// NeedLeaderElection tells controller-runtime's manager to run the pusher on every replica, not
// only on the leader: each replica has its own metrics (group them with distinct Instances).
func (p *Pusher) NeedLeaderElection() bool { return false }

// Start pushes at once, then every Interval until ctx is done, then deletes the group. Push
// failures are logged and retried, never fatal, so that a relay outage never stops the operator:
// with backoff (MinBackoff doubling up to MaxBackoff) while the relay is unreachable or failing,
// at the Interval otherwise. Each failure is logged once at error level with the side at fault
// (a repeat of the same failure only at debug level, until a push succeeds again), and so is each
// recovery. Start returns an error only when the final delete fails.
func (p *Pusher) Start(ctx context.Context) error {
	log := p.cfg.Logger
	backoff := p.cfg.MinBackoff
	var lastMsg string // the failure last logged at error level; "" after a success
	failing, accepted := 0, false
	log.Info("pushing to the relay", "url", p.cfg.URL, "group", fmt.Sprintf("{instance=%q,job=%q}", p.cfg.Instance, p.cfg.Job), "interval", p.cfg.Interval)
	for {
		err := p.PushOnce(ctx)
		if ctx.Err() != nil {
			break
		}
		wait := p.cfg.Interval
		if err == nil {
			switch {
			case !accepted:
				log.Info("first push accepted", "url", p.cfg.URL, "failed_attempts", failing)
			case failing > 0:
				log.Info("pushing works again", "url", p.cfg.URL, "failed_attempts", failing)
			}
			accepted, failing, backoff, lastMsg = true, 0, p.cfg.MinBackoff, ""
		} else {
			failing++
			side := sideOf(err)
			if side == SideRelay {
				wait, backoff = backoff, min(backoff*2, p.cfg.MaxBackoff)
			}
			if msg := err.Error(); msg != lastMsg {
				log.Error("push failed", "side", side, "err", msg, "retry_in", wait)
				lastMsg = msg
			} else {
				log.Debug("push failed again", "side", side, "attempts", failing, "retry_in", wait)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		if ctx.Err() != nil {
			break
		}
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
	defer cancel()
	if err := p.Delete(dctx); err != nil {
		log.Warn("could not delete the group on exit; it leaves the relay's /metrics after its --group.ttl", "url", p.cfg.URL, "err", err)
		return fmt.Errorf("pusher: %w", err)
	}
	log.Info("group deleted from the relay", "url", p.cfg.URL)
	return nil
}

func sideOf(err error) Side {
	var e *Error
	if errors.As(err, &e) {
		return e.Side
	}
	return ""
}

// Status returns what the pusher has done so far.
func (p *Pusher) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Stats returns the number of successful pushes and the last push's error.
func (p *Pusher) Stats() (pushes int, lastErr error) {
	s := p.Status()
	return s.Pushes, s.LastErr
}

// PushOnce gathers and pushes once (PUT: the group is replaced). The Gatherer is cancelled with
// ctx, the push is not: a push cancelled on our side may still be applied by the relay after the
// final delete and bring the group back, so once sent it runs to its answer or its timeout. If ctx
// is done before the push is sent, PushOnce returns ctx's error. Any other error is an *Error.
func (p *Pusher) PushOnce(ctx context.Context) error {
	err := p.pushOnce(ctx)
	if ctx.Err() != nil && err != nil {
		return err // cut short by the caller: not the relay's or the operator's failure
	}
	p.mu.Lock()
	if err == nil {
		p.status.Pushes++
	} else {
		p.status.Failures++
	}
	p.status.LastErr = err
	p.mu.Unlock()
	return err
}

func (p *Pusher) pushOnce(ctx context.Context) error {
	fams, err := p.gather(ctx)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return err
		}
		return &Error{Op: OpGather, Side: SideOperator, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	defer cancel()
	pu, d, err := p.client(pctx)
	if err != nil {
		return &Error{Op: OpPush, Side: SideConfig, Err: err}
	}
	pu.Gatherer(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return fams, nil }))
	return d.classify(OpPush, pu.PushContext(pctx))
}

func (p *Pusher) gather(ctx context.Context) ([]*dto.MetricFamily, error) {
	if g, ok := p.cfg.Gatherer.(ContextGatherer); ok {
		return g.GatherContext(ctx)
	}
	return p.cfg.Gatherer.Gather()
}

// Delete removes the group from the relay. The error is an *Error.
func (p *Pusher) Delete(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	pu, d, err := p.client(ctx)
	if err != nil {
		return &Error{Op: OpDelete, Side: SideConfig, Err: err}
	}
	return d.classify(OpDelete, pu.Delete())
}

// client returns client_golang's push client for the group, sending through a doer that carries
// ctx and the token.
func (p *Pusher) client(ctx context.Context) (*push.Pusher, *doer, error) {
	d := &doer{ctx: ctx, client: p.cfg.Client, token: p.cfg.Token}
	if p.cfg.TokenFile != "" {
		tok, err := readToken(p.cfg.TokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("the relay's token file: %w", err)
		}
		d.token = tok
	}
	return push.New(p.cfg.URL, p.cfg.Job).Grouping("instance", p.cfg.Instance).Client(d), d, nil
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return tok, nil
}

// doer sends client_golang's requests with a context (Delete has no context variant) and the
// token, and remembers how the relay answered, so that failures are classified without parsing
// client_golang's error strings.
type doer struct {
	ctx    context.Context
	client *http.Client
	token  string

	transportErr error
	code         int
	reason       string
}

// maxReason bounds how much of the relay's answer an Error quotes.
const maxReason = 4096

func (d *doer) Do(req *http.Request) (*http.Response, error) {
	req = req.WithContext(d.ctx)
	if d.token != "" {
		req.Header.Set("Authorization", "Bearer "+d.token)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		d.transportErr = err
		return nil, err
	}
	d.code = resp.StatusCode
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxReason))
		resp.Body.Close()
		d.reason = strings.TrimSpace(string(b))
		resp.Body = io.NopCloser(bytes.NewReader(b))
	}
	return resp, nil
}

func (d *doer) classify(op Op, err error) error {
	switch {
	case err == nil:
		return nil
	case d.transportErr != nil:
		return &Error{Op: op, Side: SideRelay, Err: d.transportErr}
	case d.code >= 500:
		return &Error{Op: op, Side: SideRelay, Code: d.code, Reason: d.reason, Err: err}
	case d.code != 0 && d.code != http.StatusOK && d.code != http.StatusAccepted:
		return &Error{Op: op, Side: SideRejected, Code: d.code, Reason: d.reason, Err: err}
	}
	// client_golang refused before sending, e.g. the metrics carry a job label.
	return &Error{Op: op, Side: SideOperator, Err: err}
}
