package store

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protowire"
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

// hashes counts the push's Metric messages.
func (p *prepared) hashes() int {
	n := 0
	for _, pt := range p.families {
		n += pt.hashes()
	}
	return n
}

// part is one group's share of a metric family, pre-rendered for both fast exposition formats.
// A store holds one per family and group (169 per group of a controller-runtime operator), so its
// fields are packed: the series hashes follow the text in the group's block, reached through the
// text slice's capacity (96 bytes a part instead of 128 with a slice for them).
type part struct {
	name   string
	help   string
	txt    []byte // the text, then (up to its capacity) the hashes, 8 bytes each, little-endian
	pb     []byte // the protobuf
	series int
	typ    dto.MetricType
	slot   int32 // the part's index in its family's parts when stored (a hint: it moves)
}

// text is the part's sample lines in the text format, group labels included.
func (pt *part) text() []byte { return pt.txt[:len(pt.txt):len(pt.txt)] }

// proto is the family's Metric messages, each as protobuf field 4 (length-delimited).
func (pt *part) proto() []byte { return pt.pb }

// hashes is the number of series hashes: one per Metric, over the name and the full label set.
func (pt *part) hashes() int { return (cap(pt.txt) - len(pt.txt)) / 8 }

// hash returns hash i.
func (pt *part) hash(i int) uint64 {
	return binary.LittleEndian.Uint64(pt.txt[len(pt.txt)+8*i : cap(pt.txt)])
}

// own makes the part's strings the store's before it is stored: its family's where they are
// equal (one copy for every group), else copies. Until then they may point into the push's body,
// which the caller reuses once the push returns.
func (pt *part) own(f *family) {
	if f != nil && pt.name == f.name {
		pt.name = f.name
	} else {
		pt.name = strings.Clone(pt.name)
	}
	if f != nil && pt.help == f.help {
		pt.help = f.help
	} else {
		pt.help = strings.Clone(pt.help)
	}
}

// partOverhead estimates a part's bookkeeping besides its bytes: the struct, its entries in the
// group's map and the family's list.
const partOverhead = 192

// size is what the part takes of the byte budget.
func (pt *part) size() int64 {
	return int64(cap(pt.txt) + len(pt.pb) + len(pt.help) + partOverhead)
}

// maxEncodedFamily bounds one MetricFamily message of an encoded push, as protodelim's default
// does for the decoders of client_golang and Pushgateway.
const maxEncodedFamily = 4 << 20

// prepare validates a push to the group key and renders it: families (decoded objects) or
// encoded (length-delimited MetricFamily messages, a protobuf push body), one of the two. It
// refuses samples with timestamps, invalid names or UTF-8, labels that contradict the grouping
// key, duplicate series, buckets or quantiles, invalid native histograms, and whatever passes the
// store's limits. The families are not modified, nor kept: what the store keeps of them it
// copies.
func (s *MemoryStore) prepare(key Key, families []*dto.MetricFamily, encoded []byte) (*prepared, error) {
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
	add := func(in *familyIn) error {
		if in.n == 0 {
			return nil // HELP or TYPE without samples: nothing to store
		}
		if _, dup := sc.names[in.name]; dup {
			return invalid("metric family %s appears twice in the push", q(in.name))
		}
		sc.names[in.name] = struct{}{}
		pt, err := sc.preparePart(s, p, in)
		if err != nil {
			return err
		}
		p.series += pt.series
		p.families = append(p.families, pt)
		return nil
	}
	// Every metric is a series at least: refuse a push of more metrics than the group may hold
	// series before holding them.
	maxSeries := math.MaxInt
	if max := s.opts.Limits.MaxSeriesPerGroup; max > 0 {
		maxSeries = max
	}
	n := 0
	for _, mf := range families {
		n += len(mf.GetMetric())
	}
	if n > maxSeries {
		return nil, s.tooManySeries()
	}
	for _, mf := range families {
		in := familyIn{name: mf.GetName(), help: mf.GetHelp(), typ: mf.GetType(), n: len(mf.GetMetric()), dto: mf}
		if err := add(&in); err != nil {
			return nil, err
		}
	}
	// Encoded families are read in two passes: their headers, then, in name order as a decoded
	// push is (ingest sorts it), their metrics; so both kinds of push meet the same refusal first.
	ins := sc.families[:0]
	for i := 1; len(encoded) > 0; i++ {
		size, n := protowire.ConsumeVarint(encoded)
		if n < 0 || size > uint64(len(encoded)-n) || size > maxEncodedFamily {
			return nil, invalid("protobuf body: message %d: %s", i, errWire)
		}
		msg := encoded[n : n+int(size)]
		encoded = encoded[n+int(size):]
		first := len(sc.encoded)
		h, metrics, err := decodeFamily(msg, sc.encoded, maxSeries)
		sc.encoded = metrics
		if err == errBounds {
			return nil, s.tooManySeries()
		}
		if err != nil {
			return nil, invalid("protobuf body: message %d: %s", i, err)
		}
		if len(metrics) == first {
			// Nothing to store (add skips it too): not kept, so that a body of a million empty
			// messages costs no memory for them.
			continue
		}
		ins = append(ins, familyIn{name: h.name, help: h.help, typ: dto.MetricType(h.typ), n: len(metrics) - first, first: first, message: i})
	}
	sc.families = ins
	order := sc.order[:0]
	for i := range ins {
		order = append(order, int32(i))
	}
	sc.order = order
	// client_golang sends its families sorted: sort only what is not.
	byName := func(a, b int32) int { return strings.Compare(ins[a].name, ins[b].name) }
	if !slices.IsSortedFunc(order, byName) {
		slices.SortStableFunc(order, byName)
	}
	for _, i := range order {
		in := &ins[i]
		in.encoded = sc.encoded[in.first : in.first+in.n]
		if err := add(in); err != nil {
			return nil, err
		}
	}
	// Families come sorted (decoded ones by ingest, encoded ones by order): sort only if not.
	byPartName := func(a, b *part) int { return strings.Compare(a.name, b.name) }
	if !slices.IsSortedFunc(p.families, byPartName) {
		slices.SortFunc(p.families, byPartName)
	}
	sc.pack()
	// Sized once packed: a part's text, with its hashes after it, is only then in its block.
	for _, pt := range p.families {
		p.bytes += pt.size()
	}
	return p, nil
}

// familyIn is one family of a push, decoded (dto) or encoded: its header, and its n metrics.
type familyIn struct {
	name, help string
	typ        dto.MetricType
	n          int
	dto        *dto.MetricFamily
	encoded    [][]byte // the Metric messages
	first      int      // where they start in scratch.encoded
	message    int      // the family's position in an encoded push, for messages
}

// metric fills m with the family's metric i, and counts its repeated fields. An encoded metric
// is decoded within lim: past it, m holds only part of it (whole is false), and the counts are
// of the whole message, for checkCounts to refuse.
func (in *familyIn) metric(i int, m *metric, lim bounds) (c counts, whole bool, err error) {
	if in.dto != nil {
		dm := in.dto.Metric[i]
		if dm == nil {
			return c, false, invalid("metric family %s: empty metric", q(in.name))
		}
		m.fromDTO(dm)
		return m.counts(), true, nil
	}
	err = m.decode(in.encoded[i], lim)
	if err == errBounds {
		c, err = countMetric(in.encoded[i])
	} else if err == nil {
		c, whole = m.counts(), true
	}
	if err != nil {
		return c, false, invalid("protobuf body: message %d: %s", in.message, err)
	}
	return c, whole, nil
}

// bounds are what decoding may append to a metric of a push that carries series so far.
func (s *MemoryStore) bounds(series int) bounds {
	lim := &s.opts.Limits
	b := noBounds
	if lim.LabelLimit > 0 {
		b.labels = lim.LabelLimit - 1
	}
	if most := lim.MaxSeriesPerGroup; most > 0 {
		b.classic = max(most-series-2, 0)
		b.elements = most
	}
	return b
}

// checkCounts refuses a metric whose repeated fields hold more than lim allows: a metric with
// more labels than the label limit, more buckets or quantiles than the series left of the
// group's limit (each is a series), or more native-histogram spans or buckets (per side),
// native exemplars or exemplar labels than the series limit, which bounds them too: a native
// histogram is one series, but it holds its buckets in one sample.
func (s *MemoryStore) checkCounts(name string, c *counts, lim bounds) error {
	if c.labels > lim.labels {
		return s.limitError(KindInvalid, LimitLabels, "metric family %s: a series has %d labels or more (its name and grouping labels included), more than the limit of %d",
			q(name), c.labels+1, s.opts.Limits.LabelLimit)
	}
	series := s.opts.Limits.MaxSeriesPerGroup
	if c.buckets > lim.classic {
		return s.limitError(KindTooLarge, LimitSeries, "metric family %s: a histogram of %d buckets passes the limit of %d series per group", q(name), c.buckets, series)
	}
	if c.quantiles > lim.classic {
		return s.limitError(KindTooLarge, LimitSeries, "metric family %s: a summary of %d quantiles passes the limit of %d series per group", q(name), c.quantiles, series)
	}
	elements := func(n int, what string) error {
		return s.limitError(KindTooLarge, LimitSeries, "metric family %s: a metric has %d %s; one may hold at most %d, the limit of series per group", q(name), n, what, series)
	}
	for i, side := range [2]string{"negative", "positive"} {
		if c.spans[i] > lim.elements {
			return elements(c.spans[i], side+" native histogram spans")
		}
		if n := c.nativeBuckets(i); n > lim.elements {
			return elements(n, side+" native histogram buckets")
		}
	}
	if c.nativeExemplars > lim.elements {
		return elements(c.nativeExemplars, "native histogram exemplars")
	}
	if n := c.exemplarLabels + c.counterExemplarLabels; n > lim.elements {
		return elements(n, "exemplar labels")
	}
	return nil
}

func (s *MemoryStore) tooManySeries() error {
	return s.limitError(KindTooLarge, LimitSeries, "push carries more than %d series, the limit per group", s.opts.Limits.MaxSeriesPerGroup)
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

// partBytes locates a part's rendering in the scratch buffers until pack moves it.
type partBytes struct {
	pt                             *part
	text, textEnd, proto, protoEnd int
	hashes, hashesEnd              int
}

// scratch holds what rendering a push needs only while it runs, reused across pushes so that
// a push leaves little garbage besides what it stores.
type scratch struct {
	keyLabels []Label // the grouping labels, plus instance="" when the key has none
	noInst    bool    // the key has no instance label
	labels    []Label // merged labels of one metric
	m         metric
	names     map[string]struct{} // the families of the push so far
	seen      map[uint64]struct{} // the hashes of a family's series, once they are many
	families  []familyIn          // the families of an encoded push
	order     []int32             // their indexes in name order
	encoded   [][]byte            // their Metric messages
	lbl       []byte              // one metric's labels rendered for the text format
	render    textRenderer
	// Every part's rendering, moved into one block by pack.
	text, proto []byte
	hashes      []uint64
	parts       []partBytes
}

var scratchPool = sync.Pool{New: func() any { return &scratch{names: map[string]struct{}{}, seen: map[uint64]struct{}{}} }}

func (sc *scratch) release() {
	sc.keyLabels = sc.keyLabels[:0]
	clear(sc.labels[:cap(sc.labels)])
	sc.labels = sc.labels[:0]
	sc.m.release()
	clear(sc.names)
	clear(sc.encoded[:cap(sc.encoded)])
	sc.encoded = sc.encoded[:0]
	clear(sc.families[:cap(sc.families)])
	sc.families = sc.families[:0]
	clear(sc.parts)
	sc.parts = sc.parts[:0]
	sc.text, sc.proto, sc.hashes = sc.text[:0], sc.proto[:0], sc.hashes[:0]
	// Keep buffers of ordinary size only: one huge push must not stay in memory.
	if cap(sc.text) > 4<<20 || cap(sc.proto) > 4<<20 || cap(sc.hashes) > 1<<20 {
		sc.text, sc.proto, sc.hashes = nil, nil, nil
	}
	if cap(sc.encoded) > 1<<16 || cap(sc.families) > 1<<12 || cap(sc.lbl) > 1<<16 {
		sc.encoded, sc.families, sc.lbl = nil, nil, nil
	}
	if sc.m.large() {
		sc.m = metric{}
	}
	scratchPool.Put(sc)
}

func (sc *scratch) setKey(key Key) {
	sc.keyLabels = append(sc.keyLabels[:0], key.labels...)
	_, hasInst := key.Get(model.InstanceLabel)
	sc.noInst = !hasInst
}

// duplicate reports whether h is one of the family's hashes so far, which it adds to sc.seen
// once they are many.
func (sc *scratch) duplicate(family []uint64, h uint64) bool {
	const scan = 32
	if len(family) < scan {
		return slices.Contains(family, h)
	}
	if len(family) == scan {
		for _, f := range family {
			sc.seen[f] = struct{}{}
		}
	}
	if _, dup := sc.seen[h]; dup {
		return true
	}
	sc.seen[h] = struct{}{}
	return false
}

// pack moves the rendered bytes and the hashes of every part into one allocation: the texts,
// each followed by its part's hashes, then the protobuf of every part. A group's samples are one
// pointer-free block for the garbage collector instead of three small objects per family, and
// each format's bytes stay together: a scrape reads one family of every group, then the next,
// and a group's next family is then next to the one read before (interleaving the formats made
// the store's protobuf scrape of 500 groups twice as slow).
func (sc *scratch) pack() {
	block := make([]byte, 0, len(sc.text)+len(sc.proto)+8*len(sc.hashes))
	for _, pb := range sc.parts {
		start := len(block)
		block = append(block, sc.text[pb.text:pb.textEnd]...)
		end := len(block)
		for _, h := range sc.hashes[pb.hashes:pb.hashesEnd] {
			block = binary.LittleEndian.AppendUint64(block, h)
		}
		pb.pt.txt = block[start:end:len(block)]
	}
	for _, pb := range sc.parts {
		start := len(block)
		block = append(block, sc.proto[pb.proto:pb.protoEnd]...)
		pb.pt.pb = block[start:len(block):len(block)]
	}
}

func (sc *scratch) preparePart(s *MemoryStore, p *prepared, in *familyIn) (*part, error) {
	lim := &s.opts.Limits
	name, typ := in.name, in.typ
	if max := lim.LabelValueLengthLimit; max > 0 && len(name) > max {
		return nil, s.limitError(KindInvalid, LimitLabelValueLength, "metric name %s is %d bytes long, more than the limit of %d", q(name), len(name), max)
	}
	if !model.LegacyValidation.IsValidMetricName(name) {
		return nil, invalid("metric name %s is invalid (want [a-zA-Z_:][a-zA-Z0-9_:]*)", q(name))
	}
	if isReservedName(name) {
		return nil, invalid("metric name %s is reserved for the relay's own metrics", q(name))
	}
	if max := lim.HelpLengthLimit; max > 0 && len(in.help) > max {
		return nil, s.limitError(KindInvalid, LimitHelpLength, "metric family %s: HELP text is %d bytes long, more than the limit of %d", q(name), len(in.help), max)
	}
	if !utf8.ValidString(in.help) {
		return nil, invalid("metric family %s: HELP text is not valid UTF-8", q(name))
	}
	switch typ {
	case dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_SUMMARY, dto.MetricType_UNTYPED, dto.MetricType_HISTOGRAM:
	default:
		return nil, invalid("metric family %s: type %s is not supported", q(name), typ)
	}
	// The strings may point into the push's body until the part is stored (part.own).
	pt := &part{name: name, typ: typ, help: in.help}
	pb := partBytes{pt: pt, text: len(sc.text), proto: len(sc.proto), hashes: len(sc.hashes)}
	if len(sc.seen) > 4096 {
		sc.seen = map[uint64]struct{}{} // clearing costs what the map grew to
	} else {
		clear(sc.seen)
	}
	m := &sc.m
	for i := range in.n {
		bounds := s.bounds(p.series + pt.series)
		c, whole, err := in.metric(i, m, bounds)
		if err != nil {
			return nil, err
		}
		if err := s.checkCounts(name, &c, bounds); err != nil {
			return nil, err
		}
		if !whole {
			// Not reached: decoding stops only past a bound, which checkCounts refuses.
			return nil, invalid("metric family %s: a metric passes the store's limits", q(name))
		}
		if m.hasTimestamp {
			return nil, invalid("metric family %s: samples with timestamps are not allowed (the relay exposes pushed values as current)", q(name))
		}
		if err := checkValue(name, typ, m); err != nil {
			return nil, err
		}
		sc.labels, err = s.appendMergedLabels(sc.labels[:0], p.key, sc.keyLabels, sc.noInst, name, typ, m.labels)
		if err != nil {
			return nil, err
		}
		if err := s.checkExemplars(name, m); err != nil {
			return nil, err
		}
		labels := sc.labels
		// Every series repeats its name and labels in both renderings: refuse a push that
		// can't fit what is left of the budget before rendering it, so that a small body with
		// long labels, or a large one into a full store, never takes that memory even for a
		// moment. The estimate is below what rendering takes, so it never refuses a push that
		// would fit.
		n := seriesCount(typ, m)
		if lim.MaxBytes > 0 {
			size := len(name)
			for _, l := range labels {
				size += len(l.Name) + len(l.Value)
			}
			p.est += 2 * int64(n) * int64(size)
			if p.est > p.room {
				return nil, s.limitError(KindTooLarge, LimitBytes, "push would take more than the %s left of the relay's budget of %s; delete groups you no longer need, push fewer series, or raise the budget",
					formatBytes(max(p.room, 0)), formatBytes(lim.MaxBytes))
			}
		}
		sc.lbl = appendLabelsText(sc.lbl[:0], labels)
		h := hashSeries(name, sc.lbl)
		if sc.duplicate(sc.hashes[pb.hashes:], h) {
			return nil, invalid("metric family %s: duplicate series %s", q(name), Truncate(seriesString(name, labels), 2*maxQuoted))
		}
		sc.hashes = append(sc.hashes, h)
		pt.series += n
		if max := lim.MaxSeriesPerGroup; max > 0 && p.series+pt.series > max {
			return nil, s.tooManySeries()
		}

		sc.text = sc.render.appendMetric(sc.text, name, typ, sc.lbl, m)
		sc.proto = appendMetricProto(sc.proto, labels, m)
	}
	pb.textEnd, pb.protoEnd, pb.hashesEnd = len(sc.text), len(sc.proto), len(sc.hashes)
	sc.parts = append(sc.parts, pb)
	return pt, nil
}

// checkValue checks that the metric carries a value of the family's type, and that the value is
// one Prometheus can ingest: counters not negative, buckets and quantiles not repeated, native
// histograms as Prometheus validates them.
func checkValue(name string, typ dto.MetricType, m *metric) error {
	ok := false
	switch typ {
	case dto.MetricType_COUNTER:
		ok = m.hasCounter
		if ok && (m.counter.v < 0 || math.IsInf(m.counter.v, -1)) {
			return invalid("metric family %s: counter value %v is negative", q(name), m.counter.v)
		}
	case dto.MetricType_GAUGE:
		ok = m.hasGauge
	case dto.MetricType_SUMMARY:
		ok = m.hasSummary
		if ok {
			return checkSummary(name, &m.summary)
		}
	case dto.MetricType_UNTYPED:
		ok = m.hasUntyped
	case dto.MetricType_HISTOGRAM:
		ok = m.hasHistogram
		if ok {
			return checkHistogram(name, &m.histogram)
		}
	}
	if !ok {
		return invalid("metric family %s: a metric has no %s value", q(name), typ)
	}
	return nil
}

func checkSummary(name string, sm *summary) error {
	qs := sm.quantiles
	for i := range qs {
		v := qs[i].q
		if math.IsNaN(v) {
			return invalid("metric family %s: a quantile is NaN", q(name))
		}
		for j := range i {
			if qs[j].q == v {
				return invalid("metric family %s: quantile %v appears twice in one summary", q(name), v)
			}
		}
	}
	return nil
}

func checkHistogram(name string, h *histogram) error {
	bs := h.buckets
	sorted := true
	for i := range bs {
		ub := bs[i].upper
		if math.IsNaN(ub) {
			return invalid("metric family %s: a bucket's upper bound (le) is NaN", q(name))
		}
		if i > 0 && ub <= bs[i-1].upper {
			if ub == bs[i-1].upper {
				return invalid("metric family %s: bucket le=%v appears twice in one histogram", q(name), ub)
			}
			sorted = false
		}
	}
	if !sorted {
		// Out of order (a hand-written text push): look for a repeat the slow way.
		seen := make(map[float64]bool, len(bs))
		for i := range bs {
			if seen[bs[i].upper] {
				return invalid("metric family %s: bucket le=%v appears twice in one histogram", q(name), bs[i].upper)
			}
			seen[bs[i].upper] = true
		}
	}
	if h.isNative() {
		if err := checkNative(h); err != nil {
			return invalid("metric family %s: invalid native histogram: %v", q(name), err)
		}
	}
	return nil
}

// isNative reports whether the histogram carries a native (sparse) histogram, as Prometheus's
// protobuf parser decides it.
func (h *histogram) isNative() bool {
	return len(h.positiveSpans) > 0 || len(h.negativeSpans) > 0 || h.zeroThreshold > 0 ||
		h.zeroCount > 0 || h.zeroCountFloat > 0 || h.schema != 0
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
func checkNative(h *histogram) error {
	schema := h.schema
	custom := schema == nativeSchemaCustom
	switch {
	case custom:
		if len(h.negativeSpans) > 0 || len(h.negativeDeltas) > 0 || len(h.negativeCounts) > 0 {
			return fmt.Errorf("custom buckets (schema %d) have no negative buckets", schema)
		}
		if h.zeroThreshold != 0 || h.zeroCount != 0 || h.zeroCountFloat != 0 {
			return fmt.Errorf("custom buckets (schema %d) have no zero bucket", schema)
		}
	case schema < nativeSchemaMin || schema > nativeSchemaMax:
		return fmt.Errorf("schema %d is out of range (%d to %d, or %d for custom buckets)", schema, nativeSchemaMin, nativeSchemaMax, nativeSchemaCustom)
	}
	if zt := h.zeroThreshold; zt < 0 || math.IsNaN(zt) || math.IsInf(zt, 0) {
		return fmt.Errorf("zero threshold %v is not a finite non-negative number", zt)
	}
	float := h.countFloat > 0 || h.zeroCountFloat > 0 || len(h.positiveCounts) > 0 || len(h.negativeCounts) > 0
	var total float64
	for _, side := range []struct {
		name   string
		spans  []span
		deltas []int64
		counts []float64
	}{
		{"positive", h.positiveSpans, h.positiveDeltas, h.positiveCounts},
		{"negative", h.negativeSpans, h.negativeDeltas, h.negativeCounts},
	} {
		if len(side.deltas) > 0 && len(side.counts) > 0 {
			return fmt.Errorf("%s buckets given both as deltas and as counts", side.name)
		}
		want := int64(0)
		for i, sp := range side.spans {
			if i > 0 && sp.offset < 0 {
				return fmt.Errorf("%s span %d has a negative offset", side.name, i+1)
			}
			want += int64(sp.length)
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
	count := float64(h.count)
	total += float64(h.zeroCount)
	if float {
		count = h.countFloat
		total += h.zeroCountFloat
	}
	if math.IsNaN(h.sum) {
		if total > count {
			return fmt.Errorf("%v observations in buckets, but the count is %v", total, count)
		}
	} else if total != count {
		return fmt.Errorf("%v observations in buckets, but the count is %v", total, count)
	}
	return nil
}

// exemplarMaxRunes bounds the labels of one exemplar, names and values together, in runes: the
// OpenMetrics rule, which client_golang applies when it makes an exemplar and Prometheus when
// it stores one.
const exemplarMaxRunes = 128

// checkExemplars checks the labels of every exemplar of the metric as a series' labels are
// (valid names, once each, valid UTF-8, the label length limits), and that they hold at most
// exemplarMaxRunes: a bad exemplar would be served as pushed, and a name the OpenMetrics
// format can't carry breaks the scrape.
func (s *MemoryStore) checkExemplars(name string, m *metric) error {
	if m.hasCounter && m.counter.hasExemplar {
		if err := s.checkExemplar(name, &m.counter.exemplar); err != nil {
			return err
		}
	}
	h := &m.histogram
	for i := range h.buckets {
		if h.buckets[i].hasExemplar {
			if err := s.checkExemplar(name, &h.buckets[i].exemplar); err != nil {
				return err
			}
		}
	}
	for i := range h.exemplars {
		if err := s.checkExemplar(name, &h.exemplars[i]); err != nil {
			return err
		}
	}
	return nil
}

func (s *MemoryStore) checkExemplar(name string, e *exemplar) error {
	runes := 0
	for i, l := range e.labels {
		if err := checkLabelName(l.Name); err != nil {
			return invalid("metric family %s: exemplar %v", q(name), err)
		}
		if err := s.checkLabelLengths(l.Name, l.Value); err != nil {
			err.(*Error).Msg = fmt.Sprintf("metric family %s: in an exemplar, %s", q(name), err.(*Error).Msg)
			return err
		}
		if !utf8.ValidString(l.Value) {
			return invalid("metric family %s: value of exemplar label %s is not valid UTF-8", q(name), q(l.Name))
		}
		// Counted before the duplicates are looked for: a name has a rune at least, so the
		// quadratic search below sees at most exemplarMaxRunes labels.
		if runes += utf8.RuneCountInString(l.Name) + utf8.RuneCountInString(l.Value); runes > exemplarMaxRunes {
			if i == len(e.labels)-1 {
				return invalid("metric family %s: an exemplar's labels have %d runes (names and values), more than the %d OpenMetrics allows", q(name), runes, exemplarMaxRunes)
			}
			return invalid("metric family %s: an exemplar's labels have more than %d runes (names and values), the most OpenMetrics allows", q(name), exemplarMaxRunes)
		}
		for _, prev := range e.labels[:i] {
			if prev.Name == l.Name {
				return invalid("metric family %s: exemplar label %s appears twice in one exemplar", q(name), q(l.Name))
			}
		}
	}
	return nil
}

// mergeLabels returns the grouping labels of key, sorted, with instance="" added when the key
// has no instance: the labels of the group's health series.
func mergeLabels(key Key) []Label {
	_, hasInst := key.Get(model.InstanceLabel)
	var s MemoryStore // no limits: the key was checked when it was pushed
	labels, _ := s.appendMergedLabels(nil, key, key.labels, !hasInst, "", dto.MetricType_GAUGE, nil)
	return labels
}

// appendMergedLabels appends the metric's labels (body) plus the grouping labels (keyLabels,
// sorted) to dst, sorted, with instance="" added when neither has an instance (so that
// Prometheus's honor_labels keeps it empty rather than the relay's own address, as with
// Pushgateway). It applies the label limits and refuses labels that contradict the key.
func (s *MemoryStore) appendMergedLabels(dst []Label, key Key, keyLabels []Label, noInst bool, name string, typ dto.MetricType, body []Label) ([]Label, error) {
	start := len(dst)
	bodyInst := false
	for i, l := range body {
		n, v := l.Name, l.Value
		if err := checkLabelName(n); err != nil {
			return nil, invalid("metric family %s: %v", q(name), err)
		}
		if err := s.checkLabelLengths(n, v); err != nil {
			err.(*Error).Msg = fmt.Sprintf("metric family %s: %s", q(name), err.(*Error).Msg)
			return nil, err
		}
		for _, prev := range body[:i] {
			if prev.Name == n {
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
		dst = append(dst, l)
	}
	dst = append(dst, keyLabels...)
	if noInst && !bodyInst {
		dst = append(dst, Label{Name: model.InstanceLabel})
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
	sortLabels(dst[start:])
	return dst, nil
}

// sortLabels sorts labels by name; insertion sort, as series have a few labels, mostly sorted.
func sortLabels(ls []Label) {
	for i := 1; i < len(ls); i++ {
		for j := i; j > 0 && ls[j].Name < ls[j-1].Name; j-- {
			ls[j], ls[j-1] = ls[j-1], ls[j]
		}
	}
}

// hashSeries hashes a series' identity: its name and its labels as rendered for the text format
// (sorted, escaped: one rendering per label set).
func hashSeries(name string, labels []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(hashSeed)
	h.WriteString(name)
	h.WriteByte(0)
	h.Write(labels)
	return h.Sum64()
}

func seriesString(name string, labels []Label) string {
	ls := make(model.LabelSet, len(labels))
	for _, l := range labels {
		ls[model.LabelName(l.Name)] = model.LabelValue(l.Value)
	}
	return name + ls.String()
}

// seriesCount is how many series Prometheus stores for the metric.
func seriesCount(typ dto.MetricType, m *metric) int {
	switch typ {
	case dto.MetricType_SUMMARY:
		return len(m.summary.quantiles) + 2
	case dto.MetricType_HISTOGRAM:
		h := &m.histogram
		if len(h.buckets) == 0 && (len(h.positiveSpans) > 0 || len(h.negativeSpans) > 0 || h.zeroThreshold > 0 || h.schema != 0) {
			return 1 // native histogram only
		}
		n := len(h.buckets) + 2
		if len(h.buckets) == 0 || !math.IsInf(h.buckets[len(h.buckets)-1].upper, 1) {
			n++ // the +Inf bucket the exposition adds
		}
		return n
	}
	return 1
}
