package forward_test

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
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
	"github.com/opview/opview/internal/relaytest"
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

// value reads the relay's /metrics as Prometheus would and returns the first sample of name
// whose labels include want.
func value(t *testing.T, relayURL, name string, want map[string]string) (float64, bool) {
	t.Helper()
	return promtest.Value(promtest.Scrape(t, relayURL+"/metrics"), name, want)
}

func TestForwardPlainHTTP(t *testing.T) {
	op := httptest.NewServer(promhttp.HandlerFor(operatorRegistry(t), promhttp.HandlerOpts{}))
	defer op.Close()
	relayURL := relaytest.Start(t, relay.Config{GroupTTL: time.Minute}).URL
	f, err := forward.New(forward.Config{From: forward.Target{URL: op.URL}, To: relayURL, Job: "memcached-operator", Instance: "laptop"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Once(context.Background()); err != nil {
		t.Fatal(err)
	}
	fams := promtest.Scrape(t, relayURL+"/metrics")
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
	relayURL := relaytest.Start(t, relay.Config{GroupTTL: time.Minute}).URL

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
			f, err := forward.New(forward.Config{From: c.from, To: relayURL, Job: "secure-op", Instance: strings.ReplaceAll(c.name, " ", "-")})
			if err != nil {
				t.Fatal(err)
			}
			err = f.Once(context.Background())
			if c.errSide == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := value(t, relayURL, "controller_runtime_reconcile_total", map[string]string{"job": "secure-op", "instance": strings.ReplaceAll(c.name, " ", "-")}); !ok {
					t.Fatalf("forwarded series missing from the relay: %v", promtest.Scrape(t, relayURL+"/metrics")["controller_runtime_reconcile_total"])
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
	relayURL := relaytest.Start(t, relay.Config{GroupTTL: time.Minute, WriteTokens: tokens}).URL
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
			cfg := forward.Config{From: forward.Target{URL: op.URL}, To: relayURL, Job: "op", Instance: "i"}
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
				if err := f.Delete(context.Background()); err != nil {
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
	f, err := forward.New(forward.Config{From: forward.Target{URL: bad.URL}, To: relayURL, Job: "op", Instance: "i", ToTokenFile: promtest.WriteFile(t, "tok", "relay-secret")})
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
	srv := relaytest.Start(t, relay.Config{GroupTTL: time.Minute})
	r, relayURL := srv.Relay, srv.URL
	f, err := forward.New(forward.Config{From: forward.Target{URL: opURL + "/metrics"}, To: relayURL, Job: "op", Instance: "i"})
	if err != nil {
		t.Fatal(err)
	}
	err = f.Once(context.Background())
	var fe *forward.Error
	if !errors.As(err, &fe) || fe.Side != forward.SideOperator || !strings.HasPrefix(err.Error(), "scraping the operator failed: GET ") || !strings.Contains(err.Error(), "is the operator running") {
		t.Fatalf("err = %v; want the operator side with a hint", err)
	}
	if n := len(r.Store.Groups()); n != 0 {
		t.Fatalf("%d groups after a failed scrape", n)
	}
}

// TestForwardAnswerIsBounded: an operator's answer larger than --from.body-size-limit fails the
// scrape, naming the flag; nothing reaches the relay.
func TestForwardAnswerIsBounded(t *testing.T) {
	op := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		for i := 0; i < 20000; i++ {
			fmt.Fprintf(w, "padding_metric{i=\"%d\"} 1\n", i)
		}
	}))
	t.Cleanup(op.Close)
	srv := relaytest.Start(t, relay.Config{GroupTTL: time.Minute})
	f, err := forward.New(forward.Config{From: forward.Target{URL: op.URL + "/metrics", BodyLimit: 64 << 10}, To: srv.URL, Job: "op", Instance: "i"})
	if err != nil {
		t.Fatal(err)
	}
	err = f.Once(context.Background())
	var fe *forward.Error
	if !errors.As(err, &fe) || fe.Side != forward.SideOperator || !strings.Contains(err.Error(), "--from.body-size-limit") {
		t.Fatalf("err = %v; want the operator side naming --from.body-size-limit", err)
	}
	if n := len(srv.Store.Groups()); n != 0 {
		t.Fatalf("%d groups after a refused scrape", n)
	}
}

// Run scrapes and pushes at the interval, so the relay follows the operator, logs the first push
// and deletes the group on a clean exit. (The loop's retries, backoff and logging are
// pusher.Pusher's, tested there.)
func TestForwardRun(t *testing.T) {
	reg := operatorRegistry(t)
	queue := prometheus.NewGauge(prometheus.GaugeOpts{Name: "workqueue_depth", Help: "Depth."})
	reg.MustRegister(queue)
	op := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer op.Close()
	srv := relaytest.Start(t, relay.Config{GroupTTL: time.Minute})
	r, relayURL := srv.Relay, srv.URL
	var logs promtest.Buffer
	f, err := forward.New(forward.Config{
		From: forward.Target{URL: op.URL}, To: relayURL, Job: "op", Instance: "laptop", Interval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- f.Run(ctx) }()
	group := map[string]string{"job": "op", "instance": "laptop"}
	promtest.Eventually(t, 10*time.Second, "the first push", func() bool { _, ok := value(t, relayURL, "workqueue_depth", group); return ok })
	queue.Set(7)
	promtest.Eventually(t, 10*time.Second, "a later scrape-and-push", func() bool { v, _ := value(t, relayURL, "workqueue_depth", group); return v == 7 })
	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if gs := r.Store.Groups(); len(gs) != 0 {
		t.Fatalf("group not deleted on exit: %v", gs)
	}
	for _, want := range []string{`msg=forwarding from=` + op.URL, `msg="first push accepted"`, `msg="group deleted from the relay"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
	if st := f.Status(); st.Pushes < 2 || st.Failures != 0 {
		t.Errorf("status %+v", st)
	}
}

func TestNewChecksConfig(t *testing.T) {
	cases := []struct {
		cfg  forward.Config
		want string
	}{
		{forward.Config{From: forward.Target{URL: "http://x/metrics"}, To: "http://relay:9091"}, "--job: required"},
		{forward.Config{From: forward.Target{URL: "http://x/metrics"}, To: "relay:9091", Job: "j"}, `--to: "relay:9091" is not a relay's base URL`},
		{forward.Config{From: forward.Target{URL: "http://x/metrics"}, To: "http://relay:9091/metrics/job/x", Job: "j"}, "--to: \"http://relay:9091/metrics/job/x\": give the relay's base URL, without a path"},
		{forward.Config{From: forward.Target{URL: "http://x/metrics"}, To: "https://relay:9091", Job: "j", ToCAFile: "/nonexistent/relay-ca"}, "--to.ca-file: unable to read CA cert: unable to read file /nonexistent/relay-ca"},
		{forward.Config{From: forward.Target{URL: "localhost:8080"}, To: "http://relay:9091", Job: "j"}, "--from"},
		{forward.Config{From: forward.Target{URL: "http://x/metrics", BearerTokenFile: "/nonexistent/token"}, To: "http://relay:9091", Job: "j"}, "/nonexistent/token"},
		{forward.Config{From: forward.Target{URL: "http://x/metrics", CAFile: "/nonexistent/ca"}, To: "http://relay:9091", Job: "j"}, "/nonexistent/ca"},
		{forward.Config{From: forward.Target{URL: "http://x/metrics"}, To: "http://relay:9091", Job: "j", ToTokenFile: "/nonexistent/rt"}, "--to.token-file: open /nonexistent/rt"},
	}
	for _, c := range cases {
		if _, err := forward.New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v; want an error mentioning %q", c.cfg, err, c.want)
		}
	}
}
