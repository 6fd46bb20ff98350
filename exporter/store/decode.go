package store

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// Decoding reads io.prometheus.client.MetricFamily messages straight from protobuf bytes into
// what prepare needs, without building objects: the same values, by the same rules, as
// proto.Unmarshal into client_model's types (a field repeated in one message is merged as
// Unmarshal merges it, a known field with another wire type is an unknown field, unknown fields
// are checked and skipped), and refusing the same bytes. FuzzEncodedPush holds it to that.
//
// Strings point into the bytes decoded (no copies): whatever the store keeps of them it clones.

// errWire is the refusal of bytes that are not a valid protobuf encoding.
var errWire = errors.New("cannot parse invalid wire-format data")

// bytesString is b as a string without copying. b must not change while the string is used.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// field is one field of a message: its number, wire type and value. For BytesType the value is
// in b; for VarintType, Fixed64Type and Fixed32Type it is in v.
type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64
	b   []byte
}

// nextField consumes the next field of a message from b. Fields of wire types that no field of
// client_model uses (groups, fixed32) are checked and returned with their bytes skipped.
func nextField(b []byte) (field, []byte, error) {
	// The common case first: a field number below 16 and a short value.
	if len(b) >= 2 && b[0] < 0x80 && b[0] >= 1<<3 {
		f := field{num: protowire.Number(b[0] >> 3), typ: protowire.Type(b[0] & 7)}
		switch f.typ {
		case protowire.BytesType:
			if b[1] < 0x80 {
				end := 2 + int(b[1])
				if end > len(b) {
					return f, nil, errWire
				}
				f.b = b[2:end]
				return f, b[end:], nil
			}
		case protowire.Fixed64Type:
			if len(b) >= 9 {
				f.v = binary.LittleEndian.Uint64(b[1:])
				return f, b[9:], nil
			}
		case protowire.VarintType:
			if b[1] < 0x80 {
				f.v = uint64(b[1])
				return f, b[2:], nil
			}
		}
	}
	return nextFieldSlow(b)
}

func nextFieldSlow(b []byte) (field, []byte, error) {
	var f field
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num > protowire.MaxValidNumber {
		return f, nil, errWire
	}
	f.num, f.typ = num, typ
	b = b[n:]
	switch f.typ {
	case protowire.VarintType:
		f.v, n = protowire.ConsumeVarint(b)
	case protowire.Fixed64Type:
		f.v, n = protowire.ConsumeFixed64(b)
	case protowire.BytesType:
		f.b, n = protowire.ConsumeBytes(b)
	default:
		n = protowire.ConsumeFieldValue(f.num, f.typ, b)
	}
	if n < 0 {
		return f, nil, errWire
	}
	return f, b[n:], nil
}

func (f *field) double() float64 { return math.Float64frombits(f.v) }

// familyHeader is what a MetricFamily message holds besides its metrics, which are returned as
// the encodings of the Metric messages.
type familyHeader struct {
	name, help string
	typ        int32
	hasHelp    bool
}

// decodeFamily reads a MetricFamily message, appending its Metric messages (undecoded) to
// metrics, up to max of them (errBounds past it).
func decodeFamily(b []byte, metrics [][]byte, max int) (familyHeader, [][]byte, error) {
	var h familyHeader
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return h, metrics, err
		}
		b = rest
		switch {
		case f.num == 1 && f.typ == protowire.BytesType:
			h.name = bytesString(f.b)
		case f.num == 2 && f.typ == protowire.BytesType:
			h.help, h.hasHelp = bytesString(f.b), true
		case f.num == 3 && f.typ == protowire.VarintType:
			h.typ = int32(f.v)
		case f.num == 4 && f.typ == protowire.BytesType:
			if len(metrics) >= max {
				return h, metrics, errBounds
			}
			metrics = append(metrics, f.b)
		}
	}
	return h, metrics, nil
}

// errBounds stops decoding a metric at the first element past its bounds (metric.lim).
var errBounds = errors.New("a repeated field passes the store's limits")

// decode fills m from a Metric message, appending no more than lim allows: past it, it returns
// errBounds with m partly filled.
func (m *metric) decode(b []byte, lim bounds) error {
	m.reset()
	m.lim, m.raw = lim, b
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		if f.typ == protowire.BytesType {
			switch f.num {
			case 1:
				if err := room(m, m.labels, 0, m.lim.labels); err != nil {
					return err
				}
				l, err := decodeLabelPair(f.b)
				if err != nil {
					return err
				}
				m.labels = append(m.labels, l)
			case 2:
				m.hasGauge = true
				err = decodeValue(&m.gauge, f.b)
			case 3:
				m.hasCounter = true
				err = m.decodeCounter(&m.counter, f.b)
			case 4:
				m.hasSummary = true
				err = m.decodeSummary(&m.summary, f.b)
			case 5:
				m.hasUntyped = true
				err = decodeValue(&m.untyped, f.b)
			case 7:
				m.hasHistogram = true
				err = m.decodeHistogram(&m.histogram, f.b)
			}
			if err != nil {
				return err
			}
		} else if f.num == 6 && f.typ == protowire.VarintType {
			m.hasTimestamp, m.timestampMs = true, int64(f.v)
		}
	}
	return nil
}

func decodeLabelPair(b []byte) (Label, error) {
	var l Label
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return l, err
		}
		b = rest
		if f.typ == protowire.BytesType {
			switch f.num {
			case 1:
				l.Name = bytesString(f.b)
			case 2:
				l.Value = bytesString(f.b)
			}
		}
	}
	return l, nil
}

// decodeValue decodes a Gauge or an Untyped message into v.
func decodeValue(v *value, b []byte) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		if f.num == 1 && f.typ == protowire.Fixed64Type {
			v.v, v.hasV = f.double(), true
		}
	}
	return nil
}

func decodeTimestamp(t *timestamp, b []byte) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		if f.typ == protowire.VarintType {
			switch f.num {
			case 1:
				t.seconds = int64(f.v)
			case 2:
				t.nanos = int32(f.v)
			}
		}
	}
	return nil
}

func (m *metric) decodeCounter(c *counter, b []byte) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case f.num == 1 && f.typ == protowire.Fixed64Type:
			c.v, c.hasV = f.double(), true
		case f.num == 2 && f.typ == protowire.BytesType:
			c.hasExemplar = true
			err = m.decodeExemplar(&c.exemplar, f.b, &m.counterExemplarLabels)
		case f.num == 3 && f.typ == protowire.BytesType:
			c.hasCreated = true
			err = decodeTimestamp(&c.created, f.b)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// decodeExemplar decodes an Exemplar message into e; its labels go to the end of buf
// (m.exemplarLabels, or m.counterExemplarLabels for the counter's exemplar). e's labels, if it
// has some (an exemplar given twice is merged), must end buf: nothing appends to buf between
// two encodings of one exemplar, which are in one bucket message or are the counter's.
func (m *metric) decodeExemplar(e *exemplar, b []byte, buf *[]Label) error {
	start := len(*buf) - len(e.labels)
	defer func() {
		e.labels = (*buf)[start:len(*buf):len(*buf)]
	}()
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case f.num == 1 && f.typ == protowire.BytesType:
			// The exemplar labels of the metric count together.
			if err := room(m, *buf, len(m.exemplarLabels)+len(m.counterExemplarLabels)-len(*buf), m.lim.elements); err != nil {
				return err
			}
			l, err := decodeLabelPair(f.b)
			if err != nil {
				return err
			}
			*buf = append(*buf, l)
		case f.num == 2 && f.typ == protowire.Fixed64Type:
			e.v, e.hasV = f.double(), true
		case f.num == 3 && f.typ == protowire.BytesType:
			e.hasTS = true
			if err := decodeTimestamp(&e.ts, f.b); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *metric) decodeSummary(s *summary, b []byte) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case f.num == 1 && f.typ == protowire.VarintType:
			s.count, s.hasCount = f.v, true
		case f.num == 2 && f.typ == protowire.Fixed64Type:
			s.sum, s.hasSum = f.double(), true
		case f.num == 3 && f.typ == protowire.BytesType:
			if err := room(m, s.quantiles, 0, m.lim.classic); err != nil {
				return err
			}
			s.quantiles = append(s.quantiles, quantile{})
			err = decodeQuantile(&s.quantiles[len(s.quantiles)-1], f.b)
		case f.num == 4 && f.typ == protowire.BytesType:
			s.hasCreated = true
			err = decodeTimestamp(&s.created, f.b)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func decodeQuantile(q *quantile, b []byte) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		if f.typ == protowire.Fixed64Type {
			switch f.num {
			case 1:
				q.q, q.hasQ = f.double(), true
			case 2:
				q.v, q.hasV = f.double(), true
			}
		}
	}
	return nil
}

func (m *metric) decodeHistogram(h *histogram, b []byte) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch f.typ {
		case protowire.VarintType:
			switch f.num {
			case 1:
				h.count, h.hasCount = f.v, true
			case 5:
				h.schema, h.hasSchema = int32(protowire.DecodeZigZag(f.v&math.MaxUint32)), true
			case 7:
				h.zeroCount, h.hasZeroCount = f.v, true
			case 10:
				if err := room(m, h.negativeDeltas, len(h.negativeCounts), m.lim.elements); err != nil {
					return err
				}
				h.negativeDeltas = append(h.negativeDeltas, protowire.DecodeZigZag(f.v))
			case 13:
				if err := room(m, h.positiveDeltas, len(h.positiveCounts), m.lim.elements); err != nil {
					return err
				}
				h.positiveDeltas = append(h.positiveDeltas, protowire.DecodeZigZag(f.v))
			}
		case protowire.Fixed64Type:
			switch f.num {
			case 2:
				h.sum, h.hasSum = f.double(), true
			case 4:
				h.countFloat, h.hasCountFloat = f.double(), true
			case 6:
				h.zeroThreshold, h.hasZeroThreshold = f.double(), true
			case 8:
				h.zeroCountFloat, h.hasZeroCountFloat = f.double(), true
			case 11:
				if err := room(m, h.negativeCounts, len(h.negativeDeltas), m.lim.elements); err != nil {
					return err
				}
				h.negativeCounts = append(h.negativeCounts, f.double())
			case 14:
				if err := room(m, h.positiveCounts, len(h.positiveDeltas), m.lim.elements); err != nil {
					return err
				}
				h.positiveCounts = append(h.positiveCounts, f.double())
			}
		case protowire.BytesType:
			switch f.num {
			case 3:
				if err := room(m, h.buckets, 0, m.lim.classic); err != nil {
					return err
				}
				// Decoded aside: decoding its exemplar may presize h.buckets.
				var bk bucket
				err = m.decodeBucket(&bk, f.b)
				h.buckets = append(h.buckets, bk)
			case 9:
				if err := room(m, h.negativeSpans, 0, m.lim.elements); err != nil {
					return err
				}
				h.negativeSpans = append(h.negativeSpans, span{})
				err = decodeSpan(&h.negativeSpans[len(h.negativeSpans)-1], f.b)
			case 12:
				if err := room(m, h.positiveSpans, 0, m.lim.elements); err != nil {
					return err
				}
				h.positiveSpans = append(h.positiveSpans, span{})
				err = decodeSpan(&h.positiveSpans[len(h.positiveSpans)-1], f.b)
			case 10:
				if len(h.negativeDeltas) == cap(h.negativeDeltas) {
					m.presize()
				}
				h.negativeDeltas, err = appendPackedZigZag(h.negativeDeltas, f.b, m.lim.elements-len(h.negativeCounts))
			case 13:
				if len(h.positiveDeltas) == cap(h.positiveDeltas) {
					m.presize()
				}
				h.positiveDeltas, err = appendPackedZigZag(h.positiveDeltas, f.b, m.lim.elements-len(h.positiveCounts))
			case 11:
				if len(h.negativeCounts) == cap(h.negativeCounts) {
					m.presize()
				}
				h.negativeCounts, err = appendPackedDoubles(h.negativeCounts, f.b, m.lim.elements-len(h.negativeDeltas))
			case 14:
				if len(h.positiveCounts) == cap(h.positiveCounts) {
					m.presize()
				}
				h.positiveCounts, err = appendPackedDoubles(h.positiveCounts, f.b, m.lim.elements-len(h.positiveDeltas))
			case 15:
				h.hasCreated = true
				err = decodeTimestamp(&h.created, f.b)
			case 16:
				if err := room(m, h.exemplars, 0, m.lim.elements); err != nil {
					return err
				}
				var e exemplar // decoded aside: decoding it may presize h.exemplars
				err = m.decodeExemplar(&e, f.b, &m.exemplarLabels)
				h.exemplars = append(h.exemplars, e)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (m *metric) decodeBucket(bk *bucket, b []byte) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case f.num == 1 && f.typ == protowire.VarintType:
			bk.count, bk.hasCount = f.v, true
		case f.num == 2 && f.typ == protowire.Fixed64Type:
			bk.upper, bk.hasUp = f.double(), true
		case f.num == 3 && f.typ == protowire.BytesType:
			bk.hasExemplar = true
			if err := m.decodeExemplar(&bk.exemplar, f.b, &m.exemplarLabels); err != nil {
				return err
			}
		case f.num == 4 && f.typ == protowire.Fixed64Type:
			bk.countFloat, bk.hasCountFloat = f.double(), true
		}
	}
	return nil
}

func decodeSpan(s *span, b []byte) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		if f.typ == protowire.VarintType {
			switch f.num {
			case 1:
				s.offset, s.hasOffset = int32(protowire.DecodeZigZag(f.v&math.MaxUint32)), true
			case 2:
				s.length, s.hasLen = uint32(f.v), true
			}
		}
	}
	return nil
}

// room checks that s, of which others count against the same bound, takes one more element
// within max (errBounds if not), and presizes m's buffers when s is full.
func room[T any](m *metric, s []T, others, max int) error {
	if len(s)+others >= max {
		return errBounds
	}
	if len(s) == cap(s) {
		m.presize()
	}
	return nil
}

// appendPackedZigZag appends the packed sint64 values of b, up to max values in dst.
func appendPackedZigZag(dst []int64, b []byte, max int) ([]int64, error) {
	for len(b) > 0 {
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return dst, errWire
		}
		if len(dst) >= max {
			return dst, errBounds
		}
		dst = append(dst, protowire.DecodeZigZag(v))
		b = b[n:]
	}
	return dst, nil
}

// appendPackedDoubles appends the packed double values of b, up to max values in dst.
func appendPackedDoubles(dst []float64, b []byte, max int) ([]float64, error) {
	if len(b)%8 != 0 {
		return dst, errWire
	}
	if len(b)/8 > max-len(dst) {
		return dst, errBounds
	}
	for ; len(b) > 0; b = b[8:] {
		dst = append(dst, math.Float64frombits(binary.LittleEndian.Uint64(b)))
	}
	return dst, nil
}

// counts are how many elements the repeated fields of one metric hold, where a bound applies
// (see bounds).
type counts struct {
	labels, buckets, quantiles int
	spans, deltas, floats      [2]int // of native histograms: negative, positive
	nativeExemplars            int
	exemplarLabels             int // of the exemplars of buckets and the native histogram
	counterExemplarLabels      int
}

// nativeBuckets counts the buckets of one side of a native histogram: deltas or floats.
func (c *counts) nativeBuckets(side int) int { return c.deltas[side] + c.floats[side] }

// counts counts what m holds.
func (m *metric) counts() counts {
	h := &m.histogram
	return counts{
		labels:                len(m.labels),
		buckets:               len(h.buckets),
		quantiles:             len(m.summary.quantiles),
		spans:                 [2]int{len(h.negativeSpans), len(h.positiveSpans)},
		deltas:                [2]int{len(h.negativeDeltas), len(h.positiveDeltas)},
		floats:                [2]int{len(h.negativeCounts), len(h.positiveCounts)},
		nativeExemplars:       len(h.exemplars),
		exemplarLabels:        len(m.exemplarLabels),
		counterExemplarLabels: len(m.counterExemplarLabels),
	}
}

// presize is called when a buffer of m is full, before appending to it: the first time in a
// metric, it counts the message's elements and grows every buffer to hold them, up to the
// bounds. A repeated field then takes one allocation of what it holds, not the four or five
// times as much that growing by append allocates on the way (a buffer reused from push to push
// seldom is full).
func (m *metric) presize() {
	if m.presized {
		return
	}
	m.presized = true
	c, err := countMetric(m.raw)
	if err != nil {
		return // decoding fails too
	}
	lim := &m.lim
	h := &m.histogram
	m.labels = growTo(m.labels, c.labels, lim.labels)
	m.summary.quantiles = growTo(m.summary.quantiles, c.quantiles, lim.classic)
	h.buckets = growTo(h.buckets, c.buckets, lim.classic)
	h.negativeSpans = growTo(h.negativeSpans, c.spans[0], lim.elements)
	h.positiveSpans = growTo(h.positiveSpans, c.spans[1], lim.elements)
	h.negativeDeltas = growTo(h.negativeDeltas, c.deltas[0], lim.elements)
	h.positiveDeltas = growTo(h.positiveDeltas, c.deltas[1], lim.elements)
	h.negativeCounts = growTo(h.negativeCounts, c.floats[0], lim.elements)
	h.positiveCounts = growTo(h.positiveCounts, c.floats[1], lim.elements)
	h.exemplars = growTo(h.exemplars, c.nativeExemplars, lim.elements)
	m.exemplarLabels = growTo(m.exemplarLabels, c.exemplarLabels, lim.elements)
	m.counterExemplarLabels = growTo(m.counterExemplarLabels, c.counterExemplarLabels, lim.elements)
}

// growTo grows the capacity of s to min(n, max), if it is less.
func growTo[T any](s []T, n, max int) []T {
	if n = min(n, max); n > cap(s) {
		return slices.Grow(s, n-len(s))
	}
	return s
}

// countMetric counts the elements of a Metric message as decode would append them with no
// bounds, without holding any. It reads only the fields it counts.
func countMetric(b []byte) (counts, error) {
	var c counts
	err := eachField(b, func(f field) error {
		if f.typ != protowire.BytesType {
			return nil
		}
		switch f.num {
		case 1:
			c.labels++
		case 3:
			return eachField(f.b, func(f field) error {
				if f.num == 2 && f.typ == protowire.BytesType {
					return countLabels(f.b, &c.counterExemplarLabels)
				}
				return nil
			})
		case 4:
			return eachField(f.b, func(f field) error {
				if f.num == 3 && f.typ == protowire.BytesType {
					c.quantiles++
				}
				return nil
			})
		case 7:
			return eachField(f.b, c.histogramField)
		}
		return nil
	})
	return c, err
}

func (c *counts) histogramField(f field) error {
	side := 0 // negative
	switch f.num {
	case 12, 13, 14:
		side = 1
	}
	switch {
	case f.num == 3 && f.typ == protowire.BytesType:
		c.buckets++
		return eachField(f.b, func(f field) error {
			if f.num == 3 && f.typ == protowire.BytesType {
				return countLabels(f.b, &c.exemplarLabels)
			}
			return nil
		})
	case (f.num == 9 || f.num == 12) && f.typ == protowire.BytesType:
		c.spans[side]++
	case (f.num == 10 || f.num == 13) && f.typ == protowire.VarintType:
		c.deltas[side]++
	case (f.num == 11 || f.num == 14) && f.typ == protowire.Fixed64Type:
		c.floats[side]++
	case (f.num == 10 || f.num == 13) && f.typ == protowire.BytesType:
		for b := f.b; len(b) > 0; {
			_, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return errWire
			}
			b = b[n:]
			c.deltas[side]++
		}
	case (f.num == 11 || f.num == 14) && f.typ == protowire.BytesType:
		if len(f.b)%8 != 0 {
			return errWire
		}
		c.floats[side] += len(f.b) / 8
	case f.num == 16 && f.typ == protowire.BytesType:
		c.nativeExemplars++
		return countLabels(f.b, &c.exemplarLabels)
	}
	return nil
}

// countLabels adds the labels of an Exemplar message to n.
func countLabels(b []byte, n *int) error {
	return eachField(b, func(f field) error {
		if f.num == 1 && f.typ == protowire.BytesType {
			*n++
		}
		return nil
	})
}

// eachField calls fn with every field of a message.
func eachField(b []byte, fn func(field) error) error {
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			return err
		}
		b = rest
	}
	return nil
}
