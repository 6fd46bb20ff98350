// Command opview-bench-limits serves the limits `make bench` measures the relay against (see
// bench.LimitsHandler): the parse-only limit of a push and the bare-bytes limit of a scrape. The
// harness (opview-bench) starts it like the servers, as a process of its own.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/opview/opview/bench"
	"github.com/opview/opview/exporter/relay"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("opview-bench-limits", flag.ContinueOnError)
	listen := fs.String("web.listen-address", "127.0.0.1:9099", "Address to listen on.")
	maxBody := fs.Int64("push.max-body-bytes", relay.DefaultMaxBodyBytes, "Largest push body parsed (the relay's default).")
	maxSeries := fs.Int("group.max-series", relay.DefaultMaxSeries, "Most series a push may carry (the relay's --group.max-series).")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv := &http.Server{Addr: *listen, Handler: bench.LimitsHandler(*maxBody, *maxSeries)}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "opview-bench-limits:", err)
		return 1
	}
	return 0
}
