//go:build e2e

package framework

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodReady reports whether kubelet marks the pod Ready (every container's readiness probe passes).
func PodReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podSummary is a short account of a pod's state for error messages.
func podSummary(p *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", p.Name, p.Status.Phase)
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			fmt.Fprintf(&b, " %s=%s(%s %s)", c.Type, c.Status, c.Reason, c.Message)
		}
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			fmt.Fprintf(&b, " [%s waiting: %s %.200s]", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
		case cs.State.Terminated != nil:
			fmt.Fprintf(&b, " [%s terminated: %s exit %d]", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
		default:
			fmt.Fprintf(&b, " [%s ready=%v restarts=%d]", cs.Name, cs.Ready, cs.RestartCount)
		}
	}
	return b.String()
}

// WaitPodReady waits until exactly one pod matches selector in namespace, is not being deleted,
// and is Ready, and returns it. not, when set, excludes a pod UID (the one a restart replaces).
func (c *Cluster) WaitPodReady(t testing.TB, namespace, selector string, not string, timeout time.Duration, watch ...*Proc) *corev1.Pod {
	t.Helper()
	var ready *corev1.Pod
	WaitFor(t, fmt.Sprintf("a Ready pod %s in %s", selector, namespace), timeout, func(ctx context.Context) error {
		pods, err := c.Client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		var states []string
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.DeletionTimestamp != nil || string(p.UID) == not {
				states = append(states, podSummary(p)+" (going)")
				continue
			}
			if PodReady(p) {
				ready = p
				return nil
			}
			states = append(states, podSummary(p))
		}
		if len(states) == 0 {
			return fmt.Errorf("no pod yet")
		}
		return fmt.Errorf("%s", strings.Join(states, "; "))
	}, watch...)
	return ready
}

// EndpointSliceAddresses returns the ready endpoint addresses of a Service's EndpointSlices that
// the endpointslice controller wrote.
func (c *Cluster) EndpointSliceAddresses(ctx context.Context, namespace, service string) ([]string, error) {
	slices, err := c.Client.DiscoveryV1().EndpointSlices(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + service + "," + discoveryv1.LabelManagedBy + "=endpointslice-controller.k8s.io"})
	if err != nil {
		return nil, err
	}
	var addrs []string
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				addrs = append(addrs, e.Addresses...)
			}
		}
	}
	return addrs, nil
}

// WaitPodGone waits until the pod is deleted from the API server (the kubelet stopped its
// containers and released its volumes); the error says what is left of it.
func (c *Cluster) WaitPodGone(t testing.TB, namespace, name string, timeout time.Duration, watch ...*Proc) {
	t.Helper()
	WaitFor(t, "pod "+name+" to be gone", timeout, func(ctx context.Context) error {
		p, err := c.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return IgnoreNotFound(err)
		}
		return fmt.Errorf("still there: %s", podSummary(p))
	}, watch...)
}
