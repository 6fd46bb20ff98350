// Package forward_test runs the relay's three ways in for an operator against a real
// controller-runtime manager: its metrics server (plain HTTP, and HTTPS with a self-signed
// certificate and bearer-token checking through a FilterProvider) forwarded by the forwarder,
// scraped as a pull source, and pushed from inside the process by the pusher as a
// manager.Runnable. Every check reads the relay's /metrics back and looks for the operator's
// series with the group's labels.
package forward_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/opview/opview/exporter/auth"
	"github.com/opview/opview/exporter/forward"
	"github.com/opview/opview/exporter/pusher"
	"github.com/opview/opview/exporter/relay"
	"github.com/opview/opview/exporter/sources"
	"github.com/opview/opview/internal/promtest"
	"github.com/opview/opview/internal/relaytest"
)

// operator is a controller-runtime manager with one running controller fed by a channel (no API
// server needed) and its metrics server, which serves controller-runtime's metrics.Registry.
type operator struct {
	name       string // the controller's name, unique in the process (-count=N reruns)
	mgr        manager.Manager
	events     chan event.TypedGenericEvent[string]
	reconciled atomic.Int64
	server     interface{ GetBindAddr() string }
	stop       context.CancelFunc
	done       chan error
}

const metricsToken = "operator-metrics-token"

var runs atomic.Int64

// startOperator starts a manager whose controller is named controllerName. With secure, the
// metrics server serves HTTPS with the self-signed certificate controller-runtime generates and a
// FilterProvider that accepts only "Authorization: Bearer <metricsToken>" (kubebuilder's secure
// mode checks tokens with the API server instead; the wire protocol is the same).
func startOperator(t *testing.T, controllerName string, secure bool, extra ...manager.Runnable) *operator {
	t.Helper()
	// controller-runtime refuses a controller name used before in the process, and its metrics
	// registry is global: make the name unique per run.
	controllerName = fmt.Sprintf("%s-%d", controllerName, runs.Add(1))
	cfg := &rest.Config{Host: "http://127.0.0.1:1"} // never dialled: no informers, no leader election
	opts := metricsserver.Options{BindAddress: "127.0.0.1:0", SecureServing: secure}
	if secure {
		opts.CertDir = t.TempDir() // empty: controller-runtime generates a self-signed certificate
		opts.FilterProvider = func(*rest.Config, *http.Client) (metricsserver.Filter, error) {
			return func(_ logr.Logger, next http.Handler) (http.Handler, error) {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					switch r.Header.Get("Authorization") {
					case "":
						http.Error(w, "Unauthorized", http.StatusUnauthorized)
					case "Bearer " + metricsToken:
						next.ServeHTTP(w, r)
					default:
						http.Error(w, "Forbidden", http.StatusForbidden)
					}
				}), nil
			}, nil
		}
	}
	mgr, err := manager.New(cfg, manager.Options{Metrics: metricsserver.Options{BindAddress: "0"}, Logger: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := metricsserver.NewServer(opts, cfg, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.Add(srv); err != nil {
		t.Fatal(err)
	}
	o := &operator{name: controllerName, mgr: mgr, events: make(chan event.TypedGenericEvent[string], 100), server: srv.(interface{ GetBindAddr() string })}
	enqueue := handler.TypedFuncs[string, reconcile.Request]{
		GenericFunc: func(_ context.Context, e event.TypedGenericEvent[string], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.Add(reconcile.Request{})
		},
	}
	err = builder.TypedControllerManagedBy[reconcile.Request](mgr).
		Named(controllerName).
		WatchesRawSource(source.Channel(o.events, enqueue)).
		Complete(reconcile.Func(func(context.Context, reconcile.Request) (reconcile.Result, error) {
			o.reconciled.Add(1)
			return reconcile.Result{}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range extra {
		if err := mgr.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.stop, o.done = cancel, make(chan error, 1)
	go func() { o.done <- mgr.Start(ctx) }()
	t.Cleanup(func() { o.Stop(t) })
	promtest.Eventually(t, 20*time.Second, "the metrics server to listen", func() bool { return o.server.GetBindAddr() != "" })
	o.reconcile(t, 3)
	return o
}

// reconcile has the controller reconcile n more times, one at a time (the workqueue merges
// requests for the same key that wait together).
func (o *operator) reconcile(t *testing.T, n int) {
	t.Helper()
	for range n {
		before := o.reconciled.Load()
		o.events <- event.TypedGenericEvent[string]{Object: "x"}
		promtest.Eventually(t, 20*time.Second, "a reconcile", func() bool { return o.reconciled.Load() > before })
	}
}

func (o *operator) Stop(t *testing.T) {
	if o.stop == nil {
		return
	}
	o.stop()
	o.stop = nil
	if err := <-o.done; err != nil {
		t.Errorf("manager: %v", err)
	}
}

func (o *operator) URL(secure bool) string {
	scheme := "http"
	if secure {
		scheme = "https"
	}
	return fmt.Sprintf("%s://%s/metrics", scheme, o.server.GetBindAddr())
}

// relayValue reads the relay's /metrics as Prometheus does (text) and returns the value of the
// first series of name whose labels include want.
func relayValue(t *testing.T, relayURL, name string, want map[string]string) (float64, bool) {
	t.Helper()
	return promtest.Value(promtest.Scrape(t, relayURL+"/metrics"), name, want)
}

// checkOperatorSeries asserts that the relay serves controller-runtime's series for the
// controller with the group's labels, and that the reconcile count reaches at least min.
func checkOperatorSeries(t *testing.T, relayURL, controllerName string, group map[string]string, min float64) {
	t.Helper()
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range group {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	promtest.Eventually(t, 20*time.Second, fmt.Sprintf("controller_runtime_reconcile_total{controller=%q} >= %v with labels %v", controllerName, min, group), func() bool {
		v, ok := relayValue(t, relayURL, "controller_runtime_reconcile_total", with(map[string]string{"controller": controllerName, "result": "success"}))
		return ok && v >= min
	})
	for _, c := range []struct {
		name   string
		labels map[string]string
	}{
		{"controller_runtime_reconcile_time_seconds", map[string]string{"controller": controllerName}},
		{"workqueue_adds_total", map[string]string{"name": controllerName, "controller": controllerName}},
		{"controller_runtime_active_workers", map[string]string{"controller": controllerName}},
		{"go_goroutines", nil},
	} {
		if _, ok := relayValue(t, relayURL, c.name, with(c.labels)); !ok {
			t.Errorf("%s%v missing from the relay", c.name, with(c.labels))
		}
	}
}

func TestForwardPlainHTTP(t *testing.T) {
	op := startOperator(t, "plain-widgets", false)
	srv := relaytest.Start(t, relay.Config{GroupTTL: time.Minute})
	r, relayURL := srv.Relay, srv.URL
	f, err := forward.New(forward.Config{From: forward.Target{URL: op.URL(false)}, To: relayURL, Job: "widget-operator", Instance: "laptop", Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	group := map[string]string{"job": "widget-operator", "instance": "laptop"}
	checkOperatorSeries(t, relayURL, op.name, group, 3)
	op.reconcile(t, 2)
	checkOperatorSeries(t, relayURL, op.name, group, 5)

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("forwarder: %v", err)
	}
	if gs := r.Store.Groups(); len(gs) != 0 {
		t.Fatalf("group left after a clean exit: %v", gs)
	}
}

func TestForwardHTTPSWithBearerToken(t *testing.T) {
	op := startOperator(t, "secure-widgets", true)
	tokens, err := auth.ParseTokens([]byte("relay-write-token\n"))
	if err != nil {
		t.Fatal(err)
	}
	srv := relaytest.Start(t, relay.Config{GroupTTL: time.Minute, WriteTokens: tokens})
	relayURL := srv.URL
	relayToken := promtest.WriteFile(t, "relay-token", "relay-write-token\n")
	good := forward.Target{URL: op.URL(true), BearerTokenFile: promtest.WriteFile(t, "token", metricsToken+"\n"), InsecureSkipVerify: true}

	// The ways it goes wrong, each blamed on the right side with a hint.
	for _, c := range []struct {
		name    string
		from    forward.Target
		toToken string
		side    forward.Side
		want    string
	}{
		{"certificate not trusted", forward.Target{URL: good.URL, BearerTokenFile: good.BearerTokenFile}, relayToken, forward.SideOperator, "self-signed"},
		{"no token", forward.Target{URL: good.URL, InsecureSkipVerify: true}, relayToken, forward.SideOperator, "HTTP 401"},
		{"wrong token", forward.Target{URL: good.URL, InsecureSkipVerify: true, BearerTokenFile: promtest.WriteFile(t, "bad", "nope")}, relayToken, forward.SideOperator, "HTTP 403"},
		{"plain HTTP to the HTTPS port", forward.Target{URL: strings.Replace(good.URL, "https:", "http:", 1)}, relayToken, forward.SideOperator, "HTTPS"},
		{"relay token missing", good, "", forward.SideRejected, "requires a token"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, err := forward.New(forward.Config{From: c.from, To: relayURL, ToTokenFile: c.toToken, Job: "secure-operator", Instance: "laptop"})
			if err != nil {
				t.Fatal(err)
			}
			err = f.Once(context.Background())
			var fe *forward.Error
			if !errors.As(err, &fe) || fe.Side != c.side || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v; want side %s mentioning %q", err, c.side, c.want)
			}
		})
	}

	f, err := forward.New(forward.Config{From: good, To: relayURL, ToTokenFile: relayToken, Job: "secure-operator", Instance: "laptop", Interval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.Run(ctx)
	checkOperatorSeries(t, relayURL, op.name, map[string]string{"job": "secure-operator", "instance": "laptop"}, 3)
}

// The relay scrapes the operator as a pull source; when the operator stops, the source is
// reported down and its group expires.
func TestPullSourceFromController(t *testing.T) {
	op := startOperator(t, "pulled-widgets", false)
	srv := relaytest.Start(t, relay.Config{
		GroupTTL: 3 * time.Second, ForgetAfter: time.Minute,
		Sources: map[string]sources.Spec{"lan-operator": {URL: op.URL(false), Interval: sources.Duration(50 * time.Millisecond)}},
	})
	relayURL := srv.URL
	group := map[string]string{"job": "lan-operator", "instance": op.server.GetBindAddr()}
	checkOperatorSeries(t, relayURL, op.name, group, 3)
	if v, ok := relayValue(t, relayURL, sources.MetricUp, group); !ok || v != 1 {
		resp, err := http.Get(relayURL + sources.APIPath)
		var detail []byte
		if err == nil {
			detail, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		t.Fatalf("source up = %v %v; sources: %s", v, ok, detail)
	}
	op.Stop(t)
	promtest.Eventually(t, 20*time.Second, "the source reported down", func() bool {
		v, ok := relayValue(t, relayURL, sources.MetricUp, group)
		return ok && v == 0
	})
	promtest.Eventually(t, 20*time.Second, "the source's group to expire", func() bool {
		_, samples := relayValue(t, relayURL, "controller_runtime_reconcile_total", group)
		fresh, ok := relayValue(t, relayURL, "opview_relay_group_fresh", group)
		return !samples && ok && fresh == 0
	})
}

// The pusher runs inside the manager as a Runnable, pushes metrics.Registry and deletes its group
// when the manager stops.
func TestPusherInManager(t *testing.T) {
	srv := relaytest.Start(t, relay.Config{GroupTTL: time.Minute})
	r, relayURL := srv.Relay, srv.URL
	var logs promtest.Buffer
	p, err := pusher.New(pusher.Config{URL: relayURL, Job: "pushing-operator", Instance: "pod-0", Gatherer: metrics.Registry, Interval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	op := startOperator(t, "pushed-widgets", false, p)
	checkOperatorSeries(t, relayURL, op.name, map[string]string{"job": "pushing-operator", "instance": "pod-0"}, 3)
	op.Stop(t)
	if gs := r.Store.Groups(); len(gs) != 0 {
		t.Fatalf("group left after the manager stopped: %v; pusher log:\n%s", gs, logs.String())
	}
}
