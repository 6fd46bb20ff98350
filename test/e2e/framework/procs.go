//go:build e2e

package framework

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
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is a component process; its stdout and stderr go to its log file.
type Proc struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Procs starts and stops the scenario's processes and prints their logs' tails when a test fails.
type Procs struct {
	dir   string
	mu    sync.Mutex
	procs []*Proc
	// extraLogs are more logs to print on failure (container logs, found when it happens).
	extraLogs []func() map[string]string
}

// NewProcs returns a process set whose processes stop at the end of t (last started, first
// stopped), after the tail of every log is printed if t failed.
func NewProcs(t testing.TB, dir string) *Procs {
	p := &Procs{dir: dir}
	summarizeFailures(t)
	t.Cleanup(func() {
		if t.Failed() {
			p.PrintLogTails(t, 60)
		}
		p.StopAll()
	})
	return p
}

// StopAll stops every process, last started first.
func (p *Procs) StopAll() {
	p.mu.Lock()
	procs := append([]*Proc(nil), p.procs...)
	p.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop()
	}
}

// AddLogs registers more logs (name -> file) to print when a test fails.
func (p *Procs) AddLogs(f func() map[string]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.extraLogs = append(p.extraLogs, f)
}

// Spec is how to start one process.
type Spec struct {
	Name string
	Bin  string
	Args []string
	Env  []string // added to the test's environment
	Dir  string   // working folder (default: the test's)
	// Netns runs the process in that network namespace (default: the node's, the test's own).
	Netns *Netns
}

// Start runs bin with args in the node namespace.
func (p *Procs) Start(t testing.TB, name, bin string, args ...string) *Proc {
	t.Helper()
	return p.StartSpec(t, Spec{Name: name, Bin: bin, Args: args})
}

// StartSpec runs a process as spec says.
func (p *Procs) StartSpec(t testing.TB, s Spec) *Proc {
	t.Helper()
	logPath := filepath.Join(p.dir, s.Name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		Fatalf(t, "log file of %s: %v", s.Name, err)
	}
	fmt.Fprintf(f, "$ %s %s\n", s.Bin, strings.Join(s.Args, " "))
	cmd := exec.Command(s.Bin, s.Args...)
	if s.Netns != nil {
		cmd = s.Netns.Command(s.Bin, s.Args...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.Dir = s.Dir
	// Killed with the test process if it dies without cleaning up (Main's parent sweeps too).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		Fatalf(t, "start %s (%s): %v", s.Name, s.Bin, err)
	}
	pr := &Proc{Name: s.Name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		pr.err = cmd.Wait()
		_ = f.Close()
		close(pr.done)
	}()
	p.mu.Lock()
	p.procs = append(p.procs, pr)
	p.mu.Unlock()
	t.Logf("started %s (pid %d), log %s", s.Name, cmd.Process.Pid, logPath)
	return pr
}

// Exited reports whether the process has ended, and how.
func (pr *Proc) Exited() (bool, error) {
	select {
	case <-pr.done:
		return true, pr.err
	default:
		return false, nil
	}
}

// Stop ends the process: SIGTERM, then SIGKILL after 15 s.
func (pr *Proc) Stop() {
	if exited, _ := pr.Exited(); exited {
		return
	}
	_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pr.done:
	case <-time.After(15 * time.Second):
		_ = pr.cmd.Process.Kill()
		<-pr.done
	}
}

// Kill ends the process at once (SIGKILL), as a crash would, and waits for it.
func (pr *Proc) Kill() error {
	if err := pr.cmd.Process.Kill(); err != nil {
		return err
	}
	<-pr.done
	return nil
}

// Tail returns the last n lines of the process's log.
func (pr *Proc) Tail(n int) string { return tailFile(pr.Log, n) }

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	// A line can be a whole stack trace (controller-runtime logs panics on one line).
	const maxLine = 500
	for i, l := range lines {
		if len(l) > maxLine {
			lines[i] = append(l[:maxLine:maxLine], fmt.Sprintf("… (%d bytes)", len(l))...)
		}
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// PrintLogTails logs the last n lines of every process's log and of the extra logs.
func (p *Procs) PrintLogTails(t testing.TB, n int) {
	p.mu.Lock()
	procs := append([]*Proc(nil), p.procs...)
	extra := append([]func() map[string]string(nil), p.extraLogs...)
	p.mu.Unlock()
	for _, pr := range procs {
		state := "running"
		if exited, err := pr.Exited(); exited {
			state = fmt.Sprintf("exited: %v", err)
		}
		t.Logf("----- %s (%s), last %d lines of %s -----\n%s", pr.Name, state, n, pr.Log, pr.Tail(n))
	}
	for _, f := range extra {
		for name, path := range f() {
			t.Logf("----- %s, last %d lines of %s -----\n%s", name, n, path, tailFile(path, n))
		}
	}
}

// WaitFor polls cond every 250 ms until it returns nil, the deadline passes or a watched process
// exits, then fails the test with the last error.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func(ctx context.Context) error, watch ...*Proc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		err := cond(cctx)
		ccancel()
		if err == nil {
			return
		}
		// Keep the last real failure, not the one the final deadline cut short.
		if last == nil || ctx.Err() == nil {
			last = err
		}
		for _, pr := range watch {
			if pr == nil {
				continue
			}
			if exited, err := pr.Exited(); exited {
				Fatalf(t, "waiting for %s: %s exited (%v); last error: %v", what, pr.Name, err, last)
			}
		}
		select {
		case <-ctx.Done():
			Fatalf(t, "waiting for %s: no success within %s; last error: %v", what, timeout, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// HTTPGet fetches url (with an optional Host header and extra headers) and returns the status and
// body, or an error for transport failures.
func HTTPGet(ctx context.Context, url, host string, header http.Header) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, body, err
}

// HTTPPut sends body to url with the given Content-Type (and a bearer token when not empty) and
// returns the status, or an error for transport failures.
func HTTPPut(ctx context.Context, url, contentType, token, body string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// DialOK succeeds when a TCP connection to addr opens.
func DialOK(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// RequireBinary fails the test when a binary built by `make e2e-tools` is missing.
func RequireBinary(t testing.TB, path string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Fatalf(t, "%s is missing: run `make e2e-tools` (or `make e2e`, which builds it first)", path)
	}
	return path
}
