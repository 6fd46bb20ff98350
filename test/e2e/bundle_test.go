//go:build e2e

package e2e

import (
	"encoding/base64"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
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
}

// RenderBundle copies deploy/ and dashboards/ to dir, writes the git-ignored secrets that
// `make secret` would write (the user's own files are never read or touched), and renders the
// kustomizations with kustomize's library (krusty), as `kubectl apply -k` does.
func RenderBundle(t *testing.T, dir string) *Bundle {
	t.Helper()
	root := filepath.Join(dir, "repo")
	for _, sub := range []string{"deploy", "dashboards"} {
		if err := copyTree(filepath.Join(RepoRoot(), sub), filepath.Join(root, sub)); err != nil {
			t.Fatalf("copying %s: %v", sub, err)
		}
	}
	b := &Bundle{PrometheusUser: "e2e", PrometheusPassword: "e2e-" + randomHex(8), RelayToken: randomHex(16)}
	hash, err := bcrypt.GenerateFromPassword([]byte(b.PrometheusPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"deploy/k3s/secrets/grafana-admin.env":       "admin-user=admin\nadmin-password=" + randomHex(12) + "\n",
		"deploy/traefik/secrets/prometheus.htpasswd": b.PrometheusUser + ":" + string(hash) + "\n",
		"deploy/k3s/secrets/relay-write-token":       b.RelayToken + "\n",
	}
	for name, content := range secrets {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	render := func(path string) []*unstructured.Unstructured {
		rm, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(root, path))
		if err != nil {
			t.Fatalf("kustomize build %s: %v", path, err)
		}
		var objs []*unstructured.Unstructured
		for _, r := range rm.Resources() {
			// Through JSON, so numbers are int64/float64 as in objects decoded from the API.
			j, err := r.MarshalJSON()
			if err != nil {
				t.Fatalf("kustomize build %s: %v", path, err)
			}
			o := &unstructured.Unstructured{}
			if err := o.UnmarshalJSON(j); err != nil {
				t.Fatalf("kustomize build %s: %v", path, err)
			}
			objs = append(objs, o)
		}
		return objs
	}
	b.K3s = render("deploy/k3s")
	b.Routes = render("deploy/traefik")
	cfg, err := DecodeYAMLFiles(filepath.Join(root, "deploy/traefik/traefik-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg) != 1 || cfg[0].GetKind() != "HelmChartConfig" || cfg[0].GetName() != "traefik" || cfg[0].GetNamespace() != "kube-system" {
		t.Fatalf("deploy/traefik/traefik-config.yaml: want exactly one HelmChartConfig kube-system/traefik")
	}
	b.TraefikConfig = cfg[0]
	return b
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

// Find returns the rendered object of that kind and name (name prefix for hashed generated names).
func Find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// Container is how the test plays kubelet for one container of a rendered Deployment: its
// command line with $(VAR) references expanded from its env, and its volume mounts mapped to
// folders of the test (ConfigMap and Secret volumes filled from the rendered objects).
type Container struct {
	Name, Image string
	Args        []string
	Env         []string
	Ports       map[string]int32 // named container ports
	Mounts      map[string]string
}

// PlayKubelet prepares the containers of a rendered Deployment under dir.
func PlayKubelet(t *testing.T, objs []*unstructured.Unstructured, deployment, dir string) (*appsv1.Deployment, map[string]*Container) {
	t.Helper()
	u := Find(objs, "Deployment", deployment)
	if u == nil {
		t.Fatalf("the bundle has no Deployment %s", deployment)
	}
	var d appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, &d, true); err != nil {
		t.Fatalf("Deployment %s: %v", deployment, err)
	}
	volumes := map[string]string{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		vdir := filepath.Join(dir, "volumes", v.Name)
		if err := os.MkdirAll(vdir, 0o755); err != nil {
			t.Fatal(err)
		}
		volumes[v.Name] = vdir
		switch {
		case v.ConfigMap != nil:
			cm := Find(objs, "ConfigMap", v.ConfigMap.Name)
			if cm == nil {
				t.Fatalf("Deployment %s volume %s: no ConfigMap %s in the bundle", deployment, v.Name, v.ConfigMap.Name)
			}
			data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
			for k, val := range data {
				if err := os.WriteFile(filepath.Join(vdir, k), []byte(val), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		case v.Secret != nil:
			sec := Find(objs, "Secret", v.Secret.SecretName)
			if sec == nil {
				t.Fatalf("Deployment %s volume %s: no Secret %s in the bundle", deployment, v.Name, v.Secret.SecretName)
			}
			data, _, _ := unstructured.NestedStringMap(sec.Object, "data")
			for k, val := range data {
				raw, err := base64.StdEncoding.DecodeString(val)
				if err != nil {
					t.Fatalf("Secret %s key %s: %v", v.Secret.SecretName, k, err)
				}
				if err := os.WriteFile(filepath.Join(vdir, k), raw, 0o600); err != nil {
					t.Fatal(err)
				}
			}
		case v.PersistentVolumeClaim != nil, v.EmptyDir != nil:
			// an empty folder, as a fresh claim
		default:
			t.Fatalf("Deployment %s volume %s: the e2e can't play this volume type", deployment, v.Name)
		}
	}
	containers := map[string]*Container{}
	for _, c := range d.Spec.Template.Spec.Containers {
		ct := &Container{Name: c.Name, Image: c.Image, Ports: map[string]int32{}, Mounts: map[string]string{}}
		vars := map[string]string{}
		for _, e := range c.Env {
			switch {
			case e.ValueFrom == nil:
				vars[e.Name] = expandVars(e.Value, vars)
			case e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory":
				// The downward API gives the limit in bytes (divisor 1).
				vars[e.Name] = strconv.FormatInt(c.Resources.Limits.Memory().Value(), 10)
			default:
				t.Fatalf("Deployment %s container %s env %s: this valueFrom is not played by the e2e", deployment, c.Name, e.Name)
			}
			ct.Env = append(ct.Env, e.Name+"="+vars[e.Name])
		}
		for _, m := range c.VolumeMounts {
			ct.Mounts[m.MountPath] = filepath.Join(volumes[m.Name], m.SubPath)
		}
		for _, a := range append(append([]string{}, c.Command...), c.Args...) {
			ct.Args = append(ct.Args, ct.mapPaths(expandVars(a, vars)))
		}
		for _, p := range c.Ports {
			if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
				t.Fatalf("Deployment %s container %s port %s: only TCP is played", deployment, c.Name, p.Name)
			}
			ct.Ports[p.Name] = p.ContainerPort
		}
		containers[c.Name] = ct
	}
	return &d, containers
}

var varRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// expandVars expands $(VAR) as kubelet does (unknown references stay as they are).
func expandVars(s string, vars map[string]string) string {
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if v, ok := vars[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// mapPaths rewrites a path under one of the container's mount points to the test's folder.
func (c *Container) mapPaths(arg string) string {
	mounts := make([]string, 0, len(c.Mounts))
	for m := range c.Mounts {
		mounts = append(mounts, m)
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, m := range mounts {
		if i := strings.Index(arg, m); i >= 0 {
			rest := arg[i+len(m):]
			if rest == "" || strings.HasPrefix(rest, "/") {
				return arg[:i] + c.Mounts[m] + rest
			}
		}
	}
	return arg
}

// ImageTag is the tag of an image reference.
func ImageTag(image string) string {
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		return image[i+1:]
	}
	return ""
}

func requireEqual(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}
