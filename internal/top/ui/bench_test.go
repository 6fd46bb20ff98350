package ui

import (
	"bytes"
	"io"
	"runtime"
	"syscall"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/opview/opview/internal/top/fixture"
	"github.com/opview/opview/internal/top/stats"
	"github.com/opview/opview/internal/top/window"
)

const (
	benchControllers = 50
	benchSeries      = 20000
	benchWindow      = 5 * time.Minute // the defaults: 150 scrapes of 2s
	benchInterval    = 2 * time.Second
)

// benchOperator is 50 controllers plus unrelated series, 20k series per scrape in all.
func benchOperator(b *testing.B) fixture.Operator {
	op := fixture.Operator{Controllers: fixture.Names(benchControllers)}
	n := countSeries(b, []byte(op.Text(1)))
	op.Filler = benchSeries - n
	if got := countSeries(b, []byte(op.Text(1))); got != benchSeries {
		b.Fatalf("fixture has %d series, want %d", got, benchSeries)
	}
	return op
}

// countSeries counts the series of an exposition as Prometheus stores them (every bucket, sum and
// count of a histogram).
func countSeries(b *testing.B, text []byte) int {
	n := 0
	for _, mf := range parseText(b, text) {
		for _, m := range mf.Metric {
			switch {
			case m.Histogram != nil:
				n += len(m.Histogram.Bucket) + 3 // the buckets, +Inf, _sum, _count
			case m.Summary != nil:
				n += len(m.Summary.Quantile) + 2
			default:
				n++
			}
		}
	}
	return n
}

func parseText(b *testing.B, text []byte) []*dto.MetricFamily {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		b.Fatal(err)
	}
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, f := range fams {
		out = append(out, f)
	}
	return out
}

// BenchmarkScrapeAndRedraw is one cycle of opview top on a full default window (150 scrapes) on
// the detail screen at 200x60: decode a 20k-series scrape, add it to the window, recompute every
// screen, render the frame. Sub-benchmarks: the whole cycle with the text format and with
// delimited protobuf (what the scraper asks client_golang for first), then each part alone.
func BenchmarkScrapeAndRedraw(b *testing.B) {
	op := benchOperator(b)
	capacity := window.Capacity(benchWindow, benchInterval)
	texts := make([][]byte, capacity+64)
	protos := make([][]byte, len(texts))
	for i := range texts {
		texts[i] = []byte(op.Text(i))
		var buf bytes.Buffer
		enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeProtoDelim))
		for _, mf := range parseText(b, texts[i]) {
			if err := enc.Encode(mf); err != nil {
				b.Fatal(err)
			}
		}
		protos[i] = buf.Bytes()
	}
	decodeText := func(i int) []*dto.MetricFamily { return parseText(b, texts[i%len(texts)]) }
	decodeProto := func(i int) []*dto.MetricFamily {
		dec := expfmt.NewDecoder(bytes.NewReader(protos[i%len(protos)]), expfmt.NewFormat(expfmt.TypeProtoDelim))
		var out []*dto.MetricFamily
		for {
			mf := &dto.MetricFamily{}
			if err := dec.Decode(mf); err != nil {
				if err == io.EOF {
					return out
				}
				b.Fatal(err)
			}
			out = append(out, mf)
		}
	}
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	model := func() (*Model, *int) {
		w := window.New(benchWindow, capacity, stats.Families...)
		for i := range capacity {
			w.Add(t0.Add(time.Duration(i)*benchInterval), parseText(b, texts[i]))
		}
		step := capacity
		m := New(Options{Source: fixedSource{}, Window: w, Interval: benchInterval, Now: func() time.Time { return t0.Add(time.Duration(step) * benchInterval) }})
		m.Update(tea.WindowSizeMsg{Width: 200, Height: 60})
		m.Update(key("enter")) // the detail screen: its histogram and sparklines are rendered too
		return m, &step
	}
	for _, c := range []struct {
		name   string
		decode func(int) []*dto.MetricFamily
		redraw bool
	}{
		{"cycle/text", decodeText, true},
		{"cycle/protobuf", decodeProto, true},
		{"decode/text", decodeText, false},
		{"decode/protobuf", decodeProto, false},
		{"window-and-redraw", nil, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			m, step := model()
			var pre [][]*dto.MetricFamily
			if c.decode == nil {
				for i := range 8 {
					pre = append(pre, decodeText(i))
				}
			}
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				var fams []*dto.MetricFamily
				if c.decode != nil {
					fams = c.decode(*step)
				} else {
					fams = pre[i%len(pre)]
				}
				if c.redraw {
					m.Update(scrapeMsg{at: t0.Add(time.Duration(*step) * benchInterval), fams: fams})
					_ = m.View()
				}
				*step++
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(m.opts.Window.SeriesCount()), "series-kept")
		})
	}
}

// BenchmarkWindowMemory fills a default window (150 scrapes) with the 20k-series scrapes and
// reports the heap it holds (the families opview top reads; the others are dropped on Add).
func BenchmarkWindowMemory(b *testing.B) {
	op := benchOperator(b)
	capacity := window.Capacity(benchWindow, benchInterval)
	scrapes := make([][]*dto.MetricFamily, 8)
	for i := range scrapes {
		scrapes[i] = parseText(b, []byte(op.Text(i)))
	}
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	var held float64
	var series int
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		w := window.New(benchWindow, capacity, stats.Families...)
		for j := range capacity + 10 { // past the capacity: the ring wraps
			w.Add(t0.Add(time.Duration(j)*benchInterval), scrapes[j%len(scrapes)])
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		held = float64(after.HeapAlloc) - float64(before.HeapAlloc)
		series = w.SeriesCount()
		runtime.KeepAlive(w)
	}
	b.ReportMetric(held, "window-bytes")
	b.ReportMetric(float64(series), "series-kept")
	b.ReportMetric(held/float64(series*capacity), "bytes/sample")
}

// cpuTime is the CPU time the process has used (user and system, every thread): on a shared
// machine it varies far less than the wall-clock ns/op.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
