package store

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// hashSeed is fixed for the process so that series hashes of different pushes compare.
var hashSeed = maphash.MakeSeed()

// prepared is a validated push, rendered and ready to be applied. Preparing costs in proportion
// to the push and happens outside the store's lock.
type prepared struct {
	key      Key
	families []*part // sorted by name
	series   int
	bytes    int64 // what the parts take of the byte budget
	est      int64 // rendered bytes estimated so far, checked against room while rendering
	room     int64 // the budget left for the push when it started: free bytes plus its group's
}

// has reports whether the push carries the family.
func (p *prepared) has(name string) bool {
	_, ok := slices.BinarySearchFunc(p.families, name, func(pt *part, name string) int { return strings.Compare(pt.name, name) })
	return ok
}

// hashes counts the push's Metric messages.
func (p *prepared) hashes() int {
	n := 0
	for _, pt := range p.families {
		n += len(pt.hashes)
	}
	return n
}

// part is one group's share of a metric family, pre-rendered for both fast exposition formats.
type part struct {
	name   string
	typ    dto.MetricType
	help   string
	text   []byte   // sample lines in the text format, group labels included
	proto  []byte   // the family's Metric messages, each as protobuf field 4 (length-delimited)
	hashes []uint64 // one per Metric, over the name and the full label set
	series int
}

// partOverhead estimates a part's bookkeeping besides its bytes: the struct, its entries in the
// group's map and the family's list.
const partOverhead = 192

// size is what the part takes of the byte budget.
func (pt *part) size() int64 {
	return int64(len(pt.text) + len(pt.proto) + 8*len(pt.hashes) + len(pt.help) + partOverhead)
}

// prepare validates families pushed to the group key and renders them. It refuses samples with
// timestamps, invalid names or UTF-8, labels that contradict the grouping key, duplicate series,
// buckets or quantiles, invalid native histograms, and whatever passes the store's limits. The
// families are not modified.
func (s *MemoryStore) prepare(key Key, families []*dto.MetricFamily) (*prepared, error) {
	if err := s.checkKey(key); err != nil {
		return nil, err
	}
	p := &prepared{key: key}
	if max := s.opts.Limits.MaxBytes; max > 0 {
		p.room = max - s.bytes.Load() + s.groupBytes(key)
	}
	sc := scratchPool.Get().(*scratch)
	defer sc.release()
	sc.setKey(key)
	seen := make(map[string]bool, len(families))
	for _, mf := range families {
		if len(mf.GetMetric()) == 0 {
			continue // HELP or TYPE without samples: nothing to store
		}
		name := mf.GetName()
		if seen[name] {
			return nil, invalid("metric family %s appears twice in the push", q(name))
		}
		seen[name] = true
		pt, err := sc.preparePart(s, p, mf)
		if err != nil {
			return nil, err
		}
		p.series += pt.series
		p.families = append(p.families, pt)
		p.bytes += pt.size()
	}
	sort.Slice(p.families, func(i, j int) bool { return p.families[i].name < p.families[j].name })
	p.pack()
	return p, nil
}

// checkKey applies the label limits to the grouping labels.
func (s *MemoryStore) checkKey(key Key) error {
	lim := &s.opts.Limits
	if max := lim.LabelLimit; max > 0 && len(key.labels) > max {
		return s.limitError(KindInvalid, LimitLabels, "grouping key has %d labels, more than the limit of %d", len(key.labels), max)
	}
	for _, l := range key.labels {
		if err := s.checkLabelLengths(l.Name, l.Value); err != nil {
			return err
		}
	}
	return nil
}

func (s *MemoryStore) checkLabelLengths(name, value string) error {
	lim := &s.opts.Limits
	if max := lim.LabelNameLengthLimit; max > 0 && len(name) > max {
		return s.limitError(KindInvalid, LimitLabelNameLength, "label name %s is %d bytes long, more than the limit of %d", q(name), len(name), max)
	}
	if max := lim.LabelValueLengthLimit; max > 0 && len(value) > max {
		return s.limitError(KindInvalid, LimitLabelValueLength, "value of label %s is %d bytes long, more than the limit of %d", q(name), len(value), max)
	}
	return nil
}

// pack moves the rendered bytes of every part into one allocation: a group's samples are one
// pointer-free block for the garbage collector instead of two small objects per family.
func (p *prepared) pack() {
	n := 0
	for _, pt := range p.families {
		n += len(pt.text) + len(pt.proto)
	}
	block := make([]byte, 0, n)
	for _, pt := range p.families {
		for _, b := range []*[]byte{&pt.text, &pt.proto} {
			start := len(block)
			block = append(block, *b...)
			*b = block[start:len(block):len(block)]
		}
	}
}

// scratch holds what rendering a push needs only while it runs, reused across pushes so that
// a push leaves little garbage besides its rendered bytes.
type scratch struct {
	keyPairs []*dto.LabelPair // the grouping labels, plus instance="" when the key has none
	noInst   bool             // the key has no instance label
	labels   []*dto.LabelPair // merged labels of the family's metrics, sub-sliced per metric
	metrics  []*dto.Metric
	out      dto.MetricFamily
	seen     map[uint64]struct{}
	text     bytes.Buffer
	proto    []byte
	msg      []byte
}

var scratchPool = sync.Pool{New: func() any { return &scratch{seen: map[uint64]struct{}{}} }}

func (sc *scratch) release() {
	clear(sc.keyPairs)
	sc.keyPairs = sc.keyPairs[:0]
	clear(sc.labels[:cap(sc.labels)])
	sc.labels = sc.labels[:0]
	for _, m := range sc.metrics {
		*m = dto.Metric{}
	}
	sc.out = dto.MetricFamily{}
	clear(sc.seen)
	// Keep buffers of ordinary size only: one huge push must not stay in memory.
	if sc.text.Cap() > 4<<20 {
		sc.text = bytes.Buffer{}
	}
	if cap(sc.proto) > 4<<20 {
		sc.proto = nil
	}
	scratchPool.Put(sc)
}

func (sc *scratch) setKey(key Key) {
	for _, l := range key.labels {
		sc.keyPairs = append(sc.keyPairs, &dto.LabelPair{Name: proto.String(l.Name), Value: proto.String(l.Value)})
	}
	_, hasInst := key.Get(model.InstanceLabel)
	sc.noInst = !hasInst
}

func (sc *scratch) preparePart(s *MemoryStore, p *prepared, mf *dto.MetricFamily) (*part, error) {
	lim := &s.opts.Limits
	key := p.key
	name := mf.GetName()
	if max := lim.LabelValueLengthLimit; max > 0 && len(name) > max {
		return nil, s.limitError(KindInvalid, LimitLabelValueLength, "metric name %s is %d bytes long, more than the limit of %d", q(name), len(name), max)
	}
	if !model.LegacyValidation.IsValidMetricName(name) {
		return nil, invalid("metric name %s is invalid (want [a-zA-Z_:][a-zA-Z0-9_:]*)", q(name))
	}
	if isReservedName(name) {
		return nil, invalid("metric name %s is reserved for the relay's own metrics", q(name))
	}
	if max := lim.HelpLengthLimit; max > 0 && len(mf.GetHelp()) > max {
		return nil, s.limitError(KindInvalid, LimitHelpLength, "metric family %s: HELP text is %d bytes long, more than the limit of %d", q(name), len(mf.GetHelp()), max)
	}
	if !utf8.ValidString(mf.GetHelp()) {
		return nil, invalid("metric family %s: HELP text is not valid UTF-8", q(name))
	}
	typ := mf.GetType()
	switch typ {
	case dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_SUMMARY, dto.MetricType_UNTYPED, dto.MetricType_HISTOGRAM:
	default:
		return nil, invalid("metric family %s: type %s is not supported", q(name), typ)
	}
	pt := &part{name: name, typ: typ, help: mf.GetHelp(), hashes: make([]uint64, 0, len(mf.Metric))}
	// Every metric's merged labels live in one slice, sized once for the family.
	need := 0
	for _, m := range mf.Metric {
		need += len(m.GetLabel()) + len(sc.keyPairs) + 1
	}
	if cap(sc.labels) < need {
		sc.labels = make([]*dto.LabelPair, 0, need)
	}
	sc.labels = sc.labels[:0]
	for len(sc.metrics) < len(mf.Metric) {
		sc.metrics = append(sc.metrics, &dto.Metric{})
	}
	clear(sc.seen)
	sc.proto = sc.proto[:0]
	for i, m := range mf.Metric {
		if m == nil {
			return nil, invalid("metric family %s: empty metric", q(name))
		}
		if m.TimestampMs != nil {
			return nil, invalid("metric family %s: samples with timestamps are not allowed (the relay exposes pushed values as current)", q(name))
		}
		if err := checkValue(name, typ, m); err != nil {
			return nil, err
		}
		start := len(sc.labels)
		var err error
		sc.labels, err = s.appendMergedLabels(sc.labels, key, sc.keyPairs, sc.noInst, name, typ, m.Label)
		if err != nil {
			return nil, err
		}
		labels := sc.labels[start:len(sc.labels):len(sc.labels)]
		// Every series repeats its name and labels in both renderings: refuse a push that
		// can't fit what is left of the budget before rendering it, so that a small body with
		// long labels, or a large one into a full store, never takes that memory even for a
		// moment. The estimate is below what rendering takes, so it never refuses a push that
		// would fit.
		n := seriesCount(typ, m)
		if lim.MaxBytes > 0 {
			size := len(name)
			for _, lp := range labels {
				size += len(lp.GetName()) + len(lp.GetValue())
			}
			p.est += 2 * int64(n) * int64(size)
			if p.est > p.room {
				return nil, s.limitError(KindTooLarge, LimitBytes, "push would take more than the %s left of the relay's budget of %s; delete groups you no longer need, push fewer series, or raise the budget",
					formatBytes(max(p.room, 0)), formatBytes(lim.MaxBytes))
			}
		}
		h := hashSeries(name, labels)
		if _, dup := sc.seen[h]; dup {
			return nil, invalid("metric family %s: duplicate series %s", q(name), Truncate(seriesString(name, labels), 2*maxQuoted))
		}
		sc.seen[h] = struct{}{}
		pt.hashes = append(pt.hashes, h)
		pt.series += n
		if max := lim.MaxSeriesPerGroup; max > 0 && p.series+pt.series > max {
			return nil, s.limitError(KindTooLarge, LimitSeries, "push carries more than %d series, the limit per group", max)
		}

		cm := sc.metrics[i]
		cm.Label, cm.Gauge, cm.Counter, cm.Summary, cm.Untyped, cm.Histogram = labels, m.Gauge, m.Counter, m.Summary, m.Untyped, m.Histogram
		sc.msg, err = marshalOpts.MarshalAppend(sc.msg[:0], cm)
		if err != nil {
			return nil, invalid("metric family %s: %s", q(name), Truncate(err.Error(), maxErrorText))
		}
		sc.proto = protowire.AppendTag(sc.proto, 4, protowire.BytesType)
		sc.proto = protowire.AppendBytes(sc.proto, sc.msg)
	}
	sc.out.Name, sc.out.Type, sc.out.Metric = mf.Name, mf.Type, sc.metrics[:len(mf.Metric)]
	sc.text.Reset()
	if _, err := expfmt.MetricFamilyToText(&sc.text, &sc.out); err != nil {
		return nil, invalid("metric family %s: %s", q(name), Truncate(err.Error(), maxErrorText))
	}
	// MetricFamilyToText wrote "# TYPE ..." first (no HELP: out.Help is nil); the store writes
	// one header per family for all groups, so keep only the sample lines.
	text := sc.text.Bytes()
	if i := bytes.IndexByte(text, '\n'); i >= 0 {
		text = text[i+1:]
	}
	// Stored bytes are exact copies, packed into one block by prepared.pack.
	pt.text = bytes.Clone(text)
	pt.proto = bytes.Clone(sc.proto)
	return pt, nil
}

// checkValue checks that the metric carries a value of the family's type, and that the value is
// one Prometheus can ingest: counters not negative, buckets and quantiles not repeated, native
// histograms as Prometheus validates them.
func checkValue(name string, typ dto.MetricType, m *dto.Metric) error {
	ok := false
	switch typ {
	case dto.MetricType_COUNTER:
		ok = m.Counter != nil
		if ok && (m.Counter.GetValue() < 0 || math.IsInf(m.Counter.GetValue(), -1)) {
			return invalid("metric family %s: counter value %v is negative", q(name), m.Counter.GetValue())
		}
	case dto.MetricType_GAUGE:
		ok = m.Gauge != nil
	case dto.MetricType_SUMMARY:
		ok = m.Summary != nil
		if ok {
			return checkSummary(name, m.Summary)
		}
	case dto.MetricType_UNTYPED:
		ok = m.Untyped != nil
	case dto.MetricType_HISTOGRAM:
		ok = m.Histogram != nil
		if ok {
			return checkHistogram(name, m.Histogram)
		}
	}
	if !ok {
		return invalid("metric family %s: a metric has no %s value", q(name), typ)
	}
	return nil
}

func checkSummary(name string, sm *dto.Summary) error {
	qs := sm.GetQuantile()
	for i, qt := range qs {
		v := qt.GetQuantile()
		if math.IsNaN(v) {
			return invalid("metric family %s: a quantile is NaN", q(name))
		}
		for _, prev := range qs[:i] {
			if prev.GetQuantile() == v {
				return invalid("metric family %s: quantile %v appears twice in one summary", q(name), v)
			}
		}
	}
	return nil
}

func checkHistogram(name string, h *dto.Histogram) error {
	bs := h.GetBucket()
	sorted := true
	for i, b := range bs {
		ub := b.GetUpperBound()
		if math.IsNaN(ub) {
			return invalid("metric family %s: a bucket's upper bound (le) is NaN", q(name))
		}
		if i > 0 && ub <= bs[i-1].GetUpperBound() {
			if ub == bs[i-1].GetUpperBound() {
				return invalid("metric family %s: bucket le=%v appears twice in one histogram", q(name), ub)
			}
			sorted = false
		}
	}
	if !sorted {
		// Out of order (a hand-written text push): look for a repeat the slow way.
		seen := make(map[float64]bool, len(bs))
		for _, b := range bs {
			if seen[b.GetUpperBound()] {
				return invalid("metric family %s: bucket le=%v appears twice in one histogram", q(name), b.GetUpperBound())
			}
			seen[b.GetUpperBound()] = true
		}
	}
	if isNative(h) {
		if err := checkNative(h); err != nil {
			return invalid("metric family %s: invalid native histogram: %v", q(name), err)
		}
	}
	return nil
}

// isNative reports whether the histogram carries a native (sparse) histogram, as Prometheus's
// protobuf parser decides it.
func isNative(h *dto.Histogram) bool {
	return len(h.GetPositiveSpan()) > 0 || len(h.GetNegativeSpan()) > 0 || h.GetZeroThreshold() > 0 ||
		h.GetZeroCount() > 0 || h.GetZeroCountFloat() > 0 || h.GetSchema() != 0
}

// Native histogram schemas Prometheus accepts: exponential ones, and custom buckets.
const (
	nativeSchemaMin     = -4
	nativeSchemaMax     = 8
	nativeSchemaCustom  = -53
	maxNativeBucketSpan = 1 << 20
)

// checkNative applies the rules of Prometheus's histogram validation, so that a pushed native
// histogram never makes Prometheus refuse the relay's scrape.
func checkNative(h *dto.Histogram) error {
	schema := h.GetSchema()
	custom := schema == nativeSchemaCustom
	switch {
	case custom:
		if len(h.GetNegativeSpan()) > 0 || len(h.GetNegativeDelta()) > 0 || len(h.GetNegativeCount()) > 0 {
			return fmt.Errorf("custom buckets (schema %d) have no negative buckets", schema)
		}
		if h.GetZeroThreshold() != 0 || h.GetZeroCount() != 0 || h.GetZeroCountFloat() != 0 {
			return fmt.Errorf("custom buckets (schema %d) have no zero bucket", schema)
		}
	case schema < nativeSchemaMin || schema > nativeSchemaMax:
		return fmt.Errorf("schema %d is out of range (%d to %d, or %d for custom buckets)", schema, nativeSchemaMin, nativeSchemaMax, nativeSchemaCustom)
	}
	if zt := h.GetZeroThreshold(); zt < 0 || math.IsNaN(zt) || math.IsInf(zt, 0) {
		return fmt.Errorf("zero threshold %v is not a finite non-negative number", zt)
	}
	float := h.GetSampleCountFloat() > 0 || h.GetZeroCountFloat() > 0 || len(h.GetPositiveCount()) > 0 || len(h.GetNegativeCount()) > 0
	var total float64
	for _, side := range []struct {
		name   string
		spans  []*dto.BucketSpan
		deltas []int64
		counts []float64
	}{
		{"positive", h.GetPositiveSpan(), h.GetPositiveDelta(), h.GetPositiveCount()},
		{"negative", h.GetNegativeSpan(), h.GetNegativeDelta(), h.GetNegativeCount()},
	} {
		if len(side.deltas) > 0 && len(side.counts) > 0 {
			return fmt.Errorf("%s buckets given both as deltas and as counts", side.name)
		}
		want := int64(0)
		for i, sp := range side.spans {
			if i > 0 && sp.GetOffset() < 0 {
				return fmt.Errorf("%s span %d has a negative offset", side.name, i+1)
			}
			want += int64(sp.GetLength())
		}
		have := len(side.deltas) + len(side.counts)
		if want != int64(have) || want > maxNativeBucketSpan {
			return fmt.Errorf("%s spans need %d buckets, have %d", side.name, want, have)
		}
		var c int64
		for i, d := range side.deltas {
			c += d
			if c < 0 {
				return fmt.Errorf("%s bucket %d has a negative count", side.name, i+1)
			}
			total += float64(c)
		}
		for i, f := range side.counts {
			if f < 0 || math.IsNaN(f) {
				return fmt.Errorf("%s bucket %d has a negative count", side.name, i+1)
			}
			total += f
		}
	}
	count := float64(h.GetSampleCount())
	total += float64(h.GetZeroCount())
	if float {
		count = h.GetSampleCountFloat()
		total += h.GetZeroCountFloat()
	}
	if math.IsNaN(h.GetSampleSum()) {
		if total > count {
			return fmt.Errorf("%v observations in buckets, but the count is %v", total, count)
		}
	} else if total != count {
		return fmt.Errorf("%v observations in buckets, but the count is %v", total, count)
	}
	return nil
}

// mergeLabels returns the metric's labels plus the grouping labels, sorted, with instance=""
// added when neither has an instance (so that Prometheus's honor_labels keeps it empty rather
// than the relay's own address, as with Pushgateway).
func mergeLabels(key Key, name string, typ dto.MetricType, body []*dto.LabelPair) ([]*dto.LabelPair, error) {
	sc := scratch{}
	sc.setKey(key)
	var s MemoryStore // no limits: the key was checked when it was pushed
	return s.appendMergedLabels(nil, key, sc.keyPairs, sc.noInst, name, typ, body)
}

// appendMergedLabels appends what mergeLabels returns to dst, applying the label limits.
// keyPairs are the key's labels as LabelPairs (shared, never modified); noInst tells that the key
// has no instance label.
func (s *MemoryStore) appendMergedLabels(dst []*dto.LabelPair, key Key, keyPairs []*dto.LabelPair, noInst bool, name string, typ dto.MetricType, body []*dto.LabelPair) ([]*dto.LabelPair, error) {
	start := len(dst)
	bodyInst := false
	for i, lp := range body {
		n, v := lp.GetName(), lp.GetValue()
		if err := checkLabelName(n); err != nil {
			return nil, invalid("metric family %s: %v", q(name), err)
		}
		if err := s.checkLabelLengths(n, v); err != nil {
			err.(*Error).Msg = fmt.Sprintf("metric family %s: %s", q(name), err.(*Error).Msg)
			return nil, err
		}
		for _, prev := range body[:i] {
			if prev.GetName() == n {
				return nil, invalid("metric family %s: label %s appears twice in one series", q(name), q(n))
			}
		}
		if n == model.InstanceLabel {
			bodyInst = true
		}
		if !utf8.ValidString(v) {
			return nil, invalid("metric family %s: value of label %s is not valid UTF-8", q(name), q(n))
		}
		if (typ == dto.MetricType_HISTOGRAM && n == model.BucketLabel) || (typ == dto.MetricType_SUMMARY && n == model.QuantileLabel) {
			return nil, invalid("metric family %s: label %s is reserved for %s buckets", q(name), q(n), typ)
		}
		if kv, ok := key.Get(n); ok {
			if kv != v {
				return nil, invalid("metric family %s: label %s=%s contradicts the grouping key %s", q(name), n, q(v), key.Excerpt())
			}
			continue // same value: the grouping label below carries it
		}
		dst = append(dst, lp)
	}
	dst = append(dst, keyPairs...)
	if noInst && !bodyInst {
		dst = append(dst, emptyInstance)
	}
	// The metric name counts as a label, as in Prometheus's label_limit; so do the le and
	// quantile labels of buckets.
	n := len(dst) - start + 1
	if typ == dto.MetricType_HISTOGRAM || typ == dto.MetricType_SUMMARY {
		n++
	}
	if max := s.opts.Limits.LabelLimit; max > 0 && n > max {
		return nil, s.limitError(KindInvalid, LimitLabels, "metric family %s: a series has %d labels (its name and grouping labels included), more than the limit of %d", q(name), n, max)
	}
	slices.SortFunc(dst[start:], func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
	return dst, nil
}

// emptyInstance is the instance="" label of series pushed without an instance; shared, never
// modified.
var emptyInstance = &dto.LabelPair{Name: proto.String(model.InstanceLabel), Value: proto.String("")}

func hashSeries(name string, labels []*dto.LabelPair) uint64 {
	var h maphash.Hash
	h.SetSeed(hashSeed)
	h.WriteString(name)
	for _, lp := range labels {
		h.WriteByte(0xff)
		h.WriteString(lp.GetName())
		h.WriteByte(0xfe)
		h.WriteString(lp.GetValue())
	}
	return h.Sum64()
}

func seriesString(name string, labels []*dto.LabelPair) string {
	ls := make(model.LabelSet, len(labels))
	for _, lp := range labels {
		ls[model.LabelName(lp.GetName())] = model.LabelValue(lp.GetValue())
	}
	return name + ls.String()
}

// seriesCount is how many series Prometheus stores for the metric.
func seriesCount(typ dto.MetricType, m *dto.Metric) int {
	switch typ {
	case dto.MetricType_SUMMARY:
		return len(m.Summary.GetQuantile()) + 2
	case dto.MetricType_HISTOGRAM:
		h := m.Histogram
		if len(h.GetBucket()) == 0 && (len(h.GetPositiveSpan()) > 0 || len(h.GetNegativeSpan()) > 0 || h.GetZeroThreshold() > 0 || h.GetSchema() != 0) {
			return 1 // native histogram only
		}
		n := len(h.GetBucket()) + 2
		if len(h.GetBucket()) == 0 || !math.IsInf(h.GetBucket()[len(h.GetBucket())-1].GetUpperBound(), 1) {
			n++ // the +Inf bucket the exposition adds
		}
		return n
	}
	return 1
}
