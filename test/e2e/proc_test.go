//go:build e2e

package e2e

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

// Proc is a component process; its stdout and stderr go to Dir/<name>.log.
type Proc struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Procs starts and stops the scenario's processes and prints their logs' tails when a test fails.
type Procs struct {
	t     *testing.T
	dir   string
	mu    sync.Mutex
	procs []*Proc
}

// NewProcs returns a process set whose processes stop at the end of t (last started, first stopped),
// after the tail of every log is printed if t failed.
func NewProcs(t *testing.T, dir string) *Procs {
	p := &Procs{t: t, dir: dir}
	t.Cleanup(func() {
		if t.Failed() {
			p.PrintLogTails(60)
		}
		p.mu.Lock()
		procs := append([]*Proc(nil), p.procs...)
		p.mu.Unlock()
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].Stop()
		}
	})
	return p
}

// Start runs bin with args in the node namespace.
func (p *Procs) Start(name, bin string, args ...string) *Proc {
	return p.StartEnv(name, nil, "", bin, args...)
}

// StartInPod runs bin with args in the pod namespace (PodIP), as a container of a Pod would run.
func (p *Procs) StartInPod(name string, env []string, workdir, bin string, args ...string) *Proc {
	return p.StartEnv(name, env, workdir, "ip", append([]string{"netns", "exec", podNetns, bin}, args...)...)
}

// StartInPodWithServiceAccount is StartInPod for a Pod that mounts its service account: in the
// process's own mount namespace (ip netns exec makes one, private to it), a tmpfs on /run gets
// the files of saDir at /var/run/secrets/kubernetes.io/serviceaccount, where client-go's
// in-cluster config reads them. The host's /run is untouched.
func (p *Procs) StartInPodWithServiceAccount(name string, env []string, workdir, saDir, bin string, args ...string) *Proc {
	const script = `set -e; mount -t tmpfs -o size=1m tmpfs /run; d=/run/secrets/kubernetes.io/serviceaccount; ` +
		`mkdir -p "$d"; cp "$1"/* "$d"/; shift; exec "$@"`
	return p.StartEnv(name, env, workdir, "ip", append([]string{"netns", "exec", podNetns, "sh", "-c", script, "sh", saDir, bin}, args...)...)
}

// StartEnv runs bin with args and extra environment variables, in workdir when not empty.
func (p *Procs) StartEnv(name string, env []string, workdir, bin string, args ...string) *Proc {
	p.t.Helper()
	logPath := filepath.Join(p.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		p.t.Fatalf("log file of %s: %v", name, err)
	}
	fmt.Fprintf(f, "$ %s %s\n", bin, strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = workdir
	// Killed with the test process if it dies without cleaning up (TestMain's parent sweeps too).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		p.t.Fatalf("start %s (%s): %v", name, bin, err)
	}
	pr := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		pr.err = cmd.Wait()
		_ = f.Close()
		close(pr.done)
	}()
	p.mu.Lock()
	p.procs = append(p.procs, pr)
	p.mu.Unlock()
	p.t.Logf("started %s (pid %d), log %s", name, cmd.Process.Pid, logPath)
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

// Tail returns the last n lines of the process's log.
func (pr *Proc) Tail(n int) string {
	b, err := os.ReadFile(pr.Log)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// PrintLogTails logs the last n lines of every process's log.
func (p *Procs) PrintLogTails(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.procs {
		state := "running"
		if exited, err := pr.Exited(); exited {
			state = fmt.Sprintf("exited: %v", err)
		}
		p.t.Logf("----- %s (%s), last %d lines of %s -----\n%s", pr.Name, state, n, pr.Log, pr.Tail(n))
	}
}

// WaitFor polls cond every 250 ms until it returns nil, the deadline passes or a watched process
// exits, then fails the test with the last error.
func WaitFor(t *testing.T, what string, timeout time.Duration, cond func(ctx context.Context) error, watch ...*Proc) {
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
			if exited, err := pr.Exited(); exited {
				t.Fatalf("waiting for %s: %s exited (%v); last error: %v", what, pr.Name, err, last)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: no success within %s; last error: %v", what, timeout, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// HTTPGet fetches url (with an optional Host header and basic auth) and returns the status and
// body, or an error for transport failures.
func HTTPGet(ctx context.Context, client *http.Client, url, host string, header http.Header) (int, []byte, error) {
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
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// HTTPPut sends body to url with the given Content-Type and returns the status, or an error for
// transport failures.
func HTTPPut(ctx context.Context, url, contentType, body string, header ...string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
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
