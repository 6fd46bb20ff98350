package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"

	"github.com/opview/opview/exporter/store"
)

func gauge(name string, v float64, labels ...string) *dto.MetricFamily {
	m := &dto.Metric{Gauge: &dto.Gauge{Value: proto.Float64(v)}}
	for i := 0; i+1 < len(labels); i += 2 {
		m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(labels[i]), Value: proto.String(labels[i+1])})
	}
	return &dto.MetricFamily{Name: proto.String(name), Help: proto.String("h"), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{m}}
}

// histogram is a classic histogram with n buckets.
func histogram(name string, n int) *dto.MetricFamily {
	h := &dto.Histogram{SampleCount: proto.Uint64(uint64(n)), SampleSum: proto.Float64(1)}
	for i := range n {
		h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: proto.Float64(float64(i + 1)), CumulativeCount: proto.Uint64(uint64(i))})
	}
	return &dto.MetricFamily{Name: proto.String(name), Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{{Histogram: h}}}
}

func push(s *store.MemoryStore, k store.Key, fams ...*dto.MetricFamily) error {
	_, err := s.Push(store.PushRequest{Key: k, Families: fams, Replace: true, Client: "192.0.2.1:1234"})
	return err
}

func mustPush(t *testing.T, s *store.MemoryStore, k store.Key, fams ...*dto.MetricFamily) {
	t.Helper()
	if err := push(s, k, fams...); err != nil {
		t.Fatalf("push to %s: %v", k, err)
	}
}

func text(t *testing.T, s *store.MemoryStore) string {
	t.Helper()
	var b strings.Builder
	if err := s.WriteText(&b, nil); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// exposed is what the store shows of its groups: both exposition formats, and each group's last
// error and series.
func exposed(t *testing.T, s *store.MemoryStore) string {
	t.Helper()
	var out strings.Builder
	out.WriteString(text(t, s))
	var pb bytes.Buffer
	if err := s.WriteProto(&pb, nil); err != nil {
		t.Fatal(err)
	}
	out.Write(pb.Bytes())
	for _, g := range s.Groups() {
		fmt.Fprintf(&out, "%s %q %d\n", g.Key, g.LastError, g.Series)
	}
	return out.String()
}

// samples is the text exposition without the groups' health series, which record refusals.
func samples(t *testing.T, s *store.MemoryStore) string {
	t.Helper()
	var keep []string
	for _, l := range strings.Split(text(t, s), "\n") {
		if !strings.Contains(l, "push_time_seconds") && !strings.Contains(l, "push_failure_time_seconds") && !strings.Contains(l, "opview_relay_group_") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// refused checks that err is a refusal of the kind (and limit, if any) wanted, whose message
// contains want.
func refused(t *testing.T, err error, kind store.Kind, limit store.Limit, want string) {
	t.Helper()
	var se *store.Error
	if !errors.As(err, &se) {
		t.Fatalf("err = %v; want a *store.Error", err)
	}
	if se.Kind != kind || se.Limit != limit || !strings.Contains(se.Msg, want) {
		t.Fatalf("refusal %+v; want kind %d, limit %q, message containing %q", se, kind, limit, want)
	}
}

func TestPushReplaceAndAdd(t *testing.T) {
	s := store.New(store.Options{})
	k := store.MustKey("job", "op")
	mustPush(t, s, k, gauge("a", 1), gauge("b", 2))
	if _, err := s.Push(store.PushRequest{Key: k, Families: []*dto.MetricFamily{gauge("a", 3)}}); err != nil {
		t.Fatal(err)
	}
	got := text(t, s)
	if !strings.Contains(got, `a{instance="",job="op"} 3`) || !strings.Contains(got, `b{instance="",job="op"} 2`) {
		t.Fatalf("POST did not replace a and keep b:\n%s", got)
	}
	mustPush(t, s, k, gauge("a", 4))
	if got := text(t, s); strings.Contains(got, "\nb{") {
		t.Fatalf("PUT kept b:\n%s", got)
	}
	if g := s.Groups()[0]; g.LastClient != "192.0.2.1:1234" || g.Pushes != 3 || g.Series != 1 || g.Bytes <= 0 {
		t.Errorf("group status %+v", g)
	}
}

// TestRefusedPushLeavesTheStoreAsItWas runs every kind of refusal the store makes against a
// store holding data, and checks the refusal's kind and limit, that the message is short, and
// that nothing stored changed.
func TestRefusedPushLeavesTheStoreAsItWas(t *testing.T) {
	s := store.New(store.Options{Limits: store.Limits{
		MaxGroups: 3, MaxSeriesPerGroup: 50, MaxBytes: 1 << 20,
		LabelLimit: 8, LabelNameLengthLimit: 32, LabelValueLengthLimit: 128, HelpLengthLimit: 64,
	}, LimitNames: map[store.Limit]string{store.LimitSeries: "--group.max-series"}})
	a := store.MustKey("job", "a", "instance", "x")
	mustPush(t, s, a, gauge("temp", 1, "room", "kitchen"))
	mustPush(t, s, store.MustKey("job", "b"), &dto.MetricFamily{Name: proto.String("reqs_total"), Type: dto.MetricType_COUNTER.Enum(),
		Metric: []*dto.Metric{{Counter: &dto.Counter{Value: proto.Float64(1)}}}})
	before := samples(t, s)
	long := strings.Repeat("v", 129)
	manyLabels := gauge("m", 1, "l1", "1", "l2", "2", "l3", "3", "l4", "4", "l5", "5", "l6", "6")
	dupLe := histogram("h", 3)
	dupLe.Metric[0].Histogram.Bucket[2].UpperBound = proto.Float64(2)
	unsortedDupLe := histogram("h", 3)
	unsortedDupLe.Metric[0].Histogram.Bucket[0].UpperBound = proto.Float64(3)
	unsortedDupLe.Metric[0].Histogram.Bucket[2].UpperBound = proto.Float64(2)
	dupQuantile := &dto.MetricFamily{Name: proto.String("s"), Type: dto.MetricType_SUMMARY.Enum(), Metric: []*dto.Metric{{Summary: &dto.Summary{
		Quantile: []*dto.Quantile{{Quantile: proto.Float64(0.5), Value: proto.Float64(1)}, {Quantile: proto.Float64(0.5), Value: proto.Float64(2)}},
	}}}}
	badSchema := &dto.MetricFamily{Name: proto.String("nh"), Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{{Histogram: &dto.Histogram{
		Schema: proto.Int32(9), SampleCount: proto.Uint64(0), SampleSum: proto.Float64(0), ZeroThreshold: proto.Float64(1e-128),
	}}}}
	badSpans := &dto.MetricFamily{Name: proto.String("nh"), Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{{Histogram: &dto.Histogram{
		Schema: proto.Int32(3), SampleCount: proto.Uint64(2), SampleSum: proto.Float64(1),
		PositiveSpan: []*dto.BucketSpan{{Offset: proto.Int32(0), Length: proto.Uint32(3)}}, PositiveDelta: []int64{1, 0},
	}}}}
	for _, c := range []struct {
		name  string
		key   store.Key
		fams  []*dto.MetricFamily
		kind  store.Kind
		limit store.Limit
		want  string
	}{
		{"type conflict", store.MustKey("job", "c"), []*dto.MetricFamily{gauge("reqs_total", 1)}, store.KindConflict, "", "already pushed it as counter"},
		{"series of another group", store.MustKey("job", "a"), []*dto.MetricFamily{gauge("temp", 1, "room", "kitchen", "instance", "x")}, store.KindConflict, "", "already exposed by group"},
		{"too many series", a, []*dto.MetricFamily{histogram("h", 60)}, store.KindTooLarge, store.LimitSeries, "(--group.max-series)"},
		{"too many labels", a, []*dto.MetricFamily{manyLabels}, store.KindInvalid, store.LimitLabels, "more than the limit of 8"},
		{"long label value", a, []*dto.MetricFamily{gauge("m", 1, "l", long)}, store.KindInvalid, store.LimitLabelValueLength, "129 bytes"},
		{"long label name", a, []*dto.MetricFamily{gauge("m", 1, strings.Repeat("n", 33), "1")}, store.KindInvalid, store.LimitLabelNameLength, "33 bytes"},
		{"long metric name", a, []*dto.MetricFamily{gauge(strings.Repeat("m", 129), 1)}, store.KindInvalid, store.LimitLabelValueLength, "metric name"},
		{"long grouping value", store.MustKey("job", "a", "instance", long), []*dto.MetricFamily{gauge("m", 1)}, store.KindInvalid, store.LimitLabelValueLength, "129 bytes"},
		{"long HELP", a, []*dto.MetricFamily{{Name: proto.String("m"), Help: proto.String(strings.Repeat("h", 65)), Type: dto.MetricType_GAUGE.Enum(), Metric: gauge("m", 1).Metric}}, store.KindInvalid, store.LimitHelpLength, "HELP"},
		{"duplicate le", a, []*dto.MetricFamily{dupLe}, store.KindInvalid, "", "le=2 appears twice"},
		{"duplicate le out of order", a, []*dto.MetricFamily{unsortedDupLe}, store.KindInvalid, "", "appears twice"},
		{"duplicate quantile", a, []*dto.MetricFamily{dupQuantile}, store.KindInvalid, "", "quantile 0.5 appears twice"},
		{"native schema", a, []*dto.MetricFamily{badSchema}, store.KindInvalid, "", "schema 9"},
		{"native spans", a, []*dto.MetricFamily{badSpans}, store.KindInvalid, "", "spans need 3 buckets, have 2"},
	} {
		err := push(s, c.key, c.fams...)
		refused(t, err, c.kind, c.limit, c.want)
		if len(err.Error()) > 512 {
			t.Errorf("%s: message of %d bytes: %.100s...", c.name, len(err.Error()), err)
		}
		if after := samples(t, s); after != before {
			t.Fatalf("%s: the refused push changed the exposition", c.name)
		}
	}
}

func TestByteBudget(t *testing.T) {
	s := store.New(store.Options{Limits: store.Limits{MaxBytes: 64 << 10}, LimitNames: map[store.Limit]string{store.LimitBytes: "--store.max-bytes"}})
	mustPush(t, s, store.MustKey("job", "small"), gauge("g", 1))
	var err error
	i := 0
	for ; err == nil && i < 1000; i++ {
		err = push(s, store.MustKey("job", fmt.Sprintf("g%d", i)), histogram("h", 40))
	}
	refused(t, err, store.KindTooLarge, store.LimitBytes, "(--store.max-bytes)")
	u := s.Usage()
	if u.Bytes > 64<<10 || u.Bytes < 32<<10 {
		t.Errorf("store holds %d bytes with a budget of %d", u.Bytes, 64<<10)
	}
	// Replacing a group with one of the same size still fits; deleting frees room.
	mustPush(t, s, store.MustKey("job", "g0"), histogram("h", 40))
	if !s.Delete(store.MustKey("job", "g0")) {
		t.Fatal("delete")
	}
	if s.Usage().Bytes >= u.Bytes {
		t.Errorf("delete freed nothing: %d then %d bytes", u.Bytes, s.Usage().Bytes)
	}
	mustPush(t, s, store.MustKey("job", "new"), histogram("h", 40))

	// A push is refused before it is rendered when its labels alone pass the budget: a small
	// body repeating a long grouping value in every series.
	big := store.MustKey("job", "amplify", "v", strings.Repeat("x", 2000))
	err = push(s, big, histogram("h", 5000))
	refused(t, err, store.KindTooLarge, store.LimitBytes, "budget")
	// The accounting returns to zero when everything goes.
	for _, g := range s.Groups() {
		s.Delete(g.Key)
	}
	if b := s.Usage().Bytes; b != 0 {
		t.Errorf("empty store accounts %d bytes", b)
	}
}

// TestBudgetCountsWhatIsStored: a push is checked against the budget with the bytes its parts
// take once stored (their text, the series hashes after it, the protobuf), so a budget one byte
// short of two groups holds one, and a replacement of the same content changes nothing.
func TestBudgetCountsWhatIsStored(t *testing.T) {
	fams := func(i int) []*dto.MetricFamily {
		return []*dto.MetricFamily{histogram("h", 40), gauge(fmt.Sprintf("g%d", i%2), 1, "a", "1", "b", "2")}
	}
	free := store.New(store.Options{})
	var first store.PushResult
	for i := range 2 {
		res, err := free.Push(store.PushRequest{Key: store.MustKey("job", fmt.Sprintf("g%d", i)), Families: fams(i), Replace: true})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = res
		}
	}
	one := free.Groups()[0].Bytes
	if first.Bytes <= 0 || first.Bytes >= one || one-first.Bytes > 4<<10 {
		t.Errorf("a push reports %d bytes, its group takes %d: the group's bookkeeping is not the difference", first.Bytes, one)
	}
	two := free.Usage().Bytes

	s := store.New(store.Options{Limits: store.Limits{MaxBytes: two - 1}})
	mustPush(t, s, store.MustKey("job", "g0"), fams(0)...)
	refused(t, push(s, store.MustKey("job", "g1"), fams(1)...), store.KindTooLarge, store.LimitBytes, "budget")
	if u := s.Usage().Bytes; u != one {
		t.Errorf("store holds %d bytes after one group, want %d", u, one)
	}
	mustPush(t, s, store.MustKey("job", "g0"), fams(0)...)
	if u := s.Usage().Bytes; u != one {
		t.Errorf("store holds %d bytes after the group was replaced by the same content, want %d", u, one)
	}
}

// TestExpiredGroupsNeverBlockNewOnes: at the group limit, an expired group is forgotten to make
// room; only fresh groups can fill the store.
func TestExpiredGroupsNeverBlockNewOnes(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	s := store.New(store.Options{TTL: time.Minute, ForgetAfter: time.Hour, Now: func() time.Time { return now }, Limits: store.Limits{MaxGroups: 2}})
	mustPush(t, s, store.MustKey("job", "old"))
	now = now.Add(10 * time.Second)
	mustPush(t, s, store.MustKey("job", "older-but-fresh"))
	refused(t, push(s, store.MustKey("job", "third")), store.KindFull, store.LimitGroups, "holds 2 groups")
	now = now.Add(55 * time.Second) // "old" expired, the other is still fresh
	mustPush(t, s, store.MustKey("job", "third"))
	var keys []string
	for _, g := range s.Groups() {
		keys = append(keys, g.Key.String())
	}
	if strings.Join(keys, " ") != `{job="older-but-fresh"} {job="third"}` {
		t.Fatalf("groups %v; want the expired one forgotten", keys)
	}
}

func TestRefusalsAreRecorded(t *testing.T) {
	s := store.New(store.Options{Limits: store.Limits{MaxSeriesPerGroup: 1}})
	known := store.MustKey("job", "known")
	mustPush(t, s, known, gauge("g", 1))
	if err := push(s, known, gauge("g", 1, "a", "1"), gauge("h", 1)); err == nil {
		t.Fatal("accepted")
	}
	if g := s.Groups()[0]; g.Failures != 1 || g.LastError == "" || g.LastClient != "192.0.2.1:1234" {
		t.Errorf("refusal not on the group: %+v", g)
	}
	// A refused push to a group the store does not hold is kept in the recent refusals, bounded,
	// with a bounded message.
	for i := range 40 {
		push(s, store.MustKey("job", fmt.Sprintf("new%d", i)), gauge("g", 1, "a", "1"), gauge("h", 1))
	}
	s.RecordRefusal(store.Key{}, "192.0.2.9:1", errors.New(strings.Repeat("long error ", 1000)))
	u := s.Usage()
	if len(u.Refusals) != 16 || u.Refusals[0].Client != "192.0.2.9:1" || u.Refusals[1].Group != `{job="new39"}` || len(u.Refusals[0].Error) > 600 {
		t.Fatalf("refusals: %d, newest %+v", len(u.Refusals), u.Refusals[:2])
	}
	if len(s.Groups()) != 1 {
		t.Errorf("a refused push created a group")
	}
}

// TestMessagesQuoteBoundedExcerpts: whatever a push carries, the refusal is short.
func TestMessagesQuoteBoundedExcerpts(t *testing.T) {
	s := store.New(store.Options{})
	huge := strings.Repeat("x", 1<<20)
	for _, fams := range [][]*dto.MetricFamily{
		{gauge("g", 1, "instance", huge)},                   // contradicts the key
		{gauge("g", 1, "l", huge), gauge("g2", 1, "l", "")}, // fine: no limit set
		{gauge("bad-"+huge, 1)},                             // invalid name
		{gauge("g", 1, "bad-"+huge, "1")},                   // invalid label name
		{gauge("g", 1, "l", huge), gauge("g", 2)},           // family twice
	} {
		err := push(s, store.MustKey("job", "a", "instance", "short"), fams...)
		if err != nil && len(err.Error()) > 512 {
			t.Errorf("message of %d bytes", len(err.Error()))
		}
	}
}

func TestValidNativeHistogramIsAccepted(t *testing.T) {
	s := store.New(store.Options{})
	nh := &dto.MetricFamily{Name: proto.String("nh"), Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{{Histogram: &dto.Histogram{
		Schema: proto.Int32(3), SampleCount: proto.Uint64(3), SampleSum: proto.Float64(1.5), ZeroThreshold: proto.Float64(1e-128), ZeroCount: proto.Uint64(1),
		PositiveSpan: []*dto.BucketSpan{{Offset: proto.Int32(-2), Length: proto.Uint32(1)}, {Offset: proto.Int32(3), Length: proto.Uint32(1)}}, PositiveDelta: []int64{1, 0},
	}}}}
	mustPush(t, s, store.MustKey("job", "a"), nh)
	custom := &dto.MetricFamily{Name: proto.String("nhcb"), Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{{Histogram: &dto.Histogram{
		Schema: proto.Int32(-53), SampleCount: proto.Uint64(2), SampleSum: proto.Float64(math.NaN()),
		PositiveSpan: []*dto.BucketSpan{{Offset: proto.Int32(0), Length: proto.Uint32(2)}}, PositiveDelta: []int64{1, 0},
	}}}}
	mustPush(t, s, store.MustKey("job", "b"), custom)
}

// TestOpenMetricsIsStreamedAndParses: the OpenMetrics exposition of a family larger than the
// encoder's batch is one family with one header, and parses.
func TestOpenMetricsIsStreamedAndParses(t *testing.T) {
	s := store.New(store.Options{})
	for i := range 30 {
		fam := &dto.MetricFamily{Name: proto.String("big_total"), Help: proto.String("Big."), Type: dto.MetricType_COUNTER.Enum()}
		for j := range 2000 {
			fam.Metric = append(fam.Metric, &dto.Metric{Label: []*dto.LabelPair{{Name: proto.String("j"), Value: proto.String(fmt.Sprint(j))}}, Counter: &dto.Counter{Value: proto.Float64(1)}})
		}
		mustPush(t, s, store.MustKey("job", fmt.Sprintf("g%d", i)), fam, gauge("big", 1))
	}
	var b bytes.Buffer
	if err := s.WriteOpenMetrics(&b, nil, expfmt.NewFormat(expfmt.TypeOpenMetrics)); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if b.Len() < 2<<20 {
		t.Fatalf("exposition of %d bytes: too small to have needed batches", b.Len())
	}
	if n := strings.Count(out, "# TYPE big_total "); n != 1 {
		t.Errorf("%d TYPE lines for big_total", n)
	}
	if !strings.HasSuffix(out, "# EOF\n") || strings.Count(out, "# EOF") != 1 {
		t.Errorf("exposition does not end with one # EOF")
	}
	// big_total collides with big in OpenMetrics: it is sent unknown-typed, as big_total.
	if !strings.Contains(out, "# TYPE big_total unknown") {
		t.Errorf("colliding counter not sent as unknown:\n%.300s", out)
	}
	if n := strings.Count(out, "\nbig_total{"); n != 60000 {
		t.Errorf("%d big_total samples, want 60000", n)
	}
	// The text parser of Prometheus's common module reads the same samples from the text format.
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text(t, s)))
	if err != nil || len(fams["big_total"].GetMetric()) != 60000 {
		t.Fatalf("text exposition: %v", err)
	}
}

// TestEncodedPushKeepsNothingOfTheBody: the store reads a protobuf body without copying its
// strings, so it must clone whatever it keeps. Overwriting the body after the push (accepted or
// refused) must change nothing the store serves: exposition, group status, refusal messages.
func TestEncodedPushKeepsNothingOfTheBody(t *testing.T) {
	s := store.New(store.Options{})
	k := store.MustKey("job", "alias", "instance", "i")
	var body bytes.Buffer
	enc := expfmt.NewEncoder(&body, expfmt.NewFormat(expfmt.TypeProtoDelim))
	for _, mf := range []*dto.MetricFamily{gauge("a_gauge", 1, "l", "value one"), histogram("b_hist", 3), gauge("c_gauge", 2, "m", "x\"y")} {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	b := body.Bytes()
	if _, err := s.Push(store.PushRequest{Key: k, Encoded: b, Replace: true, Client: "192.0.2.1:1"}); err != nil {
		t.Fatal(err)
	}
	// A refused push to the group, whose refusal quotes the body's name and label.
	var bad bytes.Buffer
	if err := expfmt.NewEncoder(&bad, expfmt.NewFormat(expfmt.TypeProtoDelim)).Encode(gauge("d_gauge", 1, "instance", "contradiction")); err != nil {
		t.Fatal(err)
	}
	rb := bad.Bytes()
	if _, err := s.Push(store.PushRequest{Key: k, Encoded: rb}); err == nil {
		t.Fatal("a label contradicting the grouping key was accepted")
	}
	before := exposed(t, s)
	if !strings.Contains(before, `a_gauge{instance="i",job="alias",l="value one"} 1`) || !strings.Contains(before, "contradiction") {
		t.Fatalf("unexpected exposition:\n%s", before)
	}
	for _, buf := range [][]byte{b, rb} {
		for i := range buf {
			buf[i] = 'Z'
		}
	}
	if after := exposed(t, s); after != before {
		t.Fatalf("overwriting the pushed bytes changed the store:\n%s\n---\n%s", before, after)
	}
}

// A protobuf body of empty MetricFamily messages (one zero byte each: 4 MiB of zeros gzip to
// about 4 KB) is a push of nothing, and must cost memory for nothing either: the store keeps
// no trace of messages without metrics while it prepares the push.
func TestEncodedPushOfEmptyMessagesCostsNoMemory(t *testing.T) {
	s := store.New(store.Options{})
	k := store.MustKey("job", "empty", "instance", "i")
	var legit bytes.Buffer
	if err := expfmt.NewEncoder(&legit, expfmt.NewFormat(expfmt.TypeProtoDelim)).Encode(gauge("kept", 1, "l", "v")); err != nil {
		t.Fatal(err)
	}
	body := append(make([]byte, 1<<20), legit.Bytes()...) // a million empty messages, then one family
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := s.Push(store.PushRequest{Key: k, Encoded: body, Replace: true}); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > 4<<20 {
		t.Errorf("a push of a million empty messages allocated %d bytes; want under 4 MiB", got)
	}
	if out := text(t, s); !strings.Contains(out, `kept{instance="i",job="empty",l="v"} 1`) {
		t.Errorf("the family after the empty messages is missing:\n%s", out)
	}
}

// TestBadExemplarsAreRefused: an exemplar's labels are checked as a series' are (valid names,
// once each, valid UTF-8, the length limits) and hold at most 128 runes, OpenMetrics' rule,
// wherever the exemplar is (counter, bucket, native histogram) and however the push came
// (protobuf read by the store, or objects). An invalid name was served as pushed: in the
// OpenMetrics format it breaks the scrape.
func TestBadExemplarsAreRefused(t *testing.T) {
	ex := func(kv ...string) *dto.Exemplar {
		e := &dto.Exemplar{Value: proto.Float64(1)}
		for i := 0; i+1 < len(kv); i += 2 {
			e.Label = append(e.Label, &dto.LabelPair{Name: proto.String(kv[i]), Value: proto.String(kv[i+1])})
		}
		return e
	}
	counter := func(e *dto.Exemplar) *dto.MetricFamily {
		return &dto.MetricFamily{Name: proto.String("c_total"), Type: dto.MetricType_COUNTER.Enum(), Metric: []*dto.Metric{{Counter: &dto.Counter{Value: proto.Float64(1), Exemplar: e}}}}
	}
	bucket := func(e *dto.Exemplar) *dto.MetricFamily {
		h := histogram("h", 2)
		h.Metric[0].Histogram.Bucket[1].Exemplar = e
		return h
	}
	native := func(e *dto.Exemplar) *dto.MetricFamily {
		return &dto.MetricFamily{Name: proto.String("nh"), Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{{Histogram: &dto.Histogram{
			Schema: proto.Int32(3), SampleCount: proto.Uint64(1), SampleSum: proto.Float64(1), ZeroThreshold: proto.Float64(1e-128),
			PositiveSpan: []*dto.BucketSpan{{Offset: proto.Int32(0), Length: proto.Uint32(1)}}, PositiveDelta: []int64{1},
			Exemplars: []*dto.Exemplar{ex("trace_id", "ok"), e},
		}}}}
	}
	limits := store.Limits{LabelNameLengthLimit: 16, LabelValueLengthLimit: 300}
	names := map[store.Limit]string{store.LimitLabelNameLength: "--push.label-name-length-limit"}
	k := store.MustKey("job", "ex")
	both := func(t *testing.T, fam *dto.MetricFamily) (decoded, encoded error) {
		t.Helper()
		var b bytes.Buffer
		if err := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeProtoDelim)).Encode(fam); err != nil {
			t.Fatal(err)
		}
		s := store.New(store.Options{Limits: limits, LimitNames: names})
		_, encoded = s.Push(store.PushRequest{Key: k, Encoded: b.Bytes(), Replace: true})
		_, decoded = s.Push(store.PushRequest{Key: k, Families: []*dto.MetricFamily{fam}, Replace: true})
		return decoded, encoded
	}
	accented := strings.Repeat("é", 126) // 126 runes, 252 bytes
	for _, c := range []struct {
		name  string
		ex    *dto.Exemplar
		limit store.Limit
		want  string // "" for accepted
	}{
		{"fine", ex("trace_id", "4bf92f3577b34da6", "span_id", "00f067aa0ba902b7"), "", ""},
		{"128 runes", ex("id", accented), "", ""},
		{"invalid name", ex("bad\xff name\"}\n# EOF", "v"), "", `exemplar label name "bad\xff name\"}\n# EOF" is invalid`},
		{"empty name", ex("", "v"), "", `exemplar label name "" is invalid`},
		{"reserved name", ex("__name__", "v"), "", "is reserved"},
		{"name twice", ex("a", "1", "a", "2"), "", `exemplar label "a" appears twice`},
		{"invalid UTF-8", ex("a", "\xff"), "", `value of exemplar label "a" is not valid UTF-8`},
		{"129 runes", ex("id", accented+"x"), "", "labels have 129 runes"},
		{"long name", ex("a_very_long_label_name", "1"), store.LimitLabelNameLength, `in an exemplar, label name "a_very_long_label_name" is 22 bytes long, more than the limit of 16 (--push.label-name-length-limit)`},
	} {
		for _, fam := range []*dto.MetricFamily{counter(c.ex), bucket(c.ex), native(c.ex)} {
			decoded, encoded := both(t, fam)
			for how, err := range map[string]error{"decoded": decoded, "encoded": encoded} {
				if c.want == "" {
					if err != nil {
						t.Errorf("%s, %s, %s: %v", c.name, fam.GetName(), how, err)
					}
					continue
				}
				if err == nil {
					t.Errorf("%s, %s, %s: accepted", c.name, fam.GetName(), how)
					continue
				}
				refused(t, err, store.KindInvalid, c.limit, c.want)
				if !strings.Contains(err.Error(), fmt.Sprintf("metric family %q", fam.GetName())) {
					t.Errorf("%s, %s, %s: %v does not name the family", c.name, fam.GetName(), how, err)
				}
			}
		}
	}
	// What is accepted is served in OpenMetrics with its exemplars, and parses.
	s := store.New(store.Options{})
	mustPush(t, s, k, counter(ex("trace_id", "4bf92f3577b34da6")), bucket(ex("id", accented)))
	var om bytes.Buffer
	if err := s.WriteOpenMetrics(&om, nil, expfmt.NewFormat(expfmt.TypeOpenMetrics)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(om.String(), `c_total{instance="",job="ex"} 1.0 # {trace_id="4bf92f3577b34da6"} 1.0`) || !strings.Contains(om.String(), accented) {
		t.Errorf("exemplars missing from the OpenMetrics exposition:\n%s", om.String())
	}
}

// TestManyGroupsReplacedInAnyOrder: a family with many groups (where a replacing push finds its
// group's entry from where the previous part was stored) exposes the same as a store that got
// only the final pushes, after groups came, went and re-pushed in shuffled orders.
func TestManyGroupsReplacedInAnyOrder(t *testing.T) {
	const groups = 40
	s := store.New(store.Options{})
	final := map[int]float64{}
	key := func(i int) store.Key {
		return store.MustKey("job", "j", "instance", fmt.Sprintf("i%02d", (i*7)%groups))
	}
	// extra adds a family that sorts after the others, and a family that sorts before them to
	// an odd push: a PUT without them drops them.
	push := func(s *store.MemoryStore, i int, v float64, extra bool) {
		t.Helper()
		fams := []*dto.MetricFamily{gauge("a_gauge", v), gauge("b_gauge", -v)}
		if extra {
			fams = append(fams, gauge("c_gauge", v))
			if int(v)%2 == 1 {
				fams = append([]*dto.MetricFamily{gauge("a0_gauge", v)}, fams...)
			}
		}
		if _, err := s.Push(store.PushRequest{Key: key(i), Families: fams, Replace: true}); err != nil {
			t.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 6 {
		for _, i := range rng.Perm(groups) {
			if rng.IntN(5) == 0 {
				s.Delete(key(i))
				delete(final, i)
				continue
			}
			v := float64(round*100 + i)
			push(s, i, v, i%3 == round%3)
			final[i] = v
		}
	}
	want := store.New(store.Options{})
	for i, v := range final {
		push(want, i, v, i%3 == 5%3)
	}
	if got, w := samples(t, s), samples(t, want); got != w {
		t.Fatalf("exposition after shuffled pushes and deletes:\n%s\nwant:\n%s", got, w)
	}
}

// TestEncodedPushesShareOrCopyTheirStrings: a part's name and HELP point into the body until the
// store keeps them, as its family's strings when equal, else as copies. Every way a family's
// strings are taken (a new family, a second group with the same HELP or another, the only group
// changing the family's type and HELP, refusals of a known and an unknown group) must leave
// nothing the store serves pointing into a body that is then overwritten.
func TestEncodedPushesShareOrCopyTheirStrings(t *testing.T) {
	s := store.New(store.Options{Limits: store.Limits{MaxSeriesPerGroup: 3}})
	withHelp := func(mf *dto.MetricFamily, help string) *dto.MetricFamily { mf.Help = proto.String(help); return mf }
	asCounter := func(mf *dto.MetricFamily) *dto.MetricFamily {
		mf.Type = dto.MetricType_COUNTER.Enum()
		mf.Metric[0].Counter, mf.Metric[0].Gauge = &dto.Counter{Value: mf.Metric[0].Gauge.Value}, nil
		return mf
	}
	var bodies [][]byte
	pushEncoded := func(k store.Key, replace bool, fams ...*dto.MetricFamily) error {
		var b bytes.Buffer
		enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeProtoDelim))
		for _, mf := range fams {
			if err := enc.Encode(mf); err != nil {
				t.Fatal(err)
			}
		}
		bodies = append(bodies, b.Bytes())
		_, err := s.Push(store.PushRequest{Key: k, Encoded: b.Bytes(), Replace: replace, Client: "192.0.2.1:1"})
		return err
	}
	a, b, c := store.MustKey("job", "a"), store.MustKey("job", "b"), store.MustKey("job", "c")
	for _, step := range []struct {
		k       store.Key
		replace bool
		fams    []*dto.MetricFamily
		ok      bool
	}{
		{a, true, []*dto.MetricFamily{withHelp(gauge("shared", 1, "l", "a1"), "help one"), gauge("mine_a", 1)}, true},
		{b, true, []*dto.MetricFamily{withHelp(gauge("shared", 2, "l", "b1"), "help one")}, true},  // the family's strings
		{c, true, []*dto.MetricFamily{withHelp(gauge("shared", 3, "l", "c1"), "help two")}, true},  // its own HELP, copied
		{a, false, []*dto.MetricFamily{withHelp(asCounter(gauge("mine_a", 4)), "new help")}, true}, // the family re-created
		{a, false, []*dto.MetricFamily{withHelp(gauge("shared", 5, "l", "a2"), "help one")}, true}, // replaced in place
		{a, false, []*dto.MetricFamily{asCounter(gauge("shared", 6))}, false},                      // type conflict
		{b, false, []*dto.MetricFamily{gauge("too_many", 1, "x", "1"), gauge("too_many_2", 1), gauge("too_many_3", 1)}, false},
		{store.MustKey("job", "unknown"), true, []*dto.MetricFamily{gauge("u1", 1), gauge("u2", 1), gauge("u3", 1), gauge("u4", 1)}, false},
	} {
		if err := pushEncoded(step.k, step.replace, step.fams...); (err == nil) != step.ok {
			t.Fatalf("push to %s: %v, want success %v", step.k, err, step.ok)
		}
	}
	state := func() string {
		var out strings.Builder
		out.WriteString(exposed(t, s))
		for _, r := range s.Usage().Refusals {
			fmt.Fprintf(&out, "%s %q\n", r.Group, r.Error)
		}
		if err := s.Snapshot(func(gs store.GroupSnapshot) error {
			fmt.Fprintf(&out, "%v %q %x\n", gs.Labels, gs.LastError, gs.Families)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	before := state()
	for _, want := range []string{"# HELP shared help one\n", `shared{instance="",job="c",l="c1"} 3`, "# HELP mine_a new help\n# TYPE mine_a counter\n", `shared{instance="",job="a",l="a2"} 5`} {
		if !strings.Contains(before, want) {
			t.Fatalf("state lacks %q:\n%s", want, before)
		}
	}
	for _, body := range bodies {
		for i := range body {
			body[i] = 'Z'
		}
	}
	if after := state(); after != before {
		t.Fatalf("overwriting the pushed bytes changed the store:\n%s\n---\n%s", before, after)
	}
}
