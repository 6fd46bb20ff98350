// Package pusher pushes a prometheus.Gatherer to an opview relay (or any Pushgateway) from
// inside an operator's process. A Pusher's Start(ctx) error method makes it a controller-runtime
// manager.Runnable without this package importing controller-runtime:
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
// TTL.
package pusher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"
)

// Config configures a Pusher.
type Config struct {
	// URL is the relay's base URL, e.g. http://relay.example:9091.
	URL string
	// Job and Instance label the group; Instance defaults to the host name.
	Job, Instance string
	// Gatherer is what to push, e.g. controller-runtime's metrics.Registry.
	Gatherer prometheus.Gatherer
	// Interval between pushes; 0 means 15s.
	Interval time.Duration
	// Token is the relay's write token (sent as "Authorization: Bearer <token>"), if it needs one.
	Token string
	// Client sends the pushes; nil means a client with a 10s timeout.
	Client *http.Client
	// Logger gets failures and recoveries (one line per change, not per push); nil discards.
	Logger *slog.Logger
}

// Pusher pushes a Gatherer at an interval. Create it with New.
type Pusher struct {
	cfg Config

	mu      sync.Mutex
	pushes  int
	lastErr error
}

// New checks cfg and returns a Pusher.
func New(cfg Config) (*Pusher, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("pusher: URL %q: want the relay's base URL, http://host:9091", cfg.URL)
	}
	cfg.URL = strings.TrimSuffix(cfg.URL, "/")
	if cfg.Job == "" {
		return nil, errors.New("pusher: Job is required")
	}
	if cfg.Gatherer == nil {
		return nil, errors.New("pusher: Gatherer is required (e.g. controller-runtime's metrics.Registry)")
	}
	if cfg.Instance == "" {
		if cfg.Instance, err = os.Hostname(); err != nil || cfg.Instance == "" {
			return nil, fmt.Errorf("pusher: no Instance given and the host name is unknown: %v", err)
		}
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 15 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Pusher{cfg: cfg}, nil
}

// NeedLeaderElection tells controller-runtime's manager to run the pusher on every replica, not
// only on the leader: each replica has its own metrics (group them with distinct Instances).
func (p *Pusher) NeedLeaderElection() bool { return false }

// Start pushes until ctx is done, then deletes the group. It returns nil unless the final delete
// fails; push failures are logged and retried at the interval, never fatal, so that a relay
// outage never stops the operator.
func (p *Pusher) Start(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		// The push is not cancelled with ctx: a push cancelled on the client may still reach the
		// relay after the final delete and bring the group back. It is bounded by the client's
		// timeout instead, and the delete below waits for it.
		p.record(ctx, p.PushOnce(context.WithoutCancel(ctx)))
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := p.Delete(dctx); err != nil {
				p.cfg.Logger.Warn("deleting the metrics group from the relay failed; it leaves /metrics after the relay's --group.ttl", "err", err)
				return fmt.Errorf("pusher: %w", err)
			}
			return nil
		case <-t.C:
		}
	}
}

func (p *Pusher) record(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case err == nil && p.lastErr != nil:
		p.cfg.Logger.Info("pushing metrics to the relay works again", "url", p.cfg.URL)
	case err != nil && (p.lastErr == nil || p.lastErr.Error() != err.Error()):
		p.cfg.Logger.Error("pushing metrics to the relay failed; retrying", "url", p.cfg.URL, "err", err, "retry_in", p.cfg.Interval)
	}
	if err == nil {
		p.pushes++
	}
	p.lastErr = err
}

// Stats returns the number of successful pushes and the last push's error.
func (p *Pusher) Stats() (pushes int, lastErr error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pushes, p.lastErr
}

// PushOnce pushes the Gatherer once (PUT: the group is replaced).
func (p *Pusher) PushOnce(ctx context.Context) error {
	return p.pusher(ctx).Gatherer(p.cfg.Gatherer).PushContext(ctx)
}

// Delete removes the group from the relay.
func (p *Pusher) Delete(ctx context.Context) error {
	return p.pusher(ctx).Delete()
}

func (p *Pusher) pusher(ctx context.Context) *push.Pusher {
	return push.New(p.cfg.URL, p.cfg.Job).Grouping("instance", p.cfg.Instance).Client(doer{ctx: ctx, c: p.cfg.Client, token: p.cfg.Token})
}

// doer adds the token and the context (Delete has no context variant).
type doer struct {
	ctx   context.Context
	c     *http.Client
	token string
}

func (d doer) Do(req *http.Request) (*http.Response, error) {
	req = req.WithContext(d.ctx)
	if d.token != "" {
		req.Header.Set("Authorization", "Bearer "+d.token)
	}
	return d.c.Do(req)
}
