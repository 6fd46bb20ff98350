//go:build e2e

package framework

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The scenario runs in network namespaces that Main creates and always deletes:
//   - the node (NodeIP on a veth, loopback up, the pods' bridge cni0 at 10.42.0.1): the control
//     plane, containerd, kubelet, kube-proxy and the test itself;
//   - the LAN (LANIP on the veth's peer): what sits outside the cluster, such as the operators
//     that run on a laptop and reach the node through the ports Traefik's Service exposes.
//
// Pods get network namespaces of their own from the CNI bridge plugin. Traffic never leaves these
// namespaces. Main re-executes the test binary inside the node namespace and in a mount namespace
// of its own (so whatever containerd and kubelet mount vanishes with it); when it ends, however it
// ends, Main kills what is left in the namespaces and in the test's cgroup and deletes them.
const (
	NodeIP = "192.168.77.10"
	LANIP  = "192.168.77.1"
	// PodCIDR is the node's pod range (k3s's first node gets 10.42.0.0/24 of 10.42.0.0/16).
	PodCIDR     = "10.42.0.0/24"
	ClusterCIDR = "10.42.0.0/16"
	// ServiceCIDR is k3s's default; the kubernetes Service gets its first address.
	ServiceCIDR       = "10.43.0.0/16"
	KubernetesService = "10.43.0.1"

	envChild     = "OPVIEW_E2E_CHILD" // set in the re-executed child
	envNodeNS    = "OPVIEW_E2E_NODE_NETNS"
	envLANNS     = "OPVIEW_E2E_LAN_NETNS"
	envWork      = "OPVIEW_E2E_WORK"
	envCgroup    = "OPVIEW_E2E_CGROUP"
	envArtifacts = "OPVIEW_E2E_ARTIFACTS"
)

// Env is what the child test process knows about the namespaces it runs in.
type Env struct {
	NodeNetns, LANNetns string
	// Work is the folder every component's files live under; Main removes it at the end.
	Work string
	// Cgroup is the cgroup path (the same in every v1 hierarchy) that kubelet uses as its root.
	Cgroup string
	// Artifacts is where Main prepared binaries and module folders before entering the namespaces.
	Artifacts string
}

var (
	env        *Env
	skipReason string
)

// Main is TestMain for the e2e package. Outside the namespaces it checks for root, prepares what
// needs the network (prepare gets a folder to fill), creates the namespaces, runs the tests in the
// node namespace and cleans up; inside them it runs the tests. It returns the exit code.
func Main(m *testing.M, prepare func(ctx context.Context, dir string) error) int {
	if os.Getenv(envChild) != "" {
		env = &Env{
			NodeNetns: os.Getenv(envNodeNS), LANNetns: os.Getenv(envLANNS), Work: os.Getenv(envWork),
			Cgroup: os.Getenv(envCgroup), Artifacts: os.Getenv(envArtifacts),
		}
		return m.Run()
	}
	if os.Geteuid() != 0 {
		skipReason = "the e2e scenario needs root (network namespaces, containerd, kubelet); run `make e2e` as root (CI does)"
		if os.Getenv("CI") == "true" {
			// CI must run the scenario, not report a green skip.
			fmt.Fprintln(os.Stderr, "e2e: CI=true but not root:", skipReason)
			return 1
		}
		return m.Run()
	}
	flag.Parse() // for -test.timeout, which the child's deadline is cut from
	return runInNamespaces(prepare)
}

// childTimeout is what is left of go test's -timeout for the tests in the namespaces, less a
// margin for the sweep: go test kills this process (SIGQUIT, then SIGKILL 5 s later) one minute
// after the timeout, counted from its start, preparation included, so the child must give up
// first and leave the sweep its time.
func childTimeout(start time.Time) string {
	f := flag.Lookup("test.timeout")
	if f == nil {
		return ""
	}
	total, err := time.ParseDuration(f.Value.String())
	if err != nil || total <= 0 {
		return ""
	}
	left := total - time.Since(start) - 15*time.Second
	if left < time.Second {
		left = time.Second
	}
	return "-test.timeout=" + left.Round(time.Second).String()
}

// hurry is set when go test's SIGQUIT has come: the sweep has 5 s before SIGKILL.
var hurry atomic.Bool

// Require skips the test when the scenario can't run here and returns the namespaces' Env.
func Require(t testing.TB) *Env {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if env == nil {
		Fatal(t, "e2e: not running inside the namespaces that framework.Main creates")
	}
	return env
}

// IP runs the ip command (iproute2).
func IP(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Netns is a network namespace that ip netns manages (/run/netns/<Name>).
type Netns struct{ Name string }

// CreateNetns adds a network namespace with its loopback up.
func CreateNetns(name string) (*Netns, error) {
	if err := IP("netns", "add", name); err != nil {
		return nil, err
	}
	ns := &Netns{Name: name}
	if err := IP("-n", name, "link", "set", "lo", "up"); err != nil {
		ns.Delete()
		return nil, err
	}
	return ns, nil
}

// Path is the namespace's file, for nsenter --net and setns.
func (ns *Netns) Path() string { return filepath.Join("/run/netns", ns.Name) }

// Command is a command that runs name with args in the namespace (in a mount namespace of its own,
// as ip netns exec makes one).
func (ns *Netns) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Link joins two namespaces with a veth pair: addrA/prefix on a's end (named ifA), addrB/prefix on
// b's (ifB); interface names have at most 15 bytes.
func Link(a *Netns, ifA, addrA string, b *Netns, ifB, addrB string, prefix int) error {
	for _, step := range [][]string{
		{"-n", a.Name, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b.Name},
		{"-n", a.Name, "addr", "add", fmt.Sprintf("%s/%d", addrA, prefix), "dev", ifA},
		{"-n", b.Name, "addr", "add", fmt.Sprintf("%s/%d", addrB, prefix), "dev", ifB},
		{"-n", a.Name, "link", "set", ifA, "up"},
		{"-n", b.Name, "link", "set", ifB, "up"},
	} {
		if err := IP(step...); err != nil {
			return err
		}
	}
	return nil
}

// Pids lists the processes in the namespace.
func (ns *Netns) Pids() []int {
	out, _ := exec.Command("ip", "netns", "pids", ns.Name).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Delete removes the namespace (its processes must be gone).
func (ns *Netns) Delete() {
	if err := IP("netns", "delete", ns.Name); err != nil && !strings.Contains(err.Error(), "No such file") {
		fmt.Fprintln(os.Stderr, "e2e: deleting namespace:", err)
	}
}

// runInNamespaces creates the namespaces, work folder and cgroup, runs the tests in the node
// namespace and cleans up; it returns the exit code.
func runInNamespaces(prepare func(context.Context, string) error) (code int) {
	for _, cmd := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(cmd); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: the %s command is needed (Debian packages iproute2, util-linux)\n", cmd)
			return 1
		}
	}
	// Interrupts reach the child through the process group; keep running until it has cleaned up.
	// go test's SIGQUIT (the test ran a minute past -timeout) ends preparation or the child at
	// once and hurries the sweep.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var child atomic.Pointer[os.Process]
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGQUIT)
	defer signal.Stop(sig)
	go func() {
		for s := range sig {
			p := child.Load()
			switch {
			case s == syscall.SIGQUIT:
				hurry.Store(true)
				fmt.Fprintln(os.Stderr, "e2e: go test's SIGQUIT: ending the tests and sweeping")
				cancel()
				if p != nil {
					_ = p.Kill()
				}
			case p != nil:
				_ = p.Signal(s)
			default:
				cancel()
			}
		}
	}()
	id := strconv.Itoa(os.Getpid())
	work, err := os.MkdirTemp("", "opview-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	var node, lan *Netns
	cg := cgroupFor("opview-e2e-" + id)
	defer func() {
		namespaces := append([]*Netns{node, lan}, extraNamespaces(node, lan)...)
		sweep(cg, namespaces...)
		if err := os.RemoveAll(work); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: removing the work folder:", err)
		}
		if left := leftovers(work, cg, namespaces...); len(left) > 0 {
			fmt.Fprintf(os.Stderr, "e2e: left behind after the test:\n  %s\n", strings.Join(left, "\n  "))
			if code == 0 {
				code = 1
			}
		}
	}()
	artifacts := filepath.Join(work, "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	start := time.Now()
	mainStart := start
	if err := prepare(ctx, artifacts); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: preparing binaries, images and modules:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: prepared in %s\n", time.Since(start).Round(time.Second))
	if node, err = CreateNetns("opview-e2e-" + id); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: node namespace:", err)
		return 1
	}
	if lan, err = CreateNetns("opview-e2e-" + id + "-lan"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: LAN namespace:", err)
		return 1
	}
	if err := Link(node, "oe"+id+"n", NodeIP, lan, "oe"+id+"l", LANIP, 24); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: linking the node to the LAN:", err)
		return 1
	}
	// The node's default route points at the LAN, as a real node's does (the API server and kubelet
	// pick their address from it); nothing answers beyond.
	if err := IP("-n", node.Name, "route", "add", "default", "via", LANIP); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if err := cg.create(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: cgroup:", err)
		return 1
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	tmp := filepath.Join(work, "tmp")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	// nsenter joins the node's network namespace; the mount namespace is the child's own
	// (Unshareflags: Go makes its root private, so nothing mounted inside reaches the host).
	args := append([]string{"--net=" + node.Path(), "--", exe}, os.Args[1:]...)
	if timeout := childTimeout(mainStart); timeout != "" {
		args = append(args, timeout) // the last -test.timeout wins
	}
	cmd := exec.Command("nsenter", args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	cmd.Env = append(os.Environ(), envChild+"=1", envNodeNS+"="+node.Name, envLANNS+"="+lan.Name,
		envWork+"="+work, envCgroup+"="+cg.path, envArtifacts+"="+artifacts, "TMPDIR="+tmp)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting the tests in the namespace:", err)
		return 1
	}
	child.Store(cmd.Process)
	if err := cmd.Wait(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "e2e: tests in the namespace:", err)
		return 1
	}
	return 0
}

// sweep ends every process still in the namespaces or the cgroup (all started by the test:
// nothing else runs there), removes the cgroup and deletes the namespaces.
func sweep(cg *cgroup, namespaces ...*Netns) {
	pids := func() []int {
		var all []int
		for _, ns := range namespaces {
			if ns != nil {
				all = append(all, ns.Pids()...)
			}
		}
		return append(all, cg.pids()...)
	}
	grace := 10 * time.Second
	if hurry.Load() {
		grace = 0
	}
	for _, pid := range pids() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	for len(pids()) > 0 && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond) // polling for exits, not synchronising
	}
	for i := 0; i < 50 && len(pids()) > 0; i++ {
		for _, pid := range pids() {
			if i == 0 {
				fmt.Fprintf(os.Stderr, "e2e: killing pid %d left behind\n", pid)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := cg.remove(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: removing the cgroup:", err)
	}
	for _, ns := range namespaces {
		if ns != nil {
			ns.Delete()
		}
	}
}

// leftovers lists what the test left on the host: mounts under its work folder (there can be
// none: they were made in the test's own mount namespace), its cgroup, its namespaces, its work
// folder.
func leftovers(work string, cg *cgroup, namespaces ...*Netns) []string {
	var left []string
	for _, m := range mountsUnder(work) {
		left = append(left, "mount "+m)
	}
	for _, h := range hierarchies() {
		if _, err := os.Stat(filepath.Join(h, cg.path)); err == nil {
			left = append(left, "cgroup "+filepath.Join(h, cg.path))
		}
	}
	for _, ns := range namespaces {
		if ns == nil {
			continue
		}
		if _, err := os.Stat(ns.Path()); err == nil {
			left = append(left, "network namespace "+ns.Name)
		}
	}
	if _, err := os.Stat(work); err == nil {
		left = append(left, "folder "+work)
	}
	return left
}
