// Package relaytest starts a real opview-relay server for tests in every module of the
// repository.
package relaytest

import (
	"context"
	"net"
	"net/http"
	"testing"

	"github.com/opview/opview/exporter/relay"
)

// Start serves a relay built from cfg on a loopback listener with its background loops (expiry,
// pull sources) running, and returns it with its base URL. Both stop when the test ends.
func Start(t testing.TB, cfg relay.Config) (*relay.Relay, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := relay.New(cfg)
	srv := &http.Server{Handler: r.Handler()}
	go srv.Serve(ln)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { srv.Close(); cancel(); <-done })
	return r, "http://" + ln.Addr().String()
}
