package store

import (
	"encoding/binary"
	"errors"
	"math"
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
// metrics.
func decodeFamily(b []byte, metrics [][]byte) (familyHeader, [][]byte, error) {
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
			metrics = append(metrics, f.b)
		}
	}
	return h, metrics, nil
}

// decode fills m from a Metric message.
func (m *metric) decode(b []byte) error {
	m.reset()
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		if f.typ == protowire.BytesType {
			switch f.num {
			case 1:
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
				err = decodeSummary(&m.summary, f.b)
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
			err = m.decodeExemplar(&c.exemplar, f.b)
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

// decodeExemplar decodes an Exemplar message into e; its labels go to m.exemplarLabels.
func (m *metric) decodeExemplar(e *exemplar, b []byte) error {
	// e's labels must end the arena to grow there: move them if they don't (a second encoding
	// of the same exemplar, merged into it after another exemplar's labels).
	if n := len(e.labels); n > 0 && (len(m.exemplarLabels) == 0 || &e.labels[n-1] != &m.exemplarLabels[len(m.exemplarLabels)-1]) {
		m.exemplarLabels = append(m.exemplarLabels, e.labels...)
	}
	start := len(m.exemplarLabels) - len(e.labels)
	defer func() {
		e.labels = m.exemplarLabels[start:len(m.exemplarLabels):len(m.exemplarLabels)]
	}()
	for len(b) > 0 {
		f, rest, err := nextField(b)
		if err != nil {
			return err
		}
		b = rest
		switch {
		case f.num == 1 && f.typ == protowire.BytesType:
			l, err := decodeLabelPair(f.b)
			if err != nil {
				return err
			}
			m.exemplarLabels = append(m.exemplarLabels, l)
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

func decodeSummary(s *summary, b []byte) error {
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
				h.negativeDeltas = append(h.negativeDeltas, protowire.DecodeZigZag(f.v))
			case 13:
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
				h.negativeCounts = append(h.negativeCounts, f.double())
			case 14:
				h.positiveCounts = append(h.positiveCounts, f.double())
			}
		case protowire.BytesType:
			switch f.num {
			case 3:
				h.buckets = append(h.buckets, bucket{})
				err = m.decodeBucket(&h.buckets[len(h.buckets)-1], f.b)
			case 9:
				h.negativeSpans = append(h.negativeSpans, span{})
				err = decodeSpan(&h.negativeSpans[len(h.negativeSpans)-1], f.b)
			case 12:
				h.positiveSpans = append(h.positiveSpans, span{})
				err = decodeSpan(&h.positiveSpans[len(h.positiveSpans)-1], f.b)
			case 10:
				h.negativeDeltas, err = appendPackedZigZag(h.negativeDeltas, f.b)
			case 13:
				h.positiveDeltas, err = appendPackedZigZag(h.positiveDeltas, f.b)
			case 11:
				h.negativeCounts, err = appendPackedDoubles(h.negativeCounts, f.b)
			case 14:
				h.positiveCounts, err = appendPackedDoubles(h.positiveCounts, f.b)
			case 15:
				h.hasCreated = true
				err = decodeTimestamp(&h.created, f.b)
			case 16:
				h.exemplars = append(h.exemplars, exemplar{})
				err = m.decodeExemplar(&h.exemplars[len(h.exemplars)-1], f.b)
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
			if err := m.decodeExemplar(&bk.exemplar, f.b); err != nil {
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

// appendPackedZigZag appends the packed sint64 values of b.
func appendPackedZigZag(dst []int64, b []byte) ([]int64, error) {
	for len(b) > 0 {
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return dst, errWire
		}
		dst = append(dst, protowire.DecodeZigZag(v))
		b = b[n:]
	}
	return dst, nil
}

// appendPackedDoubles appends the packed double values of b.
func appendPackedDoubles(dst []float64, b []byte) ([]float64, error) {
	for len(b) > 0 {
		v, n := protowire.ConsumeFixed64(b)
		if n < 0 {
			return dst, errWire
		}
		dst = append(dst, math.Float64frombits(v))
		b = b[n:]
	}
	return dst, nil
}
