package bench

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func payload(t *testing.T) *Payload {
	t.Helper()
	p, err := LoadPayload("testdata/controller-runtime.prom")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPayload(t *testing.T) {
	p := payload(t)
	if p.Families < 100 || p.Series < 1000 || len(p.Proto) == 0 || len(p.Proto) >= len(p.Text) {
		t.Fatalf("payload: %d families, %d series, %d bytes text, %d protobuf", p.Families, p.Series, len(p.Text), len(p.Proto))
	}
	if _, err := ParsePayload([]byte("not a metric line\n")); err == nil {
		t.Fatal("a broken payload accepted")
	}
	if _, err := LoadPayload("testdata/nonexistent.prom"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing payload: %v", err)
	}
}

// The parse-only limit parses what the load pushes and refuses what the relay refuses; the
// bare-bytes limit serves the last body of each format.
func TestLimitsHandler(t *testing.T) {
	p := payload(t)
	srv := httptest.NewServer(LimitsHandler(1<<20, 5000))
	defer srv.Close()
	ctx := context.Background()

	figs, err := PushLoad(ctx, srv.URL, func() (float64, error) { return 0, nil }, 3, 2, 20, 10*time.Second, p.Proto)
	if err != nil {
		t.Fatal(err)
	}
	if figs[PushesPerSecond] <= 0 || figs[PushP50Seconds] <= 0 {
		t.Fatalf("push figures: %v", figs)
	}
	if err := Push(ctx, srv.URL, 0, []byte("garbage")); err == nil || !strings.Contains(err.Error(), "HTTP 400") {
		t.Fatalf("a garbage body: %v", err)
	}
	tooBig := bytes.Repeat(p.Proto, 20)
	if err := Push(ctx, srv.URL, 0, tooBig); err == nil || !strings.Contains(err.Error(), "HTTP 400") {
		t.Fatalf("a body over the limit: %v", err)
	}
	resp, err := http.Post(srv.URL+"/metrics/instance/x", "text/plain", strings.NewReader("x 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a push without a job: %s", resp.Status)
	}

	if _, _, err := ScrapeOnce(ctx, srv.URL, AcceptText, nil); err == nil {
		t.Fatal("a scrape before any body was set succeeded")
	}
	if err := put(ctx, srv.URL+"/bare", "text/plain; version=0.0.4", p.Text); err != nil {
		t.Fatal(err)
	}
	if err := put(ctx, srv.URL+"/bare", ContentTypeProto, p.Proto); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		accept, ct string
		body       []byte
	}{{AcceptText, "text/plain; version=0.0.4", p.Text}, {AcceptProto, ContentTypeProto, p.Proto}} {
		var got bytes.Buffer
		n, ct, err := ScrapeOnce(ctx, srv.URL, c.accept, &got)
		if err != nil || ct != c.ct || n != int64(len(c.body)) || !bytes.Equal(got.Bytes(), c.body) {
			t.Errorf("scrape %s: %d bytes, %q, %v", c.accept, n, ct, err)
		}
	}
	sec, size, err := ScrapeLoad(ctx, srv.URL, AcceptProto, 3, time.Second)
	if err != nil || sec <= 0 || size != int64(len(p.Proto)) {
		t.Fatalf("ScrapeLoad = %v, %d, %v", sec, size, err)
	}
}
