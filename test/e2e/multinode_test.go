//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/bcrypt"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/opview/opview/dashboards"
	"github.com/opview/opview/internal/haproxycfg"
	"github.com/opview/opview/internal/promtest"
	"github.com/opview/opview/internal/remotewrite"
	"github.com/opview/opview/test/e2e/framework"
)

// The multi-node scenario's LAN (a bridge in a namespace of its own): HAProxy, the two nodes'
// addresses (where their Traefik listens) and a client. Each node's Traefik also has a leg on the
// pod network, in a /24 of the cluster range that is not the first node's (a second node's pods
// get 10.42.1.0/24 from k3s), routed by the node namespace to the pods as flannel would.
const (
	lanSubnetPrefix = 24
	haproxyIP       = "192.168.78.5"
	clientIP        = "192.168.78.100"
	// receiverAddr is the second Prometheus, the remote_write receiver, on the framework's LAN.
	receiverAddr = framework.LANIP + ":9095"
	// pushJob and pushInstance name the group the client pushes through HAProxy.
	pushJob, pushInstance = "e2e-multinode", "lan-client"
	pushMetric            = "e2e_multinode_push"
)

// traefikNode is one node of the scenario: its Traefik in a namespace of its own.
type traefikNode struct {
	name        string // HAProxy's server name and the namespace's suffix
	lanIP       string // where HAProxy reaches it
	podIP, gwIP string // its leg on the pod network and the node namespace's end of it
	ns          *framework.Netns
	traefik     *framework.TraefikProcess
}

// multiNode is the scenario's state, shared by its steps.
type multiNode struct {
	c      *framework.Cluster
	node   *framework.Node
	b      *framework.Bundle
	procs  *framework.Procs
	nodes  []*traefikNode
	lbNS   *framework.Netns
	lb     *framework.HAProxy
	client *framework.Netns
	http   *http.Client // from the client's namespace

	traefik *framework.TraefikRelease
	relay   string                // the relay pod's base URL, as the node reaches it
	prom    *framework.Prometheus // the bundle's Prometheus through HAProxy, from the client
	seq     int                   // the value of the last push

	// The remote_write receiver and what the component's settings say.
	receiver          *framework.Prometheus
	rwUser, rwCluster string
}

// TestMultiNode is the bundle behind Debian's HAProxy on two nodes: two Traefik processes stand
// for the Traefik pods of two k3s nodes (DaemonSet, as deploy/traefik/traefik-config-haproxy.yaml
// renders it, HAProxy's address trusted for PROXY protocol v2), each in a namespace of its own on
// the same API server and routes. A client on the LAN pushes through HAProxy with the relay's
// write token: the relay records the client's own address. One Traefik is killed: HAProxy's health
// check takes its node out, pushes keep landing and the relay dashboard's panels keep data. The
// bundle runs with the remote_write component pointed at a second Prometheus on the LAN, which
// receives the pushed series with the component's external label.
func TestMultiNode(t *testing.T) {
	e := framework.Require(t)
	start := time.Now()
	defer func() { t.Logf("TestMultiNode took %s", time.Since(start).Round(time.Second)) }()
	s := &multiNode{}
	s.c = framework.StartCluster(t)
	s.b = framework.RenderBundle(t, s.c.Dir)
	s.enableRemoteWrite(t)

	// The namespaces first, so the processes in them stop (last started, first) before the
	// namespaces go.
	lan := framework.NewNetns(t, "mnlan")
	must(t, lan.AddBridge("br0"))
	s.client = framework.NewNetns(t, "client")
	must(t, framework.Plug(lan, "br0", "p-client", s.client, "lan0", clientIP, lanSubnetPrefix))
	s.http = s.client.HTTPClient()
	s.lbNS = framework.NewNetns(t, "lb")
	must(t, framework.Plug(lan, "br0", "p-lb", s.lbNS, "lan0", haproxyIP, lanSubnetPrefix))
	nodeNS := &framework.Netns{Name: e.NodeNetns}
	s.nodes = []*traefikNode{
		{name: "node1", lanIP: "192.168.78.11", podIP: "10.42.1.2", gwIP: "10.42.1.1"},
		{name: "node2", lanIP: "192.168.78.12", podIP: "10.42.2.2", gwIP: "10.42.2.1"},
	}
	for _, n := range s.nodes {
		n.ns = framework.NewNetns(t, n.name)
		must(t, framework.Plug(lan, "br0", "p-"+n.name, n.ns, "lan0", n.lanIP, lanSubnetPrefix))
		must(t, framework.Link(nodeNS, "mn-"+n.name, n.gwIP, n.ns, "pod0", n.podIP, 24))
		must(t, framework.IP("-n", n.ns.Name, "route", "add", "default", "via", n.gwIP))
	}
	s.procs = framework.NewProcs(t, s.c.Dir)
	s.startReceiver(t)

	d := s.b.Deployment(t, "prometheus")
	promC := framework.Container(t, &d.Spec.Template.Spec, "prometheus")
	relayC := framework.Container(t, &d.Spec.Template.Spec, "relay")
	img := func(name string) string { return filepath.Join(s.c.Dir, name+".tar") }
	pause, err := framework.PauseImage(framework.Artifact(t, "pause"), img("pause"))
	must(t, err)
	promImg, err := framework.PrometheusImage(promC.Image,
		framework.RequireBinary(t, framework.Binary("prometheus", s.c.Versions.Prometheus, "prometheus")),
		framework.RequireBinary(t, framework.Binary("prometheus", s.c.Versions.Prometheus, "promtool")), img("prometheus"))
	must(t, err)
	s.node = framework.StartNode(t, s.c, pause, framework.RelayImage(t, relayC.Image), promImg)

	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}
	step("bundle with remote_write and the HAProxy HelmChartConfig applied", s.apply)
	step("prometheus pod ready", func(t *testing.T) {
		pod := s.c.WaitPodReady(t, "opview", prometheusPod, "", 4*time.Minute, s.node.Kubelet, s.node.Containerd)
		s.relay = "http://" + pod.Status.PodIP + ":9091"
	})
	step("two nodes' traefik behind haproxy", s.startNodes)
	step("push through haproxy: the relay records the pusher's address", s.realAddress)
	step("one traefik killed: its node leaves, pushes land, dashboards keep data", s.failover)
	step("remote_write receiver holds the pushed series with the external label", s.remoteWrite)
}

// enableRemoteWrite does in the bundle's copy what docs/remote-write.md tells a user to: the
// component's remote-write.yml pointed at the receiver, its prometheus.yml written from it (what
// `make remote-write` runs: internal/remotewrite), the store's password in secrets/credentials,
// and the component listed in deploy/k3s/kustomization.yaml. The bundle is rendered again.
func (s *multiNode) enableRemoteWrite(t *testing.T) {
	comp := filepath.Join(s.b.Root, "deploy/k3s/components/remote-write")
	raw, err := os.ReadFile(filepath.Join(comp, "remote-write.yml"))
	must(t, err)
	var set struct {
		ExternalLabels map[string]string `json:"external_labels"`
		RemoteWrite    []map[string]any  `json:"remote_write"`
	}
	must(t, sigsyaml.Unmarshal(raw, &set))
	s.rwCluster = set.ExternalLabels["cluster"]
	if s.rwCluster == "" || len(set.RemoteWrite) != 1 {
		framework.Fatalf(t, "remote-write.yml: want external_labels.cluster and one remote_write entry, got %+v", set)
	}
	rw := set.RemoteWrite[0]
	auth, _ := rw["basic_auth"].(map[string]any)
	s.rwUser, _ = auth["username"].(string)
	if s.rwUser == "" {
		framework.Fatalf(t, "remote-write.yml: the e2e expects basic_auth with a username, got %v", rw["basic_auth"])
	}
	rw["url"] = "http://" + receiverAddr + "/api/v1/write"
	settings, err := sigsyaml.Marshal(set)
	must(t, err)
	base, err := os.ReadFile(filepath.Join(s.b.Root, "deploy/k3s/prometheus/prometheus.yml"))
	must(t, err)
	merged, err := remotewrite.Merge(base, settings, "# Written by the e2e from remote-write.yml.\n\n")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(comp, "prometheus.yml"), merged, 0o644))
	must(t, os.WriteFile(filepath.Join(comp, "secrets", "credentials"), []byte(s.rwPassword()), 0o600))

	kust := filepath.Join(s.b.Root, "deploy/k3s/kustomization.yaml")
	k, err := os.ReadFile(kust)
	must(t, err)
	const list = "components:\n  - ../site\n"
	if strings.Count(string(k), list) != 1 {
		framework.Fatalf(t, "deploy/k3s/kustomization.yaml: no %q to add the component to", list)
	}
	must(t, os.WriteFile(kust, []byte(strings.Replace(string(k), list, list+"  - components/remote-write\n", 1)), 0o644))
	s.b.K3s = s.b.Kustomize(t, "deploy/k3s")
	if !slices.ContainsFunc(s.b.K3s, func(o *unstructured.Unstructured) bool {
		return o.GetKind() == "Secret" && strings.HasPrefix(o.GetName(), "prometheus-remote-write")
	}) {
		framework.Fatal(t, "the rendered bundle has no prometheus-remote-write Secret: the component is not in")
	}
}

// rwPassword is the remote store's password, derived from the relay token (both random per run).
func (s *multiNode) rwPassword() string { return "rw-" + s.b.RelayToken[:12] }

// startReceiver runs the second Prometheus on the LAN, a store that accepts remote writes and
// requires the component's basic-auth account (Prometheus's own --web.config.file).
func (s *multiNode) startReceiver(t *testing.T) {
	dir := filepath.Join(s.c.Dir, "receiver")
	must(t, os.MkdirAll(filepath.Join(dir, "data"), 0o755))
	hash, err := bcrypt.GenerateFromPassword([]byte(s.rwPassword()), bcrypt.MinCost)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "web.yml"), []byte("basic_auth_users:\n  "+s.rwUser+": "+string(hash)+"\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte("global: {}\n"), 0o644))
	lan := &framework.Netns{Name: framework.Require(t).LANNetns}
	proc := s.procs.StartSpec(t, framework.Spec{Name: "remote-write-receiver", Netns: lan,
		Bin: framework.RequireBinary(t, framework.Binary("prometheus", s.c.Versions.Prometheus, "prometheus")), Args: []string{
			"--config.file=" + filepath.Join(dir, "prometheus.yml"),
			"--storage.tsdb.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + receiverAddr,
			"--web.config.file=" + filepath.Join(dir, "web.yml"),
			"--web.enable-remote-write-receiver",
		}})
	s.receiver, err = framework.NewPrometheus("http://"+receiverAddr, "", s.rwUser, s.rwPassword())
	must(t, err)
	framework.WaitFor(t, "the remote_write receiver", time.Minute, func(ctx context.Context) error {
		_, err := s.receiver.Query(ctx, "vector(1)")
		return err
	}, proc)
}

// apply: the CRDs k3s ships, local-path's volumes, deploy/k3s with the remote_write component,
// deploy/traefik, the HAProxy variant of the HelmChartConfig (HAProxy's address as the trusted
// load balancer), and the RBAC of the Traefik chart rendered from it, all with strict field
// validation and no warning.
func (s *multiNode) apply(t *testing.T) {
	ctx := context.Background()
	hcc, err := framework.DecodeYAMLFiles(filepath.Join(s.b.Root, "deploy/traefik/traefik-config-haproxy.yaml"))
	must(t, err)
	if len(hcc) != 1 || hcc[0].GetKind() != "HelmChartConfig" {
		framework.Fatal(t, "deploy/traefik/traefik-config-haproxy.yaml: want exactly one HelmChartConfig")
	}
	values, _, _ := unstructured.NestedString(hcc[0].Object, "spec", "valuesContent")
	values, err = setLoadBalancers(values, haproxyIP+"/32")
	must(t, err)
	must(t, unstructured.SetNestedField(hcc[0].Object, values, "spec", "valuesContent"))
	s.traefik, err = framework.RenderTraefik(ctx, s.c, framework.TraefikChartDir(framework.Artifact(t, "traefik-chart-module")),
		hcc[0], strings.TrimPrefix(s.c.Versions.Traefik, "v"))
	must(t, err)
	var rbac []*unstructured.Unstructured
	for _, o := range s.traefik.Objects {
		switch o.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding":
			rbac = append(rbac, o)
		}
	}
	helmCRDs := framework.HelmChartCRDs(t)
	localPath, err := framework.LocalPath(s.b.K3s, filepath.Join(s.node.Dir, "local-path"))
	must(t, err)
	for _, st := range []struct {
		name string
		do   func() error
	}{
		{"the Traefik chart's CRDs", func() error { return s.c.Apply(ctx, s.traefik.CRDs) }},
		{"the HelmChart CRDs", func() error { return s.c.Apply(ctx, helmCRDs) }},
		{"local-path's StorageClass and volumes", func() error { return s.c.Apply(ctx, localPath) }},
		{"deploy/k3s with components/remote-write", func() error { return s.c.Apply(ctx, s.b.K3s) }},
		{"deploy/traefik", func() error { return s.c.Apply(ctx, s.b.Routes) }},
		{"deploy/traefik/traefik-config-haproxy.yaml", func() error { return s.c.Apply(ctx, hcc) }},
		{"the Traefik chart's RBAC", func() error { return s.c.ApplyIn(ctx, "kube-system", rbac) }},
	} {
		if err := st.do(); err != nil {
			framework.Fatalf(t, "%s: %v", st.name, err)
		}
	}
}

// setLoadBalancers replaces the addresses of the HelmChartConfig's loadBalancers anchor (every
// trustedIPs list refers to it) with addrs.
func setLoadBalancers(values string, addrs ...string) (string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(values), &doc); err != nil {
		return "", err
	}
	var anchor *yaml.Node
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Anchor == "loadBalancers" && n.Kind == yaml.SequenceNode {
			anchor = n
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
	if anchor == nil {
		return "", fmt.Errorf("valuesContent has no loadBalancers anchor")
	}
	anchor.Content = nil
	for _, a := range addrs {
		anchor.Content = append(anchor.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: a})
	}
	out, err := yaml.Marshal(&doc)
	return string(out), err
}

// startNodes: each node's Traefik runs the chart's DaemonSet container (the HAProxy variant's
// entrypoints: PROXY protocol trusted from HAProxy on web, websecure and relay) with a token of the
// chart's ServiceAccount, and serves the bundle's routes from the API server; HAProxy, configured
// by internal/haproxycfg for these two nodes, finds both up.
func (s *multiNode) startNodes(t *testing.T) {
	ctx := context.Background()
	// The variant makes Traefik a DaemonSet: one pod per node.
	var ds appsv1.DaemonSet
	must(t, runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(s.traefik.Find(t, "DaemonSet", "traefik").Object, &ds, true))
	pod := &ds.Spec.Template.Spec
	args := framework.Container(t, pod, "traefik").Args
	for _, ep := range []string{"web", "websecure", "relay"} {
		want := "--entryPoints." + ep + ".proxyProtocol.trustedIPs=" + haproxyIP + "/32"
		if !slices.Contains(args, want) {
			framework.Errorf(t, "the chart rendered from traefik-config-haproxy.yaml lacks %s", want)
		}
	}
	token, err := s.c.TraefikToken(ctx, pod)
	must(t, err)
	tokenFile := filepath.Join(s.c.Dir, "traefik-token")
	must(t, os.WriteFile(tokenFile, []byte(token), 0o600))
	for _, n := range s.nodes {
		n.traefik = framework.StartTraefikProcess(t, s.procs, s.c, n.ns, "traefik-"+n.name, pod, tokenFile, n.podIP)
	}
	// Each Traefik serves the bundle's routes: the relay through the IngressRouteTCP, Prometheus's
	// Host route behind its basic auth.
	host := s.b.RouteHost(t, "prometheus")
	for _, n := range s.nodes {
		relay := fmt.Sprintf("http://%s:%d", n.podIP, n.traefik.Ports["relay"])
		web := fmt.Sprintf("http://%s:%d", n.podIP, n.traefik.Ports["web"])
		// A new connection each time: one accepted before the IngressRouteTCP was loaded stays
		// with the entrypoint's HTTP router (404) for as long as it is kept alive.
		framework.WaitFor(t, n.name+"'s Traefik routes", 2*time.Minute, func(ctx context.Context) error {
			code, err := getOnce(ctx, relay+"/-/healthy", "")
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("relay route: HTTP %d (%v)", code, err)
			}
			code, err = getOnce(ctx, web+"/api/v1/query?query=up", host)
			if err != nil || code != http.StatusUnauthorized {
				return fmt.Errorf("prometheus route without credentials: HTTP %d (%v), want 401", code, err)
			}
			return nil
		}, n.traefik.Proc)
	}

	// HAProxy forwards its ports to the nodes' Traefik. On k3s, ServiceLB maps the exposed ports
	// (80, 443, 9091) to the entrypoints' container ports; these Traefik processes listen on the
	// container ports themselves.
	cfg := haproxycfg.Config{Header: "Rendered by the e2e (TestMultiNode) for its two nodes."}
	for _, n := range s.nodes {
		cfg.Nodes = append(cfg.Nodes, haproxycfg.Node{Name: n.name, Addr: n.lanIP})
	}
	for _, f := range haproxycfg.BundleFrontends() {
		p, ok := s.nodes[0].traefik.Ports[f.Name]
		if !ok {
			framework.Fatalf(t, "HAProxy frontend %s: the Traefik container has no port %s", f.Name, f.Name)
		}
		f.NodePort = int(p)
		cfg.Frontends = append(cfg.Frontends, f)
	}
	lbDir, err := os.MkdirTemp(framework.Require(t).Work, "lb-")
	must(t, err)
	s.lb = framework.StartHAProxy(t, s.procs, s.lbNS, lbDir, cfg)
	framework.WaitFor(t, "HAProxy's checks to find both nodes up", time.Minute, s.lb.ServersAre(map[string]string{"node1": "UP", "node2": "UP"}), s.lb.Proc)
	s.prom, err = framework.NewPrometheusVia("http://"+haproxyIP+":80", host, s.b.PrometheusUser, s.b.PrometheusPassword, s.client.Transport())
	must(t, err)
}

// realAddress: pushes from the client through HAProxy land, and the relay's status page shows the
// address and port the client's connection came from (HAProxy's PROXY v2 header believed by
// Traefik, Traefik's own to the relay believed by the relay), not HAProxy's or Traefik's. HAProxy
// alternates the nodes, so both carried some.
func (s *multiNode) realAddress(t *testing.T) {
	before := s.relaySessions(t)
	for i := 0; i < 4; i++ {
		from := s.pushLands(t)
		got := s.statusFrom(t)
		if got != from {
			framework.Fatalf(t, "push %d came from %s; the relay's status page shows %q (HAProxy is %s, the nodes' Traefik %s and %s)",
				s.seq, from, got, haproxyIP, s.nodes[0].podIP, s.nodes[1].podIP)
		}
	}
	after := s.relaySessions(t)
	for _, n := range s.nodes {
		if after[n.name] <= before[n.name] {
			framework.Errorf(t, "HAProxy sent no push to %s (sessions %d, then %d)", n.name, before[n.name], after[n.name])
		}
	}
	t.Logf("4 pushes from %s through HAProxy, the relay saw each one's own address and port; sessions per node: %v", clientIP, after)
}

// failover: one node's Traefik dies. Pushes go on landing while HAProxy's health check takes the
// node out (a refused connection is retried on the other node) and after; the relay dashboard's
// panels for the pushed group have data through HAProxy, on the node left, with the value pushed
// after the kill.
func (s *multiNode) failover(t *testing.T) {
	dead := s.nodes[0]
	must(t, dead.traefik.Proc.Kill())
	killed := time.Now()
	pushes := 0
	framework.WaitFor(t, "HAProxy's health check to take "+dead.name+" out", 2*time.Minute, func(ctx context.Context) error {
		s.pushLands(t)
		pushes++
		return s.lb.ServersAre(map[string]string{dead.name: "DOWN", s.nodes[1].name: "UP"})(ctx)
	}, s.lb.Proc)
	t.Logf("HAProxy took %s out %s after its Traefik was killed; %d pushes landed meanwhile", dead.name, time.Since(killed).Round(100*time.Millisecond), pushes)
	before := s.relaySessions(t)
	for i := 0; i < 4; i++ {
		s.pushLands(t)
	}
	after := s.relaySessions(t)
	if after[dead.name] != before[dead.name] || after[s.nodes[1].name] < before[s.nodes[1].name]+4 {
		framework.Errorf(t, "after %s was taken out, 4 pushes: sessions %v, then %v; want all on %s", dead.name, before, after, s.nodes[1].name)
	}

	// The dashboards, through HAProxy's web frontend and the node left: the pushed value and every
	// panel of the relay dashboard that selects the pushed group.
	q := fmt.Sprintf(`%s{job=%q,instance=%q}`, pushMetric, pushJob, pushInstance)
	framework.WaitFor(t, "Prometheus through HAProxy to hold the value pushed last ("+fmt.Sprint(s.seq)+")", 2*time.Minute, func(ctx context.Context) error {
		res, err := s.prom.Query(ctx, q)
		if err != nil {
			return err
		}
		if len(res) != 1 || res[0].Value != model.SampleValue(s.seq) {
			return fmt.Errorf("%s = %v, want %d", q, res, s.seq)
		}
		if _, ok := res[0].Metric["cluster"]; ok {
			return fmt.Errorf("%s carries the external label cluster locally: %v", q, res[0].Metric)
		}
		return nil
	})
	queries, err := framework.DashboardQueriesFor(dashboards.RelayUID, map[string][]string{"group": {pushJob}})
	must(t, err)
	var n int
	for _, pq := range queries {
		if !strings.Contains(pq.Expr, pushJob) || strings.Contains(pq.Expr, "failure") { // no push failed
			continue
		}
		n++
		framework.WaitFor(t, fmt.Sprintf("relay dashboard panel %q for %s", pq.Panel, pushJob), 2*time.Minute, s.prom.HasSeries(pq.Expr))
	}
	if n == 0 {
		framework.Fatal(t, "no relay dashboard query selects the pushed group: the dashboard's group variable changed?")
	}
	t.Logf("after the kill: %s = %d through HAProxy, and %d relay dashboard queries of the group return data", q, s.seq, n)
}

// remoteWrite: the receiver holds the pushed series, with the component's external label, up to
// the value pushed last.
func (s *multiNode) remoteWrite(t *testing.T) {
	q := fmt.Sprintf(`%s{job=%q,instance=%q,cluster=%q}`, pushMetric, pushJob, pushInstance, s.rwCluster)
	framework.WaitFor(t, q+" on the remote_write receiver", 2*time.Minute, func(ctx context.Context) error {
		res, err := s.receiver.Query(ctx, q)
		if err != nil {
			return err
		}
		if len(res) != 1 || res[0].Value != model.SampleValue(s.seq) {
			return fmt.Errorf("%s = %v, want %d", q, res, s.seq)
		}
		return nil
	})
	t.Logf("the receiver has %s = %d", q, s.seq)
}

// pushLands pushes the next value from the client through HAProxy's relay frontend with the
// relay's write token, checks the relay holds it, and returns the address the connection came
// from.
func (s *multiNode) pushLands(t *testing.T) string {
	t.Helper()
	s.seq++
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var local net.Addr
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { local = i.Conn.LocalAddr() }})
	url := "http://" + haproxyIP + ":9091/metrics/job/" + pushJob + "/instance/" + pushInstance
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, strings.NewReader(fmt.Sprintf("# TYPE %s gauge\n%s %d\n", pushMetric, pushMetric, s.seq)))
	must(t, err)
	req.Header.Set("Content-Type", textFormat)
	req.Header.Set("Authorization", "Bearer "+s.b.RelayToken)
	resp, err := s.http.Do(req)
	if err != nil {
		framework.Fatalf(t, "push %d through HAProxy: %v", s.seq, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		framework.Fatalf(t, "push %d through HAProxy: HTTP %d %q", s.seq, resp.StatusCode, body)
	}
	v, ok := promtest.Value(promtest.Scrape(t, s.relay+"/metrics"), pushMetric, map[string]string{"job": pushJob, "instance": pushInstance})
	if !ok || v != float64(s.seq) {
		framework.Fatalf(t, "after push %d the relay exposes %s = %v (found %v)", s.seq, pushMetric, v, ok)
	}
	return local.String()
}

// getOnce fetches url (with an optional Host header) on a connection of its own and returns the
// status.
func getOnce(ctx context.Context, url, host string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Host = host
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Body.Close()
}

var statusCode = regexp.MustCompile(`<td><code>([^<]*)</code></td>`)

// statusFrom reads the pushed group's "From" column on the relay's status page (the relay's own
// address, not through HAProxy, so the pushes alone alternate HAProxy's nodes).
func (s *multiNode) statusFrom(t *testing.T) string {
	t.Helper()
	code, body, err := framework.HTTPGet(context.Background(), s.relay+"/", "", nil)
	if err != nil || code != http.StatusOK {
		framework.Fatalf(t, "the relay's status page: HTTP %d (%v)", code, err)
	}
	for _, row := range strings.Split(string(body), "<tr>") {
		if !strings.Contains(row, pushJob) {
			continue
		}
		// The row's code cells: the group, then From.
		if cells := statusCode.FindAllStringSubmatch(row, -1); len(cells) >= 2 {
			return html.UnescapeString(cells[1][1])
		}
	}
	framework.Fatalf(t, "the relay's status page has no row for %s with a From column:\n%.2000s", pushJob, body)
	return ""
}

// relaySessions is the number of connections HAProxy gave each node's relay entrypoint.
func (s *multiNode) relaySessions(t *testing.T) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	states, err := s.lb.Servers(ctx)
	must(t, err)
	out := map[string]int64{}
	for _, st := range states {
		if st.Backend == "relay_nodes" {
			out[st.Server] = st.Sessions
		}
	}
	return out
}
