// Package terminal_test runs the real opview binary in a real terminal (tmux) against the real
// sample operator, directly and through a relay that opview-relay forward feeds.
package terminal_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"
)

const (
	paneWidth  = 100
	paneHeight = 40
)

// bins are the binaries TestMain builds once for the package: opview, opview-relay and
// sample-operator. On a cold build cache the sample operator (controller-runtime, client-go) takes
// minutes, which counts against go test's -timeout: make test gives it TEST_TIMEOUT (30m).
var (
	bins     = map[string]string{}
	buildErr error
	hasTmux  bool
)

func TestMain(m *testing.M) {
	_, err := exec.LookPath("tmux")
	hasTmux = err == nil
	dir, err := os.MkdirTemp("", "opview-top-terminal-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if hasTmux {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
		for _, b := range []struct{ name, moduleDir, pkg string }{
			{"opview", "../../..", "./cmd/opview"},
			{"opview-relay", "../../..", "./exporter/cmd/opview-relay"},
			{"sample-operator", "../../../examples", "./sampleoperator/cmd/sample-operator"},
		} {
			start := time.Now()
			out := filepath.Join(dir, b.name)
			cmd := exec.CommandContext(ctx, "go", "build", "-o", out, b.pkg)
			cmd.Dir = b.moduleDir
			if o, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s (in %s): %v\n%s", b.pkg, b.moduleDir, err, o)
				break
			}
			fmt.Fprintf(os.Stderr, "terminal test: built %s in %s\n", b.name, time.Since(start).Round(time.Second))
			bins[b.name] = out
		}
		cancel()
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestTerminal runs the real opview binary in a real terminal (tmux) against the real sample
// operator: first its /metrics directly, then through a relay that opview-relay forward feeds.
// Keys go in with send-keys; capture-pane must show the operator's controller with a nonzero
// reconcile rate, and its detail screen the reconcile-time histogram with every row inside the
// pane's width.
func TestTerminal(t *testing.T) {
	if !hasTmux {
		if os.Getenv("CI") == "true" {
			t.Fatal("tmux is not installed (Debian package tmux; .ci/run installs it): CI must not skip the real-terminal test")
		}
		t.Skip("tmux is not installed (apt-get install tmux): skipping the real-terminal test")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	tmux, _ := exec.LookPath("tmux")
	dir := t.TempDir()
	opview, relayBin, operator := bins["opview"], bins["opview-relay"], bins["sample-operator"]

	metricsAddr := freeAddr(t)
	start(t, dir, operator, "--metrics-bind-address="+metricsAddr, "--metrics-secure=false",
		"--health-probe-bind-address=0", "--load=250ms")
	metricsURL := "http://" + metricsAddr + "/metrics"
	waitFor(t, 60*time.Second, "the sample operator's metrics", func() bool {
		return bytes.Contains(get(metricsURL), []byte("controller_runtime_reconcile_total"))
	})

	t.Run("operator", func(t *testing.T) {
		topInTmux(t, tmux, opview, metricsURL, "--interval=1s", "--window=1m")
	})

	t.Run("relay", func(t *testing.T) {
		relayAddr := freeAddr(t)
		start(t, dir, relayBin, "serve", "--web.listen-address="+relayAddr)
		relayURL := "http://" + relayAddr
		waitFor(t, 30*time.Second, "the relay to listen", func() bool { return get(relayURL+"/metrics") != nil })
		start(t, dir, relayBin, "forward", "--from", metricsURL, "--to", relayURL, "--job", "sample-operator",
			"--instance", "tmux", "--interval", "1s")
		waitFor(t, 30*time.Second, "the forwarder's first push", func() bool {
			return bytes.Contains(get(relayURL+"/metrics"), []byte(`controller_runtime_reconcile_total{controller="sample-jobs"`))
		})
		screen := topInTmux(t, tmux, opview, relayURL+"/metrics", "--job=sample-operator", "--interval=1s", "--window=1m")
		if !strings.Contains(screen, `{job="sample-operator", instance="tmux"}`) {
			t.Errorf("the header does not name the relay's group:\n%s", screen)
		}
	})
}

// topInTmux runs opview top in a detached tmux session of its own server and checks the table
// and the detail screen. It returns the table's capture.
func topInTmux(t *testing.T, tmux, opview, url string, flags ...string) string {
	t.Helper()
	socket := fmt.Sprintf("opview-top-test-%d", os.Getpid())
	tm := func(args ...string) (string, error) {
		out, err := exec.Command(tmux, append([]string{"-L", socket, "-f", "/dev/null"}, args...)...).CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() { tm("kill-server") })
	cmdline := shellQuote(append(append([]string{opview, "top"}, flags...), url)...)
	if out, err := tm("new-session", "-d", "-s", "top", "-x", fmt.Sprint(paneWidth), "-y", fmt.Sprint(paneHeight),
		"env TERM=xterm-256color "+cmdline+"; sleep 30"); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	capture := func() string {
		out, _ := tm("capture-pane", "-p", "-t", "top")
		return out
	}

	// The table: the sample operator's controller with a nonzero reconcile rate.
	var table string
	waitFor(t, 60*time.Second, "the controllers table with a nonzero rate for sample-jobs", func() bool {
		table = capture()
		for _, l := range strings.Split(table, "\n") {
			f := strings.Fields(l)
			if len(f) >= 3 && f[0] == ">" && f[1] == "sample-jobs" && f[2] != "0" && f[2] != "-" {
				return true
			}
		}
		return false
	}, func() string { return table })
	checkPane(t, table)

	// Enter opens the detail; the histogram rows must fit the pane.
	tm("send-keys", "-t", "top", "Enter")
	var detail string
	waitFor(t, 20*time.Second, "the detail screen's histogram", func() bool {
		detail = capture()
		return strings.Contains(detail, "Reconcile time histogram") && strings.Contains(detail, "≤ 5ms")
	}, func() string { return detail })
	checkPane(t, detail)
	bucketRow := regexp.MustCompile(`^  (≤ \S+|> \S+|\S+–\S+)\s+[▏▎▍▌▋▊▉█ ]*\s+\d+\s+[\d.]+%$`)
	rows, nonzero := 0, false
	for _, l := range strings.Split(detail, "\n") {
		if strings.HasPrefix(l, "  ≤ ") || strings.HasPrefix(l, "  > ") || strings.Contains(l, "–") {
			if !bucketRow.MatchString(l) {
				t.Errorf("histogram row does not fit on one line of the pane (label, bar, count, share): %q", l)
			}
			rows++
			nonzero = nonzero || strings.ContainsAny(l, "▏▎▍▌▋▊▉█")
		}
	}
	if rows == 0 || !nonzero {
		t.Errorf("no histogram bar (rows %d):\n%s", rows, detail)
	}
	// Page down to the end of the histogram: its last bucket and total.
	tm("send-keys", "-t", "top", "f")
	tm("send-keys", "-t", "top", "f")
	var bottom string
	waitFor(t, 20*time.Second, "the end of the histogram", func() bool {
		bottom = capture()
		return strings.Contains(bottom, "> 60s") && strings.Contains(bottom, "  total")
	}, func() string { return bottom })
	checkPane(t, bottom)

	// Esc back (a key right after Esc would read as Alt+key), Tab to the process screen, q quits.
	tm("send-keys", "-t", "top", "Escape")
	var back string
	waitFor(t, 20*time.Second, "the controllers table after Esc", func() bool {
		back = capture()
		return strings.Contains(back, "[Controllers]")
	}, func() string { return back })
	tm("send-keys", "-t", "top", "Tab")
	var process string
	waitFor(t, 20*time.Second, "the process screen", func() bool {
		process = capture()
		return strings.Contains(process, "API client requests") && strings.Contains(process, "goroutines")
	}, func() string { return process })
	tm("send-keys", "-t", "top", "q")
	waitFor(t, 20*time.Second, "opview top to quit on q", func() bool {
		return !strings.Contains(capture(), "opview top")
	})
	return table
}

// checkPane asserts the capture is the pane's size: no line wider than the pane (tmux would have
// wrapped a longer one, so also no more lines than the pane).
func checkPane(t *testing.T, screen string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(screen, "\n"), "\n")
	if len(lines) > paneHeight {
		t.Errorf("capture has %d lines, the pane %d", len(lines), paneHeight)
	}
	for i, l := range lines {
		if n := utf8.RuneCountInString(l); n > paneWidth {
			t.Errorf("line %d has %d cells, the pane %d: %q", i+1, n, paneWidth, l)
		}
	}
}

// start runs a binary until the test ends (SIGTERM, then wait).
func start(t *testing.T, dir, bin string, args ...string) {
	t.Helper()
	log, err := os.Create(filepath.Join(dir, filepath.Base(bin)+fmt.Sprintf("-%d.log", time.Now().UnixNano())))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("%s %s:\n%s", filepath.Base(bin), strings.Join(args, " "), tail(b, 3000))
		}
	})
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// get returns the body of a 200 response, nil otherwise.
func get(url string) []byte {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return b
}

// waitFor polls cond every 100ms until it holds or timeout passes; then it ends the test with
// what it waited for and, when given, the last thing seen.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool, last ...func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("timed out after %s waiting for %s", timeout, what)
			if len(last) > 0 {
				msg += "; last screen:\n" + last[0]()
			}
			t.Fatal(msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func shellQuote(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
