package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/opview/opview/exporter/ingest"
)

// LimitsHandler serves the two limits the relay is measured against, in a process of their own
// like the servers (cmd/opview-bench-limits):
//
//   - the parse-only limit: PUT or POST /metrics/job/... parses the grouping key with the relay's
//     parser (exporter/ingest) and decodes the body into client_model's objects with the
//     libraries' decoders (expfmt's text parser, protodelim), as Pushgateway does and as the
//     relay did before it read protobuf bodies itself, within maxBody and maxSeries (the relay's
//     limits), and stores nothing.
//   - the bare-bytes limit: GET /metrics serves the last body PUT to /bare with its Content-Type,
//     from memory; one body per format, chosen by the Accept header as the relay chose it.
//
// GET /-/ready answers 200.
func LimitsHandler(maxBody int64, maxSeries int) http.Handler {
	type body struct {
		ct string
		b  []byte
	}
	var mu sync.RWMutex
	bodies := map[bool]body{} // key: protobuf
	mux := http.NewServeMux()
	mux.HandleFunc("GET /-/ready", func(http.ResponseWriter, *http.Request) {})
	mux.HandleFunc("PUT /bare", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ct := r.Header.Get("Content-Type")
		mu.Lock()
		bodies[strings.Contains(ct, "protobuf")] = body{ct, b}
		mu.Unlock()
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		mu.RLock()
		b, ok := bodies[strings.Contains(r.Header.Get("Accept"), "protobuf")]
		mu.RUnlock()
		if !ok {
			http.Error(w, "no body PUT to /bare for this format yet", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", b.ct)
		_, _ = w.Write(b.b)
	})
	parse := func(w http.ResponseWriter, r *http.Request) {
		if _, err := ingest.GroupingKey(strings.TrimPrefix(r.URL.EscapedPath(), "/metrics/")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body := r.Body
		if maxBody > 0 {
			body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		if err := decodeBody(body, r.Header.Get("Content-Type"), maxSeries); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	mux.HandleFunc("PUT /metrics/", parse)
	mux.HandleFunc("POST /metrics/", parse)
	return mux
}

// decodeBody decodes a push body into client_model's objects: delimited protobuf, or else the
// text format. It fails once the body carries more than maxSeries (> 0) Metric messages.
func decodeBody(r io.Reader, contentType string, maxSeries int) error {
	metrics := 0
	if mt, params, err := mime.ParseMediaType(contentType); err == nil && mt == expfmt.ProtoType && params["encoding"] == "delimited" {
		br := bufio.NewReader(r)
		for {
			mf := &dto.MetricFamily{}
			if err := protodelim.UnmarshalFrom(br, mf); errors.Is(err, io.EOF) {
				return nil
			} else if err != nil {
				return fmt.Errorf("protobuf body: %w", err)
			}
			if metrics += len(mf.Metric); maxSeries > 0 && metrics > maxSeries {
				return fmt.Errorf("more than %d series", maxSeries)
			}
		}
	}
	tp := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := tp.TextToMetricFamilies(r)
	if err != nil {
		return fmt.Errorf("text body: %w", err)
	}
	for _, mf := range fams {
		metrics += len(mf.Metric)
	}
	if maxSeries > 0 && metrics > maxSeries {
		return fmt.Errorf("more than %d series", maxSeries)
	}
	return nil
}
