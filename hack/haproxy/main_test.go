package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	nodes, out := filepath.Join(dir, "nodes.txt"), filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(nodes, []byte("n1 10.0.0.1\nn2 10.0.0.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(nodes, out); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "server n2 10.0.0.2:9091") {
		t.Errorf("%s lacks the relay server line of n2:\n%s", out, b)
	}
	if err := os.WriteFile(nodes, []byte("n1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(nodes, out); err == nil || !strings.Contains(err.Error(), nodes+": line 1") {
		t.Errorf("bad node list: %v, want an error naming the file and line", err)
	}
}
