package store

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// FuzzDecodeFamily holds the decoder of MetricFamily messages to proto.Unmarshal: the same bytes
// refused, and of the others the same header and metrics, rendered to the same bytes. Of every
// metric, countMetric counts what proto.Unmarshal holds, and decoding within bounds stops
// exactly when the counts pass them.
// Run: go test ./exporter/store -run '^$' -fuzz FuzzDecodeFamily
func FuzzDecodeFamily(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 40 {
		typ := pick(r, renderTypes)
		mf := &dto.MetricFamily{Name: proto.String("f"), Help: proto.String("h"), Type: &typ}
		for range 1 + r.IntN(2) {
			mf.Metric = append(mf.Metric, randomMetric(r, typ))
		}
		b, err := proto.Marshal(mf)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// Non-canonical encodings: fields repeated, packed, of other wire types, unknown, groups.
	f.Add([]byte("\x0a\x01a\x0a\x01b\x18\x01\x18\x02\x22\x04\x12\x02\x09\x00\x22\x00"))
	f.Add([]byte("\x22\x0c\x3a\x0a\x52\x02\x02\x04\x5a\x04\x0a\x02\x00\x01"))
	f.Add([]byte("\x22\x06\x1a\x02\x08\x01\x1a\x00\x23\x08\x01\x24"))
	f.Add([]byte("\x22\x08\x12\x02\x0d\x00\x12\x02\x08\x01\x2a\x01\x0b"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var want dto.MetricFamily
		wantErr := proto.Unmarshal(b, &want)
		h, metrics, err := decodeFamily(b, nil, math.MaxInt)
		var views []metric
		if err == nil {
			for _, mb := range metrics {
				var m metric
				if err = m.decode(mb, noBounds); err != nil {
					break
				}
				views = append(views, m)
			}
		}
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("decode: %v; proto.Unmarshal: %v", err, wantErr)
		}
		if err != nil {
			return
		}
		if h.name != want.GetName() || h.help != want.GetHelp() || h.hasHelp != (want.Help != nil) || dto.MetricType(h.typ) != want.GetType() || len(views) != len(want.Metric) {
			t.Fatalf("header %+v, %d metrics; want %v", h, len(views), &want)
		}
		s := New(Options{})
		for i := range views {
			var ref metric
			ref.fromDTO(want.Metric[i])
			c, err := countMetric(metrics[i])
			if err != nil || c != ref.counts() {
				t.Fatalf("metric %d: countMetric: %+v, %v; proto.Unmarshal holds %+v", i, c, err, ref.counts())
			}
			for k := range 3 {
				lim := bounds{labels: k, classic: k, elements: k}
				var m metric
				err := m.decode(metrics[i], lim)
				if over := s.checkCounts("f", &c, lim) != nil; (err == errBounds) != over || (err != nil && err != errBounds) {
					t.Fatalf("metric %d within %+v: decode: %v; the counts %+v pass the bounds: %v", i, lim, err, c, over)
				}
			}
			got, wantB := renderAll(&views[i]), renderAll(&ref)
			if !bytes.Equal(got, wantB) {
				t.Fatalf("metric %d renders\n%q\nwant\n%q", i, got, wantB)
			}
			// The protobuf rendering holds what proto.Unmarshal read, unknown fields aside.
			rendered, wantMetric := sameMessage(t, appendMetricProto(nil, views[i].labels, &views[i]), want.Metric[i])
			if !bytes.Equal(rendered, wantMetric) {
				t.Fatalf("metric %d: the rendering decodes to\n%x\nproto.Unmarshal read\n%x", i, rendered, wantMetric)
			}
		}
	})
}

// sameMessage returns the Metric of field (a MetricFamily's field 4, as rendered) and want, both
// without unknown fields and with every LabelPair's name and value present (the rendering always
// writes both), in a deterministic encoding: equal bytes, same message, NaN included.
func sameMessage(t *testing.T, field []byte, want *dto.Metric) ([]byte, []byte) {
	t.Helper()
	var fam dto.MetricFamily
	if err := proto.Unmarshal(field, &fam); err != nil || len(fam.Metric) != 1 {
		t.Fatalf("the rendering does not decode to one metric: %v, %x", err, field)
	}
	wb, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var w dto.Metric
	if err := (proto.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(wb, &w); err != nil {
		t.Fatal(err)
	}
	present := func(ls []*dto.LabelPair) {
		for _, l := range ls {
			if l.Name == nil {
				l.Name = proto.String("")
			}
			if l.Value == nil {
				l.Value = proto.String("")
			}
		}
	}
	present(w.Label)
	if c := w.Counter; c != nil && c.Exemplar != nil {
		present(c.Exemplar.Label)
	}
	if h := w.Histogram; h != nil {
		for _, b := range h.Bucket {
			if b.Exemplar != nil {
				present(b.Exemplar.Label)
			}
		}
		for _, e := range h.Exemplars {
			present(e.Label)
		}
	}
	det := proto.MarshalOptions{Deterministic: true}
	got, err := det.Marshal(fam.Metric[0])
	if err != nil {
		t.Fatal(err)
	}
	wantB, err := det.Marshal(&w)
	if err != nil {
		t.Fatal(err)
	}
	return got, wantB
}

// renderAll renders m in protobuf and, for every type whose value it carries, in the text format.
func renderAll(m *metric) []byte {
	b := appendMetricProto(nil, m.labels, m)
	lbl := appendLabelsText(nil, m.labels)
	var r textRenderer
	for _, typ := range renderTypes {
		var fine bool
		switch typ {
		case dto.MetricType_COUNTER:
			fine = m.hasCounter
		case dto.MetricType_GAUGE:
			fine = m.hasGauge
		case dto.MetricType_SUMMARY:
			fine = m.hasSummary
		case dto.MetricType_UNTYPED:
			fine = m.hasUntyped
		case dto.MetricType_HISTOGRAM:
			fine = m.hasHistogram
		}
		if fine {
			b = r.appendMetric(b, "m", typ, lbl, m)
		}
	}
	return b
}

// TestDecodeMergesAsUnmarshal: a message given twice is merged into one, its repeated fields
// appended, as proto.Unmarshal does; exemplar labels of merged exemplars stay with their own.
func TestDecodeMergesAsUnmarshal(t *testing.T) {
	ex := func(label string) []byte {
		e, _ := proto.Marshal(&dto.Exemplar{Label: []*dto.LabelPair{{Name: proto.String("id"), Value: proto.String(label)}}, Value: proto.Float64(1)})
		return e
	}
	counter := func(e []byte) []byte {
		return protowire.AppendBytes(protowire.AppendTag(nil, 2, protowire.BytesType), e)
	}
	var b []byte
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, counter(ex("a")))
	// A histogram with an exemplar in between: its labels follow the counter's in the arena.
	h, _ := proto.Marshal(&dto.Histogram{Exemplars: []*dto.Exemplar{{Label: []*dto.LabelPair{{Name: proto.String("h"), Value: proto.String("x")}}}}})
	b = protowire.AppendTag(b, 7, protowire.BytesType)
	b = protowire.AppendBytes(b, h)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendBytes(b, counter(ex("b")))

	var want dto.Metric
	if err := proto.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(want.Counter.Exemplar.Label) != 2 {
		t.Fatalf("proto.Unmarshal did not merge: %v", &want)
	}
	var got, ref metric
	if err := got.decode(b, noBounds); err != nil {
		t.Fatal(err)
	}
	ref.fromDTO(&want)
	if g, w := renderAll(&got), renderAll(&ref); !bytes.Equal(g, w) {
		t.Fatalf("merged metric renders\n%q\nwant\n%q", g, w)
	}
}

// bytesField is field num of wire type bytes holding b.
func bytesField(num protowire.Number, b []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
}

// familyBody is a protobuf push body of one family of the type, holding the Metric messages.
func familyBody(name string, typ dto.MetricType, metrics ...[]byte) []byte {
	f := bytesField(1, []byte(name))
	f = protowire.AppendVarint(protowire.AppendTag(f, 3, protowire.VarintType), uint64(typ))
	for _, m := range metrics {
		f = append(f, bytesField(4, m)...)
	}
	return protowire.AppendBytes(nil, f)
}

// The limits of a relay started with the defaults.
var relayLimits = Limits{MaxGroups: 1000, MaxSeriesPerGroup: 20000, MaxBytes: 64 << 20, LabelLimit: 64,
	LabelNameLengthLimit: 256, LabelValueLengthLimit: 2048, HelpLengthLimit: 4096}

// TestEncodedPushStopsAtTheLimits: a protobuf push whose one metric repeats a field hundreds of
// thousands of times (empty buckets, labels, quantiles, native spans and buckets, exemplars and
// their labels: two or three bytes each) is refused as soon as the count passes the limit that
// bounds it, before holding the rest: a body of 1 MiB allocates a few MiB, not a hundred times
// its size. The refusal is the one a push of the same metrics decoded into objects gets.
func TestEncodedPushStopsAtTheLimits(t *testing.T) {
	const n = 500_000
	empty := func(num protowire.Number, n int) []byte { return bytes.Repeat(bytesField(num, nil), n) }
	label := bytesField(1, bytesField(1, []byte("a")))
	hist := func(fields []byte) []byte { return bytesField(7, fields) }
	var merged []byte // a counter's exemplar given again after each native exemplar
	for range 20_000 {
		merged = append(merged, bytesField(3, bytesField(2, label))...)
		merged = append(merged, hist(bytesField(16, label))...)
	}
	for _, c := range []struct {
		name   string
		typ    dto.MetricType
		metric []byte
		limit  Limit
		want   string
	}{
		{"labels", dto.MetricType_GAUGE, append(empty(1, n), bytesField(2, nil)...), LimitLabels, "a series has 500001 labels or more"},
		{"buckets", dto.MetricType_HISTOGRAM, hist(empty(3, n)), LimitSeries, "a histogram of 500000 buckets passes the limit of 20000 series"},
		{"quantiles", dto.MetricType_SUMMARY, bytesField(4, empty(3, n)), LimitSeries, "a summary of 500000 quantiles"},
		{"negative spans", dto.MetricType_HISTOGRAM, hist(empty(9, n)), LimitSeries, "500000 negative native histogram spans"},
		{"positive spans", dto.MetricType_HISTOGRAM, hist(empty(12, n)), LimitSeries, "500000 positive native histogram spans"},
		{"packed deltas", dto.MetricType_HISTOGRAM, hist(bytesField(13, make([]byte, 2*n))), LimitSeries, "1000000 positive native histogram buckets"},
		{"deltas", dto.MetricType_HISTOGRAM, hist(bytes.Repeat([]byte{13 << 3, 0}, n)), LimitSeries, "500000 positive native histogram buckets"},
		{"packed counts", dto.MetricType_HISTOGRAM, hist(bytesField(11, make([]byte, 8*n/4))), LimitSeries, "125000 negative native histogram buckets"},
		{"native exemplars", dto.MetricType_HISTOGRAM, hist(empty(16, n*2/3)), LimitSeries, "333333 native histogram exemplars"},
		{"bucket exemplar labels", dto.MetricType_HISTOGRAM, hist(bytesField(3, bytesField(3, empty(1, n)))), LimitSeries, "500000 exemplar labels"},
		{"counter exemplar labels", dto.MetricType_COUNTER, bytesField(3, bytesField(2, empty(1, n))), LimitSeries, "500000 exemplar labels"},
		{"merged exemplars", dto.MetricType_COUNTER, merged, LimitSeries, "40000 exemplar labels"},
		{"metrics", dto.MetricType_GAUGE, nil, LimitSeries, "push carries more than 20000 series"},
	} {
		t.Run(c.name, func(t *testing.T) {
			body := familyBody("m", c.typ, c.metric)
			if c.metric == nil {
				body = familyBody("m", c.typ, slices.Repeat([][]byte{nil}, n)...)
			}
			s := New(Options{Limits: relayLimits, LimitNames: map[Limit]string{LimitSeries: "--group.max-series", LimitLabels: "--push.label-limit"}})
			k := MustKey("job", "j")
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := s.Push(PushRequest{Key: k, Encoded: body})
			runtime.ReadMemStats(&after)
			var se *Error
			if !errors.As(err, &se) || se.Limit != c.limit || !strings.Contains(se.Msg, c.want) || !strings.HasSuffix(se.Msg, "(--group.max-series)") && !strings.HasSuffix(se.Msg, "(--push.label-limit)") {
				t.Fatalf("push of %d bytes: %v; want a refusal for %s saying %q and naming the flag", len(body), err, c.limit, c.want)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("body of %d bytes: %.2f MiB allocated: %s", len(body), float64(alloc)/(1<<20), err)
			// The race detector's runtime allocates more, at random (sync.Pool drops items).
			if alloc > 4<<20 && !raceEnabled {
				t.Errorf("a push of %d bytes allocated %.1f MiB; want under 4 MiB", len(body), float64(alloc)/(1<<20))
			}
			// The same metrics decoded into objects first meet the same refusal.
			var mf dto.MetricFamily
			if _, n := protowire.ConsumeVarint(body); proto.Unmarshal(body[n:], &mf) != nil {
				t.Fatal("the body does not decode")
			}
			if _, derr := s.Push(PushRequest{Key: k, Families: []*dto.MetricFamily{&mf}}); derr == nil || derr.Error() != err.Error() {
				t.Errorf("decoded into objects first, the push is refused with\n%v\nnot\n%v", derr, err)
			}
		})
	}
}
