package deploy

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// The HelmChartConfig files users copy into /var/lib/rancher/k3s/server/manifests.
var helmChartConfigFiles = []string{
	"deploy/traefik/traefik-config.yaml",
	"deploy/traefik/examples/questdb/traefik-config.yaml",
	haproxyHelmChartConfig,
}

// Keys the Traefik chart reads under ports.<name> (chart v27 and later, whose `expose` is a map
// keyed by Service name: `expose: {default: true}`). k3s strips the chart's values.schema.json,
// so an unknown or misplaced key is ignored without a word instead of failing the install: this
// list is the only check.
var chartPortKeys = map[string]bool{
	"port": true, "containerPort": true, "hostPort": true, "hostIP": true, "expose": true,
	"exposedPort": true, "targetPort": true, "protocol": true, "nodePort": true, "appProtocol": true,
	"asDefault": true, "forwardedHeaders": true, "proxyProtocol": true, "http": true,
	"transport": true, "observability": true,
}

// Keys the chart reads under ports.<name>.proxyProtocol and ports.<name>.forwardedHeaders.
var chartTrustKeys = map[string]map[string]bool{
	"proxyProtocol":    {"trustedIPs": true, "insecure": true},
	"forwardedHeaders": {"trustedIPs": true, "insecure": true, "connection": true, "notAppendXForwardedFor": true},
}

// The chart's own entrypoints and their container ports; an added entrypoint must not reuse them.
// A HelmChartConfig may only add trust settings (chartTrustKeys) to them.
var chartDefaultPorts = map[string]int{"web": 8000, "websecure": 8443, "traefik": 8080, "metrics": 9100}

// chartPort is ports.<name> of the chart's values, as far as the bundle uses it.
type chartPort struct {
	Port        int            `json:"port"`
	ExposedPort int            `json:"exposedPort"`
	Protocol    string         `json:"protocol"`
	Expose      map[string]any `json:"expose"`
}

// helmChartValues reads a HelmChartConfig file: it names k3s's Traefik and its valuesContent
// parses strictly.
func helmChartValues(t *testing.T, file string) map[string]any {
	t.Helper()
	o := readObject(t, file)
	if o.apiVersion() != "helm.cattle.io/v1" || o.kind() != "HelmChartConfig" {
		t.Fatalf("%s: %s %s, want helm.cattle.io/v1 HelmChartConfig", file, o.apiVersion(), o.kind())
	}
	if o.name() != "traefik" || o.namespace() != "kube-system" {
		t.Fatalf("%s: %s/%s: helm-controller only reads kube-system/traefik for k3s's Traefik chart", file, o.namespace(), o.name())
	}
	content, ok := lookup(o.raw, "spec", "valuesContent").(string)
	if !ok || content == "" {
		t.Fatalf("%s: spec.valuesContent missing or not a string", file)
	}
	var values map[string]any
	if err := yaml.UnmarshalStrict([]byte(content), &values); err != nil {
		t.Fatalf("%s: valuesContent: %v", file, err)
	}
	return values
}

// helmChartPorts reads a HelmChartConfig file and checks its valuesContent: it parses, names
// k3s's Traefik, sets nothing but ports (and the values named in otherValues), and every port
// it adds is one the chart renders into an exposed entrypoint. Trust settings on the chart's own
// entrypoints are checked (their keys), not returned.
func helmChartPorts(t *testing.T, file string, otherValues ...string) map[string]chartPort {
	t.Helper()
	values := helmChartValues(t, file)
	for k := range values {
		if k != "ports" && !contains(otherValues, k) {
			t.Errorf("%s: valuesContent sets %q: the bundle only adds ports (change this test if that is intended)", file, k)
		}
	}
	rawPorts, ok := values["ports"].(map[string]any)
	if !ok || len(rawPorts) == 0 {
		t.Fatalf("%s: valuesContent has no ports map", file)
	}
	ports := map[string]chartPort{}
	for name, raw := range rawPorts {
		where := fmt.Sprintf("%s: ports.%s", file, name)
		entry, ok := raw.(map[string]any)
		if !ok {
			t.Errorf("%s: not a map", where)
			continue
		}
		for k := range entry {
			if !chartPortKeys[k] {
				t.Errorf("%s.%s: not a key of the chart's ports (ignored silently by k3s)", where, k)
			}
			if known, ok := chartTrustKeys[k]; ok {
				sub, isMap := entry[k].(map[string]any)
				if !isMap {
					t.Errorf("%s.%s: not a map", where, k)
				}
				for sk := range sub {
					if !known[sk] {
						t.Errorf("%s.%s.%s: not a key the chart reads (ignored silently by k3s)", where, k, sk)
					}
				}
			}
		}
		if _, own := chartDefaultPorts[name]; own {
			for k := range entry {
				if _, trust := chartTrustKeys[k]; !trust {
					t.Errorf("%s.%s: redefines one of the chart's own entrypoints (only proxyProtocol and forwardedHeaders may be added)", where, k)
				}
			}
			continue
		}
		if _, isBool := entry["expose"].(bool); isBool {
			t.Errorf("%s.expose is a bool: since chart v27 it is a map keyed by Service name (expose: {default: true}); a bool breaks the chart render", where)
		}
		b, _ := yaml.Marshal(entry)
		var p chartPort
		if err := yaml.Unmarshal(b, &p); err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		if p.Expose["default"] != true {
			t.Errorf("%s.expose = %v, want {default: true} so the port reaches the Service and ServiceLB", where, p.Expose)
		}
		if name != strings.ToLower(name) || len(name) > 15 {
			t.Errorf("%s: the chart lower-cases entrypoint names and cuts them to 15 characters: use a short lower-case name", where)
		}
		if p.Port <= 1024 {
			t.Errorf("%s.port = %d: Traefik runs unprivileged, the container port must be above 1024", where, p.Port)
		}
		for def, port := range chartDefaultPorts {
			if p.Port == port || p.ExposedPort == port {
				t.Errorf("%s: port %d/%d clashes with the chart's %s entrypoint (%d)", where, p.Port, p.ExposedPort, def, port)
			}
		}
		if p.ExposedPort == 80 || p.ExposedPort == 443 {
			t.Errorf("%s.exposedPort = %d: taken by web/websecure on the Service", where, p.ExposedPort)
		}
		if p.ExposedPort == 0 {
			t.Errorf("%s.exposedPort unset: set it so the Service port is explicit", where)
		}
		if p.Protocol != "TCP" {
			t.Errorf("%s.protocol = %q, want TCP", where, p.Protocol)
		}
		ports[name] = p
	}
	return ports
}

var (
	hostRule    = regexp.MustCompile("^Host\\(`([a-z0-9.-]+)`\\)$")
	hostSNIStar = "HostSNI(`*`)"
)

// TestTraefikEntrypointsAgree: the HelmChartConfig adds the relay entrypoint in the chart's map
// form, and its ports, the IngressRouteTCP entrypoints and the relay Service agree.
func TestTraefikEntrypointsAgree(t *testing.T) {
	main := helmChartPorts(t, helmChartConfigFiles[0])
	relay, ok := main["relay"]
	if !ok {
		t.Fatalf("%s: no ports.relay entrypoint", helmChartConfigFiles[0])
	}
	k3s := render(t, k3sDir)
	svc := k3s.one(t, "Service", "relay")
	svcPort := int(lookup(svc.raw, "spec", "ports", 0, "port").(float64))
	if relay.ExposedPort != svcPort || relay.Port != svcPort {
		t.Errorf("relay entrypoint port %d / exposedPort %d, relay Service port %d: keep them the same (9091, the relay's)", relay.Port, relay.ExposedPort, svcPort)
	}

	// Every TCP route's entrypoints are entrypoints the HelmChartConfig adds, and every added
	// entrypoint has a route.
	check := func(t *testing.T, b bundle, ports map[string]chartPort, mustRoute ...string) {
		used := map[string]bool{}
		for _, r := range b.find("IngressRouteTCP", "") {
			for _, ep := range lookup(r.raw, "spec", "entryPoints").([]any) {
				name := ep.(string)
				used[name] = true
				if _, ok := ports[name]; !ok {
					t.Errorf("%s: IngressRouteTCP %s uses entrypoint %q, which the HelmChartConfig does not define", b.dir, r.name(), name)
				}
			}
			for i, route := range lookup(r.raw, "spec", "routes").([]any) {
				if m := lookup(route, "match"); m != hostSNIStar {
					t.Errorf("%s: IngressRouteTCP %s route %d match %v: plain TCP needs HostSNI(`*`) (named SNI needs TLS)", b.dir, r.name(), i, m)
				}
			}
			if lookup(r.raw, "spec", "tls") != nil {
				t.Errorf("%s: IngressRouteTCP %s has a tls block: the relay's pushes are plain TCP", b.dir, r.name())
			}
		}
		for _, name := range mustRoute {
			if !used[name] {
				t.Errorf("%s: entrypoint %q has no IngressRouteTCP", b.dir, name)
			}
		}
	}
	routes := render(t, traefikDir)
	check(t, routes, main, "relay")
	tcp := routes.one(t, "IngressRouteTCP", "relay")
	if got := lookup(tcp.raw, "spec", "routes", 0, "services", 0, "name"); got != "relay" {
		t.Errorf("IngressRouteTCP relay routes to %v, want the relay Service", got)
	}
	if got := lookup(tcp.raw, "spec", "routes", 0, "services", 0, "port"); got != float64(svcPort) {
		t.Errorf("IngressRouteTCP relay routes to port %v, the relay Service listens on %d", got, svcPort)
	}

	// The QuestDB variant replaces the main file on the node: it keeps the relay entrypoint as is.
	q := helmChartPorts(t, helmChartConfigFiles[1])
	if fmt.Sprintf("%+v", q["relay"]) != fmt.Sprintf("%+v", relay) {
		t.Errorf("%s: ports.relay = %+v, want the main file's %+v (only one HelmChartConfig traefik exists)", helmChartConfigFiles[1], q["relay"], relay)
	}
	qroutes := render(t, questdbDir)
	check(t, qroutes, q, "pgwire", "ilp") // relay: routed by deploy/traefik
	want := map[string]int{"pgwire": 8812, "ilp": 9009}
	for _, r := range qroutes.find("IngressRouteTCP", "") {
		ep := lookup(r.raw, "spec", "entryPoints", 0).(string)
		port := int(lookup(r.raw, "spec", "routes", 0, "services", 0, "port").(float64))
		if want[ep] != port || q[ep].ExposedPort != port {
			t.Errorf("%s: IngressRouteTCP %s: entrypoint %s (exposed %d) routes to QuestDB port %d, want %d", questdbDir, r.name(), ep, q[ep].ExposedPort, port, want[ep])
		}
		delete(want, ep)
	}
	if len(want) > 0 {
		t.Errorf("%s: no IngressRouteTCP for %v", questdbDir, want)
	}
}

// TestIngressRoutes: Grafana and Prometheus are served on web and websecure by host, Prometheus
// behind basic auth whose Secret is generated alongside, and each route reaches a Service port
// that exists in deploy/k3s.
func TestIngressRoutes(t *testing.T) {
	routes := render(t, traefikDir)
	k3s := render(t, k3sDir)
	site := readSite(t)
	want := map[string]struct {
		host    string
		service string
		auth    bool
	}{
		"grafana":    {site["GRAFANA_HOST"], "grafana", false},
		"prometheus": {site["PROMETHEUS_HOST"], "prometheus", true},
	}
	for name, w := range want {
		r := routes.one(t, "IngressRoute", name)
		eps := fmt.Sprint(lookup(r.raw, "spec", "entryPoints"))
		if eps != "[web websecure]" {
			t.Errorf("IngressRoute %s entryPoints %s, want [web websecure]", name, eps)
		}
		rules := lookup(r.raw, "spec", "routes").([]any)
		if len(rules) != 1 {
			t.Fatalf("IngressRoute %s: %d routes, want 1", name, len(rules))
		}
		m := hostRule.FindStringSubmatch(fmt.Sprint(lookup(rules[0], "match")))
		if m == nil || m[1] != w.host {
			t.Errorf("IngressRoute %s match %v, want Host(`%s`) (from %s)", name, lookup(rules[0], "match"), w.host, siteEnv)
		}
		svcName := lookup(rules[0], "services", 0, "name")
		svcPort := lookup(rules[0], "services", 0, "port")
		if svcName != w.service {
			t.Errorf("IngressRoute %s routes to %v, want %s", name, svcName, w.service)
		}
		svc := k3s.one(t, "Service", w.service)
		if p := lookup(svc.raw, "spec", "ports", 0, "port"); p != svcPort {
			t.Errorf("IngressRoute %s routes to port %v, Service %s listens on %v", name, svcPort, w.service, p)
		}
		mws := lookup(rules[0], "middlewares")
		if !w.auth {
			if mws != nil {
				t.Errorf("IngressRoute %s has middlewares %v", name, mws)
			}
			continue
		}
		mwName, _ := lookup(mws, 0, "name").(string)
		mw := routes.one(t, "Middleware", mwName)
		secretName, _ := lookup(mw.raw, "spec", "basicAuth", "secret").(string)
		secret := routes.one(t, "Secret", secretName) // kustomize wrote the hash-suffixed name in
		if lookup(secret.raw, "data", "users") == nil {
			t.Errorf("Secret %s has no users key (Traefik's basicAuth reads users)", secretName)
		}
	}
}

// TestHostnamesSetInOnePlace: changing deploy/site/site.env changes every hostname the bundle uses
// (routes, Grafana's root URL, Prometheus's external URL) and leaves no trace of the old ones.
func TestHostnamesSetInOnePlace(t *testing.T) {
	site := readSite(t)
	fsys := tree(t, func(fsys filesys.FileSystem) {
		env := "GRAFANA_HOST=g.example.test\nPROMETHEUS_HOST=p.example.test\nQUESTDB_HOST=q.example.test\n"
		if err := fsys.WriteFile("/"+siteEnv, []byte(env)); err != nil {
			t.Fatal(err)
		}
	})
	var all []string
	for _, dir := range []string{k3sDir, traefikDir, questdbDir} {
		b := renderIn(t, fsys, dir)
		out, _ := yaml.Marshal(b.objects)
		for _, o := range b.objects {
			ob, _ := yaml.Marshal(o.raw)
			all = append(all, string(ob))
		}
		for _, old := range site {
			if strings.Contains(string(out), old) {
				t.Errorf("%s still contains %q after site.env changed: it is not read from site.env", dir, old)
			}
		}
	}
	joined := strings.Join(all, "\n")
	for _, want := range []string{
		"Host(`g.example.test`)", "Host(`p.example.test`)", "Host(`q.example.test`)",
		"value: http://g.example.test/", "value: g.example.test", "value: http://p.example.test/",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("rendered bundle lacks %q after site.env changed", want)
		}
	}
}

// readSite parses deploy/site/site.env.
func readSite(t *testing.T) map[string]string {
	t.Helper()
	fsys := tree(t, nil)
	b, err := fsys.ReadFile("/" + siteEnv)
	if err != nil {
		t.Fatal(err)
	}
	site := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: %q is not KEY=value", siteEnv, line)
		}
		site[k] = v
	}
	keys := make([]string, 0, len(site))
	for k := range site {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if fmt.Sprint(keys) != "[GRAFANA_HOST PROMETHEUS_HOST QUESTDB_HOST]" {
		t.Fatalf("%s keys %v", siteEnv, keys)
	}
	return site
}
