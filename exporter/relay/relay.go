// Package relay assembles the relay server: the store, its own metrics, the HTTP routes and the
// background expiry. The command wires flags into a Config; tests build the same server in
// process.
package relay

import (
	"bytes"
	"context"
	"encoding/json"
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
	"github.com/opview/opview/exporter/process"
	"github.com/opview/opview/exporter/sources"
	"github.com/opview/opview/exporter/store"
)

// Config is the relay's configuration; see the flags of `opview-relay serve`.
type Config struct {
	GroupTTL     time.Duration // 0 keeps groups forever
	ForgetAfter  time.Duration // how long an expired group's health series stay
	MaxBodyBytes int64
	// Limits bound what the store holds (groups, series, the byte budget, labels).
	Limits store.Limits
	// LimitNames name the setting that raises each limit, for refusals; nil means LimitFlags.
	LimitNames map[store.Limit]string
	Logger     *slog.Logger
	// Now is the clock (tests inject one); nil means time.Now.
	Now func() time.Time
	// Settings are shown on the status page, in order.
	Settings []api.Setting

	// Sources are the pull sources given by the operator (--source NAME=URL,
	// --sources.config-file), by name.
	Sources map[string]sources.Spec
	// SourceLimits bound the pull sources and what the sources API may reach (--sources.*).
	SourceLimits sources.Limits
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
	DefaultGroupTTL    = 5 * time.Minute
	DefaultForgetAfter = time.Hour
	// DefaultMaxBodyBytes is the push body limit when the process has no memory limit; with one,
	// it is 1/64 of it (4 MiB in the bundle's 256 MiB container), between 1 MiB and this.
	// Decoding and rendering a push takes about ten times its body for a moment; one
	// maximum-size body decodes at a time.
	DefaultMaxBodyBytes = 16 << 20
	DefaultMaxSeries    = 20000
	DefaultMaxGroups    = 1000

	// GOGC and HeapFloor pace the relay's garbage collector (opview-relay serve, unless the GOGC
	// environment variable says otherwise; exporter/gcfloor). The relay's heap is mostly
	// long-lived pre-rendered bytes; collecting at 50% growth instead of Go's 100% keeps its
	// resident memory per stored series at about a third of Pushgateway's (docs/benchmarks.md;
	// Prometheus ships with 75). A small store would then collect every few pushes (GOGC=50 also
	// halves Go's 4 MiB minimum heap goal) and spend half its push CPU collecting: below the
	// floor, the heap may grow to it first.
	GOGC      = 50
	HeapFloor = 16 << 20

	// DefaultMaxBytes is the byte budget when the process has no memory limit (GOMEMLIMIT).
	DefaultMaxBytes = 256 << 20
	// BudgetShare is the share of the process's memory limit that the byte budget takes by
	// default: the rest is for the Go runtime's headroom (the garbage collector runs at GOGC=50),
	// the pushes being decoded and the scrapes being written.
	BudgetShare = 0.25

	DefaultLabelLimit            = 64
	DefaultLabelNameLengthLimit  = 256
	DefaultLabelValueLengthLimit = 2048
	DefaultHelpLengthLimit       = 4096

	DefaultPersistenceInterval = 5 * time.Minute
)

// DefaultLimits are the serve flags' default limits for a process whose memory limit is
// memLimit bytes (math.MaxInt64 or less than 1: none).
func DefaultLimits(memLimit int64) store.Limits {
	l := store.Limits{
		MaxGroups: DefaultMaxGroups, MaxSeriesPerGroup: DefaultMaxSeries, MaxBytes: DefaultMaxBytes,
		LabelLimit: DefaultLabelLimit, LabelNameLengthLimit: DefaultLabelNameLengthLimit,
		LabelValueLengthLimit: DefaultLabelValueLengthLimit, HelpLengthLimit: DefaultHelpLengthLimit,
	}
	if memLimit > 0 && memLimit < 1<<62 {
		l.MaxBytes = int64(float64(memLimit) * BudgetShare)
	}
	return l
}

// DefaultMaxBody is the serve flags' default push body limit for a process whose memory limit is
// memLimit bytes (math.MaxInt64 or less than 1: none).
func DefaultMaxBody(memLimit int64) int64 {
	if memLimit <= 0 || memLimit >= 1<<62 {
		return DefaultMaxBodyBytes
	}
	return min(max(memLimit/64, 1<<20), DefaultMaxBodyBytes)
}

// Relay is a configured relay server.
type Relay struct {
	cfg      Config
	Store    *store.MemoryStore
	Registry *prometheus.Registry
	Sources  *sources.Manager
	handler  http.Handler

	persister *persist.Persister
	restored  restoreSummary
}

// New builds a relay from cfg and restores its persistence file, if any, without taking the
// file's lock: for tests and tools. A process that serves uses Open.
func New(cfg Config) *Relay {
	r := build(cfg)
	r.load()
	return r
}

// LockWait is how long Open waits for the persistence file's lock: longer than the bundle's
// grace period (60 s), in which the pod being replaced saves its last state.
const LockWait = 2 * time.Minute

// Open builds a relay from cfg that owns its persistence file, if any: it makes sure the file
// can be written, waits up to LockWait (or until ctx is done) for the lock another relay on the
// same file may hold, then restores the file. Close saves it a last time and releases the lock.
func Open(ctx context.Context, cfg Config) (*Relay, error) {
	r := build(cfg)
	if r.persister != nil {
		if err := r.persister.Check(); err != nil {
			return nil, err
		}
		lctx, cancel := context.WithTimeout(ctx, LockWait)
		defer cancel()
		if err := r.persister.Lock(lctx); err != nil {
			return nil, err
		}
	}
	r.load()
	return r, nil
}

// build makes the relay's parts and routes; load then fills the store.
func build(cfg Config) *Relay {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LimitNames == nil {
		cfg.LimitNames = LimitFlags
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		process.NewCollector(), // client_golang's process collector's families, cheaper to collect
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
		TTL:         cfg.GroupTTL,
		ForgetAfter: cfg.ForgetAfter,
		Limits:      cfg.Limits,
		LimitNames:  cfg.LimitNames,
		Reserved:    reserved,
		Now:         cfg.Now,
	})
	reg.MustRegister(store.NewCollector(st))

	srcs := sources.NewManager(sources.Options{Store: st, Limits: cfg.SourceLimits, API: cfg.WriteTokens != nil, Logger: cfg.Logger.With("component", "sources"), Now: cfg.Now})
	reg.MustRegister(srcs.Collector())

	r := &Relay{cfg: cfg, Store: st, Registry: reg, Sources: srcs}
	if cfg.PersistenceFile != "" {
		r.persister = &persist.Persister{
			Path: cfg.PersistenceFile, Interval: cfg.PersistenceInterval,
			Sources: r.sourcesState, Groups: st.Snapshot, Now: cfg.Now, Logger: cfg.Logger,
		}
	}

	lim := api.Limits{
		MaxBodyBytes: cfg.MaxBodyBytes, MaxSeries: cfg.Limits.MaxSeriesPerGroup,
		MaxLabels:        cfg.Limits.LabelLimit,
		MaxBodyBytesFlag: cfg.LimitNames[LimitBodyBytes], MaxSeriesFlag: cfg.LimitNames[store.LimitSeries],
		MaxLabelsFlag: cfg.LimitNames[store.LimitLabels],
	}
	// One maximum-size body decodes at a time; smaller ones share that room by their size.
	gate := api.NewGate(cfg.MaxBodyBytes, cfg.MaxBodyBytes)
	log := cfg.Logger
	write := func(h http.Handler) http.Handler { return auth.Require(cfg.WriteTokens, h) }
	mux := http.NewServeMux()
	mux.Handle("PUT "+api.PushPathPrefix, write(api.Push(st, true, lim, gate, inst, log)))
	mux.Handle("POST "+api.PushPathPrefix, write(api.Push(st, false, lim, gate, inst, log)))
	mux.Handle("DELETE "+api.PushPathPrefix, write(api.Delete(st, inst, log)))
	for _, m := range []string{"PUT", "POST", "DELETE"} {
		mux.Handle(m+" /metrics", api.NoGroup(inst))
	}
	mux.Handle("GET /metrics", api.Metrics(st, reg, inst, log))
	mux.Handle("GET /{$}", api.Status(st, api.StatusInfo{
		Version: Version(), TTL: cfg.GroupTTL, Settings: cfg.Settings,
		Sections: []func() (template.HTML, error){r.restored.html, srcs.StatusHTML},
	}, cfg.Now, log))
	mux.Handle("GET "+sources.APIPath, sources.ListHandler(srcs))
	mux.Handle("PUT "+sources.APIPath+"/{name}", write(sources.PutHandler(srcs, log)))
	mux.Handle("DELETE "+sources.APIPath+"/{name}", write(sources.DeleteHandler(srcs)))
	mux.Handle("GET /-/healthy", api.Healthy())
	mux.Handle("GET /-/ready", api.Ready(func() bool { return true }))
	r.handler = mux
	return r
}

// load restores the persistence file, then registers the flags' sources (a flag wins over a
// source of the same name the file brought back).
func (r *Relay) load() {
	r.restore()
	for name, spec := range r.cfg.Sources {
		if _, err := r.Sources.Put(name, spec, "flag", false); err != nil {
			r.cfg.Logger.Error("pull source not registered", "pull_source", name, "err", err)
		}
	}
}

// LimitBodyBytes names the push body limit in Config.LimitNames (the store has no say in it).
const LimitBodyBytes store.Limit = "max-body-bytes"

// LimitFlags are the serve flags that raise each limit.
var LimitFlags = map[store.Limit]string{
	store.LimitGroups:           "--store.max-groups",
	store.LimitSeries:           "--group.max-series",
	store.LimitBytes:            "--store.max-bytes",
	store.LimitLabels:           "--push.label-limit",
	store.LimitLabelNameLength:  "--push.label-name-length-limit",
	store.LimitLabelValueLength: "--push.label-value-length-limit",
	store.LimitHelpLength:       "--push.help-length-limit",
	LimitBodyBytes:              "--push.max-body-bytes",
}

// Handler serves every route of the relay.
func (r *Relay) Handler() http.Handler { return r.handler }

// Run scrapes the pull sources, saves the persistence file at its interval and sweeps expired
// groups until ctx is done. Sweeping frees the memory of expired groups even when nobody pushes
// or scrapes; expiry itself does not depend on it: the exposition never shows a group older
// than the TTL.
func (r *Relay) Run(ctx context.Context) { r.Start(ctx)() }

// Start does what Run does in the background and returns at once, with a function that waits
// until ctx is done and the work stopped. Start before serving Handler: a source registered
// through the API is then answered after its first scrape, as the API promises.
func (r *Relay) Start(ctx context.Context) (wait func()) {
	var wg sync.WaitGroup
	wg.Go(r.Sources.Start(ctx))
	if r.persister != nil {
		wg.Go(func() { r.persister.Run(ctx) })
	}
	wg.Go(func() { r.sweep(ctx) })
	return wg.Wait
}

// Close saves the persistence file a last time and releases its lock. Call it once the HTTP
// server has stopped accepting pushes, so that the last ones are kept.
func (r *Relay) Close() error {
	if r.persister == nil {
		return nil
	}
	defer r.persister.Unlock()
	if err := r.persister.Save(); err != nil {
		return err
	}
	r.cfg.Logger.Info("groups saved", "file", r.cfg.PersistenceFile)
	return nil
}

// sourcesState is what the persistence file keeps of the sources: those added through the API.
func (r *Relay) sourcesState() (json.RawMessage, error) { return r.Sources.State() }

// restoreSummary is what the status page says of the last restore.
type restoreSummary struct {
	File                          string
	SavedAt                       time.Time
	Restored, Skipped, OverBudget int
	Err                           string
}

var restoreTmpl = template.Must(template.New("restore").Parse(`{{if .File}}<h2>Persistence</h2>
<p><code>{{.File}}</code>{{if not .SavedAt.IsZero}}, saved {{.SavedAt.Format "2006-01-02 15:04:05 MST"}}{{end}}:
restored {{.Restored}} groups at start{{if .Skipped}}, {{.Skipped}} not restored{{end}}{{if .OverBudget}}
<span class="err">({{.OverBudget}} of them because the store's byte budget was full: the freshest groups were restored first)</span>{{end}}.
{{if .Err}}<span class="err">{{.Err}}</span>{{end}}</p>
{{end}}`))

func (s *restoreSummary) html() (template.HTML, error) {
	var b bytes.Buffer
	err := restoreTmpl.Execute(&b, s)
	return template.HTML(b.String()), err //nolint:gosec // rendered by html/template
}

// restore loads the persistence file, if any. Nothing in it can keep the relay from starting: an
// unreadable file is logged and moved aside (the groups read before the damage are kept), a
// group the store refuses is logged and skipped, and groups that don't fit the byte budget are
// left out, the freshest being restored first.
func (r *Relay) restore() {
	if r.persister == nil {
		return
	}
	log := r.cfg.Logger
	sum := &r.restored
	sum.File = r.cfg.PersistenceFile
	h, err := r.persister.Load(func(g store.GroupSnapshot) {
		ok, err := r.Store.Restore(g)
		var se *store.Error
		switch {
		case ok:
			sum.Restored++
		case err == nil:
			// too old: it would have been forgotten by now
		case errors.As(err, &se) && se.Limit == store.LimitBytes:
			sum.Skipped++
			sum.OverBudget++
		default:
			sum.Skipped++
			log.Warn("persisted group not restored", "group", store.Truncate(labelsString(g.Labels), 256), "err", err)
		}
	})
	var ce *persist.CorruptError
	switch {
	case errors.As(err, &ce):
		sum.Err = store.Truncate(ce.Error(), 512)
		log.Error("persistence file is corrupt; serving the groups read before the damage", "file", ce.Path, "moved_to", ce.MovedTo, "restored", sum.Restored, "err", ce.Err)
		return
	case err != nil:
		sum.Err = store.Truncate(err.Error(), 512)
		log.Error("persistence file not read; starting without its groups", "err", err)
		return
	case h == nil:
		sum.File = ""
		log.Info("no persistence file yet; it will be created", "file", r.cfg.PersistenceFile)
		return
	}
	sum.SavedAt = h.SavedAt
	if sum.OverBudget > 0 {
		log.Warn("the store's byte budget is full: groups left out of the restore", "left_out", sum.OverBudget, "budget_bytes", r.cfg.Limits.MaxBytes)
	}
	nsrc, errs := r.Sources.RestoreState(h.Sources)
	for _, err := range errs {
		log.Warn("persisted pull source not restored", "err", err)
	}
	log.Info("restored from the persistence file", "file", r.cfg.PersistenceFile, "saved_at", h.SavedAt, "groups", sum.Restored, "skipped", sum.Skipped, "sources", nsrc)
}

func labelsString(m map[string]string) string {
	k, err := store.NewKey(m)
	if err != nil {
		return "{invalid}"
	}
	return k.Excerpt()
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
