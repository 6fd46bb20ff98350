package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/opview/opview/exporter/auth"
	"github.com/opview/opview/exporter/relay"
	"github.com/opview/opview/internal/promtest"
	"github.com/opview/opview/internal/relaytest"
)

// Every refused combination of flags is refused before anything starts, naming the flag.
func TestFlagErrors(t *testing.T) {
	empty := promtest.WriteFile(t, "empty", " \n")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--push-job=op"}, "--push-job, --push-instance and --push-token-file need --push-to"},
		{[]string{"--push-token-file=/x"}, "need --push-to"},
		{[]string{"--push-to=http://relay:9091"}, "--push-to needs --push-job"},
		{[]string{"--push-to=relay:9091", "--push-job=op"}, `--push-to: "relay:9091" is not a relay's base URL`},
		{[]string{"--push-to=http://relay:9091/metrics", "--push-job=op"}, `--push-to: "http://relay:9091/metrics": give the relay's base URL, without a path`},
		{[]string{"--push-to=ftp://relay", "--push-job=op"}, "--push-to"},
		{[]string{"--push-to=http://relay:9091", "--push-job=op", "--push-interval=0s"}, "--push-interval 0s: must be positive"},
		{[]string{"--push-to=http://relay:9091", "--push-job=op", "--push-token-file=/does/not/exist"}, "--push-token-file: open /does/not/exist"},
		{[]string{"--push-to=http://relay:9091", "--push-job=op", "--push-token-file=" + empty}, "--push-token-file: " + empty + " is empty"},
		{[]string{"--webhook-port=70000"}, "--webhook-port 70000: want 1-65535"},
		{[]string{"--webhook-port=9443"}, "--webhook-port needs --webhook-cert-path"},
		{[]string{"--push-interval=soon"}, `invalid value "soon" for flag -push-interval`},
		{[]string{"--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{[]string{"--metrics-secure=false", "extra"}, `unexpected argument "extra"`},
	} {
		err := run(context.Background(), c.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("run(%q) = %v; want an error containing %q", c.args, err, c.want)
		}
	}
	if err := run(context.Background(), []string{"--help"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v, want flag.ErrHelp (main exits 0)", err)
	}
}

// The operator pushes from inside its process to a real relay that requires a write token,
// read from --push-token-file, and deletes its group when it stops.
func TestPushToRelayWithTokenFile(t *testing.T) {
	tokens, err := auth.ParseTokens([]byte("s3cret\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv := relaytest.Start(t, relay.Config{GroupTTL: time.Minute, WriteTokens: tokens})
	r, relayURL := srv.Relay, srv.URL
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tokenFile := promtest.WriteFile(t, "token", "s3cret\n")
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--metrics-bind-address=0", "--health-probe-bind-address=0", "--load=20ms",
			"--push-to=" + relayURL, "--push-job=sample-operator", "--push-instance=laptop", "--push-interval=100ms",
			"--push-token-file=" + tokenFile}, io.Discard)
	}()
	group := map[string]string{"job": "sample-operator", "instance": "laptop"}
	promtest.Eventually(t, 30*time.Second, "the operator's reconciles pushed to the relay", func() bool {
		v, ok := promtest.Value(promtest.Scrape(t, relayURL+"/metrics"), "controller_runtime_reconcile_total", group)
		return ok && v > 0
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return 30s after its context ended")
	}
	if gs := r.Store.Groups(); len(gs) != 0 {
		t.Fatalf("groups left after the operator stopped: %v", gs)
	}
}

// The deliberate failures are logged one line each: a stack trace only for a panic (by
// controller-runtime's panic handler), unless --zap-stacktrace-level asks for more.
func TestDeliberateErrorsLogOneLineEach(t *testing.T) {
	// stackAfterError reports whether a "Reconciler error" line is followed by a stack frame.
	stackAfterError := func(log string) bool {
		lines := strings.Split(log, "\n")
		for i, l := range lines[:len(lines)-1] {
			if strings.Contains(l, "\tReconciler error\t") && strings.HasPrefix(lines[i+1], "sigs.k8s.io/controller-runtime/") {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		flags []string
		stack bool
	}{{nil, false}, {[]string{"--zap-stacktrace-level=error"}, true}} {
		var log promtest.Buffer
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, append([]string{"--metrics-bind-address=0", "--health-probe-bind-address=0", "--load=10ms"}, c.flags...), &log)
		}()
		promtest.Eventually(t, 30*time.Second, "reconcile errors logged", func() bool { return strings.Count(log.String(), "\tReconciler error\t") >= 3 })
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run %v: %v", c.flags, err)
		}
		if got := stackAfterError(log.String()); got != c.stack {
			t.Errorf("flags %v: stack trace after a reconcile error: %v, want %v; log:\n%.3000s", c.flags, got, c.stack, log.String())
		}
	}
}
