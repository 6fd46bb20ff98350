package stats

import (
	"io"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/opview/opview/internal/top/fixture"
	"github.com/opview/opview/internal/top/window"
)

// FuzzScreens feeds arbitrary expositions (two scrapes: the input and the input again with its
// counters possibly lower) through the window into every screen's statistics: nothing panics.
func FuzzScreens(f *testing.F) {
	f.Add(fixture.Operator{Controllers: []string{"a"}}.Text(3), fixture.Operator{Controllers: []string{"a"}}.Text(1))
	f.Add("# TYPE controller_runtime_reconcile_time_seconds histogram\ncontroller_runtime_reconcile_time_seconds_bucket{controller=\"x\",le=\"NaN\"} 1\ncontroller_runtime_reconcile_time_seconds_bucket{controller=\"x\",le=\"+Inf\"} -1\n", "")
	f.Add("# TYPE workqueue_depth gauge\nworkqueue_depth{name=\"q\"} NaN\n", "# TYPE workqueue_depth gauge\nworkqueue_depth{name=\"q\"} +Inf\n")
	f.Fuzz(func(t *testing.T, a, b string) {
		w := window.New(time.Minute, 4, Families...)
		t0 := time.Unix(1e9, 0)
		for i, text := range []string{a, b, a} {
			p := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := p.TextToMetricFamilies(strings.NewReader(text))
			if err != nil {
				continue
			}
			list := make([]*dto.MetricFamily, 0, len(fams))
			for _, mf := range fams {
				list = append(list, mf)
			}
			w.Add(t0.Add(time.Duration(i)*time.Second), list)
			for _, c := range Controllers(w) {
				ControllerDetail(w, c.Name)
			}
			ProcessStats(w)
			WriteTable(io.Discard, Controllers(w))
		}
	})
}
