package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strings"
	"time"
)

// Config bounds a run of Run.
type Config struct {
	RelayBin, PushgatewayBin, LimitsBin string
	Payload                             string // text exposition every group pushes
	Levels                              []int  // numbers of groups, ascending
	Repeats                             int    // repetitions of every figure at every level
	Concurrency                         int    // concurrent pushers
	PushTime                            time.Duration
	PushMax                             int
	ScrapeTime                          time.Duration
	ScrapeMax                           int
	// PushgatewayFillBudget bounds the total time spent filling Pushgateway's default mode,
	// whose pushes cost in proportion to what it holds; levels not reached in time are reported
	// as such.
	PushgatewayFillBudget time.Duration
	MaxSeries             int    // the relay's --group.max-series
	RelayEnv              string // extra NAME=VALUE in the relay's environment
	OutDir                string // the processes' logs
	Goals                 []Goal
	Command               string // how the run was started, for the report
	Logf                  func(format string, args ...any)
}

// server is a process measured by Run.
type server struct {
	name  string
	argv  func(addr string) []string
	env   []string
	store bool          // holds the pushed groups: filled first, RSS measured
	fill  time.Duration // total fill budget, 0 for none
	proc  *Process
	idle  int64 // RSS before any push
	held  int   // groups pushed so far
	spent time.Duration
	stuck bool // its fill budget ran out
}

func (c *Config) servers() []*server {
	relayArgs := []string{"--group.ttl=0", fmt.Sprintf("--group.max-series=%d", c.MaxSeries),
		fmt.Sprintf("--store.max-groups=%d", max(1000, c.Levels[len(c.Levels)-1])), "--log.level=warn"}
	// Memory only, like the relay (Debian's default has a persistence file).
	pgwArgs := []string{"--persistence.file=", "--log.level=warn"}
	var env []string
	if c.RelayEnv != "" {
		env = []string{c.RelayEnv}
	}
	return []*server{
		{name: Relay, store: true, env: env, argv: func(addr string) []string {
			return append([]string{c.RelayBin, "serve", "--web.listen-address=" + addr}, relayArgs...)
		}},
		{name: PushgatewayUnchecked, store: true, argv: func(addr string) []string {
			return append([]string{c.PushgatewayBin, "--web.listen-address=" + addr, "--push.disable-consistency-check"}, pgwArgs...)
		}},
		{name: Pushgateway, store: true, fill: c.PushgatewayFillBudget, argv: func(addr string) []string {
			return append([]string{c.PushgatewayBin, "--web.listen-address=" + addr}, pgwArgs...)
		}},
		{name: Limit, argv: func(addr string) []string {
			return []string{c.LimitsBin, "--web.listen-address=" + addr, fmt.Sprintf("--group.max-series=%d", c.MaxSeries)}
		}},
	}
}

// Run starts the servers, measures every level and evaluates the goals.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	start := time.Now()
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	pl, err := LoadPayload(cfg.Payload)
	if err != nil {
		return nil, err
	}
	res := &Results{Date: start.UTC().Format(time.RFC3339), Command: cfg.Command}
	res.Machine = Machine{NProc: runtime.NumCPU(), CPU: CPUModel(), Kernel: Version("uname", "-sr"), Go: runtime.Version(), LoadStart: LoadAvg(),
		Versions: map[string]string{Relay: Version(cfg.RelayBin, "--version"), Pushgateway: Version(cfg.PushgatewayBin, "--version")}}
	res.Payload.File, res.Payload.Families, res.Payload.Series = cfg.Payload, pl.Families, pl.Series
	res.Payload.TextBytes, res.Payload.ProtoBytes = len(pl.Text), len(pl.Proto)
	res.Settings = Settings{Repeats: cfg.Repeats, Concurrency: cfg.Concurrency, PushSecondsMax: cfg.PushTime.Seconds(), PushesMax: cfg.PushMax,
		ScrapeSecondsMax: cfg.ScrapeTime.Seconds(), ScrapesMax: cfg.ScrapeMax, PushgatewayFillBudget: cfg.PushgatewayFillBudget.Seconds(),
		Args: map[string]string{}, RelayEnv: cfg.RelayEnv}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}

	cpuStart := SampleCPU()
	servers := cfg.servers()
	var relay, limit *server
	res.IdleRSS = map[string]int64{}
	for _, s := range servers {
		var args []string
		for _, a := range s.argv("ADDR")[1:] {
			if !strings.Contains(a, "ADDR") {
				args = append(args, a)
			}
		}
		res.Settings.Args[s.name] = strings.Join(args, " ")
		if s.proc, err = Start(ctx, s.name, cfg.OutDir, s.env, s.argv); err != nil {
			return nil, err
		}
		defer s.proc.Stop()
		if s.store {
			if s.idle, err = s.proc.RSS(); err != nil {
				return nil, err
			}
			res.IdleRSS[s.name] = s.idle
		}
		switch s.name {
		case Relay:
			relay = s
		case Limit:
			limit = s
		}
	}

	for _, n := range cfg.Levels {
		lv := &Level{N: n, Series: n * pl.Series, Servers: map[string]*ServerLevel{}}
		res.Levels = append(res.Levels, lv)
		logf("N=%d (load average %s)", n, LoadAvg())
		for _, s := range servers {
			sl := &ServerLevel{Reached: true}
			lv.Servers[s.name] = sl
			if !s.store {
				continue
			}
			// Fill: push the groups this level adds, one at a time, as a fleet of operators would
			// start, within the server's budget.
			t0 := time.Now()
			for s.held < n && !s.stuck {
				if s.fill > 0 && s.spent+time.Since(t0) > s.fill {
					s.stuck = true
					break
				}
				if err := Push(ctx, s.proc.Base, s.held, pl.Proto); err != nil {
					return nil, fmt.Errorf("%s: filling: %w", s.name, err)
				}
				s.held++
			}
			s.spent += time.Since(t0)
			sl.FillSeconds = time.Since(t0).Seconds()
			if s.held < n {
				sl.Reached = false
				sl.Note = fmt.Sprintf("not reached: %d groups after its fill budget of %s", s.held, s.fill)
				logf("  %s: %s", s.name, sl.Note)
			}
		}
		for rep := range cfg.Repeats {
			paired := map[*server]map[string]float64{} // the relay's and the limit's figures until both are scraped
			lv.LoadAvg = append(lv.LoadAvg, LoadAvg())
			// The bare-bytes limit of this repetition: the relay's exposition as it is now.
			if err := copyExposition(ctx, relay.proc.Base, limit.proc.Base); err != nil {
				return nil, err
			}
			// Each repetition starts with the next server, so that no server is always measured
			// first (or last) after the others' load.
			for i := range servers {
				s := servers[(i+rep)%len(servers)]
				sl := lv.Servers[s.name]
				if !sl.Reached {
					continue
				}
				figs, err := measure(ctx, cfg, s, n, lv.Series, pl.Proto, s != relay && s != limit)
				if err != nil {
					return nil, fmt.Errorf("%s at %d groups: %w", s.name, n, err)
				}
				if s == relay || s == limit {
					paired[s] = figs
				}
				if len(paired) == 2 {
					if err := scrapePair(ctx, cfg, paired[relay], paired[limit], relay.proc.Base, limit.proc.Base); err != nil {
						return nil, fmt.Errorf("scraping the relay and the limit at %d groups: %w", n, err)
					}
					for _, ps := range []*server{relay, limit} {
						if err := measureRSS(ps, lv.Series, paired[ps]); err != nil {
							return nil, err
						}
						logScrape(logf, rep, cfg.Repeats, ps, paired[ps])
					}
					clear(paired)
				}
				sl.Runs = append(sl.Runs, figs)
				if s == relay || s == limit {
					continue
				}
				logScrape(logf, rep, cfg.Repeats, s, figs)
			}
		}
	}
	res.Machine.LoadEnd = LoadAvg()
	var running []*Process
	for _, s := range servers {
		running = append(running, s.proc)
	}
	if other, ok := OtherCPU(cpuStart, SampleCPU(running...), time.Since(start), res.Machine.NProc); ok {
		res.Machine.OtherCPU = &other
	}
	res.Goals = Evaluate(cfg.Goals, res.Levels)
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

func logScrape(logf func(string, ...any), rep, repeats int, s *server, figs map[string]float64) {
	logf("  %d/%d %-21s %7.1f pushes/s, %s CPU/push, scrape text %s proto %s%s", rep+1, repeats, s.name,
		figs[PushesPerSecond], Millis(figs[CPUSecondsPerPush]), Millis(figs[ScrapeSeconds("text")]), Millis(figs[ScrapeSeconds("proto")]),
		rssNote(figs))
}

func rssNote(figs map[string]float64) string {
	if v, ok := figs[RSSBytesPerSeries]; ok {
		return fmt.Sprintf(", %.0f bytes/series", v)
	}
	return ""
}

// measure is one repetition of s at n groups: a push phase, a scrape phase per format, the RSS.
// measure pushes to s, then scrapes it and reads its RSS unless scrape is false (the relay and
// the limit are scraped together, by scrapePair, and their RSS read after).
func measure(ctx context.Context, cfg Config, s *server, n, series int, body []byte, scrape bool) (map[string]float64, error) {
	figs, err := PushLoad(ctx, s.proc.Base, s.proc.CPUSeconds, n, cfg.Concurrency, cfg.PushMax, cfg.PushTime, body)
	if err != nil {
		return nil, err
	}
	for _, f := range Formats {
		if !scrape {
			break
		}
		sec, size, err := ScrapeLoad(ctx, s.proc.Base, f.Accept, cfg.ScrapeMax, cfg.ScrapeTime)
		if err != nil {
			return nil, err
		}
		figs[ScrapeSeconds(f.Name)], figs[ScrapeBytes(f.Name)] = sec, float64(size)
	}
	if scrape {
		if err := measureRSS(s, series, figs); err != nil {
			return nil, err
		}
	}
	return figs, nil
}

// measureRSS sets the RSS figures of a server that stores groups, after its pushes and scrapes.
func measureRSS(s *server, series int, figs map[string]float64) error {
	if !s.store {
		return nil
	}
	rss, err := s.proc.RSS()
	if err != nil {
		return err
	}
	figs[RSSBytes], figs[RSSBytesPerSeries] = float64(rss), float64(rss-s.idle)/float64(series)
	return nil
}

// scrapePair scrapes the relay and the bare-bytes limit in alternation, in each format, and sets
// their figures: the ratio of the two is a goal, and scrapes of one moment compare better than
// phases seconds apart (the bare handler's own time moved by up to 2.4 times between phases).
func scrapePair(ctx context.Context, cfg Config, relay, limit map[string]float64, relayBase, limitBase string) error {
	for _, f := range Formats {
		sec, size, err := ScrapePair(ctx, relayBase, limitBase, f.Accept, cfg.ScrapeMax, cfg.ScrapeTime)
		if err != nil {
			return err
		}
		relay[ScrapeSeconds(f.Name)], relay[ScrapeBytes(f.Name)] = sec[0], float64(size[0])
		limit[ScrapeSeconds(f.Name)], limit[ScrapeBytes(f.Name)] = sec[1], float64(size[1])
	}
	return nil
}

// copyExposition scrapes the relay in each format and PUTs the bytes to the limits process, which
// then serves them as the bare-bytes limit.
func copyExposition(ctx context.Context, from, to string) error {
	for _, f := range Formats {
		var body bytes.Buffer
		if _, ct, err := ScrapeOnce(ctx, from, f.Accept, &body); err != nil {
			return err
		} else if err := put(ctx, to+"/bare", ct, body.Bytes()); err != nil {
			return err
		}
	}
	return nil
}

func put(ctx context.Context, url, contentType string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := Client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT %s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}
