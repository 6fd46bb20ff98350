//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The scenario runs in two network namespaces that TestMain creates and always deletes:
//   - the node (NodeIP on a veth, loopback up): kine, kube-apiserver, Traefik (its entrypoints are
//     the node's ports, as ServiceLB exposes them), the out-of-cluster operators and the test itself;
//   - a pod (PodIP): the processes that stand in for the bundle's Pods, bound to the same ports as
//     their containers. The hand-made EndpointSlices point at PodIP.
//
// Traffic never leaves these namespaces. TestMain creates them, re-executes the test binary inside
// the node namespace, then kills whatever is left in both and deletes them, even when the test
// panics or times out.
const (
	NodeIP = "10.42.0.1"
	PodIP  = "10.42.0.10"

	envNodeNS = "OPVIEW_E2E_NODE_NETNS" // set in the re-executed child: the namespace it runs in
	envPodNS  = "OPVIEW_E2E_POD_NETNS"
)

// skipReason is set when the scenario can't run here (not root); every test then skips with it.
var skipReason string

// podNetns is the pod namespace's name (only set in the child).
var podNetns string

func TestMain(m *testing.M) {
	if ns := os.Getenv(envNodeNS); ns != "" {
		podNetns = os.Getenv(envPodNS)
		os.Exit(m.Run())
	}
	if os.Geteuid() != 0 {
		skipReason = "the e2e scenario needs root to create network namespaces (ip netns add); run `make e2e` as root (CI does)"
		if os.Getenv("CI") == "true" {
			// CI must run the scenario, not report a green skip.
			fmt.Fprintln(os.Stderr, "e2e: CI=true but not root:", skipReason)
			os.Exit(1)
		}
		os.Exit(m.Run())
	}
	os.Exit(runInNamespaces())
}

// requireNetns skips the test when the scenario can't run here.
func requireNetns(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	if podNetns == "" {
		t.Fatal("e2e: not running inside the namespaces TestMain creates")
	}
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// runInNamespaces creates the namespaces, runs the tests in the node one and cleans up; it returns
// the exit code.
func runInNamespaces() int {
	if _, err := exec.LookPath("ip"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: the ip command (Debian package iproute2) is needed to create network namespaces")
		return 1
	}
	suffix := fmt.Sprintf("%d", os.Getpid())
	node, pod := "opview-e2e-"+suffix, "opview-e2e-"+suffix+"-pod"
	vethNode, vethPod := "oe"+suffix+"n", "oe"+suffix+"p" // interface names: at most 15 bytes
	defer cleanupNamespaces(node, pod)
	for _, step := range [][]string{
		{"netns", "add", node},
		{"netns", "add", pod},
		{"-n", node, "link", "set", "lo", "up"},
		{"-n", pod, "link", "set", "lo", "up"},
		{"-n", node, "link", "add", vethNode, "type", "veth", "peer", "name", vethPod, "netns", pod},
		{"-n", node, "addr", "add", NodeIP + "/24", "dev", vethNode},
		{"-n", pod, "addr", "add", PodIP + "/24", "dev", vethPod},
		{"-n", node, "link", "set", vethNode, "up"},
		{"-n", pod, "link", "set", vethPod, "up"},
		{"-n", pod, "route", "add", "default", "via", NodeIP},
	} {
		if err := ipCmd(step...); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: setting up the network namespaces:", err)
			return 1
		}
	}
	artifacts, err := os.MkdirTemp("", "opview-e2e-artifacts-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer func() { _ = os.RemoveAll(artifacts) }()
	if err := prepare(artifacts); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: preparing binaries and modules:", err)
		return 1
	}
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", node, exe}, os.Args[1:]...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envNodeNS+"="+node, envPodNS+"="+pod, envArtifacts+"="+artifacts)
	// Interrupts reach the child through the process group; keep running until it has cleaned up.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: starting the tests in the namespace:", err)
		return 1
	}
	go func() {
		for s := range sig {
			_ = cmd.Process.Signal(s)
		}
	}()
	if err := cmd.Wait(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		fmt.Fprintln(os.Stderr, "e2e: tests in the namespace:", err)
		return 1
	}
	return 0
}

// cleanupNamespaces ends every process still in the namespaces (started by this test: nothing
// else runs there), then deletes them.
func cleanupNamespaces(namespaces ...string) {
	pids := func() []int {
		var all []int
		for _, ns := range namespaces {
			out, _ := exec.Command("ip", "netns", "pids", ns).Output()
			for _, f := range strings.Fields(string(out)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
					all = append(all, pid)
				}
			}
		}
		return all
	}
	for _, pid := range pids() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(pids()) > 0 && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond) // polling for exits, not synchronising
	}
	for _, pid := range pids() {
		fmt.Fprintf(os.Stderr, "e2e: killing pid %d left in the namespaces\n", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, ns := range namespaces {
		if err := ipCmd("netns", "delete", ns); err != nil && !strings.Contains(err.Error(), "No such file") {
			fmt.Fprintln(os.Stderr, "e2e: deleting namespace:", err)
		}
	}
}
