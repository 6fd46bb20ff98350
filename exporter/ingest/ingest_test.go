package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"
)

// TestBodyStopsAtTooManySeries: decoding stops once a body surely carries more series than the
// limit, in both formats, instead of decoding it whole to refuse it afterwards.
func TestBodyStopsAtTooManySeries(t *testing.T) {
	var text strings.Builder
	text.WriteString("# TYPE g gauge\n")
	for i := range 5000 {
		fmt.Fprintf(&text, "g{i=\"%d\"} 1\n", i)
	}
	if _, err := Body(strings.NewReader(text.String()), 0, "text/plain", "", 1<<20, 100); !errors.Is(err, ErrTooManySeries) {
		t.Errorf("text: %v; want ErrTooManySeries", err)
	}
	if fams, err := Body(strings.NewReader(text.String()), 0, "text/plain", "", 1<<20, 5000); err != nil || len(fams.Decoded[0].Metric) != 5000 {
		t.Errorf("text within the limit: %v", err)
	}

	var pb bytes.Buffer
	enc := expfmt.NewEncoder(&pb, expfmt.NewFormat(expfmt.TypeProtoDelim))
	for f := range 50 {
		mf := &dto.MetricFamily{Name: proto.String(fmt.Sprintf("g%d", f)), Type: dto.MetricType_GAUGE.Enum()}
		for i := range 100 {
			mf.Metric = append(mf.Metric, &dto.Metric{Label: []*dto.LabelPair{{Name: proto.String("i"), Value: proto.String(fmt.Sprint(i))}}, Gauge: &dto.Gauge{Value: proto.Float64(1)}})
		}
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	ct := string(expfmt.NewFormat(expfmt.TypeProtoDelim))
	if _, err := Body(bytes.NewReader(pb.Bytes()), 0, ct, "", 1<<20, 1000); !errors.Is(err, ErrTooManySeries) {
		t.Errorf("protobuf: %v; want ErrTooManySeries", err)
	}
	if fams, err := Body(bytes.NewReader(pb.Bytes()), 0, ct, "", 1<<20, 0); err != nil || !bytes.Equal(fams.Encoded, pb.Bytes()) {
		t.Errorf("protobuf without a limit: %v", err)
	}
}
