package api

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/opview/opview/exporter/store"
)

// benchBodies are the bench payload as a push body in both formats client_golang sends.
func benchBodies(tb testing.TB) map[string][]byte {
	b, err := os.ReadFile(benchPayload)
	if err != nil {
		tb.Fatal(err)
	}
	tp := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := tp.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	// In name order, as client_golang's push client sends a registry.
	sorted := mapValues(fams)
	slices.SortFunc(sorted, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	var pb bytes.Buffer
	enc := expfmt.NewEncoder(&pb, expfmt.NewFormat(expfmt.TypeProtoDelim))
	for _, mf := range sorted {
		if err := enc.Encode(mf); err != nil {
			tb.Fatal(err)
		}
	}
	return map[string][]byte{"text": b, "proto": pb.Bytes()}
}

// parse decodes a push body into client_model's objects with the libraries' decoders.
func parse(body []byte, format string) ([]*dto.MetricFamily, error) {
	if format == "text" {
		tp := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := tp.TextToMetricFamilies(bytes.NewReader(body))
		return mapValues(fams), err
	}
	var out []*dto.MetricFamily
	r := bufio.NewReader(bytes.NewReader(body))
	for {
		mf := &dto.MetricFamily{}
		if err := protodelim.UnmarshalFrom(r, mf); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		out = append(out, mf)
	}
}

var pushContentTypes = map[string]string{
	"text":  "text/plain; version=0.0.4",
	"proto": string(expfmt.NewFormat(expfmt.TypeProtoDelim)),
}

// BenchmarkPush is one push of the bench payload replacing a group of a store holding n groups,
// through the handler (decode, validate, render, apply; no network), next to parsing the same
// body alone into client_model's objects (stage=parse), as Pushgateway does and as the relay did
// before it read protobuf bodies itself: the limit a push's cost is measured against.
func BenchmarkPush(b *testing.B) {
	bodies := benchBodies(b)
	for _, format := range []string{"text", "proto"} {
		body, ct := bodies[format], pushContentTypes[format]
		b.Run(fmt.Sprintf("format=%s/stage=parse", format), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := parse(body, format); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, n := range []int{1, 100} {
			b.Run(fmt.Sprintf("format=%s/stage=push/groups=%d", format, n), func(b *testing.B) {
				s := store.New(store.Options{})
				h := Push(s, true, Limits{MaxBodyBytes: 16 << 20, MaxSeries: 20000}, nil, nil, slog.New(slog.DiscardHandler))
				for g := range n {
					req := httptest.NewRequest(http.MethodPut, fmt.Sprintf("/metrics/job/bench/instance/g%03d", g), bytes.NewReader(body))
					req.Header.Set("Content-Type", ct)
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Fatalf("push: %d %s", rec.Code, rec.Body)
					}
				}
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				runtime.GC() // the setup's garbage is not the loop's to collect
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					req := httptest.NewRequest(http.MethodPut, "/metrics/job/bench/instance/g000", bytes.NewReader(body))
					req.Header.Set("Content-Type", ct)
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != http.StatusOK {
						b.Fatalf("push: %d %s", rec.Code, rec.Body)
					}
				}
			})
		}
	}
}
