// Package top_test checks opview top's arithmetic against an independent reference: its rates
// and windowed quantiles against Prometheus's own PromQL engine over the same samples. The real
// binary in a real terminal is tested in ./terminal.
package top_test

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/util/teststorage"

	"github.com/opview/opview/internal/top/fixture"
	"github.com/opview/opview/internal/top/stats"
	"github.com/opview/opview/internal/top/window"
)

// TestArithmeticMatchesPromQL records a sequence of scrapes of three controllers (irregular
// spacing, a counter reset as an operator restart makes, the window overflowing its capacity),
// stores the same samples in a Prometheus TSDB, and after every scrape compares what opview top
// shows (the table's rates, error ratio and quantiles) with PromQL's rate() and
// histogram_quantile() evaluated at the newest scrape over the window's range.
func TestArithmeticMatchesPromQL(t *testing.T) {
	const (
		steps    = 40
		resetAt  = 25
		interval = 2 * time.Second
		length   = 30 * time.Second
	)
	op := fixture.Operator{Controllers: []string{"configmap", "deployment", "secret"}, ResetAt: resetAt}
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	st := teststorage.New(t)
	w := window.New(length, window.Capacity(length, interval), stats.Families...)
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 1e7, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	t.Cleanup(func() { engine.Close() })

	var times []time.Time
	var scrapes [][]*dto.MetricFamily
	app := st.Appender(context.Background())
	at := t0
	for i := range steps {
		// Irregular spacing, so that PromQL's extrapolation takes every path: every interval plus
		// 0 to 600ms, as opview top scrapes (the next scrape is due an interval after the last one
		// ended, so scrapes are never closer than the interval and a full window holds every
		// sample of the range).
		if i > 0 {
			at = at.Add(interval + time.Duration((i*7919)%600)*time.Millisecond)
		}
		fams, err := op.Families(i)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range floatSamples(fams) {
			if _, err := app.Append(0, s.labels, at.UnixMilli(), s.value); err != nil {
				t.Fatal(err)
			}
		}
		times, scrapes = append(times, at), append(scrapes, fams)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}

	query := func(at time.Time, q string) (float64, bool) {
		t.Helper()
		qry, err := engine.NewInstantQuery(context.Background(), st, nil, q, at)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		res := qry.Exec(context.Background())
		if res.Err != nil {
			t.Fatalf("%s: %v", q, res.Err)
		}
		vec, err := res.Vector()
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		switch len(vec) {
		case 0:
			return math.NaN(), false
		case 1:
			return vec[0].F, true
		}
		t.Fatalf("%s: %d results, want one", q, len(vec))
		return 0, false
	}

	compared, resetsSeen, fullWindows := 0, 0, 0
	for i := range steps {
		w.Add(times[i], scrapes[i])
		if i == 0 {
			continue
		}
		r := w.EffectiveRange()
		if r == length {
			fullWindows++
		}
		rng := fmt.Sprintf("[%dms]", r.Milliseconds())
		if i >= resetAt && times[i].Sub(times[resetAt-1]) < r {
			resetsSeen++
		}
		for _, row := range stats.Controllers(w) {
			c := strconv.Quote(row.Name)
			checks := []struct {
				what string
				got  float64
				q    string
			}{
				{"reconciles/s", row.Reconciles, `sum(rate(controller_runtime_reconcile_total{controller=` + c + `}` + rng + `))`},
				{"error ratio", row.ErrorRatio, `sum(rate(controller_runtime_reconcile_errors_total{controller=` + c + `}` + rng + `)) / sum(rate(controller_runtime_reconcile_total{controller=` + c + `}` + rng + `))`},
				{"p50", row.P50, `histogram_quantile(0.5, sum by (le) (rate(controller_runtime_reconcile_time_seconds_bucket{controller=` + c + `}` + rng + `)))`},
				{"p99", row.P99, `histogram_quantile(0.99, sum by (le) (rate(controller_runtime_reconcile_time_seconds_bucket{controller=` + c + `}` + rng + `)))`},
				{"queue p99", row.QueueP99, `histogram_quantile(0.99, sum by (le) (rate(workqueue_queue_duration_seconds_bucket{name=` + c + `}` + rng + `)))`},
				{"retries/s", row.RetriesPerSec, `sum(rate(workqueue_retries_total{name=` + c + `}` + rng + `))`},
			}
			for _, ck := range checks {
				want, ok := query(times[i], ck.q)
				if !ok {
					want = math.NaN()
				}
				if !near(ck.got, want) {
					t.Errorf("scrape %d (%s, range %s), %s %s: opview top %v, PromQL %v\n  %s", i, times[i].Format("15:04:05.000"), r, row.Name, ck.what, ck.got, want, ck.q)
				}
				compared++
			}
		}
		// The detail screen's p90 and the process screen's CPU go through the same window calls.
		want, _ := query(times[i], `rate(process_cpu_seconds_total`+rng+`)`)
		if got := stats.ProcessStats(w).CPU; !near(got, want) {
			t.Errorf("scrape %d: CPU %v, PromQL %v", i, got, want)
		}
	}
	if resetsSeen == 0 || fullWindows == 0 {
		t.Fatalf("the sequence did not exercise a reset inside the window (%d) or a full window (%d)", resetsSeen, fullWindows)
	}
	t.Logf("%d values compared with PromQL over %d scrapes; %d windows held the counter reset, %d were full (%s)", compared, steps-1, resetsSeen, fullWindows, length)
}

func near(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	if a == b {
		return true
	}
	return math.Abs(a-b) <= 1e-9*math.Max(math.Abs(a), math.Abs(b))
}

type sample struct {
	labels labels.Labels
	value  float64
}

// floatSamples turns families into the float series Prometheus stores when it scrapes them.
func floatSamples(fams []*dto.MetricFamily) []sample {
	var out []sample
	add := func(name string, m *dto.Metric, extra []string, v float64) {
		kv := []string{model.MetricNameLabel, name}
		for _, lp := range m.Label {
			kv = append(kv, lp.GetName(), lp.GetValue())
		}
		kv = append(kv, extra...)
		out = append(out, sample{labels.FromStrings(kv...), v})
	}
	for _, mf := range fams {
		name := mf.GetName()
		for _, m := range mf.Metric {
			switch {
			case m.Counter != nil:
				add(name, m, nil, m.Counter.GetValue())
			case m.Gauge != nil:
				add(name, m, nil, m.Gauge.GetValue())
			case m.Untyped != nil:
				add(name, m, nil, m.Untyped.GetValue())
			case m.Histogram != nil:
				inf := false
				for _, b := range m.Histogram.Bucket {
					ub := b.GetUpperBound()
					inf = inf || math.IsInf(ub, 1)
					add(name+"_bucket", m, []string{"le", formatLE(ub)}, float64(b.GetCumulativeCount()))
				}
				if !inf {
					add(name+"_bucket", m, []string{"le", "+Inf"}, float64(m.Histogram.GetSampleCount()))
				}
				add(name+"_count", m, nil, float64(m.Histogram.GetSampleCount()))
				add(name+"_sum", m, nil, m.Histogram.GetSampleSum())
			case m.Summary != nil:
				for _, q := range m.Summary.Quantile {
					add(name, m, []string{"quantile", formatLE(q.GetQuantile())}, q.GetValue())
				}
				add(name+"_count", m, nil, float64(m.Summary.GetSampleCount()))
				add(name+"_sum", m, nil, m.Summary.GetSampleSum())
			}
		}
	}
	return out
}

func formatLE(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
