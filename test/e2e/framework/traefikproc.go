//go:build e2e

package framework

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TraefikProcess is the Traefik container of a rendered pod spec (the chart's Deployment or
// DaemonSet) run as a process in a namespace of its own, where a second node would run its pod:
// the container's arguments and environment exactly, its Kubernetes providers given the API
// server's address, the cluster CA and a file holding a token of the chart's ServiceAccount
// (what the pod's projected service account volume would hold).
type TraefikProcess struct {
	Proc *Proc
	// Ports are the container's ports by name (web, websecure, relay, traefik, metrics).
	Ports map[string]int32
}

// TraefikToken is a token of the ServiceAccount the chart's pods run as (the chart's RBAC must be
// applied), valid for an hour.
func (c *Cluster) TraefikToken(ctx context.Context, spec *corev1.PodSpec) (string, error) {
	sa := spec.ServiceAccountName
	if sa == "" {
		return "", fmt.Errorf("the Traefik pod spec names no service account")
	}
	exp := int64(3600)
	tr, err := c.Client.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, sa,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token of service account kube-system/%s: %w", sa, err)
	}
	return tr.Status.Token, nil
}

// StartTraefikProcess runs the container traefik of spec in ns as the pod podName of kube-system
// would run it, with the token in tokenFile (Traefik reads a token or a file), and waits until
// its readiness probe, asked at addr (ns's address as the test reaches it), passes.
func StartTraefikProcess(t testing.TB, procs *Procs, c *Cluster, ns *Netns, podName string, spec *corev1.PodSpec, tokenFile, addr string) *TraefikProcess {
	t.Helper()
	ct := Container(t, spec, "traefik")
	tp := &TraefikProcess{Ports: map[string]int32{}}
	for _, p := range ct.Ports {
		tp.Ports[p.Name] = p.ContainerPort
	}
	var env []string
	for _, e := range ct.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env = append(env, e.Name+"="+podName)
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace":
			env = append(env, e.Name+"=kube-system")
		case e.ValueFrom.ResourceFieldRef != nil:
			// GOMAXPROCS, GOMEMLIMIT from the limits: the process runs without them.
		default:
			Fatalf(t, "Traefik container env %s: this valueFrom is not played by the e2e", e.Name)
		}
	}
	args := append(append([]string{}, ct.Command...), ct.Args...)
	var providers int
	for _, a := range ct.Args {
		for _, p := range []string{"kubernetescrd", "kubernetesingress"} {
			if a == "--providers."+p || a == "--providers."+p+"=true" {
				providers++
				args = append(args, "--providers."+p+".endpoint="+c.URL, "--providers."+p+".token="+tokenFile,
					"--providers."+p+".certAuthFilePath="+c.CA.File)
			}
		}
	}
	if providers == 0 {
		Fatalf(t, "the Traefik container's args enable no Kubernetes provider: %v", ct.Args)
	}
	probe := ct.ReadinessProbe
	if probe == nil || probe.HTTPGet == nil {
		Fatal(t, "the Traefik container has no HTTP readiness probe")
	}
	port := probe.HTTPGet.Port
	if port.Type == intstr.String {
		p, ok := tp.Ports[port.StrVal]
		if !ok {
			Fatalf(t, "the Traefik readiness probe's port %q is not a container port", port.StrVal)
		}
		port = intstr.FromInt32(p)
	}
	tp.Proc = procs.StartSpec(t, Spec{Name: podName, Bin: RequireBinary(t, Binary("traefik", c.Versions.Traefik, "traefik")),
		Args: args, Env: env, Netns: ns})
	url := "http://" + addr + ":" + strconv.Itoa(port.IntValue()) + probe.HTTPGet.Path
	WaitFor(t, podName+"'s readiness probe "+url, time.Minute, func(ctx context.Context) error {
		code, body, err := HTTPGet(ctx, url, "", nil)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("HTTP %d: %.200s", code, strings.TrimSpace(string(body)))
		}
		return nil
	}, tp.Proc)
	return tp
}
