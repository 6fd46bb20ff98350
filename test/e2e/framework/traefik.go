//go:build e2e

package framework

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	"helm.sh/helm/v4/pkg/strvals"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TraefikImageRepository is the image k3s's Traefik HelmChart names (registry docker.io, the
// chart's default).
const TraefikImageRepository = "rancher/mirrored-library-traefik"

// K3sTraefikValues are the values of k3s's own HelmChart for Traefik (its manifests/traefik.yaml,
// k3s 1.32 and later), with the image tag of the Traefik the e2e builds. A HelmChartConfig's
// valuesContent is layered over them.
func K3sTraefikValues(imageTag string) string {
	return `deployment:
  podAnnotations:
    prometheus.io/port: "8082"
    prometheus.io/scrape: "true"
providers:
  kubernetesIngress:
    publishedService:
      enabled: true
priorityClassName: "system-cluster-critical"
image:
  repository: "` + TraefikImageRepository + `"
  tag: "` + imageTag + `"
tolerations:
- key: "CriticalAddonsOnly"
  operator: "Exists"
- key: "node-role.kubernetes.io/control-plane"
  operator: "Exists"
  effect: "NoSchedule"
- key: "node-role.kubernetes.io/master"
  operator: "Exists"
  effect: "NoSchedule"
service:
  ipFamilyPolicy: "PreferDualStack"
`
}

// k3sTraefikSet is the HelmChart's spec.set of k3s's Traefik (highest precedence).
var k3sTraefikSet = []string{"global.systemDefaultRegistry="}

// TraefikRelease is the Traefik chart rendered for the cluster.
type TraefikRelease struct {
	CRDs    []*unstructured.Unstructured // the chart's crds/ (k3s installs them as the traefik-crd chart)
	Objects []*unstructured.Unstructured // the templates, in helm's install order
	Values  map[string]any               // the merged user values
}

// RenderTraefik renders the Traefik chart in chartDir (the module's traefik/ folder) as
// helm-controller's install job does for k3s: `helm install traefik` in kube-system with k3s's
// values, then the HelmChartConfig's valuesContent, then k3s's --set, each layered over the
// previous the way helm merges --values files; capabilities from the live API server. k3s strips
// the chart's values schema, so it is not checked here either.
func RenderTraefik(ctx context.Context, c *Cluster, chartDir string, helmChartConfig *unstructured.Unstructured, imageTag string) (*TraefikRelease, error) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		return nil, fmt.Errorf("loading the Traefik chart: %w", err)
	}
	k3s, err := loader.LoadValues(strings.NewReader(K3sTraefikValues(imageTag)))
	if err != nil {
		return nil, err
	}
	valuesContent, _, err := unstructured.NestedString(helmChartConfig.Object, "spec", "valuesContent")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ObjName(helmChartConfig), err)
	}
	user, err := loader.LoadValues(strings.NewReader(valuesContent))
	if err != nil {
		return nil, fmt.Errorf("%s valuesContent: %w", ObjName(helmChartConfig), err)
	}
	values := loader.MergeMaps(loader.MergeMaps(map[string]any{}, k3s), user)
	for _, s := range k3sTraefikSet {
		if err := strvals.ParseInto(s, values); err != nil {
			return nil, err
		}
	}
	caps, err := c.helmCapabilities(ctx)
	if err != nil {
		return nil, err
	}
	top, err := chartutil.ToRenderValuesWithSchemaValidation(ch, values,
		common.ReleaseOptions{Name: "traefik", Namespace: "kube-system", Revision: 1, IsInstall: true}, caps, true)
	if err != nil {
		return nil, fmt.Errorf("the Traefik chart's values: %w", err)
	}
	files, err := engine.RenderWithClient(ch, top, c.Config)
	if err != nil {
		return nil, fmt.Errorf("rendering the Traefik chart: %w", err)
	}
	for name := range files {
		if strings.HasSuffix(name, "NOTES.txt") { // what helm prints after an install, not a manifest
			delete(files, name)
		}
	}
	_, manifests, err := releaseutil.SortManifests(files, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return nil, fmt.Errorf("sorting the Traefik chart's manifests: %w", err)
	}
	rel := &TraefikRelease{Values: values}
	for _, m := range manifests {
		objs, err := DecodeYAML(strings.NewReader(m.Content))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		rel.Objects = append(rel.Objects, objs...)
	}
	for _, crd := range ch.CRDObjects() {
		objs, err := DecodeYAML(strings.NewReader(string(crd.File.Data)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", crd.Filename, err)
		}
		rel.CRDs = append(rel.CRDs, objs...)
	}
	return rel, nil
}

// helmCapabilities are what `helm install` reads from the cluster: the server version and every
// group/version and group/version/kind it serves.
func (c *Cluster) helmCapabilities(ctx context.Context) (*common.Capabilities, error) {
	sv, err := c.Client.Discovery().ServerVersion()
	if err != nil {
		return nil, err
	}
	kv, err := common.ParseKubeVersion(sv.GitVersion)
	if err != nil {
		return nil, err
	}
	_, lists, err := c.Client.Discovery().ServerGroupsAndResources()
	if err != nil {
		return nil, err
	}
	var set []string
	for _, l := range lists {
		set = append(set, l.GroupVersion)
		for _, r := range l.APIResources {
			set = append(set, l.GroupVersion+"/"+r.Kind)
		}
	}
	slices.Sort(set)
	return &common.Capabilities{KubeVersion: *kv, APIVersions: slices.Compact(set), HelmVersion: common.DefaultCapabilities.HelmVersion}, nil
}

// TraefikChartDir is the chart's folder in the module github.com/traefik/traefik-helm-chart.
func TraefikChartDir(moduleDir string) string { return filepath.Join(moduleDir, "traefik") }

// Find returns the rendered object of that kind and name.
func (r *TraefikRelease) Find(t testing.TB, kind, name string) *unstructured.Unstructured {
	t.Helper()
	o := Find(r.Objects, kind, name)
	if o == nil {
		Fatalf(t, "the rendered Traefik chart has no %s %s", kind, name)
	}
	return o
}

// PlayServiceLB writes what k3s's ServiceLB writes for a LoadBalancer Service once its svclb pods
// run: the node's address as the Service's ingress. kube-proxy then forwards the node's address
// and the Service's ports to the Service's endpoints, as the svclb pods' rules do on a k3s node.
func (c *Cluster) PlayServiceLB(ctx context.Context, namespace, name string) error {
	o := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Service",
		"metadata": map[string]any{"name": name, "namespace": namespace},
		"status": map[string]any{"loadBalancer": map[string]any{"ingress": []any{
			map[string]any{"ip": NodeIP, "ipMode": "VIP"}}}},
	}}
	return c.ApplyStatus(ctx, o)
}

// HelmChartCRDs are the HelmChart and HelmChartConfig CRDs of github.com/k3s-io/helm-controller
// (the module Main prepared), which k3s installs and a HelmChartConfig needs.
func HelmChartCRDs(t testing.TB) []*unstructured.Unstructured {
	t.Helper()
	dir := Artifact(t, "helm-controller-module")
	crds, err := DecodeYAMLFiles(
		filepath.Join(dir, "pkg/crds/yaml/generated/helm.cattle.io_helmcharts.yaml"),
		filepath.Join(dir, "pkg/crds/yaml/generated/helm.cattle.io_helmchartconfigs.yaml"))
	if err != nil {
		Fatal(t, err)
	}
	return crds
}
