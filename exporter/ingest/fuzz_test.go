package ingest_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/opview/opview/exporter/ingest"
	"github.com/opview/opview/exporter/store"
)

// FuzzParsePush feeds arbitrary bodies through the whole push path: decode (text or protobuf),
// validate and render, apply to a store that already holds a group. Whatever the body, nothing
// may panic; a refused push must leave the exposition byte for byte as it was; an accepted one
// must leave an exposition that parses in both pre-rendered formats. A protobuf body, which the
// store reads itself, must meet the fate it met when the relay decoded it into client_model's
// objects first (referenceDecode): refused alike (with the same refusal when the body decoded),
// or stored alike, byte for byte.
// Run: go test ./exporter/ingest -run '^$' -fuzz FuzzParsePush (make fuzz).
func FuzzParsePush(f *testing.F) {
	f.Add([]byte("# HELP x Help.\n# TYPE x counter\nx{a=\"1\"} 1\n"), false)
	f.Add([]byte("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n"), false)
	f.Add([]byte("# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 3\ns_count 2\n"), false)
	f.Add([]byte("x 1 1700000000000\n"), false)
	f.Add(protoSeed(gauge("y", 2)), true)
	for _, body := range protoSeeds() {
		f.Add(body, true)
	}
	f.Fuzz(func(t *testing.T, body []byte, proto bool) {
		ct := "text/plain; version=0.0.4"
		if proto {
			ct = string(expfmt.NewFormat(expfmt.TypeProtoDelim))
		}
		s := fuzzStore(t)
		before := exposition(t, s)

		fams, err := ingest.Body(bytes.NewReader(body), int64(len(body)), ct, "", 1<<20, 1000, 64)
		if err == nil {
			_, err = s.Push(store.PushRequest{Key: fuzzKey, Families: fams.Decoded, Encoded: fams.Encoded})
			var se *store.Error
			if err != nil && !errors.As(err, &se) {
				t.Fatalf("refusal is not a *store.Error: %v", err)
			}
		}
		after := exposition(t, s)
		if err != nil && !bytes.Equal(before, after) {
			t.Fatalf("refused push (%v) changed the exposition:\n%s\n---\n%s", err, before, after)
		}
		if !proto {
			return
		}
		ref := fuzzStore(t)
		refFams, decodeErr := referenceDecode(body, 1<<20, 1000)
		refErr := decodeErr
		if refErr == nil {
			_, refErr = ref.Push(store.PushRequest{Key: fuzzKey, Families: refFams})
		}
		switch {
		case (err == nil) != (refErr == nil):
			t.Fatalf("push: %v; decoding the body into objects first: %v", err, refErr)
		case decodeErr == nil && refErr != nil && err.Error() != refErr.Error():
			t.Fatalf("push refused with %q; decoding the body into objects first, with %q", err, refErr)
		case err == nil:
			if a, b := raw(t, s), raw(t, ref); !bytes.Equal(a, b) {
				t.Fatalf("push stored\n%q\ndecoding the body into objects first stored\n%q", a, b)
			}
		}
	})
}

var fuzzKey = store.MustKey("job", "fuzz", "instance", "i")

// fuzzStore is a store with limits, holding one group, on a fixed clock.
func fuzzStore(t *testing.T) *store.MemoryStore {
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	s := store.New(store.Options{
		Limits: store.Limits{MaxSeriesPerGroup: 1000, MaxBytes: 8 << 20, LabelLimit: 64, LabelValueLengthLimit: 2048},
		Now:    func() time.Time { return now },
	})
	if _, err := s.Push(store.PushRequest{Key: store.MustKey("job", "base"), Families: []*dto.MetricFamily{gauge("x", 1)}, Replace: true}); err != nil {
		t.Fatal(err)
	}
	return s
}

// referenceDecode decodes a protobuf push body as the relay did before the store read protobuf
// itself: protodelim into client_model's objects, stopping at more than maxSeries metrics,
// sorted by name.
func referenceDecode(body []byte, maxBytes int64, maxSeries int) ([]*dto.MetricFamily, error) {
	if int64(len(body)) > maxBytes {
		return nil, ingest.ErrTooLarge
	}
	br := bufio.NewReader(bytes.NewReader(body))
	var out []*dto.MetricFamily
	metrics := 0
	for {
		mf := &dto.MetricFamily{}
		err := protodelim.UnmarshalFrom(br, mf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("protobuf body: message %d: %w", len(out)+1, err)
		}
		out = append(out, mf)
		if metrics += len(mf.Metric); maxSeries > 0 && metrics > maxSeries {
			return nil, fmt.Errorf("%w: more than %d", ingest.ErrTooManySeries, maxSeries)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, nil
}

// raw is the store's exposition in both pre-rendered formats, as served.
func raw(t *testing.T, s *store.MemoryStore) []byte {
	var b bytes.Buffer
	if err := s.WriteText(&b, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteProto(&b, nil); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gauge(name string, v float64) *dto.MetricFamily {
	return &dto.MetricFamily{Name: &name, Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: &v}}}}
}

func protoSeed(fams ...*dto.MetricFamily) []byte {
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeProtoDelim))
	for _, mf := range fams {
		enc.Encode(mf)
	}
	return b.Bytes()
}

// protoSeeds are protobuf bodies of every metric type, native histograms and exemplars
// included, and bodies the store refuses.
func protoSeeds() [][]byte {
	l := func(n, v string) *dto.LabelPair { return &dto.LabelPair{Name: proto.String(n), Value: proto.String(v)} }
	ex := &dto.Exemplar{Label: []*dto.LabelPair{l("trace_id", "abc")}, Value: proto.Float64(0.3), Timestamp: timestamppb.New(time.Unix(1700000000, 5))}
	counter := &dto.MetricFamily{Name: proto.String("c_total"), Help: proto.String("A counter."), Type: dto.MetricType_COUNTER.Enum(), Metric: []*dto.Metric{
		{Label: []*dto.LabelPair{l("a", "1")}, Counter: &dto.Counter{Value: proto.Float64(3), Exemplar: ex, CreatedTimestamp: timestamppb.New(time.Unix(1600000000, 0))}},
		{Label: []*dto.LabelPair{l("a", "q\"uo\\te\n")}, Counter: &dto.Counter{Value: proto.Float64(math.Inf(1))}},
	}}
	summary := &dto.MetricFamily{Name: proto.String("s"), Type: dto.MetricType_SUMMARY.Enum(), Metric: []*dto.Metric{{Summary: &dto.Summary{
		SampleCount: proto.Uint64(4), SampleSum: proto.Float64(math.NaN()), Quantile: []*dto.Quantile{{Quantile: proto.Float64(0.5), Value: proto.Float64(1)}, {Quantile: proto.Float64(0.9), Value: proto.Float64(2)}},
	}}}}
	classic := &dto.MetricFamily{Name: proto.String("h"), Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{{Label: []*dto.LabelPair{l("le_not", "x")}, Histogram: &dto.Histogram{
		SampleCount: proto.Uint64(3), SampleSum: proto.Float64(1.5), Bucket: []*dto.Bucket{
			{UpperBound: proto.Float64(0.1), CumulativeCount: proto.Uint64(1), Exemplar: ex}, {UpperBound: proto.Float64(1), CumulativeCount: proto.Uint64(3)}},
	}}}}
	native := &dto.MetricFamily{Name: proto.String("nh"), Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{{Histogram: &dto.Histogram{
		Schema: proto.Int32(3), SampleCount: proto.Uint64(3), SampleSum: proto.Float64(1.5), ZeroThreshold: proto.Float64(1e-128), ZeroCount: proto.Uint64(1),
		PositiveSpan: []*dto.BucketSpan{{Offset: proto.Int32(-2), Length: proto.Uint32(1)}, {Offset: proto.Int32(3), Length: proto.Uint32(1)}}, PositiveDelta: []int64{1, 0},
		Exemplars: []*dto.Exemplar{ex},
	}}}}
	floatNative := &dto.MetricFamily{Name: proto.String("fh"), Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{{Histogram: &dto.Histogram{
		Schema: proto.Int32(-53), SampleCountFloat: proto.Float64(2.5), SampleSum: proto.Float64(1),
		PositiveSpan: []*dto.BucketSpan{{Offset: proto.Int32(0), Length: proto.Uint32(2)}}, PositiveCount: []float64{1, 1.5},
	}}}}
	untyped := &dto.MetricFamily{Name: proto.String("u"), Type: dto.MetricType_UNTYPED.Enum(), Metric: []*dto.Metric{{Untyped: &dto.Untyped{Value: proto.Float64(-0.5)}}, {Label: []*dto.LabelPair{l("instance", "i")}, Untyped: &dto.Untyped{}}}}
	timestamped := gauge("t", 1)
	timestamped.Metric[0].TimestampMs = proto.Int64(1)
	contradicts := gauge("k", 1)
	contradicts.Metric[0].Label = []*dto.LabelPair{l("instance", "other")}
	return [][]byte{
		protoSeed(counter, summary, classic, native, floatNative, untyped),
		protoSeed(untyped, counter), // out of name order
		protoSeed(timestamped),
		protoSeed(contradicts, gauge("bad name", 1)),
		protoSeed(gauge("dup", 1), gauge("dup", 2)),
		protoSeed(gauge("opview_relay_x", 1)),
	}
}

// exposition renders the store in text and protobuf, fails if either does not parse, and
// returns the text.
func exposition(t *testing.T, s *store.MemoryStore) []byte {
	t.Helper()
	var text, pb bytes.Buffer
	if err := s.WriteText(&text, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteProto(&pb, nil); err != nil {
		t.Fatal(err)
	}
	for format, b := range map[expfmt.Format][]byte{expfmt.NewFormat(expfmt.TypeTextPlain): text.Bytes(), expfmt.NewFormat(expfmt.TypeProtoDelim): pb.Bytes()} {
		dec := expfmt.NewDecoder(bytes.NewReader(b), format)
		for {
			var mf dto.MetricFamily
			if err := dec.Decode(&mf); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("exposition does not parse as %s: %v\n%s", format, err, text.Bytes())
			}
		}
	}
	// Series order across groups is not fixed: compare sorted lines.
	lines := bytes.Split(text.Bytes(), []byte("\n"))
	sortLines(lines)
	return bytes.Join(lines, []byte("\n"))
}

func sortLines(l [][]byte) {
	for i := 1; i < len(l); i++ {
		for j := i; j > 0 && bytes.Compare(l[j], l[j-1]) < 0; j-- {
			l[j], l[j-1] = l[j-1], l[j]
		}
	}
}
