// Package ingest decodes push requests the way Pushgateway does: the grouping key from the URL
// path and the metric families from the body (text format or delimited protobuf, optionally
// gzip-compressed), within a size limit that applies after decompression too.
package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/url"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/opview/opview/exporter/store"
)

// ErrTooLarge is returned (wrapped) when a body exceeds the size limit.
var ErrTooLarge = errors.New("push body too large")

// ErrTooManySeries is returned (wrapped) when a body carries surely more series than the limit:
// decoding stops there, so that a body within the size limit can't make the relay hold every
// series of it as decoded objects (about ten times the body) only to refuse it afterwards.
var ErrTooManySeries = errors.New("push carries too many series")

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

// Body decodes a push body. contentType selects delimited protobuf; anything else is read as the
// text format, as Pushgateway does. contentEncoding may be "gzip". maxBytes (> 0) bounds the
// decompressed size; maxSeries (> 0) stops decoding once the body surely carries more series (the
// store counts them exactly). The returned families are sorted by name.
func Body(body io.Reader, contentType, contentEncoding string, maxBytes int64, maxSeries int) ([]*dto.MetricFamily, error) {
	switch strings.ToLower(strings.TrimSpace(contentEncoding)) {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("gzip body: %w", err)
		}
		defer zr.Close()
		body = zr
	default:
		return nil, fmt.Errorf("Content-Encoding %q is not supported (use gzip or none)", contentEncoding)
	}
	if maxBytes > 0 {
		body = &limitReader{r: body, left: maxBytes}
	}
	if isProto(contentType) {
		return decodeProto(body, maxSeries)
	}
	if maxSeries > 0 {
		// Every series is a line of its own; a family adds at most a HELP and a TYPE line.
		body = &lineLimitReader{r: body, left: 3*int64(maxSeries) + 1024}
	}
	return decodeText(body)
}

func isProto(contentType string) bool {
	mt, params, err := mime.ParseMediaType(contentType)
	return err == nil && mt == expfmt.ProtoType && params["proto"] == expfmt.ProtoProtocol && params["encoding"] == "delimited"
}

func decodeProto(r io.Reader, maxSeries int) ([]*dto.MetricFamily, error) {
	br := bufio.NewReader(r)
	var out []*dto.MetricFamily
	metrics := 0
	for {
		mf := &dto.MetricFamily{}
		err := protodelim.UnmarshalFrom(br, mf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if errors.Is(err, ErrTooLarge) {
				return nil, err
			}
			return nil, fmt.Errorf("protobuf body: message %d: %w", len(out)+1, err)
		}
		out = append(out, mf)
		// Every Metric message is at least one series.
		if metrics += len(mf.Metric); maxSeries > 0 && metrics > maxSeries {
			return nil, fmt.Errorf("%w: more than %d", ErrTooManySeries, maxSeries)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, nil
}

func decodeText(r io.Reader) ([]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrTooManySeries) {
			return nil, err
		}
		return nil, fmt.Errorf("text body: %w", err)
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
