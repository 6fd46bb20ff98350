package sources

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opview/opview/exporter/store"
)

func serveAPI(t *testing.T, m *Manager, method, name, body string) *httptest.ResponseRecorder {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("GET "+APIPath, ListHandler(m))
	mux.Handle("PUT "+APIPath+"/{name}", PutHandler(m, nil))
	mux.Handle("DELETE "+APIPath+"/{name}", DeleteHandler(m))
	path := APIPath
	if name != "" {
		path += "/" + name
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	return rec
}

func TestAPIWithoutWriteToken(t *testing.T) {
	m := NewManager(Options{Store: store.New(store.Options{})})
	for _, method := range []string{http.MethodPut, http.MethodDelete} {
		rec := serveAPI(t, m, method, "x", `{"url": "http://192.0.2.1/metrics"}`)
		var e struct{ Error string }
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || rec.Code != http.StatusForbidden || !strings.Contains(e.Error, "--web.write-token-file") {
			t.Errorf("%s: %d %s", method, rec.Code, rec.Body)
		}
	}
	if rec := serveAPI(t, m, http.MethodGet, "", ""); rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != "{\n  \"sources\": []\n}" {
		t.Errorf("GET: %d %s", rec.Code, rec.Body)
	}
}

func TestAPIAnswers(t *testing.T) {
	ep := newEndpoint(t, "")
	m, _ := newManager(t, Options{API: true, Limits: Limits{AllowCIDRs: loopback, MaxAPISources: 2, MinAPIInterval: time.Minute}})
	if rec := serveAPI(t, m, http.MethodPut, "big", `{"url": "`+strings.Repeat("a", maxSpecBytes)+`"}`); rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "larger than 64KiB") {
		t.Errorf("a large body: %d %s", rec.Code, rec.Body)
	}
	rec := serveAPI(t, m, http.MethodPut, "op", `{"url": "`+ep.URL+`/metrics", "basic_auth": {"username": "u", "password": "pw-123"}}`)
	if rec.Code != http.StatusCreated || rec.Header().Get("Content-Type") != "application/json" || strings.Contains(rec.Body.String(), "pw-123") {
		t.Fatalf("PUT: %d %s", rec.Code, rec.Body)
	}
	var st struct {
		Name   string
		Origin string
		Spec   map[string]any
		Health Health
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.Name != "op" || st.Origin != OriginAPI || st.Spec["interval"] != "1m0s" || st.Health.Scrapes != 1 {
		t.Fatalf("PUT answer %s: %v", rec.Body, err)
	}
	if rec := serveAPI(t, m, http.MethodPut, "op", `{"url": "`+ep.URL+`/metrics"}`); rec.Code != http.StatusOK {
		t.Fatalf("PUT again: %d %s", rec.Code, rec.Body)
	}
	// 2 sources a minute: the burst is spent.
	rec = serveAPI(t, m, http.MethodPut, "op", `{"url": "`+ep.URL+`/metrics"}`)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("PUT past the rate: %d %s %v", rec.Code, rec.Body, rec.Header())
	}
	if rec := serveAPI(t, m, http.MethodDelete, "op", ""); rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", rec.Code, rec.Body)
	}
	if rec := serveAPI(t, m, http.MethodDelete, "op", ""); rec.Code != http.StatusNotFound {
		t.Fatalf("DELETE again: %d %s", rec.Code, rec.Body)
	}
}
