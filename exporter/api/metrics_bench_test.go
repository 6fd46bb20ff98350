package api

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/opview/opview/exporter/process"
	"github.com/opview/opview/exporter/store"
)

const benchPayload = "../../bench/testdata/controller-runtime.prom"

// benchRelay is the relay's /metrics handler over a store holding n groups of the bench payload,
// with the relay's own collectors, served on loopback.
func benchRelay(tb testing.TB, n int) *httptest.Server {
	tb.Helper()
	b, err := os.ReadFile(benchPayload)
	if err != nil {
		tb.Fatalf("bench payload: %v", err)
	}
	tp := expfmt.NewTextParser(model.LegacyValidation)
	m, err := tp.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), process.NewCollector())
	in := NewInstrumentation(reg)
	reserved, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	s := store.New(store.Options{Reserved: reserved})
	reg.MustRegister(store.NewCollector(s))
	for i := 0; i < n; i++ {
		if _, err := s.Push(store.PushRequest{Key: store.MustKey("job", "bench", "instance", fmt.Sprintf("g%03d", i)), Families: mapValues(m), Replace: true}); err != nil {
			tb.Fatal(err)
		}
	}
	srv := httptest.NewServer(Metrics(s, reg, in, slog.New(slog.DiscardHandler)))
	tb.Cleanup(srv.Close)
	return srv
}

func mapValues[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

var benchClient = &http.Client{Transport: &http.Transport{DisableCompression: true}}

func get(tb testing.TB, url, accept string, w io.Writer) string {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", accept)
	resp, err := benchClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		tb.Fatal(err)
	}
	return resp.Header.Get("Content-Type")
}

var benchFormats = []struct{ name, accept string }{
	{"text", "text/plain;version=0.0.4"},
	{"proto", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"},
}

// BenchmarkMetricsHTTP scrapes the relay over loopback HTTP, and the same bytes served from
// memory by a bare handler (server=bare): the physical limit the relay is measured against.
func BenchmarkMetricsHTTP(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		relay := benchRelay(b, n)
		for _, f := range benchFormats {
			var body bytes.Buffer
			ct := get(b, relay.URL, f.accept, &body)
			bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ct)
				_, _ = w.Write(body.Bytes())
			}))
			for _, srv := range []struct {
				name, url string
			}{{"relay", relay.URL}, {"bare", bare.URL}} {
				b.Run(fmt.Sprintf("format=%s/groups=%d/server=%s", f.name, n, srv.name), func(b *testing.B) {
					b.SetBytes(int64(body.Len()))
					for i := 0; i < b.N; i++ {
						get(b, srv.url, f.accept, io.Discard)
					}
				})
			}
			bare.Close()
		}
	}
}
