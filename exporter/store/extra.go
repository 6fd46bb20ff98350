package store

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Extra is metric families a scrape exposes besides the stored ones (the relay's own metrics),
// rendered once in both pre-rendered formats, so that the scrapes of a while can share the work.
// A family of the same name as a stored one is merged into it. The zero value and nil hold no
// families.
type Extra struct {
	fams []extraFamily // sorted by name, none without metrics
}

type extraFamily struct {
	name string
	typ  dto.MetricType
	// text is the family in the text format, its sample lines from samples on; whole is the
	// length-delimited MetricFamily message, its Metric fields in metrics.
	text    []byte
	samples int
	whole   []byte
	metrics []byte
}

// NewExtra renders families for exposition, as expfmt.MetricFamilyToText and proto.Marshal
// render them. A family the text format cannot hold (no name, an unknown type, a metric without
// the value of its type) is left out, and named in the error.
func NewExtra(families []*dto.MetricFamily) (*Extra, error) {
	x := &Extra{}
	var errs []error
	var r familyRenderer
	for _, mf := range families {
		if len(mf.GetMetric()) == 0 {
			continue
		}
		ef := extraFamily{name: mf.GetName(), typ: mf.GetType()}
		var err error
		if plainFamily(mf) {
			err = r.render(&ef, mf)
		} else {
			err = ef.renderWithLibraries(mf)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("metric family %s: %w", q(ef.name), err))
			continue
		}
		x.fams = append(x.fams, ef)
	}
	slices.SortStableFunc(x.fams, func(a, b extraFamily) int { return strings.Compare(a.name, b.name) })
	return x, errors.Join(errs...)
}

// familyRenderer renders families by hand, reusing its buffers from one to the next.
type familyRenderer struct {
	m   metric
	r   textRenderer
	lbl []byte
}

func (fr *familyRenderer) render(ef *extraFamily, mf *dto.MetricFamily) error {
	text := appendFamilyTextHeader(nil, mf)
	ef.samples = len(text)
	var metrics []byte
	m := &fr.m
	for _, dm := range mf.Metric {
		if dm == nil {
			return errors.New("empty metric")
		}
		m.fromDTO(dm)
		if !hasTypeValue(ef.typ, m) {
			return fmt.Errorf("a metric has no %s value", ef.typ)
		}
		fr.lbl = appendLabelsText(fr.lbl[:0], m.labels)
		text = fr.r.appendMetric(text, ef.name, ef.typ, fr.lbl, m)
		metrics = appendMetricProto(metrics, m.labels, m)
	}
	ef.text, ef.metrics = text, metrics
	ef.whole = wholeFamily(mf, metrics)
	return nil
}

// plainFamily reports whether the hand-written rendering renders mf: its names are valid legacy
// names (the text format then writes them as they are) and its type one the text format knows.
func plainFamily(mf *dto.MetricFamily) bool {
	switch mf.GetType() {
	case dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_SUMMARY, dto.MetricType_UNTYPED, dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
	default:
		return false
	}
	if !model.LegacyValidation.IsValidMetricName(mf.GetName()) {
		return false
	}
	for _, m := range mf.Metric {
		for _, lp := range m.GetLabel() {
			if !model.LegacyValidation.IsValidLabelName(lp.GetName()) {
				return false
			}
		}
	}
	return true
}

func hasTypeValue(typ dto.MetricType, m *metric) bool {
	switch typ {
	case dto.MetricType_COUNTER:
		return m.hasCounter
	case dto.MetricType_GAUGE:
		return m.hasGauge
	case dto.MetricType_SUMMARY:
		return m.hasSummary
	case dto.MetricType_UNTYPED:
		return m.hasUntyped
	}
	return m.hasHistogram
}

// appendFamilyTextHeader appends mf's HELP (if it has one) and TYPE lines.
func appendFamilyTextHeader(b []byte, mf *dto.MetricFamily) []byte {
	if mf.Help != nil {
		b = append(b, "# HELP "...)
		b = append(b, mf.GetName()...)
		b = append(b, ' ')
		b = append(b, helpEscaper.Replace(mf.GetHelp())...)
		b = append(b, '\n')
	}
	b = append(b, "# TYPE "...)
	b = append(b, mf.GetName()...)
	b = append(b, ' ')
	b = append(b, textTypeName(mf.GetType())...)
	return append(b, '\n')
}

var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

// textTypeName is the type as the text format's TYPE line names it: it has no gauge histogram.
func textTypeName(t dto.MetricType) string {
	if t == dto.MetricType_GAUGE_HISTOGRAM {
		return "histogram"
	}
	return typeName(t)
}

// wholeFamily returns mf as a length-delimited message, its Metric fields given encoded.
func wholeFamily(mf *dto.MetricFamily, metrics []byte) []byte {
	var h []byte
	if mf.Name != nil {
		h = appendString(append(h, 1<<3|byte(protowire.BytesType)), mf.GetName())
	}
	if mf.Help != nil {
		h = appendString(append(h, 2<<3|byte(protowire.BytesType)), mf.GetHelp())
	}
	if mf.Type != nil {
		h = appendUvarint(h, 3, uint64(mf.GetType()))
	}
	var unit []byte
	if mf.Unit != nil {
		unit = appendString(append(unit, 5<<3|byte(protowire.BytesType)), mf.GetUnit())
	}
	b := appendVarint(nil, uint64(len(h)+len(metrics)+len(unit)))
	b = append(b, h...)
	b = append(b, metrics...)
	return append(b, unit...)
}

// renderWithLibraries renders a family the hand-written rendering does not.
func (ef *extraFamily) renderWithLibraries(mf *dto.MetricFamily) error {
	var text bytes.Buffer
	if _, err := expfmt.MetricFamilyToText(&text, mf); err != nil {
		return err
	}
	// The sample lines follow the HELP and TYPE comments.
	for b := text.Bytes(); bytes.HasPrefix(b[ef.samples:], []byte("# ")); {
		i := bytes.IndexByte(b[ef.samples:], '\n')
		if i < 0 {
			break
		}
		ef.samples += i + 1
	}
	ef.text = text.Bytes()
	for _, m := range mf.Metric {
		msg, err := proto.Marshal(m)
		if err != nil {
			return err
		}
		ef.metrics = protowire.AppendBytes(protowire.AppendTag(ef.metrics, 4, protowire.BytesType), msg)
	}
	msg, err := proto.Marshal(mf)
	if err != nil {
		return err
	}
	ef.whole = protowire.AppendBytes(nil, msg)
	return nil
}
