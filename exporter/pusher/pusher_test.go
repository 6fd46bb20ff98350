package pusher_test

import (
	"context"
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

func TestPusherPushesThenDeletes(t *testing.T) {
	tokens, err := auth.ParseTokens([]byte("t0ken\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv := relaytest.Start(t, relay.Config{GroupTTL: time.Minute, WriteTokens: tokens})
	r, url := srv.Relay, srv.URL
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
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()

	want := map[string]string{"job": "memcached-operator", "instance": "pod-a", "controller": "memcached", "result": "success"}
	promtest.Eventually(t, 10*time.Second, "the first push", func() bool { v, ok := value(t, url, "controller_runtime_reconcile_total", want); return ok && v == 1 })
	c.WithLabelValues("memcached", "success").Add(4)
	promtest.Eventually(t, 10*time.Second, "a later push with the new value", func() bool { v, _ := value(t, url, "controller_runtime_reconcile_total", want); return v == 5 })

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Start: %v", err)
	}
	if gs := r.Store.Groups(); len(gs) != 0 {
		t.Fatalf("group left after Start returned: %v", gs)
	}
}

func TestPusherSurvivesRefusals(t *testing.T) {
	tokens, err := auth.ParseTokens([]byte("t0ken\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv := relaytest.Start(t, relay.Config{GroupTTL: time.Minute, WriteTokens: tokens})
	r, url := srv.Relay, srv.URL
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "up_ish", Help: "x"}, func() float64 { return 1 }))
	p, err := pusher.New(pusher.Config{URL: url, Job: "op", Instance: "i", Gatherer: reg, Interval: 10 * time.Millisecond, Token: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()
	promtest.Eventually(t, 10*time.Second, "a refused push", func() bool { _, err := p.Stats(); return err != nil })
	_, lastErr := p.Stats()
	if !strings.Contains(lastErr.Error(), "403") {
		t.Errorf("error %q does not carry the relay's 403", lastErr)
	}
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("Start = %v; want the refused delete reported", err)
	}
	if len(r.Store.Groups()) != 0 {
		t.Fatal("a refused push created a group")
	}
}

func TestNewChecksConfig(t *testing.T) {
	g := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return nil, nil })
	for _, c := range []struct {
		cfg  pusher.Config
		want string
	}{
		{pusher.Config{URL: "relay:9091", Job: "j", Gatherer: g}, "base URL"},
		{pusher.Config{URL: "http://relay:9091", Gatherer: g}, "Job"},
		{pusher.Config{URL: "http://relay:9091", Job: "j"}, "Gatherer"},
	} {
		if _, err := pusher.New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v; want an error mentioning %s", c.cfg, err, c.want)
		}
	}
}
