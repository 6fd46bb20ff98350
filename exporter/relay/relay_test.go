package relay_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/push"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/encoding/protodelim"

	"github.com/opview/opview/exporter/relay"
	"github.com/opview/opview/exporter/store"
	"github.com/opview/opview/internal/promtest"
	"github.com/opview/opview/internal/relaytest"
)

// clock is a settable clock for expiry tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// formats maps a name to the Accept header that selects each format the relay negotiates.
var formats = map[string]string{
	"text":        "text/plain;version=0.0.4",
	"protobuf":    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited",
	"openmetrics": "application/openmetrics-text;version=1.0.0",
	"default":     "",
	"prometheus3": "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
}

// fastFormats leaves out OpenMetrics, whose decoder in prometheus/common takes about a second
// per scrape: tests that scrape after every step check it once at the end.
var fastFormats = map[string]string{"text": formats["text"], "protobuf": formats["protobuf"]}

// scrape fetches /metrics with the given Accept header and decodes it with prometheus/common,
// failing the test if the exposition does not parse.
func scrape(t *testing.T, url, accept string) map[string]*dto.MetricFamily {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+"/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	format := expfmt.ResponseFormat(resp.Header)
	if format == expfmt.FmtUnknown {
		t.Fatalf("GET /metrics: unknown Content-Type %q", resp.Header.Get("Content-Type"))
	}
	dec := expfmt.NewDecoder(resp.Body, format)
	out := map[string]*dto.MetricFamily{}
	for {
		mf := &dto.MetricFamily{}
		if err := dec.Decode(mf); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decoding /metrics as %s: %v", format, err)
		}
		if _, dup := out[mf.GetName()]; dup {
			t.Fatalf("family %s appears twice in /metrics (%s)", mf.GetName(), format)
		}
		out[mf.GetName()] = mf
	}
	return out
}

// operatorRegistry is a registry shaped like a controller's: a counter vec, a gauge and a
// histogram, plus the Go collector's families, which collide by name with the relay's own.
func operatorRegistry(t *testing.T, controller string, reconciles float64) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	total := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "controller_runtime_reconcile_total", Help: "Total number of reconciliations per controller"}, []string{"controller", "result"})
	total.WithLabelValues(controller, "success").Add(reconciles)
	total.WithLabelValues(controller, "error").Add(1)
	depth := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "workqueue_depth", Help: "Current depth of workqueue"}, []string{"name", "controller"})
	depth.WithLabelValues(controller, controller).Set(3)
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "controller_runtime_reconcile_time_seconds", Help: "Length of time per reconciliation per controller", Buckets: prometheus.DefBuckets}, []string{"controller"})
	h.WithLabelValues(controller).Observe(0.02)
	h.WithLabelValues(controller).Observe(0.3)
	reg.MustRegister(total, depth, h, collectors.NewGoCollector())
	return reg
}

// TestClientGolangRoundTrip pushes with client_golang's push package, unchanged, in both of its
// formats, and reads the samples back from /metrics in every format the relay negotiates.
func TestClientGolangRoundTrip(t *testing.T) {
	for _, pushFormat := range []expfmt.Format{expfmt.NewFormat(expfmt.TypeProtoDelim), expfmt.NewFormat(expfmt.TypeTextPlain)} {
		t.Run(fmt.Sprint(pushFormat.FormatType()), func(t *testing.T) {
			url := relaytest.Start(t, relay.Config{GroupTTL: time.Minute}).URL
			p := push.New(url, "my-operator").Grouping("instance", "laptop").Format(pushFormat)

			// Push (PUT) replaces the group.
			if err := p.Gatherer(operatorRegistry(t, "memcached", 5)).Push(); err != nil {
				t.Fatalf("Push: %v", err)
			}
			want := map[string]string{"job": "my-operator", "instance": "laptop", "controller": "memcached", "result": "success"}
			for name, accept := range formats {
				fams := scrape(t, url, accept)
				if v, ok := promtest.Value(fams, "controller_runtime_reconcile_total", want); !ok || v != 5 {
					t.Errorf("%s: reconcile_total = %v, %v; want 5", name, v, ok)
				}
				if v, ok := promtest.Value(fams, "controller_runtime_reconcile_time_seconds", map[string]string{"job": "my-operator", "controller": "memcached"}); !ok || v != 2 {
					t.Errorf("%s: reconcile_time_seconds count = %v, %v; want 2", name, v, ok)
				}
				// The operator's go_goroutines and the relay's own share one family.
				if _, ok := promtest.Value(fams, "go_goroutines", map[string]string{"job": "my-operator"}); !ok {
					t.Errorf("%s: pushed go_goroutines missing", name)
				}
				if v, ok := promtest.Value(fams, "push_time_seconds", map[string]string{"job": "my-operator", "instance": "laptop"}); !ok || v == 0 {
					t.Errorf("%s: push_time_seconds = %v, %v", name, v, ok)
				}
				if v, ok := promtest.Value(fams, "opview_relay_group_fresh", map[string]string{"job": "my-operator", "instance": "laptop"}); !ok || v != 1 {
					t.Errorf("%s: opview_relay_group_fresh = %v, %v; want 1", name, v, ok)
				}
			}

			// Add (POST) replaces only the families it carries: workqueue_depth stays.
			add := prometheus.NewRegistry()
			c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "controller_runtime_reconcile_total", Help: "Total number of reconciliations per controller"}, []string{"controller", "result"})
			c.WithLabelValues("memcached", "success").Add(9)
			add.MustRegister(c)
			if err := push.New(url, "my-operator").Grouping("instance", "laptop").Format(pushFormat).Gatherer(add).Add(); err != nil {
				t.Fatalf("Add: %v", err)
			}
			fams := scrape(t, url, "")
			if v, _ := promtest.Value(fams, "controller_runtime_reconcile_total", want); v != 9 {
				t.Errorf("after Add: reconcile_total = %v, want 9", v)
			}
			if _, ok := promtest.Value(fams, "controller_runtime_reconcile_total", map[string]string{"job": "my-operator", "result": "error"}); ok {
				t.Errorf("after Add: the family was merged, not replaced (result=error still there)")
			}
			if v, ok := promtest.Value(fams, "workqueue_depth", map[string]string{"job": "my-operator"}); !ok || v != 3 {
				t.Errorf("after Add: workqueue_depth = %v, %v; want it kept at 3", v, ok)
			}

			// Push again replaces everything: a smaller registry leaves only its families.
			if err := push.New(url, "my-operator").Grouping("instance", "laptop").Format(pushFormat).Gatherer(add).Push(); err != nil {
				t.Fatalf("second Push: %v", err)
			}
			if _, ok := promtest.Value(scrape(t, url, ""), "workqueue_depth", map[string]string{"job": "my-operator"}); ok {
				t.Errorf("after Push: workqueue_depth survived a replacing push")
			}

			// Delete removes the group and its health series.
			if err := push.New(url, "my-operator").Grouping("instance", "laptop").Delete(); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			fams = scrape(t, url, "")
			for _, name := range []string{"controller_runtime_reconcile_total", "push_time_seconds"} {
				if _, ok := promtest.Value(fams, name, map[string]string{"job": "my-operator"}); ok {
					t.Errorf("after Delete: %s still has the group's series", name)
				}
			}
		})
	}
}

// TestGroupingKeyEncodings covers @base64 values (client_golang's encoding of values with "/"
// and of empty values) and extra grouping labels.
func TestGroupingKeyEncodings(t *testing.T) {
	url := relaytest.Start(t, relay.Config{}).URL
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "answer", Help: "The answer."})
	g.Set(42)
	reg.MustRegister(g)
	if err := push.New(url, "ns/operator").Grouping("instance", "").Grouping("path", "a/b c").Gatherer(reg).Push(); err != nil {
		t.Fatal(err)
	}
	if v, ok := promtest.Value(scrape(t, url, ""), "answer", map[string]string{"job": "ns/operator", "instance": "", "path": "a/b c"}); !ok || v != 42 {
		t.Fatalf("answer = %v, %v; want 42 under the decoded grouping key", v, ok)
	}
}

func do(t *testing.T, method, url, contentType string, body []byte, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func gzipped(s string) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(s))
	zw.Close()
	return b.Bytes()
}

// TestBadPushes sends one bad push after another to a relay holding good data; each must be
// refused with the right status and a message naming the problem, and leave the stored data and
// /metrics exactly as they were.
func TestBadPushes(t *testing.T) {
	url := relaytest.Start(t, relay.Config{MaxBodyBytes: 4096, Limits: store.Limits{MaxSeriesPerGroup: 10, MaxGroups: 3}}).URL
	const text = "text/plain; version=0.0.4"
	good := "# HELP requests_total Requests.\n# TYPE requests_total counter\nrequests_total{code=\"200\"} 7\n# TYPE temperature gauge\ntemperature 21.5\n"
	if code, msg := do(t, http.MethodPut, url+"/metrics/job/good/instance/a", text, []byte(good)); code != http.StatusOK {
		t.Fatalf("good push: %d %s", code, msg)
	}
	if code, msg := do(t, http.MethodPut, url+"/metrics/job/other", text, []byte("# TYPE temperature gauge\ntemperature 3\n")); code != http.StatusOK {
		t.Fatalf("second good push: %d %s", code, msg)
	}
	before := snapshot(t, url)

	big := strings.Repeat("# padding comment to exceed the body limit\n", 200)
	manySeries := ""
	for i := range 11 {
		manySeries += fmt.Sprintf("s{i=\"%d\"} 1\n", i)
	}
	cases := []struct {
		name, method, path, contentType string
		body                            []byte
		headers                         []string
		code                            int
		msg                             string
	}{
		{"malformed text", "PUT", "/metrics/job/good/instance/a", text, []byte("requests_total{code=\"200\" 7\n"), nil, 400, "text body"},
		{"malformed protobuf", "PUT", "/metrics/job/good/instance/a", string(expfmt.NewFormat(expfmt.TypeProtoDelim)), []byte{0x05, 0xff, 0xff}, nil, 400, "protobuf body"},
		{"timestamp", "POST", "/metrics/job/good/instance/a", text, []byte("requests_total{code=\"200\"} 8 1700000000000\n"), nil, 400, "timestamps are not allowed"},
		{"type conflict with another group", "POST", "/metrics/job/third", text, []byte("# TYPE requests_total gauge\nrequests_total 1\n"), nil, 409, `"requests_total" is pushed as gauge, but group {instance="a",job="good"} already pushed it as counter`},
		{"type conflict with the relay's own metric", "PUT", "/metrics/job/third", text, []byte("# TYPE go_goroutines counter\ngo_goroutines 1\n"), nil, 409, "relay's own metrics"},
		{"reserved name", "PUT", "/metrics/job/third", text, []byte("push_time_seconds 1\n"), nil, 400, "reserved"},
		{"body label contradicts grouping key", "PUT", "/metrics/job/good/instance/a", text, []byte("x{instance=\"b\"} 1\n"), nil, 400, `label instance="b" contradicts the grouping key`},
		{"series collides with another group", "PUT", "/metrics/job/good", text, []byte("# TYPE temperature gauge\ntemperature{instance=\"a\"} 1\n"), nil, 409, "already exposed by group"},
		{"invalid metric name in protobuf", "PUT", "/metrics/job/good/instance/a", string(expfmt.NewFormat(expfmt.TypeProtoDelim)), protoBody(t, "bad-name", "l", "v"), nil, 400, `metric name "bad-name" is invalid`},
		{"invalid label name in URL", "PUT", "/metrics/job/good/bad-label/x", text, []byte(good), nil, 400, `label name "bad-label" is invalid`},
		{"reserved label name in URL", "PUT", "/metrics/job/good/__name__/x", text, []byte(good), nil, 400, "reserved"},
		{"missing job", "PUT", "/metrics/instance/a", text, []byte(good), nil, 400, "/metrics/job/<job>"},
		{"empty job", "PUT", "/metrics/job@base64/=", text, []byte(good), nil, 400, "job label is required"},
		{"label without value", "PUT", "/metrics/job/good/instance", text, []byte(good), nil, 400, "has no value"},
		{"bad base64", "PUT", "/metrics/job/good/instance@base64/!!!", text, []byte(good), nil, 400, "base64"},
		{"invalid UTF-8 label value", "PUT", "/metrics/job/good/instance/a", text, []byte("x{l=\"\xff\"} 1\n"), nil, 400, "invalid label value"},
		{"invalid UTF-8 in protobuf", "PUT", "/metrics/job/good/instance/a", string(expfmt.NewFormat(expfmt.TypeProtoDelim)), protoBody(t, "x", "l", "\xff"), nil, 400, "not valid UTF-8"},
		{"duplicate series", "PUT", "/metrics/job/good/instance/a", text, []byte("x{l=\"1\"} 1\nx{l=\"1\"} 2\n"), nil, 400, "duplicate series"},
		{"body too large", "PUT", "/metrics/job/good/instance/a", text, []byte(good + big), nil, 413, "--push.max-body-bytes"},
		{"gzip bomb", "PUT", "/metrics/job/good/instance/a", text, gzipped(good + big), []string{"Content-Encoding", "gzip"}, 413, "after decompression"},
		{"broken gzip", "PUT", "/metrics/job/good/instance/a", text, []byte("not gzip"), []string{"Content-Encoding", "gzip"}, 400, "gzip"},
		{"unknown encoding", "PUT", "/metrics/job/good/instance/a", text, []byte(good), []string{"Content-Encoding", "br"}, 400, "Content-Encoding"},
		{"too many series", "PUT", "/metrics/job/good/instance/a", text, []byte(manySeries), nil, 413, "--group.max-series"},
		{"too many groups", "PUT", "/metrics/job/g3", text, []byte("a 1\n"), nil, 0, ""}, // fills the store (3 groups)...
		{"...then one more", "PUT", "/metrics/job/g4", text, []byte("a 1\n"), nil, 403, "--store.max-groups"},
	}
	for _, c := range cases {
		code, msg := do(t, c.method, url+c.path, c.contentType, c.body, c.headers...)
		if c.code == 0 {
			if code != http.StatusOK {
				t.Fatalf("%s: setup push failed: %d %s", c.name, code, msg)
			}
			before = snapshot(t, url)
			continue
		}
		if code != c.code || !strings.Contains(msg, c.msg) {
			t.Errorf("%s: got %d %q; want %d containing %q", c.name, code, strings.TrimSpace(msg), c.code, c.msg)
		}
		if after := snapshot(t, url); after != before {
			t.Errorf("%s: the refused push changed the stored data:\nbefore:\n%s\nafter:\n%s", c.name, before, after)
		}
	}
	for _, accept := range formats {
		scrape(t, url, accept) // every format still parses
	}
	// The refusals were recorded on the existing group's health series.
	if v, ok := promtest.Value(scrape(t, url, ""), "opview_relay_group_push_failures_total", map[string]string{"job": "good", "instance": "a"}); !ok || v == 0 {
		t.Errorf("opview_relay_group_push_failures_total = %v, %v; want > 0", v, ok)
	}
}

// snapshot is the pushed data as /metrics shows it (in text, minus the relay's own and health
// families) after checking that the protobuf exposition parses too.
func snapshot(t *testing.T, url string) string {
	t.Helper()
	scrape(t, url, formats["protobuf"])
	var b strings.Builder
	fams := scrape(t, url, formats["text"])
	var names []string
	for name := range fams {
		names = append(names, name)
	}
	sortStrings(names)
	for _, name := range names {
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "opview_relay_") || strings.HasPrefix(name, "push_") {
			continue
		}
		// Text rendering of each family, lines sorted: the relay does not promise an order.
		var fb strings.Builder
		expfmt.MetricFamilyToText(&fb, fams[name])
		lines := strings.Split(fb.String(), "\n")
		sortStrings(lines)
		b.WriteString(strings.Join(lines, "\n"))
	}
	return b.String()
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// protoBody encodes one gauge sample as delimited protobuf, unchecked (expfmt's encoder would
// escape an invalid name).
func protoBody(t *testing.T, name, label, value string) []byte {
	t.Helper()
	var b bytes.Buffer
	v := 1.0
	mf := &dto.MetricFamily{Name: &name, Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{{
		Label: []*dto.LabelPair{{Name: &label, Value: &value}},
		Gauge: &dto.Gauge{Value: &v},
	}}}
	if _, err := protodelim.MarshalTo(&b, mf); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestExpiry drives the TTL with an injected clock: a group quiet for longer than the TTL leaves
// /metrics (while one that keeps pushing stays), its health series report fresh=0 until
// forgotten, and a new push revives it.
func TestExpiry(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	srv := relaytest.Start(t, relay.Config{GroupTTL: time.Minute, ForgetAfter: 10 * time.Minute, Now: clk.Now})
	r, url := srv.Relay, srv.URL
	pushText := func(job string) {
		t.Helper()
		if code, msg := do(t, "PUT", url+"/metrics/job/"+job, "", []byte("# TYPE up_ish gauge\nup_ish 1\n")); code != 200 {
			t.Fatalf("push %s: %d %s", job, code, msg)
		}
	}
	has := func(fams map[string]*dto.MetricFamily, name, job string) bool {
		_, ok := promtest.Value(fams, name, map[string]string{"job": job})
		return ok
	}
	pushText("quiet")
	pushText("busy")
	clk.Add(40 * time.Second)
	pushText("busy")
	clk.Add(20 * time.Second) // quiet is exactly at the TTL: still served
	if fams := scrape(t, url, ""); !has(fams, "up_ish", "quiet") {
		t.Fatal("group dropped at exactly the TTL")
	}
	clk.Add(time.Second)
	fams := scrape(t, url, "")
	if has(fams, "up_ish", "quiet") {
		t.Error("quiet group still on /metrics after the TTL")
	}
	if !has(fams, "up_ish", "busy") {
		t.Error("busy group dropped although it pushed within the TTL")
	}
	if v, _ := promtest.Value(fams, "opview_relay_group_fresh", map[string]string{"job": "quiet"}); v != 0 {
		t.Errorf("opview_relay_group_fresh{job=quiet} = %v, want 0 once expired", v)
	}
	if n := r.Store.Sweep(); n != 1 {
		t.Errorf("Sweep expired %d groups, want 1", n)
	}
	if v, _ := promtest.Value(scrape(t, url, ""), "opview_relay_groups_expired_total", nil); v != 1 {
		t.Errorf("opview_relay_groups_expired_total = %v, want 1", v)
	}
	// Forgotten after TTL + ForgetAfter.
	clk.Add(10 * time.Minute)
	r.Store.Sweep()
	if has(scrape(t, url, ""), "opview_relay_group_fresh", "quiet") {
		t.Error("expired group's health series still there after --group.forget-after")
	}
	// A push brings a group back.
	pushText("quiet")
	if !has(scrape(t, url, ""), "up_ish", "quiet") {
		t.Error("a new push did not revive the group")
	}
}

// TestZeroTTLKeepsGroups: --group.ttl=0 is Pushgateway's behaviour.
func TestZeroTTLKeepsGroups(t *testing.T) {
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	srv := relaytest.Start(t, relay.Config{GroupTTL: 0, Now: clk.Now})
	r, url := srv.Relay, srv.URL
	if code, msg := do(t, "PUT", url+"/metrics/job/forever", "", []byte("x 1\n")); code != 200 {
		t.Fatalf("push: %d %s", code, msg)
	}
	clk.Add(1000 * time.Hour)
	r.Store.Sweep()
	if _, ok := promtest.Value(scrape(t, url, ""), "x", map[string]string{"job": "forever"}); !ok {
		t.Fatal("group expired with --group.ttl=0")
	}
}

// TestConcurrentPushesAndScrapes runs pushers, deleters and scrapers at once (meant for -race);
// every scrape must parse and the final state must hold every pusher's last push.
func TestConcurrentPushesAndScrapes(t *testing.T) {
	url := relaytest.Start(t, relay.Config{GroupTTL: time.Minute}).URL
	const pushers, rounds = 6, 30
	var wg sync.WaitGroup
	var stop atomic.Bool
	errs := make(chan error, 100)
	for i := range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 1; n <= rounds; n++ {
				reg := operatorRegistry(t, fmt.Sprintf("c%d", i), float64(n))
				p := push.New(url, "op").Grouping("instance", fmt.Sprint(i)).Gatherer(reg)
				var err error
				if n%3 == 0 {
					err = p.Add()
				} else {
					err = p.Push()
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // a deleter of a group nobody else uses
		defer wg.Done()
		for !stop.Load() {
			do(t, "PUT", url+"/metrics/job/transient", "", []byte("x 1\n"))
			do(t, "DELETE", url+"/metrics/job/transient", "", nil)
		}
	}()
	var scrapes atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				for _, accept := range fastFormats {
					scrape(t, url, accept)
				}
				scrapes.Add(1)
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		fams := scrape(t, url, "")
		done := 0
		for i := range pushers {
			if v, _ := promtest.Value(fams, "controller_runtime_reconcile_total", map[string]string{"instance": fmt.Sprint(i), "result": "success"}); v == rounds {
				done++
			}
		}
		if done == pushers || time.Now().After(deadline) {
			break
		}
		select {
		case err := <-errs:
			t.Fatal(err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	fams := scrape(t, url, "")
	for i := range pushers {
		if v, _ := promtest.Value(fams, "controller_runtime_reconcile_total", map[string]string{"instance": fmt.Sprint(i), "result": "success"}); v != rounds {
			t.Errorf("pusher %d: last value %v, want %d", i, v, rounds)
		}
	}
	if scrapes.Load() == 0 {
		t.Error("no scrape completed during the pushes")
	}
	scrape(t, url, formats["openmetrics"])
}

// TestStatusAndHealth checks the status page and the health endpoints.
func TestStatusAndHealth(t *testing.T) {
	url := relaytest.Start(t, relay.Config{GroupTTL: time.Minute}).URL
	if code, msg := do(t, "PUT", url+"/metrics/job/demo/instance/laptop", "", []byte("x 1\ny 2\n")); code != 200 {
		t.Fatalf("push: %d %s", code, msg)
	}
	code, page := do(t, "GET", url+"/", "", nil)
	if code != 200 {
		t.Fatalf("GET /: %d", code)
	}
	for _, want := range []string{`{instance=&#34;laptop&#34;,job=&#34;demo&#34;}`, "fresh", "<td>2</td>"} {
		if !strings.Contains(page, want) {
			t.Errorf("status page lacks %q", want)
		}
	}
	if !strings.Contains(page, "in 1m0s") && !strings.Contains(page, "in 59s") {
		t.Errorf("status page does not say when the group expires:\n%s", page)
	}
	for _, path := range []string{"/-/healthy", "/-/ready"} {
		if code, _ := do(t, "GET", url+path, "", nil); code != 200 {
			t.Errorf("GET %s: %d", path, code)
		}
	}
	if code, _ := do(t, "GET", url+"/metrics/job/demo", "", nil); code != http.StatusMethodNotAllowed {
		t.Errorf("GET on a push URL: %d, want 405", code)
	}
}

// TestGzipScrape: gzip is used when asked and the body still parses.
func TestGzipScrape(t *testing.T) {
	url := relaytest.Start(t, relay.Config{}).URL
	do(t, "PUT", url+"/metrics/job/demo", "", []byte("x 1\n"))
	req, _ := http.NewRequest("GET", url+"/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(req) // the transport would decompress transparently otherwise
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding = %q, want gzip", resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(zr)
	if !strings.Contains(string(b), `x{instance="",job="demo"} 1`) {
		t.Errorf("gzipped body lacks the pushed sample:\n%s", b)
	}
}
