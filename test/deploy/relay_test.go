package deploy

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/opview/opview/internal/promtest"
)

// TestRelayImageMatchesMakefile: the manifests run the image `make image` builds and
// `k3s ctr images import` registers, under the name the kubelet looks up.
func TestRelayImageMatchesMakefile(t *testing.T) {
	mk, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^(IMAGE|IMAGE_TAG)\s*\?=\s*(\S+)\s*$`).FindAllStringSubmatch(string(mk), -1) {
		vars[m[1]] = m[2]
	}
	if vars["IMAGE"] == "" || vars["IMAGE_TAG"] == "" {
		t.Fatalf("Makefile: IMAGE ?= and IMAGE_TAG ?= not found (have %v)", vars)
	}
	want := vars["IMAGE"] + ":" + vars["IMAGE_TAG"]
	relay := container(t, deployment(t, render(t, k3sDir), "prometheus"), "relay")
	if relay.Image != want {
		t.Errorf("relay container image %q, `make image` builds %q", relay.Image, want)
	}
	if !strings.Contains(strings.SplitN(want, "/", 2)[0], ".") && !strings.HasPrefix(want, "localhost/") {
		t.Errorf("image %q has no registry host: containerd and the kubelet would both prefix docker.io/, and a missing import would pull someone else's image", want)
	}
}

// TestRelaySidecarArgs starts the real relay with the sidecar's arguments (listen address and
// state file moved to the test's own) and checks it serves: flags the binary does not know, or
// values it refuses, fail here rather than in a crash-looping pod.
func TestRelaySidecarArgs(t *testing.T) {
	relay := container(t, deployment(t, render(t, k3sDir), "prometheus"), "relay")
	if len(relay.Command) != 0 {
		t.Fatalf("relay container overrides the image entrypoint with %v", relay.Command)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "opview-relay")
	build := exec.Command("go", "build", "-o", bin, "./exporter/cmd/opview-relay")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./exporter/cmd/opview-relay: %v\n%s", err, out)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	var args []string
	var sawListen, sawState, sawToken bool
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(secretFixtures["deploy/k3s/secrets/relay-write-token"]), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, a := range relay.Args {
		switch {
		case strings.HasPrefix(a, "--web.write-token-file="):
			path := strings.TrimPrefix(a, "--web.write-token-file=")
			if !mountedFrom(relay.VolumeMounts, path, "relay-write-token") {
				t.Errorf("--web.write-token-file=%s is not in the relay-write-token volume's mount", path)
			}
			a, sawToken = "--web.write-token-file="+tokenFile, true
		case strings.HasPrefix(a, "--web.listen-address="):
			a, sawListen = "--web.listen-address="+addr, true
		case strings.HasPrefix(a, "--persistence.file="):
			statePath := strings.TrimPrefix(a, "--persistence.file=")
			if !underMount(relay.VolumeMounts, statePath) {
				t.Errorf("--persistence.file=%s is not on a mounted volume (the root filesystem is read-only)", statePath)
			}
			a, sawState = "--persistence.file="+filepath.Join(dir, "state"), true
		}
		args = append(args, a)
	}
	if !sawListen {
		t.Fatal("relay args lack --web.listen-address")
	}
	if !sawState {
		t.Error("relay args lack --persistence.file: pushed groups and API-added sources would not survive a restart")
	}
	if !sawToken {
		t.Error("relay args lack --web.write-token-file: anyone on the LAN could push, delete and register sources")
	}
	var memLimit bool
	for _, e := range relay.Env {
		if e.Name == "GOMEMLIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil &&
			e.ValueFrom.ResourceFieldRef.Resource == "limits.memory" && e.ValueFrom.ResourceFieldRef.ContainerName == "relay" {
			memLimit = true
		}
	}
	if !memLimit || relay.Resources.Limits.Memory().IsZero() {
		t.Error("relay: want GOMEMLIMIT from the container's memory limit (downward API), so that the byte budget follows the pod's limit")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var logs promtest.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cancel()
		<-exited
	}()

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("relay %v exited: %v\n%s", args, err, logs.String())
		default:
		}
		resp, err := client.Get("http://" + addr + "/-/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay %v not ready within 20s (last: %v)\n%s", args, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(body), "opview_relay_build_info") {
		t.Errorf("relay /metrics lacks opview_relay_build_info:\n%.500s", body)
	}
	// With the bundle's arguments a push without the token is refused.
	resp, err = client.Post("http://"+addr+"/metrics/job/x", "text/plain", strings.NewReader("x 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("push without the token: HTTP %d, want 401", resp.StatusCode)
	}
}

// mountedFrom reports whether p lies under a mount of the named volume.
func mountedFrom(mounts []corev1.VolumeMount, p, volume string) bool {
	for _, m := range mounts {
		if m.Name == volume && strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return true
		}
	}
	return false
}

func underMount(mounts []corev1.VolumeMount, p string) bool {
	for _, m := range mounts {
		if !m.ReadOnly && strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return true
		}
	}
	return false
}
