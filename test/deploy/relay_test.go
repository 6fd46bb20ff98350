package deploy

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

// sidecar is the relay started as the bundle's Deployment runs it: the container's args (listen
// address, state file and token file moved to the test's own) and env (GOMEMLIMIT from the
// container's memory limit, as the downward API gives it).
type sidecar struct {
	url, token, state string
	memLimit          int64
	cmd               *exec.Cmd
	logs              *promtest.Buffer
	exited            chan error
}

var (
	relayBinOnce sync.Once
	relayBin     string
	relayBinErr  error
)

// buildRelay builds the relay once for the package's tests.
func buildRelay(t *testing.T) string {
	t.Helper()
	relayBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "opview-relay-bin")
		if err != nil {
			relayBinErr = err
			return
		}
		relayBin = filepath.Join(dir, "opview-relay")
		build := exec.Command("go", "build", "-o", relayBin, "./exporter/cmd/opview-relay")
		build.Dir = repoRoot
		if out, err := build.CombinedOutput(); err != nil {
			relayBinErr = fmt.Errorf("go build ./exporter/cmd/opview-relay: %v\n%s", err, out)
		}
	})
	if relayBinErr != nil {
		t.Fatal(relayBinErr)
	}
	return relayBin
}

// startSidecar starts the relay with the Deployment's args and env, its state in dir; it stops
// when the test ends (or by stop).
func startSidecar(t *testing.T, dir string) *sidecar {
	t.Helper()
	relay := container(t, deployment(t, render(t, k3sDir), "prometheus"), "relay")
	if len(relay.Command) != 0 {
		t.Fatalf("relay container overrides the image entrypoint with %v", relay.Command)
	}
	bin := buildRelay(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	sc := &sidecar{url: "http://" + addr, token: strings.TrimSpace(secretFixtures["deploy/k3s/secrets/relay-write-token"]), state: filepath.Join(dir, "state")}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(sc.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var args []string
	var sawListen, sawState, sawToken bool
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
			a, sawState = "--persistence.file="+sc.state, true
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
	env := []string{"PATH=" + os.Getenv("PATH")}
	for _, e := range relay.Env {
		if e.Name == "GOMEMLIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil &&
			e.ValueFrom.ResourceFieldRef.Resource == "limits.memory" && e.ValueFrom.ResourceFieldRef.ContainerName == "relay" {
			sc.memLimit = relay.Resources.Limits.Memory().Value()
			env = append(env, fmt.Sprintf("GOMEMLIMIT=%d", sc.memLimit)) // what the downward API gives
		}
	}
	if sc.memLimit == 0 {
		t.Fatal("relay: want GOMEMLIMIT from the container's memory limit (downward API), so that the byte budget follows the pod's limit")
	}

	sc.logs = &promtest.Buffer{}
	sc.cmd = exec.Command(bin, args...)
	sc.cmd.Env = env
	sc.cmd.Stdout, sc.cmd.Stderr = sc.logs, sc.logs
	if err := sc.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc.exited = make(chan error, 1)
	go func() { sc.exited <- sc.cmd.Wait() }()
	t.Cleanup(func() { sc.stop(t) })

	client := &http.Client{Timeout: 2 * time.Second}
	promtest.Eventually(t, 20*time.Second, "the relay to be ready with the sidecar's args", func() bool {
		select {
		case err := <-sc.exited:
			sc.exited <- err
			t.Fatalf("relay %v exited: %v\n%s", args, err, sc.logs.String())
		default:
		}
		resp, err := client.Get(sc.url + "/-/ready")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return sc
}

// stop sends SIGTERM, as the kubelet does, and waits for a clean exit (the state file saved).
func (sc *sidecar) stop(t *testing.T) {
	if sc.cmd.ProcessState != nil {
		return
	}
	_ = sc.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-sc.exited:
		sc.exited <- err
		if err != nil {
			t.Errorf("relay exited: %v\n%s", err, sc.logs.String())
		}
	case <-time.After(30 * time.Second):
		_ = sc.cmd.Process.Kill()
		t.Errorf("relay did not stop within 30s of SIGTERM")
	}
}

// peakRSS is the process's peak resident memory (VmHWM).
func (sc *sidecar) peakRSS(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", sc.cmd.Process.Pid))
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/<pid>/status")
	return 0
}

// TestRelaySidecarArgs starts the real relay with the sidecar's arguments and checks it serves:
// flags the binary does not know, or values it refuses, fail here rather than in a crash-looping
// pod. With them, a push without the token is refused.
func TestRelaySidecarArgs(t *testing.T) {
	sc := startSidecar(t, t.TempDir())
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(sc.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !strings.Contains(string(body), "opview_relay_build_info") {
		t.Errorf("relay /metrics lacks opview_relay_build_info:\n%.500s", body)
	}
	if v, _ := promtest.Value(promtest.Scrape(t, sc.url+"/metrics"), "opview_relay_store_budget_bytes", nil); int64(v) != sc.memLimit/4 {
		t.Errorf("relay's byte budget is %v, not a quarter of the container's memory limit (%d)", v, sc.memLimit)
	}
	resp, err = client.Post(sc.url+"/metrics/job/x", "text/plain", strings.NewReader("x 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("push without the token: HTTP %d, want 401", resp.StatusCode)
	}
}

// TestRelayStaysWithinItsMemoryLimit fills the bundle's relay with valid groups (a real
// controller-runtime payload, four pushers, a scraper in both fast formats) until the byte budget
// refuses, and checks that its peak resident memory stayed below the container's limit; then it
// restarts the relay from the state file that SIGTERM saved, and checks that every group comes
// back and the restart stays below the limit too.
func TestRelayStaysWithinItsMemoryLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("fills the relay's whole budget")
	}
	dir := t.TempDir()
	sc := startSidecar(t, dir)
	payload, err := os.ReadFile(filepath.Join(repoRoot, "bench/testdata/controller-runtime.prom"))
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	put := func(i int) (int, string) {
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/metrics/job/operator/instance/laptop-%04d", sc.url, i), bytes.NewReader(payload))
		req.Header.Set("Authorization", "Bearer "+sc.token)
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("push %d: %v", i, err)
			return 0, ""
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	var (
		mu       sync.Mutex
		accepted int
		refusal  string
		next     = 0
		stop     = make(chan struct{})
	)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				mu.Lock()
				i := next
				next++
				full := refusal != ""
				mu.Unlock()
				if full || i > 5000 {
					return
				}
				code, msg := put(i)
				mu.Lock()
				switch code {
				case http.StatusOK:
					accepted++
				case http.StatusRequestEntityTooLarge:
					if refusal == "" {
						refusal = msg
					}
				default:
					t.Errorf("push %d: HTTP %d %s", i, code, msg)
					refusal = "failed"
				}
				mu.Unlock()
			}
		})
	}
	var scrapes int
	scraper := make(chan struct{})
	go func() {
		defer close(scraper)
		for _, accept := range []string{"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", "text/plain;version=0.0.4"} {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodGet, sc.url+"/metrics", nil)
				req.Header.Set("Accept", accept)
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					scrapes++
				}
				if scrapes%10 == 0 {
					break
				}
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-scraper
	if !strings.Contains(refusal, "--store.max-bytes") {
		t.Fatalf("the pushes ended without the budget's refusal: %q", refusal)
	}
	fillPeak := sc.peakRSS(t)
	// Then the largest pushes the limits let through decode four at a time into the full store:
	// bodies of the default maximum size (1/64 of the memory limit), 20,000 series each (the
	// per-group limit), all refused by the budget once decoded and checked.
	var big bytes.Buffer
	big.WriteString("# TYPE big_pad gauge\n")
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&big, "big_pad{i=\"%d\",pad=\"%s\"} 1\n", i, strings.Repeat("p", int(sc.memLimit/64/20000)-40))
	}
	var bigRefused int
	var bwg sync.WaitGroup
	for w := range 4 {
		bwg.Go(func() {
			for j := range 5 {
				req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/metrics/job/big/instance/w%d-%d", sc.url, w, j), bytes.NewReader(big.Bytes()))
				req.Header.Set("Authorization", "Bearer "+sc.token)
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("big push: %v", err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				mu.Lock()
				if resp.StatusCode == http.StatusRequestEntityTooLarge {
					bigRefused++
				}
				mu.Unlock()
			}
		})
	}
	bwg.Wait()
	if bigRefused != 20 {
		t.Errorf("%d of 20 maximum-size pushes into the full store refused with 413", bigRefused)
	}
	peak := sc.peakRSS(t)
	t.Logf("then 20 pushes of %d KiB (20,000 series each), 4 at once, refused: peak RSS %d MiB (%d MiB after the fill)", big.Len()>>10, peak>>20, fillPeak>>20)
	t.Logf("%d groups of 1,126 series accepted before the budget refused (%.60s...); %d scrapes meanwhile; peak RSS %d MiB of the %d MiB limit",
		accepted, refusal, scrapes, peak>>20, sc.memLimit>>20)
	if peak >= sc.memLimit {
		t.Errorf("peak RSS %d bytes reached the container's limit of %d", peak, sc.memLimit)
	}
	sc.stop(t)

	again := startSidecar(t, dir)
	fams := promtest.Scrape(t, again.url+"/metrics")
	groups, _ := promtest.Value(fams, "opview_relay_groups", nil)
	restartPeak := again.peakRSS(t)
	t.Logf("restart: %v groups restored from the state file; peak RSS %d MiB", groups, restartPeak>>20)
	if int(groups) != accepted {
		t.Errorf("restored %v groups, want the %d accepted", groups, accepted)
	}
	if restartPeak >= again.memLimit {
		t.Errorf("restart peak RSS %d bytes reached the container's limit of %d", restartPeak, again.memLimit)
	}
}

func underMount(mounts []corev1.VolumeMount, p string) bool {
	for _, m := range mounts {
		if !m.ReadOnly && strings.HasPrefix(p, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return true
		}
	}
	return false
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
