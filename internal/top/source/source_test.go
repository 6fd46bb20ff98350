package source

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const relayExposition = `# TYPE go_goroutines gauge
go_goroutines 9
go_goroutines{instance="a",job="op"} 40
go_goroutines{instance="b",job="op"} 41
go_goroutines{instance="x",job="other"} 42
`

func TestRelayGroupIsPicked(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write([]byte(relayExposition))
	}))
	defer srv.Close()
	for _, c := range []struct {
		job, instance string
		want          string // the value kept, or the error's excerpt
	}{
		{"op", "b", "41"},
		{"other", "", "42"},
		{"op", "", "pick one with --instance"},
		{"", "", "pick one with --job and --instance"},
		{"nope", "", `no series with job="nope"`},
		{"op", "zz", `no series of the group job="op" instance="zz"`},
	} {
		s, err := New(Config{Target: srv.URL + "/metrics", Job: c.job, Instance: c.instance})
		if err != nil {
			t.Fatal(err)
		}
		fams, err := s.Fetch(context.Background())
		if err != nil {
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("job=%q instance=%q: error %q, want it to say %q", c.job, c.instance, err, c.want)
			}
			continue
		}
		if len(fams) != 1 || len(fams[0].Metric) != 1 {
			t.Errorf("job=%q instance=%q: got %v", c.job, c.instance, fams)
			continue
		}
		if got := fams[0].Metric[0].Gauge.GetValue(); got != atof(c.want) {
			t.Errorf("job=%q instance=%q: kept %v, want %s", c.job, c.instance, got, c.want)
		}
		if !strings.Contains(s.String(), `job="`+c.job+`"`) {
			t.Errorf("source name %q does not name the group", s.String())
		}
	}
}

func atof(s string) float64 {
	var f float64
	for _, c := range s {
		if c < '0' || c > '9' {
			return -1
		}
		f = f*10 + float64(c-'0')
	}
	return f
}

func TestFileAndStdin(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.prom")
	os.WriteFile(path, []byte("# TYPE go_goroutines gauge\ngo_goroutines 7\n# TYPE other gauge\nother 1\n"), 0o600)
	s, err := New(Config{Target: path, Keep: []string{"go_goroutines"}})
	if err != nil {
		t.Fatal(err)
	}
	fams, err := s.Fetch(context.Background())
	if err != nil || len(fams) != 1 || !s.Once() {
		t.Fatalf("fams %v, err %v, once %v", fams, err, s.Once())
	}
	s, _ = New(Config{Target: path, MaxBytes: 10})
	if _, err := s.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "--max-bytes=10") {
		t.Fatalf("oversized file: %v, want the flag named", err)
	}
	s, _ = New(Config{Target: path, MaxSeries: 1})
	if _, err := s.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "--max-series=1") {
		t.Fatalf("too many series: %v, want the flag named", err)
	}
	s, _ = New(Config{Target: "-", Stdin: strings.NewReader("garbage{\n")})
	if _, err := s.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "standard input") {
		t.Fatalf("bad stdin: %v", err)
	}
}

func TestConfigErrorsNameTheFlag(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Target: "http://x", Instance: "a"}, "--instance needs --job"},
		{Config{Target: "ftp://x"}, "want an http:// or https:// URL"},
		{Config{Target: ""}, "give the operator's metrics URL"},
		{Config{Target: "/nonexistent/file"}, "exposition file"},
		{Config{Target: "-", BearerTokenFile: "t"}, "--from.token-file"},
		{Config{Target: "https://x/metrics", BearerTokenFile: "/nonexistent"}, "bearer token file"},
	} {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.cfg, err, c.want)
		}
	}
}
