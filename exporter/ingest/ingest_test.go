package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/opview/opview/exporter/store"
)

// TestBodyStopsAtTooManySeries: decoding stops once a body surely carries more series than the
// limit, in both formats, instead of decoding it whole to refuse it afterwards.
func TestBodyStopsAtTooManySeries(t *testing.T) {
	var text strings.Builder
	text.WriteString("# TYPE g gauge\n")
	for i := range 5000 {
		fmt.Fprintf(&text, "g{i=\"%d\"} 1\n", i)
	}
	if _, err := Body(strings.NewReader(text.String()), 0, "text/plain", "", 1<<20, 100, 64); !errors.Is(err, ErrTooManySeries) {
		t.Errorf("text: %v; want ErrTooManySeries", err)
	}
	if fams, err := Body(strings.NewReader(text.String()), 0, "text/plain", "", 1<<20, 5000, 64); err != nil || len(fams.Decoded[0].Metric) != 5000 {
		t.Errorf("text within the limit: %v", err)
	}

	var pb bytes.Buffer
	enc := expfmt.NewEncoder(&pb, expfmt.NewFormat(expfmt.TypeProtoDelim))
	for f := range 50 {
		mf := &dto.MetricFamily{Name: proto.String(fmt.Sprintf("g%d", f)), Type: dto.MetricType_GAUGE.Enum()}
		for i := range 100 {
			mf.Metric = append(mf.Metric, &dto.Metric{Label: []*dto.LabelPair{{Name: proto.String("i"), Value: proto.String(fmt.Sprint(i))}}, Gauge: &dto.Gauge{Value: proto.Float64(1)}})
		}
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	ct := string(expfmt.NewFormat(expfmt.TypeProtoDelim))
	if _, err := Body(bytes.NewReader(pb.Bytes()), 0, ct, "", 1<<20, 1000, 64); !errors.Is(err, ErrTooManySeries) {
		t.Errorf("protobuf: %v; want ErrTooManySeries", err)
	}
	if fams, err := Body(bytes.NewReader(pb.Bytes()), 0, ct, "", 1<<20, 0, 64); err != nil || !bytes.Equal(fams.Encoded, pb.Bytes()) {
		t.Errorf("protobuf without a limit: %v", err)
	}
}

// TestTextBodyLosesNoSamples: the text parser drops some lines of summaries and histograms
// without a word (a quantile or le that is NaN or missing, a _sum or _count given twice), where
// a protobuf push of the same NaN is refused. Body refuses such a text body with a 400 naming the
// family; the same values pushed as protobuf are refused by the store, naming it too.
func TestTextBodyLosesNoSamples(t *testing.T) {
	summary := "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns_sum 1\ns_count 2\n"
	hist := "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n"
	for _, c := range []struct{ name, body, family string }{
		{"NaN quantile", summary + "s{quantile=\"NaN\"} 3\n", "s"},
		{"nan quantile", "# TYPE s summary\ns{quantile=\"nan\",a=\"1\"} 3\n", "s"},
		{"missing quantile", summary + "s{a=\"1\"} 3\n", "s"},
		{"sum twice", summary + "s_sum 5\n", "s"},
		{"NaN le", hist + "h_bucket{le=\"NaN\"} 1\n", "h"},
		{"nan le, blanks first", hist + "  \th_bucket{le=\"nan\"} 1\n", "h"},
		{"missing le", hist + "h_bucket{a=\"1\"} 1\n", "h"},
		{"count twice", hist + "h_count 2.5\n", "h"},
		{"NaN le, name in braces", hist + "{h_bucket,le=\"NaN\"} 1\n", "h"},
		{"NaN le, quoted name", hist + "{\"h_bucket\", le=\"NaN\"} 1\n", "h"},
		{"NaN le, other families around", "# TYPE a gauge\na 1\n" + hist + "h_bucket{le=\"NaN\"} 1\n# TYPE z counter\nz 1\n", "h"},
	} {
		_, err := Body(strings.NewReader(c.body), 0, "text/plain; version=0.0.4", "", 1<<20, 1000, 64)
		var se *store.Error
		if !errors.As(err, &se) || se.Kind != store.KindInvalid || !strings.Contains(se.Msg, fmt.Sprintf("metric family %q", c.family)) {
			t.Errorf("%s: %v; want a refusal naming family %q", c.name, err, c.family)
		}
	}
	// Nothing is refused that lost nothing: le and quantile of other types are labels, _sum
	// and _count of other types are families of their own, blank lines and comments are not
	// samples; neither are the real payloads.
	for _, body := range []string{
		summary, hist,
		"# TYPE g gauge\ng{le=\"NaN\"} 1\ng{quantile=\"NaN\"} 2\n",
		"# TYPE g gauge\ng 1\ng_sum 2\ng_count 3\ng_bucket 4\n",
		"# TYPE s_sum gauge\ns_sum 1\n# TYPE s summary\ns_count 2\n",
		"\n  \n# a comment\n\t# TYPE u untyped\n  u 1\n{u2} 2\n{\"u3\"} 3\n",
	} {
		if _, err := Body(strings.NewReader(body), 0, "text/plain", "", 1<<20, 1000, 64); err != nil {
			t.Errorf("%q: %v", body, err)
		}
	}
	payload, err := os.ReadFile("../../bench/testdata/controller-runtime.prom")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gathered, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var own bytes.Buffer
	for _, mf := range gathered {
		if err := expfmt.NewEncoder(&own, expfmt.NewFormat(expfmt.TypeTextPlain)).Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string][]byte{"controller-runtime payload": payload, "Go and process collectors": own.Bytes()} {
		if _, err := Body(bytes.NewReader(body), 0, "text/plain", "", 16<<20, 100000, 64); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	// The same NaN pushed as protobuf: refused by the store, naming the family.
	s := store.New(store.Options{})
	for _, mf := range []*dto.MetricFamily{
		{Name: proto.String("s"), Type: dto.MetricType_SUMMARY.Enum(), Metric: []*dto.Metric{{Summary: &dto.Summary{
			SampleCount: proto.Uint64(2), SampleSum: proto.Float64(1), Quantile: []*dto.Quantile{{Quantile: proto.Float64(math.NaN()), Value: proto.Float64(3)}}}}}},
		{Name: proto.String("h"), Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{{Histogram: &dto.Histogram{
			SampleCount: proto.Uint64(2), SampleSum: proto.Float64(1), Bucket: []*dto.Bucket{{UpperBound: proto.Float64(math.NaN()), CumulativeCount: proto.Uint64(1)}}}}}},
	} {
		var b bytes.Buffer
		if err := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeProtoDelim)).Encode(mf); err != nil {
			t.Fatal(err)
		}
		fams, err := Body(&b, 0, string(expfmt.NewFormat(expfmt.TypeProtoDelim)), "", 1<<20, 1000, 64)
		if err == nil {
			_, err = s.Push(store.PushRequest{Key: store.MustKey("job", "j"), Encoded: fams.Encoded})
		}
		var se *store.Error
		if !errors.As(err, &se) || se.Kind != store.KindInvalid || !strings.Contains(se.Msg, fmt.Sprintf("metric family %q", mf.GetName())) || !strings.Contains(se.Msg, "NaN") {
			t.Errorf("protobuf %s: %v; want a refusal naming the family and the NaN", mf.GetName(), err)
		}
	}
}

// FuzzSampleLines holds sampleLines to the text parser: read in chunks of any size it counts
// the same; of a body the parser reads, it counts at least one line per sample parsed, and
// exactly that when there is no summary or histogram (the only families whose lines the parser
// drops); it never gives a family more lines than it has samples but for a summary or
// histogram, and check refuses only these.
// Run: go test ./exporter/ingest -run '^$' -fuzz FuzzSampleLines
func FuzzSampleLines(f *testing.F) {
	f.Add("# TYPE s summary\ns{quantile=\"0.5\"} 1\ns{quantile=\"NaN\"} 3\ns_sum 1\ns_count 2\n", uint8(1))
	f.Add("# TYPE h histogram\nh_bucket{le=\"1\"} 1.5\n{\"h_bucket\", le=\"NaN\"} 1\n  {h_sum} 1\nh_count 2.5\n", uint8(3))
	f.Add("\n  \n# a comment\n\t# TYPE u untyped\n  u 1\n{u2} 2\n{\"u3\"} 3\ng{le=\"NaN\"} 1 17\ng_sum 1\nA\"0\"0", uint8(7))
	f.Fuzz(func(t *testing.T, body string, chunk uint8) {
		read := func(n int) *sampleLines {
			lines := &sampleLines{r: strings.NewReader(body)}
			r := io.Reader(lines)
			if n > 0 {
				r = &chunkReader{r: lines, n: n}
			}
			if _, err := io.ReadAll(r); err != nil {
				t.Fatal(err)
			}
			return lines
		}
		lines, chunked := read(0), read(1+int(chunk%16))
		if lines.total != chunked.total || !maps.Equal(lines.counted(), chunked.counted()) {
			t.Fatalf("read whole: %d lines, %v; in chunks of %d bytes: %d lines, %v", lines.total, lines.counted(), 1+chunk%16, chunked.total, chunked.counted())
		}
		// The label bound stops whole and chunked reads alike.
		bounded := func(n int) error {
			var r io.Reader = &sampleLines{r: strings.NewReader(body), maxLabels: 3}
			if n > 0 {
				r = &sampleLines{r: &chunkReader{r: strings.NewReader(body), n: n}, maxLabels: 3}
			}
			_, err := io.ReadAll(r)
			return err
		}
		tooMany := errors.Is(bounded(0), ErrTooManyLabels)
		if chunked := errors.Is(bounded(1+int(chunk%16)), ErrTooManyLabels); chunked != tooMany {
			t.Fatalf("label bound: read whole %v, in chunks of %d bytes %v", tooMany, 1+chunk%16, chunked)
		}
		parser := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
		if err != nil {
			return
		}
		if tooMany { // a line the parser takes has 3 labels or more (a quantile or le among them)
			most := 0
			for _, mf := range fams {
				for _, m := range mf.Metric {
					n := len(m.Label)
					if mf.GetType() == dto.MetricType_SUMMARY || mf.GetType() == dto.MetricType_HISTOGRAM {
						n++
					}
					most = max(most, n)
				}
			}
			if most < 3 {
				t.Fatalf("refused for 3 labels on a line, but the parser finds at most %d on a line", most)
			}
		}
		attributed := map[string]int{}
		for name, n := range lines.counted() {
			attributed[familyOf(fams, name)] += n
		}
		samples, dropping := 0, false
		for name, mf := range fams {
			for _, m := range mf.Metric {
				samples += valuesOf(mf.GetType(), m).total()
			}
			switch mf.GetType() {
			case dto.MetricType_SUMMARY, dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				dropping = true
			default:
				if attributed[name] > len(mf.Metric) {
					t.Fatalf("family %s: %d lines attributed, %d samples parsed", name, attributed[name], len(mf.Metric))
				}
			}
		}
		if lines.total < samples || (!dropping && lines.total != samples) {
			t.Fatalf("%d sample lines counted, %d samples parsed", lines.total, samples)
		}
		if err := lines.check(fams); (err != nil) != (lines.total > samples) {
			t.Fatalf("%d sample lines, %d samples: %v", lines.total, samples, err)
		}
	})
}

// chunkReader reads at most n bytes at a time.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

// TestMalformedMessageCostsNoObjects: a family message broken at its end, after two million
// empty metrics, is refused where the walk finds it broken; the body is not decoded into
// objects to say so (it took 185 MB for 4 MB, 4 KB gzipped).
func TestMalformedMessageCostsNoObjects(t *testing.T) {
	const metrics = 2_000_000
	msg := append(bytes.Repeat([]byte{0x22, 0x00}, metrics), 0x18) // field 3 (varint) cut short
	body := append(protowire.AppendVarint(nil, uint64(len(msg))), msg...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	err := checkProto(body, 0)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), "message 1: byte 4000000") {
		t.Fatalf("checkProto of a family broken at byte %d: %v, want a refusal saying where", 2*metrics, err)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<10 {
		t.Errorf("refusing a malformed %d-byte body allocated %d KiB; want next to nothing", len(body), alloc>>10)
	}
}

// TestTextLineLabelsAreBounded: a text line with more labels than a series may have stops the
// body before the parser's quadratic work on it, however the line is written; '=' in quoted
// values and names does not count.
func TestTextLineLabelsAreBounded(t *testing.T) {
	labels := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "l%d=\"v\",", i)
		}
		return b.String()
	}
	for _, c := range []struct {
		name, body string
		refused    bool
	}{
		{"63 labels", "m{" + labels(63) + "} 1\n", false},
		{"64 labels", "m{" + labels(64) + "} 1\n", true},
		{"40,000 labels", "m{" + labels(40000) + "} 1\n", true},
		{"blank before the braces", "m \t{" + labels(64) + "} 1\n", true},
		{"quoted name in the braces", "{\"m.x\", " + labels(64) + "} 1\n", true},
		{"escaped quoted name", "{\"m\\\"=x\", " + labels(64) + "} 1\n", true},
		{"quoted label names", "{\"m\", " + strings.Repeat("\"a.b\"=\"v\",", 64) + "} 1\n", true},
		{"'=' in values", "m{a=\"" + strings.Repeat("=", 200) + "\",b=\"x\\\"=y=\\\\\"} 1\n", false},
		{"'=' in HELP and comments", "# HELP m " + strings.Repeat("a=b ", 100) + "\n# " + strings.Repeat("=", 100) + "\nm 1\n", false},
		{"labels over many lines", strings.Repeat("m{"+labels(40)+"} 1\n", 3), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			_, err := Body(strings.NewReader(c.body), 0, "text/plain", "", 16<<20, 1000, 64)
			if got := errors.Is(err, ErrTooManyLabels); got != c.refused {
				t.Fatalf("refused for its labels: %v (%v), want %v", got, err, c.refused)
			}
			if c.refused && !strings.Contains(err.Error(), "a series may have 64") {
				t.Errorf("message %q does not say the limit", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
	// The same bound with every chunking of the body.
	body := "{\"m\\\"x\", a=\"=\\\"=\"," + labels(63) + "} 1\n"
	for n := 1; n < 16; n++ {
		lines := &sampleLines{r: &chunkReader{r: strings.NewReader(body), n: n}, maxLabels: 64}
		if _, err := io.ReadAll(lines); !errors.Is(err, ErrTooManyLabels) {
			t.Fatalf("read in chunks of %d bytes: %v, want ErrTooManyLabels", n, err)
		}
	}
}
