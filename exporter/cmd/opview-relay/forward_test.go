package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opview/opview/internal/promtest"
)

// forward's flag errors end the command with exit code 2 and name the flag or the file at fault.
func TestForwardFlagErrorsNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"forward", "--to", "http://r:9091", "--job", "j"}, "--from"},
		{[]string{"forward", "--from", "http://o:8080/metrics", "--to", "r:9091", "--job", "j"}, "is not a relay's base URL"},
		{[]string{"forward", "--from", "http://o:8080/metrics", "--to", "http://r:9091/metrics/job/j", "--job", "j"}, "give the relay's base URL, without a path"},
		{[]string{"forward", "--from", "http://o:8080/metrics", "--to", "http://r:9091", "--job", "j", "--interval", "soon"}, "--interval"},
		{[]string{"forward", "--from", "http://o:8080/metrics", "--to", "http://r:9091", "--job", "j", "--from.token-file", filepath.Join(dir, "nope")}, "nope"},
		{[]string{"forward", "--from", "http://o:8080/metrics", "--to", "http://r:9091", "--job", "j", "--to.token-file", filepath.Join(dir, "relay-token")}, "--to.token-file: open " + filepath.Join(dir, "relay-token")},
	} {
		var out promtest.Buffer
		code := run(context.Background(), c.args, &out, &out)
		// Every message starts with the flag (the logger quotes it: msg="--flag...).
		flag := c.want
		if !strings.HasPrefix(flag, "--") {
			flag = "msg=\"--"
		}
		if code != 2 || !strings.Contains(out.String(), c.want) || !strings.Contains(out.String(), flag) {
			t.Errorf("%v: exit %d, output %q; want 2 mentioning %q", c.args, code, out.String(), c.want)
		}
	}
}
