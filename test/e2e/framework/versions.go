// Package framework runs a real single-node Kubernetes cluster for opview's end-to-end test, inside
// network namespaces that the test creates: kine, kube-apiserver, kube-controller-manager,
// kube-scheduler, containerd, kubelet and kube-proxy as processes, the bundle's pods as containers
// (cluster.go, node.go, images.go, bundle.go, traefik.go), and the helpers to drive and query them
// (netns.go, procs.go, prometheus.go, grafana.go).
//
// Everything but this file is behind the build tag e2e (`make e2e`); this file, shared with the
// fast checks that `make test` runs, reads the pinned versions that `make e2e-tools` builds.
package framework

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// Versions are the pinned versions from tools/versions.env, the one place that defines them.
type Versions struct {
	Kubernetes     string // E2E_KUBERNETES_VERSION, k8s.io/kubernetes (kube-apiserver, kubelet, ...)
	Kine           string // E2E_KINE_VERSION
	Traefik        string // E2E_TRAEFIK_VERSION
	TraefikChart   string // E2E_TRAEFIK_CHART_VERSION, module github.com/traefik/traefik-helm-chart
	Prometheus     string // E2E_PROMETHEUS_VERSION, module version v0.3XX.Y = Prometheus 3.XX.Y
	HelmController string // E2E_HELM_CONTROLLER_VERSION, source of the HelmChart(Config) CRDs
}

// RepoRoot is the repository's top folder (this file is test/e2e/framework/versions.go).
func RepoRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("e2e: can't locate versions.go")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// VersionsFile is the path of tools/versions.env.
func VersionsFile() string { return filepath.Join(RepoRoot(), "test", "e2e", "tools", "versions.env") }

// LoadVersions parses tools/versions.env (NAME=value lines, # comments) and fails on a missing,
// empty or unknown name, so the Makefile and this code can't silently disagree.
func LoadVersions() (Versions, error) {
	path := VersionsFile()
	f, err := os.Open(path)
	if err != nil {
		return Versions{}, err
	}
	defer func() { _ = f.Close() }()
	var v Versions
	fields := map[string]*string{
		"E2E_KUBERNETES_VERSION":      &v.Kubernetes,
		"E2E_KINE_VERSION":            &v.Kine,
		"E2E_TRAEFIK_VERSION":         &v.Traefik,
		"E2E_TRAEFIK_CHART_VERSION":   &v.TraefikChart,
		"E2E_PROMETHEUS_VERSION":      &v.Prometheus,
		"E2E_HELM_CONTROLLER_VERSION": &v.HelmController,
	}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			return Versions{}, fmt.Errorf("%s:%d: want NAME=value, got %q", path, n, line)
		}
		dst, known := fields[strings.TrimSpace(name)]
		if !known {
			return Versions{}, fmt.Errorf("%s:%d: unknown name %q", path, n, name)
		}
		*dst = strings.TrimSpace(value)
	}
	if err := sc.Err(); err != nil {
		return Versions{}, err
	}
	for name, dst := range fields {
		if !strings.HasPrefix(*dst, "v") {
			return Versions{}, fmt.Errorf("%s: %s is missing or not a version (%q)", path, name, *dst)
		}
	}
	return v, nil
}

// PrometheusRelease turns the module version v0.316.0 into the release v3.16.0 (the image tag).
func PrometheusRelease(module string) (string, error) {
	var minor, patch int
	if _, err := fmt.Sscanf(module, "v0.3%d.%d", &minor, &patch); err != nil || !strings.HasPrefix(module, "v0.3") {
		return "", fmt.Errorf("prometheus module version %q is not v0.3XX.Y", module)
	}
	return fmt.Sprintf("v3.%d.%d", minor, patch), nil
}

// Binary is the path of a component built by `make e2e-tools`:
// .cache/e2e/bin/<name>-<version>/<exe> (tools/build.sh writes there).
func Binary(name, version, exe string) string {
	return filepath.Join(RepoRoot(), ".cache", "e2e", "bin", name+"-"+version, exe)
}

// KubernetesComponents are the binaries that tools/build.sh builds from k8s.io/kubernetes (the
// wrapper module tools/kubernetes), each into .cache/e2e/bin/<name>-<E2E_KUBERNETES_VERSION>/.
var KubernetesComponents = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"}
