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

var sprintf = fmt.Sprintf

// hashSeed is fixed for the process so that series hashes of different pushes compare.
var hashSeed = maphash.MakeSeed()

// Push is a validated push, rendered and ready to be applied to a Store. Preparing costs in
// proportion to the push and happens outside the store's lock.
type Push struct {
	Key      Key
	families []*part // sorted by name
	series   int
}

// Series returns the number of series (as Prometheus counts them) the push carries.
func (p *Push) Series() int { return p.series }

// has reports whether the push carries the family.
func (p *Push) has(name string) bool {
	_, ok := slices.BinarySearchFunc(p.families, name, func(pt *part, name string) int { return strings.Compare(pt.name, name) })
	return ok
}

// hashes counts the push's Metric messages.
func (p *Push) hashes() int {
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

// Prepare validates families pushed to the group key and renders them. It refuses samples with
// timestamps, invalid names or UTF-8, labels that contradict the grouping key, duplicate series,
// inconsistent metric types and more than maxSeries series (0: no limit). The families are not
// modified.
func Prepare(key Key, families []*dto.MetricFamily, maxSeries int) (*Push, error) {
	p := &Push{Key: key}
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
			return nil, invalid("metric family %q appears twice in the push", name)
		}
		seen[name] = true
		pt, err := sc.preparePart(key, mf)
		if err != nil {
			return nil, err
		}
		p.series += pt.series
		if maxSeries > 0 && p.series > maxSeries {
			return nil, &Error{Kind: KindTooLarge, Msg: sprintf("push carries more than %d series (--group.max-series)", maxSeries)}
		}
		p.families = append(p.families, pt)
	}
	sort.Slice(p.families, func(i, j int) bool { return p.families[i].name < p.families[j].name })
	p.pack()
	return p, nil
}

// pack moves the rendered bytes of every part into one allocation: a group's samples are one
// pointer-free block for the garbage collector instead of two small objects per family.
func (p *Push) pack() {
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

func (sc *scratch) preparePart(key Key, mf *dto.MetricFamily) (*part, error) {
	name := mf.GetName()
	if !model.LegacyValidation.IsValidMetricName(name) {
		return nil, invalid("metric name %q is invalid (want [a-zA-Z_:][a-zA-Z0-9_:]*)", name)
	}
	if isReservedName(name) {
		return nil, invalid("metric name %q is reserved for the relay's own metrics", name)
	}
	if !utf8.ValidString(mf.GetHelp()) {
		return nil, invalid("metric family %q: HELP text is not valid UTF-8", name)
	}
	typ := mf.GetType()
	switch typ {
	case dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_SUMMARY, dto.MetricType_UNTYPED, dto.MetricType_HISTOGRAM:
	default:
		return nil, invalid("metric family %q: type %s is not supported", name, typ)
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
			return nil, invalid("metric family %q: empty metric", name)
		}
		if m.TimestampMs != nil {
			return nil, invalid("metric family %q: samples with timestamps are not allowed (the relay exposes pushed values as current)", name)
		}
		if err := checkValueMatchesType(name, typ, m); err != nil {
			return nil, err
		}
		start := len(sc.labels)
		var err error
		sc.labels, err = appendMergedLabels(sc.labels, key, sc.keyPairs, sc.noInst, name, typ, m.Label)
		if err != nil {
			return nil, err
		}
		labels := sc.labels[start:len(sc.labels):len(sc.labels)]
		h := hashSeries(name, labels)
		if _, dup := sc.seen[h]; dup {
			return nil, invalid("metric family %q: duplicate series %s", name, seriesString(name, labels))
		}
		sc.seen[h] = struct{}{}
		pt.hashes = append(pt.hashes, h)
		pt.series += seriesCount(typ, m)

		cm := sc.metrics[i]
		cm.Label, cm.Gauge, cm.Counter, cm.Summary, cm.Untyped, cm.Histogram = labels, m.Gauge, m.Counter, m.Summary, m.Untyped, m.Histogram
		sc.msg, err = marshalOpts.MarshalAppend(sc.msg[:0], cm)
		if err != nil {
			return nil, invalid("metric family %q: %v", name, err)
		}
		sc.proto = protowire.AppendTag(sc.proto, 4, protowire.BytesType)
		sc.proto = protowire.AppendBytes(sc.proto, sc.msg)
	}
	sc.out.Name, sc.out.Type, sc.out.Metric = mf.Name, mf.Type, sc.metrics[:len(mf.Metric)]
	sc.text.Reset()
	if _, err := expfmt.MetricFamilyToText(&sc.text, &sc.out); err != nil {
		return nil, invalid("metric family %q: %v", name, err)
	}
	// MetricFamilyToText wrote "# TYPE ..." first (no HELP: out.Help is nil); the store writes
	// one header per family for all groups, so keep only the sample lines.
	text := sc.text.Bytes()
	if i := bytes.IndexByte(text, '\n'); i >= 0 {
		text = text[i+1:]
	}
	// Stored bytes are exact copies, packed into one block by Push.pack.
	pt.text = bytes.Clone(text)
	pt.proto = bytes.Clone(sc.proto)
	return pt, nil
}

func checkValueMatchesType(name string, typ dto.MetricType, m *dto.Metric) error {
	ok := false
	switch typ {
	case dto.MetricType_COUNTER:
		ok = m.Counter != nil
		if ok && (m.Counter.GetValue() < 0 || math.IsInf(m.Counter.GetValue(), -1)) {
			return invalid("metric family %q: counter value %v is negative", name, m.Counter.GetValue())
		}
	case dto.MetricType_GAUGE:
		ok = m.Gauge != nil
	case dto.MetricType_SUMMARY:
		ok = m.Summary != nil
	case dto.MetricType_UNTYPED:
		ok = m.Untyped != nil
	case dto.MetricType_HISTOGRAM:
		ok = m.Histogram != nil
	}
	if !ok {
		return invalid("metric family %q: a metric has no %s value", name, typ)
	}
	return nil
}

// mergeLabels returns the metric's labels plus the grouping labels, sorted, with instance=""
// added when neither has an instance (so that Prometheus's honor_labels keeps it empty rather
// than the relay's own address, as with Pushgateway).
func mergeLabels(key Key, name string, typ dto.MetricType, body []*dto.LabelPair) ([]*dto.LabelPair, error) {
	sc := scratch{}
	sc.setKey(key)
	return appendMergedLabels(nil, key, sc.keyPairs, sc.noInst, name, typ, body)
}

// appendMergedLabels appends what mergeLabels returns to dst. keyPairs are the key's labels as
// LabelPairs (shared, never modified); noInst tells that the key has no instance label.
func appendMergedLabels(dst []*dto.LabelPair, key Key, keyPairs []*dto.LabelPair, noInst bool, name string, typ dto.MetricType, body []*dto.LabelPair) ([]*dto.LabelPair, error) {
	start := len(dst)
	bodyInst := false
	for i, lp := range body {
		n, v := lp.GetName(), lp.GetValue()
		if err := checkLabelName(n); err != nil {
			return nil, invalid("metric family %q: %v", name, err)
		}
		for _, prev := range body[:i] {
			if prev.GetName() == n {
				return nil, invalid("metric family %q: label %q appears twice in one series", name, n)
			}
		}
		if n == model.InstanceLabel {
			bodyInst = true
		}
		if !utf8.ValidString(v) {
			return nil, invalid("metric family %q: value of label %q is not valid UTF-8", name, n)
		}
		if (typ == dto.MetricType_HISTOGRAM && n == model.BucketLabel) || (typ == dto.MetricType_SUMMARY && n == model.QuantileLabel) {
			return nil, invalid("metric family %q: label %q is reserved for %s buckets", name, n, typ)
		}
		if kv, ok := key.Get(n); ok {
			if kv != v {
				return nil, invalid("metric family %q: label %s=%q contradicts the grouping key %s", name, n, v, key)
			}
			continue // same value: the grouping label below carries it
		}
		dst = append(dst, lp)
	}
	dst = append(dst, keyPairs...)
	if noInst && !bodyInst {
		dst = append(dst, emptyInstance)
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
