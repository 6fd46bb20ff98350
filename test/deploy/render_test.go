// Package deploy checks the homelab bundle (deploy/) without a cluster: every kustomization
// renders with kustomize's own library, every object decodes strictly into its Kubernetes type or
// validates against its CRD, every pod passes the restricted Pod Security Standard, and the
// pieces (Traefik's entrypoints, Services, Prometheus's and Grafana's configuration, the relay
// image) agree with each other.
package deploy

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository, seen from test/deploy.
var repoRoot = filepath.Join("..", "..")

// Kustomizations a user applies; TestEveryKustomizationRenders also finds any added later.
const (
	k3sDir     = "deploy/k3s"
	traefikDir = "deploy/traefik"
	questdbDir = "deploy/traefik/examples/questdb"
	siteEnv    = "deploy/site/site.env"
)

// Files that `make secret` writes and git ignores; tests render with these stand-ins.
var secretFixtures = map[string]string{
	"deploy/k3s/secrets/grafana-admin.env": "admin-user=admin\nadmin-password=test-only-password\n",
	// htpasswd line for admin / test (apr1), the format `make secret` writes.
	"deploy/traefik/secrets/prometheus.htpasswd": "admin:$apr1$Jk6Uu2cW$1x4K8.6Gf9m3t0yUeEFxO/\n",
	"deploy/k3s/secrets/relay-write-token":       "test-only-relay-token\n",
	// The remote store's password, written by hand (deploy/k3s/components/remote-write/secrets/README.md).
	remoteWriteCredentials: "test-only-remote-write-password\n",
}

// object is one rendered manifest.
type object struct {
	raw map[string]any
}

func (o object) kind() string       { s, _ := o.raw["kind"].(string); return s }
func (o object) apiVersion() string { s, _ := o.raw["apiVersion"].(string); return s }
func (o object) meta() map[string]any {
	m, _ := o.raw["metadata"].(map[string]any)
	return m
}
func (o object) name() string      { s, _ := o.meta()["name"].(string); return s }
func (o object) namespace() string { s, _ := o.meta()["namespace"].(string); return s }
func (o object) id() string {
	return fmt.Sprintf("%s %s %s/%s", o.apiVersion(), o.kind(), o.namespace(), o.name())
}

// bundle is a rendered kustomization.
type bundle struct {
	dir     string
	objects []object
}

// find returns the objects of a kind; a name prefix narrows it (generated names carry a hash).
func (b bundle) find(kind, namePrefix string) []object {
	var out []object
	for _, o := range b.objects {
		if o.kind() == kind && strings.HasPrefix(o.name(), namePrefix) {
			out = append(out, o)
		}
	}
	return out
}

// one returns the single object of a kind and exact name.
func (b bundle) one(t *testing.T, kind, name string) object {
	t.Helper()
	for _, o := range b.objects {
		if o.kind() == kind && o.name() == name {
			return o
		}
	}
	t.Fatalf("%s: no %s %q in the rendered output", b.dir, kind, name)
	return object{}
}

// tree is an in-memory copy of the parts of the repository that kustomizations read, plus the
// secret stand-ins, so tests never depend on (or write) files a developer generated.
func tree(t *testing.T, edit func(fsys filesys.FileSystem)) filesys.FileSystem {
	t.Helper()
	fsys := filesys.MakeFsInMemory()
	for _, top := range []string{"deploy", "dashboards"} {
		root := filepath.Join(repoRoot, top)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(repoRoot, p)
			if d.IsDir() {
				return fsys.MkdirAll("/" + rel)
			}
			if strings.HasPrefix(filepath.Base(p), ".") || isIgnoredSecret(rel) {
				return nil // the developer's own generated secrets never reach the tests
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return fsys.WriteFile("/"+rel, b)
		})
		if err != nil {
			t.Fatalf("copy %s: %v", top, err)
		}
	}
	for p, content := range secretFixtures {
		if err := fsys.WriteFile("/"+p, []byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if edit != nil {
		edit(fsys)
	}
	return fsys
}

func isIgnoredSecret(rel string) bool {
	dir := filepath.ToSlash(filepath.Dir(rel))
	return (dir == "deploy/k3s/secrets" || dir == "deploy/traefik/secrets" || dir == remoteWriteDir+"/secrets") && filepath.Ext(rel) != ".md"
}

// renderIn renders dir (relative to the repository) with kustomize's library, as
// `kubectl apply -k` does.
func renderIn(t *testing.T, fsys filesys.FileSystem, dir string) bundle {
	t.Helper()
	requireDashboards(t)
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(fsys, "/"+dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	out, err := rm.AsYaml()
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	b := bundle{dir: dir}
	for _, doc := range strings.Split(string(out), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("%s: rendered YAML: %v", dir, err)
		}
		b.objects = append(b.objects, object{raw: m})
	}
	return b
}

var (
	renderMu    sync.Mutex
	renderCache = map[string]bundle{}
)

// render renders dir from the repository as it is (secret stand-ins aside), once per test binary.
func render(t *testing.T, dir string) bundle {
	t.Helper()
	renderMu.Lock()
	defer renderMu.Unlock()
	if b, ok := renderCache[dir]; ok {
		return b
	}
	b := renderIn(t, tree(t, nil), dir)
	renderCache[dir] = b
	return b
}

// requireDashboards says clearly when the dashboards' kustomization, which deploy/k3s includes,
// is missing (it is generated by another part of the repository).
func requireDashboards(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(repoRoot, "dashboards", "kustomization.yaml")); err != nil {
		t.Fatalf("dashboards/kustomization.yaml is missing: deploy/k3s includes ../../dashboards for the opview-dashboards ConfigMap (%v)", err)
	}
}

// TestEveryKustomizationRenders finds every kustomization under deploy/ and renders it.
func TestEveryKustomizationRenders(t *testing.T) {
	var dirs []string
	err := filepath.WalkDir(filepath.Join(repoRoot, "deploy"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "kustomization.yaml" {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var k types.Kustomization
		if err := yaml.UnmarshalStrict(b, &k); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if k.Kind == types.ComponentKind {
			return nil // rendered as part of the kustomizations that include it
		}
		rel, _ := filepath.Rel(repoRoot, filepath.Dir(p))
		dirs = append(dirs, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(dirs)
	for _, want := range []string{k3sDir, traefikDir, questdbDir} {
		if !contains(dirs, want) {
			t.Errorf("kustomization %s not found (have %v)", want, dirs)
		}
	}
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			b := render(t, dir)
			if len(b.objects) == 0 {
				t.Fatalf("%s renders no objects", dir)
			}
			seen := map[string]bool{}
			for _, o := range b.objects {
				if o.kind() == "" || o.apiVersion() == "" || o.name() == "" {
					t.Errorf("%s: object without kind, apiVersion or name: %v", dir, o.raw)
				}
				if seen[o.id()] {
					t.Errorf("%s: %s twice", dir, o.id())
				}
				seen[o.id()] = true
				if o.kind() == "ConfigMap" && strings.HasPrefix(o.name(), "opview-site") {
					t.Errorf("%s: the site settings (local-config) leak into the output", dir)
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// lookup walks a decoded YAML/JSON value along keys (string for maps, int for lists).
func lookup(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}
