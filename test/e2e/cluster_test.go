//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

const (
	apiServerPort = 6443
	kineAddr      = "127.0.0.1:2379"
	fieldManager  = "opview-e2e"
)

// Cluster is a k3s-like control plane: kine (sqlite) and kube-apiserver in the node namespace,
// with clients for the test. There is no kubelet, scheduler or controller-manager: the test plays
// them (starts processes, writes EndpointSlices).
type Cluster struct {
	t        *testing.T
	Dir      string
	Versions Versions
	Procs    *Procs

	URL        string // https://NodeIP:6443
	Token      string // bearer token of user admin (system:masters)
	CAFile     string // CA of the API server's serving certificate
	Kubeconfig string // kubeconfig for out-of-cluster clients (operators)

	Config  *rest.Config
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	mapper  *restmapper.DeferredDiscoveryRESTMapper

	warnings *warningRecorder
	apiProc  *Proc
}

// warningRecorder keeps the API server's warnings (Pod Security, deprecations, unknown fields).
type warningRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningRecorder) HandleWarningHeader(code int, agent, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warningRecorder) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.msgs
	w.msgs = nil
	return m
}

// StartCluster starts kine and kube-apiserver and waits until /readyz passes.
func StartCluster(t *testing.T) *Cluster {
	t.Helper()
	requireNetns(t)
	v, err := LoadVersions()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := &Cluster{t: t, Dir: dir, Versions: v, Procs: NewProcs(t, dir), warnings: &warningRecorder{}}
	kine := requireBinary(t, Binary("kine", v.Kine, "kine"))
	apiserver := requireBinary(t, Binary("kube-apiserver", v.Kubernetes, "kube-apiserver"))

	certs := filepath.Join(dir, "pki")
	if err := os.MkdirAll(certs, 0o700); err != nil {
		t.Fatal(err)
	}
	caPEM, err := writeServingCerts(certs)
	if err != nil {
		t.Fatalf("certificates: %v", err)
	}
	if err := writeServiceAccountKey(certs); err != nil {
		t.Fatalf("service account key: %v", err)
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	c.Token = hex.EncodeToString(tok)
	if err := os.WriteFile(filepath.Join(certs, "tokens.csv"), []byte(c.Token+",admin,admin,system:masters\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.CAFile = filepath.Join(certs, "ca.crt")
	c.URL = fmt.Sprintf("https://%s:%d", NodeIP, apiServerPort)

	if err := os.MkdirAll(filepath.Join(dir, "kine"), 0o700); err != nil {
		t.Fatal(err)
	}
	kp := c.Procs.Start("kine", kine,
		// kine's own default parameters (it adds none to a DSN given here), minus what modernc ignores.
		"--endpoint=sqlite://"+filepath.Join(dir, "kine", "state.db")+"?_journal_mode=WAL&_busy_timeout=30000&_synchronous=NORMAL&_txlock=immediate",
		"--listen-address="+kineAddr,
		"--metrics-bind-address=127.0.0.1:2381")
	WaitFor(t, "kine to listen on "+kineAddr, time.Minute, func(ctx context.Context) error { return DialOK(ctx, kineAddr) }, kp)

	c.apiProc = c.Procs.Start("kube-apiserver", apiserver,
		"--etcd-servers=http://"+kineAddr,
		fmt.Sprintf("--secure-port=%d", apiServerPort),
		"--advertise-address="+NodeIP,
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file="+filepath.Join(certs, "apiserver.crt"),
		"--tls-private-key-file="+filepath.Join(certs, "apiserver.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(certs, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(certs, "sa.key"),
		"--token-auth-file="+filepath.Join(certs, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.43.0.0/16",
		"--profiling=false",
	)

	c.Config = &rest.Config{
		Host:            c.URL,
		BearerToken:     c.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM},
		QPS:             100,
		Burst:           200,
		WarningHandler:  c.warnings,
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	if c.Dynamic, err = dynamic.NewForConfig(c.Config); err != nil {
		t.Fatal(err)
	}
	c.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Client.Discovery()))
	WaitFor(t, "kube-apiserver /readyz", 3*time.Minute, func(ctx context.Context) error {
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Raw()
		if err != nil {
			return fmt.Errorf("%v %s", err, body)
		}
		return nil
	}, kp, c.apiProc)
	// Namespaces such as default are created by the API server's own controllers shortly after.
	WaitFor(t, "namespace default", time.Minute, func(ctx context.Context) error {
		_, err := c.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err
	}, c.apiProc)
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, []byte(c.kubeconfig(caPEM)), 0o600); err != nil {
		t.Fatal(err)
	}
	c.warnings.take()
	return c
}

func (c *Cluster) kubeconfig(caPEM []byte) string {
	ca, _ := json.Marshal(caPEM) // []byte marshals to base64
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
`, c.URL, ca, c.Token)
}

func requireBinary(t *testing.T, path string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s is missing: run `make e2e-tools` (or `make e2e`, which builds it first)", path)
	}
	return path
}

// writeServingCerts writes ca.crt and apiserver.crt/key (valid for the node address, loopback and
// the in-cluster names) and returns the CA in PEM.
func writeServingCerts(dir string) ([]byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "opview-e2e-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP(NodeIP), net.ParseIP("127.0.0.1"), net.ParseIP("10.43.0.1")},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	files := map[string][]byte{
		"ca.crt":        caPEM,
		"apiserver.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"apiserver.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return nil, err
		}
	}
	return caPEM, nil
}

// writeServiceAccountKey writes sa.key and sa.pub (RSA), the service account token signing pair.
func writeServiceAccountKey(dir string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600)
}

// DecodeYAML splits a multi-document YAML (or JSON) stream into objects, skipping empty documents.
func DecodeYAML(r io.Reader) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// DecodeYAMLFiles decodes every file.
func DecodeYAMLFiles(paths ...string) ([]*unstructured.Unstructured, error) {
	var all []*unstructured.Unstructured
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		objs, err := DecodeYAML(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		all = append(all, objs...)
	}
	return all, nil
}

func objName(o *unstructured.Unstructured) string {
	name := o.GetKind() + " " + o.GetName()
	if ns := o.GetNamespace(); ns != "" {
		name += " (namespace " + ns + ")"
	}
	return name
}

// Apply server-side applies each object with strict field validation, in order, and fails on any
// rejection or warning (Pod Security, unknown or duplicate fields, deprecations). CRDs are waited
// for until they are established, so later objects may use them.
func (c *Cluster) Apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		if err := c.applyOne(ctx, o); err != nil {
			return err
		}
		if o.GetKind() == "CustomResourceDefinition" {
			if err := c.waitEstablished(ctx, o.GetName()); err != nil {
				return err
			}
			c.mapper.Reset()
		}
	}
	return nil
}

func (c *Cluster) applyOne(ctx context.Context, o *unstructured.Unstructured) error {
	gvk := o.GroupVersionKind()
	mapping, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		c.mapper.Reset()
		if mapping, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			return fmt.Errorf("%s: %w", objName(o), err)
		}
	}
	body, err := json.Marshal(o.Object)
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = c.Dynamic.Resource(mapping.Resource)
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := o.GetNamespace()
		if ns == "" {
			ns = "default"
		}
		ri = c.Dynamic.Resource(mapping.Resource).Namespace(ns)
	}
	c.warnings.take()
	force := true
	_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
		FieldManager: fieldManager, Force: &force, FieldValidation: "Strict",
	})
	if err != nil {
		return fmt.Errorf("apply %s: %w", objName(o), err)
	}
	if w := c.warnings.take(); len(w) > 0 {
		return fmt.Errorf("apply %s: the API server warned: %s", objName(o), strings.Join(w, "; "))
	}
	return nil
}

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func (c *Cluster) waitEstablished(ctx context.Context, name string) error {
	deadline := time.Now().Add(time.Minute)
	for {
		u, err := c.Dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, cd := range conds {
				m, _ := cd.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("CRD %s not established within a minute (last error: %v)", name, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// PlayEndpointController writes the EndpointSlice that the endpoint controller would write for
// Service ns/name when its selected Pod runs at ip with the given named container ports: one
// ready endpoint, one port per Service port (named like it, numbered by its targetPort).
func (c *Cluster) PlayEndpointController(ctx context.Context, ns, name, ip string, containerPorts map[string]int32) error {
	svc, err := c.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("service %s/%s: %w", ns, name, err)
	}
	ready := true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      name + "-e2e",
			Namespace: ns,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: name,
				discoveryv1.LabelManagedBy:   fieldManager,
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		}},
	}
	for _, sp := range svc.Spec.Ports {
		port := sp.TargetPort.IntVal
		if sp.TargetPort.StrVal != "" {
			p, ok := containerPorts[sp.TargetPort.StrVal]
			if !ok {
				return fmt.Errorf("service %s/%s port %q: targetPort %q names no container port of the pod (have %v)", ns, name, sp.Name, sp.TargetPort.StrVal, containerPorts)
			}
			port = p
		} else if port == 0 {
			port = sp.Port
		}
		spName, proto := sp.Name, sp.Protocol
		slice.Ports = append(slice.Ports, discoveryv1.EndpointPort{Name: &spName, Port: &port, Protocol: &proto})
	}
	_, err = c.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, slice, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		_, err = c.Client.DiscoveryV1().EndpointSlices(ns).Update(ctx, slice, metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("endpointslice for %s/%s: %w", ns, name, err)
	}
	return nil
}

// InstallCRDs installs Traefik's CRDs and the HelmChart/HelmChartConfig CRDs from their modules.
func (c *Cluster) InstallCRDs(ctx context.Context) {
	c.t.Helper()
	traefikDir := Artifact(c.t, "traefik-module")
	helmDir := Artifact(c.t, "helm-controller-module")
	objs, err := DecodeYAMLFiles(
		filepath.Join(traefikDir, "docs/content/reference/dynamic-configuration/kubernetes-crd-definition-v1.yml"),
		filepath.Join(helmDir, "pkg/crds/yaml/generated/helm.cattle.io_helmcharts.yaml"),
		filepath.Join(helmDir, "pkg/crds/yaml/generated/helm.cattle.io_helmchartconfigs.yaml"),
	)
	if err != nil {
		c.t.Fatalf("CRDs: %v", err)
	}
	if err := c.Apply(ctx, objs); err != nil {
		c.t.Fatalf("installing CRDs: %v", err)
	}
	c.t.Logf("installed %d CRDs (Traefik %s, helm-controller %s)", len(objs), c.Versions.Traefik, c.Versions.HelmController)
}

func metav1ListOptions() metav1.ListOptions { return metav1.ListOptions{} }

// ServiceAccountDir writes what kubelet mounts for a Pod's service account (token from the
// TokenRequest API, ca.crt, namespace) into a new folder under dir, and returns the environment
// kubelet gives the Pod to find the API server (its endpoint here: there is no kube-proxy).
func (c *Cluster) ServiceAccountDir(ctx context.Context, dir, ns, sa string) (string, []string) {
	c.t.Helper()
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptrTo(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatalf("token for service account %s/%s: %v", ns, sa, err)
	}
	saDir := filepath.Join(dir, "serviceaccount-"+sa)
	ca, err := os.ReadFile(c.CAFile)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := os.MkdirAll(saDir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	for name, content := range map[string][]byte{"token": []byte(tr.Status.Token), "ca.crt": ca, "namespace": []byte(ns)} {
		if err := os.WriteFile(filepath.Join(saDir, name), content, 0o644); err != nil {
			c.t.Fatal(err)
		}
	}
	return saDir, []string{"KUBERNETES_SERVICE_HOST=" + NodeIP, fmt.Sprintf("KUBERNETES_SERVICE_PORT=%d", apiServerPort)}
}

func ptrTo[T any](v T) *T { return &v }

// PlayKubeletPodStatus marks a Pod Running and Ready at ip, as kubelet would once its containers run.
func (c *Cluster) PlayKubeletPodStatus(ctx context.Context, ns, name, ip string) error {
	pod, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	pod.Status = corev1.PodStatus{
		Phase:     corev1.PodRunning,
		PodIP:     ip,
		PodIPs:    []corev1.PodIP{{IP: ip}},
		HostIP:    NodeIP,
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		},
	}
	for _, ct := range pod.Spec.Containers {
		pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: ct.Name, Image: ct.Image, Ready: true, Started: ptrTo(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	if _, err := c.Client.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("pod %s/%s status: %w", ns, name, err)
	}
	return nil
}
