//go:build e2e

package framework

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
)

const (
	apiServerPort = 6443
	kineAddr      = "127.0.0.1:2379"
	fieldManager  = "opview-e2e"
)

// Cluster is a k3s-like control plane in the node namespace: kine (sqlite), kube-apiserver,
// kube-controller-manager and kube-scheduler, each on its own identity, with clients for the test.
// StartNode adds the node that runs the pods.
type Cluster struct {
	Env      *Env
	Dir      string
	Versions Versions
	Procs    *Procs
	CA       *CA

	URL        string // https://NodeIP:6443
	Token      string // bearer token of user admin (system:masters)
	Kubeconfig string // kubeconfig of admin, for out-of-cluster clients (operators)

	Config  *rest.Config
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	mapper  *restmapper.DeferredDiscoveryRESTMapper

	warnings *warningRecorder
	// APIServer, ControllerManager and Scheduler are the control plane's processes.
	APIServer, ControllerManager, Scheduler *Proc

	tokens map[string]string // identity name -> token (tokens.csv)
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

// identity is a client of the API server authenticated by a token of tokens.csv.
type identity struct{ name, user, groups string }

var identities = []identity{
	{"admin", "admin", "system:masters"},
	{"kube-controller-manager", "system:kube-controller-manager", ""},
	{"kube-scheduler", "system:kube-scheduler", ""},
	{"kubelet", "system:node:" + NodeName, "system:nodes"},
	{"kube-proxy", "system:kube-proxy", ""},
}

// StartCluster starts kine, kube-apiserver, kube-controller-manager and kube-scheduler and waits
// until the API server is ready and the default namespace exists. Everything stops at the end of t.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	e := Require(t)
	v, err := LoadVersions()
	if err != nil {
		Fatal(t, err)
	}
	dir := t.TempDir()
	c := &Cluster{Env: e, Dir: dir, Versions: v, Procs: NewProcs(t, dir), warnings: &warningRecorder{}, tokens: map[string]string{}}
	bin := func(name string) string { return RequireBinary(t, Binary(name, v.Kubernetes, name)) }
	kine := RequireBinary(t, Binary("kine", v.Kine, "kine"))

	pki := filepath.Join(dir, "pki")
	if err := os.MkdirAll(pki, 0o700); err != nil {
		Fatal(t, err)
	}
	if c.CA, err = NewCA(pki); err != nil {
		Fatalf(t, "CA: %v", err)
	}
	apiCert, apiKey, err := c.CA.Serving("kube-apiserver",
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		NodeIP, "127.0.0.1", KubernetesService)
	if err != nil {
		Fatalf(t, "API server certificate: %v", err)
	}
	if err := writeServiceAccountKey(pki); err != nil {
		Fatalf(t, "service account key: %v", err)
	}
	var csv strings.Builder
	for _, id := range identities {
		tok := RandomHex(16)
		c.tokens[id.name] = tok
		fmt.Fprintf(&csv, "%s,%s,%s,%q\n", tok, id.user, id.user, id.groups)
	}
	if err := os.WriteFile(filepath.Join(pki, "tokens.csv"), []byte(csv.String()), 0o600); err != nil {
		Fatal(t, err)
	}
	c.Token = c.tokens["admin"]
	c.URL = fmt.Sprintf("https://%s:%d", NodeIP, apiServerPort)

	if err := os.MkdirAll(filepath.Join(dir, "kine"), 0o700); err != nil {
		Fatal(t, err)
	}
	kp := c.Procs.Start(t, "kine", kine,
		// kine's own default parameters (it adds none to a DSN given here), minus what modernc ignores.
		"--endpoint=sqlite://"+filepath.Join(dir, "kine", "state.db")+"?_journal_mode=WAL&_busy_timeout=30000&_synchronous=NORMAL&_txlock=immediate",
		"--listen-address="+kineAddr,
		"--metrics-bind-address=127.0.0.1:2381")
	WaitFor(t, "kine to listen on "+kineAddr, time.Minute, func(ctx context.Context) error { return DialOK(ctx, kineAddr) }, kp)

	c.APIServer = c.Procs.Start(t, "kube-apiserver", bin("kube-apiserver"),
		"--etcd-servers=http://"+kineAddr,
		fmt.Sprintf("--secure-port=%d", apiServerPort),
		"--advertise-address="+NodeIP,
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file="+apiCert,
		"--tls-private-key-file="+apiKey,
		"--client-ca-file="+c.CA.File,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+filepath.Join(pki, "sa.pub"),
		"--service-account-signing-key-file="+filepath.Join(pki, "sa.key"),
		"--token-auth-file="+filepath.Join(pki, "tokens.csv"),
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--service-cluster-ip-range="+ServiceCIDR,
		"--profiling=false",
	)

	c.Config = &rest.Config{
		Host:            c.URL,
		BearerToken:     c.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CA.PEM},
		QPS:             100,
		Burst:           200,
		WarningHandler:  c.warnings,
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		Fatal(t, err)
	}
	if c.Dynamic, err = dynamic.NewForConfig(c.Config); err != nil {
		Fatal(t, err)
	}
	c.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Client.Discovery()))
	WaitFor(t, "kube-apiserver /readyz", 3*time.Minute, func(ctx context.Context) error {
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Raw()
		if err != nil {
			return fmt.Errorf("%v %s", err, body)
		}
		return nil
	}, kp, c.APIServer)
	// Namespaces such as default are created by the API server's own controllers shortly after.
	WaitFor(t, "namespace default", time.Minute, func(ctx context.Context) error {
		_, err := c.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err
	}, c.APIServer)
	c.Kubeconfig = c.WriteKubeconfig(t, "admin")

	kcm := c.WriteKubeconfig(t, "kube-controller-manager")
	c.ControllerManager = c.Procs.Start(t, "kube-controller-manager", bin("kube-controller-manager"),
		"--kubeconfig="+kcm, "--authentication-kubeconfig="+kcm, "--authorization-kubeconfig="+kcm,
		"--bind-address=127.0.0.1", "--secure-port=10257", "--cert-dir="+filepath.Join(dir, "kcm-certs"),
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+filepath.Join(pki, "sa.key"),
		"--root-ca-file="+c.CA.File,
		"--allocate-node-cidrs=true", "--cluster-cidr="+ClusterCIDR, "--node-cidr-mask-size=24",
		"--service-cluster-ip-range="+ServiceCIDR,
		"--configure-cloud-routes=false",
		"--profiling=false",
	)
	sched := c.WriteKubeconfig(t, "kube-scheduler")
	c.Scheduler = c.Procs.Start(t, "kube-scheduler", bin("kube-scheduler"),
		"--kubeconfig="+sched, "--authentication-kubeconfig="+sched, "--authorization-kubeconfig="+sched,
		"--bind-address=127.0.0.1", "--secure-port=10259", "--leader-elect=false", "--profiling=false",
	)
	// The controller manager is serving once the service account controller has given the default
	// namespace its ServiceAccount (pods need it).
	WaitFor(t, "the default ServiceAccount (kube-controller-manager)", 2*time.Minute, func(ctx context.Context) error {
		_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	}, c.ControllerManager, c.Scheduler)
	c.warnings.take()
	return c
}

// WriteKubeconfig writes a kubeconfig for one of the cluster's identities (admin,
// kube-controller-manager, kube-scheduler, kubelet, kube-proxy) and returns its path.
func (c *Cluster) WriteKubeconfig(t testing.TB, name string) string {
	t.Helper()
	tok, ok := c.tokens[name]
	if !ok {
		Fatalf(t, "no identity %q", name)
	}
	ca, _ := json.Marshal(c.CA.PEM) // []byte marshals to base64
	path := filepath.Join(c.Dir, name+".kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: e2e
  context: {cluster: e2e, user: %s}
current-context: e2e
`, c.URL, ca, name, tok, name)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		Fatal(t, err)
	}
	return path
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

// MustObjects decodes YAML written in a test.
func MustObjects(t testing.TB, y string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := DecodeYAML(strings.NewReader(y))
	if err != nil {
		Fatal(t, err)
	}
	return objs
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

// ObjName names an object in messages: "Kind name (namespace ns)".
func ObjName(o *unstructured.Unstructured) string {
	name := o.GetKind() + " " + o.GetName()
	if ns := o.GetNamespace(); ns != "" {
		name += " (namespace " + ns + ")"
	}
	return name
}

// Apply server-side applies each object with strict field validation, in order, and fails on any
// rejection or warning (Pod Security, unknown or duplicate fields, deprecations). CRDs are waited
// for until they are established, so later objects may use them. Namespaced objects without a
// namespace go to default.
func (c *Cluster) Apply(ctx context.Context, objs []*unstructured.Unstructured) error {
	return c.ApplyIn(ctx, "default", objs)
}

// ApplyIn is Apply with namespace as the namespace of namespaced objects that name none (what
// `helm install --namespace` and `kubectl apply -n` do).
func (c *Cluster) ApplyIn(ctx context.Context, namespace string, objs []*unstructured.Unstructured) error {
	for _, o := range objs {
		if err := c.applyOne(ctx, namespace, o); err != nil {
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

// resource is the dynamic client for an object's kind and namespace, and the object with the
// namespace it goes to (namespace when it names none).
func (c *Cluster) resource(o *unstructured.Unstructured, namespace string) (dynamic.ResourceInterface, *unstructured.Unstructured, error) {
	gvk := o.GroupVersionKind()
	mapping, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		c.mapper.Reset()
		if mapping, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", ObjName(o), err)
		}
	}
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		if o.GetNamespace() == "" {
			o = o.DeepCopy()
			o.SetNamespace(namespace)
		}
		return c.Dynamic.Resource(mapping.Resource).Namespace(o.GetNamespace()), o, nil
	}
	return c.Dynamic.Resource(mapping.Resource), o, nil
}

func (c *Cluster) applyOne(ctx context.Context, namespace string, o *unstructured.Unstructured) error {
	ri, o, err := c.resource(o, namespace)
	if err != nil {
		return err
	}
	body, err := json.Marshal(o.Object)
	if err != nil {
		return err
	}
	c.warnings.take()
	force := true
	_, err = ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
		FieldManager: fieldManager, Force: &force, FieldValidation: "Strict",
	})
	if err != nil {
		return fmt.Errorf("apply %s: %w", ObjName(o), err)
	}
	if w := c.warnings.take(); len(w) > 0 {
		return fmt.Errorf("apply %s: the API server warned: %s", ObjName(o), strings.Join(w, "; "))
	}
	return nil
}

// ApplyStatus server-side applies the status subresource of an object (what a controller writes,
// such as a LoadBalancer Service's ingress addresses).
func (c *Cluster) ApplyStatus(ctx context.Context, o *unstructured.Unstructured) error {
	ri, o, err := c.resource(o, "default")
	if err != nil {
		return err
	}
	body, err := json.Marshal(o.Object)
	if err != nil {
		return err
	}
	force := true
	if _, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
		FieldManager: fieldManager, Force: &force,
	}, "status"); err != nil {
		return fmt.Errorf("apply the status of %s: %w", ObjName(o), err)
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

// IgnoreNotFound is nil for a NotFound error, else err.
func IgnoreNotFound(err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
