//go:build e2e

package framework

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Bundle is the rendered deploy bundle, as `kubectl apply -k` would send it.
type Bundle struct {
	K3s           []*unstructured.Unstructured // deploy/k3s
	Routes        []*unstructured.Unstructured // deploy/traefik
	TraefikConfig *unstructured.Unstructured   // deploy/traefik/traefik-config.yaml (kube-system)

	PrometheusUser, PrometheusPassword string // the basic-auth account written for the test
	RelayToken                         string // the relay's write token written for the test
	// Root is the copy of the repository's deploy/ and dashboards/ that was rendered.
	Root string
}

// RenderBundle copies deploy/ and dashboards/ to dir, writes the git-ignored secrets that
// `make secret` would write (the user's own files are never read or touched), and renders the
// kustomizations with kustomize's library (krusty), as `kubectl apply -k` does.
func RenderBundle(t testing.TB, dir string) *Bundle {
	t.Helper()
	root := filepath.Join(dir, "repo")
	for _, sub := range []string{"deploy", "dashboards"} {
		if err := copyTree(filepath.Join(RepoRoot(), sub), filepath.Join(root, sub)); err != nil {
			Fatalf(t, "copying %s: %v", sub, err)
		}
	}
	b := &Bundle{PrometheusUser: "e2e", PrometheusPassword: "e2e-" + RandomHex(8), RelayToken: RandomHex(16), Root: root}
	hash, err := bcrypt.GenerateFromPassword([]byte(b.PrometheusPassword), bcrypt.MinCost)
	if err != nil {
		Fatal(t, err)
	}
	secrets := map[string]string{
		"deploy/k3s/secrets/grafana-admin.env":       "admin-user=admin\nadmin-password=" + RandomHex(12) + "\n",
		"deploy/traefik/secrets/prometheus.htpasswd": b.PrometheusUser + ":" + string(hash) + "\n",
		"deploy/k3s/secrets/relay-write-token":       b.RelayToken + "\n",
	}
	for name, content := range secrets {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o600); err != nil {
			Fatal(t, err)
		}
	}
	b.K3s = b.Kustomize(t, "deploy/k3s")
	b.Routes = b.Kustomize(t, "deploy/traefik")
	cfg, err := DecodeYAMLFiles(filepath.Join(root, "deploy/traefik/traefik-config.yaml"))
	if err != nil {
		Fatal(t, err)
	}
	if len(cfg) != 1 || cfg[0].GetKind() != "HelmChartConfig" || cfg[0].GetName() != "traefik" || cfg[0].GetNamespace() != "kube-system" {
		Fatalf(t, "deploy/traefik/traefik-config.yaml: want exactly one HelmChartConfig kube-system/traefik")
	}
	b.TraefikConfig = cfg[0]
	return b
}

// Kustomize renders the kustomization at path in the bundle's copy (after a test changed it, as a
// user enables a component) with kustomize's library (krusty), as `kubectl apply -k` does.
func (b *Bundle) Kustomize(t testing.TB, path string) []*unstructured.Unstructured {
	t.Helper()
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(b.Root, path))
	if err != nil {
		Fatalf(t, "kustomize build %s: %v", path, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range rm.Resources() {
		// Through JSON, so numbers are int64/float64 as in objects decoded from the API.
		j, err := r.MarshalJSON()
		if err != nil {
			Fatalf(t, "kustomize build %s: %v", path, err)
		}
		o := &unstructured.Unstructured{}
		if err := o.UnmarshalJSON(j); err != nil {
			Fatalf(t, "kustomize build %s: %v", path, err)
		}
		objs = append(objs, o)
	}
	return objs
}

func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}

// Find returns the rendered object of that kind and name.
func Find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// Deployment returns a rendered Deployment, typed.
func (b *Bundle) Deployment(t testing.TB, name string) *appsv1.Deployment {
	t.Helper()
	u := Find(b.K3s, "Deployment", name)
	if u == nil {
		Fatalf(t, "the bundle has no Deployment %s", name)
	}
	return AsDeployment(t, u)
}

// AsDeployment converts a rendered Deployment to its type, refusing unknown fields.
func AsDeployment(t testing.TB, u *unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &d, true); err != nil {
		Fatalf(t, "%s: %v", ObjName(u), err)
	}
	return &d
}

// Container returns a container of a pod spec.
func Container(t testing.TB, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	Fatalf(t, "no container %s", name)
	return nil
}

// FlagValue returns the value of --name=value in a container's command line.
func FlagValue(c *corev1.Container, name string) string {
	for _, a := range append(append([]string{}, c.Command...), c.Args...) {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// RouteHost returns the host name of an IngressRoute's first Host(`...`) rule.
func (b *Bundle) RouteHost(t testing.TB, name string) string {
	t.Helper()
	r := Find(b.Routes, "IngressRoute", name)
	if r == nil {
		Fatalf(t, "no IngressRoute %s in deploy/traefik", name)
	}
	routes, _, _ := unstructured.NestedSlice(r.Object, "spec", "routes")
	for _, rt := range routes {
		m, _ := rt.(map[string]any)
		match, _ := m["match"].(string)
		if h := regexp.MustCompile("Host\\(`([^`]+)`\\)").FindStringSubmatch(match); h != nil {
			return h[1]
		}
	}
	Fatalf(t, "IngressRoute %s has no Host rule", name)
	return ""
}

// ImageTag is the tag of an image reference.
func ImageTag(image string) string {
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[i+1:]
	}
	return ""
}

// LocalPath stands in for k3s's local-path provisioner, whose helper pods need an image that
// can't be had here: it makes the local-path StorageClass as k3s ships it and, for every claim of
// that class in objs, a hostPath PersistentVolume bound to it (claimRef), on a world-writable
// folder under dir, as the provisioner makes them. The claims then bind unmodified.
func LocalPath(objs []*unstructured.Unstructured, dir string) ([]*unstructured.Unstructured, error) {
	out := []*unstructured.Unstructured{{Object: map[string]any{
		"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
		"metadata": map[string]any{"name": "local-path", "annotations": map[string]any{
			"storageclass.kubernetes.io/is-default-class": "true"}},
		"provisioner": "rancher.io/local-path", "reclaimPolicy": "Delete", "volumeBindingMode": "WaitForFirstConsumer",
	}}}
	for _, o := range objs {
		if o.GetKind() != "PersistentVolumeClaim" {
			continue
		}
		class, _, _ := unstructured.NestedString(o.Object, "spec", "storageClassName")
		if class != "local-path" {
			continue
		}
		size, _, _ := unstructured.NestedString(o.Object, "spec", "resources", "requests", "storage")
		modes, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "accessModes")
		ns := o.GetNamespace()
		name := fmt.Sprintf("pvc-%s-%s", ns, o.GetName())
		// local-path's folder name: <volume>_<namespace>_<claim>, mode 0777.
		path := filepath.Join(dir, fmt.Sprintf("%s_%s_%s", name, ns, o.GetName()))
		if err := os.MkdirAll(path, 0o777); err != nil {
			return nil, err
		}
		if err := os.Chmod(path, 0o777); err != nil { // past the umask
			return nil, err
		}
		modesAny := make([]any, len(modes))
		for i, m := range modes {
			modesAny[i] = m
		}
		out = append(out, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "PersistentVolume",
			"metadata": map[string]any{"name": name, "annotations": map[string]any{
				"pv.kubernetes.io/provisioned-by": "rancher.io/local-path"}},
			"spec": map[string]any{
				"capacity":                      map[string]any{"storage": size},
				"accessModes":                   modesAny,
				"persistentVolumeReclaimPolicy": "Delete",
				"storageClassName":              "local-path",
				"hostPath":                      map[string]any{"path": path, "type": "DirectoryOrCreate"},
				"claimRef":                      map[string]any{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": ns, "name": o.GetName()},
				"nodeAffinity": map[string]any{"required": map[string]any{"nodeSelectorTerms": []any{map[string]any{
					"matchExpressions": []any{map[string]any{"key": "kubernetes.io/hostname", "operator": "In", "values": []any{NodeName}}}}}}},
			},
		}})
	}
	return out, nil
}
