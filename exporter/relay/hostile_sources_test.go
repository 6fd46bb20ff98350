package relay_test

// A LAN client with bad intentions against the pull sources: each test is one way to make the
// relay fetch, read or keep what it should not, and asserts a clear 4xx or a refused source, and
// that the group stored before is intact.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opview/opview/exporter/auth"
	"github.com/opview/opview/exporter/sources"
	"github.com/opview/opview/internal/promtest"
	"github.com/opview/opview/internal/relaytest"
)

const writeToken = "w"

// hostileRelay starts a relay with the bundle's settings, requiring writeToken (unless open), and
// stores the group {job="keep"} that every test checks at its end.
func hostileRelay(t *testing.T, open bool, lim sources.Limits) (base string, logs *promtest.Buffer) {
	t.Helper()
	cfg := bundleConfig()
	cfg.SourceLimits = lim
	if !open {
		cfg.WriteTokens = writeTokens(t)
	}
	srv := relaytest.Start(t, cfg)
	base, logs = srv.URL, srv.Logs
	if code, msg := call(t, http.MethodPut, base+"/metrics/job/keep", "# TYPE kept gauge\nkept 42\n"); code != http.StatusOK {
		t.Fatalf("storing the group to keep: %d %s", code, msg)
	}
	t.Cleanup(func() {
		if v, ok := promtest.Value(promtest.Scrape(t, base+"/metrics"), "kept", map[string]string{"job": "keep"}); !ok || v != 42 {
			t.Errorf("the group stored before is not intact: kept = %v %v", v, ok)
		}
	})
	return base, logs
}

func writeTokens(t *testing.T) *auth.Tokens {
	t.Helper()
	tokens, err := auth.ParseTokens([]byte(writeToken + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}

// call sends a request with the write token.
func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	return do(t, method, url, "", []byte(body), "Authorization", "Bearer "+writeToken)
}

// target is an endpoint the relay should not reach; it counts the requests it gets.
type target struct {
	*httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	auth []string // Authorization headers received
}

func newTarget(t *testing.T, h http.HandlerFunc) *target {
	t.Helper()
	tg := &target{}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tg.hits.Add(1)
		tg.mu.Lock()
		tg.auth = append(tg.auth, r.Header.Get("Authorization"))
		tg.mu.Unlock()
		if h != nil {
			h(w, r)
		}
	}))
	t.Cleanup(tg.Close)
	return tg
}

func (tg *target) port() uint16 {
	return tg.Listener.Addr().(*net.TCPAddr).AddrPort().Port()
}

func metricsHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	fmt.Fprint(w, "# TYPE up_here gauge\nup_here 1\n")
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

func errorOf(t *testing.T, msg string) string {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal([]byte(msg), &e); err != nil || e.Error == "" {
		t.Fatalf("answer %q is not a JSON error: %v", msg, err)
	}
	return e.Error
}

// sourceStatus is the part of a source's status the tests read.
type sourceStatus struct {
	Name   string
	Spec   json.RawMessage
	Health sources.Health
}

func listSources(t *testing.T, base string) (raw string, list []sourceStatus) {
	t.Helper()
	code, msg := call(t, http.MethodGet, base+sources.APIPath, "")
	var out struct{ Sources []sourceStatus }
	if err := json.Unmarshal([]byte(msg), &out); code != http.StatusOK || err != nil {
		t.Fatalf("GET %s: %d %s %v", sources.APIPath, code, msg, err)
	}
	return msg, out.Sources
}

// Finding 1: without a write token, the sources API does not fetch on anyone's request.
func TestSourceAPIRefusesWritesWithoutWriteToken(t *testing.T) {
	base, _ := hostileRelay(t, true, sources.Limits{AllowCIDRs: loopback})
	tg := newTarget(t, metricsHandler)
	code, msg := call(t, http.MethodPut, base+sources.APIPath+"/probe", `{"url": "`+tg.URL+`/metrics"}`)
	if code != http.StatusForbidden || !strings.Contains(errorOf(t, msg), "--web.write-token-file") {
		t.Fatalf("PUT on a relay without a write token: %d %s; want 403 naming --web.write-token-file", code, msg)
	}
	if code, msg := call(t, http.MethodDelete, base+sources.APIPath+"/probe", ""); code != http.StatusForbidden {
		t.Fatalf("DELETE on a relay without a write token: %d %s", code, msg)
	}
	if _, list := listSources(t, base); len(list) != 0 || tg.hits.Load() != 0 {
		t.Fatalf("sources %v, target hit %d times; want nothing fetched", list, tg.hits.Load())
	}
}

// Finding 1: an API source may not reach loopback, link-local, unspecified addresses or names
// that resolve to them; the relay answers 400 before connecting anywhere.
func TestSourceAPIRefusesLoopbackTarget(t *testing.T) {
	base, _ := hostileRelay(t, false, sources.Limits{})
	tg := newTarget(t, metricsHandler)
	for _, u := range []string{
		tg.URL + "/metrics",
		fmt.Sprintf("http://localhost:%d/metrics", tg.port()),
		fmt.Sprintf("http://[::1]:%d/metrics", tg.port()),
		fmt.Sprintf("http://[::ffff:127.0.0.1]:%d/metrics", tg.port()),
		fmt.Sprintf("http://0.0.0.0:%d/metrics", tg.port()),
		"http://169.254.169.254/latest/meta-data/",
		"http://[fe80::1]/metrics",
	} {
		code, msg := call(t, http.MethodPut, base+sources.APIPath+"/probe", `{"url": "`+u+`"}`)
		if code != http.StatusBadRequest || !strings.Contains(errorOf(t, msg), "--sources.allow-cidr") {
			t.Errorf("PUT %s: %d %s; want 400 naming --sources.allow-cidr", u, code, msg)
		}
	}
	if _, list := listSources(t, base); len(list) != 0 || tg.hits.Load() != 0 {
		t.Fatalf("sources %v, target hit %d times; want nothing fetched", list, tg.hits.Load())
	}
}

// Finding 1: a source is not a way to another host: a redirect elsewhere is not followed.
func TestSourceRedirectToAnotherHostIsNotFollowed(t *testing.T) {
	base, _ := hostileRelay(t, false, sources.Limits{AllowCIDRs: loopback})
	internal := newTarget(t, metricsHandler)
	away := fmt.Sprintf("http://localhost:%d/metrics", internal.port())
	redirector := newTarget(t, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, away, http.StatusFound) })
	code, msg := call(t, http.MethodPut, base+sources.APIPath+"/hop", `{"url": "`+redirector.URL+`/metrics"}`)
	if code != http.StatusCreated {
		t.Fatalf("PUT: %d %s", code, msg)
	}
	var st sourceStatus
	if err := json.Unmarshal([]byte(msg), &st); err != nil {
		t.Fatal(err)
	}
	if st.Health.Up || !strings.Contains(st.Health.LastError, "redirected to another host") || strings.Contains(st.Health.LastError, away) {
		t.Fatalf("source after a redirect to another host: %+v", st.Health)
	}
	if n := internal.hits.Load(); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
}

// Finding 1: what an endpoint answers never comes back through the API, the status page or
// the logs: errors name the status and Content-Type only.
func TestSourceErrorsDoNotQuoteTheAnswer(t *testing.T) {
	base, logs := hostileRelay(t, false, sources.Limits{AllowCIDRs: loopback})
	const secret = "db_password=hunter2"
	errorPage := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, "<pre>"+secret+"</pre>")
	})
	passwd := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "root:x:0:0:root:/root:/bin/bash\n"+secret+"\n")
	})
	for name, tg := range map[string]*target{"error-page": errorPage, "passwd": passwd} {
		if code, msg := call(t, http.MethodPut, base+sources.APIPath+"/"+name, `{"url": "`+tg.URL+`/"}`); code != http.StatusCreated {
			t.Fatalf("PUT %s: %d %s", name, code, msg)
		}
	}
	raw, list := listSources(t, base)
	_, page := call(t, http.MethodGet, base+"/", "")
	_, metrics := call(t, http.MethodGet, base+"/metrics", "")
	for where, text := range map[string]string{"API": raw, "status page": page, "log": logs.String(), "/metrics": metrics} {
		if strings.Contains(text, "hunter2") || strings.Contains(text, "/bin/bash") {
			t.Errorf("the %s quotes an endpoint's answer:\n%s", where, text)
		}
	}
	want := map[string]string{"error-page": `HTTP 500 Internal Server Error (Content-Type "text/html")`, "passwd": "text exposition is invalid at line 1"}
	for _, st := range list {
		if st.Health.Up || !strings.Contains(st.Health.LastError, want[st.Name]) {
			t.Errorf("%s: %+v; want down with %q", st.Name, st.Health, want[st.Name])
		}
	}
}

// Finding 2: a client of the API may not make the relay read its files (and learns nothing of
// them: an existing file and a missing one get the same answer), nor fetch other URLs.
func TestSourceAPIRefusesLocalFiles(t *testing.T) {
	base, _ := hostileRelay(t, false, sources.Limits{AllowCIDRs: loopback})
	tg := newTarget(t, metricsHandler)
	existing := promtest.WriteFile(t, "sa-token", "eyJhbGciOi-service-account-token\n")
	u := tg.URL + "/metrics"
	answers := map[string]string{}
	for _, c := range []struct{ name, body, field string }{
		{"legacy-token-file", `{"url": "` + u + `", "auth": {"bearer_token_file": "FILE"}}`, "auth.bearer_token_file"},
		{"token-file", `{"url": "` + u + `", "bearer_token_file": "FILE"}`, "bearer_token_file"},
		{"credentials-file", `{"url": "` + u + `", "authorization": {"credentials_file": "FILE"}}`, "authorization.credentials_file"},
		{"password-file", `{"url": "` + u + `", "basic_auth": {"username": "u", "password_file": "FILE"}}`, "basic_auth.password_file"},
		{"legacy-ca-file", `{"url": "` + u + `", "auth": {"ca_file": "FILE"}}`, "auth.ca_file"},
		{"ca-file", `{"url": "` + u + `", "tls_config": {"ca_file": "FILE"}}`, "tls_config.ca_file"},
		{"cert-file", `{"url": "` + u + `", "tls_config": {"cert_file": "FILE", "key_file": "FILE"}}`, "tls_config.cert_file"},
		{"headers", `{"url": "` + u + `", "http_headers": {"X-Token": {"files": ["FILE"]}}}`, "http_headers"},
		{"oauth2", `{"url": "` + u + `", "oauth2": {"client_id": "x", "client_secret": "y", "token_url": "http://169.254.169.254/token"}}`, "oauth2"},
		{"proxy", `{"url": "` + u + `", "proxy_url": "http://127.0.0.1:1"}`, "proxy_url"},
	} {
		for _, file := range []string{existing, existing + ".missing"} {
			code, msg := call(t, http.MethodPut, base+sources.APIPath+"/"+c.name, strings.ReplaceAll(c.body, "FILE", file))
			e := errorOf(t, msg)
			if code != http.StatusBadRequest || !strings.Contains(e, `field "`+c.field+`" is not accepted through the API`) {
				t.Errorf("%s with %s: %d %s; want 400 naming %s", c.name, file, code, msg, c.field)
			}
			if prev, ok := answers[c.name]; ok && prev != e {
				t.Errorf("%s: the answer tells an existing file from a missing one:\n%s\n%s", c.name, prev, e)
			}
			answers[c.name] = e
		}
	}
	if _, list := listSources(t, base); len(list) != 0 || tg.hits.Load() != 0 {
		t.Fatalf("sources %v, target hit %d times (Authorization %q); want nothing fetched", list, tg.hits.Load(), tg.auth)
	}
}

// Finding 3: the API holds a bounded number of sources.
func TestSourceCountIsBounded(t *testing.T) {
	base, _ := hostileRelay(t, false, sources.Limits{AllowCIDRs: loopback, MaxAPISources: 3, MinAPIInterval: 10 * time.Millisecond})
	tg := newTarget(t, metricsHandler)
	for i := range 3 {
		if code, msg := call(t, http.MethodPut, fmt.Sprintf("%s%s/s%d", base, sources.APIPath, i), `{"url": "`+tg.URL+`/metrics", "interval": "1h"}`); code != http.StatusCreated {
			t.Fatalf("PUT %d: %d %s", i, code, msg)
		}
	}
	code, msg := call(t, http.MethodPut, base+sources.APIPath+"/one-too-many", `{"url": "`+tg.URL+`/metrics", "interval": "1h"}`)
	if code != http.StatusForbidden || !strings.Contains(errorOf(t, msg), "--sources.max-api-sources") {
		t.Fatalf("PUT past the limit: %d %s; want 403 naming --sources.max-api-sources", code, msg)
	}
	// The change rate (3 every 10ms here) may refuse the replacement right after the burst above:
	// it is retried until the rate allows it, and must then succeed.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, msg := call(t, http.MethodPut, base+sources.APIPath+"/s0", `{"url": "`+tg.URL+`/other", "interval": "1h"}`)
		if code == http.StatusOK {
			break
		}
		if code != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("replacing a source at the limit: %d %s", code, msg)
		}
	}
	if _, list := listSources(t, base); len(list) != 3 {
		t.Fatalf("%d sources, want 3", len(list))
	}
}

// Finding 3: an API source is scraped at most every --sources.min-api-interval, and sources
// can't be changed faster than they may be scraped (each PUT scrapes at once).
func TestSourceIntervalAndChangeRateAreBounded(t *testing.T) {
	base, _ := hostileRelay(t, false, sources.Limits{AllowCIDRs: loopback, MaxAPISources: 4, MinAPIInterval: time.Minute})
	tg := newTarget(t, metricsHandler)
	code, msg := call(t, http.MethodPut, base+sources.APIPath+"/often", `{"url": "`+tg.URL+`/metrics", "interval": "10ms"}`)
	if code != http.StatusBadRequest || !strings.Contains(errorOf(t, msg), "at most every 1m0s (the relay's --sources.min-api-interval)") {
		t.Fatalf("PUT with a 10ms interval: %d %s", code, msg)
	}
	limited := 0
	for i := range 12 {
		code, msg := call(t, http.MethodPut, base+sources.APIPath+"/churn", fmt.Sprintf(`{"url": "%s/metrics?%d", "interval": "1m"}`, tg.URL, i))
		switch code {
		case http.StatusCreated, http.StatusOK:
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Fatalf("PUT %d: %d %s", i, code, msg)
		}
	}
	// 4 sources every minute: a burst of 4, then one every 15s.
	if hits := tg.hits.Load(); limited < 7 || hits > 5 {
		t.Fatalf("%d of 12 PUTs refused, %d scrapes; want the PUTs past the burst refused", limited, hits)
	}
}

// Finding 3: an answer that never ends is cut at --sources.body-size-limit, and a slow one at
// --sources.scrape-timeout, which a source can't raise.
func TestSourceAnswerSizeAndTimeAreBounded(t *testing.T) {
	base, _ := hostileRelay(t, false, sources.Limits{AllowCIDRs: loopback, BodySizeLimit: 256 << 10, ScrapeTimeout: 2 * time.Second})
	var sent atomic.Int64
	huge := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, "# TYPE huge gauge\n")
		for i := 0; r.Context().Err() == nil; i++ {
			n, err := fmt.Fprintf(w, "huge{i=\"%d\"} 1\n", i)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	stop := make(chan struct{})
	defer close(stop)
	slow := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	})
	for name, c := range map[string]struct{ url, want string }{
		"huge": {huge.URL, "larger than the limit of 256KiB (the relay's --sources.body-size-limit)"},
		"slow": {slow.URL, "no complete answer within the scrape timeout of 2s (the relay's --sources.scrape-timeout)"},
	} {
		start := time.Now()
		code, msg := call(t, http.MethodPut, base+sources.APIPath+"/"+name, `{"url": "`+c.url+`/metrics"}`)
		var st sourceStatus
		if err := json.Unmarshal([]byte(msg), &st); code != http.StatusCreated || err != nil {
			t.Fatalf("PUT %s: %d %s", name, code, msg)
		}
		if st.Health.Up || !strings.Contains(st.Health.LastError, c.want) || time.Since(start) > 8*time.Second {
			t.Errorf("%s: %+v after %s; want down with %q within the timeout", name, st.Health, time.Since(start), c.want)
		}
	}
	code, msg := call(t, http.MethodPut, base+sources.APIPath+"/patient", `{"url": "`+slow.URL+`/metrics", "timeout": "1m"}`)
	if code != http.StatusBadRequest || !strings.Contains(errorOf(t, msg), "at most 2s (the relay's --sources.scrape-timeout)") {
		t.Fatalf("PUT with a timeout past the limit: %d %s", code, msg)
	}
}

// Finding 11: a password in a source's URL is never shown: not on the API, not on the status
// page, not in the logs, for sources of the API and of the operator alike.
func TestSourceURLPasswordIsRedacted(t *testing.T) {
	const pw = "s3cretpw"
	tg := newTarget(t, func(w http.ResponseWriter, r *http.Request) {
		if _, p, ok := r.BasicAuth(); !ok || p != pw {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		metricsHandler(w, r)
	})
	withPassword := strings.Replace(tg.URL, "http://", "http://op:"+pw+"@", 1) + "/metrics"
	cfg := bundleConfig()
	cfg.WriteTokens, cfg.SourceLimits = writeTokens(t), sources.Limits{AllowCIDRs: loopback}
	cfg.Sources = map[string]sources.Spec{"operator-given": {URL: withPassword}}
	srv := relaytest.Start(t, cfg)
	base, logs := srv.URL, srv.Logs
	if code, msg := call(t, http.MethodPut, base+"/metrics/job/keep", "# TYPE kept gauge\nkept 42\n"); code != http.StatusOK {
		t.Fatalf("push: %d %s", code, msg)
	}
	code, msg := call(t, http.MethodPut, base+sources.APIPath+"/api-given", `{"url": "`+withPassword+`"}`)
	if code != http.StatusCreated || strings.Contains(msg, pw) || !strings.Contains(msg, "op:xxxxx@") {
		t.Fatalf("PUT: %d %s; want 201 with the password redacted", code, msg)
	}
	promtest.Eventually(t, 10*time.Second, "both sources up (the password is used)", func() bool {
		_, list := listSources(t, base)
		return len(list) == 2 && list[0].Health.Up && list[1].Health.Up
	})
	raw, _ := listSources(t, base)
	_, page := call(t, http.MethodGet, base+"/", "")
	for where, text := range map[string]string{"API": raw, "status page": page, "log": logs.String()} {
		if strings.Contains(text, pw) {
			t.Errorf("the %s shows the URL's password:\n%s", where, text)
		}
		if !strings.Contains(text, "op:xxxxx@") {
			t.Errorf("the %s does not show the redacted URL:\n%s", where, text)
		}
	}
	if v, ok := promtest.Value(promtest.Scrape(t, base+"/metrics"), "kept", map[string]string{"job": "keep"}); !ok || v != 42 {
		t.Errorf("the group stored before is not intact: %v %v", v, ok)
	}
}
