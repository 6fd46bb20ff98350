package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Sections of docs/benchmarks.md that the bench commands rewrite; the rest is written by hand.
const (
	GoalsSection     = "goals"     // the table of goals, at the top
	ResultsSection   = "results"   // every figure
	BenchstatSection = "benchstat" // make bench-go's benchstat output
	ProfilesSection  = "profiles"  // make bench-profile's top lists
)

func markers(section string) (begin, end string) {
	return "<!-- bench:" + section + ":begin (generated: do not edit) -->", "<!-- bench:" + section + ":end -->"
}

// ReplaceSection returns doc with the lines between section's markers replaced by content.
func ReplaceSection(doc []byte, section, content string) ([]byte, error) {
	begin, end := markers(section)
	i, j := bytes.Index(doc, []byte(begin)), bytes.Index(doc, []byte(end))
	if i < 0 || j < i {
		return nil, fmt.Errorf("no section between the lines %q and %q", begin, end)
	}
	var b bytes.Buffer
	b.Write(doc[:i+len(begin)])
	b.WriteString("\n")
	b.WriteString(content)
	if !strings.HasSuffix(content, "\n") {
		b.WriteString("\n")
	}
	b.Write(doc[j:])
	return b.Bytes(), nil
}

// WriteSections rewrites sections (name to content) of the document at path.
func WriteSections(path string, sections map[string]string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for name, content := range sections {
		if doc, err = ReplaceSection(doc, name, content); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return os.WriteFile(path, doc, 0o644)
}

// Millis formats seconds as milliseconds, "-" for none.
func Millis(s float64) string {
	switch {
	case s == 0:
		return "-"
	case s < 0.001:
		return fmt.Sprintf("%.3f ms", s*1e3)
	case s < 0.1:
		return fmt.Sprintf("%.2f ms", s*1e3)
	}
	return fmt.Sprintf("%.0f ms", s*1e3)
}

func plain(v float64) string { return fmt.Sprintf("%.2f", v) }
func rate(v float64) string  { return fmt.Sprintf("%.0f", v) }
func mib(v float64) string   { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
func whole(v float64) string { return fmt.Sprintf("%.0f", v) }

// spread formats a summary as "median (min–max)" with format, "-" when there is none.
func spread(s Summary, ok bool, format func(float64) string) string {
	if !ok {
		return "-"
	}
	if s.Runs == 1 || s.Min == s.Max {
		return format(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", format(s.Median), format(s.Min), format(s.Max))
}

// RenderGoals is the table that opens docs/benchmarks.md: each goal's ratio at each N, median
// over the repetitions with the spread, and whether the median met it everywhere.
func RenderGoals(res *Results) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("| goal | target |")
	for _, lv := range res.Levels {
		p(" N=%d |", lv.N)
	}
	p(" met |\n|---|---|%s---|\n", strings.Repeat("---:|", len(res.Levels)))
	for _, g := range res.Goals {
		p("| %s | %s |", g.Name, g.Target())
		for _, lv := range res.Levels {
			cell := "not a goal"
			for _, at := range g.At {
				if at.N != lv.N {
					continue
				}
				cell = "not measured"
				if at.Ratio != nil {
					cell = spread(*at.Ratio, true, plain)
					if !at.Met {
						cell = "**" + cell + "**"
					}
				}
			}
			p(" %s |", cell)
		}
		switch {
		case g.Met:
			p(" yes |\n")
		case len(g.Missing) > 0:
			p(" not measured at N=%s |\n", joinInts(g.Missing))
		default:
			p(" **no** |\n")
		}
	}
	busy := "\n**A busy machine**: %s, so other work competed with the servers and the load generator, and the ratios are rougher " +
		"than their spread suggests. Rerun `make bench` on a quiet machine before reading them closely.\n"
	other := ""
	if o := res.Machine.OtherCPU; o != nil {
		// The run itself keeps the cores busy (load average about their number): what says whether
		// the machine was quiet is the CPU other processes took.
		other = fmt.Sprintf("; other processes than the run's took %.0f %% of the machine's CPU time", 100**o)
		if *o > MaxOtherCPU {
			p(busy, fmt.Sprintf("other processes than the run's took %.0f %% of the machine's CPU time during this run (stolen time included)", 100**o))
		}
	} else if load, ok := MaxLoad(res); ok && load > float64(res.Machine.NProc) {
		p(busy, fmt.Sprintf("the 1-minute load average reached %.1f on %d cores during this run", load, res.Machine.NProc))
	}
	p("\nRatios of medians over %d repetitions (min–max of the repetitions' ratios in brackets; **bold**: the median misses the goal). "+
		"Run of %s, %d cores, load average %s at the start and %s at the end%s; %.0f s in all. Goals: `bench/goals.json`.\n",
		res.Settings.Repeats, res.Date, res.Machine.NProc, res.Machine.LoadStart, res.Machine.LoadEnd, other, res.Seconds)
	return b.String()
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ",")
}

// RenderResults is every figure of the run.
func RenderResults(res *Results) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m, s := res.Machine, res.Settings
	p("Run of %s: `%s`.\n\n", res.Date, res.Command)
	p("- Machine: %d cores (%s), %s, %s; load average (1, 5, 15 min) %s at the start, %s at the end.\n", m.NProc, m.CPU, m.Kernel, m.Go, m.LoadStart, m.LoadEnd)
	p("- Servers: opview-relay %s; %s.\n", m.Versions[Relay], m.Versions[Pushgateway])
	p("- Payload: `%s`, %d families, %d series (sample lines), %d bytes as text, %d as delimited protobuf (what is pushed).\n",
		res.Payload.File, res.Payload.Families, res.Payload.Series, res.Payload.TextBytes, res.Payload.ProtoBytes)
	p("- Each figure measured %d times at each N, servers in turn; shown as median (min–max). A push phase: %d concurrent pushers re-pushing the N groups round robin (PUT), at most %d pushes or %.0f s. "+
		"A scrape figure: the median of at most %d scrapes (or %.0f s) after one warm-up, no compression.\n",
		s.Repeats, s.Concurrency, s.PushesMax, s.PushSecondsMax, s.ScrapesMax, s.ScrapeSecondsMax)
	p("- Flags: relay `%s`%s; Pushgateway `%s`; Pushgateway unchecked `%s`; Pushgateway's fill bounded to %.0f s in total.\n\n",
		s.Args[Relay], envNote(s.RelayEnv), s.Args[Pushgateway], s.Args[PushgatewayUnchecked], s.PushgatewayFillBudget)

	table := func(title string, cols []string, row func(lv *Level) []string) {
		p("#### %s\n\n| N | %s |\n|---:|%s\n", title, strings.Join(cols, " | "), strings.Repeat("---:|", len(cols)))
		for _, lv := range res.Levels {
			p("| %d | %s |\n", lv.N, strings.Join(row(lv), " | "))
		}
		p("\n")
	}
	fig := func(lv *Level, server, figure string, format func(float64) string) string {
		if sl := lv.Servers[server]; sl != nil && !sl.Reached {
			return "not reached"
		}
		v, ok := lv.Figure(server, figure)
		return spread(v, ok, format)
	}
	ratio := func(lv *Level, of, over string) string {
		v, ok := lv.Ratio(of, over)
		return spread(v, ok, plain)
	}

	table("Push throughput (pushes/s)", []string{"relay", "Pushgateway unchecked", "Pushgateway", "parse-only", "relay / Pushgateway unchecked", "relay / Pushgateway"},
		func(lv *Level) []string {
			return []string{fig(lv, Relay, PushesPerSecond, rate), fig(lv, PushgatewayUnchecked, PushesPerSecond, rate), fig(lv, Pushgateway, PushesPerSecond, rate),
				fig(lv, Limit, PushesPerSecond, rate),
				ratio(lv, Relay+"/"+PushesPerSecond, PushgatewayUnchecked+"/"+PushesPerSecond), ratio(lv, Relay+"/"+PushesPerSecond, Pushgateway+"/"+PushesPerSecond)}
		})
	table("CPU per push", []string{"relay", "parse-only", "Pushgateway unchecked", "Pushgateway", "relay / parse-only"},
		func(lv *Level) []string {
			return []string{fig(lv, Relay, CPUSecondsPerPush, Millis), fig(lv, Limit, CPUSecondsPerPush, Millis), fig(lv, PushgatewayUnchecked, CPUSecondsPerPush, Millis),
				fig(lv, Pushgateway, CPUSecondsPerPush, Millis), ratio(lv, Relay+"/"+CPUSecondsPerPush, Limit+"/"+CPUSecondsPerPush)}
		})
	table("Push latency, p50 / p99 (client side)", []string{"relay", "Pushgateway unchecked", "Pushgateway"},
		func(lv *Level) []string {
			var out []string
			for _, srv := range []string{Relay, PushgatewayUnchecked, Pushgateway} {
				out = append(out, fig(lv, srv, PushP50Seconds, Millis)+" / "+fig(lv, srv, PushP99Seconds, Millis))
			}
			return out
		})
	for _, f := range Formats {
		sec, size := ScrapeSeconds(f.Name), ScrapeBytes(f.Name)
		table("Scrape of /metrics, "+f.Name+" format", []string{"relay bytes", "relay", "bare bytes (limit)", "relay / limit", "Pushgateway unchecked", "Pushgateway", "Pushgateway unchecked / limit"},
			func(lv *Level) []string {
				v, _ := lv.Figure(Relay, size)
				return []string{whole(v.Median), fig(lv, Relay, sec, Millis), fig(lv, Limit, sec, Millis), ratio(lv, Relay+"/"+sec, Limit+"/"+sec),
					fig(lv, PushgatewayUnchecked, sec, Millis), fig(lv, Pushgateway, sec, Millis), ratio(lv, PushgatewayUnchecked+"/"+sec, Limit+"/"+sec)}
			})
	}
	p("Idle RSS before any push: relay %s, Pushgateway unchecked %s, Pushgateway %s. Per series: (RSS − idle RSS) / stored series.\n\n",
		mib(float64(res.IdleRSS[Relay])), mib(float64(res.IdleRSS[PushgatewayUnchecked])), mib(float64(res.IdleRSS[Pushgateway])))
	table("Memory (RSS after each repetition)", []string{"series", "relay RSS", "Pushgateway unchecked RSS", "relay bytes/series", "Pushgateway unchecked bytes/series", "Pushgateway bytes/series", "relay / Pushgateway unchecked"},
		func(lv *Level) []string {
			return []string{fmt.Sprint(lv.Series), fig(lv, Relay, RSSBytes, mib), fig(lv, PushgatewayUnchecked, RSSBytes, mib),
				fig(lv, Relay, RSSBytesPerSeries, whole), fig(lv, PushgatewayUnchecked, RSSBytesPerSeries, whole), fig(lv, Pushgateway, RSSBytesPerSeries, whole),
				ratio(lv, Relay+"/"+RSSBytesPerSeries, PushgatewayUnchecked+"/"+RSSBytesPerSeries)}
		})
	p("Time to fill (each new group's first push, one at a time):")
	for _, lv := range res.Levels {
		p(" N=%d relay %.2f s, Pushgateway unchecked %.2f s, Pushgateway %.2f s;", lv.N, fill(lv, Relay), fill(lv, PushgatewayUnchecked), fill(lv, Pushgateway))
	}
	p("\n\nLoad average at the start of each repetition:\n")
	for _, lv := range res.Levels {
		p("- N=%d: %s\n", lv.N, strings.Join(lv.LoadAvg, "; "))
	}
	return b.String()
}

func fill(lv *Level, server string) float64 {
	if sl := lv.Servers[server]; sl != nil {
		return sl.FillSeconds
	}
	return 0
}

func envNote(env string) string {
	if env == "" {
		return ""
	}
	return " with `" + env + "`"
}

// MaxOtherCPU is the share of the machine's CPU time that other processes may take during a run
// still called quiet.
const MaxOtherCPU = 0.10

// MaxLoad is the highest 1-minute load average recorded during the run (at its start and end and
// at the start of each repetition).
func MaxLoad(res *Results) (float64, bool) {
	loads := []string{res.Machine.LoadStart, res.Machine.LoadEnd}
	for _, lv := range res.Levels {
		loads = append(loads, lv.LoadAvg...)
	}
	found, top := false, 0.0
	for _, l := range loads {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		found, top = true, max(top, v)
	}
	return top, found
}
