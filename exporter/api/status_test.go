package api

import (
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/opview/opview/exporter/store"
)

// TestStatusPageIsEscapedAndBounded: what clients sent appears escaped and as bounded excerpts.
func TestStatusPageIsEscapedAndBounded(t *testing.T) {
	s := store.New(store.Options{})
	g := &dto.MetricFamily{Name: proto.String("g"), Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(1)}}}}
	long := strings.Repeat("<script>", 10000)
	if _, err := s.Push(store.PushRequest{Key: store.MustKey("job", "a", "x", long), Families: []*dto.MetricFamily{g}, Client: "192.0.2.1:5"}); err != nil {
		t.Fatal(err)
	}
	s.RecordRefusal(store.MustKey("job", "<b>"), "192.0.2.2:6", errors.New(long))
	rec := httptest.NewRecorder()
	Status(s, StatusInfo{Version: "test", TTL: time.Minute, Settings: []Setting{{"--group.ttl", "1m0s"}}}, time.Now, slog.New(slog.DiscardHandler)).
		ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	page := rec.Body.String()
	if strings.Contains(page, "<script>") || strings.Contains(page, "<b>") {
		t.Error("client input is not escaped")
	}
	if len(page) > 16<<10 {
		t.Errorf("status page of %d bytes for one group and one refusal", len(page))
	}
	for _, want := range []string{"--group.ttl=1m0s", "192.0.2.1:5", "192.0.2.2:6", "Refused pushes to groups the relay does not hold"} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
}
