package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/opview/opview/exporter/relay"
)

// ProfileConfig bounds Profile.
type ProfileConfig struct {
	Payload     *Payload
	Levels      []int         // numbers of groups held while profiling
	Duration    time.Duration // of each profiled phase
	Concurrency int           // concurrent pushers
	Relay       relay.Config  // the relay profiled, in this process
	OutDir      string        // where the .pprof files go
	Go          string        // the go command, for go tool pprof
	NodeCount   int           // lines of each top list
}

// TopList is one profile summarised by go tool pprof -top.
type TopList struct {
	Op   string // "push", "scrape (text)" or "scrape (protobuf)"
	N    int
	Kind string // "CPU" or "allocated bytes"
	File string
	Top  string
}

// relayHandler runs the relay's handler; the profiles are focused on it, so that the load this
// process generates (pushers, scrapers) stays out of the top lists. What net/http does before
// and after the handler (reading the request line and headers, writing the response) is outside
// the focus too.
//
//go:noinline
func relayHandler(h http.Handler, w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }

// focus keeps the relay's handler and the goroutines in which Registry.Gather runs the relay's
// collectors (their stacks do not go through the handler).
const focus = `bench\.relayHandler|client_golang/prometheus\.\(\*Registry\)\.Gather`

// wrappers are the frames above the relay's handler, hidden from the cumulative lists where they
// would take the first lines with 100% each.
const wrappers = `^net/http\.|^github\.com/opview/opview/bench\.`

// Profile serves a relay in this process and, at each level, records a CPU and an allocation
// profile of a push phase (Concurrency pushers re-pushing the groups) and of two scrape phases
// (one scraper asking for text, then one asking for delimited protobuf, the format Prometheus
// prefers when it scrapes native histograms), each Duration long, and summarises them as top
// lists.
func Profile(ctx context.Context, cfg ProfileConfig) ([]TopList, error) {
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	var out []TopList
	for _, n := range cfg.Levels {
		lists, err := profileLevel(ctx, cfg, n)
		if err != nil {
			return nil, fmt.Errorf("at %d groups: %w", n, err)
		}
		out = append(out, lists...)
	}
	return out, nil
}

func profileLevel(ctx context.Context, cfg ProfileConfig, n int) ([]TopList, error) {
	r := relay.New(cfg.Relay)
	h := r.Handler()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { relayHandler(h, w, req) })}
	go srv.Serve(ln)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { r.Run(rctx); close(done) }()
	defer func() { srv.Close(); cancel(); <-done }()
	base := "http://" + ln.Addr().String()
	for i := range n {
		if err := Push(ctx, base, i, cfg.Payload.Proto); err != nil {
			return nil, err
		}
	}
	type phase struct {
		op, file string // file: the profiles' name before -n<N>
		load     func() error
	}
	phases := []phase{{"push", "push", func() error {
		_, err := PushLoad(ctx, base, func() (float64, error) { return 0, nil }, n, cfg.Concurrency, 1<<30, cfg.Duration, cfg.Payload.Proto)
		return err
	}}}
	for _, f := range []struct{ op, file, accept string }{
		{"scrape (text)", "scrape", AcceptText},
		{"scrape (protobuf)", "scrape-proto", AcceptProto},
	} {
		phases = append(phases, phase{f.op, f.file, func() error {
			deadline := time.Now().Add(cfg.Duration)
			for time.Now().Before(deadline) {
				if _, _, err := ScrapeOnce(ctx, base, f.accept, nil); err != nil {
					return err
				}
			}
			return nil
		}})
	}
	var out []TopList
	for _, ph := range phases {
		name := fmt.Sprintf("%s-n%d", ph.file, n)
		cpuFile := filepath.Join(cfg.OutDir, name+".cpu.pprof")
		before, after := filepath.Join(cfg.OutDir, name+".allocs-before.pprof"), filepath.Join(cfg.OutDir, name+".allocs.pprof")
		runtime.GC()
		if err := writeProfile("allocs", before); err != nil {
			return nil, err
		}
		f, err := os.Create(cpuFile)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, err
		}
		loadErr := ph.load()
		pprof.StopCPUProfile()
		f.Close()
		if loadErr != nil {
			return nil, loadErr
		}
		if err := writeProfile("allocs", after); err != nil {
			return nil, err
		}
		cpuTop, err := top(cfg, cpuFile, "-cum", "-hide="+wrappers)
		if err != nil {
			return nil, err
		}
		allocTop, err := top(cfg, after, "-sample_index=alloc_space", "-base", before)
		if err != nil {
			return nil, err
		}
		out = append(out, TopList{Op: ph.op, N: n, Kind: "CPU", File: cpuFile, Top: cpuTop},
			TopList{Op: ph.op, N: n, Kind: "allocated bytes", File: after, Top: allocTop})
	}
	return out, nil
}

func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// top runs go tool pprof -top on a profile, focused on the relay's handler and collectors, and
// keeps the table from its "Showing nodes" line on.
func top(cfg ProfileConfig, file string, args ...string) (string, error) {
	argv := append([]string{"tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", cfg.NodeCount), "-focus=" + focus}, args...)
	cmd := exec.Command(cfg.Go, append(argv, file)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go tool pprof %s: %v: %s", file, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return trimTop(string(out)), nil
}

// trimTop drops go tool pprof's header (file, type, time, filters) from a -top listing.
func trimTop(s string) string {
	if i := strings.Index(s, "Showing nodes"); i >= 0 {
		s = s[i:]
	}
	return strings.TrimRight(s, "\n") + "\n"
}

// RenderProfiles is the profiles section of docs/benchmarks.md.
func RenderProfiles(lists []TopList, date string, d time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Recorded %s by `make bench-profile`: a relay in the profiling process, each phase %s, focused on the relay's handler and its collectors "+
		"(the load generator and net/http's request parsing are left out). CPU lists are sorted by cumulative time "+
		"(where the time went, a caller above its callees), allocation lists by the bytes each function allocated itself. "+
		"Profiles in `bench/out/profiles/`; `go tool pprof -http : <file>` to explore one.\n", date, d)
	for _, l := range lists {
		fmt.Fprintf(&b, "\n%s, N=%d, %s (`%s`):\n\n```\n%s```\n", l.Op, l.N, l.Kind, filepath.Base(l.File), l.Top)
	}
	return b.String()
}
