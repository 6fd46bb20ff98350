package store

import (
	"math"

	dto "github.com/prometheus/client_model/go"
)

// metric is one pushed Metric message as validation and rendering read it: every field of
// io.prometheus.client.Metric with its presence (a proto2 field that is present is encoded again
// even when it holds its zero value), in buffers reused from one metric to the next. A push fills
// it from decoded objects (fromDTO) or straight from protobuf bytes (decodeMetric), so both kinds
// of body take the same checks and render to the same bytes.
type metric struct {
	labels []Label // as pushed, before the grouping labels are merged in
	// Which value messages are present, and timestamp_ms (which pushes may not carry).
	hasGauge, hasCounter, hasSummary, hasUntyped, hasHistogram, hasTimestamp bool
	timestampMs                                                              int64

	gauge, untyped value
	counter        counter
	summary        summary
	histogram      histogram
	// The labels of the exemplars of the metric's buckets and native histogram, sub-sliced;
	// the counter's exemplar has its own: a counter given twice merges its exemplar, which
	// then grows at the end of its own buffer whatever came between.
	exemplarLabels, counterExemplarLabels []Label

	// Decoding: what it may append (see bounds), the message, whether presize ran.
	lim      bounds
	raw      []byte
	presized bool
}

// bounds are the most elements decoding appends to a metric's repeated fields, from the store's
// limits: a protobuf push stops at the first element past one (errBounds) instead of holding
// the rest, so that a body can't take more memory than the limits let a push have. counts
// then says which bound it passed, and checkCounts refuses the push naming the limit.
type bounds struct {
	labels   int // the metric's labels: one less than the label limit (its name counts)
	classic  int // buckets, and quantiles: the series left of the group's limit, less 2 (sum, count)
	elements int // native spans and buckets per side, native exemplars, exemplar labels: the series limit
}

// noBounds decodes whatever a message holds.
var noBounds = bounds{labels: math.MaxInt, classic: math.MaxInt, elements: math.MaxInt}

// value is a Gauge or an Untyped message.
type value struct {
	v    float64
	hasV bool
}

type counter struct {
	v                 float64
	exemplar          exemplar
	created           timestamp
	hasV, hasExemplar bool
	hasCreated        bool
}

// timestamp is a google.protobuf.Timestamp (proto3: fields holding zero are not encoded).
type timestamp struct {
	seconds int64
	nanos   int32
}

type exemplar struct {
	labels      []Label
	v           float64
	ts          timestamp
	hasV, hasTS bool
}

type summary struct {
	count      uint64
	sum        float64
	hasCount   bool
	hasSum     bool
	quantiles  []quantile
	created    timestamp
	hasCreated bool
}

type quantile struct {
	q, v       float64
	hasQ, hasV bool
}

type histogram struct {
	count, zeroCount                uint64
	countFloat, sum                 float64
	zeroThreshold, zeroCountFloat   float64
	schema                          int32
	hasCount, hasCountFloat, hasSum bool
	hasSchema, hasZeroThreshold     bool
	hasZeroCount, hasZeroCountFloat bool
	hasCreated                      bool
	created                         timestamp
	buckets                         []bucket
	negativeSpans, positiveSpans    []span
	negativeDeltas, positiveDeltas  []int64
	negativeCounts, positiveCounts  []float64
	exemplars                       []exemplar
}

type bucket struct {
	count                          uint64
	countFloat, upper              float64
	hasCount, hasCountFloat, hasUp bool
	hasExemplar                    bool
	exemplar                       exemplar
}

type span struct {
	offset            int32
	length            uint32
	hasOffset, hasLen bool
}

// Getters as dto's, for the fields whose float and integer forms combine.

func (b *bucket) cumulative() float64 {
	if b.countFloat != 0 {
		return b.countFloat
	}
	return float64(b.count)
}

func (h *histogram) sampleCount() float64 {
	if h.countFloat != 0 {
		return h.countFloat
	}
	return float64(h.count)
}

// reset empties m for the next metric, keeping its buffers.
func (m *metric) reset() {
	h := &m.histogram
	*m = metric{
		labels:                m.labels[:0],
		exemplarLabels:        m.exemplarLabels[:0],
		counterExemplarLabels: m.counterExemplarLabels[:0],
		summary:               summary{quantiles: m.summary.quantiles[:0]},
		histogram: histogram{
			buckets:        h.buckets[:0],
			negativeSpans:  h.negativeSpans[:0],
			positiveSpans:  h.positiveSpans[:0],
			negativeDeltas: h.negativeDeltas[:0],
			positiveDeltas: h.positiveDeltas[:0],
			negativeCounts: h.negativeCounts[:0],
			positiveCounts: h.positiveCounts[:0],
			exemplars:      h.exemplars[:0],
		},
	}
}

// release drops what m's buffers point to (the strings of a body that goes away), keeping the
// buffers.
func (m *metric) release() {
	clear(m.labels[:cap(m.labels)])
	clear(m.exemplarLabels[:cap(m.exemplarLabels)])
	clear(m.counterExemplarLabels[:cap(m.counterExemplarLabels)])
	h := &m.histogram
	clear(h.buckets[:cap(h.buckets)])
	clear(h.exemplars[:cap(h.exemplars)])
	m.reset()
}

// large reports whether m's buffers grew past what ordinary metrics need (a histogram of
// thousands of buckets): such buffers are not worth keeping for the next push.
func (m *metric) large() bool {
	const most = 1 << 14
	h := &m.histogram
	return cap(m.labels) > most || cap(m.exemplarLabels) > most || cap(m.counterExemplarLabels) > most || cap(m.summary.quantiles) > most ||
		cap(h.buckets) > most || cap(h.exemplars) > most || cap(h.negativeSpans) > most || cap(h.positiveSpans) > most ||
		cap(h.negativeDeltas) > most || cap(h.positiveDeltas) > most || cap(h.negativeCounts) > most || cap(h.positiveCounts) > most
}

// fromDTO fills m from a decoded Metric.
func (m *metric) fromDTO(in *dto.Metric) {
	m.reset()
	for _, lp := range in.Label {
		m.labels = append(m.labels, Label{lp.GetName(), lp.GetValue()})
	}
	m.hasTimestamp, m.timestampMs = in.TimestampMs != nil, in.GetTimestampMs()
	if g := in.Gauge; g != nil {
		m.hasGauge, m.gauge = true, value{g.GetValue(), g.Value != nil}
	}
	if u := in.Untyped; u != nil {
		m.hasUntyped, m.untyped = true, value{u.GetValue(), u.Value != nil}
	}
	if c := in.Counter; c != nil {
		m.hasCounter = true
		mc := &m.counter
		mc.v, mc.hasV = c.GetValue(), c.Value != nil
		if c.Exemplar != nil {
			mc.hasExemplar = true
			exemplarFromDTO(&mc.exemplar, c.Exemplar, &m.counterExemplarLabels)
		}
		if ct := c.CreatedTimestamp; ct != nil {
			mc.hasCreated, mc.created = true, timestamp{ct.GetSeconds(), ct.GetNanos()}
		}
	}
	if s := in.Summary; s != nil {
		m.hasSummary = true
		ms := &m.summary
		ms.count, ms.hasCount = s.GetSampleCount(), s.SampleCount != nil
		ms.sum, ms.hasSum = s.GetSampleSum(), s.SampleSum != nil
		if ct := s.CreatedTimestamp; ct != nil {
			ms.hasCreated, ms.created = true, timestamp{ct.GetSeconds(), ct.GetNanos()}
		}
		for _, q := range s.Quantile {
			ms.quantiles = append(ms.quantiles, quantile{q: q.GetQuantile(), v: q.GetValue(), hasQ: q != nil && q.Quantile != nil, hasV: q != nil && q.Value != nil})
		}
	}
	if h := in.Histogram; h != nil {
		m.hasHistogram = true
		m.histogramFromDTO(&m.histogram, h)
	}
}

func (m *metric) histogramFromDTO(h *histogram, in *dto.Histogram) {
	h.count, h.hasCount = in.GetSampleCount(), in.SampleCount != nil
	h.countFloat, h.hasCountFloat = in.GetSampleCountFloat(), in.SampleCountFloat != nil
	h.sum, h.hasSum = in.GetSampleSum(), in.SampleSum != nil
	h.schema, h.hasSchema = in.GetSchema(), in.Schema != nil
	h.zeroThreshold, h.hasZeroThreshold = in.GetZeroThreshold(), in.ZeroThreshold != nil
	h.zeroCount, h.hasZeroCount = in.GetZeroCount(), in.ZeroCount != nil
	h.zeroCountFloat, h.hasZeroCountFloat = in.GetZeroCountFloat(), in.ZeroCountFloat != nil
	if ct := in.CreatedTimestamp; ct != nil {
		h.hasCreated, h.created = true, timestamp{ct.GetSeconds(), ct.GetNanos()}
	}
	for _, b := range in.Bucket {
		h.buckets = append(h.buckets, bucket{})
		if b == nil {
			continue
		}
		mb := &h.buckets[len(h.buckets)-1]
		mb.count, mb.hasCount = b.GetCumulativeCount(), b.CumulativeCount != nil
		mb.countFloat, mb.hasCountFloat = b.GetCumulativeCountFloat(), b.CumulativeCountFloat != nil
		mb.upper, mb.hasUp = b.GetUpperBound(), b.UpperBound != nil
		if b.Exemplar != nil {
			mb.hasExemplar = true
			exemplarFromDTO(&mb.exemplar, b.Exemplar, &m.exemplarLabels)
		}
	}
	h.negativeSpans = spansFromDTO(h.negativeSpans, in.NegativeSpan)
	h.positiveSpans = spansFromDTO(h.positiveSpans, in.PositiveSpan)
	h.negativeDeltas = append(h.negativeDeltas, in.NegativeDelta...)
	h.positiveDeltas = append(h.positiveDeltas, in.PositiveDelta...)
	h.negativeCounts = append(h.negativeCounts, in.NegativeCount...)
	h.positiveCounts = append(h.positiveCounts, in.PositiveCount...)
	for _, e := range in.Exemplars {
		h.exemplars = append(h.exemplars, exemplar{})
		if e != nil {
			exemplarFromDTO(&h.exemplars[len(h.exemplars)-1], e, &m.exemplarLabels)
		}
	}
}

func spansFromDTO(dst []span, in []*dto.BucketSpan) []span {
	for _, s := range in {
		dst = append(dst, span{offset: s.GetOffset(), length: s.GetLength(), hasOffset: s != nil && s.Offset != nil, hasLen: s != nil && s.Length != nil})
	}
	return dst
}

// exemplarFromDTO fills e from in; its labels go to the end of buf.
func exemplarFromDTO(e *exemplar, in *dto.Exemplar, buf *[]Label) {
	start := len(*buf)
	for _, lp := range in.Label {
		*buf = append(*buf, Label{lp.GetName(), lp.GetValue()})
	}
	// No room to grow: appending to one exemplar's labels must not overwrite the next's.
	e.labels = (*buf)[start:len(*buf):len(*buf)]
	e.v, e.hasV = in.GetValue(), in.Value != nil
	if ts := in.Timestamp; ts != nil {
		e.hasTS, e.ts = true, timestamp{ts.GetSeconds(), ts.GetNanos()}
	}
}
