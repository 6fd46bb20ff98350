package framework

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// goModLines returns the lines of a go.mod with `require`/`replace` prefixes and blocks flattened:
// "k8s.io/kubernetes v1.34.4", "k8s.io/api => k8s.io/api v0.34.4", ...
func goModLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l, _, _ := strings.Cut(sc.Text(), "//")
		l = strings.TrimSpace(l)
		for _, kw := range []string{"require ", "replace ", "exclude ", "tool "} {
			l = strings.TrimPrefix(l, kw)
		}
		if l != "" && l != ")" && !strings.HasSuffix(l, "(") {
			lines = append(lines, l)
		}
	}
	return lines
}

func hasLine(lines []string, want string) bool {
	for _, l := range lines {
		if strings.Join(strings.Fields(l), " ") == want {
			return true
		}
	}
	return false
}

// The wrapper modules must build exactly the versions that versions.env pins (make e2e-tools
// rewrites them; this catches a go.mod edited by hand or a bump not committed).
func TestWrapperModulesFollowVersions(t *testing.T) {
	v, err := LoadVersions()
	if err != nil {
		t.Fatal(err)
	}
	tools := filepath.Dir(VersionsFile())

	kube := goModLines(t, filepath.Join(tools, "kubernetes", "go.mod"))
	if !hasLine(kube, "k8s.io/kubernetes "+v.Kubernetes) {
		t.Errorf("kubernetes/go.mod does not require k8s.io/kubernetes %s (versions.env); run make e2e-tools", v.Kubernetes)
	}
	for _, c := range KubernetesComponents {
		if !hasLine(kube, "k8s.io/kubernetes/cmd/"+c) {
			t.Errorf("kubernetes/go.mod has no tool line for k8s.io/kubernetes/cmd/%s; run make e2e-tools", c)
		}
	}
	staging := "v0." + strings.TrimPrefix(v.Kubernetes, "v1.")
	replaces := 0
	for _, l := range kube {
		if old, repl, ok := strings.Cut(l, "=>"); ok {
			replaces++
			f := strings.Fields(repl)
			if len(f) != 2 || f[0] != strings.TrimSpace(old) || f[1] != staging {
				t.Errorf("kubernetes/go.mod: replace %q, want %s => %s %s", l, strings.TrimSpace(old), strings.TrimSpace(old), staging)
			}
		}
	}
	if replaces < 20 {
		t.Errorf("kubernetes/go.mod replaces %d staging modules, want all of k8s.io/kubernetes's (about 30)", replaces)
	}

	tr := goModLines(t, filepath.Join(tools, "traefik", "go.mod"))
	if !hasLine(tr, "github.com/traefik/traefik/v3 "+v.Traefik) {
		t.Errorf("traefik/go.mod does not require github.com/traefik/traefik/v3 %s (versions.env); run make e2e-tools", v.Traefik)
	}
}

// The e2e runs the Prometheus release that the bundle deploys.
func TestPrometheusVersionMatchesBundle(t *testing.T) {
	v, err := LoadVersions()
	if err != nil {
		t.Fatal(err)
	}
	release, err := PrometheusRelease(v.Prometheus)
	if err != nil {
		t.Fatal(err)
	}
	image := regexp.MustCompile(`prom/prometheus:(v[0-9.]+)`)
	found := 0
	err = filepath.WalkDir(filepath.Join(RepoRoot(), "deploy"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range image.FindAllStringSubmatch(string(b), -1) {
			found++
			if m[1] != release {
				t.Errorf("%s uses prom/prometheus:%s but the e2e builds Prometheus %s (%s in %s)", path, m[1], release, v.Prometheus, VersionsFile())
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Skip("no prom/prometheus image under deploy/ yet")
	}
}

func TestPrometheusRelease(t *testing.T) {
	for in, want := range map[string]string{"v0.316.0": "v3.16.0", "v0.301.2": "v3.1.2", "v0.310.10": "v3.10.10"} {
		if got, err := PrometheusRelease(in); err != nil || got != want {
			t.Errorf("PrometheusRelease(%s) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"v3.16.0", "v0.54.1", "latest"} {
		if got, err := PrometheusRelease(bad); err == nil {
			t.Errorf("PrometheusRelease(%s) = %s, want an error", bad, got)
		}
	}
}
