package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
)

// restricted evaluates a pod template at the restricted level, latest version, with the Pod
// Security Admission controller's own checks.
func restricted(t *testing.T, meta *metav1.ObjectMeta, spec *corev1.PodSpec) policy.AggregateCheckResult {
	t.Helper()
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	lv := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	return policy.AggregateCheckResults(ev.EvaluatePod(lv, meta, spec))
}

// TestNamespaceEnforcesRestricted: the namespace refuses pods that break the restricted level.
func TestNamespaceEnforcesRestricted(t *testing.T) {
	b := render(t, k3sDir)
	nss := typed[*corev1.Namespace](t, b, "Namespace")
	if len(nss) != 1 || nss[0].Name != "opview" {
		t.Fatalf("namespaces %v, want opview", nss)
	}
	pol, errs := psaapi.PolicyToEvaluate(nss[0].Labels, psaapi.Policy{})
	if len(errs) > 0 {
		t.Fatalf("namespace labels: %v", errs)
	}
	if pol.Enforce.Level != psaapi.LevelRestricted || !pol.Enforce.Version.Latest() {
		t.Errorf("enforced policy %s, want restricted:latest", pol.Enforce.String())
	}
	for _, o := range b.objects {
		if o.kind() != "Namespace" && o.kind() != "ClusterRole" && o.kind() != "ClusterRoleBinding" && o.namespace() != "opview" {
			t.Errorf("%s is outside namespace opview", o.id())
		}
	}
}

// TestPodsAreRestricted: every pod template passes the restricted Pod Security Standard, runs with
// a read-only root filesystem, requests and limits its resources, and mounts a service account
// token only where it talks to the API server.
func TestPodsAreRestricted(t *testing.T) {
	b := render(t, k3sDir)
	deps := typed[*appsv1.Deployment](t, b, "Deployment")
	if len(deps) != 2 {
		t.Fatalf("%d Deployments, want prometheus and grafana", len(deps))
	}
	for _, kind := range []string{"StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet"} {
		if n := len(b.find(kind, "")); n > 0 {
			t.Fatalf("%d %s objects: extend this test to check their pod templates", n, kind)
		}
	}
	needsToken := map[string]bool{"prometheus": true} // Kubernetes service discovery
	for _, d := range deps {
		pod := d.Spec.Template
		if res := restricted(t, &pod.ObjectMeta, &pod.Spec); !res.Allowed {
			t.Errorf("Deployment %s breaks restricted: %s (%s)", d.Name, res.ForbiddenReason(), strings.Join(res.ForbiddenDetails, "; "))
		}
		token := pod.Spec.AutomountServiceAccountToken
		if token == nil || *token != needsToken[d.Name] {
			t.Errorf("Deployment %s: automountServiceAccountToken %v, want explicitly %v", d.Name, deref(token), needsToken[d.Name])
		}
		if pod.Spec.ServiceAccountName == "" || pod.Spec.ServiceAccountName == "default" {
			t.Errorf("Deployment %s uses the default service account", d.Name)
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("Deployment %s: one replica with the Recreate strategy (ReadWriteOnce volumes)", d.Name)
		}
		for _, c := range pod.Spec.Containers {
			where := fmt.Sprintf("Deployment %s container %s", d.Name, c.Name)
			if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
				t.Errorf("%s: readOnlyRootFilesystem not true", where)
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				req, lim := c.Resources.Requests[r], c.Resources.Limits[r]
				if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
					t.Errorf("%s: %s request %s, limit %s: want both, request <= limit", where, r, req.String(), lim.String())
				}
			}
			if c.ImagePullPolicy != corev1.PullIfNotPresent {
				t.Errorf("%s: imagePullPolicy %q, want IfNotPresent", where, c.ImagePullPolicy)
			}
			if !pinned.MatchString(c.Image) {
				t.Errorf("%s: image %q is not pinned to a version tag", where, c.Image)
			}
			if c.ReadinessProbe == nil || c.LivenessProbe == nil {
				t.Errorf("%s: readiness and liveness probes wanted", where)
			}
		}
	}

	// The check is real: the same template with one field off is refused.
	bad := deps[0].Spec.Template.DeepCopy()
	bad.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
	bad.Spec.SecurityContext.SeccompProfile = nil
	if res := restricted(t, &bad.ObjectMeta, &bad.Spec); res.Allowed {
		t.Fatal("restricted allowed a pod without allowPrivilegeEscalation=false and seccomp")
	}
}

var pinned = regexp.MustCompile(`^[a-z0-9./-]+:v?[0-9]+\.[0-9]+\.[0-9]+$`)

func deref(b *bool) any {
	if b == nil {
		return "unset"
	}
	return *b
}

// TestResourceTotalsDocumented: docs/install.md states the stack's totals as they are.
func TestResourceTotalsDocumented(t *testing.T) {
	b := render(t, k3sDir)
	var reqCPU, limCPU, reqMem, limMem resource.Quantity
	for _, d := range typed[*appsv1.Deployment](t, b, "Deployment") {
		for _, c := range d.Spec.Template.Spec.Containers {
			reqCPU.Add(c.Resources.Requests[corev1.ResourceCPU])
			limCPU.Add(c.Resources.Limits[corev1.ResourceCPU])
			reqMem.Add(c.Resources.Requests[corev1.ResourceMemory])
			limMem.Add(c.Resources.Limits[corev1.ResourceMemory])
		}
	}
	var storage resource.Quantity
	for _, pvc := range typed[*corev1.PersistentVolumeClaim](t, b, "PersistentVolumeClaim") {
		storage.Add(pvc.Spec.Resources.Requests[corev1.ResourceStorage])
	}
	line := fmt.Sprintf("| whole stack | %dm | %dMi | %dm | %dMi | %dMi |",
		reqCPU.MilliValue(), reqMem.Value()>>20, limCPU.MilliValue(), limMem.Value()>>20, storage.Value()>>20)
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs", "install.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), line) {
		t.Errorf("docs/install.md lacks the resource totals line\n%s\n(update the table when requests, limits or claims change)", line)
	}
}
