package relay_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/opview/opview/exporter/auth"
	"github.com/opview/opview/exporter/relay"
	"github.com/opview/opview/exporter/sources"
	"github.com/opview/opview/internal/promtest"
	"github.com/opview/opview/internal/relaytest"
)

// send is do with a body given as a string.
func send(t *testing.T, method, url, body string, headers ...string) (int, string) {
	t.Helper()
	return do(t, method, url, "", []byte(body), headers...)
}

func fakeOperator(t *testing.T, reconciles float64) *httptest.Server {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "controller_runtime_reconcile_total", Help: "Reconciles."}, []string{"controller", "result"})
	c.WithLabelValues("memcached", "success").Add(reconciles)
	reg.MustRegister(c)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	t.Cleanup(srv.Close)
	return srv
}

func hostOf(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// A source given by flag is scraped into {job=<name>, instance=<host:port>} with its health on
// /metrics; when the operator goes away the source is reported down, then its group expires.
func TestFlagSourceUpDownExpired(t *testing.T) {
	op := fakeOperator(t, 7)
	inst := hostOf(t, op.URL)
	l := relaytest.Start(t, relay.Config{
		GroupTTL: 300 * time.Millisecond, ForgetAfter: time.Minute,
		Sources: map[string]sources.Spec{"lan-op": {URL: op.URL + "/metrics", Interval: sources.Duration(20 * time.Millisecond)}},
	})
	group := map[string]string{"job": "lan-op", "instance": inst}
	promtest.Eventually(t, 10*time.Second, "the source's samples on /metrics", func() bool {
		v, ok := promtest.Value(promtest.Scrape(t, l.URL+"/metrics"), "controller_runtime_reconcile_total", map[string]string{"job": "lan-op", "instance": inst, "result": "success"})
		return ok && v == 7
	})
	fams := promtest.Scrape(t, l.URL+"/metrics")
	if v, ok := promtest.Value(fams, sources.MetricUp, group); !ok || v != 1 {
		t.Fatalf("%s = %v %v, want 1", sources.MetricUp, v, ok)
	}
	for _, name := range []string{sources.MetricScrapeDuration, sources.MetricScrapeErrors, sources.MetricLastScrape} {
		if _, ok := promtest.Value(fams, name, group); !ok {
			t.Errorf("%s%v missing", name, group)
		}
	}
	if v, _ := promtest.Value(fams, sources.MetricLastScrape, group); time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Errorf("last scrape timestamp %v is not recent", v)
	}

	op.Close()
	promtest.Eventually(t, 10*time.Second, "the source reported down", func() bool {
		fams := promtest.Scrape(t, l.URL+"/metrics")
		up, _ := promtest.Value(fams, sources.MetricUp, group)
		errs, _ := promtest.Value(fams, sources.MetricScrapeErrors, group)
		return up == 0 && errs >= 1
	})
	code, page := send(t, http.MethodGet, l.URL+"/", "")
	if code != http.StatusOK || !strings.Contains(page, "lan-op") || !strings.Contains(page, ">down<") || !strings.Contains(page, "connection refused") {
		t.Errorf("status page (%d) does not show the source down with its error:\n%s", code, page)
	}
	promtest.Eventually(t, 10*time.Second, "the source's group to expire", func() bool {
		fams := promtest.Scrape(t, l.URL+"/metrics")
		_, samples := promtest.Value(fams, "controller_runtime_reconcile_total", group)
		fresh, ok := promtest.Value(fams, "opview_relay_group_fresh", group)
		return !samples && ok && fresh == 0
	})
	if !strings.Contains(l.Logs.String(), "source down") {
		t.Errorf("the source going down was not logged:\n%s", l.Logs)
	}
}

func TestSourcesAPI(t *testing.T) {
	tokens, err := auth.ParseTokens([]byte("w\n"))
	if err != nil {
		t.Fatal(err)
	}
	op := fakeOperator(t, 2)
	l := relaytest.Start(t, relay.Config{GroupTTL: time.Minute, WriteTokens: tokens, SourceLimits: sources.Limits{AllowCIDRs: loopback, MinAPIInterval: 50 * time.Millisecond}})
	api := l.URL + sources.APIPath
	bearer := []string{"Authorization", "Bearer w"}
	body := `{"url": "` + op.URL + `/metrics", "interval": "50ms", "authorization": {"credentials": "hunter2"}}`

	if code, msg := send(t, http.MethodPut, api+"/lan-op", body); code != http.StatusUnauthorized || !strings.Contains(msg, "requires a token") {
		t.Fatalf("PUT without a token: %d %s", code, msg)
	}
	if code, msg := send(t, http.MethodPut, api+"/lan-op", body, "Authorization", "Bearer nope"); code != http.StatusForbidden {
		t.Fatalf("PUT with a wrong token: %d %s", code, msg)
	}
	code, msg := send(t, http.MethodPut, api+"/lan-op", body, bearer...)
	if code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", code, msg)
	}
	var st struct {
		sources.Status
		Spec struct {
			URL           string `json:"url"`
			Authorization struct{ Type, Credentials string }
		} `json:"spec"`
	}
	if err := json.Unmarshal([]byte(msg), &st); err != nil {
		t.Fatalf("PUT answer %q: %v", msg, err)
	}
	if !st.Health.Up || st.Health.Scrapes == 0 || st.Instance != hostOf(t, op.URL) || st.Origin != "api" ||
		st.Spec.URL != op.URL+"/metrics" || st.Spec.Authorization.Credentials != "<secret>" || st.Spec.Authorization.Type != "Bearer" {
		t.Fatalf("PUT answered %s; want the first scrape's health, the instance and the token redacted", msg)
	}
	if code, msg := send(t, http.MethodPut, api+"/lan-op", body, bearer...); code != http.StatusOK {
		t.Fatalf("PUT again: %d %s", code, msg)
	}
	code, msg = send(t, http.MethodGet, api, "")
	if code != http.StatusOK || strings.Contains(msg, "hunter2") || !strings.Contains(msg, `"lan-op"`) {
		t.Fatalf("GET (reads are open, secrets redacted): %d %s", code, msg)
	}
	if _, ok := promtest.Value(promtest.Scrape(t, l.URL+"/metrics"), "controller_runtime_reconcile_total", map[string]string{"job": "lan-op"}); !ok {
		t.Fatal("the API source's samples are not on /metrics")
	}

	for _, c := range []struct{ name, body, want string }{
		{"bad-url", `{"url": "localhost:8080"}`, "url"},
		{"url-type", `{"url": 8080}`, `field "url": got a JSON number, want a string`},
		{"interval", `{"url": "http://x/metrics", "interval": "often"}`, `field "interval": "often" is not a duration`},
		{"interval-type", `{"url": "http://x/metrics", "interval": 15}`, `field "interval": got a JSON number, want a duration string such as "15s"`},
		{"nested-type", `{"url": "http://x/metrics", "tls_config": {"insecure_skip_verify": "yes"}}`, `field "tls_config.insecure_skip_verify": got a JSON string, want true or false`},
		{"too-often", `{"url": "http://x/metrics", "interval": "10ms"}`, "at most every 50ms (the relay's --sources.min-api-interval)"},
		{"unknown", `{"url": "http://x/metrics", "intervall": "1s"}`, `unknown field "intervall"`},
		{"timeout", `{"url": "http://x/metrics", "timeout": "1m"}`, "at most 10s (the relay's --sources.scrape-timeout)"},
		{"bad name!", `{"url": "http://x/metrics"}`, "source name"},
	} {
		code, msg := send(t, http.MethodPut, api+"/"+url.PathEscape(c.name), c.body, bearer...)
		var e struct{ Error string }
		if err := json.Unmarshal([]byte(msg), &e); err != nil {
			t.Errorf("PUT %s: error answer %q is not JSON: %v", c.name, msg, err)
		}
		if code != http.StatusBadRequest || !strings.Contains(e.Error, c.want) || strings.Contains(e.Error, "sources.") && !strings.Contains(e.Error, "--sources.") {
			t.Errorf("PUT %s: %d %s; want 400 mentioning %q and no Go type", c.name, code, msg, c.want)
		}
	}

	if code, msg := send(t, http.MethodDelete, api+"/lan-op", "", bearer...); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", code, msg)
	}
	if len(l.Store.Groups()) != 0 {
		t.Fatalf("the source's group survived its deletion: %v", l.Store.Groups())
	}
	if code, _ := send(t, http.MethodDelete, api+"/lan-op", "", bearer...); code != http.StatusNotFound {
		t.Fatalf("DELETE of an unknown source: %d", code)
	}
	if code, _ := send(t, http.MethodDelete, api+"/lan-op", ""); code != http.StatusUnauthorized {
		t.Fatalf("DELETE without a token: %d", code)
	}
}

// The API neither replaces nor deletes a source the operator configured.
func TestSourcesAPILeavesOperatorSourcesAlone(t *testing.T) {
	tokens, err := auth.ParseTokens([]byte("w\n"))
	if err != nil {
		t.Fatal(err)
	}
	op := fakeOperator(t, 1)
	l := relaytest.Start(t, relay.Config{
		GroupTTL: time.Minute, WriteTokens: tokens, SourceLimits: sources.Limits{AllowCIDRs: loopback},
		Sources: map[string]sources.Spec{"lan-op": {URL: op.URL + "/metrics"}},
	})
	bearer := []string{"Authorization", "Bearer w"}
	if code, msg := send(t, http.MethodPut, l.URL+sources.APIPath+"/lan-op", `{"url": "`+op.URL+`/other"}`, bearer...); code != http.StatusConflict || !strings.Contains(msg, "configured by the relay's operator") {
		t.Fatalf("PUT over an operator's source: %d %s", code, msg)
	}
	if code, msg := send(t, http.MethodDelete, l.URL+sources.APIPath+"/lan-op", "", bearer...); code != http.StatusConflict {
		t.Fatalf("DELETE of an operator's source: %d %s", code, msg)
	}
	if st, ok := l.Sources.Get("lan-op"); !ok || st.URL != op.URL+"/metrics" || st.Origin != sources.OriginFlag {
		t.Fatalf("the operator's source changed: %+v", st)
	}
}

// Reads stay open and pushes need the token when --web.write-token-file is set.
func TestWriteTokenGuardsPushes(t *testing.T) {
	tokens, err := auth.ParseTokens([]byte("w\n"))
	if err != nil {
		t.Fatal(err)
	}
	l := relaytest.Start(t, relay.Config{GroupTTL: time.Minute, WriteTokens: tokens})
	push := l.URL + "/metrics/job/x"
	for _, m := range []string{http.MethodPut, http.MethodPost, http.MethodDelete} {
		if code, _ := send(t, m, push, "a 1\n"); code != http.StatusUnauthorized {
			t.Errorf("%s without a token: %d", m, code)
		}
	}
	if code, msg := send(t, http.MethodPut, push, "a 1\n", "Authorization", "Bearer w"); code != http.StatusOK {
		t.Fatalf("PUT with the token: %d %s", code, msg)
	}
	for _, p := range []string{"/metrics", "/", sources.APIPath, "/-/healthy"} {
		if code, _ := send(t, http.MethodGet, l.URL+p, ""); code != http.StatusOK {
			t.Errorf("GET %s: %d; reads must stay open", p, code)
		}
	}
}
