//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// PromQuery runs an instant query through base (a Traefik entrypoint) with the given Host header
// and optional basic auth, and returns the result vector.
func PromQuery(ctx context.Context, base, host, user, pass, query string) ([]PromSample, error) {
	u := base + "/api/v1/query?query=" + url.QueryEscape(query)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Host = host
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string       `json:"resultType"`
			Result     []PromSample `json:"result"`
		} `json:"data"`
	}
	var body bytes.Buffer
	if _, err := body.ReadFrom(resp.Body); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(body.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("query %q via %s (Host %s): HTTP %d, not Prometheus JSON: %.200s", query, base, host, resp.StatusCode, body.String())
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", query, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %q: result type %s, want vector", query, r.Data.ResultType)
	}
	return r.Data.Result, nil
}

// PromSample is one element of an instant vector.
type PromSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// V is the sample's value as a string.
func (s PromSample) V() string { v, _ := s.Value[1].(string); return v }

func mustObjects(t *testing.T, y string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := DecodeYAML(strings.NewReader(y))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// harnessObjects route the design's names through Traefik in a namespace of the test's own, so
// the harness is proven independently of the bundle.
const harnessObjects = `
apiVersion: v1
kind: Namespace
metadata:
  name: e2e-harness
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/warn: restricted
---
apiVersion: v1
kind: Service
metadata: {name: prometheus, namespace: e2e-harness}
spec:
  ports: [{name: http, port: 9090, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: relay, namespace: e2e-harness}
spec:
  ports: [{name: relay, port: 9091, targetPort: relay}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRoute
metadata: {name: prometheus, namespace: e2e-harness}
spec:
  entryPoints: [web]
  routes:
    - match: Host(` + "`prometheus.harness.test`" + `)
      kind: Rule
      services: [{name: prometheus, port: 9090}]
---
apiVersion: traefik.io/v1alpha1
kind: IngressRouteTCP
metadata: {name: relay, namespace: e2e-harness}
spec:
  entryPoints: [relay]
  routes:
    - match: HostSNI(` + "`*`" + `)
      services: [{name: relay, port: 9091}]
`

// harnessValues is a HelmChartConfig valuesContent with the design's relay entrypoint.
const harnessValues = `
ports:
  relay:
    port: 9091
    expose: {default: true}
    exposedPort: 9091
    protocol: TCP
`

// TestHarness proves the harness on its own: a relay and a Prometheus "pod" behind hand-made
// EndpointSlices, reached only through Traefik (IngressRouteTCP on the relay entrypoint for a
// push, IngressRoute Host rule on web for the query), inside the test's network namespaces.
func TestHarness(t *testing.T) {
	requireNetns(t)
	ctx := context.Background()
	c := StartCluster(t)
	c.InstallCRDs(ctx)
	relayBin := Artifact(t, "opview-relay")
	promBin := requireBinary(t, Binary("prometheus", c.Versions.Prometheus, "prometheus"))

	if err := c.Apply(ctx, mustObjects(t, harnessObjects)); err != nil {
		t.Fatal(err)
	}
	// A Deployment whose pod template breaks the restricted level must be reported: the harness relies on these
	// warnings to check the bundle.
	err := c.Apply(ctx, mustObjects(t, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: privileged, namespace: e2e-harness}
spec:
  selector: {matchLabels: {app: p}}
  template:
    metadata: {labels: {app: p}}
    spec:
      containers: [{name: c, image: busybox}] # no securityContext: breaks restricted
`))
	if err == nil || !strings.Contains(err.Error(), "violate PodSecurity") {
		t.Fatalf("applying a Deployment without securityContext in a restricted namespace: got %v, want a PodSecurity warning", err)
	}

	eps, err := EntryPointsFromValues(harnessValues)
	if err != nil {
		t.Fatal(err)
	}
	tr := StartTraefik(t, c, eps)

	podDir := filepath.Join(c.Dir, "pod")
	if err := os.MkdirAll(podDir, 0o755); err != nil {
		t.Fatal(err)
	}
	promConfig := filepath.Join(podDir, "prometheus.yml")
	if err := os.WriteFile(promConfig, []byte(`
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: opview-relay
    honor_labels: true
    scrape_protocols: [PrometheusProto, PrometheusText0.0.4]
    static_configs: [{targets: ["localhost:9091"]}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	relay := c.Procs.StartInPod("relay", nil, podDir, relayBin, "serve", "--web.listen-address=:9091")
	prom := c.Procs.StartInPod("prometheus", nil, podDir, promBin,
		"--config.file="+promConfig, "--storage.tsdb.path="+filepath.Join(podDir, "tsdb"), "--web.listen-address=:9090")
	for svc, ports := range map[string]map[string]int32{"prometheus": {"http": 9090}, "relay": {"relay": 9091}} {
		if err := c.PlayEndpointController(ctx, "e2e-harness", svc, PodIP, ports); err != nil {
			t.Fatal(err)
		}
	}

	relayURL := "http://" + tr.Addr("relay")
	WaitFor(t, "a push through Traefik's relay entrypoint", 2*time.Minute, func(ctx context.Context) error {
		code, err := HTTPPut(ctx, relayURL+"/metrics/job/e2e/instance/laptop", textFormat,
			"# TYPE e2e_pushed_value gauge\ne2e_pushed_value 42\n")
		if err != nil {
			return err
		}
		if code/100 != 2 {
			return fmt.Errorf("PUT: HTTP %d", code)
		}
		return nil
	}, relay, tr.Proc)

	web := "http://" + tr.Addr("web")
	WaitFor(t, "the pushed sample in Prometheus through Traefik's Host route", 2*time.Minute, func(ctx context.Context) error {
		res, err := PromQuery(ctx, web, "prometheus.harness.test", "", "", `e2e_pushed_value{job="e2e",instance="laptop"}`)
		if err != nil {
			return err
		}
		if len(res) != 1 || res[0].V() != "42" {
			return fmt.Errorf("got %v, want one sample with value 42", res)
		}
		return nil
	}, prom, relay, tr.Proc)

	// Host routing is real: another host name is not routed.
	code, _, err := HTTPGet(ctx, nil, web+"/api/v1/query?query=up", "other.harness.test", nil)
	if err != nil || code != http.StatusNotFound {
		t.Fatalf("query with an unrouted Host: HTTP %d (%v), want 404 from Traefik", code, err)
	}
}
