package deploy

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/opview/opview/internal/remotewrite"
)

// The remote-write component and what it is made of.
const (
	remoteWriteDir         = "deploy/k3s/components/remote-write"
	remoteWriteSettings    = remoteWriteDir + "/remote-write.yml"
	remoteWriteConfig      = remoteWriteDir + "/prometheus.yml"
	remoteWriteCredentials = remoteWriteDir + "/secrets/credentials"
	basePrometheusConfig   = "deploy/k3s/prometheus/prometheus.yml"
)

var (
	remoteWriteOnce   sync.Once
	remoteWriteBundle bundle
)

// renderRemoteWrite renders deploy/k3s with the remote-write component enabled the way
// docs/remote-write.md says: listed under components in deploy/k3s/kustomization.yaml.
func renderRemoteWrite(t *testing.T) bundle {
	t.Helper()
	remoteWriteOnce.Do(func() {
		fsys := tree(t, func(fsys filesys.FileSystem) {
			p := "/" + k3sDir + "/kustomization.yaml"
			b, err := fsys.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			var k types.Kustomization
			if err := yaml.UnmarshalStrict(b, &k); err != nil {
				t.Fatal(err)
			}
			rel, _ := filepath.Rel(k3sDir, remoteWriteDir)
			k.Components = append(k.Components, rel)
			out, err := yaml.Marshal(k)
			if err != nil {
				t.Fatal(err)
			}
			if err := fsys.WriteFile(p, out); err != nil {
				t.Fatal(err)
			}
		})
		remoteWriteBundle = renderIn(t, fsys, k3sDir)
		remoteWriteBundle.dir = k3sDir + " + " + remoteWriteDir
	})
	if remoteWriteBundle.objects == nil {
		t.Fatal("the remote-write variant did not render")
	}
	return remoteWriteBundle
}

// TestRemoteWriteComponent: with the component, the bundle still passes every check of the base
// (strict decoding, the restricted pod standard, Prometheus's own loader and the scrape jobs), its
// Prometheus configuration is the base one plus external_labels and remote_write, and the
// store's secret comes from a file of a mounted Secret, never from the ConfigMap.
func TestRemoteWriteComponent(t *testing.T) {
	b := renderRemoteWrite(t) // decoded strictly by TestObjectsDecodeStrictly
	if n := len(b.find("ConfigMap", "prometheus-config")); n != 1 {
		t.Errorf("%d prometheus-config ConfigMaps, want the component's to replace the base's", n)
	}
	for _, d := range typed[*appsv1.Deployment](t, b, "Deployment") {
		pod := d.Spec.Template
		if res := restricted(t, &pod.ObjectMeta, &pod.Spec); !res.Allowed {
			t.Errorf("%s: Deployment %s breaks restricted: %s (%s)", b.dir, d.Name, res.ForbiddenReason(), strings.Join(res.ForbiddenDetails, "; "))
		}
	}

	cfg := checkPrometheusConfig(t, b)
	base := checkPrometheusConfig(t, render(t, k3sDir))

	// The base configuration, plus external_labels and remote_write, nothing else.
	if cfg.GlobalConfig.ExternalLabels.Get("cluster") == "" {
		t.Errorf("no cluster external label: the store could not tell this cluster's series from others' (have %s)", cfg.GlobalConfig.ExternalLabels)
	}
	if len(cfg.RemoteWriteConfigs) == 0 {
		t.Fatal("the component's configuration has no remote_write")
	}
	stripped := *cfg
	stripped.RemoteWriteConfigs = nil
	stripped.GlobalConfig.ExternalLabels = base.GlobalConfig.ExternalLabels
	if stripped.String() != base.String() {
		t.Errorf("the component's prometheus.yml differs from the base one beyond remote_write and external_labels: run `make remote-write`\n--- component\n%s\n--- base\n%s", stripped.String(), base.String())
	}

	// Secrets come from files of the mounted Secret.
	d := deployment(t, b, "prometheus")
	prom := container(t, d, "prometheus")
	for i, rw := range cfg.RemoteWriteConfigs {
		where := fmt.Sprintf("remote_write[%d] %s", i, rw.URL)
		if !strings.HasSuffix(rw.URL.Path, "/write") && !strings.HasSuffix(rw.URL.Path, "/push") && !strings.HasSuffix(rw.URL.Path, "/receive") {
			t.Errorf("%s: not a remote write path (…/api/v1/write, /push or /receive)", where)
		}
		hc := rw.HTTPClientConfig
		var files []string
		if ba := hc.BasicAuth; ba != nil {
			if ba.Password != "" || ba.PasswordFile == "" {
				t.Errorf("%s: basic_auth.password inline in the ConfigMap: use password_file", where)
			} else {
				files = append(files, ba.PasswordFile)
			}
		}
		if au := hc.Authorization; au != nil {
			if au.Credentials != "" || au.CredentialsFile == "" {
				t.Errorf("%s: authorization.credentials inline in the ConfigMap: use credentials_file", where)
			} else {
				files = append(files, au.CredentialsFile)
			}
		}
		if len(files) == 0 {
			t.Errorf("%s: no basic_auth or authorization: the example must show where the secret goes", where)
		}
		for _, f := range files {
			secret := mountedSecret(t, b, d, prom, path.Dir(f))
			if _, ok := secret[path.Base(f)]; !ok {
				t.Errorf("%s reads %s, but the Secret mounted at %s has no key %s (has %v)", where, f, path.Dir(f), path.Base(f), keys(secret))
			}
		}
		q := rw.QueueConfig
		if q.Capacity <= 0 || q.MaxShards <= 0 || q.MaxSamplesPerSend <= 0 {
			t.Errorf("%s: queue_config %+v: set capacity, max_shards and max_samples_per_send so memory stays bounded", where, q)
		}
	}

	// The committed file is the merge of its two sources.
	read := func(p string) []byte {
		b, err := os.ReadFile(filepath.Join(repoRoot, p))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	got := read(remoteWriteConfig)
	header, _, _ := strings.Cut(string(got), "# Prometheus configuration")
	want, err := remotewrite.Merge(read(basePrometheusConfig), read(remoteWriteSettings), header)
	if err != nil {
		t.Fatalf("%s: %v", remoteWriteSettings, err)
	}
	if !bytes.Equal(got, want) || !strings.Contains(header, "make remote-write") {
		t.Errorf("%s is not the merge of %s and %s: run `make remote-write` and commit", remoteWriteConfig, basePrometheusConfig, remoteWriteSettings)
	}

}

// mountedSecret returns the data keys of the Secret that c mounts at dir, as rendered (so a
// reference kustomize failed to rewrite to the hash-suffixed name shows up).
func mountedSecret(t *testing.T, b bundle, d *appsv1.Deployment, c corev1.Container, dir string) map[string]any {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath != dir || m.SubPath != "" {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				s := b.one(t, "Secret", v.Secret.SecretName)
				data, _ := s.raw["data"].(map[string]any)
				return data
			}
		}
	}
	t.Fatalf("Deployment %s container %s mounts no Secret at %s", d.Name, c.Name, dir)
	return nil
}
