package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opview/opview/internal/top/fixture"
)

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestHelpDocumentsFlagsAndBound(t *testing.T) {
	code, out, _ := runCLI(t, "", "top", "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, want := range []string{"--interval", "--window", "--once", "--job", "--instance", "--from.token-file",
		"--from.ca-file", "--from.insecure-skip-verify", "--max-series", "--max-bytes", "at most --window / --interval scrapes",
		"series that vanish", "Keys:"} {
		if !strings.Contains(out, want) {
			t.Errorf("opview top --help lacks %q", want)
		}
	}
}

func TestBadFlagsNameTheFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"top", "--interval=0s", "x"}, "--interval"},
		{[]string{"top", "--interval=soon", "x"}, "--interval"},
		{[]string{"top", "--window=1s", "--interval=2s", "x"}, "--window"},
		{[]string{"top", "--max-series=0", "x"}, "--max-series"},
		{[]string{"top", "--max-bytes=lots", "x"}, "--max-bytes"},
		{[]string{"top", "--instance=a", "http://127.0.0.1:1/metrics"}, "--instance needs --job"},
		{[]string{"top", "--from.token-file=/nonexistent", "https://127.0.0.1:1/metrics"}, "bearer token file"},
		{[]string{"top"}, "source"},
	} {
		code, _, errOut := runCLI(t, "", c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errOut, c.want)
		}
	}
}

// TestOncePrintsTheTable: --once (and a non-terminal stdout, as here) prints the table from two
// scrapes an interval apart, with real rates.
func TestOncePrintsTheTable(t *testing.T) {
	op := fixture.Operator{Controllers: []string{"configmap", "secret"}}
	var step atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write([]byte(op.Text(int(step.Add(1)))))
	}))
	defer srv.Close()
	for _, args := range [][]string{
		{"top", "--once", "--interval=50ms", srv.URL + "/metrics"},
		{"top", "--interval=50ms", srv.URL + "/metrics"}, // stdout is not a terminal
	} {
		code, out, errOut := runCLI(t, "", args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "CONTROLLER") || !strings.HasPrefix(lines[1], "configmap") {
			t.Fatalf("%v: output:\n%s", args, out)
		}
		if f := strings.Fields(lines[1]); f[1] == "0" || f[1] == "-" {
			t.Errorf("%v: no reconcile rate in %q", args, lines[1])
		}
	}
}

func TestOnceFromFileAndStdin(t *testing.T) {
	text := fixture.Operator{Controllers: []string{"configmap"}}.Text(10)
	path := filepath.Join(t.TempDir(), "metrics.txt")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		stdin string
		args  []string
	}{{"", []string{"top", "--once", path}}, {text, []string{"top", "--once", "-"}}} {
		code, out, errOut := runCLI(t, c.stdin, c.args...)
		if code != 0 || !strings.Contains(out, "configmap") {
			t.Fatalf("%v: exit %d, out %q, err %q", c.args, code, out, errOut)
		}
		// One scrape: no rates, quantiles since the process started.
		if f := strings.Fields(strings.Split(out, "\n")[1]); f[1] != "-" || f[3] == "-" {
			t.Errorf("%v: want no rate and a quantile from one scrape: %q", c.args, f)
		}
	}
	code, _, errOut := runCLI(t, text, "top", "--once", "--max-bytes=1KiB", "-")
	if code != 1 || !strings.Contains(errOut, "--max-bytes=1024") {
		t.Errorf("oversized stdin: exit %d, %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "# TYPE x gauge\nx 1\n", "top", "--once", "-")
	if code != 1 || !strings.Contains(errOut, "no controller-runtime controllers") {
		t.Errorf("no controllers: exit %d, %q", code, errOut)
	}
}

// TestRelayGraphHasNoTerminalUI keeps the relay binary (and its image) free of opview top's
// terminal libraries: none of their packages may be in go list -deps of the relay's main package.
func TestRelayGraphHasNoTerminalUI(t *testing.T) {
	terminalUI := []string{
		"github.com/charmbracelet/", "github.com/NimbleMarkets/ntcharts", "github.com/muesli/termenv",
		"github.com/lrstanley/bubblezone", "github.com/mattn/go-runewidth", "github.com/rivo/uniseg",
	}
	deps := func(pkg string) string {
		cmd := exec.Command("go", "list", "-deps", pkg)
		cmd.Dir = filepath.Join("..", "..")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return string(out)
	}
	opview, relay := deps("./cmd/opview"), deps("./exporter/cmd/opview-relay")
	for _, p := range terminalUI {
		if !strings.Contains(opview, p) {
			t.Errorf("%s is not in opview's graph: the list of terminal UI packages is out of date", p)
		}
		for _, l := range strings.Split(relay, "\n") {
			if strings.HasPrefix(l, p) {
				t.Errorf("the relay's import graph has %s", l)
			}
		}
	}
}
