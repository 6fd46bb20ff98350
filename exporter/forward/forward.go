// Package forward scrapes an operator's metrics endpoint and pushes what it reads to a relay: the
// way to meet an operator started with `make run`, which exposes /metrics but pushes nothing.
// `opview-relay forward` runs a Forwarder; the relay's pull sources use the same Scraper.
package forward

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
	dto "github.com/prometheus/client_model/go"
)

// Config configures a Forwarder.
type Config struct {
	// From is the operator's metrics endpoint.
	From Target
	// To is the relay's base URL (http://relay:9091); pushes go to To/metrics/job/<Job>/instance/<Instance>.
	To string
	// ToTokenFile holds the relay's write token (--web.write-token-file on the relay), read at
	// every push. ToCAFile and ToInsecureSkipVerify are for a relay served over HTTPS.
	ToTokenFile          string
	ToCAFile             string
	ToInsecureSkipVerify bool
	// Job and Instance are the group's labels; Instance defaults to the host name.
	Job, Instance string
	// Interval between pushes; 0 means 15s.
	Interval time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries while the relay is unreachable;
	// 0 means 1s and 30s.
	MinBackoff, MaxBackoff time.Duration
	Logger                 *slog.Logger
}

// Side says which end of a forward failed.
type Side string

// The sides of a failed forward.
const (
	SideOperator Side = "operator" // scraping the operator failed
	SideRelay    Side = "relay"    // the relay could not be reached or failed (5xx)
	SideRejected Side = "rejected" // the relay answered and refused the push (4xx)
)

// Error is a failed forward: which side failed and why. For SideRejected, Code and Reason are
// the relay's status code and answer.
type Error struct {
	Side   Side
	Code   int
	Reason string
	Err    error
}

func (e *Error) Error() string {
	switch e.Side {
	case SideOperator:
		return "scraping the operator failed: " + e.Err.Error()
	case SideRejected:
		return fmt.Sprintf("the relay refused the push (HTTP %d): %s", e.Code, e.Reason)
	}
	if e.Code != 0 {
		return fmt.Sprintf("the relay failed (HTTP %d): %s", e.Code, e.Reason)
	}
	return "the relay is unreachable: " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// Forwarder scrapes From and pushes to the relay at an interval.
type Forwarder struct {
	cfg     Config
	scraper *Scraper
	relay   *http.Client
	log     *slog.Logger

	mu     sync.Mutex
	status Status
}

// Status is what a Forwarder has done so far.
type Status struct {
	Pushes   int   // successful pushes
	Failures int   // failed attempts
	LastErr  error // nil after a success
}

// New checks cfg and returns a Forwarder.
func New(cfg Config) (*Forwarder, error) {
	if cfg.Job == "" {
		return nil, errors.New("the job name is required (--job)")
	}
	u, err := url.Parse(cfg.To)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("relay URL %q: want http://host:port or https://host:port (--to)", cfg.To)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("relay URL %q: give the relay's base URL without a path (the push path /metrics/job/... is added)", cfg.To)
	}
	cfg.To = strings.TrimSuffix(cfg.To, "/")
	if cfg.Instance == "" {
		if cfg.Instance, err = os.Hostname(); err != nil || cfg.Instance == "" {
			return nil, fmt.Errorf("no --instance given and the host name is unknown: %v", err)
		}
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 15 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	cfg.MinBackoff = min(cfg.MinBackoff, cfg.MaxBackoff)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	sc, err := NewScraper(cfg.From)
	if err != nil {
		return nil, fmt.Errorf("operator endpoint (--from): %w", err)
	}
	if cfg.ToTokenFile != "" {
		if _, err := readToken(cfg.ToTokenFile); err != nil {
			return nil, fmt.Errorf("relay token (--to.token-file): %w", err)
		}
	}
	tlsCfg, err := TLSConfig(cfg.ToCAFile, cfg.ToInsecureSkipVerify)
	if err != nil {
		return nil, fmt.Errorf("relay TLS (--to.ca-file): %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	return &Forwarder{
		cfg: cfg, scraper: sc, log: cfg.Logger,
		relay: &http.Client{Transport: tr, Timeout: 10 * time.Second},
	}, nil
}

// Group returns the grouping labels the forwarder pushes to.
func (f *Forwarder) Group() (job, instance string) { return f.cfg.Job, f.cfg.Instance }

// Status returns what the forwarder has done so far.
func (f *Forwarder) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

// Run forwards until ctx is done, then deletes its group from the relay so that its series go
// stale at once instead of after the relay's TTL. While the relay is unreachable it retries with
// exponential backoff; other failures are retried at the interval. Each new kind of failure is
// logged once, saying which side failed, and so is the recovery. Run returns an error only when
// the final delete fails.
func (f *Forwarder) Run(ctx context.Context) error {
	f.log.Info("forwarding", "from", f.cfg.From.URL, "to", f.cfg.To, "job", f.cfg.Job, "instance", f.cfg.Instance, "interval", f.cfg.Interval)
	backoff := f.cfg.MinBackoff
	var lastMsg string
	failing := 0
	for {
		err := f.Once(ctx)
		if ctx.Err() != nil {
			break
		}
		wait := f.cfg.Interval
		if err == nil {
			if failing > 0 {
				f.log.Info("forwarding again", "failed_attempts", failing)
			} else if lastMsg == "" {
				f.log.Info("first push accepted", "group", fmt.Sprintf("{instance=%q,job=%q}", f.cfg.Instance, f.cfg.Job))
				lastMsg = "ok"
			}
			failing, backoff = 0, f.cfg.MinBackoff
		} else {
			failing++
			var fe *Error
			if errors.As(err, &fe) && fe.Side == SideRelay {
				wait, backoff = backoff, min(backoff*2, f.cfg.MaxBackoff)
			}
			if msg := err.Error(); msg != lastMsg {
				f.log.Error("forward failed", "side", sideOf(err), "err", msg, "retry_in", wait)
				lastMsg = msg
			} else {
				f.log.Debug("forward failed again", "side", sideOf(err), "attempts", failing, "retry_in", wait)
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
	dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.DeleteGroup(dctx); err != nil {
		f.log.Warn("could not delete the group on exit; it leaves /metrics after the relay's --group.ttl", "err", err)
		return err
	}
	f.log.Info("group deleted from the relay", "job", f.cfg.Job, "instance", f.cfg.Instance)
	return nil
}

func sideOf(err error) Side {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Side
	}
	return ""
}

// Once scrapes the operator and pushes the result (PUT: the group is replaced). The error is an
// *Error that says which side failed.
func (f *Forwarder) Once(ctx context.Context) error {
	err := f.once(ctx)
	f.mu.Lock()
	if err == nil {
		f.status.Pushes++
	} else {
		f.status.Failures++
	}
	f.status.LastErr = err
	f.mu.Unlock()
	return err
}

func (f *Forwarder) once(ctx context.Context) error {
	fams, err := f.scraper.Scrape(ctx)
	if err != nil {
		return &Error{Side: SideOperator, Err: err}
	}
	p, d, err := f.pusher()
	if err != nil {
		return &Error{Side: SideRelay, Err: err}
	}
	p.Gatherer(prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return fams, nil }))
	// Not cancelled with ctx (the client's timeout bounds it): a push cancelled on our side may
	// still be applied by the relay after Run's final delete, bringing the group back.
	return d.classify(p.PushContext(context.WithoutCancel(ctx)))
}

// DeleteGroup removes the forwarder's group from the relay.
func (f *Forwarder) DeleteGroup(ctx context.Context) error {
	p, d, err := f.pusher()
	if err != nil {
		return err
	}
	d.ctx = ctx
	return d.classify(p.Delete())
}

func (f *Forwarder) pusher() (*push.Pusher, *doer, error) {
	d := &doer{client: f.relay}
	if f.cfg.ToTokenFile != "" {
		tok, err := readToken(f.cfg.ToTokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("relay token (--to.token-file): %w", err)
		}
		d.token = tok
	}
	return push.New(f.cfg.To, f.cfg.Job).Grouping("instance", f.cfg.Instance).Client(d), d, nil
}

// doer is the push client: it adds the relay token and remembers how the relay answered, so that
// failures can be classified without parsing client_golang's error strings.
type doer struct {
	client *http.Client
	token  string
	ctx    context.Context // for Delete, which has no context variant

	transportErr error
	code         int
	reason       string
}

func (d *doer) Do(req *http.Request) (*http.Response, error) {
	if d.ctx != nil {
		req = req.WithContext(d.ctx)
	}
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
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		d.reason = strings.TrimSpace(string(b))
		resp.Body = io.NopCloser(bytes.NewReader(b))
	}
	return resp, nil
}

func (d *doer) classify(err error) error {
	switch {
	case err == nil:
		return nil
	case d.transportErr != nil:
		return &Error{Side: SideRelay, Err: d.transportErr}
	case d.code >= 500:
		return &Error{Side: SideRelay, Code: d.code, Reason: d.reason, Err: err}
	case d.code != 0 && d.code != http.StatusOK && d.code != http.StatusAccepted:
		return &Error{Side: SideRejected, Code: d.code, Reason: d.reason, Err: err}
	}
	// client_golang refused before sending, e.g. the operator's metrics carry a job label.
	return &Error{Side: SideOperator, Err: fmt.Errorf("its metrics can't be pushed: %w", err)}
}
