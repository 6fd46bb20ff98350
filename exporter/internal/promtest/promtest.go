// Package promtest holds helpers that the relay's tests share to read an exposition.
package promtest

import dto "github.com/prometheus/client_model/go"

// Value returns the value of the first sample of the family name whose labels include want:
// a counter's, gauge's or untyped value, a histogram's or summary's sample count. ok is false
// when no such sample exists.
func Value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (v float64, ok bool) {
	mf := fams[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.Metric {
		got := make(map[string]string, len(m.Label))
		for _, lp := range m.Label {
			got[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Summary != nil:
			return float64(m.Summary.GetSampleCount()), true
		}
		return 0, true
	}
	return 0, false
}
