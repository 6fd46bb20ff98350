// Package sources lets the relay pull instead of waiting for pushes: a source is an operator's
// metrics endpoint the relay can reach (on the LAN), scraped at an interval into the group
// {job=<source name>, instance=<host:port>}. Sources come from --source flags and from the
// runtime API (PUT, DELETE /api/v1/sources/<name>, GET /api/v1/sources). Each source's scrape
// health is exposed as opview_relay_source_* metrics; a source that stays down stops refreshing
// its group, which then expires after the relay's TTL like a quiet push group.
package sources

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/opview/opview/exporter/forward"
	"github.com/opview/opview/exporter/store"
)

// DefaultInterval is a source's scrape interval when none is given.
const DefaultInterval = 15 * time.Second

// MinInterval refuses intervals so short that they are surely a typo ("1ms" for "1m").
const MinInterval = 10 * time.Millisecond

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// Spec describes a source: what the flags and PUT /api/v1/sources/<name> give.
type Spec struct {
	URL      string   `json:"url"`
	Interval Duration `json:"interval,omitempty"`
	Auth     *Auth    `json:"auth,omitempty"`
}

// Auth is how the relay authenticates to a source and checks its certificate.
type Auth struct {
	BearerToken        string `json:"bearer_token,omitempty"`
	BearerTokenFile    string `json:"bearer_token_file,omitempty"`
	Username           string `json:"username,omitempty"`
	Password           string `json:"password,omitempty"`
	CAFile             string `json:"ca_file,omitempty"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify,omitempty"`
}

// Duration is a time.Duration written as "15s" in JSON.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("interval %q: want a duration such as 15s", b)
	}
	*d = Duration(v)
	return nil
}

// Health is a source's scrape health.
type Health struct {
	Up             bool          `json:"up"`
	LastScrape     time.Time     `json:"last_scrape,omitzero"`
	ScrapeDuration time.Duration `json:"-"`
	LastError      string        `json:"last_error,omitempty"`
	Scrapes        uint64        `json:"scrapes"`
	Errors         uint64        `json:"errors"`
	Series         int           `json:"series"`
}

// Status is one source as GET /api/v1/sources and the status page show it.
type Status struct {
	Name     string `json:"name"`
	Spec            // secrets redacted
	Instance string `json:"instance"`
	Origin   string `json:"origin"` // "flag" or "api"
	Health   Health `json:"health"`
	// ScrapeDurationSeconds is Health.ScrapeDuration for JSON readers.
	ScrapeDurationSeconds float64 `json:"scrape_duration_seconds"`
}

// Options configure a Manager.
type Options struct {
	Store  store.Store
	Logger *slog.Logger
	Now    func() time.Time
}

// Manager runs the sources' scrape loops.
type Manager struct {
	opts Options
	log  *slog.Logger

	mu      sync.Mutex
	sources map[string]*source
	ctx     context.Context // nil until Run
}

type source struct {
	name     string
	spec     Spec
	origin   string
	key      store.Key
	instance string
	scraper  *forward.Scraper

	cancel context.CancelFunc
	done   chan struct{} // closed when the loop exits
	first  chan struct{} // closed after the first scrape

	mu     sync.Mutex
	health Health
}

// NewManager returns a Manager without sources.
func NewManager(opts Options) *Manager {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Manager{opts: opts, log: opts.Logger, sources: map[string]*source{}}
}

// ParseFlag parses a --source flag value, NAME=URL.
func ParseFlag(v string) (name string, spec Spec, err error) {
	for i := 0; i < len(v); i++ {
		if v[i] == '=' {
			name, spec.URL = v[:i], v[i+1:]
			break
		}
	}
	if name == "" || spec.URL == "" {
		return "", Spec{}, fmt.Errorf("--source %q: want NAME=URL, e.g. my-operator=http://192.168.1.20:8080/metrics", v)
	}
	if _, err := newSource(name, spec, "flag"); err != nil {
		return "", Spec{}, fmt.Errorf("--source %q: %w", v, err)
	}
	return name, spec, nil
}

func newSource(name string, spec Spec, origin string) (*source, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("source name %q: want letters, digits, '_', '.' or '-' (it becomes the job label)", name)
	}
	if spec.Interval == 0 {
		spec.Interval = Duration(DefaultInterval)
	}
	if time.Duration(spec.Interval) < MinInterval {
		return nil, fmt.Errorf("interval %s: must be at least %s", time.Duration(spec.Interval), MinInterval)
	}
	u, err := url.Parse(spec.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("url %q: want http://host:port/metrics or https://host:port/metrics", spec.URL)
	}
	// A scrape may take longer than a short interval (ticks are skipped meanwhile); 10s is
	// Prometheus's default scrape timeout.
	t := forward.Target{URL: spec.URL, Timeout: 10 * time.Second}
	if a := spec.Auth; a != nil {
		t.BearerToken, t.BearerTokenFile = a.BearerToken, a.BearerTokenFile
		t.Username, t.Password = a.Username, a.Password
		t.CAFile, t.InsecureSkipVerify = a.CAFile, a.InsecureSkipVerify
	}
	sc, err := forward.NewScraper(t)
	if err != nil {
		return nil, err
	}
	key, err := store.NewKey(map[string]string{"job": name, "instance": u.Host})
	if err != nil {
		return nil, err
	}
	return &source{name: name, spec: spec, origin: origin, key: key, instance: u.Host, scraper: sc}, nil
}

// Put adds or replaces the source name and reports whether it was new. A running manager starts
// scraping it at once; when wait is true, Put returns after the first scrape (bounded by the
// scrape timeout) so that the caller sees whether the relay reaches the source.
func (m *Manager) Put(name string, spec Spec, origin string, wait bool) (created bool, err error) {
	s, err := newSource(name, spec, origin)
	if err != nil {
		return false, err
	}
	m.mu.Lock()
	old := m.sources[name]
	m.sources[name] = s
	ctx := m.ctx
	if ctx != nil {
		m.startLocked(ctx, s)
	}
	m.mu.Unlock()
	if old != nil {
		old.stop()
		if old.key.String() != s.key.String() {
			m.opts.Store.Delete(old.key)
		}
	}
	m.log.Info("source registered", "source", name, "url", spec.URL, "interval", time.Duration(s.spec.Interval), "origin", origin, "replaced", old != nil)
	if ctx != nil && wait {
		select {
		case <-s.first:
		case <-ctx.Done():
		}
	}
	return old == nil, nil
}

// Delete stops scraping the source and removes its group at once. It reports whether it existed.
func (m *Manager) Delete(name string) bool {
	m.mu.Lock()
	s := m.sources[name]
	delete(m.sources, name)
	m.mu.Unlock()
	if s == nil {
		return false
	}
	s.stop()
	m.opts.Store.Delete(s.key)
	m.log.Info("source deleted", "source", name)
	return true
}

// List returns every source, sorted by name, with secrets redacted.
func (m *Manager) List() []Status {
	m.mu.Lock()
	srcs := make([]*source, 0, len(m.sources))
	for _, s := range m.sources {
		srcs = append(srcs, s)
	}
	m.mu.Unlock()
	sort.Slice(srcs, func(i, j int) bool { return srcs[i].name < srcs[j].name })
	out := make([]Status, 0, len(srcs))
	for _, s := range srcs {
		out = append(out, s.status())
	}
	return out
}

// Get returns one source's status.
func (m *Manager) Get(name string) (Status, bool) {
	m.mu.Lock()
	s := m.sources[name]
	m.mu.Unlock()
	if s == nil {
		return Status{}, false
	}
	return s.status(), true
}

func (s *source) status() Status {
	s.mu.Lock()
	h := s.health
	s.mu.Unlock()
	spec := s.spec
	if a := spec.Auth; a != nil {
		r := *a
		if r.BearerToken != "" {
			r.BearerToken = "<secret>"
		}
		if r.Password != "" {
			r.Password = "<secret>"
		}
		spec.Auth = &r
	}
	return Status{Name: s.name, Spec: spec, Instance: s.instance, Origin: s.origin, Health: h, ScrapeDurationSeconds: h.ScrapeDuration.Seconds()}
}

// Run scrapes every source until ctx is done, then stops every loop.
func (m *Manager) Run(ctx context.Context) {
	m.mu.Lock()
	if m.ctx != nil {
		m.mu.Unlock()
		panic("sources: Manager.Run called twice")
	}
	m.ctx = ctx
	for _, s := range m.sources {
		m.startLocked(ctx, s)
	}
	m.mu.Unlock()
	<-ctx.Done()
	m.mu.Lock()
	srcs := make([]*source, 0, len(m.sources))
	for _, s := range m.sources {
		srcs = append(srcs, s)
	}
	m.mu.Unlock()
	for _, s := range srcs {
		s.stop()
	}
}

func (m *Manager) startLocked(ctx context.Context, s *source) {
	sctx, cancel := context.WithCancel(ctx)
	s.cancel, s.done, s.first = cancel, make(chan struct{}), make(chan struct{})
	go m.loop(sctx, s)
}

func (s *source) stop() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
	}
}

func (m *Manager) loop(ctx context.Context, s *source) {
	defer close(s.done)
	t := time.NewTicker(time.Duration(s.spec.Interval))
	defer t.Stop()
	first := true
	for {
		m.scrape(ctx, s)
		if first {
			close(s.first)
			first = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// scrape scrapes s once and stores the result in its group.
func (m *Manager) scrape(ctx context.Context, s *source) {
	start := m.opts.Now()
	fams, err := s.scraper.Scrape(ctx)
	if ctx.Err() != nil {
		return // stopping: not the source's fault
	}
	series := 0
	if err == nil {
		var res store.PushResult
		res, err = m.opts.Store.Push(store.PushRequest{Key: s.key, Families: fams, Replace: true, Client: "pull source " + s.name})
		series = res.Series
		if err != nil {
			err = fmt.Errorf("the relay refused the scraped metrics: %w", err)
		}
	}
	end := m.opts.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	h := &s.health
	wasUp, first := h.Up, h.Scrapes == 0
	h.Scrapes++
	h.LastScrape, h.ScrapeDuration = end, end.Sub(start)
	if err != nil {
		h.Up, h.LastError, h.Series = false, err.Error(), 0
		h.Errors++
		if wasUp || first {
			m.log.Warn("source down", "source", s.name, "err", err)
		}
		return
	}
	h.Up, h.LastError, h.Series = true, "", series
	if !wasUp {
		m.log.Info("source up", "source", s.name, "series", series)
	}
}

// Specs returns the sources of one origin ("flag" or "api") with their specs unredacted, for
// persisting them.
func (m *Manager) Specs(origin string) []Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Status
	for _, s := range m.sources {
		if s.origin == origin {
			out = append(out, Status{Name: s.name, Spec: s.spec, Instance: s.instance, Origin: s.origin})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
