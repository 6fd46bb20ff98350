// Command opview-bench-profile records CPU and allocation profiles of a push and a scrape of
// opview-relay at N=1 and N=100 groups of the bench payload, and writes their top lists into the
// profiles section of docs/benchmarks.md. Run it with `make bench-profile`.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/opview/opview/bench"
	"github.com/opview/opview/exporter/gcfloor"
	"github.com/opview/opview/exporter/relay"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("opview-bench-profile", flag.ContinueOnError)
	fs.SetOutput(stderr)
	payload := fs.String("payload", "bench/testdata/controller-runtime.prom", "payload pushed by every group (text format)")
	levels := fs.String("n", "1,100", "numbers of groups")
	d := fs.Duration("duration", 5*time.Second, "length of each profiled phase")
	conc := fs.Int("concurrency", 4, "concurrent pushers")
	outDir := fs.String("out", "bench/out/profiles", "directory for the .pprof files")
	goCmd := fs.String("go", "go", "the go command (runs go tool pprof)")
	nodes := fs.Int("nodecount", 12, "lines of each top list")
	doc := fs.String("doc", "docs/benchmarks.md", "document whose profiles section is rewritten (empty: don't write)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	// What `make bench` gives the relay binary (apart from the address): the defaults of
	// opview-relay serve, with --group.ttl=0 --group.max-series=5000 --store.max-groups=1000.
	memLimit := debug.SetMemoryLimit(-1)
	limits := relay.DefaultLimits(memLimit)
	limits.MaxSeriesPerGroup, limits.MaxGroups = 5000, 1000
	cfg := bench.ProfileConfig{Duration: *d, Concurrency: *conc, OutDir: *outDir, Go: *goCmd, NodeCount: *nodes,
		Relay: relay.Config{GroupTTL: 0, ForgetAfter: relay.DefaultForgetAfter, MaxBodyBytes: relay.DefaultMaxBody(memLimit), Limits: limits}}
	for _, f := range strings.Split(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(stderr, "opview-bench-profile: -n: %q is not a list of positive numbers\n", *levels)
			return 2
		}
		cfg.Levels = append(cfg.Levels, n)
	}
	var err error
	if cfg.Payload, err = bench.LoadPayload(*payload); err != nil {
		fmt.Fprintln(stderr, "opview-bench-profile:", err)
		return 1
	}
	// The relay binary's garbage-collection pacing (opview-relay serve's, unless the environment
	// sets GOGC).
	if os.Getenv("GOGC") == "" {
		defer gcfloor.Start(relay.GOGC, relay.HeapFloor)()
	}
	lists, err := bench.Profile(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "opview-bench-profile:", err)
		return 1
	}
	section := bench.RenderProfiles(lists, time.Now().UTC().Format(time.RFC3339), *d)
	if *doc != "" {
		if err := bench.WriteSections(*doc, map[string]string{bench.ProfilesSection: section}); err != nil {
			fmt.Fprintln(stderr, "opview-bench-profile:", err)
			return 1
		}
	}
	fmt.Fprint(stdout, section)
	return 0
}
