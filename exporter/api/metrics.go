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
	dto "github.com/prometheus/client_model/go"
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
		format := expfmt.NegotiateAccept(r.Header, expfmt.DefaultOpenMetricsAcceptedFormats()...)
		h := w.Header()
		h.Set("Content-Type", string(format))
		h.Add("Vary", "Accept-Encoding")
		var out io.Writer = w
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
			err = encode(out, s, own, format)
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

func encode(w io.Writer, s store.Store, own []*dto.MetricFamily, format expfmt.Format) error {
	fams, err := s.Gather(own)
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(w, format)
	for _, mf := range fams {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	if c, ok := enc.(expfmt.Closer); ok {
		return c.Close()
	}
	return nil
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
