package store

import (
	"bytes"
	"math/rand/v2"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// FuzzDecodeFamily holds the decoder of MetricFamily messages to proto.Unmarshal: the same bytes
// refused, and of the others the same header and metrics, rendered to the same bytes.
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
		h, metrics, err := decodeFamily(b, nil)
		var views []metric
		if err == nil {
			for _, mb := range metrics {
				var m metric
				if err = m.decode(mb); err != nil {
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
		for i := range views {
			var ref metric
			ref.fromDTO(want.Metric[i])
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
	if err := got.decode(b); err != nil {
		t.Fatal(err)
	}
	ref.fromDTO(&want)
	if g, w := renderAll(&got), renderAll(&ref); !bytes.Equal(g, w) {
		t.Fatalf("merged metric renders\n%q\nwant\n%q", g, w)
	}
}
