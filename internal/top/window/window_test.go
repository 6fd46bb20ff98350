package window

import (
	"math"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func parse(t testing.TB, text string) []*dto.MetricFamily {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	var out []*dto.MetricFamily
	for _, f := range fams {
		out = append(out, f)
	}
	return out
}

var t0 = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

func TestCapacity(t *testing.T) {
	for _, c := range []struct {
		w, i time.Duration
		want int
	}{{5 * time.Minute, 2 * time.Second, 150}, {time.Second, 2 * time.Second, 2}, {time.Minute, 0, 2}} {
		if got := Capacity(c.w, c.i); got != c.want {
			t.Errorf("Capacity(%s, %s) = %d, want %d", c.w, c.i, got, c.want)
		}
	}
}

func TestRingKeepsCapacityAndRange(t *testing.T) {
	w := New(10*time.Second, 3, "c")
	for i := range 5 {
		w.Add(t0.Add(time.Duration(i)*2*time.Second), parse(t, "# TYPE c counter\nc "+string(rune('0'+i))+"\n"))
	}
	if w.Len() != 3 {
		t.Fatalf("Len = %d, want 3 (the capacity)", w.Len())
	}
	s := w.Select("c", nil)
	if len(s) != 1 {
		t.Fatalf("series = %d", len(s))
	}
	pts := w.Points(s[0])
	if len(pts) != 3 || pts[0].V != 2 || pts[2].V != 4 {
		t.Fatalf("points = %v, want values 2,3,4", pts)
	}
	// A scrape at or before the newest is ignored.
	if w.Add(t0.Add(8*time.Second), nil) {
		t.Fatal("Add accepted a scrape as old as the newest")
	}
	// The range is left-open: a point exactly range old is outside.
	w = New(4*time.Second, 10, "c")
	for i := range 3 {
		w.Add(t0.Add(time.Duration(i)*2*time.Second), parse(t, "# TYPE c counter\nc 1\n"))
	}
	if got := len(w.Points(w.Select("c", nil)[0])); got != 2 {
		t.Fatalf("points in (newest-4s, newest] = %d, want 2", got)
	}
}

func TestVanishedSeriesAreDropped(t *testing.T) {
	w := New(time.Minute, 10)
	w.Add(t0, parse(t, "# TYPE c counter\nc{a=\"x\"} 1\nc{a=\"y\"} 1\n"))
	w.Add(t0.Add(time.Second), parse(t, "# TYPE c counter\nc{a=\"x\"} 2\n"))
	if got := w.LabelValues("c", "a"); len(got) != 1 || got[0] != "x" {
		t.Fatalf("label values = %v, want [x]", got)
	}
	if w.SeriesCount() != 1 {
		t.Fatalf("series = %d, want 1", w.SeriesCount())
	}
	// A series that comes back starts afresh: no points from before it vanished.
	w.Add(t0.Add(2*time.Second), parse(t, "# TYPE c counter\nc{a=\"x\"} 3\nc{a=\"y\"} 5\n"))
	if pts := w.Points(w.Select("c", Match{"a": "y"})[0]); len(pts) != 1 {
		t.Fatalf("points of the returned series = %v, want one", pts)
	}
}

func TestKeepFiltersFamilies(t *testing.T) {
	w := New(time.Minute, 10, "kept")
	w.Add(t0, parse(t, "# TYPE kept gauge\nkept 1\n# TYPE other gauge\nother 1\n"))
	if w.SeriesCount() != 1 {
		t.Fatalf("series = %d, want 1", w.SeriesCount())
	}
}

func TestHistogramAndSummaryFlattening(t *testing.T) {
	w := New(time.Minute, 10)
	w.Add(t0, parse(t, `# TYPE h histogram
h_bucket{c="a",le="0.1"} 1
h_bucket{c="a",le="1"} 3
h_bucket{c="a",le="+Inf"} 4
h_sum{c="a"} 2
h_count{c="a"} 4
# TYPE s summary
s{quantile="0.5"} 0.1
s{quantile="1"} 0.3
s_sum 1
s_count 5
`))
	b := w.BucketTotals("h", Match{"c": "a"})
	if len(b) != 3 || !math.IsInf(b[2].UpperBound, 1) || b[2].Count != 4 || b[0].Count != 1 {
		t.Fatalf("buckets = %v", b)
	}
	if v, _ := w.Sum("h_count", nil); v != 4 {
		t.Fatalf("h_count = %v", v)
	}
	qs := w.Select("s", nil)
	if len(qs) != 2 || qs[1].LE != 1 || w.Latest(qs[1]) != 0.3 {
		t.Fatalf("summary quantiles = %v", qs)
	}
}

func TestRateAndQuantile(t *testing.T) {
	// Steady counter, 1/s, sampled every 2s over a 10s window: rate() extrapolates to the ends.
	w := New(10*time.Second, 10)
	for i := range 6 {
		v := float64(10 + 2*i)
		w.Add(t0.Add(time.Duration(i)*2*time.Second), parse(t, "# TYPE c counter\nc "+ftoa(v)+"\n"))
	}
	if r, ok := w.Rate("c", nil); !ok || math.Abs(r-1) > 1e-12 {
		t.Fatalf("rate = %v %v, want 1", r, ok)
	}
	// Reset: 10, 12, 2 (restart, 2 since), 4: increase 2+2+2 = 6 over 6s between first and last.
	w = New(time.Hour, 10)
	for i, v := range []string{"10", "12", "2", "4"} {
		w.Add(t0.Add(time.Duration(i)*2*time.Second), parse(t, "# TYPE c counter\nc "+v+"\n"))
	}
	if d, _ := w.Increase("c", nil); d != 6 {
		t.Fatalf("increase across a reset = %v, want 6", d)
	}
	if st := w.Steps("c", nil); len(st) != 3 || st[0] != 1 || st[1] != 1 || st[2] != 1 {
		t.Fatalf("steps = %v, want 1,1,1", st)
	}
	// One point: no rate, as PromQL.
	w = New(time.Hour, 10)
	w.Add(t0, parse(t, "# TYPE c counter\nc 1\n"))
	if _, ok := w.Rate("c", nil); ok {
		t.Fatal("rate from one point")
	}
}

func ftoa(f float64) string {
	return strings.TrimRight(strings.TrimRight(model.SampleValue(f).String(), "0"), ".")
}

func TestBucketQuantile(t *testing.T) {
	inf := math.Inf(1)
	for _, c := range []struct {
		q    float64
		b    []Bucket
		want float64
	}{
		{0.5, []Bucket{{1, 2}, {2, 4}, {inf, 4}}, 1},
		{0.75, []Bucket{{1, 2}, {2, 4}, {inf, 4}}, 1.5},
		{0.99, []Bucket{{1, 2}, {2, 2}, {inf, 4}}, 2},          // in +Inf: the second-highest bound
		{0.5, []Bucket{{-1, 2}, {0, 2}, {inf, 4}}, -1},         // lowest bound <= 0
		{0.5, []Bucket{{1, 0}, {inf, 0}}, math.NaN()},          // no observations
		{0.5, []Bucket{{1, 2}, {2, 4}}, math.NaN()},            // no +Inf
		{0.5, []Bucket{{2, 4}, {1, 2}, {inf, 4}}, 1},           // unsorted
		{0.5, []Bucket{{1, 3}, {2, 2}, {inf, 4}}, 1 * 2 / 3.0}, // non-monotonic: flattened
		{-1, []Bucket{{1, 1}, {inf, 1}}, math.Inf(-1)},
		{2, []Bucket{{1, 1}, {inf, 1}}, math.Inf(1)},
	} {
		got := BucketQuantile(c.q, append([]Bucket(nil), c.b...))
		if !(got == c.want || math.IsNaN(got) && math.IsNaN(c.want) || math.Abs(got-c.want) < 1e-12) {
			t.Errorf("BucketQuantile(%v, %v) = %v, want %v", c.q, c.b, got, c.want)
		}
	}
}
