package window

import (
	"cmp"
	"math"
	"slices"
	"sort"
)

// rate computes PromQL's rate() of one counter over points inside the range
// (rangeEnd-rangeMs, rangeEnd]: the increase between the first and last point, corrected for
// counter resets (a drop counts the value before it as already added), extrapolated towards the
// range's ends as Prometheus does (to the end when the gap is within 110% of the average interval,
// otherwise by half an interval, and never to before the counter's estimated zero point), per
// second of the range. ok is false with fewer than two points, where PromQL returns nothing.
func rate(pts []Point, rangeEnd, rangeMs int64) (v float64, ok bool) {
	if len(pts) < 2 || rangeMs <= 0 {
		return 0, false
	}
	first, last := pts[0], pts[len(pts)-1]
	result := last.V - first.V
	for i := 1; i < len(pts); i++ {
		if pts[i].V < pts[i-1].V {
			result += pts[i-1].V
		}
	}
	rangeStart := rangeEnd - rangeMs
	toStart := float64(first.T-rangeStart) / 1000
	toEnd := float64(rangeEnd-last.T) / 1000
	sampled := float64(last.T-first.T) / 1000
	avg := sampled / float64(len(pts)-1)
	threshold := avg * 1.1
	if toStart >= threshold {
		toStart = avg / 2
	}
	toZero := toStart
	if result > 0 && first.V >= 0 {
		toZero = sampled * (first.V / result)
	}
	toStart = min(toStart, toZero)
	if toEnd >= threshold {
		toEnd = avg / 2
	}
	factor := 1.0
	if sampled != 0 {
		factor = (sampled + toStart + toEnd) / sampled
	}
	return result * factor / (float64(rangeMs) / 1000), true
}

// delta returns the counter's increase between its first and last point, corrected for resets
// but not extrapolated: the observations actually seen inside the window.
func delta(pts []Point) (v float64, ok bool) {
	if len(pts) < 2 {
		return 0, false
	}
	v = pts[len(pts)-1].V - pts[0].V
	for i := 1; i < len(pts); i++ {
		if pts[i].V < pts[i-1].V {
			v += pts[i-1].V
		}
	}
	return v, true
}

// Bucket is one cumulative bucket of a classic histogram.
type Bucket struct {
	UpperBound float64
	Count      float64
}

// smallDeltaTolerance is the relative difference between neighbouring cumulative bucket counts
// that histogram_quantile treats as floating-point noise.
const smallDeltaTolerance = 1e-12

// BucketQuantile computes histogram_quantile(q) of cumulative buckets as PromQL does for classic
// histograms: buckets with the same bound are merged, decreasing counts are flattened to the
// envelope, the rank q*count is found and interpolated linearly inside its bucket (from 0 in the
// lowest bucket when its bound is positive); a rank in the +Inf bucket gives the second-highest
// bound. NaN without a +Inf bucket, with fewer than two buckets, or with no observations. It
// sorts buckets in place.
func BucketQuantile(q float64, buckets []Bucket) float64 {
	switch {
	case math.IsNaN(q):
		return math.NaN()
	case q < 0:
		return math.Inf(-1)
	case q > 1:
		return math.Inf(1)
	}
	if len(buckets) == 0 {
		return math.NaN()
	}
	sortBuckets(buckets)
	if !math.IsInf(buckets[len(buckets)-1].UpperBound, 1) {
		return math.NaN()
	}
	// Merge equal bounds.
	merged := buckets[:1]
	for _, b := range buckets[1:] {
		if b.UpperBound == merged[len(merged)-1].UpperBound {
			merged[len(merged)-1].Count += b.Count
		} else {
			merged = append(merged, b)
		}
	}
	buckets = merged
	// Ignore tiny relative differences, then remove decreases.
	prev := buckets[0].Count
	for i := 1; i < len(buckets); i++ {
		cur := buckets[i].Count
		if cur == prev {
			continue
		}
		if almostEqual(prev, cur, smallDeltaTolerance) || cur < prev {
			buckets[i].Count = prev
			continue
		}
		prev = cur
	}
	if len(buckets) < 2 {
		return math.NaN()
	}
	observations := buckets[len(buckets)-1].Count
	if observations == 0 {
		return math.NaN()
	}
	rank := q * observations
	b := sort.Search(len(buckets)-1, func(i int) bool { return buckets[i].Count >= rank })
	switch {
	case b == len(buckets)-1:
		return buckets[len(buckets)-2].UpperBound
	case b == 0 && buckets[0].UpperBound <= 0:
		return buckets[0].UpperBound
	}
	start, end, count := 0.0, buckets[b].UpperBound, buckets[b].Count
	if b > 0 {
		start = buckets[b-1].UpperBound
		count -= buckets[b-1].Count
		rank -= buckets[b-1].Count
	}
	return start + (end-start)*(rank/count)
}

// almostEqual is PromQL's relative float comparison (util/almost.Equal).
func almostEqual(a, b, epsilon float64) bool {
	const minNormal = 0x1p-1022
	if a == b {
		return true
	}
	absSum := math.Abs(a) + math.Abs(b)
	diff := math.Abs(a - b)
	if a == 0 || b == 0 || absSum < minNormal {
		return diff < epsilon*minNormal
	}
	return diff/math.Min(absSum, math.MaxFloat64) < epsilon
}

// Rate is sum(rate(name{m}[range])) at the newest scrape, range being EffectiveRange. ok is false when no matching series
// has two points in the window.
func (w *Window) Rate(name string, m Match) (v float64, ok bool) {
	end := w.endMs()
	for _, s := range w.Select(name, m) {
		if r, rok := rate(w.Points(s), end, w.effectiveMs()); rok {
			v, ok = v+r, true
		}
	}
	return v, ok
}

// Increase is the sum of the matching counters' increases between their first and last points in
// the window (reset-corrected, not extrapolated).
func (w *Window) Increase(name string, m Match) (v float64, ok bool) {
	for _, s := range w.Select(name, m) {
		if d, dok := delta(w.Points(s)); dok {
			v, ok = v+d, true
		}
	}
	return v, ok
}

// Sum is the sum of the matching series' newest values; ok is false when none match.
func (w *Window) Sum(name string, m Match) (v float64, ok bool) {
	for _, s := range w.Select(name, m) {
		v, ok = v+w.Latest(s), true
	}
	return v, ok
}

// BucketRates returns sum by (le) (rate(name_bucket{m}[range])), sorted by bound.
func (w *Window) BucketRates(name string, m Match) []Bucket {
	return w.buckets(name, m, func(pts []Point) (float64, bool) { return rate(pts, w.endMs(), w.effectiveMs()) })
}

// BucketIncreases returns the observations per cumulative bucket seen inside the window (the
// reset-corrected, unextrapolated increase of each name_bucket{m}, summed by le).
func (w *Window) BucketIncreases(name string, m Match) []Bucket {
	return w.buckets(name, m, delta)
}

// BucketTotals returns the newest cumulative bucket counts (since the process started).
func (w *Window) BucketTotals(name string, m Match) []Bucket {
	return w.buckets(name, m, func(pts []Point) (float64, bool) {
		if len(pts) == 0 {
			return 0, false
		}
		return pts[len(pts)-1].V, true
	})
}

func (w *Window) buckets(name string, m Match, f func([]Point) (float64, bool)) []Bucket {
	var out []Bucket
	for _, s := range w.Select(name+"_bucket", m) {
		v, ok := f(w.Points(s))
		if !ok {
			continue
		}
		i := slices.IndexFunc(out, func(b Bucket) bool { return b.UpperBound == s.LE })
		if i < 0 {
			out = append(out, Bucket{s.LE, v})
		} else {
			out[i].Count += v
		}
	}
	sortBuckets(out)
	return out
}

func sortBuckets(b []Bucket) {
	slices.SortFunc(b, func(x, y Bucket) int { return cmp.Compare(x.UpperBound, y.UpperBound) })
}

// Quantile is histogram_quantile(q, sum by (le) (rate(name_bucket{m}[range]))): NaN when the
// window holds no observation.
func (w *Window) Quantile(q float64, name string, m Match) float64 {
	return BucketQuantile(q, w.BucketRates(name, m))
}

// Steps returns, for every pair of neighbouring scrapes in the window, the per-second increase of
// the summed matching counters (reset-corrected): the rate over each scrape interval, for
// sparklines. Gauges use Values.
func (w *Window) Steps(name string, m Match) []float64 {
	ss := w.Select(name, m)
	if len(ss) == 0 {
		return nil
	}
	var times []int64
	var slots []int
	w.eachSlot(func(slot int, t int64) { times, slots = append(times, t), append(slots, slot) })
	out := make([]float64, 0, max(0, len(slots)-1))
	for i := 1; i < len(slots); i++ {
		var inc float64
		for _, s := range ss {
			a, b := s.vals[slots[i-1]], s.vals[slots[i]]
			if math.IsNaN(a) || math.IsNaN(b) {
				continue
			}
			if b < a {
				inc += b
			} else {
				inc += b - a
			}
		}
		out = append(out, inc/(float64(times[i]-times[i-1])/1000))
	}
	return out
}

// Values returns the sum of the matching series' values at every scrape in the window (for
// gauges' sparklines); a scrape where none of them had a value gives NaN.
func (w *Window) Values(name string, m Match) []float64 {
	ss := w.Select(name, m)
	if len(ss) == 0 {
		return nil
	}
	var out []float64
	w.eachSlot(func(slot int, _ int64) {
		v, any := 0.0, false
		for _, s := range ss {
			if x := s.vals[slot]; !math.IsNaN(x) {
				v, any = v+x, true
			}
		}
		if !any {
			v = math.NaN()
		}
		out = append(out, v)
	})
	return out
}

func (w *Window) endMs() int64 {
	if w.n == 0 {
		return 0
	}
	return w.times[w.head]
}
