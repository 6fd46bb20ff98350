package store

import (
	"bytes"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Health series, one per group, labelled with the group's grouping labels. push_time_seconds and
// push_failure_time_seconds keep Pushgateway's names so that existing alerts keep working.
const (
	MetricPushTime      = "push_time_seconds"
	MetricFailureTime   = "push_failure_time_seconds"
	MetricGroupFresh    = "opview_relay_group_fresh"
	MetricGroupSeries   = "opview_relay_group_series"
	MetricGroupPushes   = "opview_relay_group_pushes_total"
	MetricGroupFailures = "opview_relay_group_push_failures_total"
	// ReservedPrefix starts every metric name of the relay's own; pushes may not use it.
	ReservedPrefix = "opview_relay_"
)

type healthFamily struct {
	name string
	typ  dto.MetricType
	help string
	// value of the group's series
	value func(st GroupStatus) float64
}

var healthFamilies = []healthFamily{
	{MetricPushTime, dto.MetricType_GAUGE, "Last Unix time when the group was changed by a successful push.",
		func(st GroupStatus) float64 { return unixSeconds(st.LastPush) }},
	{MetricFailureTime, dto.MetricType_GAUGE, "Last Unix time when a push to the group was refused (0 if never).",
		func(st GroupStatus) float64 { return unixSeconds(st.LastFailure) }},
	{MetricGroupFresh, dto.MetricType_GAUGE, "1 while the group's samples are exposed, 0 once it went quiet for longer than the group TTL (until forgotten).",
		func(st GroupStatus) float64 { return boolFloat(st.Fresh) }},
	{MetricGroupSeries, dto.MetricType_GAUGE, "Series the group currently exposes.",
		func(st GroupStatus) float64 { return float64(st.Series) }},
	{MetricGroupPushes, dto.MetricType_COUNTER, "Successful pushes to the group.",
		func(st GroupStatus) float64 { return float64(st.Pushes) }},
	{MetricGroupFailures, dto.MetricType_COUNTER, "Refused pushes to the group.",
		func(st GroupStatus) float64 { return float64(st.Failures) }},
}

func init() {
	// walkLocked merges sorted lists.
	sort.Slice(healthFamilies, func(i, j int) bool { return healthFamilies[i].name < healthFamilies[j].name })
}

func isReservedName(name string) bool {
	if strings.HasPrefix(name, ReservedPrefix) {
		return true
	}
	for _, h := range healthFamilies {
		if h.name == name {
			return true
		}
	}
	return false
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// walkLocked calls fn for every family to expose, in name order: stored families (f non-nil,
// with their fresh parts in group order) merged with the extra families (e non-nil) of the same
// name. Health families (f.health >= 0) are visited while any group exists; their rows are
// rendered by the writers.
func (s *MemoryStore) walkLocked(p *plan, extra []*dto.MetricFamily, now time.Time, fn func(f *family, fresh []entry, e *dto.MetricFamily) error) error {
	names := s.sortedNamesLocked()
	i, j := 0, 0
	for i < len(names) || j < len(extra) {
		var f *family
		var e *dto.MetricFamily
		switch {
		case j == len(extra) || (i < len(names) && names[i] < extra[j].GetName()):
			f = s.families[names[i]]
			i++
		case i == len(names) || extra[j].GetName() < names[i]:
			e = extra[j]
			j++
		default:
			f, e = s.families[names[i]], extra[j]
			i++
			j++
		}
		if e != nil && len(e.Metric) == 0 {
			e = nil
			if f == nil {
				continue
			}
		}
		fresh := p.fresh[:0]
		if f != nil {
			for _, en := range f.parts {
				if s.fresh(en.g, now) {
					fresh = append(fresh, en)
				}
			}
			p.fresh = fresh
			if len(fresh) == 0 && e == nil && (f.health < 0 || len(s.order) == 0) {
				continue
			}
		}
		if err := fn(f, fresh, e); err != nil {
			return err
		}
	}
	return nil
}

// plan is the list of byte slices a scrape writes. It is built under the read lock from
// immutable pre-rendered parts and written after the lock is released, so a slow scraper never
// holds up pushes. Small pieces rendered per scrape (length prefixes, health rows, the relay's
// own metrics) go to an arena; plans are pooled, so a steady scrape allocates nothing per stored
// series or group.
type plan struct {
	chunks [][]byte
	arena  []byte
	fresh  []entry      // scratch of walkLocked
	tmp    bytes.Buffer // scratch for the relay's own families
	tmpb   []byte       // scratch for protobuf encodings
	out    []byte       // copy buffer of writeTo
	own    ownText      // scratch for the relay's own families in the text format
}

// ownText renders the relay's own families (client_golang's dto objects) in the text format
// with the renderer of the stored families, which gives the bytes expfmt.MetricFamilyToText
// gives (render_test.go, TestOwnFamiliesRenderAsExpfmt).
type ownText struct {
	r      textRenderer
	m      metric
	labels []byte
}

// append appends e's samples, preceded by its HELP and TYPE lines if header, or reports false
// if e has a name expfmt would quote (not a legacy one): such families go through expfmt.
func (o *ownText) append(b []byte, e *dto.MetricFamily, header bool) ([]byte, bool) {
	name, typ := e.GetName(), e.GetType()
	if !model.LegacyValidation.IsValidMetricName(name) {
		return b, false
	}
	for _, m := range e.Metric {
		for _, l := range m.Label {
			if !model.LegacyValidation.IsValidLabelName(l.GetName()) {
				return b, false
			}
		}
	}
	if header {
		b = appendTextHeader(b, name, typ, e.GetHelp(), e.Help != nil)
	}
	for _, dm := range e.Metric {
		o.m.fromDTO(dm)
		o.labels = appendLabelsText(o.labels[:0], o.m.labels)
		b = o.r.appendMetric(b, name, typ, o.labels, &o.m)
	}
	return b, true
}

// appendEscapedHelp appends a HELP text escaped for the text format (backslash and newline).
func appendEscapedHelp(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return b
}

var planPool = sync.Pool{New: func() any { return &plan{} }}

func (p *plan) reset() {
	clear(p.chunks)
	p.chunks = p.chunks[:0]
	p.arena = p.arena[:0]
	clear(p.fresh[:cap(p.fresh)])
	p.tmp.Reset()
	p.own.m.release() // its strings are the gathered families'
}

// grab returns an empty slice with room for n bytes that later grabs won't overwrite.
func (p *plan) grab(n int) []byte {
	if cap(p.arena)-len(p.arena) < n {
		// The old arena stays referenced by the chunks cut from it.
		p.arena = make([]byte, 0, max(n, 2*cap(p.arena), 64<<10))
	}
	return p.arena[len(p.arena):len(p.arena):cap(p.arena)]
}

// keep records b, which must have been built from grab without growing past its room, as the
// next chunk.
func (p *plan) keep(b []byte) {
	if len(b) == 0 {
		return
	}
	if len(p.arena)+len(b) <= cap(p.arena) {
		p.arena = p.arena[:len(p.arena)+len(b)]
	}
	p.chunks = append(p.chunks, b)
}

// SizeHinter is implemented by writers that want the exposition's length before its first byte:
// the HTTP layer sets Content-Length from it.
type SizeHinter interface{ SizeHint(n int64) }

// writeBufferSize is the copy buffer of a scrape: few large writes to the connection (fewer
// wake-ups of the scraper; 1 MiB measured closer to the bare-bytes limit than 64 KiB or 256 KiB).
const writeBufferSize = 1 << 20

func (p *plan) writeTo(w io.Writer) error {
	if sh, ok := w.(SizeHinter); ok {
		var n int64
		for _, c := range p.chunks {
			n += int64(len(c))
		}
		sh.SizeHint(n)
	}
	if p.out == nil {
		p.out = make([]byte, 0, writeBufferSize)
	}
	buf := p.out[:0]
	for _, c := range p.chunks {
		if len(buf)+len(c) > cap(buf) {
			if len(buf) > 0 {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
			if len(c) >= cap(buf) {
				if _, err := w.Write(c); err != nil {
					return err
				}
				continue
			}
		}
		buf = append(buf, c...)
	}
	if len(buf) > 0 {
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// copyTmp keeps a copy of p.tmp's contents from offset off as a chunk.
func (p *plan) copyTmp(off int) {
	b := p.tmp.Bytes()[off:]
	p.keep(append(p.grab(len(b)), b...))
}

// WriteText implements Store: the Prometheus text format, version 0.0.4.
func (s *MemoryStore) WriteText(w io.Writer, extra []*dto.MetricFamily) error {
	p := planPool.Get().(*plan)
	defer func() { p.reset(); planPool.Put(p) }()
	s.mu.RLock()
	now := s.now()
	err := s.walkLocked(p, extra, now, func(f *family, fresh []entry, e *dto.MetricFamily) error {
		if f == nil {
			var ok bool
			if p.tmpb, ok = p.own.append(p.tmpb[:0], e, true); ok {
				p.keep(append(p.grab(len(p.tmpb)), p.tmpb...))
				return nil
			}
			p.tmp.Reset()
			if _, err := expfmt.MetricFamilyToText(&p.tmp, e); err != nil {
				return err
			}
			p.copyTmp(0)
			return nil
		}
		p.chunks = append(p.chunks, f.textHeader)
		for _, en := range fresh {
			p.chunks = append(p.chunks, en.pt.text())
		}
		if f.health >= 0 {
			s.textHealthLocked(p, f, now)
		}
		if e != nil {
			// e's sample lines without its HELP and TYPE lines (the stored family's header
			// is written above).
			var ok bool
			if p.tmpb, ok = p.own.append(p.tmpb[:0], e, false); ok {
				p.keep(append(p.grab(len(p.tmpb)), p.tmpb...))
				return nil
			}
			p.tmp.Reset()
			if _, err := expfmt.MetricFamilyToText(&p.tmp, &dto.MetricFamily{Name: e.Name, Type: e.Type, Metric: e.Metric}); err != nil {
				return err
			}
			off := bytes.IndexByte(p.tmp.Bytes(), '\n') + 1
			p.copyTmp(off)
		}
		return nil
	})
	s.mu.RUnlock()
	if err != nil {
		return err
	}
	return p.writeTo(w)
}

// textHealthLocked renders one health family's rows, one per group.
func (s *MemoryStore) textHealthLocked(p *plan, f *family, now time.Time) {
	h := healthFamilies[f.health]
	for _, g := range s.order {
		b := p.grab(len(f.name) + len(g.textLabels) + 2 + 32)
		b = append(b, f.name...)
		b = append(b, g.textLabels...)
		b = append(b, ' ')
		b = strconv.AppendFloat(b, h.value(s.statusLocked(g, now)), 'g', -1, 64)
		b = append(b, '\n')
		p.keep(b)
	}
}

// protoHealthLocked renders one health family's Metric fields, one per group, and returns
// their size.
func (s *MemoryStore) protoHealthLocked(p *plan, f *family, now time.Time) int {
	h := healthFamilies[f.health]
	valueField := protowire.Number(2) // Metric.gauge
	if h.typ == dto.MetricType_COUNTER {
		valueField = 3 // Metric.counter
	}
	size := 0
	for _, g := range s.order {
		// Metric{label..., gauge|counter: {value: v}}; the value message is 9 bytes.
		n := len(g.protoLabels) + 2 + 9
		b := p.grab(1 + binaryMaxVarintLen + n)
		b = protowire.AppendTag(b, 4, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(n))
		b = append(b, g.protoLabels...)
		b = protowire.AppendTag(b, valueField, protowire.BytesType)
		b = protowire.AppendVarint(b, 9)
		b = protowire.AppendTag(b, 1, protowire.Fixed64Type)
		b = protowire.AppendFixed64(b, math.Float64bits(h.value(s.statusLocked(g, now))))
		p.keep(b)
		size += len(b)
	}
	return size
}

// WriteProto implements Store: length-delimited io.prometheus.client.MetricFamily messages.
func (s *MemoryStore) WriteProto(w io.Writer, extra []*dto.MetricFamily) error {
	p := planPool.Get().(*plan)
	defer func() { p.reset(); planPool.Put(p) }()
	if err := s.protoPlan(p, extra, nil); err != nil {
		return err
	}
	return p.writeTo(w)
}

// familyChunks locates one family in a protobuf plan: p.chunks[start:end] are its length prefix,
// header and Metric fields, or (whole) a single chunk holding the whole delimited message.
type familyChunks struct {
	name       string
	typ        dto.MetricType
	start, end int
	whole      bool
}

// protoPlan fills p with the protobuf exposition; with fams non-nil it also records where each
// family is.
func (s *MemoryStore) protoPlan(p *plan, extra []*dto.MetricFamily, fams *[]familyChunks) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now()
	return s.walkLocked(p, extra, now, func(f *family, fresh []entry, e *dto.MetricFamily) error {
		var err error
		start := len(p.chunks)
		if f == nil {
			if p.tmpb, err = marshalOpts.MarshalAppend(p.tmpb[:0], e); err != nil {
				return err
			}
			out := p.grab(len(p.tmpb) + binaryMaxVarintLen)
			out = protowire.AppendVarint(out, uint64(len(p.tmpb)))
			p.keep(append(out, p.tmpb...))
			if fams != nil {
				*fams = append(*fams, familyChunks{name: e.GetName(), typ: e.GetType(), start: start, end: len(p.chunks), whole: true})
			}
			return nil
		}
		// The family's length prefix comes first but depends on what follows: reserve its
		// chunk and fill it in at the end.
		prefix := len(p.chunks)
		p.chunks = append(p.chunks, nil, f.protoHeader)
		size := len(f.protoHeader)
		for _, en := range fresh {
			proto := en.pt.proto()
			p.chunks = append(p.chunks, proto)
			size += len(proto)
		}
		if f.health >= 0 {
			size += s.protoHealthLocked(p, f, now)
		}
		if e != nil {
			for _, m := range e.Metric {
				if p.tmpb, err = marshalOpts.MarshalAppend(p.tmpb[:0], m); err != nil {
					return err
				}
				b := p.grab(1 + binaryMaxVarintLen + len(p.tmpb))
				b = protowire.AppendTag(b, 4, protowire.BytesType)
				b = protowire.AppendBytes(b, p.tmpb)
				p.keep(b)
				size += len(b)
			}
		}
		b := protowire.AppendVarint(p.grab(binaryMaxVarintLen), uint64(size))
		p.arena = p.arena[:len(p.arena)+len(b)]
		p.chunks[prefix] = b
		if fams != nil {
			*fams = append(*fams, familyChunks{name: f.name, typ: f.typ, start: start, end: len(p.chunks)})
		}
		return nil
	})
}

// openMetricsBatch bounds the protobuf bytes decoded at once when encoding OpenMetrics.
const openMetricsBatch = 1 << 20

// WriteOpenMetrics implements Store, in the OpenMetrics format given (its version and escaping).
// OpenMetrics has no pre-rendered form: each family is decoded and encoded per scrape, a bounded
// batch of its Metric messages at a time (the header only with the first), so a scrape needs the
// memory of one batch, not of the exposition.
//
// One clash OpenMetrics cannot express is resolved on the way: a counter X_total is the
// OpenMetrics family X, so a second family named X (go_memstats_alloc_bytes next to
// go_memstats_alloc_bytes_total, in every Go program) would repeat X's metadata and make the
// exposition unparseable. Such counters are sent as unknown-typed X_total: same samples, same
// series names, one family each.
func (s *MemoryStore) WriteOpenMetrics(w io.Writer, extra []*dto.MetricFamily, format expfmt.Format) error {
	p := planPool.Get().(*plan)
	defer func() { p.reset(); planPool.Put(p) }()
	var fams []familyChunks
	if err := s.protoPlan(p, extra, &fams); err != nil {
		return err
	}
	names := make(map[string]bool, len(fams))
	for _, fc := range fams {
		names[fc.name] = true
	}
	var batch, out bytes.Buffer
	enc := expfmt.NewEncoder(&out, format)
	encode := func(fc familyChunks, b []byte, first bool) error {
		mf := &dto.MetricFamily{}
		if err := proto.Unmarshal(b, mf); err != nil {
			return err
		}
		if base, ok := strings.CutSuffix(fc.name, "_total"); ok && fc.typ == dto.MetricType_COUNTER && names[base] {
			mf.Type = dto.MetricType_UNTYPED.Enum()
			for _, m := range mf.Metric {
				m.Untyped, m.Counter = &dto.Untyped{Value: m.Counter.Value}, nil
			}
		}
		out.Reset()
		if err := enc.Encode(mf); err != nil {
			return err
		}
		text := out.Bytes()
		for !first && bytes.HasPrefix(text, []byte("# ")) {
			i := bytes.IndexByte(text, '\n')
			if i < 0 {
				break
			}
			text = text[i+1:]
		}
		_, err := w.Write(text)
		return err
	}
	for _, fc := range fams {
		if fc.whole {
			b := p.chunks[fc.start]
			_, n := protowire.ConsumeVarint(b)
			if err := encode(fc, b[n:], true); err != nil {
				return err
			}
			continue
		}
		header, first := p.chunks[fc.start+1], true
		batch.Reset()
		batch.Write(header)
		for _, c := range p.chunks[fc.start+2 : fc.end] {
			if batch.Len() > len(header) && batch.Len()+len(c) > openMetricsBatch {
				if err := encode(fc, batch.Bytes(), first); err != nil {
					return err
				}
				first = false
				batch.Reset()
				batch.Write(header)
			}
			batch.Write(c)
		}
		if err := encode(fc, batch.Bytes(), first); err != nil {
			return err
		}
	}
	out.Reset()
	if c, ok := enc.(expfmt.Closer); ok {
		if err := c.Close(); err != nil {
			return err
		}
	}
	_, err := w.Write(out.Bytes())
	return err
}

var marshalOpts = proto.MarshalOptions{}

const binaryMaxVarintLen = 10

func typeName(t dto.MetricType) string {
	switch t {
	case dto.MetricType_COUNTER:
		return "counter"
	case dto.MetricType_GAUGE:
		return "gauge"
	case dto.MetricType_SUMMARY:
		return "summary"
	case dto.MetricType_HISTOGRAM:
		return "histogram"
	case dto.MetricType_GAUGE_HISTOGRAM:
		return "gaugehistogram"
	}
	return "untyped"
}

func textHeader(name string, typ dto.MetricType, help string) []byte {
	return appendTextHeader(nil, name, typ, help, help != "")
}

// appendTextHeader appends a family's HELP line (if withHelp) and TYPE line.
func appendTextHeader(b []byte, name string, typ dto.MetricType, help string, withHelp bool) []byte {
	if withHelp {
		b = append(b, "# HELP "...)
		b = append(b, name...)
		b = append(b, ' ')
		b = appendEscapedHelp(b, help)
		b = append(b, '\n')
	}
	b = append(b, "# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, typeName(typ)...)
	return append(b, '\n')
}

func protoHeader(name string, typ dto.MetricType, help string) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, name)
	if help != "" {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendString(b, help)
	}
	b = protowire.AppendTag(b, 3, protowire.VarintType)
	b = protowire.AppendVarint(b, uint64(typ))
	return b
}
