package relay

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/opview/opview/internal/promtest"
)

// live is a relay served on a real listener with its background loops running.
type live struct {
	*Relay
	url  string
	logs *promtest.Buffer
	stop func()
}

// startLive builds a relay from cfg (with a logger capturing its output) and serves it until
// the test ends or stop is called; stop also saves the persistence file, as the command does.
func startLive(t *testing.T, cfg Config) *live {
	t.Helper()
	logs := &promtest.Buffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: r.Handler()}
	go srv.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	var once sync.Once
	l := &live{Relay: r, url: "http://" + ln.Addr().String(), logs: logs}
	l.stop = func() {
		once.Do(func() {
			srv.Close()
			cancel()
			<-done
			if err := r.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	t.Cleanup(l.stop)
	return l
}

func request(t *testing.T, method, url, body string, header ...string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
