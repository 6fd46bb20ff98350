package pusher_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/opview/opview/exporter/auth"
	"github.com/opview/opview/exporter/pusher"
	"github.com/opview/opview/exporter/relay"
	"github.com/opview/opview/internal/promtest"
	"github.com/opview/opview/internal/relaytest"
)

// value reads the relay's /metrics as Prometheus would and returns the first sample of name
// whose labels include want.
func value(t *testing.T, relayURL, name string, want map[string]string) (float64, bool) {
	t.Helper()
	return promtest.Value(promtest.Scrape(t, relayURL+"/metrics"), name, want)
}

// The interface controller-runtime's manager.Add takes (manager.Runnable) and the one it asks to
// decide where a runnable runs (manager.LeaderElectionRunnable), restated here so that the relay's
// module needs no controller-runtime; the test module adds a real manager.
type runnable interface {
	Start(context.Context) error
}

type leaderElectionRunnable interface {
	NeedLeaderElection() bool
}

func tokenRelay(t *testing.T, token string) (*relay.Relay, string) {
	t.Helper()
	tokens, err := auth.ParseTokens([]byte(token + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv := relaytest.Start(t, relay.Config{GroupTTL: time.Minute, WriteTokens: tokens})
	return srv.Relay, srv.URL
}

func gauge(name string) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: "x"}, func() float64 { return 1 }))
	return reg
}

// logs returns a logger at debug level writing to a buffer the test can read while the pusher
// runs.
func logs() (*slog.Logger, *promtest.Buffer) {
	var b promtest.Buffer
	return slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})), &b
}

// start runs p.Start until the test ends or the returned stop is called; stop returns Start's
// error.
func start(t *testing.T, p *pusher.Pusher) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()
	var err error
	stopped := false
	stop = func() error {
		if !stopped {
			cancel()
			err, stopped = <-done, true
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestPusherPushesThenDeletes(t *testing.T) {
	r, url := tokenRelay(t, "t0ken")
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "controller_runtime_reconcile_total", Help: "Reconciles."}, []string{"controller", "result"})
	reg.MustRegister(c)
	c.WithLabelValues("memcached", "success").Inc()

	p, err := pusher.New(pusher.Config{URL: url + "/", Job: "memcached-operator", Instance: "pod-a", Gatherer: reg, Interval: 20 * time.Millisecond, Token: "t0ken"})
	if err != nil {
		t.Fatal(err)
	}
	var _ runnable = p
	if lr, ok := any(p).(leaderElectionRunnable); !ok || lr.NeedLeaderElection() {
		t.Fatal("the pusher must run on every replica (NeedLeaderElection false)")
	}
	stop := start(t, p)

	want := map[string]string{"job": "memcached-operator", "instance": "pod-a", "controller": "memcached", "result": "success"}
	promtest.Eventually(t, 10*time.Second, "the first push", func() bool { v, ok := value(t, url, "controller_runtime_reconcile_total", want); return ok && v == 1 })
	c.WithLabelValues("memcached", "success").Add(4)
	promtest.Eventually(t, 10*time.Second, "a later push with the new value", func() bool { v, _ := value(t, url, "controller_runtime_reconcile_total", want); return v == 5 })

	if err := stop(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if gs := r.Store.Groups(); len(gs) != 0 {
		t.Fatalf("group left after Start returned: %v", gs)
	}
	if st := p.Status(); st.Pushes < 2 || st.Failures != 0 || st.LastErr != nil {
		t.Errorf("status %+v; want at least two pushes, no failure", st)
	}
}

// A refused push and a refused delete are each reported as what they were, with the relay's
// status and reason.
func TestPusherRefusedPushAndDelete(t *testing.T) {
	r, url := tokenRelay(t, "t0ken")
	p, err := pusher.New(pusher.Config{URL: url, Job: "op", Instance: "i", Gatherer: gauge("up_ish"), Interval: 10 * time.Millisecond, Token: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, p)
	promtest.Eventually(t, 10*time.Second, "a refused push", func() bool { _, err := p.Stats(); return err != nil })
	_, lastErr := p.Stats()
	var pe *pusher.Error
	if !errors.As(lastErr, &pe) || pe.Op != pusher.OpPush || pe.Side != pusher.SideRejected || pe.Code != 403 {
		t.Fatalf("push error %#v (%v); want a rejected push, HTTP 403", pe, lastErr)
	}
	if msg := lastErr.Error(); !strings.HasPrefix(msg, "the relay refused the push (HTTP 403): ") || !strings.Contains(msg, "not one of the relay's write tokens") {
		t.Errorf("push error %q; want the refused push with the relay's reason", msg)
	}
	err = stop()
	if !errors.As(err, &pe) || pe.Op != pusher.OpDelete || !strings.Contains(err.Error(), "the relay refused the delete (HTTP 403)") {
		t.Fatalf("Start = %v; want the refused delete reported as a delete", err)
	}
	if len(r.Store.Groups()) != 0 {
		t.Fatal("a refused push created a group")
	}
}

// The same failure after a recovery is logged again at error level: each failure and each recovery
// is logged once. The token file is read at every push, so rewriting it is the failure and the
// recovery.
func TestPusherLogsEachFailureAndRecovery(t *testing.T) {
	_, url := tokenRelay(t, "t0ken")
	tokenFile := promtest.WriteFile(t, "token", "wrong\n")
	logger, logBuf := logs()
	p, err := pusher.New(pusher.Config{URL: url, Job: "op", Instance: "i", Gatherer: gauge("up_ish"), Interval: 5 * time.Millisecond, TokenFile: tokenFile, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	setToken := func(tok string) {
		if err := os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	stop := start(t, p)
	count := func(s string) int { return strings.Count(logBuf.String(), s) }
	const (
		failed = `level=ERROR msg="push failed" side=rejected err="the relay refused the push (HTTP 403)`
		first  = `level=INFO msg="first push accepted"`
		again  = `level=INFO msg="pushing works again"`
	)
	for round := 1; round <= 2; round++ {
		promtest.Eventually(t, 10*time.Second, "a refused push logged", func() bool { return count(failed) == round })
		promtest.Eventually(t, 10*time.Second, "the failure repeated", func() bool { return p.Status().Failures >= 3*round })
		setToken("t0ken")
		promtest.Eventually(t, 10*time.Second, "the recovery logged", func() bool { return count(first)+count(again) == round })
		setToken("wrong")
	}
	if err := stop(); err == nil {
		t.Error("the delete with the wrong token succeeded")
	}
	if n := count(failed); n != 2 {
		t.Errorf("the refused push is logged at error level %d times; want once per failure, twice:\n%s", n, logBuf)
	}
	if n := count(`level=DEBUG msg="push failed again"`); n == 0 {
		t.Errorf("repeats of a failure are not logged at debug level:\n%s", logBuf)
	}
	if count(first) != 1 || count(again) != 1 {
		t.Errorf("want the first push logged once, then the recovery once:\n%s", logBuf)
	}
}

// While the relay is unreachable the pusher retries with backoff, not at its interval (an hour
// here), blames the relay, and recovers once the relay is back on its address; a clean stop then
// deletes the group.
func TestPusherBacksOffWhileRelayIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logger, logBuf := logs()
	p, err := pusher.New(pusher.Config{URL: "http://" + addr, Job: "op", Instance: "laptop", Gatherer: gauge("up_ish"),
		Interval: time.Hour, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, p)
	promtest.Eventually(t, 10*time.Second, "retries while the relay is down", func() bool { return p.Status().Failures >= 3 })
	var pe *pusher.Error
	if err := p.Status().LastErr; !errors.As(err, &pe) || pe.Side != pusher.SideRelay || !strings.HasPrefix(err.Error(), "the relay is unreachable: ") {
		t.Fatalf("error while the relay is down: %v; want the relay side, unreachable", err)
	}
	srv := relaytest.StartAt(t, addr, relay.Config{GroupTTL: time.Minute})
	r, url := srv.Relay, srv.URL
	promtest.Eventually(t, 10*time.Second, "the push to the relay once it is back", func() bool {
		v, ok := value(t, url, "up_ish", map[string]string{"job": "op", "instance": "laptop"})
		return ok && v == 1
	})
	promtest.Eventually(t, 10*time.Second, "the recovery logged", func() bool { return strings.Contains(logBuf.String(), `msg="first push accepted"`) })
	if n := strings.Count(logBuf.String(), `level=ERROR msg="push failed" side=relay`); n != 1 {
		t.Errorf("the relay being down logged at error level %d times; want once:\n%s", n, logBuf)
	}
	if err := stop(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if gs := r.Store.Groups(); len(gs) != 0 {
		t.Fatalf("group not deleted on stop: %v", gs)
	}
}

// A Gatherer's failure is the operator's side, and nothing reaches the relay.
func TestPusherGatherFailure(t *testing.T) {
	srv := relaytest.Start(t, relay.Config{GroupTTL: time.Minute})
	r, url := srv.Relay, srv.URL
	boom := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return nil, errors.New("collector exploded") })
	p, err := pusher.New(pusher.Config{URL: url, Job: "op", Instance: "i", Gatherer: boom})
	if err != nil {
		t.Fatal(err)
	}
	err = p.PushOnce(context.Background())
	var pe *pusher.Error
	if !errors.As(err, &pe) || pe.Side != pusher.SideOperator || pe.Op != pusher.OpGather || err.Error() != "gathering the operator's metrics failed: collector exploded" {
		t.Fatalf("PushOnce = %v; want the operator's side, gather", err)
	}
	if len(r.Store.Groups()) != 0 {
		t.Fatal("a failed gather created a group")
	}
}

func TestNewChecksConfig(t *testing.T) {
	g := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return nil, nil })
	empty := promtest.WriteFile(t, "empty", "\n")
	for _, c := range []struct {
		cfg   pusher.Config
		field string
		want  string
	}{
		{pusher.Config{URL: "relay:9091", Job: "j", Gatherer: g}, "URL", "not a relay's base URL"},
		{pusher.Config{URL: "ftp://relay:9091", Job: "j", Gatherer: g}, "URL", "not a relay's base URL"},
		{pusher.Config{URL: "http://relay:9091/metrics/job/j", Job: "j", Gatherer: g}, "URL", "without a path"},
		{pusher.Config{URL: "http://relay:9091/prefix/", Job: "j", Gatherer: g}, "URL", "without a path"},
		{pusher.Config{URL: "http://relay:9091?x=1", Job: "j", Gatherer: g}, "URL", "without a path or query"},
		{pusher.Config{URL: "http://u:s3cret@relay:9091", Job: "j", Gatherer: g}, "URL", "not in the URL"},
		{pusher.Config{URL: "http://relay:9091", Gatherer: g}, "Job", "required"},
		{pusher.Config{URL: "http://relay:9091", Job: "j"}, "Gatherer", "required"},
		{pusher.Config{URL: "http://relay:9091", Job: "j", Gatherer: g, Token: "a", TokenFile: empty}, "Token", "not both"},
		{pusher.Config{URL: "http://relay:9091", Job: "j", Gatherer: g, TokenFile: "/does/not/exist"}, "TokenFile", "/does/not/exist"},
		{pusher.Config{URL: "http://relay:9091", Job: "j", Gatherer: g, TokenFile: empty}, "TokenFile", "is empty"},
	} {
		_, err := pusher.New(c.cfg)
		var ce *pusher.ConfigError
		if !errors.As(err, &ce) || ce.Field != c.field || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("New(%+v) = %v; want a ConfigError on %s mentioning %q", c.cfg, err, c.field, c.want)
		}
	}
}
