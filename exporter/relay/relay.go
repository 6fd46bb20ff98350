// Package relay assembles the relay server: the store, its own metrics, the HTTP routes and the
// background expiry. The command wires flags into a Config; tests build the same server in
// process.
package relay

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/collectors/version"

	"github.com/opview/opview/exporter/api"
	"github.com/opview/opview/exporter/store"
)

// Config is the relay's configuration; see the flags of `opview-relay serve`.
type Config struct {
	GroupTTL     time.Duration // 0 keeps groups forever
	ForgetAfter  time.Duration // how long an expired group's health series stay
	MaxBodyBytes int64
	MaxSeries    int // per group
	MaxGroups    int
	Logger       *slog.Logger
	// Now is the clock (tests inject one); nil means time.Now.
	Now func() time.Time
	// Settings are shown on the status page.
	Settings map[string]string
}

// Defaults of the serve flags.
const (
	DefaultGroupTTL     = 5 * time.Minute
	DefaultForgetAfter  = time.Hour
	DefaultMaxBodyBytes = 16 << 20
	DefaultMaxSeries    = 20000
	DefaultMaxGroups    = 1000
)

// Relay is a configured relay server.
type Relay struct {
	cfg      Config
	Store    *store.MemoryStore
	Registry *prometheus.Registry
	handler  http.Handler
}

// New builds a relay from cfg.
func New(cfg Config) *Relay {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		version.NewCollector("opview_relay"),
	)
	inst := api.NewInstrumentation(reg)
	// The relay's own families, as known before the store's collector joins the registry: pushes
	// may add to them (an operator's go_goroutines) only with the same type.
	reserved, err := reg.Gather()
	if err != nil {
		cfg.Logger.Warn("gathering the relay's own metrics", "err", err)
	}
	st := store.New(store.Options{
		TTL:               cfg.GroupTTL,
		ForgetAfter:       cfg.ForgetAfter,
		MaxGroups:         cfg.MaxGroups,
		MaxSeriesPerGroup: cfg.MaxSeries,
		Reserved:          reserved,
		Now:               cfg.Now,
	})
	reg.MustRegister(store.NewCollector(st))

	r := &Relay{cfg: cfg, Store: st, Registry: reg}
	lim := api.Limits{MaxBodyBytes: cfg.MaxBodyBytes, MaxSeries: cfg.MaxSeries}
	log := cfg.Logger
	mux := http.NewServeMux()
	mux.Handle("PUT "+api.PushPathPrefix, api.Push(st, true, lim, inst, log))
	mux.Handle("POST "+api.PushPathPrefix, api.Push(st, false, lim, inst, log))
	mux.Handle("DELETE "+api.PushPathPrefix, api.Delete(st, inst, log))
	mux.Handle("GET /metrics", api.Metrics(st, reg, inst, log))
	mux.Handle("GET /{$}", api.Status(st, api.StatusInfo{Version: Version(), TTL: cfg.GroupTTL, Settings: cfg.Settings}, cfg.Now, log))
	mux.Handle("GET /-/healthy", api.Healthy())
	mux.Handle("GET /-/ready", api.Ready(func() bool { return true }))
	r.handler = mux
	return r
}

// Handler serves every route of the relay.
func (r *Relay) Handler() http.Handler { return r.handler }

// Run sweeps expired groups until ctx is done, so that their memory is freed even when nobody
// pushes or scrapes. Expiry itself does not depend on it: the exposition never shows a group
// older than the TTL.
func (r *Relay) Run(ctx context.Context) {
	if r.cfg.GroupTTL <= 0 {
		<-ctx.Done()
		return
	}
	every := min(max(r.cfg.GroupTTL/10, time.Second), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n := r.Store.Sweep(); n > 0 {
				r.cfg.Logger.Info("groups expired", "count", n, "ttl", r.cfg.GroupTTL)
			}
		}
	}
}
