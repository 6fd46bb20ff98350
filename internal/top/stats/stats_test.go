package stats

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/opview/opview/internal/top/fixture"
	"github.com/opview/opview/internal/top/window"
)

func TestFormat(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Rate(math.NaN()), "-"}, {Rate(0), "0"}, {Rate(0.0123), "0.012"}, {Rate(3.216), "3.22"}, {Rate(12.34), "12.3"},
		{Rate(1234), "1.23k"}, {Rate(2.5e6), "2.5M"},
		{Percent(math.NaN()), "-"}, {Percent(0.071), "7.1%"}, {Percent(0.5), "50%"},
		{Seconds(0.00085), "850µs"}, {Seconds(0.0123), "12.3ms"}, {Seconds(1.5), "1.5s"}, {Seconds(60), "60s"},
		{Seconds(125), "2m5s"}, {Seconds(math.Inf(1)), "+Inf"},
		{Workers(1, 2), "1/2"}, {Workers(math.NaN(), math.NaN()), "-"},
		{Bytes(50.7 * 1024 * 1024), "50.7MiB"}, {Count(3), "3"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestSortAndFilter(t *testing.T) {
	rows := []Controller{{Name: "b", Reconciles: 1}, {Name: "a", Reconciles: math.NaN()}, {Name: "c", Reconciles: 5}}
	Sort(rows, ColReconciles, false)
	if got := rows[0].Name + rows[1].Name + rows[2].Name; got != "cba" {
		t.Errorf("by rate, descending, unknown last: %s", got)
	}
	Sort(rows, ColReconciles, true)
	if got := rows[0].Name + rows[1].Name + rows[2].Name; got != "bca" {
		t.Errorf("by rate, reversed, unknown still last: %s", got)
	}
	Sort(rows, ColName, false)
	if got := rows[0].Name + rows[1].Name + rows[2].Name; got != "abc" {
		t.Errorf("by name: %s", got)
	}
	if got := Filter(rows, "B"); len(got) != 1 || got[0].Name != "b" {
		t.Errorf("filter: %v", got)
	}
}

// TestDetailAndTable reads a generated operator: the detail's buckets add up to the observations,
// results are in controller-runtime's order, the process screen finds every section, and the
// plain table has a row per controller.
func TestDetailAndTable(t *testing.T) {
	op := fixture.Operator{Controllers: []string{"configmap", "secret"}}
	w := window.New(time.Minute, 30, Families...)
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	for i := range 10 {
		fams, err := op.Families(i)
		if err != nil {
			t.Fatal(err)
		}
		w.Add(t0.Add(time.Duration(i)*2*time.Second), fams)
	}
	d := ControllerDetail(w, "secret")
	var sum float64
	for _, b := range d.Buckets {
		sum += b.Count
	}
	if len(d.Buckets) != len(fixture.ReconcileBuckets)+1 || sum != d.Observations || d.Observations == 0 {
		t.Errorf("buckets %d, sum %v, observations %v", len(d.Buckets), sum, d.Observations)
	}
	if len(d.Results) != 4 || d.Results[0].Name != "success" || d.Results[3].Name != "requeue_after" {
		t.Errorf("results %+v", d.Results)
	}
	if len(d.RateSteps) != 9 || len(d.DepthValues) != 10 {
		t.Errorf("sparklines: %d steps, %d values", len(d.RateSteps), len(d.DepthValues))
	}
	p := ProcessStats(w)
	if len(p.Requests) != 5 || len(p.Leaders) != 1 || !p.Leaders[0].Leader || len(p.Webhooks) != 1 ||
		math.Abs(p.Webhooks[0].ErrorRatio-0.25) > 1e-9 || p.GCPauseMax != 0.000412 {
		t.Errorf("process: %+v", p)
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, Controllers(w)); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(buf.String()), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[2], "secret") {
		t.Errorf("table:\n%s", buf.String())
	}
}
