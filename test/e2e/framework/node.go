//go:build e2e

package framework

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodeName is the name the node registers under.
const NodeName = "e2e-node"

// cniBinDir is where Debian's containernetworking-plugins installs bridge, host-local, portmap.
const cniBinDir = "/usr/lib/cni"

// Node is the cluster's only node: containerd (Debian's, with its CRI plugin) with its root, state
// and socket under the test's folder, the CNI bridge for PodCIDR, kubelet with the cgroupfs driver
// under the test's cgroup, and kube-proxy in iptables mode, all in the node namespace.
type Node struct {
	Dir    string
	Socket string // containerd's
	Procs  *Procs

	Containerd, Kubelet, KubeProxy *Proc

	cluster *Cluster
	// bound are the host paths that node components write to whatever their flags say; they get
	// folders of the test's, mounted over them in the test's own mount namespace.
	bound []string
}

// Image is an image tarball (docker save format) to import into the node's containerd.
type Image struct {
	Ref string // the name:tag inside the tarball, as pods refer to it
	Tar string
}

// StartNode starts containerd, imports the images (pause must be among them: it is the sandbox
// image), starts kubelet and kube-proxy and waits until the node is Ready and kube-proxy has synced
// its rules. Everything stops at the end of t; the containers are killed and every mount under the
// node's folder removed.
func StartNode(t testing.TB, c *Cluster, pause Image, images ...Image) *Node {
	t.Helper()
	for _, cmd := range []string{"containerd", "ctr", "runc", "containerd-shim-runc-v2", "iptables", "mount"} {
		if _, err := exec.LookPath(cmd); err != nil {
			Fatalf(t, "the node needs %s: apt-get install containerd runc containernetworking-plugins iptables (.ci/run does)", cmd)
		}
	}
	if _, err := os.Stat(filepath.Join(cniBinDir, "bridge")); err != nil {
		Fatalf(t, "no CNI bridge plugin in %s: apt-get install containernetworking-plugins", cniBinDir)
	}
	// Under the work folder rather than t.TempDir: the folder's path prefixes unix sockets (kubelet's
	// device-plugins/kubelet.sock), which can't be longer than 107 bytes.
	dir, err := os.MkdirTemp(c.Env.Work, "node-")
	if err != nil {
		Fatal(t, err)
	}
	n := &Node{Dir: dir, cluster: c}
	n.Socket = filepath.Join(n.Dir, "containerd", "containerd.sock")
	// Registered first, so it runs after the node's processes have stopped.
	t.Cleanup(func() { n.teardown(t) })
	n.Procs = NewProcs(t, c.Dir)
	n.Procs.AddLogs(n.containerLogs)
	for _, d := range []string{"containerd", "cni/net.d", "cni/ipam", "kubelet", "kube-proxy", "var-lib-cni", "run-containerd", "var-log"} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
			Fatal(t, err)
		}
	}
	for host, own := range map[string]string{"/var/lib/cni": "var-lib-cni", "/run/containerd": "run-containerd", "/var/log": "var-log"} {
		if err := n.bind(filepath.Join(n.Dir, own), host); err != nil {
			Fatal(t, err)
		}
	}
	path := "PATH=" + os.Getenv("PATH") + ":/usr/local/sbin:/usr/sbin:/sbin"

	// containerd and its CNI configuration.
	if err := os.WriteFile(filepath.Join(n.Dir, "cni/net.d/10-opview-e2e.conflist"), []byte(n.cniConfig()), 0o644); err != nil {
		Fatal(t, err)
	}
	cfg := filepath.Join(n.Dir, "containerd", "config.toml")
	if err := os.WriteFile(cfg, []byte(n.containerdConfig(pause.Ref)), 0o644); err != nil {
		Fatal(t, err)
	}
	n.Containerd = n.Procs.StartSpec(t, Spec{Name: "containerd", Bin: "containerd", Args: []string{"--config", cfg}, Env: []string{path}})
	WaitFor(t, "containerd", time.Minute, func(ctx context.Context) error {
		_, err := n.Ctr(ctx, "version")
		return err
	}, n.Containerd)
	start := time.Now()
	for _, img := range append([]Image{pause}, images...) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		out, err := n.Ctr(ctx, "images", "import", img.Tar)
		cancel()
		if err != nil {
			Fatalf(t, "importing %s: %v", img.Ref, err)
		}
		if !strings.Contains(string(out), img.Ref) {
			Fatalf(t, "importing %s from %s: ctr reports %q, not that name", img.Ref, img.Tar, strings.TrimSpace(string(out)))
		}
	}
	t.Logf("imported %d images into containerd in %s", len(images)+1, time.Since(start).Round(100*time.Millisecond))

	// kubelet.
	if err := n.maskKernelTunables(); err != nil {
		Fatal(t, err)
	}
	kubeletCfg := filepath.Join(n.Dir, "kubelet", "config.yaml")
	if err := os.WriteFile(kubeletCfg, []byte(n.kubeletConfig()), 0o644); err != nil {
		Fatal(t, err)
	}
	n.Kubelet = n.Procs.StartSpec(t, Spec{Name: "kubelet", Bin: RequireBinary(t, Binary("kubelet", c.Versions.Kubernetes, "kubelet")), Env: []string{path}, Args: []string{
		"--config=" + kubeletCfg,
		"--kubeconfig=" + c.WriteKubeconfig(t, "kubelet"),
		"--root-dir=" + filepath.Join(n.Dir, "kubelet", "root"),
		"--node-ip=" + NodeIP,
		"--hostname-override=" + NodeName,
		"--v=1",
	}})
	WaitFor(t, "node "+NodeName+" Ready", 3*time.Minute, func(ctx context.Context) error {
		node, err := c.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return nil
				}
				return fmt.Errorf("condition Ready is %s: %s %s", cond.Status, cond.Reason, cond.Message)
			}
		}
		return fmt.Errorf("no Ready condition yet")
	}, n.Containerd, n.Kubelet)

	// kube-proxy.
	proxyCfg := filepath.Join(n.Dir, "kube-proxy", "config.yaml")
	if err := os.WriteFile(proxyCfg, []byte(n.kubeProxyConfig(c.WriteKubeconfig(t, "kube-proxy"))), 0o644); err != nil {
		Fatal(t, err)
	}
	n.KubeProxy = n.Procs.StartSpec(t, Spec{Name: "kube-proxy", Bin: RequireBinary(t, Binary("kube-proxy", c.Versions.Kubernetes, "kube-proxy")),
		Env: []string{path}, Args: []string{"--config=" + proxyCfg, "--v=1"}})
	WaitFor(t, "kube-proxy's rules for the kubernetes Service ("+KubernetesService+":443)", 2*time.Minute, func(ctx context.Context) error {
		return DialOK(ctx, KubernetesService+":443")
	}, n.KubeProxy)
	return n
}

// Ctr runs ctr against the node's containerd in the k8s.io namespace (the CRI plugin's).
func (n *Node) Ctr(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", n.Socket, "--namespace", "k8s.io"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (n *Node) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "opview-e2e",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, PodCIDR, filepath.Join(n.Dir, "cni", "ipam"))
}

// containerdConfig is Debian containerd 1.6's configuration for a node of the test's own: its
// paths under the node's folder, the pause image built by the test as the sandbox image.
// restrict_oom_score_adj: the test lacks CAP_SYS_RESOURCE, so runc can't give a sandbox the
// negative oom_score_adj kubelet asks for (every sandbox would die in runc create).
func (n *Node) containerdConfig(sandboxImage string) string {
	d := filepath.Join(n.Dir, "containerd")
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]

[grpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, filepath.Join(d, "root"), filepath.Join(d, "state"), n.Socket, filepath.Join(d, "opt"), sandboxImage,
		cniBinDir, filepath.Join(n.Dir, "cni", "net.d"))
}

// kubeletConfig: the cgroupfs driver under the test's cgroup; cgroup v1 allowed (kubelet 1.34
// refuses it unless failCgroupV1 is false); swap tolerated; the kernel's settings checked, never
// changed (maskKernelTunables); eviction and image garbage collection thresholds out of the way
// of a shared machine's disk; no cluster DNS (the bundle needs none).
func (n *Node) kubeletConfig() string {
	resolv := ""
	if _, err := os.Stat("/etc/resolv.conf"); err == nil {
		resolv = "/etc/resolv.conf"
	}
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://%s
cgroupDriver: cgroupfs
cgroupRoot: %s
failCgroupV1: false
failSwapOn: false
protectKernelDefaults: true
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: %q
oomScoreAdj: 0
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 95
evictionHard: {"memory.available": "1Mi", "nodefs.available": "1%%", "nodefs.inodesFree": "1%%", "imagefs.available": "1%%"}
`, n.Socket, n.cluster.Env.Cgroup, n.cluster.CA.File, resolv)
}

// kubeProxyConfig: iptables mode; nothing outside the node namespace touched (conntrack limits,
// which are global, left alone; no oom_score_adj change).
func (n *Node) kubeProxyConfig(kubeconfig string) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: %s}
mode: iptables
clusterCIDR: %s
hostnameOverride: %s
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
oomScoreAdj: 0
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
`, kubeconfig, ClusterCIDR, NodeName)
}

// bind mounts dir over target in the test's mount namespace (private: the host never sees it).
func (n *Node) bind(dir, target string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	return n.bindFile(dir, target)
}

// bindFile mounts source over target (a file over a file, or a folder over a folder).
func (n *Node) bindFile(source, target string) error {
	if err := syscall.Mount(source, target, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount %s on %s: %w", source, target, err)
	}
	n.bound = append(n.bound, target)
	return nil
}

// kubeletKernelTunables are the global (not per network namespace) sysctls that kubelet sets to
// these values at start, and with protectKernelDefaults refuses to start without.
var kubeletKernelTunables = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// maskKernelTunables keeps kubelet's hands off the host's kernel settings: in the test's mount
// namespace a file holding the value kubelet wants is mounted over each of those /proc/sys files,
// so kubelet (with protectKernelDefaults, which only checks) finds what it expects and the host
// keeps its own values.
func (n *Node) maskKernelTunables() error {
	dir := filepath.Join(n.Dir, "sysctl")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for flag, value := range kubeletKernelTunables {
		f := filepath.Join(dir, strings.ReplaceAll(flag, "/", "."))
		if err := os.WriteFile(f, []byte(value+"\n"), 0o644); err != nil {
			return err
		}
		if err := n.bindFile(f, filepath.Join("/proc/sys", flag)); err != nil {
			return err
		}
	}
	return nil
}

// teardown runs once the node's processes have stopped: it kills the containers (their processes
// are in the test's cgroup) and containerd's shims, removes the pods' cgroups, unmounts whatever
// containerd and kubelet mounted under the node's folder and the bind mounts.
func (n *Node) teardown(t testing.TB) {
	cg := &cgroup{path: n.cluster.Env.Cgroup}
	shims, _ := filepath.Glob(filepath.Join(n.Dir, "containerd", "state", "io.containerd.runtime.v2.task", "*", "*", "shim.pid"))
	kill := func() []int {
		pids := cg.pids()
		for _, f := range shims {
			if b, err := os.ReadFile(f); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && syscall.Kill(pid, 0) == nil {
					pids = append(pids, pid)
				}
			}
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return pids
	}
	for i := 0; i < 100 && len(kill()) > 0; i++ {
		time.Sleep(100 * time.Millisecond) // polling for exits, not synchronising
	}
	if err := cg.removeBelow(); err != nil {
		t.Logf("node teardown: %v", err)
	}
	for _, m := range mountsUnder(n.Dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Logf("node teardown: unmount %s: %v", m, err)
		}
	}
	for i := len(n.bound) - 1; i >= 0; i-- {
		if err := syscall.Unmount(n.bound[i], syscall.MNT_DETACH); err != nil {
			t.Logf("node teardown: unmount %s: %v", n.bound[i], err)
		}
	}
	if !t.Failed() { // kept for a look at the logs until Main removes the work folder
		if err := os.RemoveAll(n.Dir); err != nil {
			t.Logf("node teardown: %v", err)
		}
	}
}

// mountsUnder lists the mount points at or below dir in this mount namespace, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	var ms []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			ms = append(ms, mp)
		}
	}
	slices.SortFunc(ms, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return slices.Compact(ms)
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// containerLogs are the pods' container logs that kubelet wrote (/var/log/pods, bound to the
// node's folder), for the failure report.
func (n *Node) containerLogs() map[string]string {
	logs := map[string]string{}
	files, _ := filepath.Glob(filepath.Join(n.Dir, "var-log", "pods", "*", "*", "*.log"))
	for _, f := range files {
		rel, _ := filepath.Rel(filepath.Join(n.Dir, "var-log", "pods"), f)
		logs["container "+rel] = f
	}
	return logs
}

// Blackhole drops, in the node namespace, every packet sent to the given addresses before any NAT
// (raw table, PREROUTING for what comes from the pods, OUTPUT for the node's own), so a Service's
// cluster IP stops answering while its pods still do at their own addresses. It returns the undo.
func (n *Node) Blackhole(ctx context.Context, ips ...string) (func() error, error) {
	var rules [][]string
	for _, ip := range ips {
		for _, chain := range []string{"PREROUTING", "OUTPUT"} {
			rules = append(rules, []string{"-t", "raw", chain, "-d", ip + "/32", "-m", "comment", "--comment", "opview-e2e blackhole", "-j", "DROP"})
		}
	}
	iptables := func(op string, r []string) error {
		args := append([]string{"-w", r[0], r[1], op, r[2]}, r[3:]...)
		if out, err := exec.CommandContext(ctx, "iptables", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	undo := func() error {
		var errs []error
		for _, r := range rules {
			errs = append(errs, iptables("-D", r))
		}
		return errors.Join(errs...)
	}
	for i, r := range rules {
		if err := iptables("-I", r); err != nil {
			for _, done := range rules[:i] {
				_ = iptables("-D", done)
			}
			return nil, err
		}
	}
	return undo, nil
}
