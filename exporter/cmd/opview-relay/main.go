// Command opview-relay re-exposes metrics pushed or forwarded by Kubernetes operators running out
// of cluster, for Prometheus to scrape. main.go is wiring only: flags into relay.Config, the
// server into exporter-toolkit's web server, signals into a graceful shutdown.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/alecthomas/units"
	"github.com/prometheus/common/promslog"
	promslogflag "github.com/prometheus/common/promslog/flag"

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
	// Without a command, --help describes every command and its flags: serve is the default.
	app.UsageTemplate(kingpin.LongHelpTemplate)
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

// durationFlag parses like kingpin's Duration but names the flag in its errors
// ("--group.ttl: invalid duration ...").
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

// sizeFlag is a size flag with a default, naming the flag in its errors.
func sizeFlag(cmd *kingpin.CmdClause, name, help string, def int64) *int64 {
	v := new(int64)
	cmd.Flag(name, help).Default(units.Base2Bytes(def).String()).PlaceHolder("SIZE").SetValue(&namedValue{name: name, set: func(s string) (string, error) {
		b, err := units.ParseBase2Bytes(s)
		if err != nil {
			return "", fmt.Errorf("invalid size %q (examples: 512KiB, 4MiB)", s)
		}
		*v = int64(b)
		return units.Base2Bytes(b).String(), nil
	}})
	return v
}

// autoBytesFlag is a size flag whose default depends on the process (its memory limit): given
// reports whether the command line set it.
func autoBytesFlag(cmd *kingpin.CmdClause, name, help string) (v *int64, given func() bool) {
	v = new(int64)
	nv := &namedValue{name: name, set: func(s string) (string, error) {
		b, err := units.ParseBase2Bytes(s)
		if err != nil {
			return "", fmt.Errorf("invalid size %q (examples: 4MiB, 1GiB)", s)
		}
		*v = int64(b)
		return units.Base2Bytes(b).String(), nil
	}}
	cmd.Flag(name, help).PlaceHolder("SIZE").SetValue(nv)
	return v, func() bool { return nv.given }
}

type namedValue struct {
	name, shown string
	given       bool // set from the command line, not from the default
	set         func(string) (string, error)
}

func (n *namedValue) Set(s string) error {
	shown, err := n.set(s)
	if err != nil {
		return fmt.Errorf("--%s: %w", n.name, err)
	}
	n.shown = shown
	n.given = true
	return nil
}

func (n *namedValue) String() string { return n.shown }

func usageError(logger *slog.Logger, msg string) int {
	logger.Error(msg)
	return 2
}
