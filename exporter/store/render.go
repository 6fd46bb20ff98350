package store

import (
	"math"
	"strconv"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/encoding/protowire"
)

// Rendering appends a metric to the store's two pre-rendered formats by hand, producing the bytes
// that expfmt.MetricFamilyToText and proto.Marshal produce for the same Metric (render_test.go
// holds the two to it): the text format's sample lines, and the Metric message as field 4 of a
// MetricFamily. Label pairs are always written with both fields, and fields client_model does not
// define are not written.

// appendLabelsText appends labels as the text format writes them inside braces:
// a="1",b="2" (names are valid legacy label names: the store checked them).
func appendLabelsText(b []byte, labels []Label) []byte {
	for i, l := range labels {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, l.Name...)
		b = append(b, '=', '"')
		b = appendEscaped(b, l.Value)
		b = append(b, '"')
	}
	return b
}

var posInf = []byte("+Inf")

// textRenderer renders sample lines. It remembers the le labels of the last histogram it
// rendered: the series of a family mostly share their buckets, whose bounds are rarely integers
// and costly to format.
type textRenderer struct {
	bounds []float64
	les    []byte // the bounds formatted, one after the other
	ends   []int  // where each ends in les
	tmp    []byte
}

// le returns upper bound f of a histogram's bucket i, formatted.
func (r *textRenderer) le(i int, f float64) []byte {
	if i < len(r.bounds) && math.Float64bits(r.bounds[i]) == math.Float64bits(f) {
		return r.les[r.end(i-1):r.ends[i]]
	}
	r.bounds, r.ends, r.les = r.bounds[:i], r.ends[:i], r.les[:r.end(i-1)]
	start := len(r.les)
	r.les = appendFloat(r.les, f)
	r.bounds, r.ends = append(r.bounds, f), append(r.ends, len(r.les))
	return r.les[start:]
}

func (r *textRenderer) end(i int) int {
	if i < 0 {
		return 0
	}
	return r.ends[i]
}

// appendSample appends one sample line: name+suffix, the rendered labels, the extra label (le
// or quantile, its value formatted) if any, the value and the timestamp if any.
func appendSample(b []byte, name, suffix string, labels []byte, extra string, extraValue []byte, v float64, m *metric) []byte {
	b = append(b, name...)
	b = append(b, suffix...)
	if len(labels) > 0 || extra != "" {
		b = append(b, '{')
		b = append(b, labels...)
		if extra != "" {
			if len(labels) > 0 {
				b = append(b, ',')
			}
			b = append(b, extra...)
			b = append(b, '=', '"')
			b = append(b, extraValue...)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = appendFloat(b, v)
	if m.hasTimestamp {
		b = append(b, ' ')
		b = strconv.AppendInt(b, m.timestampMs, 10)
	}
	return append(b, '\n')
}

// appendMetric appends m's sample lines for a family of type typ, with labels rendered by
// appendLabelsText. m carries the value of typ (the store checked it).
func (r *textRenderer) appendMetric(b []byte, name string, typ dto.MetricType, labels []byte, m *metric) []byte {
	switch typ {
	case dto.MetricType_COUNTER:
		return appendSample(b, name, "", labels, "", nil, m.counter.v, m)
	case dto.MetricType_GAUGE:
		return appendSample(b, name, "", labels, "", nil, m.gauge.v, m)
	case dto.MetricType_UNTYPED:
		return appendSample(b, name, "", labels, "", nil, m.untyped.v, m)
	case dto.MetricType_SUMMARY:
		s := &m.summary
		for i := range s.quantiles {
			r.tmp = appendFloat(r.tmp[:0], s.quantiles[i].q)
			b = appendSample(b, name, "", labels, "quantile", r.tmp, s.quantiles[i].v, m)
		}
		b = appendSample(b, name, "_sum", labels, "", nil, s.sum, m)
		return appendSample(b, name, "_count", labels, "", nil, float64(s.count), m)
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		h := &m.histogram
		infSeen := false
		for i := range h.buckets {
			bk := &h.buckets[i]
			b = appendSample(b, name, "_bucket", labels, "le", r.le(i, bk.upper), bk.cumulative(), m)
			if math.IsInf(bk.upper, +1) {
				infSeen = true
			}
		}
		if !infSeen {
			b = appendSample(b, name, "_bucket", labels, "le", posInf, h.sampleCount(), m)
		}
		b = appendSample(b, name, "_sum", labels, "", nil, h.sum, m)
		return appendSample(b, name, "_count", labels, "", nil, h.sampleCount(), m)
	}
	return b
}

// appendFloat appends f as the text format writes values: strconv's shortest 'g' form, +Inf,
// -Inf and NaN. Integers below a million, most values of counters and buckets, take a shorter
// path to the same digits ('g' switches to an exponent from 1e6 on).
func appendFloat(b []byte, f float64) []byte {
	if f > -1e6 && f < 1e6 {
		if i := int64(f); float64(i) == f {
			return strconv.AppendInt(b, i, 10)
		}
	}
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, +1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

// appendEscaped appends a label value escaped for the text format.
func appendEscaped(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\\' || c == '"' || c == '\n' {
			return appendEscapedFrom(append(b, v[:i]...), v[i:])
		}
	}
	return append(b, v...)
}

func appendEscapedFrom(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '"':
			b = append(b, '\\', '"')
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return b
}

// Protobuf.

// appendVarint is protowire.AppendVarint with the one-byte case inlined: most lengths, counts
// and tags of a metric.
func appendVarint(b []byte, v uint64) []byte {
	if v < 0x80 {
		return append(b, byte(v))
	}
	return protowire.AppendVarint(b, v)
}

// appendTag appends the tag of field num (below 16: one byte) of wire type typ.
func appendTag(b []byte, num protowire.Number, typ protowire.Type) []byte {
	return appendVarint(b, protowire.EncodeTag(num, typ))
}

// appendString appends a length-delimited string field's length and bytes.
func appendString(b []byte, s string) []byte {
	return append(appendVarint(b, uint64(len(s))), s...)
}

// beginMessage appends the tag of a length-delimited field and room for a one-byte length, and
// returns where the message's contents start; endMessage writes the length, moving the contents
// if it takes more than one byte.
func beginMessage(b []byte, num protowire.Number) ([]byte, int) {
	b = append(appendTag(b, num, protowire.BytesType), 0)
	return b, len(b)
}

func endMessage(b []byte, start int) []byte {
	n := len(b) - start
	if n < 0x80 {
		b[start-1] = byte(n)
		return b
	}
	k := protowire.SizeVarint(uint64(n))
	for range k - 1 {
		b = append(b, 0)
	}
	copy(b[start+k-1:], b[start:start+n])
	protowire.AppendVarint(b[:start-1], uint64(n))
	return b
}

func appendDouble(b []byte, num protowire.Number, v float64) []byte {
	b = appendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, math.Float64bits(v))
}

func appendUvarint(b []byte, num protowire.Number, v uint64) []byte {
	return appendVarint(appendTag(b, num, protowire.VarintType), v)
}

// appendLabelPairField appends a LabelPair as field num.
func appendLabelPairField(b []byte, num protowire.Number, name, value string) []byte {
	b = appendTag(b, num, protowire.BytesType)
	b = appendVarint(b, uint64(labelPairSize(name, value)))
	return appendLabelPair(b, name, value)
}

// labelPairSize is the encoded size of LabelPair{name, value}.
func labelPairSize(name, value string) int {
	return 1 + protowire.SizeBytes(len(name)) + 1 + protowire.SizeBytes(len(value))
}

// appendLabelPair appends the fields of LabelPair{name, value}.
func appendLabelPair(b []byte, name, value string) []byte {
	b = appendString(append(b, 1<<3|byte(protowire.BytesType)), name)
	return appendString(append(b, 2<<3|byte(protowire.BytesType)), value)
}

func appendTimestamp(b []byte, num protowire.Number, ts timestamp) []byte {
	b, start := beginMessage(b, num)
	if ts.seconds != 0 {
		b = appendUvarint(b, 1, uint64(ts.seconds))
	}
	if ts.nanos != 0 {
		b = appendUvarint(b, 2, uint64(ts.nanos))
	}
	return endMessage(b, start)
}

func appendExemplar(b []byte, num protowire.Number, e *exemplar) []byte {
	b, start := beginMessage(b, num)
	for _, l := range e.labels {
		b = appendLabelPairField(b, 1, l.Name, l.Value)
	}
	if e.hasV {
		b = appendDouble(b, 2, e.v)
	}
	if e.hasTS {
		b = appendTimestamp(b, 3, e.ts)
	}
	return endMessage(b, start)
}

func appendValue(b []byte, num protowire.Number, v value) []byte {
	b, start := beginMessage(b, num)
	if v.hasV {
		b = appendDouble(b, 1, v.v)
	}
	return endMessage(b, start)
}

// appendMetricProto appends m as field 4 of a MetricFamily, with labels (sorted, the grouping
// labels merged in) instead of m's own.
func appendMetricProto(b []byte, labels []Label, m *metric) []byte {
	b, start := beginMessage(b, 4)
	for _, l := range labels {
		b = appendLabelPairField(b, 1, l.Name, l.Value)
	}
	if m.hasGauge {
		b = appendValue(b, 2, m.gauge)
	}
	if m.hasCounter {
		c := &m.counter
		var cs int
		b, cs = beginMessage(b, 3)
		if c.hasV {
			b = appendDouble(b, 1, c.v)
		}
		if c.hasExemplar {
			b = appendExemplar(b, 2, &c.exemplar)
		}
		if c.hasCreated {
			b = appendTimestamp(b, 3, c.created)
		}
		b = endMessage(b, cs)
	}
	if m.hasSummary {
		b = appendSummary(b, &m.summary)
	}
	if m.hasUntyped {
		b = appendValue(b, 5, m.untyped)
	}
	if m.hasTimestamp {
		b = appendUvarint(b, 6, uint64(m.timestampMs))
	}
	if m.hasHistogram {
		b = appendHistogram(b, &m.histogram)
	}
	return endMessage(b, start)
}

func appendSummary(b []byte, s *summary) []byte {
	b, start := beginMessage(b, 4)
	if s.hasCount {
		b = appendUvarint(b, 1, s.count)
	}
	if s.hasSum {
		b = appendDouble(b, 2, s.sum)
	}
	for i := range s.quantiles {
		q := &s.quantiles[i]
		var qs int
		b, qs = beginMessage(b, 3)
		if q.hasQ {
			b = appendDouble(b, 1, q.q)
		}
		if q.hasV {
			b = appendDouble(b, 2, q.v)
		}
		b = endMessage(b, qs)
	}
	if s.hasCreated {
		b = appendTimestamp(b, 4, s.created)
	}
	return endMessage(b, start)
}

func appendHistogram(b []byte, h *histogram) []byte {
	b, start := beginMessage(b, 7)
	if h.hasCount {
		b = appendUvarint(b, 1, h.count)
	}
	if h.hasSum {
		b = appendDouble(b, 2, h.sum)
	}
	for i := range h.buckets {
		bk := &h.buckets[i]
		var bs int
		b, bs = beginMessage(b, 3)
		if bk.hasCount {
			b = appendUvarint(b, 1, bk.count)
		}
		if bk.hasUp {
			b = appendDouble(b, 2, bk.upper)
		}
		if bk.hasExemplar {
			b = appendExemplar(b, 3, &bk.exemplar)
		}
		if bk.hasCountFloat {
			b = appendDouble(b, 4, bk.countFloat)
		}
		b = endMessage(b, bs)
	}
	if h.hasCountFloat {
		b = appendDouble(b, 4, h.countFloat)
	}
	if h.hasSchema {
		b = appendUvarint(b, 5, protowire.EncodeZigZag(int64(h.schema)))
	}
	if h.hasZeroThreshold {
		b = appendDouble(b, 6, h.zeroThreshold)
	}
	if h.hasZeroCount {
		b = appendUvarint(b, 7, h.zeroCount)
	}
	if h.hasZeroCountFloat {
		b = appendDouble(b, 8, h.zeroCountFloat)
	}
	b = appendSpans(b, 9, h.negativeSpans)
	for _, d := range h.negativeDeltas {
		b = appendUvarint(b, 10, protowire.EncodeZigZag(d))
	}
	for _, c := range h.negativeCounts {
		b = appendDouble(b, 11, c)
	}
	b = appendSpans(b, 12, h.positiveSpans)
	for _, d := range h.positiveDeltas {
		b = appendUvarint(b, 13, protowire.EncodeZigZag(d))
	}
	for _, c := range h.positiveCounts {
		b = appendDouble(b, 14, c)
	}
	if h.hasCreated {
		b = appendTimestamp(b, 15, h.created)
	}
	for i := range h.exemplars {
		b = appendExemplar(b, 16, &h.exemplars[i])
	}
	return endMessage(b, start)
}

func appendSpans(b []byte, num protowire.Number, spans []span) []byte {
	for _, s := range spans {
		var start int
		b, start = beginMessage(b, num)
		if s.hasOffset {
			b = appendUvarint(b, 1, protowire.EncodeZigZag(int64(s.offset)))
		}
		if s.hasLen {
			b = appendUvarint(b, 2, uint64(s.length))
		}
		b = endMessage(b, start)
	}
	return b
}
