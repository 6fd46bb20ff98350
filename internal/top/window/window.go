// Package window holds a bounded window of scrapes of one metrics endpoint and computes from it
// what Prometheus's PromQL would: rate() of counters and histogram_quantile() of classic
// histograms over the window, evaluated at the time of the newest scrape. It has no terminal or
// network code: the view and the sources feed it parsed metric families.
//
// Memory is bounded twice: the window keeps at most Capacity scrapes (the window's length divided
// by the scrape interval), and a series absent from the newest scrape is dropped at once.
package window

import (
	"math"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Label is one label pair of a series.
type Label struct{ Name, Value string }

// Series is one float series as Prometheus stores it: a histogram family becomes its _bucket
// (one per le), _sum and _count series, a summary its quantile, _sum and _count series.
type Series struct {
	Name   string  // the series' metric name (x_bucket, x_sum, x_count for histograms)
	Labels []Label // sorted by name; le and quantile are not among them
	LE     float64 // upper bound of a _bucket series, quantile of a summary's quantile series
	vals   []float64
	seen   uint64
}

// Label returns the value of the label name ("" when absent).
func (s *Series) Label(name string) string {
	for _, l := range s.Labels {
		if l.Name == name {
			return l.Value
		}
	}
	return ""
}

// Match selects series whose labels equal every pair of the map (like {a="x",b="y"}).
type Match map[string]string

func (m Match) matches(s *Series) bool {
	for k, v := range m {
		if s.Label(k) != v {
			return false
		}
	}
	return true
}

// Window is a ring of scrapes. It is not safe for concurrent use.
type Window struct {
	rangeMs int64
	keep    map[string]bool // families kept; nil keeps every family
	times   []int64         // scrape times in ms, a ring; times[head] is the newest
	head    int
	n       int
	seq     uint64
	series  map[string]*Series
	byName  map[string][]*Series
	dirty   bool
	key     []byte
	// selected memoises Select until the next Add: the screens select the same series many times.
	selected map[string][]*Series
	pts      []Point
}

// Capacity is the number of scrapes a window of length w keeps when scraped every interval:
// w/interval, at least 2 so that a rate can be computed.
func Capacity(w, interval time.Duration) int {
	if interval <= 0 {
		return 2
	}
	return max(2, int(w/interval))
}

// New returns a window of length w that keeps at most capacity scrapes of the families named in
// keep (every family when keep is empty).
func New(w time.Duration, capacity int, keep ...string) *Window {
	win := &Window{
		rangeMs: w.Milliseconds(),
		times:   make([]int64, max(capacity, 2)),
		head:    -1,
		series:  map[string]*Series{},
		byName:  map[string][]*Series{},
	}
	if len(keep) > 0 {
		win.keep = map[string]bool{}
		for _, k := range keep {
			win.keep[k] = true
		}
	}
	return win
}

// Range returns the window's configured length.
func (w *Window) Range() time.Duration { return time.Duration(w.rangeMs) * time.Millisecond }

// EffectiveRange is the range the window's rates and quantiles are over: its length once it holds
// that much, and before that the span of the scrapes held plus one average interval, so that a
// young window gives the rate between its scrapes instead of one diluted over the whole length.
// Every computation is PromQL's over a range of this length ending at the newest scrape.
func (w *Window) EffectiveRange() time.Duration {
	return time.Duration(w.effectiveMs()) * time.Millisecond
}

func (w *Window) effectiveMs() int64 {
	if w.n < 2 {
		return w.rangeMs
	}
	oldest := w.times[(w.head-(w.n-1)+len(w.times))%len(w.times)]
	span := w.times[w.head] - oldest
	return min(w.rangeMs, span+span/int64(w.n-1))
}

// Len returns the number of scrapes held.
func (w *Window) Len() int { return w.n }

// SeriesCount returns the number of series held.
func (w *Window) SeriesCount() int { return len(w.series) }

// Newest returns the time of the newest scrape (zero when empty).
func (w *Window) Newest() time.Time {
	if w.n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(w.times[w.head])
}

// Oldest returns the time of the oldest scrape inside the window's range.
func (w *Window) Oldest() time.Time {
	var oldest time.Time
	w.eachSlot(func(_ int, t int64) {
		if oldest.IsZero() {
			oldest = time.UnixMilli(t)
		}
	})
	return oldest
}

// Add records one scrape taken at t. A scrape not later than the newest one is ignored (false).
// Series missing from it are dropped.
func (w *Window) Add(t time.Time, fams []*dto.MetricFamily) bool {
	ms := t.UnixMilli()
	if w.n > 0 && ms <= w.times[w.head] {
		return false
	}
	w.head = (w.head + 1) % len(w.times)
	w.times[w.head] = ms
	if w.n < len(w.times) {
		w.n++
	}
	w.seq++
	for _, mf := range fams {
		name := mf.GetName()
		if w.keep != nil && !w.keep[name] {
			continue
		}
		for _, m := range mf.Metric {
			switch {
			case m.Counter != nil:
				w.put(name, m.Label, "", 0, m.Counter.GetValue())
			case m.Gauge != nil:
				w.put(name, m.Label, "", 0, m.Gauge.GetValue())
			case m.Untyped != nil:
				w.put(name, m.Label, "", 0, m.Untyped.GetValue())
			case m.Histogram != nil:
				h := m.Histogram
				inf := false
				for _, b := range h.Bucket {
					ub := b.GetUpperBound()
					inf = inf || math.IsInf(ub, 1)
					if b.CumulativeCountFloat != nil {
						w.put(name+"_bucket", m.Label, "le", ub, b.GetCumulativeCountFloat())
					} else {
						w.put(name+"_bucket", m.Label, "le", ub, float64(b.GetCumulativeCount()))
					}
				}
				count := float64(h.GetSampleCount())
				if h.SampleCountFloat != nil {
					count = h.GetSampleCountFloat()
				}
				if !inf && len(h.Bucket) > 0 {
					w.put(name+"_bucket", m.Label, "le", math.Inf(1), count)
				}
				w.put(name+"_count", m.Label, "", 0, count)
				w.put(name+"_sum", m.Label, "", 0, h.GetSampleSum())
			case m.Summary != nil:
				s := m.Summary
				for _, q := range s.Quantile {
					w.put(name, m.Label, "quantile", q.GetQuantile(), q.GetValue())
				}
				w.put(name+"_count", m.Label, "", 0, float64(s.GetSampleCount()))
				w.put(name+"_sum", m.Label, "", 0, s.GetSampleSum())
			}
		}
	}
	for k, s := range w.series {
		if s.seen != w.seq {
			delete(w.series, k)
			w.dirty = true
		}
	}
	clear(w.selected)
	return true
}

// put stores one value of the scrape being added. extra names the le or quantile label (with its
// value in bound) that a histogram bucket or summary quantile carries.
func (w *Window) put(name string, lps []*dto.LabelPair, extra string, bound float64, v float64) {
	key := append(w.key[:0], name...)
	for _, lp := range lps {
		if lp.GetName() == extra {
			continue
		}
		key = append(key, 0xff)
		key = append(key, lp.GetName()...)
		key = append(key, 0xfe)
		key = append(key, lp.GetValue()...)
	}
	if extra != "" {
		key = append(key, 0xff)
		key = append(key, extra...)
		key = appendFloat(key, bound)
	}
	w.key = key
	s, ok := w.series[string(key)]
	if !ok {
		s = &Series{Name: name, LE: bound, vals: make([]float64, len(w.times))}
		for _, lp := range lps {
			if lp.GetName() != extra {
				s.Labels = append(s.Labels, Label{lp.GetName(), lp.GetValue()})
			}
		}
		slices.SortFunc(s.Labels, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
		for i := range s.vals {
			s.vals[i] = math.NaN()
		}
		w.series[string(key)] = s
		w.dirty = true
	} else if s.seen == w.seq {
		return // a duplicate series in one scrape: the first one wins
	}
	s.vals[w.head] = v
	s.seen = w.seq
}

func appendFloat(b []byte, f float64) []byte {
	u := math.Float64bits(f)
	for i := range 8 {
		b = append(b, byte(u>>(8*i)))
	}
	return b
}

func (w *Window) index() {
	if !w.dirty {
		return
	}
	clear(w.byName)
	for _, s := range w.series {
		w.byName[s.Name] = append(w.byName[s.Name], s)
	}
	for _, ss := range w.byName {
		slices.SortFunc(ss, func(a, b *Series) int {
			if c := compareLabels(a.Labels, b.Labels); c != 0 {
				return c
			}
			switch {
			case a.LE < b.LE:
				return -1
			case a.LE > b.LE:
				return 1
			}
			return 0
		})
	}
	w.dirty = false
}

func compareLabels(a, b []Label) int {
	for i := range min(len(a), len(b)) {
		if c := strings.Compare(a[i].Name, b[i].Name); c != 0 {
			return c
		}
		if c := strings.Compare(a[i].Value, b[i].Value); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

// Select returns the series named name whose labels match m, sorted by labels and then le. The
// slice is shared: do not modify it.
func (w *Window) Select(name string, m Match) []*Series {
	w.index()
	key := append(w.key[:0], name...)
	if len(m) > 0 {
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			key = append(key, 0xff)
			key = append(key, k...)
			key = append(key, 0xfe)
			key = append(key, m[k]...)
		}
	}
	w.key = key
	if out, ok := w.selected[string(key)]; ok {
		return out
	}
	var out []*Series
	for _, s := range w.byName[name] {
		if m.matches(s) {
			out = append(out, s)
		}
	}
	if w.selected == nil {
		w.selected = map[string][]*Series{}
	}
	w.selected[string(key)] = out
	return out
}

// LabelValues returns the sorted distinct values of label among the series named name.
func (w *Window) LabelValues(name, label string) []string {
	w.index()
	var out []string
	for _, s := range w.byName[name] {
		if v := s.Label(label); v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// eachSlot calls f for every scrape inside the window's effective range, oldest first, with its
// ring slot. The range is left-open as in PromQL: (newest-range, newest].
func (w *Window) eachSlot(f func(slot int, t int64)) {
	if w.n == 0 {
		return
	}
	start := w.times[w.head] - w.effectiveMs()
	for i := w.n - 1; i >= 0; i-- {
		slot := (w.head - i + len(w.times)) % len(w.times)
		if t := w.times[slot]; t > start {
			f(slot, t)
		}
	}
}

// Point is one sample of a series.
type Point struct {
	T int64 // ms
	V float64
}

// Points returns the series' samples inside the window's range, oldest first. The slice is
// reused by the next call. Every series held was in every scrape since it appeared (one that
// misses a scrape is dropped), and its slots from before it appeared are NaN, so each non-NaN
// slot belongs to the scrape now in that slot.
func (w *Window) Points(s *Series) []Point {
	w.pts = w.pts[:0]
	w.eachSlot(func(slot int, t int64) {
		if v := s.vals[slot]; !math.IsNaN(v) {
			w.pts = append(w.pts, Point{t, v})
		}
	})
	return w.pts
}

// Latest returns the series' value in the newest scrape.
func (w *Window) Latest(s *Series) float64 { return s.vals[w.head] }
