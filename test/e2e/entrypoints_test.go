package e2e

import (
	"strings"
	"testing"
)

func TestEntryPointsFromValues(t *testing.T) {
	eps, err := EntryPointsFromValues(`
ports:
  relay: {port: 9091, exposedPort: 9091, protocol: TCP, expose: {default: true}}
  web: {port: 8081}
  metrics: null
  aVeryLongEntrypointName: {port: 9200, protocol: UDP}
`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]EntryPoint{}
	for _, ep := range eps {
		got[ep.Name] = ep
	}
	want := map[string]EntryPoint{
		"averylongentryp": {Name: "averylongentryp", Port: 9200, ExposedPort: 9200, Protocol: "udp"},
		"relay":           {Name: "relay", Port: 9091, ExposedPort: 9091, Protocol: "tcp", Exposed: true},
		"traefik":         {Name: "traefik", Port: 8080, ExposedPort: 8080, Protocol: "tcp"},
		"web":             {Name: "web", Port: 8081, ExposedPort: 80, Protocol: "tcp", Exposed: true}, // merged with the default
		"websecure":       {Name: "websecure", Port: 8443, ExposedPort: 443, Protocol: "tcp", Exposed: true, TLS: true},
	}
	if len(got) != len(want) {
		t.Errorf("got entrypoints %v, want %v", got, want)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("entrypoint %s: got %+v, want %+v", name, got[name], w)
		}
	}
}

func TestEntryPointsFromValuesRejects(t *testing.T) {
	for values, want := range map[string]string{
		"ports: {relay: {port: 9091, expose: true}}": "expose is a bool",
		"ports: {relay: {exposedPort: 9091}}":        "has no port",
		"ports: {relay: 9091}":                       "not a map",
		"ports: [":                                   "valuesContent",
	} {
		_, err := EntryPointsFromValues(values)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error containing %q", values, err, want)
		}
	}
}
