package auth

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseTokens(t *testing.T) {
	tk, err := ParseTokens([]byte("# comment\n\n  old-token \nnew-token\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"old-token", "new-token"} {
		if !tk.accepts(tok) {
			t.Errorf("token %q not accepted", tok)
		}
	}
	for _, tok := range []string{"", "old", "# comment", "new-token\n"} {
		if tk.accepts(tok) {
			t.Errorf("token %q accepted", tok)
		}
	}
	for _, bad := range []string{"", "# only a comment\n\n", "two words\n"} {
		if _, err := ParseTokens([]byte(bad)); err == nil {
			t.Errorf("ParseTokens(%q) accepted", bad)
		}
	}
}

func TestLoadTokenFileNamesTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tok")
	if _, err := LoadTokenFile(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("missing file: err %v does not name %s", err, p)
	}
	if err := os.WriteFile(p, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTokenFile(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("empty file: err %v does not name %s", err, p)
	}
}

func TestRequire(t *testing.T) {
	tk, err := ParseTokens([]byte("s3cret\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := Require(tk, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	cases := []struct {
		name   string
		set    func(r *http.Request)
		code   int
		inBody string
	}{
		{"none", func(r *http.Request) {}, http.StatusUnauthorized, "requires a token"},
		{"bearer ok", func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }, http.StatusTeapot, ""},
		{"bearer lower-case scheme", func(r *http.Request) { r.Header.Set("Authorization", "bearer s3cret") }, http.StatusTeapot, ""},
		{"bearer wrong", func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }, http.StatusForbidden, "not one of the relay's write tokens"},
		{"basic ok", func(r *http.Request) { r.SetBasicAuth("anyone", "s3cret") }, http.StatusTeapot, ""},
		{"basic wrong", func(r *http.Request) { r.SetBasicAuth("s3cret", "x") }, http.StatusForbidden, "not one of"},
		{"other scheme", func(r *http.Request) { r.Header.Set("Authorization", "Digest x") }, http.StatusForbidden, "not one of"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPut, "/metrics/job/x", nil)
			c.set(r)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != c.code {
				t.Fatalf("code %d, want %d (body %q)", w.Code, c.code, w.Body)
			}
			if !strings.Contains(w.Body.String(), c.inBody) {
				t.Errorf("body %q lacks %q", w.Body, c.inBody)
			}
			if c.code == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
	if Require(nil, h) == nil {
		t.Error("Require(nil) returned nil")
	}
}
