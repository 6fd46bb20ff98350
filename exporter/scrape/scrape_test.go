package scrape

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/config"
)

func newScraper(t *testing.T, target Target) *Scraper {
	t.Helper()
	s, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// serve starts a test server and counts the requests it receives.
func serve(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func TestScrapeReadsProtobufAndText(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "reconciles_total", Help: "Reconciles."}, []string{"result"})
	c.WithLabelValues("success").Add(3)
	reg.MustRegister(c)
	proto, _ := serve(t, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP)
	text, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, "# TYPE widgets gauge\nwidgets 7 1700000000000\n# TYPE empty counter\n")
	})
	for _, c := range []struct {
		name, url, family string
		value             float64
	}{{"protobuf", proto.URL, "reconciles_total", 3}, {"text", text.URL, "widgets", 7}} {
		fams, err := newScraper(t, Target{URL: c.url}).Scrape(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(fams) != 1 || fams[0].GetName() != c.family {
			t.Fatalf("%s: families %v; want only %s (families without samples skipped)", c.name, fams, c.family)
		}
		m := fams[0].Metric[0]
		if v := m.GetCounter().GetValue() + m.GetGauge().GetValue(); v != c.value || m.TimestampMs != nil {
			t.Errorf("%s: value %v, timestamp %v; want %v without a timestamp", c.name, v, m.TimestampMs, c.value)
		}
	}
}

// An endpoint's answer never shows up in an error: not the body of a refused answer, not the
// content that failed to parse.
func TestScrapeErrorsNeverQuoteTheAnswer(t *testing.T) {
	const secret = "db_password=hunter2"
	for _, c := range []struct {
		name        string
		status      int
		contentType string
		body        string
		want        []string
	}{
		{"error page", 500, "text/plain", secret, []string{"HTTP 500 Internal Server Error", `Content-Type "text/plain"`}},
		{"html", 200, "text/html; charset=utf-8", "<html>" + secret + "</html>", []string{"HTTP 200", `Content-Type "text/html; charset=utf-8"`, "not a Prometheus exposition format"}},
		{"not an exposition", 200, "text/plain; version=0.0.4", "# TYPE x gauge\nx 1\nroot:x:0:0:" + secret + ":/bin/bash\n", []string{"text exposition is invalid at line 3"}},
		{"garbage protobuf", 200, "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited", "\x20" + secret + strings.Repeat("x", 40), []string{"protobuf exposition is invalid at metric family 1"}},
		{"unauthorized", 401, "application/json", `{"error": "` + secret + `"}`, []string{"HTTP 401", "wants a bearer token", "tls_config.ca or --x"}},
	} {
		srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", c.contentType)
			w.WriteHeader(c.status)
			fmt.Fprint(w, c.body)
		})
		_, err := newScraper(t, Target{URL: srv.URL, Settings: Settings{Token: "tls_config.ca or --x"}}).Scrape(context.Background())
		if err == nil {
			t.Fatalf("%s: no error", c.name)
		}
		msg := err.Error()
		if strings.Contains(msg, "hunter2") || strings.Contains(msg, "root:") {
			t.Errorf("%s: the error quotes the answer: %s", c.name, msg)
		}
		for _, w := range c.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: error %q does not mention %q", c.name, msg, w)
			}
		}
	}
}

// A long Content-Type is shortened in the error.
func TestScrapeShortensContentType(t *testing.T) {
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; x="+strings.Repeat("a", 10000))
	})
	_, err := newScraper(t, Target{URL: srv.URL}).Scrape(context.Background())
	if err == nil || len(err.Error()) > 300 {
		t.Fatalf("error of %d bytes: %v", len(err.Error()), err)
	}
}

// An answer larger than the limit is refused: announced by Content-Length before any read, or
// streamed without one, in which case the scraper stops reading at the limit.
func TestScrapeStopsAtTheBodyLimit(t *testing.T) {
	const limit = 64 << 10
	streamed, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, "# TYPE big gauge\n")
		for i := 0; r.Context().Err() == nil; i++ {
			if _, err := fmt.Fprintf(w, "big{i=\"%d\"} 1\n", i); err != nil {
				return
			}
		}
	})
	announced, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Header().Set("Content-Length", fmt.Sprint(limit+1))
		fmt.Fprint(w, strings.Repeat("#", limit+1))
	})
	exact, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		body := "# TYPE big gauge\nbig 1\n"
		fmt.Fprint(w, body+strings.Repeat("#\n", (limit-len(body))/2))
	})
	for _, url := range []string{streamed.URL, announced.URL} {
		start := time.Now()
		_, err := newScraper(t, Target{URL: url, BodyLimit: limit, Settings: Settings{BodyLimit: "--body-limit"}}).Scrape(context.Background())
		if err == nil || !strings.Contains(err.Error(), "larger than the limit of 64KiB (--body-limit)") {
			t.Fatalf("%s: %v; want the body limit named", url, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("refusing took %s", d)
		}
	}
	if _, err := newScraper(t, Target{URL: exact.URL, BodyLimit: limit}).Scrape(context.Background()); err != nil {
		t.Errorf("an answer of exactly the limit: %v", err)
	}
}

func TestScrapeTimeoutBoundsASlowAnswer(t *testing.T) {
	stop := make(chan struct{})
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, "# TYPE slow gauge\n")
		w.(http.Flusher).Flush()
		select { // a body that never ends
		case <-r.Context().Done():
		case <-stop:
		}
	})
	defer close(stop)
	start := time.Now()
	_, err := newScraper(t, Target{URL: srv.URL, Timeout: 300 * time.Millisecond, Settings: Settings{Timeout: "--t"}}).Scrape(context.Background())
	if err == nil || !strings.Contains(err.Error(), "within the scrape timeout of 300ms (--t)") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the scrape took %s", d)
	}
}

// Redirects are followed on the same host only: a redirect elsewhere (here to another port of
// loopback) is refused before anything connects there.
func TestScrapeRefusesRedirectToAnotherHost(t *testing.T) {
	elsewhere, elsewhereHits := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, "# TYPE internal gauge\ninternal 1\n")
	})
	var self string
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, elsewhere.URL+"/metrics", http.StatusFound)
		case "/moved":
			http.Redirect(w, r, self+"/metrics", http.StatusMovedPermanently)
		default:
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			fmt.Fprint(w, "# TYPE here gauge\nhere 1\n")
		}
	})
	self = srv.URL
	follow := config.DefaultHTTPClientConfig
	_, err := newScraper(t, Target{URL: srv.URL + "/away", HTTPClientConfig: follow}).Scrape(context.Background())
	if err == nil || !strings.Contains(err.Error(), "redirected to another host") || strings.Contains(err.Error(), elsewhere.URL) {
		t.Fatalf("err = %v; want the redirect refused without quoting its target", err)
	}
	if n := elsewhereHits.Load(); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
	if fams, err := newScraper(t, Target{URL: srv.URL + "/moved", HTTPClientConfig: follow}).Scrape(context.Background()); err != nil || len(fams) != 1 {
		t.Fatalf("same-host redirect: %v %v", fams, err)
	}
	_, err = newScraper(t, Target{URL: srv.URL + "/moved"}).Scrape(context.Background())
	if err == nil || !strings.Contains(err.Error(), "HTTP 301") || !strings.Contains(err.Error(), "redirects are not followed") {
		t.Fatalf("without follow_redirects: %v", err)
	}
}

// CheckAddr sees the address actually dialled, after name resolution: a name is no way around it.
func TestScrapeChecksTheDialledAddress(t *testing.T) {
	srv, hits := serve(t, func(w http.ResponseWriter, r *http.Request) {})
	port := srv.Listener.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
	var seen []netip.Addr
	check := func(a netip.Addr) error {
		seen = append(seen, a)
		if a.IsLoopback() {
			return errors.New("loopback")
		}
		return nil
	}
	_, err := newScraper(t, Target{URL: fmt.Sprintf("http://localhost:%d/metrics", port), CheckAddr: check}).Scrape(context.Background())
	var ae *AddrError
	if !errors.As(err, &ae) || !strings.Contains(err.Error(), "refused to connect to 127.0.0.1: loopback") && !strings.Contains(err.Error(), "refused to connect to ::1: loopback") {
		t.Fatalf("err = %v; want the dialled address refused", err)
	}
	if hits.Load() != 0 || len(seen) == 0 {
		t.Fatalf("hits %d, checked %v", hits.Load(), seen)
	}
}

// The hint for an untrusted certificate names the caller's settings.
func TestScrapeCertificateHintNamesTheSettings(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	srv.Config.ErrorLog = nil
	_, err := newScraper(t, Target{URL: srv.URL, Settings: Settings{CA: `"tls_config": {"ca": "<PEM>"}`, Insecure: `"tls_config": {"insecure_skip_verify": true}`}}).Scrape(context.Background())
	if err == nil || !strings.Contains(err.Error(), `give the CA that signed it with "tls_config": {"ca": "<PEM>"}, or skip verification with "tls_config": {"insecure_skip_verify": true}`) {
		t.Fatalf("err = %v", err)
	}
	plain := strings.Replace(srv.URL, "https:", "http:", 1)
	_, err = newScraper(t, Target{URL: plain}).Scrape(context.Background())
	if err == nil || !strings.Contains(err.Error(), "speaks HTTPS: use an https:// URL") {
		t.Fatalf("plain HTTP to the TLS port: %v", err)
	}
}

func TestScrapeErrorsRedactTheURLPassword(t *testing.T) {
	srv, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if _, pw, ok := r.BasicAuth(); !ok || pw != "s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
		}
		w.WriteHeader(http.StatusNotFound)
	})
	u := strings.Replace(srv.URL, "http://", "http://op:s3cret@", 1)
	_, err := newScraper(t, Target{URL: u}).Scrape(context.Background())
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "op:xxxxx@") || !strings.Contains(err.Error(), "HTTP 404") {
		t.Fatalf("err = %v; want HTTP 404 (the password was sent) with the password redacted", err)
	}
	if _, err := New(Target{URL: "ftp://op:s3cret@host/"}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("New: %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://op:s3cret@host:8080/metrics": "http://op:xxxxx@host:8080/metrics",
		"http://host/metrics":                "http://host/metrics",
		"http://op@host/":                    "http://op@host/",
		"http://op:s3cret@ho st/":            "<invalid URL>",
		"localhost:8080":                     "localhost:8080",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// While the gate's one slot is taken by a slow answer, another scrape waits for it, bounded by
// its timeout, even from a fast endpoint.
func TestGateBoundsReadsInFlight(t *testing.T) {
	release := make(chan struct{})
	slow, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, "# TYPE g gauge\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		fmt.Fprint(w, "g 1\n")
	})
	fast, _ := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, "# TYPE g gauge\ng 1\n")
	})
	g := NewGate(1)
	slowErr := make(chan error, 1)
	go func() {
		_, err := newScraper(t, Target{URL: slow.URL, Gate: g}).Scrape(context.Background())
		slowErr <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(g.slots) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the slow scrape never entered the gate")
		}
		time.Sleep(5 * time.Millisecond) // polling, with a deadline
	}
	fastScraper := newScraper(t, Target{URL: fast.URL, Gate: g, Timeout: 200 * time.Millisecond})
	if _, err := fastScraper.Scrape(context.Background()); err == nil || !strings.Contains(err.Error(), "scrape timeout") {
		t.Fatalf("a scrape while the gate is full: %v; want it to wait and time out", err)
	}
	close(release)
	if err := <-slowErr; err != nil {
		t.Fatal(err)
	}
	if _, err := fastScraper.Scrape(context.Background()); err != nil {
		t.Fatalf("once the gate is free: %v", err)
	}
}
