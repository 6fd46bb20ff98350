// Command opview is the user-side CLI of opview. "opview top" is a live terminal view of one
// controller-runtime operator's controllers, read from the operator's /metrics, from a relay's
// /metrics (one pushed group), or from a saved exposition file. main.go is wiring only: flags
// into the source, the window and the view.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/alecthomas/units"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/mattn/go-isatty"
	"github.com/prometheus/common/version"

	"github.com/opview/opview/internal/top/source"
	"github.com/opview/opview/internal/top/stats"
	"github.com/opview/opview/internal/top/ui"
	"github.com/opview/opview/internal/top/window"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const topHelp = `A live terminal view of one controller-runtime operator's controllers.

SOURCE is the operator's metrics URL, a relay's /metrics URL (with --job/--instance to pick one
pushed operator; a relay holding one operator needs neither), a saved exposition file (Prometheus
text format), or - for standard input. The view scrapes every --interval and keeps the last
--window of scrapes: rates (reconciles, errors, retries, API requests per second) and quantiles
(p50/p99 of reconcile time and queue latency, as histogram_quantile computes them from bucket
increases) are over that window, and a counter reset (a restarted operator) is handled as rate()
handles it. Memory is bounded: at most --window / --interval scrapes of at most --max-series
series each, and series that vanish from a scrape are dropped.

With --once, or when standard output is not a terminal, it prints the controllers table once as
plain text (from two scrapes --interval apart, so rates are real) and exits.

Examples:
  # the operator running with make run (kubebuilder: --metrics-bind-address=:8080 --metrics-secure=false)
  opview top http://localhost:8080/metrics
  # kubebuilder's default secure metrics (HTTPS on :8443, self-signed certificate, a token)
  kubectl create token <service-account> -n <namespace> > /tmp/metrics-token
  opview top https://localhost:8443/metrics --from.token-file /tmp/metrics-token --from.insecure-skip-verify
  # one operator pushed to (or forwarded to) a relay
  opview top http://relay.example:9091/metrics --job my-operator --instance laptop
  # offline: a saved scrape
  curl -s localhost:8080/metrics > metrics.txt; opview top --once metrics.txt

Keys: arrows or j/k move, Enter opens a controller's detail, Esc goes back, Tab switches between
the controllers and the process screen, / filters, s sorts by the next column (1-9 pick one),
the mouse wheel scrolls, ? shows every key, q quits.`

// stdinArg stands for the source "-" while kingpin parses the arguments.
const stdinArg = "\x00stdin"

// run parses args and runs the chosen command; it returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	app := kingpin.New("opview", "opview's user-side commands: a live terminal view of an operator's controllers (top).")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.HelpFlag.Short('h')
	app.Version(version.Print("opview"))

	top := app.Command("top", topHelp)
	target := top.Arg("source", "The operator's metrics URL, a relay's /metrics URL, a file, or - for standard input.").Required().String()
	interval := durationFlag(top, "interval", "Time between scrapes.", 2*time.Second)
	win := durationFlag(top, "window", "Rates and quantiles are computed over this much of the latest scrapes (at most window/interval scrapes are kept).", 5*time.Minute)
	once := top.Flag("once", "Print the controllers table once as plain text and exit (also what happens when standard output is not a terminal).").Bool()
	job := top.Flag("job", "With a relay's /metrics: the job label of the pushed operator to show.").String()
	instance := top.Flag("instance", "With a relay's /metrics: the instance label of the pushed operator to show (needs --job).").String()
	token := top.Flag("from.token-file", "File with the bearer token for the operator's endpoint (kubebuilder's secure metrics: the output of kubectl create token). Read at every scrape.").String()
	ca := top.Flag("from.ca-file", "CA certificate (PEM) that signed the operator's serving certificate.").String()
	insecure := top.Flag("from.insecure-skip-verify", "Do not verify the operator's certificate (controller-runtime's generated self-signed one).").Bool()
	timeout := durationFlag(top, "timeout", "Timeout of one scrape.", 5*time.Second)
	maxBytes := bytesFlag(top, "max-bytes", "Largest exposition read, from the source's URL, a file or standard input.", 64<<20)
	maxSeries := top.Flag("max-series", "Most series of the families opview top reads kept from one scrape (a histogram's buckets count); a larger scrape is refused.").Default("20000").Int()
	mouse := top.Flag("mouse", "Capture the mouse so that the wheel scrolls; --no-mouse keeps the terminal's own text selection.").Default("true").Bool()

	exit := -1
	app.Terminate(func(code int) { exit = code })
	// kingpin reads a lone "-" as an empty argument: pass standard input's "-" through a stand-in.
	args = append([]string(nil), args...)
	for i, a := range args {
		if a == "-" {
			args[i] = stdinArg
		}
	}
	chosen, err := app.Parse(args)
	if *target == stdinArg {
		*target = "-"
	}
	if exit >= 0 {
		return exit // --help or --version
	}
	if err != nil {
		fmt.Fprintf(stderr, "opview: %v (see --help)\n", err)
		return 2
	}
	if chosen != top.FullCommand() {
		fmt.Fprintf(stderr, "opview: unknown command %q\n", chosen)
		return 2
	}
	switch {
	case *interval <= 0:
		return usage(stderr, "--interval must be positive")
	case *win < *interval:
		return usage(stderr, "--window must be at least --interval")
	case *timeout <= 0:
		return usage(stderr, "--timeout must be positive")
	case *maxSeries <= 0:
		return usage(stderr, "--max-series must be positive")
	case *maxBytes <= 0:
		return usage(stderr, "--max-bytes must be positive")
	}
	src, err := source.New(source.Config{
		Target: *target, BearerTokenFile: *token, CAFile: *ca, InsecureSkipVerify: *insecure, Timeout: *timeout,
		Job: *job, Instance: *instance, MaxBytes: *maxBytes, MaxSeries: *maxSeries, Keep: stats.Families, Stdin: stdin,
	})
	if err != nil {
		return usage(stderr, err.Error())
	}
	w := window.New(*win, window.Capacity(*win, *interval), stats.Families...)

	if *once || !isTerminal(stdout) {
		return printOnce(ctx, src, w, *interval, stdout, stderr)
	}
	opts := []tea.ProgramOption{tea.WithContext(ctx), tea.WithAltScreen(), tea.WithOutput(stdout)}
	if *mouse {
		opts = append(opts, tea.WithMouseCellMotion())
	}
	if f, ok := stdin.(*os.File); ok && *target != "-" {
		opts = append(opts, tea.WithInput(f))
	} else {
		// The exposition came from standard input: read keys from the terminal instead.
		opts = append(opts, tea.WithInputTTY())
	}
	m := ui.New(ui.Options{Source: src, Window: w, Interval: *interval, Context: ctx})
	if _, err := tea.NewProgram(m, opts...).Run(); err != nil && !errors.Is(err, tea.ErrProgramKilled) {
		fmt.Fprintf(stderr, "opview: %v\n", err)
		return 1
	}
	return 0
}

// printOnce prints the controllers table once: from two scrapes an interval apart (one from a
// file or standard input).
func printOnce(ctx context.Context, src *source.Source, w *window.Window, interval time.Duration, stdout, stderr io.Writer) int {
	scrapes := 2
	if src.Once() {
		scrapes = 1
	}
	for i := range scrapes {
		if i > 0 {
			select {
			case <-ctx.Done():
				return 1
			case <-time.After(interval):
			}
		}
		at := time.Now()
		fams, err := src.Fetch(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "opview: %v\n", err)
			return 1
		}
		w.Add(at, fams)
	}
	rows := stats.Controllers(w)
	if len(rows) == 0 {
		fmt.Fprintf(stderr, "opview: no controller-runtime controllers in the metrics of %s\n", src)
		return 1
	}
	if err := stats.WriteTable(stdout, rows); err != nil {
		fmt.Fprintf(stderr, "opview: %v\n", err)
		return 1
	}
	return 0
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

func usage(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "opview: %s (see opview top --help)\n", msg)
	return 2
}

// durationFlag and bytesFlag parse like kingpin's Duration and Bytes but name the flag in their
// errors ("--interval: invalid duration ...").
func durationFlag(cmd *kingpin.CmdClause, name, help string, def time.Duration) *time.Duration {
	v := new(time.Duration)
	cmd.Flag(name, help).Default(def.String()).SetValue(&namedValue{set: func(s string) (string, error) {
		d, err := time.ParseDuration(s)
		if err != nil {
			return "", fmt.Errorf("--%s: invalid duration %q (examples: 2s, 5m)", name, s)
		}
		*v = d
		return d.String(), nil
	}})
	return v
}

func bytesFlag(cmd *kingpin.CmdClause, name, help string, def int64) *int64 {
	v := new(int64)
	cmd.Flag(name, help).Default(units.Base2Bytes(def).String()).SetValue(&namedValue{set: func(s string) (string, error) {
		b, err := units.ParseBase2Bytes(s)
		if err != nil {
			return "", fmt.Errorf("--%s: invalid size %q (examples: 512KiB, 64MiB)", name, s)
		}
		*v = int64(b)
		return units.Base2Bytes(b).String(), nil
	}})
	return v
}

type namedValue struct {
	shown string
	set   func(string) (string, error)
}

func (n *namedValue) Set(s string) error {
	shown, err := n.set(s)
	if err != nil {
		return err
	}
	n.shown = shown
	return nil
}

func (n *namedValue) String() string { return n.shown }
