package dashboards_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/push"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/opview/opview/dashboards"
	"github.com/opview/opview/examples/sampleoperator"
	"github.com/opview/opview/exporter/relay"
	"github.com/opview/opview/exporter/sources"
)

type families map[string]*dto.MetricFamily

// TestMetricNamesExist runs the sample operator (a real controller-runtime manager: controllers,
// workqueues, leader election, webhook server, metrics server) and the real relay in process,
// scrapes both over HTTP, and checks that every metric name of every dashboard query exists there
// with a type that suits the function applied to it (no rate() of a gauge).
//
// Every family is produced for real: reconciles of every result, terminal errors, panics and
// timeouts by the sample controller; leader_election_master_status by client-go's elector (on an
// in-process lock); webhook and certwatcher metrics by the webhook server answering an
// AdmissionReview over loopback TLS; rest_client_requests_total by a client-go request to a
// loopback HTTP server; the relay's per-group series by pushes; its pull-source series by a real
// pull source (the sample operator's /metrics).
func TestMetricNamesExist(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	metricsAddr := freeAddr(t)
	_, whPortStr, _ := net.SplitHostPort(freeAddr(t))
	var whPort int
	fmt.Sscan(whPortStr, &whPort)
	certDir := writeCert(t)

	op, err := sampleoperator.New(nil, sampleoperator.Options{
		Metrics:          metricsserver.Options{BindAddress: metricsAddr},
		LeaderElection:   true,
		Webhook:          &webhook.Options{Host: "127.0.0.1", Port: whPort, CertDir: certDir},
		ReconcileTimeout: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- op.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("operator: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("operator did not stop")
		}
	})
	op.Enqueue("ok-1", "error-1", "terminal-1", "requeue-1", "after-1", "slow-1", "panic-1")

	// A client-go request to a loopback HTTP server: rest_client_requests_total{code="200"}.
	apiSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"major":"1","minor":"37","gitVersion":"v1.37.0"}`)
	}))
	t.Cleanup(apiSrv.Close)
	dc, err := discovery.NewDiscoveryClientForConfig(&rest.Config{Host: apiSrv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dc.ServerVersion(); err != nil {
		t.Fatalf("client-go request to the loopback server: %v", err)
	}

	// An AdmissionReview to the webhook server over loopback TLS.
	review := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"1","kind":{"group":"","version":"v1","kind":"ConfigMap"},` +
		`"resource":{"group":"","version":"v1","resource":"configmaps"},"operation":"CREATE","object":{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"deny":"true"}}}}`
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed test certificate
	poll(t, 30*time.Second, "webhook answers", func() error {
		resp, err := hc.Post(fmt.Sprintf("https://127.0.0.1:%d%s", whPort, sampleoperator.WebhookPath), "application/json", strings.NewReader(review))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"allowed":false`) {
			return fmt.Errorf("status %d: %s", resp.StatusCode, body)
		}
		return nil
	})

	ds := load(t)
	opDash, relayDash := ds[0], ds[1]
	if opDash.UID != dashboards.OperatorUID || relayDash.UID != dashboards.RelayUID {
		t.Fatalf("unexpected dashboard order: %s, %s", opDash.UID, relayDash.UID)
	}

	opNames, relayNames := queryNames(t, opDash), queryNames(t, relayDash)
	var opFams families
	poll(t, 60*time.Second, "operator metrics", func() error {
		var err error
		if opFams, err = scrape("http://" + metricsAddr + "/metrics"); err != nil {
			return err
		}
		var missing []string
		for _, c := range []struct {
			name   string
			labels map[string]string
			min    float64
		}{
			{"controller_runtime_reconcile_total", map[string]string{"result": "success"}, 1},
			{"controller_runtime_reconcile_total", map[string]string{"result": "error"}, 1},
			{"controller_runtime_reconcile_total", map[string]string{"result": "requeue"}, 1},
			{"controller_runtime_reconcile_total", map[string]string{"result": "requeue_after"}, 1},
			{"controller_runtime_terminal_reconcile_errors_total", nil, 1},
			{"controller_runtime_reconcile_panics_total", nil, 1},
			{"controller_runtime_reconcile_timeouts_total", nil, 1},
			{"workqueue_retries_total", nil, 1},
			{"leader_election_master_status", map[string]string{"name": sampleoperator.DefaultLeaderElectionID}, 1},
			{"controller_runtime_webhook_requests_total", map[string]string{"webhook": sampleoperator.WebhookPath, "code": "200"}, 1},
			{"certwatcher_read_certificate_total", nil, 1},
			{"rest_client_requests_total", map[string]string{"code": "200"}, 1},
		} {
			if v := opFams.sum(c.name, c.labels); v < c.min {
				missing = append(missing, fmt.Sprintf("%s%v = %g", c.name, c.labels, v))
			}
		}
		missing = append(missing, unknownNames(opNames, opFams)...)
		if len(missing) > 0 {
			return fmt.Errorf("not yet: %s", strings.Join(missing, "; "))
		}
		return nil
	})
	checkNames(t, opDash, opFams)
	// The gathered registry is the one the metrics server serves.
	if g, err := crmetrics.Registry.Gather(); err != nil || len(g) < len(opFams)/2 {
		t.Errorf("controller-runtime registry: %d families, err %v", len(g), err)
	}

	// The real relay: one pull source (the sample operator), pushes from the "sample-operator" job.
	r := relay.New(relay.Config{
		GroupTTL:     relay.DefaultGroupTTL,
		ForgetAfter:  relay.DefaultForgetAfter,
		MaxBodyBytes: relay.DefaultMaxBodyBytes,
		Limits:       relay.DefaultLimits(0),
		Sources: map[string]sources.Spec{
			"sample-pull": {URL: "http://" + metricsAddr + "/metrics", Interval: sources.Duration(200 * time.Millisecond)},
		},
	})
	go r.Run(ctx)
	relaySrv := httptest.NewServer(r.Handler())
	t.Cleanup(relaySrv.Close)
	if err := push.New(relaySrv.URL, "sample-operator").Grouping("instance", "laptop").Gatherer(crmetrics.Registry).Push(); err != nil {
		t.Fatalf("push to the relay: %v", err)
	}
	req, _ := http.NewRequest(http.MethodPut, relaySrv.URL+"/metrics/job/sample-operator/instance/laptop", strings.NewReader("not an exposition {"))
	req.Header.Set("Content-Type", "text/plain; version=0.0.4")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Fatalf("a garbage push was accepted: %d", resp.StatusCode)
		}
	}

	var relayFams families
	poll(t, 30*time.Second, "relay metrics", func() error {
		all, err := scrape(relaySrv.URL + "/metrics")
		if err != nil {
			return err
		}
		relayFams = families{}
		for name, f := range all {
			if _, fromOperator := opFams[name]; !fromOperator || hasSeriesNotFromJob(f, "sample-operator", "sample-pull") {
				relayFams[name] = f
			}
		}
		var missing []string
		for _, c := range []struct {
			name   string
			labels map[string]string
		}{
			{"opview_relay_source_up", map[string]string{"job": "sample-pull"}},
			{"opview_relay_group_pushes_total", map[string]string{"job": "sample-operator", "instance": "laptop"}},
			{"opview_relay_group_push_failures_total", map[string]string{"job": "sample-operator", "instance": "laptop"}},
		} {
			if relayFams.sum(c.name, c.labels) < 1 {
				missing = append(missing, fmt.Sprintf("%s%v", c.name, c.labels))
			}
		}
		missing = append(missing, unknownNames(relayNames, relayFams)...)
		if len(missing) > 0 {
			return fmt.Errorf("not yet: %s", strings.Join(missing, "; "))
		}
		return nil
	})
	checkNames(t, relayDash, relayFams)
	t.Logf("checked %d operator and %d relay metric names against %d and %d real families", len(opNames), len(relayNames), len(opFams), len(relayFams))
}

// queryNames lists every metric name a dashboard's queries (panels and variables) select.
func queryNames(t *testing.T, d dashboards.Dashboard) map[string][]parser.Expr {
	t.Helper()
	out := map[string][]parser.Expr{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			e := expandAll(t, tg.Expr)
			for _, n := range metricNames(e) {
				out[n] = append(out[n], e)
			}
		}
	}
	for _, v := range d.Variables {
		e := expandAll(t, labelValuesSelector(t, v.Query))
		for _, n := range metricNames(e) {
			out[n] = append(out[n], e)
		}
	}
	return out
}

func unknownNames(names map[string][]parser.Expr, fams families) []string {
	var missing []string
	for n := range names {
		if _, ok := fams.resolve(n); !ok {
			missing = append(missing, "no family for "+n)
		}
	}
	sort.Strings(missing)
	return missing
}

// checkNames fails for a name that no family provides, and for rate()/irate()/increase() of a
// gauge.
func checkNames(t *testing.T, d dashboards.Dashboard, fams families) {
	t.Helper()
	names := queryNames(t, d)
	for n := range names {
		if _, ok := fams.resolve(n); !ok {
			t.Errorf("%s: metric %s is in a query but not in the real exposition", d.UID, n)
		}
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			parser.Inspect(expandAll(t, tg.Expr), func(node parser.Node, _ []parser.Node) error {
				call, ok := node.(*parser.Call)
				if !ok || (call.Func.Name != "rate" && call.Func.Name != "irate" && call.Func.Name != "increase") {
					return nil
				}
				for _, n := range metricNames(call.Args[0]) {
					if typ, ok := fams.resolve(n); ok && typ == dto.MetricType_GAUGE {
						t.Errorf("%s panel %d %q: %s() of the gauge %s", d.UID, p.ID, p.Title, call.Func.Name, n)
					}
				}
				return nil
			})
		}
	}
	if len(names) < 10 {
		t.Errorf("%s: only %d metric names found in queries", d.UID, len(names))
	}
}

// resolve maps a series name to its family's type: a family name itself, or a histogram's
// _bucket/_sum/_count, or a summary's _sum/_count (typed as counters for rate purposes).
func (f families) resolve(name string) (dto.MetricType, bool) {
	if fam, ok := f[name]; ok {
		return fam.GetType(), true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suf)
		if !ok {
			continue
		}
		if fam, ok := f[base]; ok {
			switch fam.GetType() {
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				return dto.MetricType_COUNTER, true
			case dto.MetricType_SUMMARY:
				if suf != "_bucket" {
					return dto.MetricType_COUNTER, true
				}
			}
		}
	}
	return 0, false
}

// sum adds the values of the family's series that carry all the given labels.
func (f families) sum(name string, labels map[string]string) float64 {
	fam, ok := f[name]
	if !ok {
		return -1
	}
	total := 0.0
	for _, m := range fam.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, v := range labels {
			if have[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Untyped != nil:
			total += m.GetUntyped().GetValue()
		}
	}
	return total
}

func hasSeriesNotFromJob(f *dto.MetricFamily, jobs ...string) bool {
	for _, m := range f.GetMetric() {
		job := ""
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "job" {
				job = lp.GetValue()
			}
		}
		found := false
		for _, j := range jobs {
			if job == j {
				found = true
			}
		}
		if !found {
			return true
		}
	}
	return false
}

func scrape(url string) (families, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	return families(fams), err
}

func poll(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: gave up after %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// writeCert writes a self-signed serving certificate for 127.0.0.1 as tls.crt and tls.key.
func writeCert(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sample-operator-webhook"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, block := range map[string]*pem.Block{
		"tls.crt": {Type: "CERTIFICATE", Bytes: der},
		"tls.key": {Type: "EC PRIVATE KEY", Bytes: kb},
	} {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
