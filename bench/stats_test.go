package bench

import (
	"math"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	nan := math.NaN()
	for _, c := range []struct {
		in   []float64
		want Summary
		ok   bool
	}{
		{[]float64{3, 1, 2}, Summary{Min: 1, Median: 2, Max: 3, Runs: 3}, true},
		{[]float64{4, 1, 3, 2}, Summary{Min: 1, Median: 2.5, Max: 4, Runs: 4}, true},
		{[]float64{5}, Summary{Min: 5, Median: 5, Max: 5, Runs: 1}, true},
		{[]float64{nan, 2, nan, 8, 4}, Summary{Min: 2, Median: 4, Max: 8, Runs: 3}, true},
		{[]float64{nan}, Summary{}, false},
		{nil, Summary{}, false},
	} {
		got, ok := Summarize(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("Summarize(%v) = %+v, %v; want %+v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
	in := []float64{3, 1, 2}
	Summarize(in)
	if in[0] != 3 {
		t.Error("Summarize sorted its argument")
	}
}

func TestRatiosPairRepetitions(t *testing.T) {
	got := Ratios([]float64{10, 20, 30, math.NaN(), 50}, []float64{5, 0, 10, 1})
	if len(got) != 4 || got[0] != 2 || !math.IsNaN(got[1]) || got[2] != 3 || !math.IsNaN(got[3]) {
		t.Fatalf("Ratios = %v; want [2 NaN 3 NaN] (zero denominator, missing side, unpaired tail)", got)
	}
	// The median of paired ratios is not the ratio of medians: a slow repetition slows both sides.
	s, _ := Summarize(Ratios([]float64{1, 2, 10}, []float64{1, 2, 10}))
	if s.Min != 1 || s.Max != 1 {
		t.Fatalf("paired ratios of equal sides: %+v", s)
	}
}

func TestQuantile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0, 1}, {0.001, 1}} {
		if got := Quantile(d, c.q); got != c.want {
			t.Errorf("Quantile(1..100, %v) = %v; want %v", c.q, got, c.want)
		}
	}
	if Quantile(nil, 0.5) != 0 {
		t.Error("Quantile of nothing")
	}
	if got := Quantile([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("Quantile of one = %v", got)
	}
}

func TestPushFigures(t *testing.T) {
	lat := []time.Duration{4 * time.Millisecond, 1 * time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond}
	f := pushFigures(lat, 2*time.Second, 0.02)
	want := map[string]float64{PushesPerSecond: 2, PushP50Seconds: 0.002, PushP99Seconds: 0.004, CPUSecondsPerPush: 0.005}
	for k, v := range want {
		if math.Abs(f[k]-v) > 1e-12 {
			t.Errorf("%s = %v; want %v", k, f[k], v)
		}
	}
	if len(pushFigures(nil, time.Second, 1)) != 0 {
		t.Error("figures of no pushes")
	}
}
