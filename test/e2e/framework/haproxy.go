//go:build e2e

package framework

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opview/opview/internal/haproxycfg"
)

// HAProxy is Debian's haproxy (2.6) running in a namespace of its own with a configuration that
// internal/haproxycfg renders, as `make haproxy` renders deploy/haproxy/haproxy.cfg.
type HAProxy struct {
	Proc   *Proc
	Config string // the configuration file
	socket string // the stats socket (level admin)
}

// StartHAProxy renders cfg (its global section gets a stats socket and logs to stdout, the
// process's log), checks it with `haproxy -c` and runs `haproxy -db` in ns until the end of t.
func StartHAProxy(t testing.TB, procs *Procs, ns *Netns, dir string, cfg haproxycfg.Config) *HAProxy {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		Fatal(t, "haproxy is needed: apt-get install haproxy (.ci/run does)")
	}
	h := &HAProxy{Config: filepath.Join(dir, "haproxy.cfg"), socket: filepath.Join(dir, "haproxy.sock")}
	cfg.Global = append(append([]string{}, cfg.Global...),
		"stats socket "+h.socket+" mode 600 level admin",
		"log stdout format raw local0")
	b, err := haproxycfg.Render(cfg)
	if err != nil {
		Fatalf(t, "rendering the HAProxy configuration: %v", err)
	}
	if err := os.WriteFile(h.Config, b, 0o644); err != nil {
		Fatal(t, err)
	}
	if out, err := exec.Command(bin, "-c", "-f", h.Config).CombinedOutput(); err != nil {
		Fatalf(t, "haproxy -c -f %s: %v\n%s", h.Config, err, out)
	}
	h.Proc = procs.StartSpec(t, Spec{Name: "haproxy", Bin: bin, Args: []string{"-db", "-f", h.Config}, Netns: ns})
	WaitFor(t, "HAProxy's stats socket", time.Minute, func(ctx context.Context) error {
		_, err := h.Servers(ctx)
		return err
	}, h.Proc)
	return h
}

// ServerState is one server of one backend as HAProxy's `show stat` reports it.
type ServerState struct {
	Backend, Server string
	Status          string // UP, DOWN, "UP 1/2" (going down), "DOWN 1/2" (coming up), MAINT...
	Sessions        int64  // connections it was given since HAProxy started (stot)
}

// Servers asks HAProxy's stats socket for the state of every backend server.
func (h *HAProxy) Servers(ctx context.Context) ([]ServerState, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", h.socket)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, "show stat\n"); err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(bufio.NewReader(conn), 1<<20))
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(string(out), "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) < 1 {
		return nil, fmt.Errorf("show stat: %v: %.200q", err, out)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	for _, name := range []string{"pxname", "svname", "status", "stot"} {
		if _, ok := col[name]; !ok {
			return nil, fmt.Errorf("show stat: no column %s in %.200q", name, out)
		}
	}
	var states []ServerState
	for _, row := range rows[1:] {
		if len(row) < len(rows[0]) || row[col["svname"]] == "FRONTEND" || row[col["svname"]] == "BACKEND" {
			continue
		}
		var n int64
		_, _ = fmt.Sscan(row[col["stot"]], &n)
		states = append(states, ServerState{Backend: row[col["pxname"]], Server: row[col["svname"]], Status: row[col["status"]], Sessions: n})
	}
	return states, nil
}

// ServersAre is a WaitFor condition: every server of every backend named in want has that status
// (server name -> "UP" or "DOWN"), the others of those backends ignored.
func (h *HAProxy) ServersAre(want map[string]string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		states, err := h.Servers(ctx)
		if err != nil {
			return err
		}
		var wrong []string
		for _, s := range states {
			if w, ok := want[s.Server]; ok && s.Status != w {
				wrong = append(wrong, fmt.Sprintf("%s/%s is %s, want %s", s.Backend, s.Server, s.Status, w))
			}
		}
		if len(states) == 0 {
			return fmt.Errorf("no servers")
		}
		if len(wrong) > 0 {
			return fmt.Errorf("%s", strings.Join(wrong, "; "))
		}
		return nil
	}
}
