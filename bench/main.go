// Command bench measures opview-relay side by side with Pushgateway on the same workload: a
// captured controller-runtime registry pushed as N groups. For each N it measures push throughput
// and latency, CPU per push, RSS, and /metrics scrape time and size in the text and protobuf
// formats, and scrapes the relay's exact exposition bytes served from memory by a bare handler
// (the physical limit). It writes bench/results.json and the results section of
// docs/benchmarks.md. Run it with `make bench`.
//
// `bench bare` is the bare handler itself, run as a separate process like the two servers.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protodelim"
)

const (
	acceptText  = "text/plain;version=0.0.4;q=1"
	acceptProto = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=1"
	ctProto     = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
	ctText      = "text/plain; version=0.0.4; charset=utf-8"
	// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat (100 on Linux).
	clockTicks = 100
)

type config struct {
	relayBin, pgwBin, payload string
	levels                    []int
	concurrency               int
	pushTime                  time.Duration
	pushMax                   int
	scrapeTime                time.Duration
	scrapeMax                 int
	pgwFillBudget             time.Duration
	maxSeries                 int
	outJSON, outDoc           string
	command                   string
	relayEnv                  string
	benchstat                 string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "bare" {
		bare(os.Args[2:])
		return
	}
	var cfg config
	var levels string
	flag.StringVar(&cfg.relayBin, "relay", "bin/opview-relay", "opview-relay binary")
	flag.StringVar(&cfg.pgwBin, "pushgateway", "prometheus-pushgateway", "Pushgateway binary (Debian package prometheus-pushgateway)")
	flag.StringVar(&cfg.payload, "payload", "bench/testdata/controller-runtime.prom", "payload pushed by every group (text format)")
	flag.StringVar(&levels, "n", "1,10,100,500", "numbers of groups, ascending")
	flag.IntVar(&cfg.concurrency, "concurrency", 4, "concurrent pushers")
	flag.DurationVar(&cfg.pushTime, "push-time", 10*time.Second, "longest push measurement per server and N")
	flag.IntVar(&cfg.pushMax, "push-max", 2000, "most pushes measured per server and N")
	flag.DurationVar(&cfg.scrapeTime, "scrape-time", 8*time.Second, "longest scrape measurement per server, format and N")
	flag.IntVar(&cfg.scrapeMax, "scrape-max", 15, "most scrapes measured per server, format and N")
	flag.DurationVar(&cfg.pgwFillBudget, "pushgateway-fill-budget", 5*time.Minute, "total time allowed to fill Pushgateway with groups; levels not reached in time are reported as such")
	flag.IntVar(&cfg.maxSeries, "relay-max-series", 5000, "the relay's --group.max-series")
	flag.StringVar(&cfg.relayEnv, "relay-env", "", "extra environment of the relay process, NAME=VALUE (e.g. GOGC=25)")
	flag.StringVar(&cfg.benchstat, "benchstat", "", "benchstat output (make bench-go) to put in the document's Go benchmarks section")
	flag.StringVar(&cfg.outJSON, "json", "bench/results.json", "results file (empty: don't write)")
	flag.StringVar(&cfg.outDoc, "doc", "docs/benchmarks.md", "document whose results section is rewritten (empty: don't write)")
	flag.Parse()
	for _, s := range strings.Split(levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || (len(cfg.levels) > 0 && n <= cfg.levels[len(cfg.levels)-1]) {
			log.Fatalf("-n: %q is not an ascending list of positive numbers", levels)
		}
		cfg.levels = append(cfg.levels, n)
	}
	cfg.command = strings.Join(append([]string{"bench"}, os.Args[1:]...), " ")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	if cfg.outJSON != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(cfg.outJSON, append(b, '\n'), 0o644); err != nil {
			log.Fatal(err)
		}
		log.Printf("wrote %s", cfg.outJSON)
	}
	if cfg.outDoc != "" {
		if err := writeDoc(cfg.outDoc, res, cfg.benchstat); err != nil {
			log.Fatal(err)
		}
		log.Printf("wrote the results section of %s", cfg.outDoc)
	}
	fmt.Print(renderResults(res))
}

// payload is what every group pushes.
type payload struct {
	text, proto      []byte
	families, series int
}

func loadPayload(path string) (*payload, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	tp := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := tp.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("payload %s: %w", path, err)
	}
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	sort.Strings(names)
	p := &payload{text: text, families: len(fams)}
	var buf bytes.Buffer
	for _, n := range names {
		if _, err := protodelim.MarshalTo(&buf, fams[n]); err != nil {
			return nil, err
		}
	}
	p.proto = buf.Bytes()
	for _, line := range bytes.Split(text, []byte("\n")) {
		if len(line) > 0 && line[0] != '#' {
			p.series++
		}
	}
	return p, nil
}

// server is a process under test.
type server struct {
	name string
	base string
	cmd  *exec.Cmd
	done chan error
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func start(ctx context.Context, name string, logFile string, env []string, argv func(addr string) []string) (*server, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	args := argv(addr)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	lf, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("starting %s (%s): %w", name, args[0], err)
	}
	s := &server{name: name, base: "http://" + addr, cmd: cmd, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait(); lf.Close() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(s.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case err := <-s.done:
			return nil, fmt.Errorf("%s exited before it was ready: %v (log: %s)", name, err, logFile)
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s not ready on %s after 30s (log: %s)", name, s.base, logFile)
		}
	}
}

func (s *server) stop() {
	if s == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// rss is VmRSS from /proc/<pid>/status, in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// cpuSeconds is utime+stime from /proc/<pid>/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may contain spaces; fields after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return (ut + st) / clockTicks, nil
}

var client = &http.Client{
	Transport: &http.Transport{
		DisableCompression:  true, // Prometheus asks for gzip, but compression would hide the serving cost
		MaxIdleConnsPerHost: 64,
	},
	Timeout: 5 * time.Minute,
}

func groupURL(base string, i int) string {
	return fmt.Sprintf("%s/metrics/job/bench/instance/g%03d", base, i)
}

func push(ctx context.Context, base string, i int, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, groupURL(base, i), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ctProto)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("push to group %d: HTTP %d: %s", i, resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// PushStats are one push measurement.
type PushStats struct {
	Pushes            int     `json:"pushes"`
	Seconds           float64 `json:"seconds"`
	PushesPerSecond   float64 `json:"pushes_per_second"`
	P50Seconds        float64 `json:"push_p50_seconds"`
	P99Seconds        float64 `json:"push_p99_seconds"`
	CPUSecondsPerPush float64 `json:"cpu_seconds_per_push"`
}

// pushLoad re-pushes the groups 0..n-1 round robin from conc workers, for at most max pushes and
// d (a push in flight when d ends completes and counts).
func pushLoad(ctx context.Context, s *server, n, conc, max int, d time.Duration, body []byte) (PushStats, error) {
	cpu0, err := cpuSeconds(s.pid())
	if err != nil {
		return PushStats{}, err
	}
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				k := int(next.Add(1)) - 1
				if k >= max {
					return
				}
				t0 := time.Now()
				err := push(ctx, s.base, k%n, body)
				el := time.Since(t0)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				lat = append(lat, el)
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return PushStats{}, fmt.Errorf("%s: %w", s.name, firstErr)
	}
	cpu1, err := cpuSeconds(s.pid())
	if err != nil {
		return PushStats{}, err
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	st := PushStats{
		Pushes:          len(lat),
		Seconds:         elapsed.Seconds(),
		PushesPerSecond: float64(len(lat)) / elapsed.Seconds(),
		P50Seconds:      quantile(lat, 0.50).Seconds(),
		P99Seconds:      quantile(lat, 0.99).Seconds(),
	}
	if len(lat) > 0 {
		st.CPUSecondsPerPush = (cpu1 - cpu0) / float64(len(lat))
	}
	return st, nil
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// ScrapeStats are one scrape measurement: the median and the fastest of Scrapes scrapes.
type ScrapeStats struct {
	Scrapes    int     `json:"scrapes"`
	Seconds    float64 `json:"seconds"`
	MinSeconds float64 `json:"min_seconds"`
	Bytes      int64   `json:"bytes"`
}

func scrapeOnce(ctx context.Context, base, accept string, keep *bytes.Buffer) (int64, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Accept", accept)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	var w io.Writer = io.Discard
	if keep != nil {
		keep.Reset()
		w = keep
	}
	n, err := io.Copy(w, resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s/metrics: HTTP %d", base, resp.StatusCode)
	}
	return n, resp.Header.Get("Content-Type"), err
}

func scrapeLoad(ctx context.Context, base, accept string, max int, d time.Duration) (ScrapeStats, error) {
	if _, _, err := scrapeOnce(ctx, base, accept, nil); err != nil { // warm the connection
		return ScrapeStats{}, err
	}
	var lat []time.Duration
	var size int64
	deadline := time.Now().Add(d)
	for len(lat) < max && (len(lat) == 0 || time.Now().Before(deadline)) {
		t0 := time.Now()
		n, _, err := scrapeOnce(ctx, base, accept, nil)
		if err != nil {
			return ScrapeStats{}, err
		}
		lat = append(lat, time.Since(t0))
		size = n
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return ScrapeStats{Scrapes: len(lat), Seconds: quantile(lat, 0.5).Seconds(), MinSeconds: lat[0].Seconds(), Bytes: size}, nil
}

// ServerResult is one server at one N.
type ServerResult struct {
	Reached           bool                   `json:"reached"`
	Note              string                 `json:"note,omitempty"`
	FillSeconds       float64                `json:"fill_seconds"`
	Push              *PushStats             `json:"push,omitempty"`
	PushesPerSecond   float64                `json:"pushes_per_second"`
	RSSBytes          int64                  `json:"rss_bytes"`
	RSSBytesPerSeries float64                `json:"rss_bytes_per_series"`
	Scrape            map[string]ScrapeStats `json:"scrape,omitempty"`
	ScrapeSeconds     map[string]float64     `json:"scrape_seconds,omitempty"`
}

// Level is every measurement at one N.
type Level struct {
	N           int                    `json:"n"`
	Series      int                    `json:"series"`
	Relay       ServerResult           `json:"relay"`
	Pushgateway ServerResult           `json:"pushgateway"`
	Bare        map[string]ScrapeStats `json:"bare"`
	// BareScrapeSeconds is the limit: the relay's exposition bytes served from memory.
	BareScrapeSeconds map[string]float64 `json:"bare_scrape_seconds"`
	Ratios            map[string]float64 `json:"ratios"`
	LoadAvg           string             `json:"loadavg"`
}

// Results is bench/results.json.
type Results struct {
	Date    string `json:"date"`
	Command string `json:"command"`
	Machine struct {
		NProc      int    `json:"nproc"`
		CPU        string `json:"cpu"`
		Kernel     string `json:"kernel"`
		Go         string `json:"go"`
		LoadStart  string `json:"loadavg_start"`
		LoadEnd    string `json:"loadavg_end"`
		Relay      string `json:"relay_version"`
		Pushgatway string `json:"pushgateway_version"`
	} `json:"machine"`
	Payload struct {
		File       string `json:"file"`
		Families   int    `json:"families"`
		Series     int    `json:"series"`
		TextBytes  int    `json:"text_bytes"`
		ProtoBytes int    `json:"proto_bytes"`
	} `json:"payload"`
	Settings struct {
		Concurrency           int     `json:"concurrency"`
		PushSecondsMax        float64 `json:"push_seconds_max"`
		PushesMax             int     `json:"pushes_max"`
		ScrapeSecondsMax      float64 `json:"scrape_seconds_max"`
		ScrapesMax            int     `json:"scrapes_max"`
		PushgatewayFillBudget float64 `json:"pushgateway_fill_budget_seconds"`
		RelayArgs             string  `json:"relay_args"`
		RelayEnv              string  `json:"relay_env,omitempty"`
		PushgatewayArgs       string  `json:"pushgateway_args"`
	} `json:"settings"`
	IdleRSS map[string]int64 `json:"idle_rss_bytes"`
	Levels  []Level          `json:"levels"`
	Goals   []Goal           `json:"goals"`
}

// Goal is one of issue 7's goals, evaluated on this run.
type Goal struct {
	Name   string  `json:"name"`
	Target string  `json:"target"`
	Value  float64 `json:"value"`
	Met    bool    `json:"met"`
	Note   string  `json:"note,omitempty"`
}

func version(bin string, args ...string) string {
	out, _ := exec.Command(bin, args...).CombinedOutput()
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return ""
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return ""
}

func run(ctx context.Context, cfg config) (*Results, error) {
	pl, err := loadPayload(cfg.payload)
	if err != nil {
		return nil, err
	}
	res := &Results{Date: time.Now().UTC().Format(time.RFC3339), Command: cfg.command}
	res.Machine.NProc = runtime.NumCPU()
	res.Machine.CPU = cpuModel()
	res.Machine.Kernel = version("uname", "-sr")
	res.Machine.Go = runtime.Version()
	res.Machine.LoadStart = loadavg()
	res.Machine.Relay = version(cfg.relayBin, "--version")
	res.Machine.Pushgatway = version(cfg.pgwBin, "--version")
	res.Payload.File, res.Payload.Families, res.Payload.Series = cfg.payload, pl.families, pl.series
	res.Payload.TextBytes, res.Payload.ProtoBytes = len(pl.text), len(pl.proto)
	s := &res.Settings
	s.Concurrency, s.PushSecondsMax, s.PushesMax = cfg.concurrency, cfg.pushTime.Seconds(), cfg.pushMax
	s.ScrapeSecondsMax, s.ScrapesMax, s.PushgatewayFillBudget = cfg.scrapeTime.Seconds(), cfg.scrapeMax, cfg.pgwFillBudget.Seconds()
	relayArgs := []string{"--group.ttl=0", fmt.Sprintf("--group.max-series=%d", cfg.maxSeries), fmt.Sprintf("--store.max-groups=%d", max(1000, cfg.levels[len(cfg.levels)-1])), "--log.level=warn"}
	pgwArgs := []string{"--persistence.file=", "--log.level=warn"} // memory only, like the relay; Debian defaults to a file
	s.RelayArgs, s.PushgatewayArgs, s.RelayEnv = strings.Join(relayArgs, " "), strings.Join(pgwArgs, " "), cfg.relayEnv

	if err := os.MkdirAll("bench/out", 0o755); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var relayEnv []string
	if cfg.relayEnv != "" {
		relayEnv = []string{cfg.relayEnv}
	}
	relay, err := start(ctx, "opview-relay", "bench/out/relay.log", relayEnv, func(addr string) []string {
		return append([]string{cfg.relayBin, "serve", "--web.listen-address=" + addr}, relayArgs...)
	})
	if err != nil {
		return nil, err
	}
	defer relay.stop()
	pgw, err := start(ctx, "pushgateway", "bench/out/pushgateway.log", nil, func(addr string) []string {
		return append([]string{cfg.pgwBin, "--web.listen-address=" + addr}, pgwArgs...)
	})
	if err != nil {
		return nil, err
	}
	defer pgw.stop()
	bareSrv, err := start(ctx, "bare", "bench/out/bare.log", nil, func(addr string) []string {
		return []string{self, "bare", "-listen", addr}
	})
	if err != nil {
		return nil, err
	}
	defer bareSrv.stop()
	res.IdleRSS = map[string]int64{}
	idle := map[*server]int64{}
	for _, srv := range []*server{relay, pgw} {
		if idle[srv], err = rss(srv.pid()); err != nil {
			return nil, err
		}
		res.IdleRSS[srv.name] = idle[srv]
	}

	filled := map[*server]int{}
	var pgwFill time.Duration
	pgwStuck := false
	for _, n := range cfg.levels {
		lv := Level{N: n, Series: n * pl.series, LoadAvg: loadavg(), Ratios: map[string]float64{}}
		log.Printf("N=%d (load average %s)", n, lv.LoadAvg)
		for _, srv := range []*server{relay, pgw} {
			r := &lv.Relay
			if srv == pgw {
				r = &lv.Pushgateway
			}
			// Fill: push the groups this level adds, one at a time, as a fleet of operators would
			// start; Pushgateway's fill is bounded by its budget.
			t0 := time.Now()
			for filled[srv] < n && ctx.Err() == nil {
				if srv == pgw && (pgwStuck || pgwFill+time.Since(t0) > cfg.pgwFillBudget) {
					pgwStuck = true
					break
				}
				if err := push(ctx, srv.base, filled[srv], pl.proto); err != nil {
					return nil, fmt.Errorf("%s: filling: %w", srv.name, err)
				}
				filled[srv]++
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			r.FillSeconds = time.Since(t0).Seconds()
			if srv == pgw {
				pgwFill += time.Since(t0)
			}
			if filled[srv] < n {
				r.Note = fmt.Sprintf("not reached: %d groups after the fill budget of %s", filled[srv], cfg.pgwFillBudget)
				log.Printf("  %s: %s", srv.name, r.Note)
				continue
			}
			r.Reached = true
			ps, err := pushLoad(ctx, srv, n, cfg.concurrency, cfg.pushMax, cfg.pushTime, pl.proto)
			if err != nil {
				return nil, err
			}
			r.Push, r.PushesPerSecond = &ps, ps.PushesPerSecond
			log.Printf("  %s: fill %.1fs, %d pushes, %.1f/s, p50 %s p99 %s, cpu/push %s", srv.name, r.FillSeconds, ps.Pushes, ps.PushesPerSecond,
				dur(ps.P50Seconds), dur(ps.P99Seconds), dur(ps.CPUSecondsPerPush))
			r.Scrape, r.ScrapeSeconds = map[string]ScrapeStats{}, map[string]float64{}
			for _, f := range formats {
				st, err := scrapeLoad(ctx, srv.base, f.accept, cfg.scrapeMax, cfg.scrapeTime)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", srv.name, err)
				}
				r.Scrape[f.name], r.ScrapeSeconds[f.name] = st, st.Seconds
				log.Printf("  %s: scrape %s %d bytes, median %s (min %s, %d scrapes)", srv.name, f.name, st.Bytes, dur(st.Seconds), dur(st.MinSeconds), st.Scrapes)
			}
			if r.RSSBytes, err = rss(srv.pid()); err != nil {
				return nil, err
			}
			r.RSSBytesPerSeries = float64(r.RSSBytes-idle[srv]) / float64(lv.Series)
		}
		// The limit: the relay's exposition, captured now, served from memory.
		lv.Bare, lv.BareScrapeSeconds = map[string]ScrapeStats{}, map[string]float64{}
		for _, f := range formats {
			var body bytes.Buffer
			_, ct, err := scrapeOnce(ctx, relay.base, f.accept, &body)
			if err != nil {
				return nil, err
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPut, bareSrv.base+"/body", bytes.NewReader(body.Bytes()))
			req.Header.Set("Content-Type", ct)
			resp, err := client.Do(req)
			if err != nil {
				return nil, err
			}
			resp.Body.Close()
			st, err := scrapeLoad(ctx, bareSrv.base, f.accept, cfg.scrapeMax, cfg.scrapeTime)
			if err != nil {
				return nil, fmt.Errorf("bare: %w", err)
			}
			lv.Bare[f.name], lv.BareScrapeSeconds[f.name] = st, st.Seconds
			log.Printf("  bare: scrape %s %d bytes, median %s (min %s)", f.name, st.Bytes, dur(st.Seconds), dur(st.MinSeconds))
			if rs, ok := lv.Relay.Scrape[f.name]; ok && st.Seconds > 0 {
				lv.Ratios["scrape_relay_over_bare_"+f.name] = rs.Seconds / st.Seconds
			}
			if ps, ok := lv.Pushgateway.Scrape[f.name]; ok && st.Seconds > 0 {
				lv.Ratios["scrape_pushgateway_over_bare_"+f.name] = ps.Seconds / st.Seconds
				lv.Ratios["scrape_pushgateway_over_relay_"+f.name] = ps.Seconds / lv.Relay.Scrape[f.name].Seconds
			}
		}
		if lv.Pushgateway.Reached {
			lv.Ratios["push_throughput_relay_over_pushgateway"] = lv.Relay.PushesPerSecond / lv.Pushgateway.PushesPerSecond
			lv.Ratios["cpu_per_push_pushgateway_over_relay"] = lv.Pushgateway.Push.CPUSecondsPerPush / lv.Relay.Push.CPUSecondsPerPush
			lv.Ratios["rss_per_series_relay_over_pushgateway"] = lv.Relay.RSSBytesPerSeries / lv.Pushgateway.RSSBytesPerSeries
		}
		res.Levels = append(res.Levels, lv)
	}
	res.Machine.LoadEnd = loadavg()
	res.Goals = goals(res)
	return res, nil
}

var formats = []struct{ name, accept string }{{"text", acceptText}, {"proto", acceptProto}}

func goals(res *Results) []Goal {
	var lv *Level
	for i := range res.Levels {
		if res.Levels[i].N == 100 {
			lv = &res.Levels[i]
		}
	}
	if lv == nil {
		return nil
	}
	var out []Goal
	if v, ok := lv.Ratios["push_throughput_relay_over_pushgateway"]; ok {
		out = append(out, Goal{Name: "push throughput at N=100, relay / Pushgateway", Target: ">= 10", Value: v, Met: v >= 10})
	}
	for _, f := range formats {
		v := lv.Ratios["scrape_relay_over_bare_"+f.name]
		out = append(out, Goal{Name: "scrape time at N=100, relay / bare bytes (" + f.name + ")", Target: "<= 1.5", Value: v, Met: v > 0 && v <= 1.5})
	}
	if v, ok := lv.Ratios["rss_per_series_relay_over_pushgateway"]; ok {
		out = append(out, Goal{Name: "RSS per stored series at N=100, relay / Pushgateway", Target: "<= 0.5", Value: v, Met: v <= 0.5})
	}
	out = append(out, Goal{Name: "steady-state scrape allocations per series", Target: "0", Note: "Go benchmarks, see below"})
	return out
}

func dur(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond).String()
}

// bare serves the last body PUT to /body on GET /metrics, from memory, with its Content-Type.
// Two bodies are kept, chosen by the Accept header as the relay chose them.
func bare(args []string) {
	fs := flag.NewFlagSet("bare", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "listen address")
	_ = fs.Parse(args)
	type body struct {
		ct string
		b  []byte
	}
	var mu sync.RWMutex
	bodies := map[bool]body{} // key: protobuf
	mux := http.NewServeMux()
	mux.HandleFunc("/-/ready", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("PUT /body", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ct := r.Header.Get("Content-Type")
		mu.Lock()
		bodies[strings.Contains(ct, "protobuf")] = body{ct, b}
		mu.Unlock()
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		mu.RLock()
		b := bodies[strings.Contains(r.Header.Get("Accept"), "protobuf")]
		mu.RUnlock()
		w.Header().Set("Content-Type", b.ct)
		_, _ = w.Write(b.b)
	})
	srv := &http.Server{Addr: *listen, Handler: mux}
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
		<-ch
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
