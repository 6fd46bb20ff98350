package deploy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/opview/opview/internal/haproxycfg"
	"github.com/opview/opview/internal/promtest"
)

// The multi-node pieces: HAProxy's configuration, rendered from the node list, and the
// HelmChartConfig variant that makes Traefik believe HAProxy's PROXY headers.
const (
	haproxyNodes           = "deploy/haproxy/nodes.txt"
	haproxyConfig          = "deploy/haproxy/haproxy.cfg"
	haproxyHelmChartConfig = "deploy/traefik/traefik-config-haproxy.yaml"
)

// The Service ports of the chart's web and websecure entrypoints (ServiceLB binds them on the nodes).
var chartExposedPorts = map[string]int{"web": 80, "websecure": 443}

// haproxyBinary returns Debian's haproxy, or skips the test when it is not installed (fails under CI,
// whose .ci/run installs it).
func haproxyBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("haproxy not found: .ci/run installs Debian's haproxy package for this check")
		}
		t.Skip("haproxy is not installed (apt-get install haproxy): the HAProxy configuration is not checked by the real parser")
	}
	return p
}

// haproxyCheck runs `haproxy -c -f file` and returns its output and whether it accepted the file.
func haproxyCheck(t *testing.T, bin, file string) (string, bool) {
	t.Helper()
	out, err := exec.Command(bin, "-c", "-f", file).CombinedOutput()
	return string(out), err == nil
}

func readNodes(t *testing.T) []haproxycfg.Node {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, haproxyNodes))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	nodes, err := haproxycfg.ParseNodes(f)
	if err != nil {
		t.Fatalf("%s: %v", haproxyNodes, err)
	}
	return nodes
}

// TestHAProxyConfig: the committed configuration is the one rendered from the node list, HAProxy
// itself accepts it (and refuses a broken one, so the check means something), and its frontends
// forward to the ports the nodes expose.
func TestHAProxyConfig(t *testing.T) {
	nodes := readNodes(t)
	want, err := haproxycfg.Render(haproxycfg.Bundle(nodes))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(repoRoot, haproxyConfig))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not rendered from %s: run `make haproxy` and commit", haproxyConfig, haproxyNodes)
	}

	// Every port the nodes expose has a frontend, and nothing else does.
	exposed := map[string]int{}
	for name, p := range chartExposedPorts {
		exposed[name] = p
	}
	for name, p := range helmChartPorts(t, helmChartConfigFiles[0]) {
		exposed[name] = p.ExposedPort
	}
	fronts := map[string]int{}
	for _, f := range haproxycfg.BundleFrontends() {
		fronts[f.Name] = f.NodePort
		if f.Bind != fmt.Sprintf(":%d", f.NodePort) {
			t.Errorf("frontend %s binds %s, want the nodes' port :%d (clients keep their port habits)", f.Name, f.Bind, f.NodePort)
		}
	}
	if fmt.Sprint(fronts) != fmt.Sprint(exposed) {
		t.Errorf("HAProxy frontends %v, the nodes expose %v (chart defaults and %s)", fronts, exposed, helmChartConfigFiles[0])
	}

	bin := haproxyBinary(t)
	if out, ok := haproxyCheck(t, bin, filepath.Join(repoRoot, haproxyConfig)); !ok {
		t.Fatalf("haproxy -c refuses %s:\n%s", haproxyConfig, out)
	}
	// The forms a node list may take: IPv4, IPv6, a name resolved when HAProxy starts.
	dir := t.TempDir()
	other, err := haproxycfg.Render(haproxycfg.Bundle([]haproxycfg.Node{{Name: "a", Addr: "10.0.0.1"}, {Name: "b", Addr: "fd00::2"}, {Name: "c", Addr: "localhost"}}))
	if err != nil {
		t.Fatal(err)
	}
	otherFile := filepath.Join(dir, "other.cfg")
	if err := os.WriteFile(otherFile, other, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, ok := haproxyCheck(t, bin, otherFile); !ok {
		t.Errorf("haproxy -c refuses a configuration with IPv6 and named nodes:\n%s\n%s", out, other)
	}
	broken := filepath.Join(dir, "broken.cfg")
	if err := os.WriteFile(broken, bytes.Replace(want, []byte("send-proxy-v2"), []byte("send-proxy-v3"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, ok := haproxyCheck(t, bin, broken); ok {
		t.Errorf("haproxy -c accepts an unknown server keyword: the check proves nothing\n%s", out)
	}
}

// TestHAProxyVariantTrustsTheLoadBalancers: traefik-config-haproxy.yaml keeps the main file's
// relay entrypoint, makes web, websecure and relay believe PROXY headers (and web and websecure
// X-Forwarded-* headers) from the load balancers only, listed once, and sets what makes the
// source address reach Traefik: externalTrafficPolicy Local and a Traefik pod on every node.
func TestHAProxyVariantTrustsTheLoadBalancers(t *testing.T) {
	file := haproxyHelmChartConfig
	main := helmChartPorts(t, helmChartConfigFiles[0])
	ports := helmChartPorts(t, file, "service", "deployment")
	if fmt.Sprint(ports) != fmt.Sprint(main) {
		t.Errorf("%s adds ports %+v, want the main file's %+v (it replaces it on the node)", file, ports, main)
	}
	values := helmChartValues(t, file)

	if kind := lookup(values, "deployment", "kind"); kind != "DaemonSet" {
		t.Errorf("%s: deployment.kind = %v, want DaemonSet: with externalTrafficPolicy Local only nodes running a Traefik pod answer", file, kind)
	}
	if d, _ := values["deployment"].(map[string]any); len(d) != 1 {
		t.Errorf("%s: deployment sets %v, want only kind", file, d)
	}
	specYAML, _ := yaml.Marshal(lookup(values, "service", "spec"))
	var spec corev1.ServiceSpec
	if err := yaml.UnmarshalStrict(specYAML, &spec); err != nil {
		t.Errorf("%s: service.spec is not a Service spec: %v", file, err)
	}
	if spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		t.Errorf("%s: service.spec.externalTrafficPolicy = %q, want Local (with Cluster, kube-proxy hides HAProxy's address and no header is believed)", file, spec.ExternalTrafficPolicy)
	}
	if s, _ := values["service"].(map[string]any); len(s) != 1 {
		t.Errorf("%s: service sets %v, want only spec", file, s)
	}

	var lb []string
	check := func(path ...any) { // path: strings
		parts := make([]string, len(path))
		for i, p := range path {
			parts[i] = p.(string)
		}
		where := file + ": ports." + strings.Join(parts, ".")
		list, ok := lookup(values, append([]any{"ports"}, path...)...).([]any)
		if !ok || len(list) == 0 {
			t.Errorf("%s: not a list of addresses", where)
			return
		}
		var got []string
		for _, v := range list {
			s, _ := v.(string)
			p, err := parseIPOrCIDR(s)
			if err != nil {
				t.Errorf("%s: %q is neither an IP address nor a CIDR", where, v)
				continue
			}
			if p.Bits() == 0 {
				t.Errorf("%s: %q trusts every address: any client could choose its own", where, s)
			}
			got = append(got, s)
		}
		if lb == nil {
			lb = got
		} else if !slices.Equal(got, lb) {
			t.Errorf("%s = %v, want the load balancers %v like the other entrypoints", where, got, lb)
		}
	}
	for _, ep := range []string{"web", "websecure", "relay"} {
		check(ep, "proxyProtocol", "trustedIPs")
		if lookup(values, "ports", ep, "proxyProtocol", "insecure") != nil {
			t.Errorf("%s: ports.%s.proxyProtocol.insecure set: it trusts every address", file, ep)
		}
	}
	for _, ep := range []string{"web", "websecure"} {
		check(ep, "forwardedHeaders", "trustedIPs")
		if lookup(values, "ports", ep, "forwardedHeaders", "insecure") != nil {
			t.Errorf("%s: ports.%s.forwardedHeaders.insecure set: it trusts every address", file, ep)
		}
	}
	// Defined once: the list is an anchor the other entrypoints refer to.
	content, _ := lookup(readObject(t, file).raw, "spec", "valuesContent").(string)
	for _, a := range lb {
		if n := strings.Count(content, a); n != 1 {
			t.Errorf("%s: the load balancer address %s is written %d times, want once (a YAML anchor)", file, a, n)
		}
	}
}

func parseIPOrCIDR(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// TestRelayReceivesProxyProtocol: Traefik's route to the relay sends PROXY protocol v2 through a
// ServersTransportTCP (the form Traefik v3 documents; the service-level proxyProtocol is
// deprecated), and the relay believes it from the pod network Traefik runs in (k3s's default
// cluster CIDR), not from localhost, where Prometheus scrapes it.
func TestRelayReceivesProxyProtocol(t *testing.T) {
	routes := render(t, traefikDir)
	tcp := routes.one(t, "IngressRouteTCP", "relay")
	svc := lookup(tcp.raw, "spec", "routes", 0, "services", 0)
	if lookup(svc, "proxyProtocol") != nil {
		t.Error("IngressRouteTCP relay: the service-level proxyProtocol is deprecated in Traefik v3: use a ServersTransportTCP")
	}
	name, _ := lookup(svc, "serversTransport").(string)
	if name == "" {
		t.Fatal("IngressRouteTCP relay names no serversTransport: the relay would see Traefik's address, not the pusher's")
	}
	st := routes.one(t, "ServersTransportTCP", name)
	if v := lookup(st.raw, "spec", "proxyProtocol", "version"); v != float64(2) {
		t.Errorf("ServersTransportTCP %s: proxyProtocol.version %v, want 2", name, v)
	}

	relay := container(t, deployment(t, render(t, k3sDir), "prometheus"), "relay")
	trusted, ok := flagValue(relay.Args, "web.proxy-protocol.trusted-ips")
	if !ok {
		t.Fatalf("relay args lack --web.proxy-protocol.trusted-ips, but Traefik sends it PROXY headers: every push through Traefik would be refused")
	}
	var prefixes []netip.Prefix
	for _, s := range strings.Split(trusted, ",") {
		p, err := parseIPOrCIDR(s)
		if err != nil {
			t.Fatalf("--web.proxy-protocol.trusted-ips=%s: %v", trusted, err)
		}
		prefixes = append(prefixes, p)
	}
	in := func(addr string) bool {
		a := netip.MustParseAddr(addr)
		return slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	if !in("10.42.0.9") || !in("10.42.3.9") {
		t.Errorf("--web.proxy-protocol.trusted-ips=%s does not cover k3s's pod network (10.42.0.0/16), where Traefik runs", trusted)
	}
	if in("127.0.0.1") || in("192.168.1.50") {
		t.Errorf("--web.proxy-protocol.trusted-ips=%s trusts localhost or the LAN: only Traefik's pods need to be", trusted)
	}
}

// TestHAProxySendsProxyV2AndFailsOver runs the real HAProxy on loopback with the configuration
// Render gives for two stand-in nodes: each connection reaches a node behind a PROXY v2 header
// that carries the client's address, and when one node stops, connections keep landing on the other.
func TestHAProxySendsProxyV2AndFailsOver(t *testing.T) {
	bin := haproxyBinary(t)
	port, listeners := samePortOn(t, "127.0.0.2", "127.0.0.3")
	type seen struct {
		node string
		hdr  *proxyproto.Header
	}
	got := make(chan seen, 100)
	var wg sync.WaitGroup
	for i, l := range listeners {
		node := fmt.Sprintf("node%d", i+1)
		pl := &proxyproto.Listener{Listener: l, ConnPolicy: func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.REQUIRE, nil }}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := pl.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					line, err := bufio.NewReader(c).ReadString('\n')
					if err != nil || line != "hello\n" { // health checks connect and close
						return
					}
					got <- seen{node, c.(*proxyproto.Conn).ProxyHeader()}
					fmt.Fprintf(c, "%s\n", node)
				}()
			}
		}()
	}
	stopped := map[int]bool{}
	t.Cleanup(func() {
		for i, l := range listeners {
			if !stopped[i] {
				_ = l.Close()
			}
		}
		wg.Wait()
	})

	front := freeAddr(t, "127.0.0.1")
	cfg, err := haproxycfg.Render(haproxycfg.Config{
		Header: "test: two loopback nodes",
		Nodes:  []haproxycfg.Node{{Name: "node1", Addr: "127.0.0.2"}, {Name: "node2", Addr: "127.0.0.3"}},
		Frontends: []haproxycfg.Frontend{
			{Name: "relay", Bind: front, NodePort: port},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfgFile, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", cfgFile)
	var logs promtest.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-exited
	})

	// hello connects through HAProxy and returns the node that answered and the header it got.
	hello := func() (seen, string, error) {
		c, err := net.DialTimeout("tcp", front, 2*time.Second)
		if err != nil {
			return seen{}, "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("hello\n")); err != nil {
			return seen{}, "", err
		}
		answer, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return seen{}, "", err
		}
		select {
		case s := <-got:
			if s.node+"\n" != answer {
				return seen{}, "", fmt.Errorf("%s answered, %s recorded", strings.TrimSpace(answer), s.node)
			}
			return s, c.LocalAddr().String(), nil
		case <-time.After(5 * time.Second):
			return seen{}, "", fmt.Errorf("no node recorded the connection")
		}
	}

	nodesSeen := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for len(nodesSeen) < 2 {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("haproxy exited: %v\n%s", err, logs.String())
		default:
		}
		s, client, err := hello()
		if err == nil {
			nodesSeen[s.node] = true
			if s.hdr == nil || s.hdr.Version != 2 || !s.hdr.Command.IsProxy() {
				t.Fatalf("%s got header %+v, want a PROXY v2 header", s.node, s.hdr)
			}
			if s.hdr.SourceAddr.String() != client {
				t.Fatalf("%s got client address %s in the PROXY header, the client is %s", s.node, s.hdr.SourceAddr, client)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("both nodes not reached through HAProxy within 20s (reached %v, last error %v)\n%s", nodesSeen, err, logs.String())
		}
		if err != nil {
			time.Sleep(50 * time.Millisecond) // polling interval while HAProxy starts, with a deadline
		}
	}

	// node2 stops: every connection still lands, on node1 (retried there at once, then taken
	// out by the health check).
	_ = listeners[1].Close()
	stopped[1] = true
	for i := 0; i < 10; i++ {
		s, _, err := hello()
		if err != nil {
			t.Fatalf("connection %d after node2 stopped: %v\n%s", i, err, logs.String())
		}
		if s.node != "node1" {
			t.Fatalf("connection %d answered by %s after node2 stopped", i, s.node)
		}
	}
}

// freeAddr returns a loopback address with a port free at the time of the call.
func freeAddr(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// samePortOn listens on one port on each of the given loopback addresses (nodes expose the same
// port on different addresses).
func samePortOn(t *testing.T, ips ...string) (int, []net.Listener) {
	t.Helper()
	for try := 0; try < 20; try++ {
		first, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		ls := []net.Listener{first}
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
			if err != nil {
				break
			}
			ls = append(ls, l)
		}
		if len(ls) == len(ips) {
			return port, ls
		}
		for _, l := range ls {
			_ = l.Close()
		}
	}
	t.Fatalf("no port free on all of %v", ips)
	return 0, nil
}
