package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
)

// Sections of docs/benchmarks.md that make bench rewrites; the rest of the document is kept.
const (
	beginMarker     = "<!-- bench:results:begin (written by make bench) -->"
	endMarker       = "<!-- bench:results:end -->"
	beginStatMarker = "<!-- bench:benchstat:begin (written by make bench) -->"
	endStatMarker   = "<!-- bench:benchstat:end -->"
)

// writeDoc replaces the results section of the document with res and, when benchstatFile is
// set, the Go benchmarks section with that file.
func writeDoc(path string, res *Results, benchstatFile string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("results document: %w", err)
	}
	if doc, err = replaceSection(path, doc, beginMarker, endMarker, renderResults(res)); err != nil {
		return err
	}
	if benchstatFile != "" {
		stat, err := os.ReadFile(benchstatFile)
		if err != nil {
			return fmt.Errorf("-benchstat: %w", err)
		}
		if doc, err = replaceSection(path, doc, beginStatMarker, endStatMarker, "```\n"+string(stat)+"```\n"); err != nil {
			return err
		}
	}
	return os.WriteFile(path, doc, 0o644)
}

func replaceSection(path string, doc []byte, begin, end, content string) ([]byte, error) {
	i, j := bytes.Index(doc, []byte(begin)), bytes.Index(doc, []byte(end))
	if i < 0 || j < i {
		return nil, fmt.Errorf("%s: no section between the lines %q and %q", path, begin, end)
	}
	var b bytes.Buffer
	b.Write(doc[:i+len(begin)])
	b.WriteString("\n")
	b.WriteString(content)
	b.Write(doc[j:])
	return b.Bytes(), nil
}

func ms(s float64) string {
	if s == 0 {
		return "-"
	}
	if s < 0.001 {
		return fmt.Sprintf("%.3f ms", s*1e3)
	}
	return fmt.Sprintf("%.2f ms", s*1e3)
}

func ratio(v float64, ok bool) string {
	if !ok || v == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func renderResults(res *Results) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := res.Machine
	p("Run of %s: `%s`.\n\n", res.Date, res.Command)
	p("- Machine: %d cores (%s), %s, %s; load average (1, 5, 15 min) %s at the start, %s at the end.\n", m.NProc, m.CPU, m.Kernel, m.Go, m.LoadStart, m.LoadEnd)
	p("- Servers: %s; %s.\n", m.Relay, m.Pushgatway)
	p("- Payload: `%s`, %d families, %d series (sample lines), %d bytes as text, %d as delimited protobuf (what is pushed).\n",
		res.Payload.File, res.Payload.Families, res.Payload.Series, res.Payload.TextBytes, res.Payload.ProtoBytes)
	s := res.Settings
	p("- Load: %d concurrent pushers re-pushing the N groups round robin (PUT), at most %d pushes or %.0f s per server and N; scrapes: median of at most %d (or %.0f s) per server, format and N, after one warm-up, no compression.\n",
		s.Concurrency, s.PushesMax, s.PushSecondsMax, s.ScrapesMax, s.ScrapeSecondsMax)
	p("- Relay flags: `%s`; Pushgateway flags: `%s`; Pushgateway's fill bounded to %.0f s in total.\n\n", s.RelayArgs, s.PushgatewayArgs, s.PushgatewayFillBudget)

	if len(res.Goals) > 0 {
		p("#### Goals (N=100)\n\n| goal | target | this run | met |\n|---|---|---|---|\n")
		for _, g := range res.Goals {
			v := fmt.Sprintf("%.2f", g.Value)
			met := map[bool]string{true: "yes", false: "**no**"}[g.Met]
			if g.Note != "" {
				v, met = g.Note, "see Go benchmarks"
			}
			p("| %s | %s | %s | %s |\n", g.Name, g.Target, v, met)
		}
		p("\n")
	}

	p("#### Push throughput and latency\n\n| N | series | relay pushes/s | Pushgateway pushes/s | relay / Pushgateway | relay p50 / p99 | Pushgateway p50 / p99 |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, lv := range res.Levels {
		r, g := lv.Relay, lv.Pushgateway
		gp, gl := "not reached", "-"
		if g.Reached {
			gp, gl = fmt.Sprintf("%.1f", g.PushesPerSecond), ms(g.Push.P50Seconds)+" / "+ms(g.Push.P99Seconds)
		}
		v, ok := lv.Ratios["push_throughput_relay_over_pushgateway"]
		p("| %d | %d | %.1f | %s | %s | %s | %s |\n", lv.N, lv.Series, r.PushesPerSecond, gp, ratio(v, ok), ms(r.Push.P50Seconds)+" / "+ms(r.Push.P99Seconds), gl)
	}
	p("\nTime to fill (each group's first push, one at a time):")
	for _, lv := range res.Levels {
		p(" N=%d relay %.2f s, Pushgateway %.2f s;", lv.N, lv.Relay.FillSeconds, lv.Pushgateway.FillSeconds)
	}
	p("\n\n")

	p("#### CPU per push\n\n| N | relay | Pushgateway | Pushgateway / relay |\n|---:|---:|---:|---:|\n")
	for _, lv := range res.Levels {
		g := "-"
		if lv.Pushgateway.Reached {
			g = ms(lv.Pushgateway.Push.CPUSecondsPerPush)
		}
		v, ok := lv.Ratios["cpu_per_push_pushgateway_over_relay"]
		p("| %d | %s | %s | %s |\n", lv.N, ms(lv.Relay.Push.CPUSecondsPerPush), g, ratio(v, ok))
	}
	p("\n")

	for _, f := range formats {
		p("#### Scrape of /metrics, %s format (median)\n\n| N | relay bytes | relay | bare bytes (limit) | relay / limit | Pushgateway bytes | Pushgateway | Pushgateway / limit |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n", f.name)
		for _, lv := range res.Levels {
			r, bb := lv.Relay.Scrape[f.name], lv.Bare[f.name]
			gb, gt := "-", "not reached"
			if g, ok := lv.Pushgateway.Scrape[f.name]; ok {
				gb, gt = fmt.Sprint(g.Bytes), ms(g.Seconds)
			}
			v1, ok1 := lv.Ratios["scrape_relay_over_bare_"+f.name]
			v2, ok2 := lv.Ratios["scrape_pushgateway_over_bare_"+f.name]
			p("| %d | %d | %s | %s | %s | %s | %s | %s |\n", lv.N, r.Bytes, ms(r.Seconds), ms(bb.Seconds), ratio(v1, ok1), gb, gt, ratio(v2, ok2))
		}
		p("\n")
	}

	p("#### Memory (RSS after the load at each N)\n\nIdle RSS before any push: relay %s, Pushgateway %s. Per series: (RSS - idle RSS) / stored series.\n\n", mib(res.IdleRSS["opview-relay"]), mib(res.IdleRSS["pushgateway"]))
	p("| N | series | relay RSS | Pushgateway RSS | relay bytes/series | Pushgateway bytes/series | relay / Pushgateway |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, lv := range res.Levels {
		g, gs := "not reached", "-"
		if lv.Pushgateway.Reached {
			g, gs = mib(lv.Pushgateway.RSSBytes), fmt.Sprintf("%.0f", lv.Pushgateway.RSSBytesPerSeries)
		}
		v, ok := lv.Ratios["rss_per_series_relay_over_pushgateway"]
		p("| %d | %d | %s | %s | %.0f | %s | %s |\n", lv.N, lv.Series, mib(lv.Relay.RSSBytes), g, lv.Relay.RSSBytesPerSeries, gs, ratio(v, ok))
	}
	p("\nLoad average at the start of each N:")
	for _, lv := range res.Levels {
		p(" N=%d: %s;", lv.N, lv.LoadAvg)
	}
	p("\n")
	return b.String()
}
