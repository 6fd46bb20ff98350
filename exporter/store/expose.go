package store

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/encoding/protodelim"
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
	{MetricGroupFresh, dto.MetricType_GAUGE, "1 while the group's samples are exposed, 0 once it went quiet for longer than --group.ttl (until forgotten).",
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

// healthLocked builds the health families of every stored group.
func (s *MemoryStore) healthLocked(now time.Time) []*dto.MetricFamily {
	if len(s.groups) == 0 {
		return nil
	}
	sts := make([]GroupStatus, 0, len(s.groups))
	labels := make([][]*dto.LabelPair, 0, len(s.groups))
	for _, g := range s.groups {
		sts = append(sts, s.statusLocked(g, now))
		labels = append(labels, g.labels)
	}
	out := make([]*dto.MetricFamily, 0, len(healthFamilies))
	for _, h := range healthFamilies {
		mf := &dto.MetricFamily{Name: proto.String(h.name), Help: proto.String(h.help), Type: h.typ.Enum()}
		for i, st := range sts {
			v := h.value(st)
			m := &dto.Metric{Label: labels[i]}
			if h.typ == dto.MetricType_COUNTER {
				m.Counter = &dto.Counter{Value: &v}
			} else {
				m.Gauge = &dto.Gauge{Value: &v}
			}
			mf.Metric = append(mf.Metric, m)
		}
		out = append(out, mf)
	}
	return out
}

// mergeSorted merges two lists of families sorted by name; b's families have distinct names from
// each other and from a's (health families versus the relay's registry).
func mergeSorted(a, b []*dto.MetricFamily) []*dto.MetricFamily {
	if len(b) == 0 {
		return a
	}
	out := make([]*dto.MetricFamily, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		if j == len(b) || (i < len(a) && a[i].GetName() < b[j].GetName()) {
			out = append(out, a[i])
			i++
		} else {
			out = append(out, b[j])
			j++
		}
	}
	return out
}

// walkLocked calls fn for every family to expose, in name order: stored families (f non-nil,
// with their fresh parts) merged with the extra families (e non-nil) of the same name.
func (s *MemoryStore) walkLocked(extra []*dto.MetricFamily, now time.Time, fn func(f *family, fresh []*part, e *dto.MetricFamily) error) error {
	extra = mergeSorted(extra, s.healthLocked(now))
	names := s.sortedNamesLocked()
	var fresh []*part
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
		fresh = fresh[:0]
		if f != nil {
			for g, pt := range f.parts {
				if s.fresh(g, now) {
					fresh = append(fresh, pt)
				}
			}
			if len(fresh) == 0 && e == nil {
				continue
			}
		}
		if e != nil && len(e.Metric) == 0 && len(fresh) == 0 {
			continue
		}
		if err := fn(f, fresh, e); err != nil {
			return err
		}
	}
	return nil
}

// plan is the list of byte slices a scrape writes. It is built under the read lock from
// immutable pre-rendered parts and written after the lock is released, so a slow scraper never
// holds up pushes. Small pieces rendered per scrape (headers' length prefixes, the relay's own
// metrics) come from an arena so that a steady scrape allocates nothing per stored series.
type plan struct {
	chunks [][]byte
	arena  []byte
}

var planPool = sync.Pool{New: func() any { return &plan{} }}

func (p *plan) reset() {
	clear(p.chunks)
	p.chunks = p.chunks[:0]
	p.arena = p.arena[:0]
}

// grab returns an empty slice with room for n bytes that later grabs won't overwrite.
func (p *plan) grab(n int) []byte {
	if cap(p.arena)-len(p.arena) < n {
		p.arena = make([]byte, 0, max(n, 64<<10))
	}
	b := p.arena[len(p.arena) : len(p.arena) : len(p.arena)+n]
	return b
}

// keep records b, which must have been built from grab, as the next chunk.
func (p *plan) keep(b []byte) {
	if len(b) == 0 {
		return
	}
	if len(p.arena)+len(b) <= cap(p.arena) && &p.arena[:len(p.arena)+1][len(p.arena)] == &b[0] {
		p.arena = p.arena[:len(p.arena)+len(b)]
	}
	p.chunks = append(p.chunks, b)
}

func (p *plan) writeTo(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	for _, c := range p.chunks {
		if _, err := bw.Write(c); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// WriteText implements Store: the Prometheus text format, version 0.0.4.
func (s *MemoryStore) WriteText(w io.Writer, extra []*dto.MetricFamily) error {
	p := planPool.Get().(*plan)
	defer func() { p.reset(); planPool.Put(p) }()
	var buf bytes.Buffer
	s.mu.RLock()
	err := s.walkLocked(extra, s.now(), func(f *family, fresh []*part, e *dto.MetricFamily) error {
		if f == nil {
			buf.Reset()
			if _, err := expfmt.MetricFamilyToText(&buf, e); err != nil {
				return err
			}
			p.keep(append(p.grab(buf.Len()), buf.Bytes()...))
			return nil
		}
		p.chunks = append(p.chunks, f.textHeader)
		for _, pt := range fresh {
			p.chunks = append(p.chunks, pt.text)
		}
		if e != nil && len(e.Metric) > 0 {
			buf.Reset()
			if err := writeTextSamples(&buf, e); err != nil {
				return err
			}
			p.keep(append(p.grab(buf.Len()), buf.Bytes()...))
		}
		return nil
	})
	s.mu.RUnlock()
	if err != nil {
		return err
	}
	return p.writeTo(w)
}

// writeTextSamples writes e's sample lines without its HELP and TYPE lines.
func writeTextSamples(w io.Writer, e *dto.MetricFamily) error {
	var buf bytes.Buffer
	noHelp := &dto.MetricFamily{Name: e.Name, Type: e.Type, Metric: e.Metric}
	if _, err := expfmt.MetricFamilyToText(&buf, noHelp); err != nil {
		return err
	}
	b := buf.Bytes()
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[i+1:]
	}
	_, err := w.Write(b)
	return err
}

// WriteProto implements Store: length-delimited io.prometheus.client.MetricFamily messages.
func (s *MemoryStore) WriteProto(w io.Writer, extra []*dto.MetricFamily) error {
	p := planPool.Get().(*plan)
	defer func() { p.reset(); planPool.Put(p) }()
	s.mu.RLock()
	err := s.walkLocked(extra, s.now(), func(f *family, fresh []*part, e *dto.MetricFamily) error {
		if f == nil {
			b, err := proto.Marshal(e)
			if err != nil {
				return err
			}
			out := p.grab(len(b) + binaryMaxVarintLen)
			out = protowire.AppendVarint(out, uint64(len(b)))
			p.keep(append(out, b...))
			return nil
		}
		var own []byte
		if e != nil {
			for _, m := range e.Metric {
				b, err := proto.Marshal(m)
				if err != nil {
					return err
				}
				own = protowire.AppendTag(own, 4, protowire.BytesType)
				own = protowire.AppendBytes(own, b)
			}
		}
		size := len(f.protoHeader) + len(own)
		for _, pt := range fresh {
			size += len(pt.proto)
		}
		p.keep(protowire.AppendVarint(p.grab(binaryMaxVarintLen), uint64(size)))
		p.chunks = append(p.chunks, f.protoHeader)
		for _, pt := range fresh {
			p.chunks = append(p.chunks, pt.proto)
		}
		if len(own) > 0 {
			p.chunks = append(p.chunks, own)
		}
		return nil
	})
	s.mu.RUnlock()
	if err != nil {
		return err
	}
	return p.writeTo(w)
}

const binaryMaxVarintLen = 10

// Gather implements Store. It decodes what WriteProto writes, so it is slower than the writers;
// it serves the formats without a pre-rendered form (OpenMetrics) and tests.
func (s *MemoryStore) Gather(extra []*dto.MetricFamily) ([]*dto.MetricFamily, error) {
	var buf bytes.Buffer
	if err := s.WriteProto(&buf, extra); err != nil {
		return nil, err
	}
	var out []*dto.MetricFamily
	r := bufio.NewReader(&buf)
	for {
		mf := &dto.MetricFamily{}
		err := protodelim.UnmarshalFrom(r, mf)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, mf)
	}
}

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
	var b bytes.Buffer
	if help != "" {
		b.WriteString("# HELP ")
		b.WriteString(name)
		b.WriteByte(' ')
		b.WriteString(strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(help))
		b.WriteByte('\n')
	}
	b.WriteString("# TYPE ")
	b.WriteString(name)
	b.WriteByte(' ')
	b.WriteString(typeName(typ))
	b.WriteByte('\n')
	return b.Bytes()
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
