package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/alecthomas/kingpin/v2"

	"github.com/opview/opview/exporter/relay"
)

func applySourceFlags(t *testing.T, args ...string) (relay.Config, error) {
	t.Helper()
	app := kingpin.New("test", "")
	cmd := app.Command("serve", "").Default()
	f := addSourceFlags(cmd)
	if _, err := app.Parse(args); err != nil {
		return relay.Config{}, err
	}
	var cfg relay.Config
	err := f.apply(&cfg)
	return cfg, err
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSourceFlags(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "token", "s3cret\n")
	good := writeFile(t, dir, "sources.yml", `sources:
  - name: secure-op
    url: https://192.168.1.20:8443/metrics
    interval: 30s
    authorization:
      credentials_file: token
    tls_config:
      insecure_skip_verify: true
`)
	cfg, err := applySourceFlags(t, "--sources.config-file", good, "--source", "plain-op=http://192.168.1.21:8080/metrics",
		"--sources.allow-cidr", "127.0.0.0/8", "--sources.allow-cidr", "::1", "--sources.deny-cidr", "10.43.0.0/16",
		"--sources.max-api-sources", "3", "--sources.min-api-interval", "1m", "--sources.body-size-limit", "1MiB")
	if err != nil {
		t.Fatal(err)
	}
	secure, ok := cfg.Sources["secure-op"]
	if !ok || cfg.Sources["plain-op"].URL != "http://192.168.1.21:8080/metrics" {
		t.Fatalf("sources: %+v", cfg.Sources)
	}
	if a := secure.HTTPClientConfig.Authorization; a == nil || a.CredentialsFile != filepath.Join(dir, "token") || !secure.HTTPClientConfig.TLSConfig.InsecureSkipVerify {
		t.Errorf("config file source: %+v (a relative file is relative to the config file)", secure.HTTPClientConfig)
	}
	lim := cfg.SourceLimits
	if lim.MaxAPISources != 3 || lim.MinAPIInterval.String() != "1m0s" || lim.BodySizeLimit != 1<<20 ||
		len(lim.AllowCIDRs) != 2 || lim.AllowCIDRs[1] != netip.MustParsePrefix("::1/128") || lim.DenyCIDRs[0] != netip.MustParsePrefix("10.43.0.0/16") {
		t.Errorf("limits: %+v", lim)
	}

	list := &sourceList{}
	list.Set("a=http://op:s3cret@192.168.1.20:8080/metrics")
	list.Set("b=http://192.168.1.21/metrics")
	if got := list.String(); got != "a=http://op:xxxxx@192.168.1.20:8080/metrics b=http://192.168.1.21/metrics" {
		t.Errorf("--source as the status page lists it: %s", got)
	}

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"bad cidr", []string{"--sources.allow-cidr", "localhost"}, `--sources.allow-cidr "localhost": want a CIDR`},
		{"zero", []string{"--sources.max-api-sources", "0"}, "--sources.max-api-sources must be positive"},
		{"bad size", []string{"--sources.body-size-limit", "lots"}, "--sources.body-size-limit: invalid size"},
		{"missing file", []string{"--sources.config-file", filepath.Join(dir, "nope.yml")}, "--sources.config-file: open"},
		{"unknown field", []string{"--sources.config-file", writeFile(t, dir, "unknown.yml", "sources:\n  - name: x\n    url: http://h/metrics\n    intervall: 1m\n")}, `line 4: unknown field "intervall"`},
		{"bad interval", []string{"--sources.config-file", writeFile(t, dir, "interval.yml", "sources:\n  - name: x\n    url: http://h/metrics\n    interval: often\n")}, `"often" is not a duration`},
		{"no name", []string{"--sources.config-file", writeFile(t, dir, "noname.yml", "sources:\n  - url: http://h/metrics\n")}, "source 1 has no name"},
		{"duplicate", []string{"--sources.config-file", good, "--source", "secure-op=http://h/metrics"}, `the name "secure-op" is given twice`},
		{"missing CA", []string{"--sources.config-file", writeFile(t, dir, "ca.yml", "sources:\n  - name: x\n    url: https://h/metrics\n    tls_config:\n      ca_file: missing.pem\n")}, `source "x": unable to`},
		{"timeout too long", []string{"--sources.config-file", writeFile(t, dir, "timeout.yml", "sources:\n  - name: x\n    url: http://h/metrics\n    timeout: 1m\n")}, "at most 10s (the relay's --sources.scrape-timeout)"},
		{"flag", []string{"--source", "x=localhost:8080"}, `--source x=localhost:8080: url "localhost:8080"`},
	} {
		_, err := applySourceFlags(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "sources.plain") || strings.Contains(err.Error(), "sources.Duration") {
			t.Errorf("%s: %v; want an error mentioning %q and no Go type", c.name, err, c.want)
		}
	}
}
