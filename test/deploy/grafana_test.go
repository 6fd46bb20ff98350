package deploy

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// Grafana's file provisioning formats (apiVersion 1), the fields the bundle may use; decoding is
// strict, so a misspelt key fails here instead of being ignored by Grafana.
type datasourcesFile struct {
	APIVersion  int `json:"apiVersion"`
	Datasources []struct {
		Name      string         `json:"name"`
		UID       string         `json:"uid"`
		Type      string         `json:"type"`
		Access    string         `json:"access"`
		URL       string         `json:"url"`
		OrgID     int            `json:"orgId,omitempty"`
		IsDefault bool           `json:"isDefault"`
		Editable  bool           `json:"editable"`
		JSONData  map[string]any `json:"jsonData,omitempty"`
	} `json:"datasources"`
}

type dashboardsFile struct {
	APIVersion int `json:"apiVersion"`
	Providers  []struct {
		Name                  string `json:"name"`
		OrgID                 int    `json:"orgId"`
		Folder                string `json:"folder"`
		FolderUID             string `json:"folderUid"`
		Type                  string `json:"type"`
		DisableDeletion       bool   `json:"disableDeletion"`
		AllowUIUpdates        bool   `json:"allowUiUpdates"`
		UpdateIntervalSeconds int    `json:"updateIntervalSeconds"`
		Options               struct {
			Path                      string `json:"path"`
			FoldersFromFilesStructure bool   `json:"foldersFromFilesStructure"`
		} `json:"options"`
	} `json:"providers"`
}

// TestGrafanaProvisioning: the provisioning files Grafana reads parse, the datasource is the
// bundle's Prometheus under uid "prometheus", and the dashboards provider points at a mounted
// ConfigMap that holds the opview dashboards.
func TestGrafanaProvisioning(t *testing.T) {
	b := render(t, k3sDir)
	d := deployment(t, b, "grafana")
	g := container(t, d, "grafana")
	env := map[string]corev1.EnvVar{}
	for _, e := range g.Env {
		env[e.Name] = e
	}
	provRoot := env["GF_PATHS_PROVISIONING"].Value
	if provRoot == "" {
		provRoot = "/etc/grafana/provisioning" // the image's default
	}

	// Provisioning files are single-key mounts (subPath) of generated ConfigMaps.
	files := map[string]string{} // path in the container -> content
	for _, m := range g.VolumeMounts {
		if m.SubPath == "" || !strings.HasPrefix(m.MountPath, provRoot+"/") {
			continue
		}
		var cmName string
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				cmName = v.ConfigMap.Name
			}
		}
		if cmName == "" {
			t.Fatalf("grafana mount %s: volume %s is not a ConfigMap", m.MountPath, m.Name)
		}
		data, _ := b.one(t, "ConfigMap", cmName).raw["data"].(map[string]any)
		content, ok := data[m.SubPath].(string)
		if !ok {
			t.Fatalf("grafana mount %s: ConfigMap %s has no key %s", m.MountPath, cmName, m.SubPath)
		}
		files[m.MountPath] = content
	}

	var sawDS, sawDash bool
	for p, content := range files {
		switch path.Dir(p) {
		case provRoot + "/datasources":
			sawDS = true
			var f datasourcesFile
			if err := yaml.UnmarshalStrict([]byte(content), &f); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if f.APIVersion != 1 || len(f.Datasources) != 1 {
				t.Fatalf("%s: apiVersion %d, %d datasources; want 1 and 1", p, f.APIVersion, len(f.Datasources))
			}
			ds := f.Datasources[0]
			if ds.UID != "prometheus" || ds.Type != "prometheus" || !ds.IsDefault {
				t.Errorf("%s: datasource uid %q type %q default %v, want the default prometheus datasource with uid prometheus", p, ds.UID, ds.Type, ds.IsDefault)
			}
			u, err := url.Parse(ds.URL)
			if err != nil {
				t.Fatalf("%s: url %q: %v", p, ds.URL, err)
			}
			svc := b.one(t, "Service", u.Hostname())
			if port := fmt.Sprint(lookup(svc.raw, "spec", "ports", 0, "port")); port != u.Port() {
				t.Errorf("%s: url %s, Service %s listens on %s", p, ds.URL, u.Hostname(), port)
			}
		case provRoot + "/dashboards":
			sawDash = true
			var f dashboardsFile
			if err := yaml.UnmarshalStrict([]byte(content), &f); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if f.APIVersion != 1 || len(f.Providers) != 1 {
				t.Fatalf("%s: apiVersion %d, %d providers; want 1 and 1", p, f.APIVersion, len(f.Providers))
			}
			prov := f.Providers[0]
			if prov.Type != "file" || prov.Folder != "opview" {
				t.Errorf("%s: provider type %q folder %q, want file and opview", p, prov.Type, prov.Folder)
			}
			checkDashboards(t, b, d, g, prov.Options.Path)
		default:
			t.Errorf("grafana mount %s: not a provisioning folder Grafana reads", p)
		}
	}
	if !sawDS || !sawDash {
		t.Fatalf("grafana mounts no datasource (%v) or dashboard (%v) provisioning file under %s", sawDS, sawDash, provRoot)
	}
}

// checkDashboards: dir is a ConfigMap mount holding the opview dashboards, every JSON file parses,
// and each panel's Prometheus datasource is the provisioned one (or a template variable).
func checkDashboards(t *testing.T, b bundle, d *appsv1.Deployment, g corev1.Container, dir string) {
	t.Helper()
	cmName, data := mountedConfigMap(t, b, d, g, dir)
	if !strings.HasPrefix(cmName, "opview-dashboards-") {
		t.Errorf("dashboards come from ConfigMap %s, want the hash-suffixed opview-dashboards", cmName)
	}
	for _, want := range []string{"opview-operator.json", "opview-relay.json"} {
		if _, ok := data[want]; !ok {
			t.Errorf("ConfigMap %s has no %s", cmName, want)
		}
	}
	for key, v := range data {
		if !strings.HasSuffix(key, ".json") {
			t.Errorf("ConfigMap %s key %s: Grafana's file provider only loads .json files", cmName, key)
			continue
		}
		var dash map[string]any
		if err := json.Unmarshal([]byte(v.(string)), &dash); err != nil {
			t.Errorf("%s/%s: %v", dir, key, err)
			continue
		}
		if uid, _ := dash["uid"].(string); uid != strings.TrimSuffix(key, ".json") || !strings.HasPrefix(uid, "opview-") {
			t.Errorf("%s/%s: uid %q, want %q", dir, key, dash["uid"], strings.TrimSuffix(key, ".json"))
		}
		walkDatasources(dash, func(ds map[string]any) {
			uid, _ := ds["uid"].(string)
			if ds["type"] == "prometheus" && uid != "prometheus" && !strings.HasPrefix(uid, "$") {
				t.Errorf("%s/%s: datasource uid %q is not the provisioned one (prometheus)", dir, key, uid)
			}
		})
	}
}

func walkDatasources(v any, f func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if m, ok := c.(map[string]any); ok && k == "datasource" {
				f(m)
			}
			walkDatasources(c, f)
		}
	case []any:
		for _, c := range x {
			walkDatasources(c, f)
		}
	}
}

// TestGrafanaSettings: admin credentials only from a generated Secret, the root URL from the site
// hostname, data on its own claim.
func TestGrafanaSettings(t *testing.T) {
	b := render(t, k3sDir)
	d := deployment(t, b, "grafana")
	g := container(t, d, "grafana")
	site := readSite(t)
	env := map[string]corev1.EnvVar{}
	for _, e := range g.Env {
		env[e.Name] = e
	}
	for _, name := range []string{"GF_SECURITY_ADMIN_USER", "GF_SECURITY_ADMIN_PASSWORD"} {
		e, ok := env[name]
		if !ok || e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			t.Errorf("%s must come from a Secret (secretKeyRef), never a value in git", name)
			continue
		}
		ref := e.ValueFrom.SecretKeyRef
		if !strings.HasPrefix(ref.Name, "grafana-admin-") {
			t.Errorf("%s: Secret %s is not the generated (hash-suffixed) grafana-admin", name, ref.Name)
		}
		s := b.one(t, "Secret", ref.Name)
		if lookup(s.raw, "data", ref.Key) == nil {
			t.Errorf("%s: Secret %s has no key %s", name, ref.Name, ref.Key)
		}
	}
	for _, e := range g.Env {
		if strings.Contains(e.Name, "PASSWORD") && e.Value != "" {
			t.Errorf("env %s has a literal value", e.Name)
		}
	}
	if got, want := env["GF_SERVER_ROOT_URL"].Value, "http://"+site["GRAFANA_HOST"]+"/"; got != want {
		t.Errorf("GF_SERVER_ROOT_URL = %q, want %q", got, want)
	}
	if !mountsClaim(d, g, "/var/lib/grafana", "grafana-data") {
		t.Error("/var/lib/grafana is not on the grafana-data claim")
	}
	for _, o := range b.find("Secret", "") {
		if !strings.HasPrefix(o.name(), "grafana-admin-") && !strings.HasPrefix(o.name(), "relay-write-token-") {
			t.Errorf("unexpected Secret %s in deploy/k3s", o.name())
		}
	}
}
