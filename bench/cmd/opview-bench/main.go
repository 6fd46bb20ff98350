// Command opview-bench measures opview-relay side by side with Pushgateway in its default mode and
// with --push.disable-consistency-check, and against the limits (the parse-only cost of a push,
// the bare-bytes cost of a scrape, served by opview-bench-limits), on the same workload: a
// captured controller-runtime registry pushed as N groups. Each figure is measured several times
// at each N. It writes bench/results.json and the goals and results sections of
// docs/benchmarks.md, the goals read from bench/goals.json. Run it with `make bench`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opview/opview/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("opview-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg bench.Config
	fs.StringVar(&cfg.RelayBin, "relay", "bin/opview-relay", "opview-relay binary")
	fs.StringVar(&cfg.PushgatewayBin, "pushgateway", "prometheus-pushgateway", "Pushgateway binary (Debian package prometheus-pushgateway)")
	fs.StringVar(&cfg.LimitsBin, "limits", "bin/opview-bench-limits", "opview-bench-limits binary (go build ./bench/cmd/opview-bench-limits)")
	fs.StringVar(&cfg.Payload, "payload", "bench/testdata/controller-runtime.prom", "payload pushed by every group (text format)")
	levels := fs.String("n", "1,10,100,500", "numbers of groups, ascending")
	fs.IntVar(&cfg.Repeats, "repeats", 5, "measurements of every figure at every N (min, median and max are reported)")
	fs.IntVar(&cfg.Concurrency, "concurrency", 4, "concurrent pushers")
	fs.DurationVar(&cfg.PushTime, "push-time", 3*time.Second, "longest push phase per server, N and repetition")
	fs.IntVar(&cfg.PushMax, "push-max", 1000, "most pushes per server, N and repetition")
	fs.DurationVar(&cfg.ScrapeTime, "scrape-time", 2*time.Second, "longest scrape phase per server, format, N and repetition")
	fs.IntVar(&cfg.ScrapeMax, "scrape-max", 21, "most scrapes per server, format, N and repetition (their median is the figure); the relay and the limit are scraped in alternation")
	fs.DurationVar(&cfg.PushgatewayFillBudget, "pushgateway-fill-budget", 3*time.Minute, "total time allowed to fill Pushgateway's default mode with groups; levels not reached in time are reported as such")
	fs.IntVar(&cfg.MaxSeries, "relay-max-series", 5000, "the relay's --group.max-series")
	fs.StringVar(&cfg.RelayEnv, "relay-env", "", "extra environment of the relay process, NAME=VALUE (e.g. GOGC=100)")
	fs.StringVar(&cfg.OutDir, "out", "bench/out", "directory for the processes' logs")
	goals := fs.String("goals", "bench/goals.json", "goals file")
	benchstat := fs.String("benchstat", "", "benchstat output (make bench-go) to put in the document's Go benchmarks section")
	outJSON := fs.String("json", "bench/results.json", "results file (empty: don't write)")
	outDoc := fs.String("doc", "docs/benchmarks.md", "document whose generated sections are rewritten (empty: don't write)")
	report := fs.String("report", "", "measure nothing: rewrite the document from this results file, its goals evaluated anew from -goals")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(stderr, "opview-bench: "+format+"\n", args...)
		return code
	}
	if fs.NArg() > 0 {
		return fail(2, "unexpected argument %q (all options are flags; see -h)", fs.Arg(0))
	}
	var err error
	if cfg.Levels, err = parseLevels(*levels); err != nil {
		return fail(2, "-n: %v", err)
	}
	if cfg.Repeats < 1 || cfg.Concurrency < 1 || cfg.PushMax < 1 || cfg.ScrapeMax < 1 {
		return fail(2, "-repeats, -concurrency, -push-max and -scrape-max must be positive")
	}
	if cfg.Goals, err = bench.LoadGoals(*goals); err != nil {
		return fail(2, "-goals: %v", err)
	}
	cfg.Command = strings.Join(append([]string{"opview-bench"}, args...), " ")
	logger := log.New(stderr, "", log.Ltime)
	cfg.Logf = logger.Printf

	var res *bench.Results
	if *report != "" {
		b, err := os.ReadFile(*report)
		if err != nil {
			return fail(1, "-report: %v", err)
		}
		res = &bench.Results{}
		if err := json.Unmarshal(b, res); err != nil {
			return fail(1, "-report %s: %v", *report, err)
		}
		res.Goals = bench.Evaluate(cfg.Goals, res.Levels)
		*outJSON = ""
	} else if res, err = bench.Run(ctx, cfg); err != nil {
		return fail(1, "%v", err)
	}
	if *outJSON != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(*outJSON, append(b, '\n'), 0o644); err != nil {
			return fail(1, "%v", err)
		}
		logger.Printf("wrote %s", *outJSON)
	}
	if *outDoc != "" {
		sections := map[string]string{bench.GoalsSection: bench.RenderGoals(res), bench.ResultsSection: bench.RenderResults(res)}
		if *benchstat != "" {
			stat, err := os.ReadFile(*benchstat)
			if err != nil {
				return fail(1, "-benchstat: %v", err)
			}
			sections[bench.BenchstatSection] = "```\n" + string(stat) + "```\n"
		}
		if err := bench.WriteSections(*outDoc, sections); err != nil {
			return fail(1, "%v", err)
		}
		logger.Printf("wrote the generated sections of %s", *outDoc)
	}
	fmt.Fprint(stdout, bench.RenderGoals(res))
	return 0
}

// parseLevels reads "1,10,100": positive and ascending.
func parseLevels(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || (len(out) > 0 && n <= out[len(out)-1]) {
			return nil, fmt.Errorf("%q is not an ascending list of positive numbers", s)
		}
		out = append(out, n)
	}
	return out, nil
}
