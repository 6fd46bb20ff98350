//go:build e2e

package framework

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// More network namespaces than the node and the LAN that Main makes: a scenario builds its own
// (a load balancer, more nodes' Traefik, a client) with NewNetns. They are named after the node
// namespace (<node>-<suffix>), so Main deletes whatever a test leaves of them however it ends
// (extraNamespaces), and the test deletes them when it ends.

// NewNetns creates the namespace <node namespace>-<suffix> with its loopback up. At the end of t
// every process left in it is killed and it is deleted.
func NewNetns(t testing.TB, suffix string) *Netns {
	t.Helper()
	e := Require(t)
	ns, err := CreateNetns(e.NodeNetns + "-" + suffix)
	if err != nil {
		Fatal(t, err)
	}
	t.Cleanup(func() {
		killAll(ns.Pids)
		ns.Delete()
	})
	return ns
}

// killAll sends SIGKILL to the processes pids lists until none is left (at most 5 s).
func killAll(pids func() []int) {
	for i := 0; i < 50; i++ {
		left := pids()
		if len(left) == 0 {
			return
		}
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond) // polling for exits, not synchronising
	}
}

// extraNamespaces lists the namespaces the tests made beside node's (named <node>-<suffix>),
// lan excepted: Main deletes them with the others. In the tests' own mount namespace they were
// mounts; here only their files are left.
func extraNamespaces(node, lan *Netns) []*Netns {
	if node == nil {
		return nil
	}
	paths, _ := filepath.Glob(filepath.Join("/run/netns", node.Name+"-*"))
	var out []*Netns
	for _, p := range paths {
		if lan != nil && filepath.Base(p) == lan.Name {
			continue
		}
		out = append(out, &Netns{Name: filepath.Base(p)})
	}
	return out
}

// AddBridge adds a bridge (a LAN switch) named name in the namespace, up, without an address.
func (ns *Netns) AddBridge(name string) error {
	if err := IP("-n", ns.Name, "link", "add", name, "type", "bridge"); err != nil {
		return err
	}
	return IP("-n", ns.Name, "link", "set", name, "up")
}

// Plug joins ns to the bridge in the namespace sw with a veth pair: addr/prefix on ns's end
// (named ifNS), the other end (ifSW) a port of the bridge.
func Plug(sw *Netns, bridge, ifSW string, ns *Netns, ifNS, addr string, prefix int) error {
	for _, step := range [][]string{
		{"-n", sw.Name, "link", "add", ifSW, "type", "veth", "peer", "name", ifNS, "netns", ns.Name},
		{"-n", sw.Name, "link", "set", ifSW, "master", bridge},
		{"-n", sw.Name, "link", "set", ifSW, "up"},
		{"-n", ns.Name, "addr", "add", fmt.Sprintf("%s/%d", addr, prefix), "dev", ifNS},
		{"-n", ns.Name, "link", "set", ifNS, "up"},
	} {
		if err := IP(step...); err != nil {
			return err
		}
	}
	return nil
}

// DialContext opens a connection from inside the namespace: the calling goroutine's thread joins
// it for the socket's creation and returns to its own namespace before it runs anything else.
// The thread must live on: a child process started from it with Pdeathsig (every Proc) would be
// killed when it ends. The connection, once made, is used from anywhere.
func (ns *Netns) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer func() { _ = own.Close() }()
	target, err := os.Open(ns.Path())
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer func() { _ = target.Close() }()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("joining network namespace %s: %w", ns.Name, err)
	}
	var d net.Dialer
	c, dialErr := d.DialContext(ctx, network, addr)
	if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
		// Left locked: the thread is in the wrong namespace and ends with this goroutine.
		if c != nil {
			_ = c.Close()
		}
		return nil, fmt.Errorf("returning from network namespace %s: %w", ns.Name, err)
	}
	runtime.UnlockOSThread()
	return c, dialErr
}

// HTTPClient is an HTTP client whose connections start in the namespace, one per request (no
// keep-alive: a load balancer in between sees every request as a new connection).
func (ns *Netns) HTTPClient() *http.Client {
	return &http.Client{Transport: ns.Transport(), Timeout: 30 * time.Second}
}

// Transport is HTTPClient's transport.
func (ns *Netns) Transport() *http.Transport {
	return &http.Transport{DialContext: ns.DialContext, DisableKeepAlives: true}
}
