// Command opview-relay re-exposes metrics pushed or forwarded by Kubernetes operators running out
// of cluster, for Prometheus to scrape. main.go is wiring only: flags into relay.Config, the
// server into exporter-toolkit's web server, signals into a graceful shutdown.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/alecthomas/units"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/opview/opview/exporter/relay"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// command is a subcommand: its flags are registered on the app and action runs it.
type command struct {
	clause *kingpin.CmdClause
	action func(ctx context.Context, logger *slog.Logger) int
}

// run parses args and runs the chosen subcommand; it returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("opview-relay", `Relay for the metrics of Kubernetes operators that run out of cluster.

"serve" (the default) accepts pushes on the Pushgateway API (PUT, POST and DELETE on
/metrics/job/<job>{/<label>/<value>}) and exposes every group's samples on /metrics for Prometheus
(scrape it with honor_labels: true). A group that has not pushed within --group.ttl leaves /metrics,
so dashboards never show frozen values.`)
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.Terminate(nil)
	app.HelpFlag.Short('h')
	app.Version(relay.Version())
	logCfg := &promslog.Config{Style: promslog.SlogStyle, Writer: stderr}
	promslogflag.AddFlags(app, logCfg)

	cmds := []command{serveCommand(app), forwardCommand(app)}
	exit := -1
	app.Terminate(func(code int) { exit = code })
	chosen, err := app.Parse(args)
	if exit >= 0 {
		return exit // --help or --version
	}
	if err != nil {
		fmt.Fprintf(stderr, "opview-relay: %v (see --help)\n", err)
		return 2
	}
	logger := promslog.New(logCfg)
	for _, c := range cmds {
		if c.clause.FullCommand() == chosen {
			return c.action(ctx, logger)
		}
	}
	fmt.Fprintf(stderr, "opview-relay: unknown command %q\n", chosen)
	return 2
}

func serveCommand(app *kingpin.Application) command {
	cmd := app.Command("serve", "Accept pushes and expose them on /metrics (the default command).").Default()
	webCfg := kingpinflag.AddFlags(cmd, ":9091")
	ttl := durationFlag(cmd, "group.ttl", "A group that has not pushed for this long leaves /metrics, so its series go stale in Prometheus. 0 keeps groups forever (Pushgateway's behaviour).",
		relay.DefaultGroupTTL)
	forget := durationFlag(cmd, "group.forget-after", "How long an expired group's health series (push_time_seconds, opview_relay_group_fresh=0, ...) stay after it expired.",
		relay.DefaultForgetAfter)
	maxBody := bytesFlag(cmd, "push.max-body-bytes", "Largest push body accepted, before and after gzip decompression (e.g. 16MiB).",
		relay.DefaultMaxBodyBytes)
	maxSeries := cmd.Flag("group.max-series", "Most series one group may hold (histogram buckets count). 0: no limit.").
		Default(fmt.Sprint(relay.DefaultMaxSeries)).Int()
	maxGroups := cmd.Flag("store.max-groups", "Most groups the relay holds. 0: no limit.").
		Default(fmt.Sprint(relay.DefaultMaxGroups)).Int()
	extras := addServeExtras(cmd)

	return command{clause: cmd, action: func(ctx context.Context, logger *slog.Logger) int {
		switch {
		case *ttl < 0:
			return usageError(logger, "--group.ttl must not be negative")
		case *forget < 0:
			return usageError(logger, "--group.forget-after must not be negative")
		case *maxBody <= 0:
			return usageError(logger, "--push.max-body-bytes must be positive")
		case *maxSeries < 0 || *maxGroups < 0:
			return usageError(logger, "--group.max-series and --store.max-groups must not be negative")
		}
		cfg := relay.Config{
			GroupTTL: *ttl, ForgetAfter: *forget, MaxBodyBytes: *maxBody,
			MaxSeries: *maxSeries, MaxGroups: *maxGroups, Logger: logger,
			Settings: map[string]string{
				"group.ttl": ttl.String(), "push.max-body-bytes": units.Base2Bytes(*maxBody).String(),
				"group.max-series": fmt.Sprint(*maxSeries), "store.max-groups": fmt.Sprint(*maxGroups),
			},
		}
		if err := extras.apply(&cfg); err != nil {
			return usageError(logger, err.Error())
		}
		return serve(ctx, relay.New(cfg), webCfg, logger)
	}}
}

// durationFlag and bytesFlag parse like kingpin's Duration and Bytes but name the flag in
// their errors ("--group.ttl: invalid duration ...").
func durationFlag(cmd *kingpin.CmdClause, name, help string, def time.Duration) *time.Duration {
	v := new(time.Duration)
	cmd.Flag(name, help).Default(def.String()).SetValue(&namedValue{name: name, set: func(s string) (string, error) {
		d, err := time.ParseDuration(s)
		if err != nil {
			return "", fmt.Errorf("invalid duration %q (examples: 90s, 5m, 1h)", s)
		}
		*v = d
		return d.String(), nil
	}})
	return v
}

func bytesFlag(cmd *kingpin.CmdClause, name, help string, def int64) *int64 {
	v := new(int64)
	cmd.Flag(name, help).Default(units.Base2Bytes(def).String()).SetValue(&namedValue{name: name, set: func(s string) (string, error) {
		b, err := units.ParseBase2Bytes(s)
		if err != nil {
			return "", fmt.Errorf("invalid size %q (examples: 512KiB, 16MiB)", s)
		}
		*v = int64(b)
		return units.Base2Bytes(b).String(), nil
	}})
	return v
}

type namedValue struct {
	name, shown string
	set         func(string) (string, error)
}

func (n *namedValue) Set(s string) error {
	shown, err := n.set(s)
	if err != nil {
		return fmt.Errorf("--%s: %w", n.name, err)
	}
	n.shown = shown
	return nil
}

func (n *namedValue) String() string { return n.shown }

func usageError(logger *slog.Logger, msg string) int {
	logger.Error(msg)
	return 2
}

// defaultGOGC is the relay's garbage-collection target unless the GOGC environment variable
// says otherwise. The relay's heap is mostly long-lived pre-rendered bytes; collecting at 50%
// growth instead of Go's 100% keeps its resident memory per stored series at about half of
// Pushgateway's for no measurable CPU per push (docs/benchmarks.md). Prometheus ships with 75.
const defaultGOGC = 50

func serve(ctx context.Context, r *relay.Relay, webCfg *web.FlagConfig, logger *slog.Logger) int {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGOGC)
	}
	srv := &http.Server{
		Handler:           r.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go r.Run(ctx)

	errc := make(chan error, 1)
	go func() { errc <- web.ListenAndServe(srv, webCfg, logger) }()
	logger.Info("opview-relay started", "version", relay.Version(), "listen", strings.Join(*webCfg.WebListenAddresses, ","))
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("serving", "err", err)
			return 1
		}
		return 0
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Error("graceful shutdown", "err", err)
		return 1
	}
	if err := r.Close(); err != nil {
		logger.Error("saving the persistence file on shutdown", "err", err)
		return 1
	}
	return 0
}
