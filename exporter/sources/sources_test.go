package sources

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opview/opview/exporter/store"
	"github.com/opview/opview/internal/promtest"
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// newManager returns a running Manager over a real store.
func newManager(t *testing.T, opts Options) (*Manager, *store.MemoryStore) {
	t.Helper()
	st := store.New(store.Options{TTL: time.Hour, ForgetAfter: time.Hour})
	opts.Store = st
	m := NewManager(opts)
	run(t, m)
	return m, st
}

func run(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	wait := m.Start(ctx)
	done := make(chan struct{})
	go func() { wait(); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// endpoint serves a gauge, to the holder of token when one is set, and records what it saw.
type endpoint struct {
	*httptest.Server
	hits  atomic.Int64
	mu    sync.Mutex
	token string
	seen  []string
}

func newEndpoint(t *testing.T, token string) *endpoint {
	t.Helper()
	e := &endpoint{token: token}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		e.mu.Lock()
		e.seen = append(e.seen, r.Header.Get("Authorization"))
		want := e.token
		e.mu.Unlock()
		if want != "" && r.Header.Get("Authorization") != "Bearer "+want {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, "# TYPE widgets gauge\nwidgets 3\n")
	}))
	t.Cleanup(e.Close)
	return e
}

func refusal(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not an *Error", err)
	}
	return e
}

// A name that resolved to an allowed address when the source was added, and to loopback when it
// is scraped (DNS rebinding), is refused by the dialer.
func TestAPISourceDialerCatchesRebinding(t *testing.T) {
	ep := newEndpoint(t, "")
	m, _ := newManager(t, Options{API: true})
	m.lookup = func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("203.0.113.7")}, nil // what the name said first
	}
	port := ep.Listener.Addr().(*net.TCPAddr).Port
	if _, err := m.PutJSON(context.Background(), "rebound", []byte(fmt.Sprintf(`{"url": "http://localhost:%d/metrics"}`, port))); err != nil {
		t.Fatal(err)
	}
	st, _ := m.Get("rebound")
	if st.Health.Up || !strings.Contains(st.Health.LastError, "refused to connect to") || !strings.Contains(st.Health.LastError, "a loopback address") {
		t.Fatalf("health %+v; want the dialled loopback address refused", st.Health)
	}
	if n := ep.hits.Load(); n != 0 {
		t.Fatalf("the endpoint got %d requests", n)
	}
}

// State keeps an API source's body with its secrets, and leaves operator sources out;
// RestoreState brings the source back and it scrapes with its token.
func TestStateRestoresAPISourcesWithTheirSecrets(t *testing.T) {
	ep := newEndpoint(t, "tok-123")
	a, _ := newManager(t, Options{API: true, Limits: Limits{AllowCIDRs: loopback}})
	if _, err := a.PutJSON(context.Background(), "secure", []byte(`{"url": "`+ep.URL+`/metrics", "interval": "1h", "authorization": {"credentials": "tok-123"}}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put("operator", Spec{URL: ep.URL + "/other"}, OriginFlag, false); err != nil {
		t.Fatal(err)
	}
	state, err := a.State()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"secure":{"url":"` + ep.URL + `/metrics","interval":"1h","authorization":{"credentials":"tok-123"}}}`
	if string(state) != want {
		t.Fatalf("State = %s\nwant %s", state, want)
	}

	b := NewManager(Options{Store: store.New(store.Options{}), API: true, Limits: Limits{AllowCIDRs: loopback}})
	if n, errs := b.RestoreState(state); n != 1 || errs != nil {
		t.Fatalf("RestoreState: %d %v", n, errs)
	}
	run(t, b)
	promtest.Eventually(t, 10*time.Second, "the restored source up", func() bool {
		st, _ := b.Get("secure")
		return st.Health.Up && st.Origin == OriginAPI
	})
}

// A persistence file of an earlier version (with "auth") loads; what the API refuses today is
// not restored, with a reason for each; nothing is restored without the API.
func TestRestoreStateAppliesTheAPIRules(t *testing.T) {
	ep := newEndpoint(t, "old-token")
	old := `{
		"old": {"url": "` + ep.URL + `/metrics", "interval": "1m0s", "auth": {"bearer_token": "old-token"}},
		"reads-files": {"url": "http://192.0.2.1/metrics", "auth": {"bearer_token_file": "/var/run/secrets/kubernetes.io/serviceaccount/token"}},
		"loopback": {"url": "http://[::1]:9090/api/v1/status/config"},
		"too-often": {"url": "http://192.0.2.1/metrics", "interval": "10ms"},
		"operator": {"url": "http://192.0.2.1/metrics"}
	}`
	m := NewManager(Options{Store: store.New(store.Options{}), API: true, Limits: Limits{AllowCIDRs: []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr(ep.Listener.Addr().(*net.TCPAddr).IP.String()), 32)}}})
	m.lookup = func(context.Context, string) ([]netip.Addr, error) { return nil, errors.New("no DNS in tests") }
	if _, err := m.Put("operator", Spec{URL: "http://192.0.2.2/metrics"}, OriginFlag, false); err != nil {
		t.Fatal(err)
	}
	n, errs := m.RestoreState([]byte(old))
	joined := fmt.Sprint(errs)
	if n != 1 || len(errs) != 4 || !strings.Contains(joined, `"reads-files" not restored`) || !strings.Contains(joined, "auth.bearer_token_file") ||
		!strings.Contains(joined, `"loopback" not restored`) || !strings.Contains(joined, "a loopback address") ||
		!strings.Contains(joined, `"too-often" not restored`) || !strings.Contains(joined, `"operator" not restored: the operator configures`) {
		t.Fatalf("restored %d, errors:\n%s", n, joined)
	}
	run(t, m)
	promtest.Eventually(t, 10*time.Second, "the source of the old file up", func() bool {
		st, _ := m.Get("old")
		return st.Health.Up
	})

	off := NewManager(Options{Store: store.New(store.Options{})})
	if n, errs := off.RestoreState([]byte(old)); n != 0 || len(errs) != 5 || !strings.Contains(errs[0].Error(), "--web.write-token-file") {
		t.Fatalf("without the API: restored %d, %v", n, errs)
	}
	if n, errs := off.RestoreState([]byte(`{"x": `)); n != 0 || len(errs) != 1 {
		t.Fatalf("a damaged state: %d %v", n, errs)
	}
}

// An operator's source reads its credentials file at every scrape: a rotated token is used.
func TestOperatorSourceReadsItsTokenFileAtEveryScrape(t *testing.T) {
	ep := newEndpoint(t, "first")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "sources.yml")
	if err := os.WriteFile(file, []byte("sources:\n  - name: secure\n    url: "+ep.URL+"/metrics\n    interval: 20ms\n    authorization:\n      credentials_file: token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	specs, err := LoadConfigFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m, st := newManager(t, Options{})
	if _, err := m.Put("secure", specs["secure"], OriginFlag, false); err != nil {
		t.Fatal(err)
	}
	promtest.Eventually(t, 10*time.Second, "the source up with the first token", func() bool {
		s, _ := m.Get("secure")
		return s.Health.Up && len(st.Groups()) == 1
	})
	ep.mu.Lock()
	ep.token = "second"
	ep.mu.Unlock()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("second\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	promtest.Eventually(t, 10*time.Second, "the rotated token used", func() bool {
		ep.mu.Lock()
		defer ep.mu.Unlock()
		return len(ep.seen) > 0 && ep.seen[len(ep.seen)-1] == "Bearer second"
	})
	promtest.Eventually(t, 10*time.Second, "the source up", func() bool {
		s, _ := m.Get("secure")
		return s.Health.Up
	})
}

// Scraped metrics the store refuses leave the source down, saying so; the store records the
// refusal with the source as its client.
func TestScrapeRefusedByTheStore(t *testing.T) {
	ep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, "# TYPE widgets gauge\nwidgets{a=\"1\"} 1\nwidgets{a=\"2\"} 2\n")
	}))
	t.Cleanup(ep.Close)
	st := store.New(store.Options{Limits: store.Limits{MaxSeriesPerGroup: 1}})
	m := NewManager(Options{Store: st})
	run(t, m)
	if _, err := m.Put("big", Spec{URL: ep.URL + "/metrics"}, OriginFlag, true); err != nil {
		t.Fatal(err)
	}
	s, _ := m.Get("big")
	if s.Health.Up || !strings.HasPrefix(s.Health.LastError, "the relay refused the scraped metrics: ") || len(st.Groups()) != 0 {
		t.Fatalf("health %+v, groups %v", s.Health, st.Groups())
	}
	if r := st.Usage().Refusals; len(r) != 1 || r[0].Client != "pull source big" {
		t.Fatalf("refusals recorded by the store: %+v", r)
	}
}

func TestPutJSONRefusals(t *testing.T) {
	ep := newEndpoint(t, "")
	m, _ := newManager(t, Options{API: true, Limits: Limits{AllowCIDRs: loopback, MaxAPISources: 1, MinAPIInterval: time.Millisecond}})
	if _, err := m.Put("op", Spec{URL: ep.URL}, OriginFlag, false); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, body string
		code       int
		want       string
	}{
		{"op", `{"url": "` + ep.URL + `"}`, http.StatusConflict, "configured by the relay's operator"},
		{"x", `{"url": "` + ep.URL + `", "interval": "1us"}`, http.StatusBadRequest, "interval 1µs"},
		{"x", `{"url": "ftp://h/"}`, http.StatusBadRequest, `url "ftp://h/"`},
		{"x", `{"url": "http://h/` + strings.Repeat("a", maxURLLen) + `"}`, http.StatusBadRequest, "longer than 2048 bytes"},
		{"x", `{"url": "` + ep.URL + `", "timeout": "-1s"}`, http.StatusBadRequest, "must be positive"},
		{"../x", `{"url": "` + ep.URL + `"}`, http.StatusBadRequest, "source name"},
		{"x", `{"url": "` + ep.URL + `"`, http.StatusBadRequest, "invalid JSON"},
	} {
		_, err := m.PutJSON(context.Background(), c.name, []byte(c.body))
		if e := refusal(t, err); e.Code != c.code || !strings.Contains(e.Msg, c.want) {
			t.Errorf("PUT %s %s: %d %s; want %d mentioning %q", c.name, shorten(c.body, 60), e.Code, e.Msg, c.code, c.want)
		}
	}
	if _, err := m.PutJSON(context.Background(), "first", []byte(`{"url": "`+ep.URL+`"}`)); err != nil {
		t.Fatal(err)
	}
	_, err := m.PutJSON(context.Background(), "second", []byte(`{"url": "`+ep.URL+`"}`))
	if e := refusal(t, err); e.Code != http.StatusForbidden || !strings.Contains(e.Msg, "--sources.max-api-sources") {
		t.Fatalf("past the count: %v", err)
	}
	if e := refusal(t, m.Delete("op")); e.Code != http.StatusConflict {
		t.Fatalf("DELETE of the operator's source: %v", e)
	}
	if e := refusal(t, m.Delete("nope")); e.Code != http.StatusNotFound {
		t.Fatalf("DELETE of an unknown source: %v", e)
	}
	if err := m.Delete("first"); err != nil {
		t.Fatal(err)
	}
}
