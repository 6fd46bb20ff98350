//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

// TestUserPath is the user's whole path (issue 6): the rendered bundle applied for real, its
// Prometheus and relay run with the Deployment's exact args and config, Traefik with the entrypoints
// of the bundle's HelmChartConfig, real controller-runtime operators out of cluster forwarding
// through Traefik's relay entrypoint, and every dashboard query answered through the basic-auth
// Host route.
func TestUserPath(t *testing.T) {
	requireNetns(t)
	ctx := context.Background()
	c := StartCluster(t)
	c.InstallCRDs(ctx)
	relayBin := Artifact(t, "opview-relay")
	operatorBin := Artifact(t, "sample-operator")
	promBin := requireBinary(t, Binary("prometheus", c.Versions.Prometheus, "prometheus"))

	// 1. Apply the rendered bundle: every object accepted with strict field validation, no warning.
	b := RenderBundle(t, c.Dir)
	for _, step := range []struct {
		name string
		objs []*unstructured.Unstructured
	}{
		{"deploy/k3s", b.K3s}, {"deploy/traefik", b.Routes}, {"deploy/traefik/traefik-config.yaml", []*unstructured.Unstructured{b.TraefikConfig}},
	} {
		if err := c.Apply(ctx, step.objs); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
	}
	t.Logf("applied %d + %d objects and the HelmChartConfig: no rejection, no warning", len(b.K3s), len(b.Routes))

	// 2. Play kubelet and the endpoint controller for the prometheus Deployment.
	podDir := filepath.Join(c.Dir, "pod-prometheus")
	d, containers := PlayKubelet(t, b.K3s, "prometheus", podDir)
	prom, relay := containers["prometheus"], containers["relay"]
	if prom == nil || relay == nil {
		t.Fatalf("Deployment prometheus: want containers prometheus and relay, have %v", containers)
	}
	release, err := PrometheusRelease(c.Versions.Prometheus)
	if err != nil {
		t.Fatal(err)
	}
	requireEqual(t, "the bundle's Prometheus image tag (the e2e runs "+c.Versions.Prometheus+")", ImageTag(prom.Image), release)
	relayProc := c.Procs.StartInPod("relay", relay.Env, podDir, relayBin, relay.Args...)
	promEnv := prom.Env
	saDir := ""
	if d.Spec.Template.Spec.AutomountServiceAccountToken != nil && *d.Spec.Template.Spec.AutomountServiceAccountToken {
		var kenv []string
		saDir, kenv = c.ServiceAccountDir(ctx, podDir, "opview", d.Spec.Template.Spec.ServiceAccountName)
		promEnv = append(kenv, promEnv...)
	}
	var promProc *Proc
	if saDir != "" {
		promProc = c.Procs.StartInPodWithServiceAccount("prometheus", promEnv, podDir, saDir, promBin, prom.Args...)
	} else {
		promProc = c.Procs.StartInPod("prometheus", promEnv, podDir, promBin, prom.Args...)
	}
	podPorts := map[string]int32{}
	for _, ct := range containers {
		for n, p := range ct.Ports {
			podPorts[n] = p
		}
	}
	services, err := c.Client.CoreV1().Services("opview").List(ctx, metav1ListAll)
	if err != nil {
		t.Fatal(err)
	}
	podLabels := labels.Set(d.Spec.Template.Labels)
	played := 0
	for _, svc := range services.Items {
		if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
			continue
		}
		if err := c.PlayEndpointController(ctx, "opview", svc.Name, PodIP, podPorts); err != nil {
			t.Fatal(err)
		}
		played++
	}
	if played < 2 {
		t.Fatalf("want the prometheus and relay Services to select the prometheus pod, %d do", played)
	}

	// 3. Traefik with the entrypoints that the HelmChartConfig's ports render to.
	values, err := HelmChartConfigValues(b.TraefikConfig)
	if err != nil {
		t.Fatal(err)
	}
	eps, err := EntryPointsFromValues(values)
	if err != nil {
		t.Fatalf("deploy/traefik/traefik-config.yaml: %v", err)
	}
	tr := StartTraefik(t, c, eps)
	if ep, ok := tr.EntryPoints["relay"]; !ok || ep.Port != 9091 || !ep.Exposed || ep.Protocol != "tcp" {
		t.Fatalf("the HelmChartConfig's relay entrypoint: got %+v, want port 9091/tcp exposed", ep)
	}
	promHost := routeHost(t, b.Routes, "prometheus")
	g := &Grafana{Base: "http://" + tr.Addr("web"), Host: promHost, User: b.PrometheusUser, Password: b.PrometheusPassword}

	// 4. Operators out of cluster (node namespace), each with leader election on its own Lease (the
	// first Get of a Lease that does not exist yet is a 404: the "Failed API requests" panel). The
	// first one serves the validating webhook for ConfigMaps, called by the API server, and is
	// forwarded by `opview-relay forward`; the second pushes from inside its process with
	// exporter/pusher and serves no /metrics at all. Both reach the relay through Traefik's relay
	// entrypoint.
	relayURL := "http://" + tr.Addr("relay")
	// The bundle's relay requires the write token that `make secret` writes; the laptop-side
	// tools read it from a file, as docs/install.md tells users to copy it.
	tokenFile := filepath.Join(c.Dir, "relay-write-token")
	if err := os.WriteFile(tokenFile, []byte(b.RelayToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth := []string{"Authorization", "Bearer " + b.RelayToken}
	// Without the token, a push and a source registration through Traefik are refused.
	WaitFor(t, "an unauthenticated push and source registration to be refused", time.Minute, func(ctx context.Context) error {
		code, err := HTTPPut(ctx, relayURL+"/metrics/job/intruder", textFormat, "intruder 1\n")
		if err != nil {
			return err
		}
		if code != http.StatusUnauthorized {
			return fmt.Errorf("push without the token: HTTP %d, want 401", code)
		}
		code, err = HTTPPut(ctx, relayURL+"/api/v1/sources/intruder", "application/json", `{"url":"http://`+NodeIP+`:1/metrics"}`)
		if err != nil {
			return err
		}
		if code != http.StatusUnauthorized {
			return fmt.Errorf("source registration without the token: HTTP %d, want 401", code)
		}
		return nil
	}, relayProc, tr.Proc)
	type operator struct{ job, instance, metrics string }
	ops := []operator{{"sample-operator", "laptop-a", "127.0.0.1:8180"}, {"sample-operator-b", "laptop-b", "0"}}
	opA, opB := ops[0], ops[1]
	opArgs := func(op operator, extra ...string) []string {
		return append([]string{"--kubeconfig=" + c.Kubeconfig, "--metrics-bind-address=" + op.metrics, "--metrics-secure=false",
			"--health-probe-bind-address=0", "--leader-elect", "--leader-election-id=" + op.job}, extra...)
	}
	const webhookAddr = "127.0.0.1:9443"
	whCerts := webhookCertDir(t, c)
	opProcs := map[string]*Proc{}
	opProcs[opA.job] = c.Procs.Start(opA.job, operatorBin, opArgs(opA, "--webhook-host=127.0.0.1", "--webhook-port=9443", "--webhook-cert-path="+whCerts)...)
	WaitFor(t, opA.job+" metrics", time.Minute, func(ctx context.Context) error { return DialOK(ctx, opA.metrics) }, opProcs[opA.job])
	forwarders := map[string]*Proc{opA.job: c.Procs.Start("forward-"+opA.job, relayBin, "forward", "--from=http://"+opA.metrics+"/metrics",
		"--to="+relayURL, "--to.token-file="+tokenFile, "--job="+opA.job, "--instance="+opA.instance, "--interval="+forwardInterval.String())}
	opProcs[opB.job] = c.Procs.Start(opB.job, operatorBin, opArgs(opB, "--push-to="+relayURL, "--push-token-file="+tokenFile, "--push-job="+opB.job,
		"--push-instance="+opB.instance, "--push-interval=10s")...)

	// The API server calls the first operator's webhook for labelled ConfigMaps: one denied, one admitted.
	caPEM, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Apply(ctx, mustObjects(t, `
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: `+opA.job+`}
webhooks:
- name: configmaps.sample.opview.dev
  clientConfig:
    url: https://`+webhookAddr+sampleWebhookPath+`
    caBundle: `+base64.StdEncoding.EncodeToString(caPEM)+`
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [configmaps]}]
  objectSelector: {matchLabels: {opview.dev/sample: "true"}}
  sideEffects: None
  admissionReviewVersions: [v1]
  failurePolicy: Fail
  timeoutSeconds: 5
`)); err != nil {
		t.Fatal(err)
	}
	sampleCM := func(name string, data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"opview.dev/sample": "true"}}, Data: data}
	}
	cms := c.Client.CoreV1().ConfigMaps("default")
	WaitFor(t, "the webhook to deny a ConfigMap with data.deny=true", time.Minute, func(ctx context.Context) error {
		_, err := cms.Create(ctx, sampleCM("sample-denied", map[string]string{"deny": "true"}), metav1.CreateOptions{})
		switch {
		case err == nil || apierrors.IsAlreadyExists(err):
			// Created before the API server saw the configuration: remove it and try again.
			_ = cms.Delete(ctx, "sample-denied", metav1.DeleteOptions{})
			return fmt.Errorf("created, not denied: the webhook configuration is not active yet")
		case strings.Contains(err.Error(), "data.deny is true"):
			return nil
		default:
			return err
		}
	}, opProcs[opA.job])
	if _, err := cms.Create(ctx, sampleCM("sample-admitted", map[string]string{"outcome": "ok"}), metav1.CreateOptions{}); err != nil {
		t.Fatalf("a labelled ConfigMap the webhook admits: %v", err)
	}

	// A third one is a pull source of the relay (registered through the same entrypoint with the
	// runtime API): the relay, in the pod namespace, scrapes it at the node's address.
	pullJob, pullAddr := "sample-operator-pull", NodeIP+":8380"
	pullProc := c.Procs.Start(pullJob, operatorBin, "--kubeconfig="+c.Kubeconfig, "--metrics-bind-address="+pullAddr,
		"--metrics-secure=false", "--health-probe-bind-address=0", "--leader-elect=false")
	WaitFor(t, pullJob+" metrics", time.Minute, func(ctx context.Context) error { return DialOK(ctx, pullAddr) }, pullProc)
	WaitFor(t, "registering the pull source through Traefik", time.Minute, func(ctx context.Context) error {
		code, err := HTTPPut(ctx, relayURL+"/api/v1/sources/"+pullJob, "application/json", `{"url":"http://`+pullAddr+`/metrics"}`, auth...)
		if err != nil {
			return err
		}
		if code/100 != 2 {
			return fmt.Errorf("PUT source: HTTP %d", code)
		}
		return nil
	}, relayProc, tr.Proc)

	// A fourth one stands for an in-cluster operator: a Pod annotated for scraping, whose status the
	// test writes as kubelet would, found by Prometheus's pod discovery with the bundle's RBAC.
	inJob, inNS, inAddr := "sample-operator-incluster", "e2e-incluster", NodeIP+":8480"
	inProc := c.Procs.Start(inJob, operatorBin, "--kubeconfig="+c.Kubeconfig, "--metrics-bind-address="+inAddr,
		"--metrics-secure=false", "--health-probe-bind-address=0", "--leader-elect=false")
	if err := c.Apply(ctx, mustObjects(t, `
apiVersion: v1
kind: Namespace
metadata: {name: `+inNS+`}
---
# Created by kube-controller-manager in a real cluster; the Pod's admission needs it.
apiVersion: v1
kind: ServiceAccount
metadata: {name: default, namespace: `+inNS+`}
---
apiVersion: v1
kind: Pod
metadata:
  name: `+inJob+`
  namespace: `+inNS+`
  labels: {app.kubernetes.io/name: `+inJob+`}
  annotations: {prometheus.io/scrape: "true", prometheus.io/port: "8480"}
spec:
  containers: [{name: manager, image: example.com/sample-operator:e2e}]
`)); err != nil {
		t.Fatal(err)
	}
	if err := c.PlayKubeletPodStatus(ctx, inNS, inJob, NodeIP); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, inJob+" metrics", time.Minute, func(ctx context.Context) error { return DialOK(ctx, inAddr) }, inProc)

	// 5. Through the Host route: basic auth enforced, both operators' metrics with their labels.
	code, _, err := HTTPGet(ctx, nil, g.Base+"/api/v1/query?query=up", promHost, nil)
	if err != nil || code != http.StatusUnauthorized {
		t.Fatalf("Prometheus route without credentials: HTTP %d (%v), want 401", code, err)
	}
	for _, op := range append(ops, operator{pullJob, pullAddr, ""}) {
		q := fmt.Sprintf(`controller_runtime_reconcile_total{job=%q,instance=%q}`, op.job, op.instance)
		watch := []*Proc{promProc, relayProc, tr.Proc}
		for _, p := range []*Proc{forwarders[op.job], opProcs[op.job]} {
			if p != nil {
				watch = append(watch, p)
			}
		}
		WaitFor(t, q+" through Traefik", 3*time.Minute, func(ctx context.Context) error {
			res, err := PromQuery(ctx, g.Base, g.Host, g.User, g.Password, q)
			if err != nil {
				return err
			}
			if len(res) == 0 {
				return fmt.Errorf("no series yet")
			}
			return nil
		}, watch...)
	}

	// One refused push to the forwarded operator's group (a body that is no exposition): the relay
	// keeps the group's samples and records the failure (push_failure_time_seconds, the relay
	// dashboard's "since last failure" column).
	WaitFor(t, "a garbage push to "+opA.job+"'s group to be refused", time.Minute, func(ctx context.Context) error {
		code, err := HTTPPut(ctx, relayURL+"/metrics/job/"+opA.job+"/instance/"+opA.instance, textFormat, "not an exposition {\n", auth...)
		if err != nil {
			return err
		}
		if code != http.StatusBadRequest {
			return fmt.Errorf("garbage push: HTTP %d, want 400", code)
		}
		return nil
	}, relayProc, tr.Proc)

	inQuery := fmt.Sprintf(`controller_runtime_reconcile_total{job=%q,namespace=%q,pod=%q}`, inJob, inNS, inJob)
	WaitFor(t, inQuery+" (pod discovery with the bundle's service account)", 3*time.Minute, func(ctx context.Context) error {
		res, err := PromQuery(ctx, g.Base, g.Host, g.User, g.Password, inQuery)
		if err != nil {
			return err
		}
		if len(res) == 0 {
			return fmt.Errorf("no series yet")
		}
		return nil
	}, promProc, tr.Proc, inProc)

	// Every query of every generated dashboard panel returns data.
	queries, vars, err := LoadDashboards(filepath.Join(RepoRoot(), "dashboards"))
	if err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "every dashboard query to return data", 4*time.Minute, func(ctx context.Context) error {
		var empty []string
		resolved := map[string]map[string]string{}
		for uid, vs := range vars {
			v, err := g.ResolveVariables(ctx, vs)
			if err != nil {
				return fmt.Errorf("dashboard %s: %w", uid, err)
			}
			resolved[uid] = v
		}
		for _, q := range queries {
			expr := g.Expand(q.Expr, resolved[q.Dashboard])
			res, err := PromQuery(ctx, g.Base, g.Host, g.User, g.Password, expr)
			if err != nil {
				return fmt.Errorf("dashboard %s panel %q: %w", q.Dashboard, q.Panel, err)
			}
			if len(res) == 0 {
				empty = append(empty, fmt.Sprintf("%s/%q: %s", q.Dashboard, q.Panel, expr))
			}
		}
		if len(empty) > 0 {
			return fmt.Errorf("%d of %d queries return no data:\n%s", len(empty), len(queries), strings.Join(empty, "\n"))
		}
		return nil
	}, promProc, relayProc, tr.Proc)
	t.Logf("all %d dashboard queries return data", len(queries))

	// A forwarder that dies (no clean delete) leaves its group until the relay's --group.ttl passes;
	// then its series go stale while the other operator's stay.
	ttl := flagValue(relay.Args, "--group.ttl")
	ttlDur, err := time.ParseDuration(ttl)
	if err != nil || ttlDur <= 0 {
		t.Fatalf("the relay's --group.ttl in the Deployment: %q (%v)", ttl, err)
	}
	dead := forwarders[ops[0].job]
	if err := dead.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	alive := fmt.Sprintf(`controller_runtime_reconcile_total{job=%q}`, ops[1].job)
	gone := fmt.Sprintf(`controller_runtime_reconcile_total{job=%q}`, ops[0].job)
	WaitFor(t, ops[0].job+"'s series to go stale after the TTL ("+ttl+")", ttlDur+3*time.Minute, g.noSeries(gone), promProc, relayProc, tr.Proc)
	// The TTL counts from the group's last push, which came up to one forward interval before the kill.
	if since := time.Since(killedAt); since < ttlDur-forwardInterval {
		t.Fatalf("%s went stale %s after its forwarder died, before the TTL %s less one forward interval (%s)", ops[0].job, since, ttl, forwardInterval)
	}
	res, err := PromQuery(ctx, g.Base, g.Host, g.User, g.Password, alive)
	if err != nil || len(res) == 0 {
		t.Fatalf("%s after the other group expired: %v %v, want its series", alive, res, err)
	}
	res, err = PromQuery(ctx, g.Base, g.Host, g.User, g.Password, fmt.Sprintf(`opview_relay_group_fresh{job=%q}`, ops[0].job))
	if err != nil || len(res) != 1 || res[0].V() != "0" {
		t.Fatalf("opview_relay_group_fresh of the expired group: %v %v, want 0", res, err)
	}

	// An operator that stops cleanly (SIGTERM, as `make run` gets from Ctrl-C) takes its group with
	// it: the pusher's last act is a DELETE through Traefik, so its series go stale at the next
	// scrape, long before the TTL.
	opProcs[opB.job].Stop()
	if exited, err := opProcs[opB.job].Exited(); !exited || err != nil {
		t.Fatalf("%s on SIGTERM: exited %v (%v), want a clean exit", opB.job, exited, err)
	}
	stoppedAt := time.Now()
	WaitFor(t, alive+" to go stale after its operator stopped cleanly", ttlDur-forwardInterval, g.noSeries(alive), promProc, relayProc, tr.Proc)
	t.Logf("%s's series went stale %s after a clean stop (TTL %s): the pusher deleted its group", opB.job, time.Since(stoppedAt).Round(time.Second), ttl)
	res, err = PromQuery(ctx, g.Base, g.Host, g.User, g.Password, fmt.Sprintf(`opview_relay_group_fresh{job=%q}`, opB.job))
	if err != nil || len(res) != 0 {
		t.Fatalf("opview_relay_group_fresh of the deleted group: %v %v, want no series (deleted, not expired)", res, err)
	}
}

var metav1ListAll = metav1ListOptions()

// noSeries is a WaitFor condition: query, run through the Prometheus route, returns no series.
func (g *Grafana) noSeries(query string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		res, err := PromQuery(ctx, g.Base, g.Host, g.User, g.Password, query)
		if err != nil {
			return err
		}
		if len(res) > 0 {
			return fmt.Errorf("%s still has %d series", query, len(res))
		}
		return nil
	}
}

// routeHost returns the host name of an IngressRoute's first Host(`...`) rule.
func routeHost(t *testing.T, objs []*unstructured.Unstructured, name string) string {
	t.Helper()
	r := Find(objs, "IngressRoute", name)
	if r == nil {
		t.Fatalf("no IngressRoute %s in deploy/traefik", name)
	}
	routes, _, _ := unstructured.NestedSlice(r.Object, "spec", "routes")
	for _, rt := range routes {
		m, _ := rt.(map[string]any)
		match, _ := m["match"].(string)
		if h := regexp.MustCompile("Host\\(`([^`]+)`\\)").FindStringSubmatch(match); h != nil {
			return h[1]
		}
	}
	t.Fatalf("IngressRoute %s has no Host rule", name)
	return ""
}

// flagValue returns the value of --name=value in args.
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// sampleWebhookPath is sampleoperator.WebhookPath (the e2e runs the operator as a binary and does
// not import its package).
const sampleWebhookPath = "/validate-configmap"

// textFormat is the Content-Type of a push in the Prometheus text format.
const textFormat = "text/plain; version=0.0.4"

// forwardInterval is the forwarder's --interval in the scenario.
const forwardInterval = 15 * time.Second

// webhookCertDir writes tls.crt and tls.key for the sample operator's webhook server: the API
// server's own serving pair, issued by the cluster CA for 127.0.0.1 and the node address.
func webhookCertDir(t *testing.T, c *Cluster) string {
	t.Helper()
	dir := filepath.Join(c.Dir, "webhook-certs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for src, dst := range map[string]string{"apiserver.crt": "tls.crt", "apiserver.key": "tls.key"} {
		b, err := os.ReadFile(filepath.Join(c.Dir, "pki", src))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
