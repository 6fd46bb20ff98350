// Package sources lets the relay pull instead of waiting for pushes: a source is an operator's
// metrics endpoint the relay can reach (on the LAN), scraped at an interval into the group
// {job=<source name>, instance=<host:port>}. Each source's scrape health is exposed as
// opview_relay_source_* metrics; a source that stays down stops refreshing its group, which then
// expires after the relay's TTL like a quiet push group.
//
// Sources come from the relay's operator (--source flags, --sources.config-file), who may set
// anything a Prometheus scrape config's HTTP client takes, and from clients of the runtime API
// (PUT, DELETE /api/v1/sources/<name>, GET /api/v1/sources). A source added through the API makes
// the relay fetch a URL a client chose, so the API is bounded and guarded: it needs the write
// token, may not name files on the relay's side or settings that fetch other URLs, may not reach
// loopback, link-local, multicast or the relay's own addresses (checked on every connection, not
// only when the source is added), and is limited in count and interval (Limits).
package sources

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/config"
	"golang.org/x/time/rate"

	"github.com/opview/opview/exporter/scrape"
	"github.com/opview/opview/exporter/store"
)

// DefaultInterval is a source's scrape interval when none is given.
const DefaultInterval = 15 * time.Second

// MinInterval refuses intervals of operator-given sources so short that they are surely a typo
// ("1ms" for "1m"). Sources added through the API have Limits.MinAPIInterval.
const MinInterval = 10 * time.Millisecond

// The origins of a source.
const (
	OriginFlag = "flag" // the relay's operator: --source or --sources.config-file
	OriginAPI  = "api"  // a client of the sources API
)

const (
	maxURLLen   = 2048
	maxErrorLen = 512 // of a source's last_error
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// Health is a source's scrape health.
type Health struct {
	Up             bool          `json:"up"`
	LastScrape     time.Time     `json:"last_scrape,omitzero"`
	ScrapeDuration time.Duration `json:"-"`
	// LastError says why the last scrape failed, without the URL (in the spec) and never quoting
	// the endpoint's answer; at most 512 bytes.
	LastError string `json:"last_error,omitempty"`
	Scrapes   uint64 `json:"scrapes"`
	Errors    uint64 `json:"errors"`
	Series    int    `json:"series"`
}

// Status is one source as GET /api/v1/sources and the status page show it. It holds no secret.
type Status struct {
	Name string `json:"name"`
	// Spec is the source's Spec in the API's JSON form, its secrets and the URL's password
	// redacted.
	Spec json.RawMessage `json:"spec"`
	// URL (its password redacted) and Interval repeat the spec's for the status page.
	URL      string        `json:"-"`
	Interval time.Duration `json:"-"`
	Instance string        `json:"instance"`
	Origin   string        `json:"origin"` // OriginFlag or OriginAPI
	Health   Health        `json:"health"`
	// ScrapeDurationSeconds is Health.ScrapeDuration for JSON readers.
	ScrapeDurationSeconds float64 `json:"scrape_duration_seconds"`
}

// Options configure a Manager.
type Options struct {
	Store  store.Store
	Limits Limits // zero fields: their defaults
	// API enables writes on the sources API (PUT, DELETE). The relay sets it when it requires a
	// write token: without one, anyone on the LAN could make it fetch URLs.
	API    bool
	Logger *slog.Logger
	Now    func() time.Time
}

// Manager runs the sources' scrape loops.
type Manager struct {
	opts Options
	lim  Limits
	log  *slog.Logger
	gate *scrape.Gate
	// puts bounds the scrapes PUT starts at once: no faster than MaxAPISources sources at
	// MinAPIInterval would scrape.
	puts *rate.Limiter
	// lookup resolves a host name when an API source is added.
	lookup func(ctx context.Context, host string) ([]netip.Addr, error)

	mu      sync.Mutex
	sources map[string]*source
	ctx     context.Context // nil until Run
}

type source struct {
	name     string
	spec     Spec
	raw      json.RawMessage // an API source's body as PUT, secrets included: what State saves
	origin   string
	key      store.Key
	instance string
	scraper  *scrape.Scraper

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
	lim := opts.Limits.WithDefaults()
	return &Manager{
		opts: opts, lim: lim, log: opts.Logger, sources: map[string]*source{},
		gate: scrape.NewGate(lim.MaxConcurrentScrapes),
		puts: rate.NewLimiter(rate.Every(lim.MinAPIInterval/time.Duration(lim.MaxAPISources)), lim.MaxAPISources),
		lookup: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		},
	}
}

// Error is a refused change of a source; Code is the HTTP status the API answers with.
type Error struct {
	Code int
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func refused(code int, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// ParseFlag parses a --source flag value, NAME=URL.
func ParseFlag(v string) (name string, spec Spec, err error) {
	name, u, _ := cutByte(v, '=')
	if name == "" || u == "" {
		return "", Spec{}, fmt.Errorf("--source %q: want NAME=URL, e.g. my-operator=http://192.168.1.20:8080/metrics", scrape.RedactURL(v))
	}
	spec = Spec{URL: u, HTTPClientConfig: config.DefaultHTTPClientConfig}
	if _, err := newSource(name, spec, OriginFlag, Limits{}.WithDefaults(), nil); err != nil {
		return "", Spec{}, fmt.Errorf("--source %s=%s: %w", name, scrape.RedactURL(u), err)
	}
	return name, spec, nil
}

func cutByte(s string, c byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// The settings a hint names, by origin.
var (
	apiSettings = scrape.Settings{
		CA:        `"tls_config": {"ca": "<PEM>"}`,
		Insecure:  `"tls_config": {"insecure_skip_verify": true}`,
		Token:     `"authorization": {"credentials": "<token>"}`,
		BodyLimit: "the relay's --" + FlagBodySizeLimit,
		Timeout:   "the relay's --" + FlagScrapeTimeout,
	}
	operatorSettings = scrape.Settings{
		CA:        "tls_config.ca_file in --" + FlagConfigFile,
		Insecure:  "tls_config.insecure_skip_verify in --" + FlagConfigFile,
		Token:     "authorization.credentials_file in --" + FlagConfigFile,
		BodyLimit: "--" + FlagBodySizeLimit,
		Timeout:   "--" + FlagScrapeTimeout,
	}
)

// newSource checks a source and builds its scraper. Errors are *Error (400).
func newSource(name string, spec Spec, origin string, lim Limits, gate *scrape.Gate) (*source, error) {
	if !nameRE.MatchString(name) {
		return nil, refused(http.StatusBadRequest, "source name %q: want letters, digits, '_', '.' or '-', at most 128 (it becomes the job label)", shorten(name, 140))
	}
	api := origin == OriginAPI
	if spec.Interval == 0 {
		spec.Interval = Duration(DefaultInterval)
		if api {
			spec.Interval = Duration(max(DefaultInterval, lim.MinAPIInterval))
		}
	}
	switch iv := time.Duration(spec.Interval); {
	case api && iv < lim.MinAPIInterval:
		return nil, refused(http.StatusBadRequest, "interval %s: a source added through the API is scraped at most every %s (the relay's --%s)", iv, lim.MinAPIInterval, FlagMinAPIInterval)
	case iv < MinInterval:
		return nil, refused(http.StatusBadRequest, "interval %s: must be at least %s", iv, MinInterval)
	}
	timeout := lim.ScrapeTimeout
	if spec.Timeout != 0 {
		timeout = time.Duration(spec.Timeout)
		if timeout < 0 || timeout > lim.ScrapeTimeout {
			return nil, refused(http.StatusBadRequest, "timeout %s: must be positive and at most %s (the relay's --%s)", timeout, lim.ScrapeTimeout, FlagScrapeTimeout)
		}
	}
	if len(spec.URL) > maxURLLen {
		return nil, refused(http.StatusBadRequest, "url: longer than %d bytes", maxURLLen)
	}
	u, err := url.Parse(spec.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, refused(http.StatusBadRequest, "url %q: want http://host:port/metrics or https://host:port/metrics", scrape.RedactURL(spec.URL))
	}
	t := scrape.Target{
		URL: spec.URL, HTTPClientConfig: spec.HTTPClientConfig, Timeout: timeout,
		BodyLimit: lim.BodySizeLimit, Gate: gate, Settings: operatorSettings,
	}
	if api {
		t.CheckAddr, t.Settings = lim.checkAddr, apiSettings
	}
	sc, err := scrape.New(t)
	if err != nil {
		return nil, refused(http.StatusBadRequest, "%v", err)
	}
	key, err := store.NewKey(map[string]string{"job": name, "instance": u.Host})
	if err != nil {
		return nil, refused(http.StatusBadRequest, "%v", err)
	}
	return &source{name: name, spec: spec, origin: origin, key: key, instance: u.Host, scraper: sc}, nil
}

// Check reports an error if the operator's source name/spec would be refused under lim, so that
// the command refuses a bad flag or config file before it starts.
func Check(name string, spec Spec, lim Limits) error {
	_, err := newSource(name, spec, OriginFlag, lim.WithDefaults(), nil)
	return err
}

// Put adds or replaces a source given by the relay's operator (origin OriginFlag) and reports
// whether it was new. A running manager starts scraping it at once; when wait is true, Put returns
// after the first scrape. Sources of the API come with their JSON body: PutJSON.
func (m *Manager) Put(name string, spec Spec, origin string, wait bool) (created bool, err error) {
	if origin != OriginFlag {
		return false, fmt.Errorf("source %q: sources of origin %q are added with PutJSON", name, origin)
	}
	s, err := newSource(name, spec, OriginFlag, m.lim, m.gate)
	if err != nil {
		return false, err
	}
	return m.add(s, wait)
}

// PutJSON adds or replaces a source given through the API by its JSON body (see Spec) and reports
// whether it was new, after its first scrape when the manager runs. Errors are *Error. The body
// is kept, secrets included, for State.
func (m *Manager) PutJSON(ctx context.Context, name string, body []byte) (created bool, err error) {
	if !m.opts.API {
		return false, refused(http.StatusForbidden, "%v", errAPIOff)
	}
	s, err := m.apiSource(name, body)
	if err != nil {
		return false, err
	}
	m.mu.Lock()
	err = m.admitLocked(s)
	m.mu.Unlock()
	if err != nil {
		return false, err
	}
	// Only a change that will fetch (resolve, then scrape) counts against the rate.
	if !m.puts.Allow() {
		return false, refused(http.StatusTooManyRequests, "too many sources added or changed at once (at most %d every %s); retry in a few seconds", m.lim.MaxAPISources, m.lim.MinAPIInterval)
	}
	if err := m.checkHost(ctx, s.spec.URL); err != nil {
		return false, refused(http.StatusBadRequest, "source %q: %v", name, err)
	}
	return m.add(s, true)
}

// apiSource decodes and checks a source of the API.
func (m *Manager) apiSource(name string, body []byte) (*source, error) {
	var spec Spec
	if err := json.Unmarshal(body, &spec); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, refused(http.StatusBadRequest, "source %q: body: %s", name, jsonMsg(err, ""))
		}
		return nil, refused(http.StatusBadRequest, "source %q: body: %v", name, err)
	}
	s, err := newSource(name, spec, OriginAPI, m.lim, m.gate)
	if err != nil {
		return nil, refused(http.StatusBadRequest, "source %q: %v", name, err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		return nil, refused(http.StatusBadRequest, "source %q: body: %s", name, jsonMsg(err, ""))
	}
	s.raw = compact.Bytes()
	return s, nil
}

// checkHost refuses an API source whose host is, or resolves only to, addresses the API may not
// reach, so that the client gets a 400 at once. The dialer checks again at every connection: a
// name that resolves elsewhere later is refused then.
func (m *Manager) checkHost(ctx context.Context, rawURL string) error {
	host, literal, err := m.checkLiteralHost(rawURL)
	if err != nil || literal {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, min(m.lim.ScrapeTimeout, 5*time.Second))
	defer cancel()
	addrs, err := m.lookup(ctx, host)
	if err != nil || len(addrs) == 0 {
		return nil // not resolvable now: the scrapes will say so
	}
	var first error
	for _, a := range addrs {
		err := m.lim.checkAddr(a)
		if err == nil {
			return nil
		}
		if first == nil {
			first = fmt.Errorf("url: %s resolves to %s, %v", shorten(host, 64), a.Unmap(), err)
		}
	}
	return first
}

// checkLiteralHost refuses a URL whose host is an IP address the API may not reach, and reports
// whether the host is an address.
func (m *Manager) checkLiteralHost(rawURL string) (host string, literal bool, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", false, err
	}
	host = u.Hostname()
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host, false, nil
	}
	if err := m.lim.checkAddr(a); err != nil {
		return host, true, fmt.Errorf("url: %s is %v", a.Unmap(), err)
	}
	return host, true, nil
}

// add registers s, replacing a source of the same name, and starts it when the manager runs.
func (m *Manager) add(s *source, wait bool) (created bool, err error) {
	m.mu.Lock()
	old := m.sources[s.name]
	if err := m.admitLocked(s); err != nil {
		m.mu.Unlock()
		return false, err
	}
	m.sources[s.name] = s
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
	m.log.Info("source registered", "pull_source", s.name, "url", scrape.RedactURL(s.spec.URL), "interval", time.Duration(s.spec.Interval), "origin", s.origin, "replaced", old != nil)
	if ctx != nil && wait {
		select {
		case <-s.first:
		case <-ctx.Done():
		}
	}
	return old == nil, nil
}

// admitLocked refuses an API source that would replace an operator's or pass the count limit.
func (m *Manager) admitLocked(s *source) error {
	if s.origin != OriginAPI {
		return nil
	}
	old := m.sources[s.name]
	if old != nil && old.origin != OriginAPI {
		return refused(http.StatusConflict, "source %q is configured by the relay's operator (--source or --%s); choose another name", s.name, FlagConfigFile)
	}
	if old == nil && m.countLocked(OriginAPI) >= m.lim.MaxAPISources {
		return refused(http.StatusForbidden, "the relay already has %d sources added through the API, its maximum (--%s); delete one first", m.lim.MaxAPISources, FlagMaxAPISources)
	}
	return nil
}

func (m *Manager) countLocked(origin string) int {
	n := 0
	for _, s := range m.sources {
		if s.origin == origin {
			n++
		}
	}
	return n
}

// Delete removes a source added through the API and its group. Errors are *Error: 403 when the
// API is off, 404 for an unknown source, 409 for one the operator configured.
func (m *Manager) Delete(name string) error {
	if !m.opts.API {
		return refused(http.StatusForbidden, "%v", errAPIOff)
	}
	m.mu.Lock()
	s := m.sources[name]
	switch {
	case s == nil:
		m.mu.Unlock()
		return refused(http.StatusNotFound, "no source named %q", shorten(name, 140))
	case s.origin != OriginAPI:
		m.mu.Unlock()
		return refused(http.StatusConflict, "source %q is configured by the relay's operator (--source or --%s): remove it there", name, FlagConfigFile)
	}
	delete(m.sources, name)
	m.mu.Unlock()
	s.stop()
	m.opts.Store.Delete(s.key)
	m.log.Info("source deleted", "pull_source", name)
	return nil
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
	spec, err := json.Marshal(s.spec)
	if err != nil {
		spec, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	return Status{
		Name: s.name, Spec: spec, URL: scrape.RedactURL(s.spec.URL), Interval: time.Duration(s.spec.Interval),
		Instance: s.instance, Origin: s.origin, Health: h, ScrapeDurationSeconds: h.ScrapeDuration.Seconds(),
	}
}

// Run scrapes every source until ctx is done, then stops every loop.
func (m *Manager) Run(ctx context.Context) { m.Start(ctx)() }

// Start starts scraping every source, and every source added from now on, until ctx is done. It
// returns at once: the manager runs from then on, so a Put or PutJSON that waits for a source's
// first scrape gets it. The function it returns waits until ctx is done and every loop stopped.
func (m *Manager) Start(ctx context.Context) (wait func()) {
	m.mu.Lock()
	if m.ctx != nil {
		m.mu.Unlock()
		panic("sources: Manager started twice")
	}
	m.ctx = ctx
	for _, s := range m.sources {
		m.startLocked(ctx, s)
	}
	m.mu.Unlock()
	return func() { <-ctx.Done(); m.stopAll() }
}

// stopAll stops every source's loop and waits for it.
func (m *Manager) stopAll() {
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
		if series, err = m.push(s, fams); err != nil {
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
		msg := err.Error()
		var se *scrape.Error
		if errors.As(err, &se) {
			msg = se.Msg // the URL is in the spec
		}
		h.Up, h.LastError, h.Series = false, shorten(msg, maxErrorLen), 0
		h.Errors++
		if wasUp || first {
			m.log.Warn("source down", "pull_source", s.name, "err", shorten(err.Error(), maxErrorLen+maxURLLen))
		}
		return
	}
	h.Up, h.LastError, h.Series = true, "", series
	if !wasUp {
		m.log.Info("source up", "pull_source", s.name, "series", series)
	}
}

// push hands one scrape to the store as a push that replaces the source's group: the sources'
// only way into the store, which applies its limits and records a refusal itself.
func (m *Manager) push(s *source, fams []*dto.MetricFamily) (series int, err error) {
	res, err := m.opts.Store.Push(store.PushRequest{Key: s.key, Families: fams, Replace: true, Client: "pull source " + s.name})
	return res.Series, err
}
