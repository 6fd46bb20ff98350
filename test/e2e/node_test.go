//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/opview/opview/test/e2e/framework"
)

// nodeObjects run the relay image that `make image` writes as a Deployment under the restricted
// Pod Security level, behind a ClusterIP Service.
const nodeObjects = `
apiVersion: v1
kind: Namespace
metadata:
  name: e2e-node
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/warn: restricted
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: relay, namespace: e2e-node}
spec:
  selector: {matchLabels: {app: relay}}
  template:
    metadata: {labels: {app: relay}}
    spec:
      automountServiceAccountToken: false
      securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
      containers:
        - name: relay
          image: %s
          imagePullPolicy: IfNotPresent
          args: [serve, --web.listen-address=:9091]
          ports: [{name: relay, containerPort: 9091}]
          readinessProbe: {httpGet: {path: /-/ready, port: relay}, periodSeconds: 2}
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
---
apiVersion: v1
kind: Service
metadata: {name: relay, namespace: e2e-node}
spec:
  selector: {app: relay}
  ports: [{name: relay, port: 9091, targetPort: relay}]
`

// TestNode proves the node on its own, quickly: a Deployment becomes a Ready pod (scheduler,
// controller manager, kubelet, containerd, the CNI bridge, the readiness probe), the endpointslice
// controller publishes its address, kube-proxy routes the Service's cluster IP to it, and the
// apply helper reports the Pod Security warning of a pod that breaks the namespace's level.
func TestNode(t *testing.T) {
	framework.Require(t)
	ctx := context.Background()
	c := framework.StartCluster(t)
	pause, err := framework.PauseImage(framework.Artifact(t, "pause"), filepath.Join(c.Dir, "pause.tar"))
	if err != nil {
		framework.Fatal(t, err)
	}
	const relayRef = "localhost/opview-relay:0.1.0" // the Makefile's IMAGE and IMAGE_TAG
	framework.StartNode(t, c, pause, framework.RelayImage(t, relayRef))

	if err := c.Apply(ctx, framework.MustObjects(t, fmt.Sprintf(nodeObjects, relayRef))); err != nil {
		framework.Fatal(t, err)
	}
	pod := c.WaitPodReady(t, "e2e-node", "app=relay", "", 3*time.Minute)
	if !strings.HasPrefix(pod.Status.PodIP, "10.42.0.") {
		framework.Fatalf(t, "pod IP %s is not in the pod range %s", pod.Status.PodIP, framework.PodCIDR)
	}
	framework.WaitFor(t, "the endpointslice controller to publish the pod", time.Minute, func(ctx context.Context) error {
		addrs, err := c.EndpointSliceAddresses(ctx, "e2e-node", "relay")
		if err != nil {
			return err
		}
		if len(addrs) != 1 || addrs[0] != pod.Status.PodIP {
			return fmt.Errorf("ready addresses %v, want [%s]", addrs, pod.Status.PodIP)
		}
		return nil
	})
	svc, err := c.Client.CoreV1().Services("e2e-node").Get(ctx, "relay", metav1.GetOptions{})
	if err != nil {
		framework.Fatal(t, err)
	}
	framework.WaitFor(t, "the relay through its Service's cluster IP (kube-proxy)", time.Minute, func(ctx context.Context) error {
		code, body, err := framework.HTTPGet(ctx, "http://"+svc.Spec.ClusterIP+":9091/-/healthy", "", nil)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("HTTP %d: %.200s", code, body)
		}
		return nil
	})

	// A Deployment whose pod template breaks the restricted level must be reported: the scenario
	// relies on these warnings to check the bundle.
	err = c.Apply(ctx, framework.MustObjects(t, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: privileged, namespace: e2e-node}
spec:
  selector: {matchLabels: {app: p}}
  template:
    metadata: {labels: {app: p}}
    spec:
      containers: [{name: c, image: busybox}] # no securityContext: breaks restricted
`))
	if err == nil || !strings.Contains(err.Error(), "violate PodSecurity") {
		framework.Fatalf(t, "applying a Deployment without securityContext in a restricted namespace: got %v, want a PodSecurity warning", err)
	}
}
