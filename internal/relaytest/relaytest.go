// Package relaytest starts a real opview-relay server for tests in every module of the
// repository: the one way tests get a live relay.
package relaytest

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/opview/opview/exporter/relay"
	"github.com/opview/opview/internal/promtest"
)

// Server is a relay built from a Config, served on a loopback listener with its background loops
// (expiry, pull sources, periodic saves) running.
type Server struct {
	*relay.Relay
	// URL is the relay's base URL, http://127.0.0.1:<port>.
	URL string
	// Logs is what the relay logged (debug level), unless the Config brought its own logger.
	Logs *promtest.Buffer

	stop func()
}

// Start serves a relay built from cfg until the test ends or Stop is called.
func Start(t testing.TB, cfg relay.Config) *Server {
	t.Helper()
	return StartAt(t, "127.0.0.1:0", cfg)
}

// StartAt is Start on a given address: the address of a relay stopped before, to restart it where
// its clients point.
func StartAt(t testing.TB, addr string, cfg relay.Config) *Server {
	t.Helper()
	logs := &promtest.Buffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := relay.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	wait := r.Start(ctx) // before serving, as the command does
	done := make(chan struct{})
	go func() { wait(); close(done) }()
	srv := &http.Server{Handler: r.Handler()}
	go srv.Serve(ln)
	var once sync.Once
	s := &Server{Relay: r, URL: "http://" + ln.Addr().String(), Logs: logs}
	s.stop = func() {
		once.Do(func() {
			srv.Close()
			cancel()
			<-done
			if err := r.Close(); err != nil {
				t.Errorf("relay Close: %v", err)
			}
		})
	}
	t.Cleanup(s.stop)
	return s
}

// Stop stops serving and saves the persistence file, as the command does on SIGTERM.
func (s *Server) Stop() { s.stop() }
