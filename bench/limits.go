package bench

import (
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/opview/opview/exporter/ingest"
)

// LimitsHandler serves the two limits the relay is measured against, in a process of their own
// like the servers (cmd/opview-bench-limits):
//
//   - the parse-only limit: PUT or POST /metrics/job/... parses the grouping key and the body
//     with the relay's own push parser (exporter/ingest), within maxBody and maxSeries (the
//     relay's limits), and stores nothing.
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
		if _, err := ingest.Body(r.Body, r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding"), maxBody, maxSeries); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	mux.HandleFunc("PUT /metrics/", parse)
	mux.HandleFunc("POST /metrics/", parse)
	return mux
}
