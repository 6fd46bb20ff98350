// Package relay assembles the relay server: the store, its own metrics, the HTTP routes and the
// background expiry. The command wires flags into a Config; tests build the same server in
// process.
package relay

import (
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/collectors/version"

	"github.com/opview/opview/exporter/api"
	"github.com/opview/opview/exporter/auth"
	"github.com/opview/opview/exporter/persist"
	"github.com/opview/opview/exporter/sources"
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

	// Sources are the pull sources given by flags (--source NAME=URL), by name.
	Sources map[string]sources.Spec
	// WriteTokens, when set, are required for writes: pushes, deletes and the sources API's PUT
	// and DELETE (--web.write-token-file). Reads stay open.
	WriteTokens *auth.Tokens
	// PersistenceFile, when set, keeps groups and API sources across restarts; it is written every
	// PersistenceInterval (0: only on Close) and by Close.
	PersistenceFile     string
	PersistenceInterval time.Duration
}

// Defaults of the serve flags.
const (
	DefaultGroupTTL     = 5 * time.Minute
	DefaultForgetAfter  = time.Hour
	DefaultMaxBodyBytes = 16 << 20
	DefaultMaxSeries    = 20000
	DefaultMaxGroups    = 1000

	DefaultPersistenceInterval = 5 * time.Minute
)

// Relay is a configured relay server.
type Relay struct {
	cfg      Config
	Store    *store.MemoryStore
	Registry *prometheus.Registry
	Sources  *sources.Manager
	handler  http.Handler

	persister *persist.Persister
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

	srcs := sources.NewManager(sources.Options{Store: st, MaxSeries: cfg.MaxSeries, Logger: cfg.Logger.With("component", "sources"), Now: cfg.Now})
	reg.MustRegister(srcs.Collector())

	r := &Relay{cfg: cfg, Store: st, Registry: reg, Sources: srcs}
	r.restore()
	for name, spec := range cfg.Sources {
		if _, err := srcs.Put(name, spec, "flag", false); err != nil {
			cfg.Logger.Error("pull source not registered", "source", name, "err", err)
		}
	}
	if cfg.PersistenceFile != "" {
		r.persister = &persist.Persister{Path: cfg.PersistenceFile, Interval: cfg.PersistenceInterval, Take: r.snapshot, Logger: cfg.Logger}
	}

	lim := api.Limits{MaxBodyBytes: cfg.MaxBodyBytes, MaxSeries: cfg.MaxSeries}
	log := cfg.Logger
	write := func(h http.Handler) http.Handler { return auth.Require(cfg.WriteTokens, h) }
	mux := http.NewServeMux()
	mux.Handle("PUT "+api.PushPathPrefix, write(api.Push(st, true, lim, inst, log)))
	mux.Handle("POST "+api.PushPathPrefix, write(api.Push(st, false, lim, inst, log)))
	mux.Handle("DELETE "+api.PushPathPrefix, write(api.Delete(st, inst, log)))
	mux.Handle("GET /metrics", api.Metrics(st, reg, inst, log))
	mux.Handle("GET /{$}", api.Status(st, api.StatusInfo{
		Version: Version(), TTL: cfg.GroupTTL, Settings: cfg.Settings,
		Sections: []func() (template.HTML, error){srcs.StatusHTML},
	}, cfg.Now, log))
	mux.Handle("GET "+sources.APIPath, sources.ListHandler(srcs))
	mux.Handle("PUT "+sources.APIPath+"/{name}", write(sources.PutHandler(srcs, log)))
	mux.Handle("DELETE "+sources.APIPath+"/{name}", write(sources.DeleteHandler(srcs)))
	mux.Handle("GET /-/healthy", api.Healthy())
	mux.Handle("GET /-/ready", api.Ready(func() bool { return true }))
	r.handler = mux
	return r
}

// Handler serves every route of the relay.
func (r *Relay) Handler() http.Handler { return r.handler }

// Run scrapes the pull sources, saves the persistence file at its interval and sweeps expired
// groups until ctx is done. Sweeping frees the memory of expired groups even when nobody pushes
// or scrapes; expiry itself does not depend on it: the exposition never shows a group older
// than the TTL.
func (r *Relay) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { r.Sources.Run(ctx) })
	if r.persister != nil {
		wg.Go(func() { r.persister.Run(ctx) })
	}
	r.sweep(ctx)
	wg.Wait()
}

// Close saves the persistence file a last time. Call it once the HTTP server has stopped
// accepting pushes, so that the last ones are kept.
func (r *Relay) Close() error {
	if r.persister == nil {
		return nil
	}
	if err := r.persister.Save(); err != nil {
		return err
	}
	r.cfg.Logger.Info("groups saved", "file", r.cfg.PersistenceFile)
	return nil
}

func (r *Relay) snapshot() (*persist.Snapshot, error) {
	groups, err := r.Store.Snapshot()
	if err != nil {
		return nil, err
	}
	s := &persist.Snapshot{SavedAt: r.cfg.Now(), Groups: groups, Sources: map[string]sources.Spec{}}
	for _, st := range r.Sources.Specs("api") {
		s.Sources[st.Name] = st.Spec
	}
	return s, nil
}

// restore loads the persistence file, if any. Nothing in it can keep the relay from starting: an
// unreadable file is logged and moved aside, a group the store refuses is logged and skipped.
func (r *Relay) restore() {
	if r.cfg.PersistenceFile == "" {
		return
	}
	log := r.cfg.Logger
	snap, err := persist.Load(r.cfg.PersistenceFile, r.cfg.Now())
	var ce *persist.CorruptError
	switch {
	case errors.As(err, &ce):
		log.Error("persistence file is corrupt; starting without its groups", "file", ce.Path, "moved_to", ce.MovedTo, "err", ce.Err)
		return
	case err != nil:
		log.Error("persistence file not read; starting without its groups", "err", err)
		return
	case snap == nil:
		log.Info("no persistence file yet; it will be created", "file", r.cfg.PersistenceFile)
		return
	}
	n, errs := r.Store.Restore(snap.Groups, r.cfg.MaxSeries)
	for _, e := range errs {
		log.Warn("persisted group not restored", "err", e)
	}
	for name, spec := range snap.Sources {
		if _, ok := r.cfg.Sources[name]; ok {
			continue // the flag wins
		}
		if _, err := r.Sources.Put(name, spec, "api", false); err != nil {
			log.Warn("persisted pull source not restored", "source", name, "err", err)
		}
	}
	log.Info("restored from the persistence file", "file", r.cfg.PersistenceFile, "saved_at", snap.SavedAt, "groups", n, "skipped", len(snap.Groups)-n, "sources", len(snap.Sources))
}

func (r *Relay) sweep(ctx context.Context) {
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
