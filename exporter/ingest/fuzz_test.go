package ingest_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/opview/opview/exporter/ingest"
	"github.com/opview/opview/exporter/store"
)

// FuzzParsePush feeds arbitrary bodies through the whole push path: decode (text or protobuf),
// validate and render, apply to a store that already holds a group. Whatever the body, nothing
// may panic; a refused push must leave the exposition byte for byte as it was; an accepted one
// must leave an exposition that parses in both pre-rendered formats.
// Run: go test ./exporter/ingest -run '^$' -fuzz FuzzParsePush (make fuzz).
func FuzzParsePush(f *testing.F) {
	f.Add([]byte("# HELP x Help.\n# TYPE x counter\nx{a=\"1\"} 1\n"), false)
	f.Add([]byte("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n"), false)
	f.Add([]byte("# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 3\ns_count 2\n"), false)
	f.Add([]byte("x 1 1700000000000\n"), false)
	f.Add(protoSeed(), true)
	f.Fuzz(func(t *testing.T, body []byte, proto bool) {
		ct := "text/plain; version=0.0.4"
		if proto {
			ct = string(expfmt.NewFormat(expfmt.TypeProtoDelim))
		}
		s := store.New(store.Options{Limits: store.Limits{MaxSeriesPerGroup: 1000, MaxBytes: 8 << 20, LabelLimit: 64, LabelValueLengthLimit: 2048}})
		if _, err := s.Push(store.PushRequest{Key: store.MustKey("job", "base"), Families: []*dto.MetricFamily{gauge("x", 1)}, Replace: true}); err != nil {
			t.Fatal(err)
		}
		before := exposition(t, s)

		fams, err := ingest.Body(bytes.NewReader(body), ct, "", 1<<20, 1000)
		if err != nil {
			return
		}
		_, err = s.Push(store.PushRequest{Key: store.MustKey("job", "fuzz", "instance", "i"), Families: fams})
		after := exposition(t, s)
		if err != nil {
			var se *store.Error
			if !errors.As(err, &se) {
				t.Fatalf("refusal is not a *store.Error: %v", err)
			}
			if !bytes.Equal(before, after) {
				t.Fatalf("refused push (%v) changed the exposition:\n%s\n---\n%s", err, before, after)
			}
		}
	})
}

func gauge(name string, v float64) *dto.MetricFamily {
	return &dto.MetricFamily{Name: &name, Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: &v}}}}
}

func protoSeed() []byte {
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeProtoDelim))
	enc.Encode(gauge("y", 2))
	return b.Bytes()
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
