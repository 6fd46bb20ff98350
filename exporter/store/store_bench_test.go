package store

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/opview/opview/exporter/process"
)

// The payload of make bench: a controller-runtime registry captured after real reconciles.
const benchPayload = "../../bench/testdata/controller-runtime.prom"

func loadBenchPayload(tb testing.TB) []*dto.MetricFamily {
	tb.Helper()
	b, err := os.ReadFile(benchPayload)
	if err != nil {
		tb.Fatalf("bench payload: %v", err)
	}
	tp := expfmt.NewTextParser(model.LegacyValidation)
	m, err := tp.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		tb.Fatalf("bench payload %s: %v", benchPayload, err)
	}
	out := make([]*dto.MetricFamily, 0, len(m))
	for _, mf := range m {
		out = append(out, mf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

// ownMetrics are the families a relay adds to every scrape (Go and process collectors), gathered
// once: the benchmarks measure the store's share of a scrape.
func ownMetrics(tb testing.TB) []*dto.MetricFamily {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), process.NewCollector())
	fams, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	return fams
}

func benchStore(tb testing.TB, groups int) (*MemoryStore, int) {
	fams := loadBenchPayload(tb)
	own := ownMetrics(tb)
	s := New(Options{Reserved: own})
	series := 0
	for i := 0; i < groups; i++ {
		res, err := s.Push(PushRequest{Key: MustKey("job", "bench", "instance", fmt.Sprintf("g%03d", i)), Families: fams, Replace: true})
		if err != nil {
			tb.Fatal(err)
		}
		series += res.Series
	}
	return s, series
}

var benchSizes = []int{1, 10, 100}

// BenchmarkScrape is a steady-state scrape in each fast format. Allocations per scrape must not
// grow with the number of groups (and so of series): compare allocs/op across the sizes.
func BenchmarkScrape(b *testing.B) {
	own := ownMetrics(b)
	for _, format := range []string{"text", "proto"} {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("format=%s/groups=%d", format, n), func(b *testing.B) {
				s, series := benchStore(b, n)
				write := s.WriteText
				if format == "proto" {
					write = s.WriteProto
				}
				var cw countingWriter
				if err := write(&cw, own); err != nil { // warm the pools and the name cache
					b.Fatal(err)
				}
				b.SetBytes(cw.n)
				b.ReportAllocs()
				runtime.GC() // the setup's garbage is not the loop's to collect
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := write(io.Discard, own); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(series), "series")
			})
		}
	}
}

// raceEnabled is set by race_test.go in -race builds.
var raceEnabled bool

type countingWriter struct{ n int64 }

func (c *countingWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// BenchmarkPrepare validates and renders one push of the payload (outside the store's lock).
func BenchmarkPrepare(b *testing.B) {
	fams := loadBenchPayload(b)
	key := MustKey("job", "bench", "instance", "g000")
	s := New(Options{})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := s.prepare(key, fams, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApply replaces one group of a store holding n groups (under the store's lock).
func BenchmarkApply(b *testing.B) {
	fams := loadBenchPayload(b)
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("groups=%d", n), func(b *testing.B) {
			s, _ := benchStore(b, n)
			req := PushRequest{Key: MustKey("job", "bench", "instance", "g000"), Replace: true}
			p, err := s.prepare(req.Key, fams, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			runtime.GC() // the setup's garbage is not the loop's to collect
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.apply(p, req, s.now()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestScrapeAllocationsDoNotGrowWithSeries pins the property the scrape benchmarks show: a
// steady-state scrape allocates the same whether the store holds one group or thirty.
func TestScrapeAllocationsDoNotGrowWithSeries(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items at random: allocations are not steady")
	}
	own := ownMetrics(t)
	small, _ := benchStore(t, 1)
	large, _ := benchStore(t, 30)
	for _, tc := range []struct {
		name         string
		small, large func(io.Writer, []*dto.MetricFamily) error
	}{{"text", small.WriteText, large.WriteText}, {"proto", small.WriteProto, large.WriteProto}} {
		measure := func(write func(io.Writer, []*dto.MetricFamily) error) float64 {
			_ = write(io.Discard, own)
			return testing.AllocsPerRun(20, func() {
				if err := write(io.Discard, own); err != nil {
					t.Fatal(err)
				}
			})
		}
		a1, a30 := measure(tc.small), measure(tc.large)
		t.Logf("%s scrape: %.0f allocations with 1 group, %.0f with 30", tc.name, a1, a30)
		// 29 more groups are ~28,000 more series; allow a few allocations of slack for pooled
		// buffers growing, nothing proportional to groups or series.
		if a30 > a1+4 {
			t.Errorf("%s scrape: %.0f allocations with 1 group, %.0f with 30: allocations grow with the store", tc.name, a1, a30)
		}
	}
}
