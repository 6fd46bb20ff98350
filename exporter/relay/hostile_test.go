package relay_test

// A hostile client on the LAN, against a relay with the homelab bundle's settings: each test
// is one way to harm the relay or what it stores, and asserts a clear refusal, the groups stored
// before intact, and memory bounded as the store's own byte accounting counts it. The pull
// sources' share (fetches on a stranger's request) is in hostile_sources_test.go; the HTTP
// server's (timeouts, concurrent decoding) with the command, in exporter/cmd/opview-relay.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/proto"

	"github.com/opview/opview/exporter/relay"
	"github.com/opview/opview/internal/relaytest"
)

// bundleMemoryLimit is the relay container's memory limit in deploy/k3s, which the bundle gives
// the relay as GOMEMLIMIT.
const bundleMemoryLimit = 256 << 20

// bundleConfig is the relay as the bundle runs it (its flags' defaults, GOMEMLIMIT from the
// container's limit).
func bundleConfig() relay.Config {
	return relay.Config{
		GroupTTL: relay.DefaultGroupTTL, ForgetAfter: relay.DefaultForgetAfter,
		MaxBodyBytes: relay.DefaultMaxBody(bundleMemoryLimit), Limits: relay.DefaultLimits(bundleMemoryLimit),
	}
}

// hostile is a relay with the bundle's settings holding one legitimate group.
type hostile struct {
	*relaytest.Server
	before string // the legitimate group's samples
}

const legitimate = "# TYPE controller_runtime_reconcile_total counter\ncontroller_runtime_reconcile_total{controller=\"memcached\",result=\"success\"} 42\n"

func startHostile(t *testing.T, cfg relay.Config) *hostile {
	t.Helper()
	h := &hostile{Server: relaytest.Start(t, cfg)}
	if code, msg := do(t, http.MethodPut, h.URL+"/metrics/job/operator/instance/laptop", textFormat, []byte(legitimate)); code != http.StatusOK {
		t.Fatalf("legitimate push: %d %s", code, msg)
	}
	h.before = h.legitimate(t)
	return h
}

// legitimate is what /metrics serves of the legitimate group, in the text format.
func (h *hostile) legitimate(t *testing.T) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.URL+"/metrics", nil)
	req.Header.Set("Accept", formats["text"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var keep []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if l := sc.Text(); strings.Contains(l, `job="operator"`) && !strings.HasPrefix(l, "opview_relay_") && !strings.HasPrefix(l, "push_") {
			keep = append(keep, l)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(keep) == 0 {
		t.Fatal("the legitimate group is not served")
	}
	return strings.Join(keep, "\n")
}

// intact checks that the legitimate group is still served as it was and the store stayed within
// its budget.
func (h *hostile) intact(t *testing.T) {
	t.Helper()
	if after := h.legitimate(t); after != h.before {
		t.Fatalf("the stored groups changed:\nbefore:\n%s\nafter:\n%s", h.before, after)
	}
	if u := h.Store.Usage(); u.Limits.MaxBytes > 0 && u.Bytes > u.Limits.MaxBytes {
		t.Fatalf("the store holds %d bytes, over its budget of %d", u.Bytes, u.Limits.MaxBytes)
	}
}

// refused checks a refusal's status and that its message names the problem and is short.
func refused(t *testing.T, what string, code int, msg string, wantCode int, want string) {
	t.Helper()
	if code != wantCode || !strings.Contains(msg, want) {
		t.Fatalf("%s: got %d %.300q; want %d naming %q", what, code, msg, wantCode, want)
	}
	if len(msg) > 2048 {
		t.Fatalf("%s: a refusal of %d bytes", what, len(msg))
	}
}

const textFormat = "text/plain; version=0.0.4"

var protoFormat = string(expfmt.NewFormat(expfmt.TypeProtoDelim))

func protoOf(t *testing.T, fams ...*dto.MetricFamily) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, mf := range fams {
		if _, err := protodelim.MarshalTo(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// wideHistogram is one histogram with n buckets and one label of valueLen bytes: a small protobuf
// body whose rendering repeats the label in every bucket.
func wideHistogram(n, valueLen int) *dto.MetricFamily {
	h := &dto.Histogram{SampleCount: proto.Uint64(uint64(n)), SampleSum: proto.Float64(1)}
	for i := range n {
		h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: proto.Float64(float64(i + 1)), CumulativeCount: proto.Uint64(uint64(i))})
	}
	return &dto.MetricFamily{Name: proto.String("wide"), Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{{
		Label: []*dto.LabelPair{{Name: proto.String("v"), Value: proto.String(strings.Repeat("x", valueLen))}}, Histogram: h,
	}}}
}

// TestHostilePreRenderingAmplification: pushes whose rendering is many times their body (one
// histogram with 20k buckets and a long label value; long or many grouping labels; a huge HELP)
// are refused before the relay renders them.
func TestHostilePreRenderingAmplification(t *testing.T) {
	h := startHostile(t, bundleConfig())
	used := h.Store.Usage().Bytes
	body := protoOf(t, wideHistogram(19997, 10<<10))
	if len(body) > 400<<10 {
		t.Fatalf("test body of %d bytes: want a small one", len(body))
	}
	code, msg := do(t, http.MethodPut, h.URL+"/metrics/job/amp", protoFormat, body)
	refused(t, "a 10 KB label value", code, msg, http.StatusBadRequest, "--push.label-value-length-limit")
	// Within the label limits, the same shape would still render to ~80 MB: refused by the
	// budget before rendering.
	code, msg = do(t, http.MethodPut, h.URL+"/metrics/job/amp", protoFormat, protoOf(t, wideHistogram(19997, 2000)))
	refused(t, "a histogram rendering past the budget", code, msg, http.StatusRequestEntityTooLarge, "--store.max-bytes")

	long := strings.Repeat("v", 3000)
	code, msg = do(t, http.MethodPut, h.URL+"/metrics/job/amp/v/"+long, textFormat, nil)
	refused(t, "a long grouping value in the URL", code, msg, http.StatusBadRequest, "--push.label-value-length-limit")
	var path strings.Builder
	for i := range 100 {
		fmt.Fprintf(&path, "/l%d/v", i)
	}
	code, msg = do(t, http.MethodPut, h.URL+"/metrics/job/amp"+path.String(), textFormat, nil)
	refused(t, "100 grouping labels", code, msg, http.StatusBadRequest, "--push.label-limit")
	help := "# HELP big " + strings.Repeat("h", 2<<20) + "\n# TYPE big gauge\nbig 1\n"
	code, msg = do(t, http.MethodPut, h.URL+"/metrics/job/amp", textFormat, []byte(help))
	refused(t, "a 2 MiB HELP", code, msg, http.StatusBadRequest, "--push.help-length-limit")

	h.intact(t)
	if u := h.Store.Usage(); u.Bytes != used {
		t.Fatalf("refused pushes left %d bytes in the store (%d before)", u.Bytes, used)
	}
}

// TestHostileErrorsDoNotQuoteTheInput: a small gzip body that decompresses to one 1 MB line gets
// a short 400; what the relay keeps (the status page, the log) stays short too.
func TestHostileErrorsDoNotQuoteTheInput(t *testing.T) {
	h := startHostile(t, bundleConfig())
	line := "x{l=\"" + strings.Repeat("a", 1<<20) + "\n"
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(line))
	zw.Close()
	for i := range 3 {
		code, msg := do(t, http.MethodPut, h.URL+fmt.Sprintf("/metrics/job/operator/instance/laptop%d", i%2), textFormat, gz.Bytes(), "Content-Encoding", "gzip")
		refused(t, "a body that is one long line", code, msg, http.StatusBadRequest, "text body")
	}
	h.intact(t)
	code, page := do(t, http.MethodGet, h.URL+"/", "", nil)
	if code != http.StatusOK || len(page) > 64<<10 {
		t.Fatalf("status page: %d, %d bytes", code, len(page))
	}
	if n := len(h.Logs.String()); n > 64<<10 {
		t.Fatalf("the relay logged %d bytes for three refusals", n)
	}
	for _, g := range h.Store.Groups() {
		if len(g.LastError) > 600 {
			t.Fatalf("group %s keeps an error of %d bytes", g.Key, len(g.LastError))
		}
	}
}

// payload is a controller-runtime registry as a real operator exposes it (1,126 series).
func payload(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../../bench/testdata/controller-runtime.prom")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHostileFillingTheStore: valid groups pushed until the relay refuses: the refusal is a 413
// naming the budget, the store never passes it, and a restart from the persistence file into a
// smaller budget restores what fits, the freshest first, and serves.
func TestHostileFillingTheStore(t *testing.T) {
	cfg := bundleConfig()
	cfg.Limits.MaxBytes = 4 << 20 // the bundle's budget is 64 MiB; the same rules, 16x faster
	cfg.PersistenceFile = filepath.Join(t.TempDir(), "state")
	h := startHostile(t, cfg)
	body := payload(t)
	var code int
	var msg string
	n := 0
	for ; n < 1000; n++ {
		code, msg = do(t, http.MethodPut, h.URL+fmt.Sprintf("/metrics/job/filler/instance/i%04d", n), textFormat, body)
		if code != http.StatusOK {
			break
		}
	}
	refused(t, "the push past the budget", code, msg, http.StatusRequestEntityTooLarge, "--store.max-bytes")
	if n < 10 {
		t.Fatalf("only %d groups fit in 4 MiB", n)
	}
	h.intact(t)
	u := h.Store.Usage()
	t.Logf("%d groups of %d series: %d bytes of the %d budget (%d bytes per series)", n, 1126, u.Bytes, u.Limits.MaxBytes, u.Bytes/int64(u.Series))
	h.Stop()

	cfg.Limits.MaxBytes = 2 << 20
	r := relaytest.Start(t, cfg)
	ru := r.Store.Usage()
	if ru.Bytes > 2<<20 || ru.Groups == 0 || ru.Groups >= n {
		t.Fatalf("restored %d of %d groups into half the budget: %d bytes", ru.Groups, n+1, ru.Bytes)
	}
	if !strings.Contains(r.Logs.String(), "left out of the restore") {
		t.Errorf("the budget's share of the restore is not logged:\n%.2000s", r.Logs.String())
	}
	code, page := do(t, http.MethodGet, r.URL+"/", "", nil)
	if code != http.StatusOK || !strings.Contains(page, "byte budget was full") {
		t.Errorf("the status page does not say groups were left out: %d", code)
	}
	// The freshest groups came back: the last one pushed before the refusal is there.
	last, found := fmt.Sprintf("i%04d", n-1), false
	for _, g := range r.Store.Groups() {
		if inst, _ := g.Key.Get("instance"); inst == last && g.Fresh && g.Series > 0 {
			found = true
		}
	}
	if !found {
		t.Errorf("the last group pushed (%s) was not restored", last)
	}
}

// TestHostileGroupSlotSquatting: empty pushes that fill every group slot hold them only until
// they expire, never until they are forgotten.
func TestHostileGroupSlotSquatting(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	cfg := bundleConfig()
	cfg.Limits.MaxGroups = 50
	cfg.Now = clk.Now
	h := startHostile(t, cfg)
	for i := range 49 {
		if code, msg := do(t, http.MethodPut, h.URL+fmt.Sprintf("/metrics/job/squat%d", i), textFormat, nil); code != http.StatusOK {
			t.Fatalf("squatter %d: %d %s", i, code, msg)
		}
	}
	code, msg := do(t, http.MethodPut, h.URL+"/metrics/job/newcomer", textFormat, []byte("x 1\n"))
	refused(t, "a new group while the store is full", code, msg, http.StatusForbidden, "--store.max-groups")
	// The legitimate operator keeps pushing; the squatters don't.
	clk.Add(relay.DefaultGroupTTL - time.Second)
	if code, msg := do(t, http.MethodPut, h.URL+"/metrics/job/operator/instance/laptop", textFormat, []byte(legitimate)); code != http.StatusOK {
		t.Fatalf("legitimate push: %d %s", code, msg)
	}
	clk.Add(2 * time.Second)
	if code, msg := do(t, http.MethodPut, h.URL+"/metrics/job/newcomer", textFormat, []byte("x 1\n")); code != http.StatusOK {
		t.Fatalf("a new group once the squatters expired (not forgotten): %d %s", code, msg)
	}
	h.intact(t)
}

// TestHostileOpenMetricsLargeFamily: a family of more than 4 MiB is served whole in OpenMetrics
// (it was cut to an empty 200), encoded a bounded batch at a time.
func TestHostileOpenMetricsLargeFamily(t *testing.T) {
	h := startHostile(t, bundleConfig())
	for g := range 2 { // two groups, each within the body limit, make one family of 5 MB
		var b strings.Builder
		b.WriteString("# TYPE big gauge\n")
		for i := range 7500 {
			fmt.Fprintf(&b, "big{i=\"%d\",pad=\"%s\"} 1\n", i, strings.Repeat("p", 300))
		}
		if code, msg := do(t, http.MethodPut, h.URL+fmt.Sprintf("/metrics/job/big/instance/%d", g), textFormat, []byte(b.String())); code != http.StatusOK {
			t.Fatalf("push: %d %s", code, msg)
		}
	}
	req, _ := http.NewRequest(http.MethodGet, h.URL+"/metrics", nil)
	req.Header.Set("Accept", formats["openmetrics"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	om, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/openmetrics-text") {
		t.Fatalf("OpenMetrics scrape: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if n := strings.Count(string(om), "\nbig{"); n != 15000 || strings.Count(string(om), "# TYPE big gauge") != 1 || !strings.HasSuffix(string(om), "# EOF\n") {
		t.Fatalf("OpenMetrics scrape of %d bytes: %d samples of big, want 15000 under one header, ending in # EOF", len(om), n)
	}
	h.intact(t)
}

// TestHostileDuplicateBucketsAndSchemas: what the README promises: duplicate buckets or quantiles
// are refused, and so are native histograms Prometheus would refuse.
func TestHostileDuplicateBucketsAndSchemas(t *testing.T) {
	h := startHostile(t, bundleConfig())
	for _, c := range []struct{ name, body, want string }{
		{"duplicate le", "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n", "appears twice"},
		{"duplicate quantile", "# TYPE s summary\ns{quantile=\"0.5\"} 1\ns{quantile=\"0.5\"} 2\ns_sum 1\ns_count 2\n", "appears twice"},
	} {
		code, msg := do(t, http.MethodPut, h.URL+"/metrics/job/dup", textFormat, []byte(c.body))
		refused(t, c.name, code, msg, http.StatusBadRequest, c.want)
	}
	nh := &dto.MetricFamily{Name: proto.String("nh"), Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{{Histogram: &dto.Histogram{
		Schema: proto.Int32(20), SampleCount: proto.Uint64(1), SampleSum: proto.Float64(1), ZeroThreshold: proto.Float64(0.001),
		PositiveSpan: []*dto.BucketSpan{{Offset: proto.Int32(0), Length: proto.Uint32(1)}}, PositiveDelta: []int64{1},
	}}}}
	code, msg := do(t, http.MethodPut, h.URL+"/metrics/job/dup", protoFormat, protoOf(t, nh))
	refused(t, "native histogram schema 20", code, msg, http.StatusBadRequest, "schema 20")
	h.intact(t)
}

// TestHostilePersistenceLeftovers: temporary files of saves killed mid-way are removed at start.
func TestHostilePersistenceLeftovers(t *testing.T) {
	dir := t.TempDir()
	cfg := bundleConfig()
	cfg.PersistenceFile = filepath.Join(dir, "state")
	stale := filepath.Join(dir, ".state.tmp-4242")
	if err := os.WriteFile(stale, bytes.Repeat([]byte{'x'}, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHostile(t, cfg)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("the temporary file of an unfinished save is still there: %v", err)
	}
	h.intact(t)
}

// TestHostilePushWithoutJob: a push to /metrics itself is a clear 400, not a redirect that leaves
// curl reporting success.
func TestHostilePushWithoutJob(t *testing.T) {
	h := startHostile(t, bundleConfig())
	for _, m := range []string{http.MethodPut, http.MethodPost, http.MethodDelete} {
		req, _ := http.NewRequest(m, h.URL+"/metrics", strings.NewReader("x 1\n"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		refused(t, m+" /metrics", resp.StatusCode, string(b), http.StatusBadRequest, "/metrics/job/<job>")
	}
	h.intact(t)
}
