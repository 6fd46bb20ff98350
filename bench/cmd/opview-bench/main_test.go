package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
