package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestHelpDocumentsFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--help"}, &out, &errOut); code != 0 {
		t.Fatalf("serve --help exited %d: %s", code, errOut.String())
	}
	for _, flag := range []string{"--web.listen-address", "--web.config.file", "--group.ttl", "--group.forget-after", "--push.max-body-bytes", "--group.max-series", "--store.max-groups", "--log.level", "--log.format"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("serve --help does not mention %s", flag)
		}
	}
}

func TestBadFlagsNameTheFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--group.ttl=soon"}, "group.ttl"},
		{[]string{"--group.ttl=-1s"}, "--group.ttl"},
		{[]string{"--push.max-body-bytes=lots"}, "push.max-body-bytes"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"--web.config.file=/nonexistent/web.yml", "--web.listen-address=127.0.0.1:0"}, "web.yml"},
	} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), c.args, &out, &errOut)
		if code == 0 {
			t.Errorf("%v: exit 0, want an error", c.args)
		}
		if !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%v: stderr %q does not name %q", c.args, errOut.String(), c.want)
		}
	}
}

// TestServeAndGracefulShutdown runs the real command on a loopback port, pushes, reads back,
// then cancels the context as SIGTERM does and expects a clean exit.
func TestServeAndGracefulShutdown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var errOut bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--web.listen-address=" + addr, "--log.level=debug"}, &bytes.Buffer{}, &errOut)
	}()

	url := "http://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, with a deadline
	}
	resp, err := http.Post(url+"/metrics/job/cli", "text/plain", strings.NewReader("cli_test 1\n"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("push: %v %v", resp, err)
	}
	resp, err = http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(body.String(), `cli_test{instance="",job="cli"} 1`) {
		t.Fatalf("pushed sample missing from /metrics")
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d after shutdown; log:\n%s", code, errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("relay did not shut down")
	}
	fmt.Fprint(&bytes.Buffer{}, errOut.String())
}
