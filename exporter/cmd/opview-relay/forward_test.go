package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opview/opview/exporter/persist"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func TestIssue3FlagsNameTheProblem(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"forward", "--to", "http://r:9091", "--job", "j"}, "--from"},
		{[]string{"forward", "--from", "http://o:8080/metrics", "--to", "r:9091", "--job", "j"}, "--to"},
		{[]string{"forward", "--from", "http://o:8080/metrics", "--to", "http://r:9091", "--job", "j", "--interval", "soon"}, "--interval"},
		{[]string{"forward", "--from", "http://o:8080/metrics", "--to", "http://r:9091", "--job", "j", "--from.token-file", filepath.Join(dir, "nope")}, "nope"},
		{[]string{"serve", "--source", "no-url"}, "--source"},
		{[]string{"serve", "--source", "a=http://x/metrics", "--source", "a=http://y/metrics"}, "given twice"},
		{[]string{"serve", "--web.write-token-file", empty}, "--web.write-token-file"},
		{[]string{"serve", "--persistence.interval", "-1s"}, "--persistence.interval"},
	} {
		var out syncBuf
		code := run(context.Background(), c.args, &out, &out)
		if code != 2 || !strings.Contains(out.String(), c.want) {
			t.Errorf("%v: exit %d, output %q; want 2 mentioning %q", c.args, code, out.String(), c.want)
		}
	}
}

// serve with a pull source, a write token and a persistence file, run as the command runs: the
// source is scraped, the group is saved on shutdown.
func TestServeSourcesTokenPersistence(t *testing.T) {
	op := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write([]byte("# TYPE widgets_total counter\nwidgets_total 5\n"))
	}))
	defer op.Close()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stateFile := filepath.Join(dir, "state.json")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuf
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--web.listen-address=" + addr, "--source", "lan=" + op.URL + "/metrics",
			"--web.write-token-file", tokenFile, "--persistence.file", stateFile}, &out, &out)
	}()
	url := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url + "/metrics")
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if strings.Contains(b.String(), `widgets_total{instance="`+strings.TrimPrefix(op.URL, "http://")+`",job="lan"} 5`) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the --source's samples never reached /metrics; log:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling interval, with a deadline
	}
	resp, err := http.Post(url+"/metrics/job/cli", "text/plain", strings.NewReader("cli_test 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("push without the token: %d", resp.StatusCode)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d; log:\n%s", code, out.String())
	}
	_, groups, err := persist.ReadFile(stateFile)
	if err != nil || len(groups) != 1 || groups[0].Labels["job"] != "lan" {
		t.Fatalf("state saved on shutdown: %+v %v", groups, err)
	}
}
