package deploy

import (
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/kubernetes" // registers kubernetes_sd_configs with the config loader (never import plugins)
	"github.com/prometheus/prometheus/model/relabel"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func deployment(t *testing.T, b bundle, name string) *appsv1.Deployment {
	t.Helper()
	for _, d := range typed[*appsv1.Deployment](t, b, "Deployment") {
		if d.Name == name {
			return d
		}
	}
	t.Fatalf("%s: no Deployment %s", b.dir, name)
	return nil
}

func container(t *testing.T, d *appsv1.Deployment, name string) corev1.Container {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("Deployment %s has no container %s", d.Name, name)
	return corev1.Container{}
}

// flagValue returns the value of --name=value in args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// mountedConfigMap returns the data of the ConfigMap that c mounts at dir (whole-volume mounts),
// as rendered, so a reference kustomize failed to rewrite shows up.
func mountedConfigMap(t *testing.T, b bundle, d *appsv1.Deployment, c corev1.Container, dir string) (string, map[string]any) {
	t.Helper()
	for _, m := range c.VolumeMounts {
		if m.MountPath != dir || m.SubPath != "" {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				cm := b.one(t, "ConfigMap", v.ConfigMap.Name)
				data, _ := cm.raw["data"].(map[string]any)
				return v.ConfigMap.Name, data
			}
		}
	}
	t.Fatalf("Deployment %s container %s mounts no ConfigMap at %s", d.Name, c.Name, dir)
	return "", nil
}

func containerPort(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port %s", c.Name, name)
	return 0
}

// TestPrometheusConfig loads the rendered prometheus.yml with Prometheus's own loader and checks
// the scrape jobs the bundle depends on.
func TestPrometheusConfig(t *testing.T) {
	checkPrometheusConfig(t, render(t, k3sDir))
}

// checkPrometheusConfig runs TestPrometheusConfig's checks on a rendered bundle and returns the
// configuration Prometheus loaded.
func checkPrometheusConfig(t *testing.T, b bundle) *config.Config {
	t.Helper()
	_ = kubernetes.RolePod
	d := deployment(t, b, "prometheus")
	prom := container(t, d, "prometheus")
	relay := container(t, d, "relay")

	file, ok := flagValue(prom.Args, "config.file")
	if !ok {
		t.Fatal("prometheus: no --config.file")
	}
	cmName, data := mountedConfigMap(t, b, d, prom, path.Dir(file))
	if !strings.HasPrefix(cmName, "prometheus-config-") {
		t.Errorf("Prometheus's config ConfigMap %s has no content hash suffix: config changes would not roll the pod", cmName)
	}
	text, ok := data[path.Base(file)].(string)
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s (--config.file=%s)", cmName, path.Base(file), file)
	}
	cfg, err := config.Load(text, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Prometheus refuses the config of ConfigMap %s: %v", cmName, err)
	}

	// Retention lives in the file (the flags are deprecated since 3.8) and fits the volume.
	for _, a := range prom.Args {
		if strings.HasPrefix(a, "--storage.tsdb.retention") {
			t.Errorf("prometheus arg %s: set retention under storage.tsdb.retention in prometheus.yml", a)
		}
	}
	ret := cfg.StorageConfig.TSDBConfig.Retention
	if ret == nil || ret.Time == 0 || ret.Size == 0 {
		t.Fatalf("storage.tsdb.retention = %+v, want time and size", ret)
	}
	var claim resource.Quantity
	for _, pvc := range typed[*corev1.PersistentVolumeClaim](t, b, "PersistentVolumeClaim") {
		if pvc.Name == "prometheus-data" {
			claim = pvc.Spec.Resources.Requests[corev1.ResourceStorage]
		}
	}
	if int64(ret.Size) >= claim.Value() {
		t.Errorf("retention size %v does not fit the prometheus-data claim (%s)", ret.Size, claim.String())
	}
	if tsdb, _ := flagValue(prom.Args, "storage.tsdb.path"); !mountsClaim(d, prom, tsdb, "prometheus-data") {
		t.Errorf("--storage.tsdb.path=%s is not the prometheus-data claim's mount", tsdb)
	}

	jobs := map[string]*config.ScrapeConfig{}
	for _, sc := range cfg.ScrapeConfigs {
		jobs[sc.JobName] = sc
	}
	relayPort := containerPort(t, relay, "relay")
	rj := jobs["opview-relay"]
	if rj == nil {
		t.Fatalf("no opview-relay scrape job (have %v)", keys(jobs))
	}
	if !rj.HonorLabels {
		t.Error("opview-relay job: honor_labels must be true, or the pushed job/instance labels are renamed exported_*")
	}
	if got := fmt.Sprint(rj.ScrapeProtocols); got != "[PrometheusProto PrometheusText0.0.4]" {
		t.Errorf("opview-relay job scrape_protocols %s, want [PrometheusProto PrometheusText0.0.4]", got)
	}
	if got := staticTargets(rj); !slices.Equal(got, []string{fmt.Sprintf("localhost:%d", relayPort)}) {
		t.Errorf("opview-relay job targets %v, want the sidecar at localhost:%d", got, relayPort)
	}
	if listen, _ := flagValue(relay.Args, "web.listen-address"); listen != fmt.Sprintf(":%d", relayPort) {
		t.Errorf("relay --web.listen-address=%s, its container port is %d", listen, relayPort)
	}
	pj := jobs["prometheus"]
	promPort := containerPort(t, prom, "http")
	if pj == nil || !slices.Equal(staticTargets(pj), []string{fmt.Sprintf("localhost:%d", promPort)}) {
		t.Errorf("no prometheus job scraping localhost:%d", promPort)
	}
	if listen, _ := flagValue(prom.Args, "web.listen-address"); listen != fmt.Sprintf(":%d", promPort) {
		t.Errorf("prometheus --web.listen-address=%s, its container port is %d", listen, promPort)
	}
	kj := jobs["kubernetes-pods"]
	if kj == nil {
		t.Fatal("no kubernetes-pods job for annotated pods")
	}
	var sdPods bool
	for _, sd := range kj.ServiceDiscoveryConfigs {
		if k, ok := sd.(*kubernetes.SDConfig); ok && k.Role == kubernetes.RolePod {
			sdPods = true
		}
	}
	if !sdPods {
		t.Error("kubernetes-pods job: no kubernetes_sd_configs with role pod")
	}
	var keepsAnnotated bool
	for _, rc := range kj.RelabelConfigs {
		if rc.Action == relabel.Keep && slices.Contains(rc.SourceLabels, model.LabelName("__meta_kubernetes_pod_annotation_prometheus_io_scrape")) {
			keepsAnnotated = true
		}
	}
	if !keepsAnnotated {
		t.Error("kubernetes-pods job does not keep only pods annotated prometheus.io/scrape")
	}
	return cfg
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func staticTargets(sc *config.ScrapeConfig) []string {
	var out []string
	for _, sd := range sc.ServiceDiscoveryConfigs {
		if st, ok := sd.(discovery.StaticConfig); ok {
			for _, g := range st {
				for _, tg := range g.Targets {
					out = append(out, string(tg[model.AddressLabel]))
				}
			}
		}
	}
	return out
}

func mountsClaim(d *appsv1.Deployment, c corev1.Container, dir, claim string) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath != dir {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim {
				return true
			}
		}
	}
	return false
}

// TestPrometheusDiscoveryRBAC: the service account Prometheus runs as may list and watch pods in
// every namespace, and nothing more.
func TestPrometheusDiscoveryRBAC(t *testing.T) {
	b := render(t, k3sDir)
	sa := deployment(t, b, "prometheus").Spec.Template.Spec.ServiceAccountName
	var bound []string
	for _, crb := range typed[*rbacv1.ClusterRoleBinding](t, b, "ClusterRoleBinding") {
		for _, s := range crb.Subjects {
			if s.Kind == rbacv1.ServiceAccountKind && s.Name == sa && s.Namespace == "opview" {
				bound = append(bound, crb.RoleRef.Name)
			}
		}
	}
	if len(bound) != 1 {
		t.Fatalf("ServiceAccount %s bound to cluster roles %v, want one", sa, bound)
	}
	for _, cr := range typed[*rbacv1.ClusterRole](t, b, "ClusterRole") {
		if cr.Name != bound[0] {
			continue
		}
		for _, verb := range []string{"list", "watch"} {
			ok := false
			for _, r := range cr.Rules {
				ok = ok || (slices.Contains(r.APIGroups, "") && slices.Contains(r.Resources, "pods") && slices.Contains(r.Verbs, verb))
			}
			if !ok {
				t.Errorf("ClusterRole %s does not allow %s on pods", cr.Name, verb)
			}
		}
		for _, r := range cr.Rules {
			if !slices.Equal(r.Resources, []string{"pods"}) || slices.ContainsFunc(r.Verbs, func(v string) bool { return v != "get" && v != "list" && v != "watch" }) {
				t.Errorf("ClusterRole %s grants more than reading pods: %+v", cr.Name, r)
			}
		}
		return
	}
	t.Fatalf("ClusterRole %s not in the bundle", bound[0])
}
