// Package ingest decodes push requests the way Pushgateway does: the grouping key from the URL
// path and the metric families from the body (text format or delimited protobuf, optionally
// gzip-compressed), within a size limit that applies after decompression too.
package ingest

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"sort"
	"strings"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/opview/opview/exporter/store"
)

// ErrTooLarge is returned (wrapped) when a body exceeds the size limit.
var ErrTooLarge = errors.New("push body too large")

// ErrTooManySeries is returned (wrapped) when a body carries surely more series than the limit:
// decoding stops there, so that a body within the size limit can't make the relay hold every
// series of it as decoded objects (about ten times the body) only to refuse it afterwards.
var ErrTooManySeries = errors.New("push carries too many series")

// ErrTooManyLabels is returned by Body when a line of a text body carries more labels than a
// series may have: the text parser's work on a line grows with the square of its labels (forty
// thousand labels on one line took a minute).
var ErrTooManyLabels = errors.New("push carries a series with too many labels")

// GroupingKey parses the part of a push URL after "/metrics/": "job/<job>{/<label>/<value>}".
// A label name ending in "@base64" has a base64url-encoded value (how client_golang sends values
// containing "/" and empty values). Segments are URL-path-escaped.
func GroupingKey(escapedPath string) (store.Key, error) {
	segs := strings.Split(strings.Trim(escapedPath, "/"), "/")
	if len(segs) < 2 || strings.TrimSuffix(segs[0], "@base64") != "job" {
		return store.Key{}, &store.Error{Kind: store.KindInvalid, Msg: "push URL must be /metrics/job/<job>{/<label>/<value>}"}
	}
	if len(segs)%2 != 0 {
		return store.Key{}, &store.Error{Kind: store.KindInvalid, Msg: fmt.Sprintf("push URL: label %q has no value (labels come in name/value pairs)", segs[len(segs)-1])}
	}
	labels := make(map[string]string, len(segs)/2)
	for i := 0; i < len(segs); i += 2 {
		name, err := url.PathUnescape(segs[i])
		if err != nil {
			return store.Key{}, &store.Error{Kind: store.KindInvalid, Msg: fmt.Sprintf("push URL: label name %q: %v", segs[i], err)}
		}
		value, err := url.PathUnescape(segs[i+1])
		if err != nil {
			return store.Key{}, &store.Error{Kind: store.KindInvalid, Msg: fmt.Sprintf("push URL: value of label %q: %v", name, err)}
		}
		if n, ok := strings.CutSuffix(name, "@base64"); ok {
			name = n
			b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(value, "="))
			if err != nil {
				return store.Key{}, &store.Error{Kind: store.KindInvalid, Msg: fmt.Sprintf("push URL: value of label %q is not valid base64url: %v", name, err)}
			}
			value = string(b)
		}
		if _, dup := labels[name]; dup {
			return store.Key{}, &store.Error{Kind: store.KindInvalid, Msg: fmt.Sprintf("push URL: label %q appears twice", name)}
		}
		labels[name] = value
	}
	return store.NewKey(labels)
}

// Families are the metric families of a push body: decoded objects (a text body), or the body's
// bytes (a protobuf body: length-delimited MetricFamily messages, their framing checked and their
// metrics counted), which the store reads without decoding them into objects.
type Families struct {
	Decoded []*dto.MetricFamily
	Encoded []byte
}

// Release hands the body's buffer back for another push to read into: the caller is done with
// Encoded, and nothing it was given refers to it (the store copies what it keeps of a push).
func (f *Families) Release() {
	if b := f.Encoded; b != nil && cap(b) <= maxPooledBody {
		b = b[:0]
		bodies.Put(&b)
	}
	f.Encoded = nil
}

// bodies holds protobuf body buffers between pushes: a push's body is most of what it allocates
// besides what the store keeps, and re-pushing clients send the same size again and again.
var bodies sync.Pool // of *[]byte

// maxPooledBody bounds the buffers kept: one huge push must not stay in memory.
const maxPooledBody = 4 << 20

// bodyBuffer returns an empty buffer of capacity n at least.
func bodyBuffer(n int64) []byte {
	if bp, ok := bodies.Get().(*[]byte); ok && int64(cap(*bp)) >= n {
		return (*bp)[:0]
	}
	return make([]byte, 0, n)
}

// Body decodes a push body. contentType selects delimited protobuf; anything else is read as the
// text format, as Pushgateway does. contentEncoding may be "gzip". maxBytes (> 0) bounds the
// decompressed size; maxSeries (> 0) stops decoding once the body surely carries more series (the
// store counts them exactly). sizeHint (the Content-Length, or 0) sizes the buffer a protobuf body
// is read into. maxLabels (> 0) stops a text body at a line that carries more labels than a
// series may have. Decoded families are sorted by name.
func Body(body io.Reader, sizeHint int64, contentType, contentEncoding string, maxBytes int64, maxSeries, maxLabels int) (Families, error) {
	switch strings.ToLower(strings.TrimSpace(contentEncoding)) {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return Families{}, fmt.Errorf("gzip body: %w", err)
		}
		defer zr.Close()
		body = zr
	default:
		return Families{}, fmt.Errorf("Content-Encoding %q is not supported (use gzip or none)", contentEncoding)
	}
	if maxBytes > 0 {
		body = &limitReader{r: body, left: maxBytes}
		sizeHint = min(sizeHint, maxBytes)
	}
	if isProto(contentType) {
		b, err := readAll(body, sizeHint)
		if err != nil {
			return Families{}, err
		}
		if err := checkProto(b, maxSeries); err != nil {
			return Families{}, err
		}
		return Families{Encoded: b}, nil
	}
	if maxSeries > 0 {
		// Every series is a line of its own; a family adds at most a HELP and a TYPE line.
		body = &lineLimitReader{r: body, left: 3*int64(maxSeries) + 1024}
	}
	fams, err := decodeText(&sampleLines{r: body, maxSamples: maxSeries, maxLabels: maxLabels})
	return Families{Decoded: fams}, err
}

func isProto(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	return err == nil && mt == expfmt.ProtoType && params["proto"] == expfmt.ProtoProtocol && params["encoding"] == "delimited"
}

// readAll reads r to its end into a buffer sized from hint.
func readAll(r io.Reader, hint int64) ([]byte, error) {
	b := bodyBuffer(max(512, min(hint, 64<<20)+1)) // +1: the read that sees EOF needs room
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// maxMessage bounds one MetricFamily message, as protodelim's default does.
const maxMessage = 4 << 20

// checkProto checks the framing of length-delimited MetricFamily messages as protodelim reads
// them, and that they carry at most maxSeries Metric messages (every one is at least one series),
// so that the store is handed only bodies whose messages are whole. What the messages hold the
// store decodes and checks.
func checkProto(b []byte, maxSeries int) error {
	metrics := 0
	for i := 1; len(b) > 0; i++ {
		size, n := protowire.ConsumeVarint(b[:min(len(b), binary.MaxVarintLen64)])
		if n < 0 {
			return fmt.Errorf("protobuf body: message %d: %w", i, protowire.ParseError(n))
		}
		if size > maxMessage {
			return fmt.Errorf("protobuf body: message %d: %w", i, &protodelim.SizeTooLargeError{Size: size, MaxSize: maxMessage})
		}
		b = b[n:]
		if size > uint64(len(b)) {
			return fmt.Errorf("protobuf body: message %d: %w", i, io.ErrUnexpectedEOF)
		}
		msg := b[:size]
		b = b[size:]
		c, err := countMetrics(msg)
		if err != nil {
			return fmt.Errorf("protobuf body: message %d: %w", i, err)
		}
		if metrics += c; maxSeries > 0 && metrics > maxSeries {
			return fmt.Errorf("%w: more than %d", ErrTooManySeries, maxSeries)
		}
	}
	return nil
}

// countMetrics counts the metric fields of a MetricFamily message, walking its fields without
// decoding them: a malformed message is refused where the walk finds it broken, never handed to
// proto.Unmarshal, which would build an object for every field before the damage (two million
// empty metrics then a broken tag, 4 KB gzipped, took 185 MB).
func countMetrics(msg []byte) (int, error) {
	n := 0
	for b := msg; len(b) > 0; {
		at := len(msg) - len(b) // where the field starts
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return 0, fmt.Errorf("byte %d: %w", at, protowire.ParseError(l))
		}
		if num > protowire.MaxValidNumber {
			return 0, fmt.Errorf("byte %d: field number %d out of range", at, num)
		}
		b = b[l:]
		if l = protowire.ConsumeFieldValue(num, typ, b); l < 0 {
			return 0, fmt.Errorf("byte %d: field %d: %w", at, num, protowire.ParseError(l))
		}
		b = b[l:]
		if num == 4 && typ == protowire.BytesType {
			n++
		}
	}
	return n, nil
}

func decodeText(lines *sampleLines) ([]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(lines)
	if err != nil {
		if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrTooManySeries) || errors.Is(err, ErrTooManyLabels) {
			return nil, err
		}
		return nil, fmt.Errorf("text body: %w", err)
	}
	if err := lines.check(fams); err != nil {
		return nil, err
	}
	out := make([]*dto.MetricFamily, 0, len(fams))
	for _, mf := range fams {
		out = append(out, mf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, nil
}

// limitReader fails with ErrTooLarge once more than left bytes were read.
type limitReader struct {
	r    io.Reader
	left int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left < 0 {
		return 0, ErrTooLarge
	}
	if int64(len(p)) > l.left+1 {
		p = p[:l.left+1]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return 0, ErrTooLarge
	}
	return n, err
}

// lineLimitReader fails with ErrTooManySeries once more than left lines were read.
type lineLimitReader struct {
	r    io.Reader
	left int64
}

func (l *lineLimitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.left -= int64(bytes.Count(p[:n], newline))
	if l.left < 0 {
		return 0, ErrTooManySeries
	}
	return n, err
}

var newline = []byte{'\n'}

// sampleLines counts the sample lines of a text body as it is read. The text parser drops some
// lines of summaries and histograms without a word: a quantile or le label that is NaN (its
// mark for "none") or missing, and a _sum or _count given again for one series (it overwrites
// the first). A protobuf push with a NaN quantile or le is refused; so is a text body that lost
// a line: check compares the lines with the samples parsed.
//
// A line is what the parser takes it to be: blanks (space, tab) lead, '#' starts a comment, an
// empty line is none, any other line is a sample. Lines are also counted by the metric name
// that starts them (or that a '{' starting them opens with), to name the family that lost one;
// a name written in another way (a quoted part, an escape) leaves its line without a name.
//
// It also bounds what the parser is given: past maxSamples sample lines (> 0) it stops with
// ErrTooManySeries, and at a line whose labels (a '=' outside quotes, in its braces) reach
// maxLabels (> 0), with the line's name one label more than a series may have, with
// ErrTooManyLabels.
type sampleLines struct {
	r          io.Reader
	maxSamples int
	maxLabels  int
	labels     int            // of the line being read
	braced     bool           // the line being read started with '{'
	err        error          // the bound passed, returned by every Read from then on
	total      int            // sample lines
	names      map[string]int // the names of lines: where their count is in byName
	byName     []int
	state      scanState
	name       []byte // of the line being read
}

type scanState int

const (
	lineStart  scanState = iota // blanks before the first byte of a line
	braceStart                  // after a '{' starting a line
	inName                      // reading a metric name
	inQuoted                    // reading a quoted metric name after a '{'
	restOfLine                  // the rest of a line, skipped
	inLabels                    // in a line's braces, outside quotes
	inValue                     // in a quoted label value (or name) in a line's braces
	inEscape                    // after a backslash in a quoted value
	afterName                   // blanks after an unbraced name: '{' or the value follows
)

// maxCountedName bounds the names sampleLines keeps; a line with a longer name is counted
// without one.
const maxCountedName = 1024

func (s *sampleLines) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	if s.scan(p[:n]); s.err != nil {
		return 0, s.err
	}
	if err == io.EOF && (s.state == inName || s.state == inQuoted) {
		s.countName() // the last line has no newline
		s.state = lineStart
	}
	return n, err
}

// scan reads b, the next bytes of the body.
func (s *sampleLines) scan(b []byte) {
	for len(b) > 0 && s.err == nil {
		c := b[0]
		switch s.state {
		case lineStart:
			switch c {
			case ' ', '\t', '\n':
			case '#':
				s.state = restOfLine
			case '{':
				s.startSample(true)
				s.state = braceStart
			default:
				s.startSample(false)
				s.name = append(s.name[:0], c)
				s.state = inName
			}
			b = b[1:]
		case braceStart:
			switch c {
			case ' ', '\t':
				b = b[1:]
			case '"':
				s.name = s.name[:0]
				s.state = inQuoted
				b = b[1:]
			case '\n':
				s.state = lineStart
				b = b[1:]
			case '=', ',', '}':
				s.state = inLabels // no name first: the parser will say what is wrong
			default:
				s.name = append(s.name[:0], c)
				s.state = inName
				b = b[1:]
			}
		case inName, inQuoted:
			end := " \t\n{},=\"\\"
			if s.state == inQuoted {
				end = "\n\"\\"
			}
			i := bytes.IndexAny(b, end)
			if i < 0 {
				s.appendName(b)
				return
			}
			s.appendName(b[:i])
			quoted := s.state == inQuoted
			if quoteEnds := quoted && b[i] == '"'; quoteEnds || strings.IndexByte(" \t\n{},", b[i]) >= 0 {
				s.countName()
			} // else a quote, an escape or a label's '=': a name not read here
			s.state, b = s.afterName(b[i], quoted), b[i:]
			if quoted && b[0] != '\n' {
				b = b[1:] // the closing quote, or the backslash whose escape comes next
			}
		case afterName:
			switch c {
			case ' ', '\t':
				b = b[1:]
			case '{':
				s.state = inLabels
				b = b[1:]
			default:
				s.state = restOfLine
			}
		case inLabels:
			i := bytes.IndexAny(b, "\"=}\n")
			if i < 0 {
				return
			}
			switch b[i] {
			case '"':
				s.state = inValue
			case '=':
				if s.labels++; s.maxLabels > 0 && s.labels >= s.maxLabels {
					s.err = fmt.Errorf("%w: a line of the text body carries %d labels or more; a series may have %d, its name included", ErrTooManyLabels, s.labels, s.maxLabels)
				}
			case '}':
				s.state = restOfLine
			case '\n':
				s.state = lineStart
			}
			b = b[i+1:]
		case inValue:
			i := bytes.IndexAny(b, "\"\\\n")
			if i < 0 {
				return
			}
			switch b[i] {
			case '"':
				s.state = inLabels
			case '\\':
				s.state = inEscape
			case '\n':
				s.state = lineStart
			}
			b = b[i+1:]
		case inEscape:
			s.state = inValue
			b = b[1:]
		case restOfLine:
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				return
			}
			s.state = lineStart
			b = b[i+1:]
		}
	}
}

// startSample counts a sample line starting, braced if it starts with '{'.
func (s *sampleLines) startSample(braced bool) {
	s.total++
	s.labels, s.braced = 0, braced
	if s.maxSamples > 0 && s.total > s.maxSamples {
		s.err = fmt.Errorf("%w: more than %d", ErrTooManySeries, s.maxSamples)
	}
}

// afterName is the state after the name of a sample line, which ended at c.
func (s *sampleLines) afterName(c byte, quoted bool) scanState {
	switch {
	case c == '\n':
		return lineStart
	case s.braced && quoted && c == '\\':
		return inEscape // an escape in the quoted name: read on as a quoted value
	case s.braced && quoted:
		return inLabels // after the closing quote
	case s.braced:
		return inLabels // the terminator is read there: ',', '}' or the '=' of a label
	case c == '{':
		return inLabels
	case c == ' ' || c == '\t':
		return afterName
	}
	return restOfLine
}

func (s *sampleLines) appendName(b []byte) {
	if len(s.name) <= maxCountedName {
		s.name = append(s.name, b[:min(len(b), maxCountedName+1-len(s.name))]...)
	}
}

func (s *sampleLines) countName() {
	if len(s.name) > 0 && len(s.name) <= maxCountedName {
		i, ok := s.names[string(s.name)] // not allocating but for a new name
		if !ok {
			if s.names == nil {
				s.names = map[string]int{}
			}
			i = len(s.byName)
			s.names[string(s.name)] = i
			s.byName = append(s.byName, 0)
		}
		s.byName[i]++
	}
}

// counted returns the lines counted by name.
func (s *sampleLines) counted() map[string]int {
	m := make(map[string]int, len(s.names))
	for name, i := range s.names {
		m[name] = s.byName[i]
	}
	return m
}

// check refuses a body of which the parser dropped sample lines: fewer samples parsed than
// sample lines. It names a summary or histogram with more quantile or bucket lines than it
// holds quantiles or buckets, or more _sum or _count lines than series with a sum or count.
//
// A histogram with a bucket count that is not an integer has all its counts made floats by the
// parser, a missing _count becoming 0: its count is taken as given only when it is not 0, so
// that a dropped line never hides behind it (a _count of 0 with such buckets, which can't be
// right, is refused).
func (s *sampleLines) check(fams map[string]*dto.MetricFamily) error {
	samples := 0
	for _, mf := range fams {
		for _, m := range mf.Metric {
			samples += valuesOf(mf.GetType(), m).total()
		}
	}
	if samples >= s.total {
		return nil
	}
	// Which family lost lines: the names of lines resolved to families as the parser does.
	lines := map[string]*values{}
	for name, i := range s.names {
		n := s.byName[i]
		family := familyOf(fams, name)
		switch fams[family].GetType() {
		case dto.MetricType_SUMMARY, dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		default:
			continue
		}
		l := lines[family]
		if l == nil {
			l = &values{}
			lines[family] = l
		}
		switch name[len(family):] {
		case "", "_bucket":
			l.values += n
		case "_sum":
			l.sums += n
		case "_count":
			l.counts += n
		}
	}
	names := make([]string, 0, len(lines))
	for name := range lines {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		mf, l := fams[name], lines[name]
		var have values
		for _, m := range mf.Metric {
			v := valuesOf(mf.GetType(), m)
			have.values, have.sums, have.counts = have.values+v.values, have.sums+v.sums, have.counts+v.counts
		}
		msg := ""
		switch {
		case l.values > have.values && mf.GetType() == dto.MetricType_SUMMARY:
			msg = fmt.Sprintf("%d quantile line(s) whose quantile label is NaN or missing", l.values-have.values)
		case l.values > have.values:
			msg = fmt.Sprintf("%d bucket line(s) whose le label is NaN or missing", l.values-have.values)
		case l.sums > have.sums:
			msg = "a _sum line given twice for one series"
		case l.counts > have.counts:
			msg = "a _count line given twice for one series (or a _count of 0 with buckets that are not integers)"
		default:
			continue
		}
		return &store.Error{Kind: store.KindInvalid, Msg: fmt.Sprintf("text body: metric family %s: the text parser dropped %s", store.Quote(name, 64), msg)}
	}
	return &store.Error{Kind: store.KindInvalid, Msg: fmt.Sprintf("text body: the text parser dropped %d sample line(s) of summaries or histograms: quantile or le labels that are NaN or missing, or _sum or _count lines given twice for one series",
		s.total-samples)}
}

// values counts the samples of a parsed metric by the kind of line they came from.
type values struct {
	values, sums, counts int // quantiles or buckets, sums, counts
}

func (v values) total() int { return v.values + v.sums + v.counts }

func valuesOf(typ dto.MetricType, m *dto.Metric) values {
	switch typ {
	case dto.MetricType_SUMMARY:
		s := m.GetSummary()
		return values{len(s.GetQuantile()), present(s.SampleSum != nil), present(s.SampleCount != nil)}
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		h := m.GetHistogram()
		return values{len(h.GetBucket()), present(h.SampleSum != nil), present(h.SampleCount != nil || h.GetSampleCountFloat() != 0)}
	}
	return values{values: 1}
}

func present(b bool) int {
	if b {
		return 1
	}
	return 0
}

// familyOf is the family a sample line named name belongs to, as the text parser finds it: a
// family of that name, else the summary or histogram whose _sum, _count (or _bucket) it is.
func familyOf(fams map[string]*dto.MetricFamily, name string) string {
	if fams[name] != nil {
		return name
	}
	for _, suffix := range []string{"_sum", "_count", "_bucket"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok || base == "" {
			continue
		}
		switch fams[base].GetType() {
		case dto.MetricType_SUMMARY:
			if suffix != "_bucket" {
				return base
			}
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			return base
		}
	}
	return name
}
