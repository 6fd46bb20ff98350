package store

import (
	"bytes"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
)

// TestExtraRendersAsTheLibraries: the relay's own metrics, rendered once for many scrapes, are
// the bytes expfmt.MetricFamilyToText and protodelim write for them: runtime and process
// metrics, native histograms, exemplars, escapes, and names the text format must quote.
func TestExtraRendersAsTheLibraries(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "op_duration_seconds", Help: "Help with \\ and\nnewline.", Buckets: prometheus.DefBuckets,
		NativeHistogramBucketFactor: 1.1, NativeHistogramMaxBucketNumber: 100,
	}, []string{"method"})
	reg.MustRegister(h)
	for i, v := range []float64{0.001, 0.2, 3, 0.2, 70} {
		h.WithLabelValues([]string{"GET", `quote"and\back`, "new\nline"}[i%3]).(prometheus.ExemplarObserver).ObserveWithExemplar(v, prometheus.Labels{"trace_id": "abc"})
	}
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ops_total", Help: "Ops."}, []string{"code"})
	reg.MustRegister(c)
	c.WithLabelValues("200").(prometheus.ExemplarAdder).AddWithExemplar(3, prometheus.Labels{"trace_id": "x"})
	s := prometheus.NewSummary(prometheus.SummaryOpts{Name: "lat", Help: "", Objectives: map[float64]float64{0.5: 0.05, 0.99: 0.001}})
	reg.MustRegister(s)
	s.Observe(1)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	// Families the hand-written rendering leaves to the libraries: a name the text format
	// quotes, and a timestamp.
	fams = append(fams,
		&dto.MetricFamily{Name: proto.String("utf8.name"), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(1)}}}},
		&dto.MetricFamily{Name: proto.String("with_ts"), Help: proto.String("T."), Type: dto.MetricType_UNTYPED.Enum(), Unit: proto.String("seconds"),
			Metric: []*dto.Metric{{Untyped: &dto.Untyped{Value: proto.Float64(2)}, TimestampMs: proto.Int64(time.Now().UnixMilli())}}},
		&dto.MetricFamily{Name: proto.String("empty"), Type: dto.MetricType_GAUGE.Enum()})

	x, err := NewExtra(fams)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*extraFamily{}
	for i := range x.fams {
		byName[x.fams[i].name] = &x.fams[i]
	}
	if _, ok := byName["empty"]; ok || len(x.fams) != len(fams)-1 {
		t.Fatalf("%d families rendered of %d (empty: %v)", len(x.fams), len(fams), ok)
	}
	for _, mf := range fams[:len(fams)-1] {
		ef := byName[mf.GetName()]
		var text, whole, metrics bytes.Buffer
		if _, err := expfmt.MetricFamilyToText(&text, mf); err != nil {
			t.Fatal(err)
		}
		if _, err := protodelim.MarshalTo(&whole, mf); err != nil {
			t.Fatal(err)
		}
		for _, m := range mf.Metric {
			b, _ := proto.Marshal(&dto.MetricFamily{Metric: []*dto.Metric{m}})
			metrics.Write(b)
		}
		switch {
		case !bytes.Equal(ef.text, text.Bytes()):
			t.Errorf("%s: text\n%s\nwant\n%s", mf.GetName(), ef.text, text.Bytes())
		case !bytes.HasPrefix(ef.text[ef.samples:], []byte(mf.GetName())) && !bytes.HasPrefix(ef.text[ef.samples:], []byte(`{"`)):
			t.Errorf("%s: samples start at %q", mf.GetName(), ef.text[ef.samples:])
		case !bytes.Equal(ef.whole, whole.Bytes()):
			t.Errorf("%s: protobuf\n%x\nwant\n%x", mf.GetName(), ef.whole, whole.Bytes())
		case !bytes.Equal(ef.metrics, metrics.Bytes()):
			t.Errorf("%s: Metric fields\n%x\nwant\n%x", mf.GetName(), ef.metrics, metrics.Bytes())
		}
	}
}
