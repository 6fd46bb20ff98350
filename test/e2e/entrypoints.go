package e2e

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// EntryPoint is one entry of the Traefik chart's `ports` values, as far as the e2e needs it.
type EntryPoint struct {
	Name        string
	Port        int    // the container port: what --entryPoints.<name>.address listens on
	ExposedPort int    // the Service (ServiceLB) port, when exposed
	Protocol    string // tcp or udp
	Exposed     bool   // expose.default
	TLS         bool   // tls.enabled (v38) or http.tls.enabled (v39+)
}

// chartDefaultPorts are the Traefik chart's default `ports` (chart v34 to v40, the ones k3s ships
// with Traefik v3): web and websecure exposed on 80/443, traefik (ping, dashboard) and metrics not.
const chartDefaultPorts = `
ports:
  traefik: {port: 8080, expose: {default: false}, exposedPort: 8080, protocol: TCP}
  metrics: {port: 9100, expose: {default: false}, exposedPort: 9100, protocol: TCP}
  web: {port: 8000, expose: {default: true}, exposedPort: 80, protocol: TCP}
  websecure: {port: 8443, expose: {default: true}, exposedPort: 443, protocol: TCP, tls: {enabled: true}}
`

// deepMerge merges src into dst as Helm merges values: maps recursively, anything else replaced.
func deepMerge(dst, src map[string]any) {
	for k, sv := range src {
		sm, sIsMap := sv.(map[string]any)
		dm, dIsMap := dst[k].(map[string]any)
		if sIsMap && dIsMap {
			deepMerge(dm, sm)
			continue
		}
		dst[k] = sv
	}
}

// EntryPointsFromValues renders the entrypoints of the chart's default ports overlaid with the
// `ports` of a HelmChartConfig's valuesContent, as the chart does.
func EntryPointsFromValues(valuesContent string) ([]EntryPoint, error) {
	values := map[string]any{}
	if err := yaml.Unmarshal([]byte(chartDefaultPorts), &values); err != nil {
		return nil, err
	}
	user := map[string]any{}
	if err := yaml.Unmarshal([]byte(valuesContent), &user); err != nil {
		return nil, fmt.Errorf("valuesContent: %w", err)
	}
	deepMerge(values, user)
	ports, _ := values["ports"].(map[string]any)
	var eps []EntryPoint
	for _, name := range slices.Sorted(maps.Keys(ports)) {
		p, ok := ports[name].(map[string]any)
		if !ok {
			if ports[name] == nil { // `name: null` removes a default port
				continue
			}
			return nil, fmt.Errorf("valuesContent: ports.%s is not a map", name)
		}
		num := func(key string) int {
			f, _ := p[key].(float64)
			return int(f)
		}
		ep := EntryPoint{Name: strings.ToLower(name), Port: num("port"), ExposedPort: num("exposedPort"), Protocol: "tcp"}
		if len(ep.Name) > 15 {
			ep.Name = ep.Name[:15]
		}
		if ep.Port == 0 {
			return nil, fmt.Errorf("valuesContent: ports.%s has no port", name)
		}
		if ep.ExposedPort == 0 {
			ep.ExposedPort = ep.Port
		}
		if proto, ok := p["protocol"].(string); ok && proto != "" {
			ep.Protocol = strings.ToLower(proto)
		}
		if e, ok := p["expose"].(map[string]any); ok {
			ep.Exposed, _ = e["default"].(bool)
		} else if _, isBool := p["expose"].(bool); isBool {
			return nil, fmt.Errorf("valuesContent: ports.%s.expose is a bool; the chart (v27+) wants a map such as {default: true}", name)
		}
		tlsOf := func(m map[string]any) bool {
			t, _ := m["tls"].(map[string]any)
			on, _ := t["enabled"].(bool)
			return on
		}
		http, _ := p["http"].(map[string]any)
		ep.TLS = tlsOf(p) || tlsOf(http)
		eps = append(eps, ep)
	}
	return eps, nil
}
