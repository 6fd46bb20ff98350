package bench

import (
	"math"
	"slices"
	"time"
)

// Summary is the spread of one figure over the repetitions of a measurement.
type Summary struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
	Runs   int     `json:"runs"`
}

// Summarize returns the minimum, median and maximum of values, ignoring NaNs (a figure a
// repetition could not measure). The median of an even count is the mean of the middle two.
// ok is false when no value is left.
func Summarize(values []float64) (s Summary, ok bool) {
	v := make([]float64, 0, len(values))
	for _, x := range values {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Summary{}, false
	}
	slices.Sort(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return Summary{Min: v[0], Median: med, Max: v[n-1], Runs: n}, true
}

// Ratios returns of[i] / over[i] for each repetition i measured on both sides, NaN where either
// side is missing (NaN) or the denominator is not positive. Pairing by repetition keeps the two
// sides of each ratio measured under the same load.
func Ratios(of, over []float64) []float64 {
	out := make([]float64, min(len(of), len(over)))
	for i := range out {
		if math.IsNaN(of[i]) || math.IsNaN(over[i]) || over[i] <= 0 {
			out[i] = math.NaN()
			continue
		}
		out[i] = of[i] / over[i]
	}
	return out
}

// Quantile returns the q-quantile of sorted durations by the nearest-rank method (q=0.99 of 100
// values is the 99th), 0 for none.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
