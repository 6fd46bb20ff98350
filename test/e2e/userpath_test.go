//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/opview/opview/internal/promtest"
	"github.com/opview/opview/test/e2e/framework"
)

const (
	// textFormat is the Content-Type of a push in the Prometheus text format.
	textFormat = "text/plain; version=0.0.4"
	// forwardInterval is the forwarder's --interval in the scenario.
	forwardInterval = 15 * time.Second
	// sampleWebhookPath is sampleoperator.WebhookPath (the e2e runs the operator as a binary and
	// does not import its package).
	sampleWebhookPath = "/validate-configmap"
	// operatorImage is the sample operator packed as an image for the in-cluster operator.
	operatorImage = "localhost/opview-sample-operator:e2e"
	// prometheusPod selects the bundle's Prometheus pod (the relay is its sidecar).
	prometheusPod = "app.kubernetes.io/name=prometheus"
)

// operator is a sample operator run out of cluster, on the LAN.
type operator struct {
	job, instance string
	metrics       string // its metrics address, or "0" for none
	proc          *framework.Proc
	forwarder     *framework.Proc // opview-relay forward, for the forwarded one
}

// userPath is the scenario's state, shared by its steps.
type userPath struct {
	c      *framework.Cluster
	node   *framework.Node
	b      *framework.Bundle
	lan    *framework.Netns
	prom   *framework.Prometheus
	relay  string // the relay through Traefik's relay entrypoint, as the LAN sees it
	web    string // Traefik's web entrypoint
	ttl    time.Duration
	relayB string // the relay binary (forwarder)
	opBin  string // the sample operator binary
	// token is the relay's write token (the bundle's relay requires it), sent with pushes and
	// source registrations, and tokenFile the file holding it for the forwarder and the pusher,
	// as docs/install.md tells users to copy it to their laptop.
	token, tokenFile string

	forwarded, pushing, pull operator
	inJob, inNS              string
	promPod                  *corev1.Pod
}

// TestUserPath is the user's whole path on a real node: the rendered bundle applied as
// `kubectl apply -k` sends it, its pods run by kubelet and containerd from the images a user
// imports, Traefik deployed from its Helm chart with k3s's values and the bundle's
// HelmChartConfig, real controller-runtime operators out of cluster reaching the relay three ways
// through Traefik, one in cluster found by Prometheus's pod discovery, and every dashboard query
// answered through the basic-auth Host route. Then the Prometheus pod is deleted, a forwarder dies
// and an operator stops cleanly.
func TestUserPath(t *testing.T) {
	e := framework.Require(t)
	ctx := context.Background()
	s := &userPath{lan: &framework.Netns{Name: e.LANNetns}}
	s.c = framework.StartCluster(t)
	s.b = framework.RenderBundle(t, s.c.Dir)
	s.token, s.tokenFile = s.b.RelayToken, filepath.Join(s.c.Dir, "relay-write-token")
	must(t, os.WriteFile(s.tokenFile, []byte(s.token+"\n"), 0o600))
	s.relayB = framework.Artifact(t, "opview-relay")
	s.opBin = framework.Artifact(t, "sample-operator")

	// The images, each tagged exactly as the manifests name it.
	d := s.b.Deployment(t, "prometheus")
	promC := framework.Container(t, &d.Spec.Template.Spec, "prometheus")
	relayC := framework.Container(t, &d.Spec.Template.Spec, "relay")
	release, err := framework.PrometheusRelease(s.c.Versions.Prometheus)
	if err != nil {
		framework.Fatal(t, err)
	}
	if tag := framework.ImageTag(promC.Image); tag != release {
		framework.Fatalf(t, "the bundle's Prometheus image tag %q is not the release the e2e builds (%s = %s)", tag, s.c.Versions.Prometheus, release)
	}
	if s.ttl, err = time.ParseDuration(framework.FlagValue(relayC, "--group.ttl")); err != nil || s.ttl <= 0 {
		framework.Fatalf(t, "the relay's --group.ttl in the Deployment: %v", err)
	}
	traefik, err := framework.RenderTraefik(ctx, s.c, framework.TraefikChartDir(framework.Artifact(t, "traefik-chart-module")),
		s.b.TraefikConfig, strings.TrimPrefix(s.c.Versions.Traefik, "v"))
	if err != nil {
		framework.Fatal(t, err)
	}
	trDeploy := framework.AsDeployment(t, traefik.Find(t, "Deployment", "traefik"))
	trImage := framework.Container(t, &trDeploy.Spec.Template.Spec, "traefik").Image
	img := func(name string) string { return filepath.Join(s.c.Dir, name+".tar") }
	bin := func(name, version string) string {
		return framework.RequireBinary(t, framework.Binary(name, version, name))
	}
	pause, err := framework.PauseImage(framework.Artifact(t, "pause"), img("pause"))
	must(t, err)
	promImg, err := framework.PrometheusImage(promC.Image, bin("prometheus", s.c.Versions.Prometheus),
		framework.RequireBinary(t, framework.Binary("prometheus", s.c.Versions.Prometheus, "promtool")), img("prometheus"))
	must(t, err)
	trImg, err := framework.TraefikImage(trImage, bin("traefik", s.c.Versions.Traefik), img("traefik"))
	must(t, err)
	opImg, err := framework.OperatorImage(operatorImage, s.opBin, img("sample-operator"))
	must(t, err)
	s.node = framework.StartNode(t, s.c, pause, framework.RelayImage(t, relayC.Image), promImg, trImg, opImg)

	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	step("bundle applied", func(t *testing.T) { s.applyBundle(t, traefik) })
	step("pods ready through their probes", s.podsReady)
	step("grafana fails on its image pull alone", s.grafana)
	step("traefik routes to the pods", s.routes)
	step("writes without the token refused", s.unauthenticated)
	step("operators out of cluster", s.operators)
	step("webhook called by the API server", s.webhook)
	step("pull source registered through traefik", s.pullSource)
	step("in-cluster operator found by pod discovery", s.inCluster)
	step("every operator's series through the basic-auth route", s.operatorSeries)
	step("garbage push refused", s.refusedPush)
	step("every dashboard query returns data", s.dashboards)
	step("prometheus pod deleted: groups and TSDB survive", s.podRestart)
	step("killed forwarder's group expires after the TTL", s.expiry)
	step("clean stop deletes the group", s.cleanStop)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		framework.Fatal(t, err)
	}
}

// applyBundle applies, in the user's order, the CRDs k3s ships (Traefik's chart CRDs, the
// HelmChart ones), what local-path would provide, deploy/k3s, deploy/traefik and the
// HelmChartConfig, then the Traefik chart rendered from it: every object accepted with strict
// field validation and no warning (Pod Security included).
func (s *userPath) applyBundle(t *testing.T, traefik *framework.TraefikRelease) {
	ctx := context.Background()
	helmDir := framework.Artifact(t, "helm-controller-module")
	helmCRDs, err := framework.DecodeYAMLFiles(
		filepath.Join(helmDir, "pkg/crds/yaml/generated/helm.cattle.io_helmcharts.yaml"),
		filepath.Join(helmDir, "pkg/crds/yaml/generated/helm.cattle.io_helmchartconfigs.yaml"))
	must(t, err)
	localPath, err := framework.LocalPath(s.b.K3s, filepath.Join(s.node.Dir, "local-path"))
	must(t, err)
	for _, st := range []struct {
		name string
		do   func() error
	}{
		{"the Traefik chart's CRDs", func() error { return s.c.Apply(ctx, traefik.CRDs) }},
		{"the HelmChart CRDs", func() error { return s.c.Apply(ctx, helmCRDs) }},
		{"local-path's StorageClass and volumes", func() error { return s.c.Apply(ctx, localPath) }},
		{"deploy/k3s", func() error { return s.c.Apply(ctx, s.b.K3s) }},
		{"deploy/traefik", func() error { return s.c.Apply(ctx, s.b.Routes) }},
		{"deploy/traefik/traefik-config.yaml", func() error { return s.c.Apply(ctx, []*unstructured.Unstructured{s.b.TraefikConfig}) }},
		{"the Traefik chart", func() error { return s.c.ApplyIn(ctx, "kube-system", traefik.Objects) }},
		{"ServiceLB's status of the traefik Service", func() error { return s.c.PlayServiceLB(ctx, "kube-system", "traefik") }},
	} {
		if err := st.do(); err != nil {
			framework.Fatalf(t, "%s: %v", st.name, err)
		}
	}
	t.Logf("applied %d + %d objects, the HelmChartConfig and %d objects of the Traefik chart: no rejection, no warning",
		len(s.b.K3s), len(s.b.Routes), len(traefik.Objects))
}

// podsReady: every pod of the bundle but Grafana's, and Traefik's, becomes Ready through its own
// probes (the opview namespace enforces the restricted Pod Security level, so they were admitted
// under it); the claims are bound to local-path volumes; the endpointslice controller publishes
// the pod for both Services.
func (s *userPath) podsReady(t *testing.T) {
	ctx := context.Background()
	ns, err := s.c.Client.CoreV1().Namespaces().Get(ctx, "opview", metav1.GetOptions{})
	must(t, err)
	if ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		framework.Fatalf(t, "namespace opview enforces %q, want restricted", ns.Labels["pod-security.kubernetes.io/enforce"])
	}
	watch := []*framework.Proc{s.node.Kubelet, s.node.Containerd, s.c.ControllerManager, s.c.Scheduler}
	s.promPod = s.c.WaitPodReady(t, "opview", prometheusPod, "", 4*time.Minute, watch...)
	for _, ct := range s.promPod.Spec.Containers {
		if ct.ReadinessProbe == nil {
			framework.Errorf(t, "container %s has no readiness probe: Ready proves nothing", ct.Name)
		}
	}
	trPod := s.c.WaitPodReady(t, "kube-system", "app.kubernetes.io/name=traefik", "", 3*time.Minute, watch...)
	t.Logf("Ready: %s (%s), %s (%s)", s.promPod.Name, s.promPod.Status.PodIP, trPod.Name, trPod.Status.PodIP)
	pvcs, err := s.c.Client.CoreV1().PersistentVolumeClaims("opview").List(ctx, metav1.ListOptions{})
	must(t, err)
	for _, pvc := range pvcs.Items {
		if pvc.Name != "grafana-data" && pvc.Status.Phase != corev1.ClaimBound {
			framework.Errorf(t, "claim %s is %s, want Bound", pvc.Name, pvc.Status.Phase)
		}
	}
	for _, svc := range []string{"prometheus", "relay"} {
		framework.WaitFor(t, "the endpointslice controller to publish the pod for Service "+svc, time.Minute, func(ctx context.Context) error {
			addrs, err := s.c.EndpointSliceAddresses(ctx, "opview", svc)
			if err != nil {
				return err
			}
			if len(addrs) != 1 || addrs[0] != s.promPod.Status.PodIP {
				return fmt.Errorf("ready addresses %v, want [%s]", addrs, s.promPod.Status.PodIP)
			}
			return nil
		})
	}
}

// grafana: its Deployment was applied as it is; the pod is admitted and scheduled, its volumes
// prepared, and it fails on the image pull alone (no registry serves Grafana here).
func (s *userPath) grafana(t *testing.T) {
	framework.WaitFor(t, "grafana's pod to fail on its image pull", 3*time.Minute, func(ctx context.Context) error {
		pods, err := s.c.Client.CoreV1().Pods("opview").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=grafana"})
		if err != nil {
			return err
		}
		if len(pods.Items) != 1 {
			return fmt.Errorf("%d grafana pods, want 1", len(pods.Items))
		}
		p := pods.Items[0]
		if p.Spec.NodeName != framework.NodeName {
			return fmt.Errorf("not scheduled yet")
		}
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
				if !strings.Contains(w.Message, "grafana/grafana") {
					return fmt.Errorf("waiting %s, but the message does not name the image: %.300s", w.Reason, w.Message)
				}
				return nil
			}
		}
		return fmt.Errorf("grafana pod: phase %s, containers %+v", p.Status.Phase, p.Status.ContainerStatuses)
	}, s.node.Kubelet)
}

// routes: Traefik, a pod of its chart, serves the bundle's routes on the node's address through
// the LoadBalancer Service (kube-proxy where k3s has ServiceLB): the Prometheus Host route needs
// its basic auth, another host is not routed, and Traefik's backends are the pods' addresses from
// the real EndpointSlices.
func (s *userPath) routes(t *testing.T) {
	s.web = "http://" + framework.NodeIP + ":80"
	s.relay = "http://" + framework.NodeIP + ":9091"
	host := s.b.RouteHost(t, "prometheus")
	var err error
	s.prom, err = framework.NewPrometheus(s.web, host, s.b.PrometheusUser, s.b.PrometheusPassword)
	must(t, err)
	framework.WaitFor(t, "Prometheus through Traefik's Host route", 2*time.Minute, func(ctx context.Context) error {
		_, err := s.prom.Query(ctx, "up")
		return err
	}, s.node.KubeProxy)
	ctx := context.Background()
	code, _, err := framework.HTTPGet(ctx, s.web+"/api/v1/query?query=up", host, nil)
	if err != nil || code != http.StatusUnauthorized {
		framework.Fatalf(t, "Prometheus route without credentials: HTTP %d (%v), want 401", code, err)
	}
	code, _, err = framework.HTTPGet(ctx, s.web+"/api/v1/query?query=up", "unrouted.home.arpa", nil)
	if err != nil || code != http.StatusNotFound {
		framework.Fatalf(t, "an unrouted Host: HTTP %d (%v), want 404 from Traefik", code, err)
	}
	// Traefik sends a route's traffic to its Service's endpoints, the pods' addresses from the
	// EndpointSlices, not to the Service's cluster IP: with the cluster IPs of the prometheus and
	// relay Services blackholed on the node, the Host route and the TCP route still answer. (The
	// node's ports 80 and 9091 themselves are kube-proxy's rules for Traefik's LoadBalancer
	// Service: nothing listens there.)
	var ips []string
	for _, name := range []string{"prometheus", "relay"} {
		svc, err := s.c.Client.CoreV1().Services("opview").Get(ctx, name, metav1.GetOptions{})
		must(t, err)
		ips = append(ips, svc.Spec.ClusterIP)
	}
	undo, err := s.node.Blackhole(ctx, ips...)
	must(t, err)
	defer func() {
		if err := undo(); err != nil {
			framework.Error(t, err)
		}
	}()
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := framework.DialOK(dctx, ips[0]+":9090"); err == nil {
		framework.Fatalf(t, "the blackholed cluster IP %s still answers", ips[0])
	}
	framework.WaitFor(t, "Prometheus through Traefik with its Service's cluster IP blackholed", 30*time.Second, func(ctx context.Context) error {
		_, err := s.prom.Query(ctx, "up")
		return err
	})
	framework.WaitFor(t, "the relay through Traefik's TCP route with its Service's cluster IP blackholed", 30*time.Second, func(ctx context.Context) error {
		code, body, err := framework.HTTPGet(ctx, s.relay+"/-/healthy", "", nil)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("HTTP %d: %.200s", code, body)
		}
		return err
	})
}

// operators starts, on the LAN, two sample operators each with leader election on its own Lease
// (the first Get of a Lease that does not exist yet is a 404: the "Failed API requests" panel).
// The first serves the validating webhook for ConfigMaps and is forwarded by `opview-relay
// forward`; the second pushes from inside its process with exporter/pusher and serves no
// /metrics. Both reach the relay through Traefik's relay entrypoint on the node's address.
func (s *userPath) operators(t *testing.T) {
	s.forwarded = operator{job: "sample-operator", instance: "laptop-a", metrics: framework.LANIP + ":8180"}
	s.pushing = operator{job: "sample-operator-b", instance: "laptop-b", metrics: "0"}
	whDir := filepath.Join(s.c.Dir, "webhook-certs")
	must(t, os.MkdirAll(whDir, 0o700))
	crt, key, err := s.c.CA.Serving("webhook", nil, framework.LANIP)
	must(t, err)
	for src, dst := range map[string]string{crt: "tls.crt", key: "tls.key"} {
		b, err := os.ReadFile(src)
		must(t, err)
		must(t, os.WriteFile(filepath.Join(whDir, dst), b, 0o600))
	}
	s.forwarded.proc = s.startOperator(t, s.forwarded, "--leader-elect", "--leader-election-id="+s.forwarded.job,
		"--webhook-host="+framework.LANIP, "--webhook-port=9443", "--webhook-cert-path="+whDir)
	framework.WaitFor(t, s.forwarded.job+" metrics", time.Minute, func(ctx context.Context) error { return framework.DialOK(ctx, s.forwarded.metrics) }, s.forwarded.proc)
	s.forwarded.forwarder = s.c.Procs.StartSpec(t, framework.Spec{Name: "forward-" + s.forwarded.job, Bin: s.relayB, Netns: s.lan, Args: append([]string{
		"forward", "--from=http://" + s.forwarded.metrics + "/metrics", "--to=" + s.relay,
		"--job=" + s.forwarded.job, "--instance=" + s.forwarded.instance, "--interval=" + forwardInterval.String()}, s.tokenFlag("--to.token-file")...)})
	s.pushing.proc = s.startOperator(t, s.pushing, append([]string{"--leader-elect", "--leader-election-id=" + s.pushing.job,
		"--push-to=" + s.relay, "--push-job=" + s.pushing.job, "--push-instance=" + s.pushing.instance, "--push-interval=10s"},
		s.tokenFlag("--push-token-file")...)...)
}

// tokenFlag is flag=<the token file>.
func (s *userPath) tokenFlag(flag string) []string { return []string{flag + "=" + s.tokenFile} }

// unauthenticated: the relay is exposed on the LAN through Traefik, so a push and a source
// registration without its token are refused (401), and nothing is stored.
func (s *userPath) unauthenticated(t *testing.T) {
	framework.WaitFor(t, "a push and a source registration without the token to be refused", time.Minute, func(ctx context.Context) error {
		code, err := framework.HTTPPut(ctx, s.relay+"/metrics/job/intruder", textFormat, "", "intruder 1\n")
		if err != nil {
			return err
		}
		if code != http.StatusUnauthorized {
			return fmt.Errorf("push without the token: HTTP %d, want 401", code)
		}
		code, err = framework.HTTPPut(ctx, s.relay+"/api/v1/sources/intruder", "application/json", "", `{"url":"http://`+framework.LANIP+`:1/metrics"}`)
		if err != nil {
			return err
		}
		if code != http.StatusUnauthorized {
			return fmt.Errorf("source registration without the token: HTTP %d, want 401", code)
		}
		return nil
	})
}

// startOperator runs the sample operator on the LAN against the API server.
func (s *userPath) startOperator(t *testing.T, op operator, extra ...string) *framework.Proc {
	args := append([]string{"--kubeconfig=" + s.c.Kubeconfig, "--metrics-bind-address=" + op.metrics, "--metrics-secure=false",
		"--health-probe-bind-address=0"}, extra...)
	return s.c.Procs.StartSpec(t, framework.Spec{Name: op.job, Bin: s.opBin, Args: args, Netns: s.lan})
}

// webhook: the API server calls the forwarded operator's webhook for labelled ConfigMaps: one
// denied, one admitted.
func (s *userPath) webhook(t *testing.T) {
	ctx := context.Background()
	must(t, s.c.Apply(ctx, framework.MustObjects(t, `
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata: {name: `+s.forwarded.job+`}
webhooks:
- name: configmaps.sample.opview.dev
  clientConfig:
    url: https://`+framework.LANIP+`:9443`+sampleWebhookPath+`
    caBundle: `+base64.StdEncoding.EncodeToString(s.c.CA.PEM)+`
  rules: [{apiGroups: [""], apiVersions: [v1], operations: [CREATE, UPDATE], resources: [configmaps]}]
  objectSelector: {matchLabels: {opview.dev/sample: "true"}}
  sideEffects: None
  admissionReviewVersions: [v1]
  failurePolicy: Fail
  timeoutSeconds: 5
`)))
	sampleCM := func(name string, data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"opview.dev/sample": "true"}}, Data: data}
	}
	cms := s.c.Client.CoreV1().ConfigMaps("default")
	framework.WaitFor(t, "the webhook to deny a ConfigMap with data.deny=true", time.Minute, func(ctx context.Context) error {
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
	}, s.forwarded.proc)
	if _, err := cms.Create(ctx, sampleCM("sample-admitted", map[string]string{"outcome": "ok"}), metav1.CreateOptions{}); err != nil {
		framework.Fatalf(t, "a labelled ConfigMap the webhook admits: %v", err)
	}
}

// pullSource: a third operator on the LAN is a pull source of the relay, registered through
// Traefik with the runtime API; the relay, in its pod, scrapes it at its LAN address.
func (s *userPath) pullSource(t *testing.T) {
	s.pull = operator{job: "sample-operator-pull", metrics: framework.LANIP + ":8380"}
	s.pull.instance = s.pull.metrics // a pull source's instance is host:port
	s.pull.proc = s.startOperator(t, s.pull, "--leader-elect=false")
	framework.WaitFor(t, s.pull.job+" metrics", time.Minute, func(ctx context.Context) error { return framework.DialOK(ctx, s.pull.metrics) }, s.pull.proc)
	framework.WaitFor(t, "registering the pull source through Traefik", time.Minute, func(ctx context.Context) error {
		code, err := framework.HTTPPut(ctx, s.relay+"/api/v1/sources/"+s.pull.job, "application/json", s.token, `{"url":"http://`+s.pull.metrics+`/metrics"}`)
		if err != nil {
			return err
		}
		if code/100 != 2 {
			return fmt.Errorf("PUT source: HTTP %d", code)
		}
		return nil
	})
}

// inCluster: the sample operator runs as a pod of its own namespace (restricted), with in-cluster
// credentials through the kubernetes Service (kube-proxy), annotated for scraping.
func (s *userPath) inCluster(t *testing.T) {
	s.inJob, s.inNS = "sample-operator-incluster", "e2e-incluster"
	must(t, s.c.Apply(context.Background(), framework.MustObjects(t, `
apiVersion: v1
kind: Namespace
metadata:
  name: `+s.inNS+`
  labels: {pod-security.kubernetes.io/enforce: restricted, pod-security.kubernetes.io/warn: restricted}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: manager, namespace: `+s.inNS+`}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: e2e-sample-operator}
rules: [{apiGroups: [""], resources: [configmaps], verbs: [get, list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: e2e-sample-operator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: e2e-sample-operator}
subjects: [{kind: ServiceAccount, name: manager, namespace: `+s.inNS+`}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: `+s.inJob+`, namespace: `+s.inNS+`}
spec:
  selector: {matchLabels: {app.kubernetes.io/name: `+s.inJob+`}}
  template:
    metadata:
      labels: {app.kubernetes.io/name: `+s.inJob+`}
      annotations: {prometheus.io/scrape: "true", prometheus.io/port: "8480"}
    spec:
      serviceAccountName: manager
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: manager
          image: `+operatorImage+`
          imagePullPolicy: IfNotPresent
          args: [--metrics-bind-address=:8480, --metrics-secure=false, --health-probe-bind-address=:8081, --leader-elect=false]
          ports: [{name: metrics, containerPort: 8480}, {name: probes, containerPort: 8081}]
          readinessProbe: {httpGet: {path: /readyz, port: probes}, periodSeconds: 5}
          livenessProbe: {httpGet: {path: /healthz, port: probes}, periodSeconds: 20}
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`)))
	s.c.WaitPodReady(t, s.inNS, "app.kubernetes.io/name="+s.inJob, "", 3*time.Minute, s.node.Kubelet)
}

// operatorSeries: through the basic-auth Host route, every operator's metrics carry their job and
// instance (the in-cluster one its namespace and pod, found with the bundle's RBAC).
func (s *userPath) operatorSeries(t *testing.T) {
	for _, op := range []operator{s.forwarded, s.pushing, s.pull} {
		q := fmt.Sprintf(`controller_runtime_reconcile_total{job=%q,instance=%q}`, op.job, op.instance)
		framework.WaitFor(t, q+" through Traefik", 3*time.Minute, s.prom.HasSeries(q), op.proc, op.forwarder)
	}
	q := fmt.Sprintf(`controller_runtime_reconcile_total{job=%q,namespace=%q,pod=~%q}`, s.inJob, s.inNS, s.inJob+"-.+")
	framework.WaitFor(t, q+" (pod discovery with the bundle's service account)", 3*time.Minute, s.prom.HasSeries(q))
}

// refusedPush: a body that is no exposition pushed to the forwarded operator's group is refused;
// the relay keeps the group's samples and records the failure (push_failure_time_seconds, the
// relay dashboard's "since last failure" column).
func (s *userPath) refusedPush(t *testing.T) {
	framework.WaitFor(t, "a garbage push to "+s.forwarded.job+"'s group to be refused", time.Minute, func(ctx context.Context) error {
		code, err := framework.HTTPPut(ctx, s.relay+"/metrics/job/"+s.forwarded.job+"/instance/"+s.forwarded.instance, textFormat, s.token, "not an exposition {\n")
		if err != nil {
			return err
		}
		if code != http.StatusBadRequest {
			return fmt.Errorf("garbage push: HTTP %d, want 400", code)
		}
		return nil
	})
}

// dashboards: every query of every generated dashboard panel returns data.
func (s *userPath) dashboards(t *testing.T) {
	var n int
	framework.WaitFor(t, "every dashboard query to return data", 5*time.Minute, func(ctx context.Context) error {
		queries, err := framework.DashboardQueries(ctx, s.prom)
		if err != nil {
			return err
		}
		n = len(queries)
		var empty []string
		for _, q := range queries {
			res, err := s.prom.Query(ctx, q.Expr)
			if err != nil {
				return fmt.Errorf("dashboard %s panel %q: %w", q.Dashboard, q.Panel, err)
			}
			if len(res) == 0 {
				empty = append(empty, fmt.Sprintf("%s/%q: %s", q.Dashboard, q.Panel, q.Expr))
			}
		}
		if len(empty) > 0 {
			return fmt.Errorf("%d of %d queries return no data:\n%s", len(empty), len(queries), strings.Join(empty, "\n"))
		}
		return nil
	})
	t.Logf("all %d dashboard queries return data", n)
}

// podRestart: `kubectl delete pod` of the Prometheus pod. The Deployment starts a new pod; the
// relay restores its groups and API-added sources from its volume (a group pushed once before
// the restart comes back with its original push time, not re-pushed), and Prometheus keeps its
// TSDB (samples from before the restart answer a range query).
func (s *userPath) podRestart(t *testing.T) {
	ctx := context.Background()
	const witness = "e2e-restart-witness"
	code, err := framework.HTTPPut(ctx, s.relay+"/metrics/job/"+witness+"/instance/before-restart", textFormat, s.token,
		"# TYPE e2e_restart_witness gauge\ne2e_restart_witness 42\n")
	if err != nil || code/100 != 2 {
		framework.Fatalf(t, "pushing the witness group: HTTP %d (%v)", code, err)
	}
	framework.WaitFor(t, "Prometheus to scrape the witness", 2*time.Minute, s.prom.HasSeries("e2e_restart_witness"))
	pushed, ok := promtest.Value(promtest.Scrape(t, s.relay+"/metrics"), "push_time_seconds", map[string]string{"job": witness})
	if !ok {
		framework.Fatal(t, "the relay exposes no push_time_seconds for the witness group")
	}
	// The new process is told by its start time, compared with the old one's: both are read from
	// /proc with the boot time in whole seconds, so neither can be compared with the test's clock
	// (a process started after the delete can report a start up to a second before it).
	startOf := func(ctx context.Context) (float64, error) {
		res, err := s.prom.Query(ctx, `process_start_time_seconds{job="prometheus"}`)
		if err != nil {
			return 0, err
		}
		if len(res) != 1 {
			return 0, fmt.Errorf("process_start_time_seconds: %v, want one series", res)
		}
		return float64(res[0].Value), nil
	}
	var oldStart float64
	framework.WaitFor(t, "the Prometheus process's start time", time.Minute, func(ctx context.Context) (err error) {
		oldStart, err = startOf(ctx)
		return err
	})
	old := s.promPod
	deleted := time.Now()
	// What `kubectl delete pod` sends: a DELETE with the pod's own grace period.
	must(t, s.c.Client.CoreV1().Pods("opview").Delete(ctx, old.Name, metav1.DeleteOptions{}))
	s.promPod = s.c.WaitPodReady(t, "opview", prometheusPod, string(old.UID), 4*time.Minute, s.node.Kubelet)
	// The kubelet may take the whole grace period to stop it, then removes it.
	grace := time.Duration(*old.Spec.TerminationGracePeriodSeconds) * time.Second
	s.c.WaitPodGone(t, "opview", old.Name, grace+2*time.Minute, s.node.Kubelet)
	t.Logf("%s replaced %s %s after the delete", s.promPod.Name, old.Name, time.Since(deleted).Round(time.Second))
	since := func(what string) {
		t.Logf("%s %s after the delete", what, time.Since(deleted).Round(100*time.Millisecond))
	}
	for _, cs := range s.promPod.Status.ContainerStatuses {
		if cs.RestartCount > 0 { // Prometheus exits while the old one holds its TSDB's lock
			t.Logf("container %s of %s restarted %d times before it was ready", cs.Name, s.promPod.Name, cs.RestartCount)
		}
	}

	// The relay, through Traefik (reads are open): the witness group is back with its push time,
	// the pull source is registered again.
	framework.WaitFor(t, "the restarted relay through Traefik", 2*time.Minute, func(ctx context.Context) error {
		code, body, err := framework.HTTPGet(ctx, s.relay+"/api/v1/sources", "", nil)
		if err != nil {
			return err
		}
		if code != http.StatusOK || !strings.Contains(string(body), s.pull.job) {
			return fmt.Errorf("GET /api/v1/sources: HTTP %d, %.300s; want the source %s", code, body, s.pull.job)
		}
		return nil
	})
	since("the restarted relay answered through Traefik")
	fams := promtest.Scrape(t, s.relay+"/metrics")
	if got, ok := promtest.Value(fams, "push_time_seconds", map[string]string{"job": witness}); !ok || got != pushed {
		framework.Fatalf(t, "the witness group after the restart: push_time_seconds %v (found %v), want %v: the group was not restored from the volume", got, ok, pushed)
	}
	if v, ok := promtest.Value(fams, "e2e_restart_witness", map[string]string{"job": witness}); !ok || v != 42 {
		framework.Fatalf(t, "the witness sample after the restart: %v (found %v), want 42", v, ok)
	}

	// Prometheus: a new process, and the samples scraped before the restart still there.
	framework.WaitFor(t, "a new Prometheus process", 2*time.Minute, func(ctx context.Context) error {
		start, err := startOf(ctx)
		if err != nil {
			return err
		}
		if start <= oldStart {
			return fmt.Errorf("process_start_time_seconds %.2f, want the new process's, after the old one's %.2f", start, oldStart)
		}
		return nil
	})
	since("the new Prometheus scraped itself")
	m, err := s.prom.QueryRange(ctx, `up{job="prometheus"}`, promv1.Range{Start: deleted.Add(-5 * time.Minute), End: deleted, Step: 15 * time.Second})
	must(t, err)
	before := 0
	for _, series := range m {
		before += len(series.Values)
	}
	if before == 0 {
		framework.Fatalf(t, "up{job=\"prometheus\"} has no sample in the 5 minutes before the restart: the TSDB was lost")
	}
	t.Logf("after the restart, %d samples from before it answer a range query", before)
}

// expiry: a forwarder that dies (no clean delete) leaves its group until the relay's --group.ttl
// passes; then its series go stale while the pushing operator's stay.
func (s *userPath) expiry(t *testing.T) {
	ctx := context.Background()
	must(t, s.forwarded.forwarder.Kill())
	killedAt := time.Now()
	alive := fmt.Sprintf(`controller_runtime_reconcile_total{job=%q}`, s.pushing.job)
	gone := fmt.Sprintf(`controller_runtime_reconcile_total{job=%q}`, s.forwarded.job)
	framework.WaitFor(t, s.forwarded.job+"'s series to go stale after the TTL ("+s.ttl.String()+")", s.ttl+3*time.Minute, s.prom.NoSeries(gone))
	// The TTL counts from the group's last push, which came up to one forward interval before the kill.
	if since := time.Since(killedAt); since < s.ttl-forwardInterval {
		framework.Fatalf(t, "%s went stale %s after its forwarder died, before the TTL %s less one forward interval (%s)", s.forwarded.job, since, s.ttl, forwardInterval)
	}
	res, err := s.prom.Query(ctx, alive)
	if err != nil || len(res) == 0 {
		framework.Fatalf(t, "%s after the other group expired: %v %v, want its series", alive, res, err)
	}
	res, err = s.prom.Query(ctx, fmt.Sprintf(`opview_relay_group_fresh{job=%q}`, s.forwarded.job))
	if err != nil || len(res) != 1 || res[0].Value != 0 {
		framework.Fatalf(t, "opview_relay_group_fresh of the expired group: %v %v, want 0", res, err)
	}
}

// cleanStop: an operator that stops cleanly (SIGTERM, as `make run` gets from Ctrl-C) takes its
// group with it: the pusher's last act is a DELETE through Traefik, so its series go stale at the
// next scrape, long before the TTL.
func (s *userPath) cleanStop(t *testing.T) {
	ctx := context.Background()
	alive := fmt.Sprintf(`controller_runtime_reconcile_total{job=%q}`, s.pushing.job)
	s.pushing.proc.Stop()
	if exited, err := s.pushing.proc.Exited(); !exited || err != nil {
		framework.Fatalf(t, "%s on SIGTERM: exited %v (%v), want a clean exit", s.pushing.job, exited, err)
	}
	stoppedAt := time.Now()
	framework.WaitFor(t, alive+" to go stale after its operator stopped cleanly", s.ttl-forwardInterval, s.prom.NoSeries(alive))
	t.Logf("%s's series went stale %s after a clean stop (TTL %s): the pusher deleted its group", s.pushing.job, time.Since(stoppedAt).Round(time.Second), s.ttl)
	res, err := s.prom.Query(ctx, fmt.Sprintf(`opview_relay_group_fresh{job=%q}`, s.pushing.job))
	if err != nil || len(res) != 0 {
		framework.Fatalf(t, "opview_relay_group_fresh of the deleted group: %v %v, want no series (deleted, not expired)", res, err)
	}
}
