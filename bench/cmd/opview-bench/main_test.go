package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opview/opview/bench"
)

// Bad flags end the command with exit code 2 before anything starts, naming the flag.
func TestFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", "10,1"}, "-n: \"10,1\" is not an ascending list"},
		{[]string{"-n", "0"}, "-n:"},
		{[]string{"-repeats", "0"}, "-repeats"},
		{[]string{"-goals", "/nonexistent/goals.json"}, "-goals: open /nonexistent/goals.json"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"-no-such-flag"}, "-no-such-flag"},
	} {
		var out, errOut bytes.Buffer
		if code := run(context.Background(), c.args, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 mentioning %q", c.args, code, errOut.String(), c.want)
		}
	}
}

func TestParseLevels(t *testing.T) {
	got, err := parseLevels("1, 10,100,500")
	if err != nil || len(got) != 4 || got[3] != 500 {
		t.Fatalf("parseLevels = %v, %v", got, err)
	}
	for _, bad := range []string{"", "1,1", "a", "-1", "5,2"} {
		if _, err := parseLevels(bad); err == nil {
			t.Errorf("parseLevels(%q) accepted", bad)
		}
	}
}

// -report renders the document from a results file, evaluating the goals file anew.
func TestReportFromResults(t *testing.T) {
	dir := t.TempDir()
	results := filepath.Join(dir, "results.json")
	goals := filepath.Join(dir, "goals.json")
	doc := filepath.Join(dir, "doc.md")
	write := func(path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(results, `{"settings": {"repeats": 2}, "machine": {"nproc": 2}, "levels": [{"n": 1, "servers": {
		"relay": {"reached": true, "runs": [{"pushes_per_second": 300}, {"pushes_per_second": 500}]},
		"pushgateway-unchecked": {"reached": true, "runs": [{"pushes_per_second": 100}, {"pushes_per_second": 100}]}}}]}`)
	write(goals, `[{"name": "throughput", "of": "relay/pushes_per_second", "over": "pushgateway-unchecked/pushes_per_second", "at_least": 1.5}]`)
	var sections string
	for _, s := range []string{bench.GoalsSection, bench.ResultsSection} {
		sections += "<!-- bench:" + s + ":begin (generated: do not edit) -->\n<!-- bench:" + s + ":end -->\n"
	}
	write(doc, "# B\n"+sections)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"-report", results, "-goals", goals, "-doc", doc}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	got, _ := os.ReadFile(doc)
	if !strings.Contains(string(got), "| throughput | >= 1.5 | 4.00 (3.00–5.00) | yes |") {
		t.Errorf("document:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join("bench", "results.json")); err == nil { // -json's default, from this directory
		t.Error("-report wrote a results file")
	}
}
