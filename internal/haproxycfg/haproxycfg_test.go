package haproxycfg

import (
	"strings"
	"testing"
)

func TestParseNodes(t *testing.T) {
	nodes, err := ParseNodes(strings.NewReader("# comment\n\nnode1 192.168.1.11\n  node2\tfd00::12   # trailing comment\nnode-3.lan k3s-3.home.arpa\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Node{{"node1", "192.168.1.11"}, {"node2", "fd00::12"}, {"node-3.lan", "k3s-3.home.arpa"}}
	if len(nodes) != len(want) {
		t.Fatalf("got %v, want %v", nodes, want)
	}
	for i := range want {
		if nodes[i] != want[i] {
			t.Errorf("node %d: %v, want %v", i, nodes[i], want[i])
		}
	}
}

func TestParseNodesErrorsNameTheLine(t *testing.T) {
	for in, want := range map[string]string{
		"":                               "no nodes",
		"# only a comment\n":             "no nodes",
		"node1\n":                        "line 1: want NAME ADDRESS",
		"node1 10.0.0.1 extra\n":         "line 1: want NAME ADDRESS",
		"a 10.0.0.1\na 10.0.0.2\n":       `line 2: node "a" listed twice`,
		"\n\nn1 not_a_host!\n":           "line 3: node n1:",
		"-bad 10.0.0.1\n":                `line 1: node name "-bad"`,
		"n1 0.0.0.0\n":                   "is not a node's address",
		"n1 fe80::1%eth0\n":              "is not a node's address",
		"n1 " + strings.Repeat("a", 300): "...",
		strings.Repeat("x", 5000) + "\n": "token too long",
	} {
		_, err := ParseNodes(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.40q: error %v, want it to contain %q", in, err, want)
		}
		if err != nil && len(err.Error()) > 200 {
			t.Errorf("%.40q: error of %d bytes, want a short one", in, len(err.Error()))
		}
	}
}

func TestRender(t *testing.T) {
	cfg := Bundle([]Node{{"node1", "192.168.1.11"}, {"node2", "fd00::12"}, {"node3", "k3s-3.home.arpa"}})
	b, err := Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	for _, want := range []string{
		"frontend web\n    bind :80\n", "frontend websecure\n    bind :443\n", "frontend relay\n    bind :9091\n",
		"backend relay_nodes\n    balance roundrobin\n    server node1 192.168.1.11:9091\n    server node2 [fd00::12]:9091\n    server node3 k3s-3.home.arpa:9091\n",
		"default-server check inter 5s fall 2 rise 2 send-proxy-v2\n",
		"    user haproxy\n", "    maxconn 4096\n", "    maxconn 1024\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered configuration lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n    server "); n != 9 {
		t.Errorf("%d server lines, want 3 nodes x 3 ports", n)
	}
}

func TestRenderRefusesBadConfig(t *testing.T) {
	good := func() Config { return Config{Nodes: []Node{{"n1", "10.0.0.1"}}, Frontends: BundleFrontends()} }
	for name, mutate := range map[string]func(*Config){
		"no nodes":          func(c *Config) { c.Nodes = nil },
		"no frontends":      func(c *Config) { c.Frontends = nil },
		"duplicate node":    func(c *Config) { c.Nodes = append(c.Nodes, c.Nodes[0]) },
		"bad node address":  func(c *Config) { c.Nodes[0].Addr = "10.0.0.1\n    server evil 1.2.3.4:80" },
		"bad frontend":      func(c *Config) { c.Frontends[0].Name = "web nodes" },
		"duplicate front":   func(c *Config) { c.Frontends = append(c.Frontends, c.Frontends[0]) },
		"bind with space":   func(c *Config) { c.Frontends[0].Bind = ":80 ssl" },
		"port out of range": func(c *Config) { c.Frontends[0].NodePort = 70000 },
		"global newline":    func(c *Config) { c.Global = []string{"user haproxy\nbackend x"} },
		"negative maxconn":  func(c *Config) { c.MaxConn = -1 },
	} {
		c := good()
		mutate(&c)
		if _, err := Render(c); err == nil {
			t.Errorf("%s: rendered", name)
		}
	}
	if _, err := Render(good()); err != nil {
		t.Fatalf("the good configuration: %v", err)
	}
}

// FuzzParseNodes: whatever a node list holds, an accepted one renders, and every node becomes
// exactly one server line per frontend (no line break or directive smuggled in).
func FuzzParseNodes(f *testing.F) {
	f.Add("node1 192.168.1.11\nnode2 fd00::1 # c\n")
	f.Add("a b\n")
	f.Add("n1 10.0.0.1\r\nn2 x.y\n")
	f.Fuzz(func(t *testing.T, in string) {
		nodes, err := ParseNodes(strings.NewReader(in))
		if err != nil {
			return
		}
		b, err := Render(Config{Nodes: nodes, Frontends: BundleFrontends()})
		if err != nil {
			t.Fatalf("accepted nodes %q do not render: %v", nodes, err)
		}
		if n := strings.Count(string(b), "\n    server "); n != 3*len(nodes) {
			t.Fatalf("%d nodes gave %d server lines", len(nodes), n)
		}
	})
}
