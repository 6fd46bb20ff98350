package api

import (
	"compress/gzip"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/opview/opview/exporter/store"
)

var gzipPool = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}

// Metrics serves every fresh group's samples merged with the relay's own metrics (from g), in
// the format the scraper negotiates: Prometheus text and delimited protobuf are written from
// pre-rendered bytes, OpenMetrics through prometheus/common's encoder. Gzip when accepted.
func Metrics(s store.Store, g prometheus.Gatherer, in *Instrumentation, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		own, err := g.Gather()
		if err != nil {
			// Keep serving: a broken own collector must not hide the pushed metrics.
			logger.Warn("gathering the relay's own metrics", "err", err)
		}
		format := negotiate(r.Header)
		h := w.Header()
		h.Set("Content-Type", string(format))
		h.Add("Vary", "Accept-Encoding")
		var out io.Writer = sizedWriter{w}
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			gz := gzipPool.Get().(*gzip.Writer)
			gz.Reset(w)
			defer func() {
				gz.Close()
				gzipPool.Put(gz)
			}()
			out = gz
		}
		switch format.FormatType() {
		case expfmt.TypeProtoDelim:
			err = s.WriteProto(out, own)
		case expfmt.TypeTextPlain:
			err = s.WriteText(out, own)
		default:
			err = s.WriteOpenMetrics(out, own, format)
		}
		if err != nil {
			// Headers are gone already; all we can do is log. Prometheus sees a cut body.
			logger.Error("writing /metrics", "format", format, "err", err)
		}
		if in != nil {
			in.scrapeDuration.Observe(time.Since(start).Seconds())
		}
	})
}

// sizedWriter sets Content-Length from the store's size hint, so an uncompressed scrape is sent
// without chunked encoding.
type sizedWriter struct{ http.ResponseWriter }

func (w sizedWriter) SizeHint(n int64) { w.Header().Set("Content-Length", strconv.FormatInt(n, 10)) }

// negotiate picks the format. Among the formats a client accepts, the relay prefers delimited
// protobuf and then the Prometheus text format, which it serves from pre-rendered bytes, over
// OpenMetrics, which it must encode per scrape: a server may choose any format the client
// accepts, and Prometheus accepts all three by default.
func negotiate(h http.Header) expfmt.Format {
	if h.Get("Accept") == "" {
		return expfmt.NegotiateAccept(h, expfmt.FmtText)
	}
	fast := expfmt.NegotiateAccept(h, expfmt.FmtProtoDelim, expfmt.FmtText)
	if fast.FormatType() == expfmt.TypeProtoDelim {
		return fast
	}
	any := expfmt.NegotiateAccept(h, expfmt.DefaultOpenMetricsAcceptedFormats()...)
	if any.FormatType() == expfmt.TypeOpenMetrics && !acceptsText(h.Get("Accept")) {
		return any
	}
	return fast
}

// acceptsText reports whether the Accept header allows text/plain (explicitly or by wildcard).
func acceptsText(accept string) bool {
	for _, clause := range strings.Split(accept, ",") {
		mt, params, _ := strings.Cut(strings.TrimSpace(clause), ";")
		mt = strings.TrimSpace(mt)
		if mt != "text/plain" && mt != "text/*" && mt != "*/*" {
			continue
		}
		if strings.Contains(strings.ReplaceAll(params, " ", ""), "q=0") && !strings.Contains(params, "q=0.") {
			continue
		}
		return true
	}
	return false
}

func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			continue
		}
		for _, p := range strings.Split(params, ";") {
			if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.TrimSpace(k) == "q" {
				q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				return err == nil && q > 0
			}
		}
		return true
	}
	return false
}
