package api

import (
	"compress/gzip"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"

	"github.com/opview/opview/exporter/store"
)

func TestNegotiate(t *testing.T) {
	for _, c := range []struct{ accept, want string }{
		{"", "text/plain"},
		{"text/plain;version=0.0.4", "text/plain"},
		{"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3", "application/vnd.google.protobuf"},
		// Prometheus 3's default: the relay picks a pre-rendered format it accepts.
		{"application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2", "text/plain"},
		{"application/openmetrics-text;version=1.0.0", "application/openmetrics-text"},
		{"application/openmetrics-text;version=1.0.0,text/plain;q=0", "application/openmetrics-text"},
	} {
		h := http.Header{}
		if c.accept != "" {
			h.Set("Accept", c.accept)
		}
		if got := string(negotiate(h)); !strings.HasPrefix(got, c.want) {
			t.Errorf("Accept %q: %s, want %s", c.accept, got, c.want)
		}
	}
}

func TestAcceptsGzip(t *testing.T) {
	for h, want := range map[string]bool{"": false, "gzip": true, "br, gzip;q=0.5": true, "gzip;q=0": false, "identity": false, "GZIP": true} {
		if got := acceptsGzip(h); got != want {
			t.Errorf("acceptsGzip(%q) = %v", h, got)
		}
	}
}

// TestMetricsFormats serves a store in every format: Content-Type and Content-Length are set,
// gzip is applied when asked, and each body parses.
func TestMetricsFormats(t *testing.T) {
	s := store.New(store.Options{})
	g := &dto.MetricFamily{Name: proto.String("g"), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(7)}}}}
	if _, err := s.Push(store.PushRequest{Key: store.MustKey("job", "a"), Families: []*dto.MetricFamily{g}, Replace: true}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	h := Metrics(s, reg, NewInstrumentation(reg), slog.New(slog.DiscardHandler))
	for _, c := range []struct {
		accept string
		gzip   bool
	}{
		{"text/plain;version=0.0.4", false},
		{"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", false},
		{"application/openmetrics-text;version=1.0.0", false},
		{"text/plain;version=0.0.4", true},
	} {
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.Header.Set("Accept", c.accept)
		if c.gzip {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		var body io.Reader = rec.Body
		if c.gzip {
			if rec.Header().Get("Content-Encoding") != "gzip" {
				t.Fatalf("%s: not gzipped", c.accept)
			}
			zr, err := gzip.NewReader(rec.Body)
			if err != nil {
				t.Fatal(err)
			}
			body = zr
		} else if n, _ := strconv.Atoi(rec.Header().Get("Content-Length")); n != rec.Body.Len() && !strings.Contains(c.accept, "openmetrics") {
			t.Errorf("%s: Content-Length %d for a body of %d", c.accept, n, rec.Body.Len())
		}
		format := expfmt.ResponseFormat(rec.Header())
		dec := expfmt.NewDecoder(body, format)
		found := false
		for {
			mf := &dto.MetricFamily{}
			if err := dec.Decode(mf); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", c.accept, err)
			}
			if mf.GetName() == "g" && len(mf.Metric) == 1 {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: the pushed sample is not served", c.accept)
		}
	}
}
