package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	base, settings, out := filepath.Join(dir, "p.yml"), filepath.Join(dir, "rw.yml"), filepath.Join(dir, "out.yml")
	for p, s := range map[string]string{base: "global: {}\n", settings: "external_labels: {cluster: a}\nremote_write: [{url: 'http://s/api/v1/write'}]\n"} {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := run(base, settings, out); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	if !strings.HasPrefix(string(b), Header) || !strings.Contains(string(b), "http://s/api/v1/write") {
		t.Errorf("written:\n%s", b)
	}
	if err := os.WriteFile(settings, []byte("remote_write: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(base, settings, out); err == nil || !strings.Contains(err.Error(), settings) {
		t.Errorf("bad settings: %v, want an error naming the file", err)
	}
}
