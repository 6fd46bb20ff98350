package forward_test

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/opview/opview/exporter/auth"
	"github.com/opview/opview/exporter/forward"
	"github.com/opview/opview/exporter/relay"
	"github.com/opview/opview/internal/promtest"
)

// operatorRegistry stands in for an operator's registry in this module (the controller-runtime
// end-to-end tests are in the test module).
func operatorRegistry(t *testing.T) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "controller_runtime_reconcile_total", Help: "Reconciles."}, []string{"controller", "result"})
	c.WithLabelValues("memcached", "success").Add(3)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "controller_runtime_reconcile_time_seconds", Help: "Time.", Buckets: []float64{0.1, 1}, NativeHistogramBucketFactor: 1.1})
	h.Observe(0.5)
	reg.MustRegister(c, h)
	return reg
}

// liveRelay is a relay server on a real listener that can be stopped and started again on the
// same address.
type liveRelay struct {
	t    *testing.T
	addr string
	cfg  relay.Config
	r    *relay.Relay
	srv  *http.Server
	stop context.CancelFunc
	done chan struct{}
}

func startRelay(t *testing.T, addr string, cfg relay.Config) *liveRelay {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	r := relay.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	lr := &liveRelay{t: t, addr: ln.Addr().String(), cfg: cfg, r: r, srv: &http.Server{Handler: r.Handler()}, stop: cancel, done: make(chan struct{})}
	go lr.srv.Serve(ln)
	go func() { r.Run(ctx); close(lr.done) }()
	t.Cleanup(lr.Stop)
	return lr
}

func (lr *liveRelay) URL() string { return "http://" + lr.addr }

func (lr *liveRelay) Stop() {
	lr.srv.Close()
	lr.stop()
	<-lr.done
}

// value reads the relay's /metrics as Prometheus would and returns the first sample of name
// whose labels include want.
func value(t *testing.T, relayURL, name string, want map[string]string) (float64, bool) {
	t.Helper()
	return promtest.Value(promtest.Scrape(t, relayURL+"/metrics"), name, want)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	promtest.Eventually(t, 10*time.Second, what, cond)
}

func TestForwardPlainHTTP(t *testing.T) {
	op := httptest.NewServer(promhttp.HandlerFor(operatorRegistry(t), promhttp.HandlerOpts{}))
	defer op.Close()
	rl := startRelay(t, "127.0.0.1:0", relay.Config{GroupTTL: time.Minute})
	f, err := forward.New(forward.Config{From: forward.Target{URL: op.URL}, To: rl.URL(), Job: "memcached-operator", Instance: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	fams := promtest.Scrape(t, rl.URL()+"/metrics")
	v, ok := promtest.Value(fams, "controller_runtime_reconcile_total", map[string]string{"job": "memcached-operator", "instance": "laptop", "controller": "memcached", "result": "success"})
	if !ok || v != 3 {
		t.Fatalf("reconcile_total with the group's labels: %v %v; families %v", v, ok, fams["controller_runtime_reconcile_total"])
	}
	if n, ok := promtest.Value(fams, "controller_runtime_reconcile_time_seconds", map[string]string{"job": "memcached-operator"}); !ok || n != 1 {
		t.Fatalf("histogram count %v %v", n, ok)
	}
}

func TestForwardHTTPSWithToken(t *testing.T) {
	const token = "operator-token"
	handler := promhttp.HandlerFor(operatorRegistry(t), promhttp.HandlerOpts{})
	op := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		handler.ServeHTTP(w, r)
	}))
	defer op.Close()
	caFile := promtest.WriteFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: op.Certificate().Raw})))
	tokenFile := promtest.WriteFile(t, "token", token+"\n")
	badToken := promtest.WriteFile(t, "bad", "nope\n")
	rl := startRelay(t, "127.0.0.1:0", relay.Config{GroupTTL: time.Minute})

	cases := []struct {
		name    string
		from    forward.Target
		errSide forward.Side
		errHas  string
	}{
		{"no CA", forward.Target{URL: op.URL, BearerTokenFile: tokenFile}, forward.SideOperator, "certificate is not trusted"},
		{"no token", forward.Target{URL: op.URL, CAFile: caFile}, forward.SideOperator, "wants a bearer token"},
		{"wrong token", forward.Target{URL: op.URL, CAFile: caFile, BearerTokenFile: badToken}, forward.SideOperator, "refused the bearer token"},
		{"http to https", forward.Target{URL: strings.Replace(op.URL, "https:", "http:", 1), BearerTokenFile: tokenFile}, forward.SideOperator, "speaks HTTPS"},
		{"CA file", forward.Target{URL: op.URL, CAFile: caFile, BearerTokenFile: tokenFile}, "", ""},
		{"skip verify", forward.Target{URL: op.URL, InsecureSkipVerify: true, BearerTokenFile: tokenFile}, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f, err := forward.New(forward.Config{From: c.from, To: rl.URL(), Job: "secure-op", Instance: strings.ReplaceAll(c.name, " ", "-")})
			if err != nil {
				t.Fatal(err)
			}
			err = f.Once(context.Background())
			if c.errSide == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := value(t, rl.URL(), "controller_runtime_reconcile_total", map[string]string{"job": "secure-op", "instance": strings.ReplaceAll(c.name, " ", "-")}); !ok {
					t.Fatalf("forwarded series missing from the relay: %v", promtest.Scrape(t, rl.URL()+"/metrics")["controller_runtime_reconcile_total"])
				}
				return
			}
			var fe *forward.Error
			if !errors.As(err, &fe) || fe.Side != c.errSide || !strings.Contains(err.Error(), c.errHas) {
				t.Fatalf("err = %v; want side %s mentioning %q", err, c.errSide, c.errHas)
			}
		})
	}
}

func TestForwardRejectedQuotesTheRelay(t *testing.T) {
	op := httptest.NewServer(promhttp.HandlerFor(operatorRegistry(t), promhttp.HandlerOpts{}))
	defer op.Close()
	tokens, err := auth.ParseTokens([]byte("relay-secret\n"))
	if err != nil {
		t.Fatal(err)
	}
	rl := startRelay(t, "127.0.0.1:0", relay.Config{GroupTTL: time.Minute, WriteTokens: tokens})
	cases := []struct {
		name   string
		token  string
		code   int
		reason string
	}{
		{"missing token", "", http.StatusUnauthorized, "requires a token for writes"},
		{"wrong token", "wrong", http.StatusForbidden, "not one of the relay's write tokens"},
		{"right token", "relay-secret", 0, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := forward.Config{From: forward.Target{URL: op.URL}, To: rl.URL(), Job: "op", Instance: "i"}
			if c.token != "" {
				cfg.ToTokenFile = promtest.WriteFile(t, "tok", c.token)
			}
			f, err := forward.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = f.Once(context.Background())
			if c.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if err := f.DeleteGroup(context.Background()); err != nil {
					t.Fatalf("delete with the token: %v", err)
				}
				return
			}
			var fe *forward.Error
			if !errors.As(err, &fe) || fe.Side != forward.SideRejected || fe.Code != c.code || !strings.Contains(fe.Reason, c.reason) {
				t.Fatalf("err = %#v (%v); want rejected %d quoting %q", fe, err, c.code, c.reason)
			}
			if !strings.Contains(err.Error(), c.reason) {
				t.Errorf("message %q does not quote the relay's reason", err)
			}
		})
	}
	// A push the relay refuses for its content is quoted too.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		io.WriteString(w, "# TYPE opview_relay_groups gauge\nopview_relay_groups 1\n")
	}))
	defer bad.Close()
	f, err := forward.New(forward.Config{From: forward.Target{URL: bad.URL}, To: rl.URL(), Job: "op", Instance: "i", ToTokenFile: promtest.WriteFile(t, "tok", "relay-secret")})
	if err != nil {
		t.Fatal(err)
	}
	err = f.Once(context.Background())
	var fe *forward.Error
	if !errors.As(err, &fe) || fe.Side != forward.SideRejected || fe.Code != http.StatusBadRequest || !strings.Contains(fe.Reason, "opview_relay_groups") {
		t.Fatalf("err = %v; want a 400 naming the reserved metric", err)
	}
}

func TestForwardOperatorDown(t *testing.T) {
	op := httptest.NewServer(http.NotFoundHandler())
	opURL := op.URL
	op.Close()
	rl := startRelay(t, "127.0.0.1:0", relay.Config{GroupTTL: time.Minute})
	f, err := forward.New(forward.Config{From: forward.Target{URL: opURL + "/metrics"}, To: rl.URL(), Job: "op", Instance: "i"})
	if err != nil {
		t.Fatal(err)
	}
	err = f.Once(context.Background())
	var fe *forward.Error
	if !errors.As(err, &fe) || fe.Side != forward.SideOperator || !strings.Contains(err.Error(), "is the operator running") {
		t.Fatalf("err = %v; want the operator side with a hint", err)
	}
	if n := len(rl.r.Store.Groups()); n != 0 {
		t.Fatalf("%d groups after a failed scrape", n)
	}
}

// The relay goes away while the forwarder runs and comes back empty on the same address: the
// forwarder backs off, recovers, and the relay ends with exactly the one group. A clean exit
// deletes it.
func TestForwardRelayDownRecovers(t *testing.T) {
	op := httptest.NewServer(promhttp.HandlerFor(operatorRegistry(t), promhttp.HandlerOpts{}))
	defer op.Close()
	rl := startRelay(t, "127.0.0.1:0", relay.Config{GroupTTL: time.Minute})
	var logs promtest.Buffer
	f, err := forward.New(forward.Config{
		From: forward.Target{URL: op.URL}, To: rl.URL(), Job: "op", Instance: "laptop",
		Interval: 20 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 40 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()

	hasGroup := func(lr *liveRelay) func() bool {
		return func() bool {
			gs := lr.r.Store.Groups()
			return len(gs) == 1 && gs[0].Key.String() == `{instance="laptop",job="op"}` && gs[0].Fresh
		}
	}
	waitFor(t, "the first push", hasGroup(rl))

	rl.Stop()
	waitFor(t, "the forwarder to notice the relay is down", func() bool {
		var fe *forward.Error
		return errors.As(f.Status().LastErr, &fe) && fe.Side == forward.SideRelay
	})
	waitFor(t, "the failure to be logged", func() bool { return strings.Contains(logs.String(), "the relay is unreachable") })
	failures := f.Status().Failures

	rl2 := startRelay(t, rl.addr, relay.Config{GroupTTL: time.Minute})
	waitFor(t, "the forwarder to push to the restarted relay", hasGroup(rl2))
	waitFor(t, "a few more pushes", func() bool { return f.Status().LastErr == nil && f.Status().Pushes >= 3 })
	if gs := rl2.r.Store.Groups(); len(gs) != 1 {
		t.Fatalf("groups after recovery: %v", gs)
	}
	if v, ok := value(t, rl2.URL(), "controller_runtime_reconcile_total", map[string]string{"job": "op", "instance": "laptop", "result": "success"}); !ok || v != 3 {
		t.Fatalf("series after recovery: %v %v", v, ok)
	}
	if !strings.Contains(logs.String(), "forwarding again") {
		t.Errorf("recovery not logged:\n%s", logs.String())
	}
	if st := f.Status(); st.Failures < failures || failures == 0 {
		t.Errorf("failures %d then %d", failures, st.Failures)
	}

	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if gs := rl2.r.Store.Groups(); len(gs) != 0 {
		t.Fatalf("group not deleted on exit: %v", gs)
	}
}

func TestNewChecksConfig(t *testing.T) {
	cases := []struct {
		cfg  forward.Config
		want string
	}{
		{forward.Config{From: forward.Target{URL: "http://x/metrics"}, To: "http://relay:9091"}, "--job"},
		{forward.Config{From: forward.Target{URL: "http://x/metrics"}, To: "relay:9091", Job: "j"}, "--to"},
		{forward.Config{From: forward.Target{URL: "http://x/metrics"}, To: "http://relay:9091/metrics/job/x", Job: "j"}, "without a path"},
		{forward.Config{From: forward.Target{URL: "localhost:8080"}, To: "http://relay:9091", Job: "j"}, "--from"},
		{forward.Config{From: forward.Target{URL: "http://x/metrics", BearerTokenFile: "/nonexistent/token"}, To: "http://relay:9091", Job: "j"}, "/nonexistent/token"},
		{forward.Config{From: forward.Target{URL: "http://x/metrics", CAFile: "/nonexistent/ca"}, To: "http://relay:9091", Job: "j"}, "/nonexistent/ca"},
		{forward.Config{From: forward.Target{URL: "http://x/metrics"}, To: "http://relay:9091", Job: "j", ToTokenFile: "/nonexistent/rt"}, "--to.token-file"},
	}
	for _, c := range cases {
		if _, err := forward.New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v; want an error mentioning %q", c.cfg, err, c.want)
		}
	}
}
