package store

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/collectors/version"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opview/opview/exporter/process"
)

// The hand-written rendering must produce the bytes of the libraries it replaces:
// expfmt.MetricFamilyToText for the text format and proto.Marshal for protobuf, over every shape
// a Metric can take. randomMetric draws those shapes.

var floatValues = []float64{0, math.Copysign(0, -1), 1, -1, 2, 0.5, -0.25, 42, 999999, -999999, 1e6, 1e6 + 1, 1234567, 123456.789,
	1e-300, 5e-324, math.MaxFloat64, -math.MaxFloat64, 1e21, 1.5e-7, math.Inf(1), math.Inf(-1), math.NaN(), 1 << 53, 0.1, 3}

var labelValues = []string{"", "a", "x y", `quote"d`, `back\slash`, "new\nline", "ünïcödé", "tab\tand\r", `all"\` + "\n", strings.Repeat("long", 40), "\\n"}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func maybe(r *rand.Rand) bool { return r.IntN(2) == 0 }

func randomFloat(r *rand.Rand) float64 {
	if r.IntN(4) == 0 {
		return r.NormFloat64() * math.Pow(10, float64(r.IntN(30)-15))
	}
	return pick(r, floatValues)
}

func optFloat(r *rand.Rand) *float64 {
	if r.IntN(5) == 0 {
		return nil
	}
	return proto.Float64(randomFloat(r))
}

func optUint(r *rand.Rand) *uint64 {
	if r.IntN(5) == 0 {
		return nil
	}
	return proto.Uint64(pick(r, []uint64{0, 1, 127, 128, 300, 16384, 1 << 40, math.MaxUint64}))
}

func randomLabels(r *rand.Rand, n int) []*dto.LabelPair {
	var ls []*dto.LabelPair
	for i := range n {
		ls = append(ls, &dto.LabelPair{Name: proto.String(fmt.Sprintf("l%d", i)), Value: proto.String(pick(r, labelValues))})
	}
	return ls
}

func randomTimestamp(r *rand.Rand) *timestamppb.Timestamp {
	if r.IntN(3) > 0 {
		return nil
	}
	return &timestamppb.Timestamp{Seconds: pick(r, []int64{0, 1, 1700000000, -5}), Nanos: pick(r, []int32{0, 1, 999999999, -3})}
}

func randomExemplar(r *rand.Rand) *dto.Exemplar {
	if r.IntN(3) > 0 {
		return nil
	}
	return &dto.Exemplar{Label: randomLabels(r, r.IntN(3)), Value: optFloat(r), Timestamp: randomTimestamp(r)}
}

func randomSpans(r *rand.Rand) []*dto.BucketSpan {
	var ss []*dto.BucketSpan
	for range r.IntN(3) {
		s := &dto.BucketSpan{}
		if maybe(r) {
			s.Offset = proto.Int32(pick(r, []int32{0, 1, -1, -70000, 1 << 30}))
		}
		if maybe(r) {
			s.Length = proto.Uint32(pick(r, []uint32{0, 1, 200, math.MaxUint32}))
		}
		ss = append(ss, s)
	}
	return ss
}

// randomMetric draws a Metric that carries the value of typ, with any other fields.
func randomMetric(r *rand.Rand, typ dto.MetricType) *dto.Metric {
	m := &dto.Metric{Label: randomLabels(r, r.IntN(4))}
	all := r.IntN(4) == 0 // other value fields too
	if typ == dto.MetricType_GAUGE || (all && maybe(r)) {
		m.Gauge = &dto.Gauge{Value: optFloat(r)}
	}
	if typ == dto.MetricType_UNTYPED || (all && maybe(r)) {
		m.Untyped = &dto.Untyped{Value: optFloat(r)}
	}
	if typ == dto.MetricType_COUNTER || (all && maybe(r)) {
		m.Counter = &dto.Counter{Value: optFloat(r), Exemplar: randomExemplar(r), CreatedTimestamp: randomTimestamp(r)}
	}
	if typ == dto.MetricType_SUMMARY || (all && maybe(r)) {
		s := &dto.Summary{SampleCount: optUint(r), SampleSum: optFloat(r), CreatedTimestamp: randomTimestamp(r)}
		for range r.IntN(4) {
			s.Quantile = append(s.Quantile, &dto.Quantile{Quantile: optFloat(r), Value: optFloat(r)})
		}
		m.Summary = s
	}
	if typ == dto.MetricType_HISTOGRAM || (all && maybe(r)) {
		h := &dto.Histogram{SampleCount: optUint(r), SampleSum: optFloat(r), CreatedTimestamp: randomTimestamp(r)}
		if r.IntN(3) == 0 {
			h.SampleCountFloat = optFloat(r)
		}
		for range r.IntN(6) {
			b := &dto.Bucket{CumulativeCount: optUint(r), UpperBound: optFloat(r), Exemplar: randomExemplar(r)}
			if r.IntN(3) == 0 {
				b.CumulativeCountFloat = optFloat(r)
			}
			h.Bucket = append(h.Bucket, b)
		}
		if r.IntN(3) == 0 {
			if maybe(r) {
				h.Schema = proto.Int32(pick(r, []int32{0, 3, -4, -53, 8, math.MinInt32}))
			}
			h.ZeroThreshold, h.ZeroCount = optFloat(r), optUint(r)
			if maybe(r) {
				h.ZeroCountFloat = optFloat(r)
			}
			h.NegativeSpan, h.PositiveSpan = randomSpans(r), randomSpans(r)
			for range r.IntN(3) {
				h.NegativeDelta = append(h.NegativeDelta, pick(r, []int64{0, 1, -1, math.MinInt64, math.MaxInt64}))
				h.PositiveDelta = append(h.PositiveDelta, pick(r, []int64{0, 2, -3}))
				h.NegativeCount = append(h.NegativeCount, randomFloat(r))
				h.PositiveCount = append(h.PositiveCount, randomFloat(r))
			}
			for range r.IntN(3) {
				if e := randomExemplar(r); e != nil {
					h.Exemplars = append(h.Exemplars, e)
				}
			}
		}
		m.Histogram = h
	}
	if r.IntN(10) == 0 {
		m.TimestampMs = proto.Int64(pick(r, []int64{0, 1700000000000, -1}))
	}
	return m
}

var renderTypes = []dto.MetricType{dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_SUMMARY, dto.MetricType_UNTYPED, dto.MetricType_HISTOGRAM}

// libraryRendering is what the store rendered before it rendered by hand: MetricFamilyToText's
// sample lines and proto.Marshal's Metric fields.
func libraryRendering(t *testing.T, name string, typ dto.MetricType, metrics []*dto.Metric) (text, pb []byte) {
	t.Helper()
	var buf bytes.Buffer
	if _, err := expfmt.MetricFamilyToText(&buf, &dto.MetricFamily{Name: &name, Type: &typ, Metric: metrics}); err != nil {
		t.Fatal(err)
	}
	text = buf.Bytes()[bytes.IndexByte(buf.Bytes(), '\n')+1:]
	for _, m := range metrics {
		msg, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		pb = protowire.AppendTag(pb, 4, protowire.BytesType)
		pb = protowire.AppendBytes(pb, msg)
	}
	return text, pb
}

// handRendering renders the metrics as the store does, from the metric view filled by fill.
func handRendering(name string, typ dto.MetricType, metrics []*dto.Metric, fill func(m *metric, in *dto.Metric)) (text, pb []byte) {
	var m metric
	var labels []Label
	var r textRenderer
	for _, dm := range metrics {
		fill(&m, dm)
		labels = append(labels[:0], m.labels...)
		text = r.appendMetric(text, name, typ, appendLabelsText(nil, labels), &m)
		pb = appendMetricProto(pb, labels, &m)
	}
	return text, pb
}

func TestRenderingMatchesTheLibraries(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	fromDTO := func(m *metric, in *dto.Metric) { m.fromDTO(in) }
	decoded := func(m *metric, in *dto.Metric) {
		b, err := proto.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.decode(b, noBounds); err != nil {
			t.Fatalf("decode %v: %v", in, err)
		}
	}
	for i := range 3000 {
		typ := pick(r, renderTypes)
		var metrics []*dto.Metric
		for range 1 + r.IntN(3) {
			metrics = append(metrics, randomMetric(r, typ))
		}
		if typ == dto.MetricType_HISTOGRAM && maybe(r) {
			// The series of a family mostly share their buckets' bounds.
			for _, m := range metrics[1:] {
				for j, b := range m.Histogram.Bucket {
					if j < len(metrics[0].Histogram.Bucket) {
						b.UpperBound = metrics[0].Histogram.Bucket[j].UpperBound
					}
				}
			}
		}
		wantText, wantPB := libraryRendering(t, "family_name", typ, metrics)
		for _, via := range []struct {
			name string
			fill func(*metric, *dto.Metric)
		}{{"objects", fromDTO}, {"protobuf", decoded}} {
			text, pb := handRendering("family_name", typ, metrics, via.fill)
			if !bytes.Equal(text, wantText) {
				t.Fatalf("shape %d (%s), from %s: text\n%s\nwant\n%s\nmetrics %v", i, typ, via.name, text, wantText, metrics)
			}
			if !bytes.Equal(pb, wantPB) {
				t.Fatalf("shape %d (%s), from %s: protobuf\n%x\nwant\n%x\nmetrics %v", i, typ, via.name, pb, wantPB, metrics)
			}
		}
	}
}

// TestLargeMessagesRenderAsMarshal covers lengths of two and three bytes at every level.
func TestLargeMessagesRenderAsMarshal(t *testing.T) {
	h := &dto.Histogram{SampleCount: proto.Uint64(1), SampleSum: proto.Float64(2)}
	for i := range 3000 {
		h.Bucket = append(h.Bucket, &dto.Bucket{CumulativeCount: proto.Uint64(uint64(i)), UpperBound: proto.Float64(float64(i)),
			Exemplar: &dto.Exemplar{Label: []*dto.LabelPair{{Name: proto.String("trace_id"), Value: proto.String(strings.Repeat("t", i%300))}}, Value: proto.Float64(1)}})
	}
	metrics := []*dto.Metric{{Label: []*dto.LabelPair{{Name: proto.String("l"), Value: proto.String(strings.Repeat("v", 20000))}}, Histogram: h}}
	wantText, wantPB := libraryRendering(t, "h", dto.MetricType_HISTOGRAM, metrics)
	text, pb := handRendering("h", dto.MetricType_HISTOGRAM, metrics, func(m *metric, in *dto.Metric) { m.fromDTO(in) })
	if !bytes.Equal(text, wantText) || !bytes.Equal(pb, wantPB) {
		t.Fatal("large histogram renders differently from the libraries")
	}
}

func TestAppendFloatMatchesStrconv(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	vals := append([]float64{}, floatValues...)
	for i := -1000; i <= 1000; i++ {
		vals = append(vals, float64(i), float64(i)*1000+0.5, float64(i)*1001)
	}
	for range 10000 {
		vals = append(vals, randomFloat(r), float64(r.Int64N(2e6)-1e6))
	}
	for _, f := range vals {
		var want bytes.Buffer
		// MetricFamilyToText writes a value the way the text format needs it.
		name, typ := "g", dto.MetricType_GAUGE
		if _, err := expfmt.MetricFamilyToText(&want, &dto.MetricFamily{Name: &name, Type: &typ, Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: &f}}}}); err != nil {
			t.Fatal(err)
		}
		got := "# TYPE g gauge\ng " + string(appendFloat(nil, f)) + "\n"
		if got != want.String() {
			t.Fatalf("%v: %q, want %q", f, got, want.String())
		}
	}
}

// The relay's own families (client_golang's objects) are rendered in the text format by the
// store's renderer: the bytes must be expfmt.MetricFamilyToText's, headers included, and a
// family with a name expfmt quotes must still go through expfmt.
func TestOwnFamiliesRenderAsExpfmt(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), process.NewCollector(), version.NewCollector("opview_relay"))
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "own_requests_total", Help: "Back\\slash and\nnewline in HELP."}, []string{"code", "path"})
	for _, v := range labelValues {
		c.WithLabelValues("200", v).Inc()
	}
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "own_duration_seconds", Help: "Classic and native.",
		Buckets: []float64{.001, .0025, 0.1, 1}, NativeHistogramBucketFactor: 1.1}, []string{"method"})
	h.WithLabelValues("PUT").Observe(0.003)
	h.WithLabelValues("PUT").Observe(7)
	h.WithLabelValues("POST")
	s := prometheus.NewSummary(prometheus.SummaryOpts{Name: "own_summary", Help: "q", Objectives: map[float64]float64{0.5: 0.05, 0.99: 0.001}})
	s.Observe(1.5)
	reg.MustRegister(c, h, s, prometheus.NewGauge(prometheus.GaugeOpts{Name: "own_gauge_without_help"}),
		prometheus.NewUntypedFunc(prometheus.UntypedOpts{Name: "own_untyped", Help: "u"}, func() float64 { return math.Inf(-1) }))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fams = append(fams,
		&dto.MetricFamily{Name: proto.String("own_no_help"), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(1)}}}},
		&dto.MetricFamily{Name: proto.String("own.dotted"), Help: proto.String("quoted by expfmt"), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(2)}}}},
		&dto.MetricFamily{Name: proto.String("own_label"), Help: proto.String("l"), Type: dto.MetricType_GAUGE.Enum(),
			Metric: []*dto.Metric{{Label: []*dto.LabelPair{{Name: proto.String("dotted.name"), Value: proto.String("v")}}, Gauge: &dto.Gauge{Value: proto.Float64(3)}}}},
	)
	var o ownText
	var want bytes.Buffer
	for _, mf := range fams {
		var lib bytes.Buffer
		if _, err := expfmt.MetricFamilyToText(&lib, mf); err != nil {
			t.Fatal(err)
		}
		want.Write(lib.Bytes())
		got, ok := o.append(nil, mf, true)
		if legacy := mf.GetName() != "own.dotted" && mf.GetName() != "own_label"; ok != legacy {
			t.Errorf("%s: rendered by hand %v, want %v", mf.GetName(), ok, legacy)
			continue
		}
		if !ok {
			continue
		}
		if !bytes.Equal(got, lib.Bytes()) {
			t.Errorf("%s:\n%s\nwant\n%s", mf.GetName(), got, lib.Bytes())
		}
		samples := lib.Bytes()
		for bytes.HasPrefix(samples, []byte("# ")) {
			samples = samples[bytes.IndexByte(samples, '\n')+1:]
		}
		if got, _ := o.append(nil, mf, false); !bytes.Equal(got, samples) {
			t.Errorf("%s without header:\n%s\nwant\n%s", mf.GetName(), got, samples)
		}
	}
	// Through a scrape, from the pooled plan.
	st := New(Options{})
	for range 2 {
		var got bytes.Buffer
		if err := st.WriteText(&got, fams); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Fatalf("WriteText:\n%s\nwant\n%s", got.String(), want.String())
		}
	}
}

// TestPartIsCompact: a store holds a part per family and group, so a field more is paid 169
// times per group of an operator (docs/benchmarks.md: 128 -> 96 bytes a part).
func TestPartIsCompact(t *testing.T) {
	if size := unsafe.Sizeof(part{}); size > 96 {
		t.Fatalf("part is %d bytes, more than 96", size)
	}
}
