package ui

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/NimbleMarkets/ntcharts/barchart"
	"github.com/NimbleMarkets/ntcharts/sparkline"
	"github.com/charmbracelet/bubbles/table"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"

	"github.com/opview/opview/internal/top/stats"
)

var (
	titleStyle = lipgloss.NewStyle().Bold(true)
	dimStyle   = lipgloss.NewStyle().Faint(true)
	errStyle   = lipgloss.NewStyle().Foreground(lipgloss.Color("9")).Bold(true)
	tabStyle   = lipgloss.NewStyle().Reverse(true).Bold(true)
	barStyle   = lipgloss.NewStyle().Foreground(lipgloss.Color("6"))
	sparkStyle = lipgloss.NewStyle().Foreground(lipgloss.Color("2"))
)

func tableStyles() table.Styles {
	return table.Styles{
		Header:   lipgloss.NewStyle().Bold(true).PaddingLeft(1),
		Cell:     lipgloss.NewStyle().PaddingLeft(1),
		Selected: lipgloss.NewStyle().Reverse(true),
	}
}

// numericWidths are the widths of the table's numeric columns; the name takes the rest.
var numericWidths = [stats.NumColumns]int{0, 7, 5, 7, 7, 7, 5, 9, 7}

func columns(width, sortCol int, reverse bool) []table.Column {
	cols := make([]table.Column, stats.NumColumns)
	used := 0
	for _, w := range numericWidths {
		used += w + 1 // a cell's left padding
	}
	nameW := max(12, width-used-1)
	for i := range cols {
		title := stats.Titles[i]
		w := numericWidths[i]
		if i == stats.ColName {
			w = nameW
			title = "  " + title
		}
		if i == sortCol {
			if reverse == (i == stats.ColName) {
				title += "▼"
			} else {
				title += "▲"
			}
		}
		if i != stats.ColName {
			title = padLeft(title, w)
		}
		cols[i] = table.Column{Title: title, Width: w}
	}
	return cols
}

func padLeft(s string, w int) string {
	if n := ansi.StringWidth(s); n < w {
		return strings.Repeat(" ", w-n) + s
	}
	return s
}

// View renders the whole screen: header, body, footer, each line cut to the terminal's width.
func (m *Model) View() string {
	var body string
	switch {
	case m.help:
		body = helpText
	case m.screen == screenDetail:
		body = m.detail.View()
	case m.screen == screenProcess:
		body = m.process.View()
	default:
		if len(m.visible) == 0 {
			body = m.emptyTable()
		} else {
			body = m.table.View()
		}
	}
	return fit(m.header()+"\n"+body, m.footer(), m.width, m.height)
}

// fit cuts every line to width and pads or cuts the body so that the footer is the last line.
func fit(top, footer string, width, height int) string {
	lines := strings.Split(top, "\n")
	if len(lines) > height-1 {
		lines = lines[:max(0, height-1)]
	}
	for len(lines) < height-1 {
		lines = append(lines, "")
	}
	lines = append(lines, footer)
	for i, l := range lines {
		lines[i] = ansi.Truncate(l, width, "…")
	}
	return strings.Join(lines, "\n")
}

func (m *Model) emptyTable() string {
	head := m.table.View()
	if i := strings.IndexByte(head, '\n'); i >= 0 {
		head = head[:i]
	}
	msg := "  waiting for the first scrape"
	switch {
	case m.filter.Value() != "" && len(m.all) > 0:
		msg = fmt.Sprintf("  no controller matches %q (Esc clears the filter)", m.filter.Value())
	case m.scrapes > 0:
		msg = "  no controller-runtime controllers in this source's metrics"
	}
	return head + "\n" + msg
}

func (m *Model) header() string {
	now := m.opts.Now()
	w := m.opts.Window
	var status string
	switch {
	case m.opts.Source.Once():
		status = "one scrape"
	case m.scrapes == 0 && m.lastErr == nil:
		status = "connecting"
	case m.scrapes > 0:
		status = "scraped " + age(now.Sub(m.lastScrape)) + " ago"
	default:
		status = "no data yet"
	}
	line1 := titleStyle.Render("opview top") + "  " + status + "  " + m.opts.Source.String()

	tabs := []struct {
		s    screen
		name string
	}{{screenControllers, "Controllers"}, {screenDetail, m.selected}, {screenProcess, "Process"}}
	var names []string
	for _, t := range tabs {
		switch {
		case t.s == screenDetail && m.screen != screenDetail:
		case t.s == m.screen:
			names = append(names, tabStyle.Render("["+t.name+"]"))
		default:
			names = append(names, " "+t.name+" ")
		}
	}
	held := ""
	if w.Len() > 1 {
		held = " (" + age(w.Newest().Sub(w.Oldest())) + " held)"
	}
	line2 := strings.Join(names, " ") + dimStyle.Render(fmt.Sprintf("  every %s, window %s%s", m.opts.Interval, age(w.Range()), held))
	switch {
	case m.opts.Source.Once():
		line2 += dimStyle.Render("  one scrape: no rates, quantiles since start")
	case w.Len() == 1:
		line2 += dimStyle.Render("  rates need a second scrape")
	}
	out := line1 + "\n" + line2
	if m.lastErr != nil {
		since := "no data yet"
		if m.scrapes > 0 {
			since = "showing the data of " + m.lastScrape.Format("15:04:05") + ", " + age(now.Sub(m.lastScrape)) + " ago"
		}
		msg := "source down (" + since + "): " + m.lastErr.Error()
		wrapped := strings.Split(ansi.Wrap(msg, max(20, m.width), " "), "\n")
		if len(wrapped) > errorLines {
			wrapped = wrapped[:errorLines]
			wrapped[errorLines-1] = ansi.Truncate(wrapped[errorLines-1], max(20, m.width)-1, "") + "…"
		}
		for _, l := range wrapped {
			out += "\n" + errStyle.Render(l)
		}
	}
	return out
}

// errorLines is the most lines the header gives the last scrape error.
const errorLines = 3

// headerHeight is the number of lines header returns.
func (m *Model) headerHeight() int {
	return strings.Count(m.header(), "\n") + 1
}

func (m *Model) footer() string {
	if m.editing {
		return m.filter.View() + dimStyle.Render("  Enter keeps, Esc clears")
	}
	var keys string
	switch m.screen {
	case screenControllers:
		keys = "↑↓/jk move  Enter detail  / filter  s sort  Tab process  ? help  q quit"
		if f := m.filter.Value(); f != "" {
			keys = fmt.Sprintf("filter %q (Esc clears)  ", f) + keys
		}
	case screenDetail:
		keys = "↑↓/jk scroll  Esc back  Tab process  ? help  q quit"
	case screenProcess:
		keys = "↑↓/jk scroll  Tab/Esc controllers  ? help  q quit"
	}
	return dimStyle.Render(keys)
}

func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second))
	case d < time.Hour:
		d = d.Round(time.Second)
		if d%time.Minute == 0 {
			return fmt.Sprintf("%dm", int(d/time.Minute))
		}
		return fmt.Sprintf("%dm%ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	}
	return d.Round(time.Minute).String()
}

const helpText = `Keys

  Controllers   ↑/↓ or k/j move, PgUp/PgDn or b/f page, Home/End or g/G first/last
                Enter  the controller's detail
                /      filter by name (Enter keeps the filter, Esc clears it)
                s      sort by the next column, S reverse the order
                1-9    sort by column 1 (CONTROLLER) .. 9 (RETRY/S); again reverses
  Detail        ↑/↓ or k/j scroll, PgUp/PgDn page, Esc back to the controllers
  Process       ↑/↓ or k/j scroll, Esc back
  Everywhere    Tab next screen (Controllers, Process), mouse wheel scrolls,
                ? this help, q or Ctrl+C quit

Columns: REC/S reconciles per second; ERR% errors of all reconciles; P50/P99
reconcile time; WORKERS active/max; DEPTH workqueue depth now; QUEUE P99 time an
item waits in the queue; RETRY/S workqueue retries per second. Rates and
quantiles are over the window (rate() and histogram_quantile() as PromQL).

Press any key to close this help.`

func (m *Model) renderDetail() {
	if m.selected == "" {
		m.detail.SetContent("")
		return
	}
	m.detail.SetContent(detailText(stats.ControllerDetail(m.opts.Window, m.selected), m.width, m.opts.Window.EffectiveRange()))
}

// detailText renders a controller's detail for a terminal width wide.
func detailText(d stats.Detail, width int, window time.Duration) string {
	var b strings.Builder
	in := "in the last " + age(window)
	if d.SinceStart {
		in = "since the process started"
	}
	fmt.Fprintf(&b, "%s  reconciles %s/s  errors %s  workers %s  queue depth %s\n",
		titleStyle.Render("Controller "+d.Name), stats.Rate(d.Reconciles), stats.Percent(d.ErrorRatio),
		stats.Workers(d.Active, d.Max), stats.Count(d.Depth))
	fmt.Fprintf(&b, "Reconcile time  p50 %s  p90 %s  p99 %s\n", stats.Seconds(d.P50), stats.Seconds(d.P90), stats.Seconds(d.P99))
	fmt.Fprintf(&b, "Queue latency   p50 %s  p90 %s  p99 %s   work p50 %s  p99 %s\n",
		stats.Seconds(d.QueueP50), stats.Seconds(d.QueueP90), stats.Seconds(d.QueueP99), stats.Seconds(d.WorkP50), stats.Seconds(d.WorkP99))
	fmt.Fprintf(&b, "Workqueue       adds %s/s  retries %s/s  unfinished %s  longest running %s\n",
		stats.Rate(d.AddsPerSec), stats.Rate(d.RetriesPerSec), stats.Seconds(d.Unfinished), stats.Seconds(d.Longest))

	b.WriteString("\n" + titleStyle.Render("Results "+in) + "\n")
	if len(d.Results) == 0 {
		b.WriteString("  none\n")
	}
	for _, r := range d.Results {
		fmt.Fprintf(&b, "  %-14s %8s  %6s  %s/s\n", r.Name, stats.Count(math.Round(r.Count)), stats.Percent(r.Share), stats.Rate(r.Rate))
	}
	fmt.Fprintf(&b, "  %-14s %8s\n  %-14s %8s\n", "panics", stats.Count(d.Panics), "terminal errors", stats.Count(d.Terminal))

	b.WriteString("\n" + titleStyle.Render("Over the window") + dimStyle.Render(" (oldest left, newest right)") + "\n")
	sparkRows(&b, width, []sparkRow{
		{"reconciles/s", d.RateSteps, stats.Rate(last(d.RateSteps))},
		{"errors/s", d.ErrorSteps, stats.Rate(last(d.ErrorSteps))},
		{"queue depth", d.DepthValues, stats.Count(last(d.DepthValues))},
		{"active workers", d.ActiveValues, stats.Workers(last(d.ActiveValues), d.Max)},
	})

	b.WriteString("\n" + titleStyle.Render("Reconcile time histogram") + dimStyle.Render(", observations "+in) + "\n")
	b.WriteString(histogram(d.Buckets, d.Observations, width))
	return strings.TrimRight(b.String(), "\n")
}

// sparkRow is one labelled sparkline with its newest value.
type sparkRow struct {
	name  string
	vals  []float64
	value string
}

// sparkRows writes one line per row: label, sparkline filling the width, value.
func sparkRows(b *strings.Builder, width int, rows []sparkRow) {
	const labelW, valueW = 16, 10
	sw := max(4, width-labelW-valueW-2)
	for _, r := range rows {
		fmt.Fprintf(b, "  %-*s%s %*s\n", labelW-2, r.name, spark(r.vals, sw), valueW, r.value)
	}
}

func last(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	return v[len(v)-1]
}

// spark draws values as a one-line sparkline exactly width cells wide (the newest at the right).
func spark(vals []float64, width int) string {
	if len(vals) > width {
		vals = vals[len(vals)-width:]
	}
	sl := sparkline.New(width, 1, sparkline.WithStyle(sparkStyle))
	peak := 0.0
	for _, v := range vals {
		if !math.IsNaN(v) {
			peak = max(peak, v)
		}
	}
	if peak > 0 {
		sl.SetMax(peak)
	}
	for _, v := range vals {
		if math.IsNaN(v) {
			v = 0
		}
		sl.Push(v)
	}
	sl.Draw()
	out := sl.View()
	if peak == 0 {
		// An all-zero series draws nothing: show a flat baseline so the row reads as "zero".
		out = sparkStyle.Render(strings.Repeat(" ", max(0, width-len(vals))) + strings.Repeat("▁", min(width, len(vals))))
	}
	return out
}

// histogram renders one row per bucket: its range, a bar scaled so that the row fits width,
// the count and the share of all observations.
func histogram(buckets []stats.Bucket, total float64, width int) string {
	if len(buckets) == 0 {
		return "  no reconcile-time histogram in this source\n"
	}
	labels := make([]string, len(buckets))
	labelW := 0
	for i, bk := range buckets {
		switch {
		case i == 0:
			labels[i] = "≤ " + stats.Seconds(bk.Upper)
		case math.IsInf(bk.Upper, 1):
			labels[i] = "> " + stats.Seconds(bk.Lower)
		default:
			labels[i] = stats.Seconds(bk.Lower) + "–" + stats.Seconds(bk.Upper)
		}
		labelW = max(labelW, ansi.StringWidth(labels[i]))
	}
	const countW, shareW = 8, 6
	barW := max(1, width-2-labelW-1-1-countW-1-shareW)
	peak := 0.0
	for _, bk := range buckets {
		peak = max(peak, bk.Count)
	}
	bars := make([]string, len(buckets))
	if peak > 0 {
		bc := barchart.New(barW, len(buckets), barchart.WithHorizontalBars(), barchart.WithNoAxis(),
			barchart.WithNoAutoBarWidth(), barchart.WithBarWidth(1), barchart.WithBarGap(0),
			barchart.WithNoAutoMaxValue(), barchart.WithMaxValue(peak))
		for _, bk := range buckets {
			bc.Push(barchart.BarData{Values: []barchart.BarValue{{Value: bk.Count, Style: barStyle}}})
		}
		bc.Draw()
		copy(bars, strings.Split(bc.View(), "\n"))
	}
	var b strings.Builder
	for i, bk := range buckets {
		bar := bars[i]
		if w := ansi.StringWidth(bar); w < barW {
			bar += strings.Repeat(" ", barW-w)
		}
		bar = ansi.Truncate(bar, barW, "")
		fmt.Fprintf(&b, "  %-*s %s %*s %*s\n", labelW, labels[i], bar, countW, stats.Count(math.Round(bk.Count)), shareW, stats.Percent(bk.Share))
	}
	fmt.Fprintf(&b, "  %-*s %s %*s\n", labelW, "total", strings.Repeat(" ", barW), countW, stats.Count(math.Round(total)))
	return b.String()
}

func (m *Model) renderProcess() {
	m.process.SetContent(processText(stats.ProcessStats(m.opts.Window), m.width))
}

func processText(p stats.Process, width int) string {
	var b strings.Builder
	b.WriteString(titleStyle.Render("Process") + "\n")
	fmt.Fprintf(&b, "  CPU %s cores   RSS %s   heap %s\n", stats.Rate(p.CPU), stats.Bytes(p.RSS), stats.Bytes(p.HeapAlloc))
	fmt.Fprintf(&b, "  goroutines %s   threads %s   open fds %s of %s\n",
		stats.Count(p.Goroutines), stats.Count(p.Threads), stats.Count(p.OpenFDs), stats.Count(p.MaxFDs))
	fmt.Fprintf(&b, "  GC %s/s   pause p50 %s   max %s (recent, from the Go runtime)\n",
		stats.Rate(p.GCPerSec), stats.Seconds(p.GCPauseP50), stats.Seconds(p.GCPauseMax))
	sparkRows(&b, width, []sparkRow{
		{"CPU cores", p.CPUSteps, stats.Rate(last(p.CPUSteps))},
		{"RSS", p.RSSValues, stats.Bytes(last(p.RSSValues))},
		{"goroutines", p.GoroutineVal, stats.Count(last(p.GoroutineVal))},
	})

	b.WriteString("\n" + titleStyle.Render("API client requests") + "\n")
	if len(p.Requests) == 0 {
		b.WriteString("  none\n")
	} else {
		fmt.Fprintf(&b, "  %-8s %-6s %10s %10s\n", "METHOD", "CODE", "PER SEC", "TOTAL")
	}
	for _, r := range p.Requests {
		fmt.Fprintf(&b, "  %-8s %-6s %10s %10s\n", r.Method, r.Code, stats.Rate(r.Rate), stats.Count(r.Total))
	}

	b.WriteString("\n" + titleStyle.Render("Leader election") + "\n")
	if len(p.Leaders) == 0 {
		b.WriteString("  not enabled\n")
	}
	for _, l := range p.Leaders {
		state := "follower"
		if l.Leader {
			state = "leader"
		}
		fmt.Fprintf(&b, "  %-40s %s\n", l.Name, state)
	}

	b.WriteString("\n" + titleStyle.Render("Webhooks") + "\n")
	if len(p.Webhooks) == 0 {
		b.WriteString("  none\n")
	} else {
		fmt.Fprintf(&b, "  %-30s %10s %7s %9s %9s\n", "WEBHOOK", "PER SEC", "ERR%", "P99", "IN FLIGHT")
	}
	for _, w := range p.Webhooks {
		fmt.Fprintf(&b, "  %-30s %10s %7s %9s %9s\n", w.Name, stats.Rate(w.Rate), stats.Percent(w.ErrorRatio), stats.Seconds(w.P99), stats.Count(w.InFlight))
	}
	return strings.TrimRight(b.String(), "\n")
}
