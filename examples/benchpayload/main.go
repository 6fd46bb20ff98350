// Command benchpayload captures the payload of `make bench`: the metrics registry of a real
// controller-runtime manager after real work. It runs the sample operator (package
// sampleoperator: its jobs controller, leader election on an in-process lock) plus more
// controllers on the same manager, each fed by a source.Channel, whose reconcilers succeed, fail
// and retry, requeue, and call a loopback API server through client-go (so rest_client_requests_total
// counts real requests). When every queue has drained, it writes controller-runtime's
// metrics.Registry in the Prometheus text format.
//
//	go run ./benchpayload -out ../bench/testdata/controller-runtime.prom   (from examples/)
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/opview/opview/examples/sampleoperator"
)

// The extra controllers, as a fleet operator might name them.
var controllers = []string{"widget", "gadget", "sprocket", "gizmo", "configmap-mirror", "secret-sync", "certificate-rotator", "ingress-router", "backup-scheduler"}

func main() {
	out := flag.String("out", "", "file to write (default: standard output)")
	items := flag.Int("items", 60, "work items per controller")
	flag.Parse()
	if err := run(*out, *items); err != nil {
		fmt.Fprintln(os.Stderr, "benchpayload:", err)
		os.Exit(1)
	}
}

// apiServer answers client-go like a tiny API server: ConfigMaps "present-*" exist, others are
// 404; writes succeed, except conflicting updates of "conflict-*".
func apiServer() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		name := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		switch {
		case r.Method == http.MethodGet && !strings.HasPrefix(name, "present-") && !strings.HasPrefix(name, "conflict-"):
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"configmaps %q not found"}`, name)
		case r.Method == http.MethodPut && strings.HasPrefix(name, "conflict-"):
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Conflict","code":409,"message":"the object has been modified"}`)
		case r.Method == http.MethodPost:
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"x","namespace":"default","resourceVersion":"1"}}`)
		default:
			fmt.Fprintf(w, `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":%q,"namespace":"default","resourceVersion":"2"}}`, name)
		}
	}))
}

func run(out string, items int) error {
	api := apiServer()
	defer api.Close()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: api.URL, QPS: 1000, Burst: 1000})
	if err != nil {
		return err
	}
	op, err := sampleoperator.New(nil, sampleoperator.Options{
		Metrics:        metricsserver.Options{BindAddress: "0"},
		LeaderElection: true,
	})
	if err != nil {
		return err
	}
	var done atomic.Int64
	var attempts sync.Map
	skip := true
	chans := map[string]chan event.TypedGenericEvent[string]{}
	for i, name := range controllers {
		ch := make(chan event.TypedGenericEvent[string], items)
		chans[name] = ch
		enqueue := handler.TypedFuncs[string, reconcile.Request]{
			GenericFunc: func(_ context.Context, e event.TypedGenericEvent[string], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
				q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "default", Name: e.Object}})
			},
		}
		err := builder.TypedControllerManagedBy[reconcile.Request](op.Manager).
			Named(name).
			WatchesRawSource(source.Channel(ch, enqueue)).
			WithOptions(controller.TypedOptions[reconcile.Request]{MaxConcurrentReconciles: 1 + i%3, SkipNameValidation: &skip}).
			Complete(reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
				v, _ := attempts.LoadOrStore(name+"/"+req.Name, new(atomic.Int32))
				attempt := v.(*atomic.Int32).Add(1)
				cms := cs.CoreV1().ConfigMaps(req.Namespace)
				cm, err := cms.Get(ctx, req.Name, metav1.GetOptions{})
				switch {
				case err != nil: // not found: create it
					_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: req.Name, Namespace: req.Namespace}}, metav1.CreateOptions{})
				default:
					_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
				}
				switch {
				case err != nil && attempt <= 2: // conflicts: retried with backoff
					return reconcile.Result{}, err
				case strings.HasPrefix(req.Name, "present-requeue") && attempt == 1:
					return reconcile.Result{RequeueAfter: 20 * time.Millisecond}, nil
				case strings.HasPrefix(req.Name, "present-delete"):
					if err := cms.Delete(ctx, req.Name, metav1.DeleteOptions{}); err != nil {
						return reconcile.Result{}, err
					}
				case strings.HasPrefix(req.Name, "present-patch"):
					if _, err := cms.Patch(ctx, req.Name, types.MergePatchType, []byte(`{"data":{"a":"b"}}`), metav1.PatchOptions{}); err != nil {
						return reconcile.Result{}, err
					}
				}
				done.Add(1)
				return reconcile.Result{}, nil
			}))
		if err != nil {
			return fmt.Errorf("controller %s: %w", name, err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- op.Start(ctx) }()

	prefixes := []string{"present-ok", "absent", "conflict", "present-requeue", "present-delete", "present-patch", "present-ok", "absent"}
	for _, name := range controllers {
		for j := 0; j < items; j++ {
			chans[name] <- event.TypedGenericEvent[string]{Object: fmt.Sprintf("%s-%d", prefixes[j%len(prefixes)], j)}
		}
	}
	mix := []string{sampleoperator.OutcomeOK, sampleoperator.OutcomeError, sampleoperator.OutcomeRequeue, sampleoperator.OutcomeRequeueAfter,
		sampleoperator.OutcomeTerminal, sampleoperator.OutcomeOK, sampleoperator.OutcomeSlow, sampleoperator.OutcomePanic}
	for j := 0; j < items; j++ {
		op.Enqueue(fmt.Sprintf("%s-%d", mix[j%len(mix)], j))
	}

	// Wait until every item was reconciled to the end and every queue is empty.
	want := int64(len(controllers) * items)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-errc:
			return fmt.Errorf("manager stopped: %v", err)
		default:
		}
		fams, err := metrics.Registry.Gather()
		if err != nil {
			return err
		}
		if done.Load() >= want && settled(fams) {
			return write(out, fams)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("work not done after 2 minutes: %d of %d items", done.Load(), want)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, bounded by the deadline above
	}
}

// settled reports whether every workqueue is empty and no reconcile is running.
func settled(fams []*dto.MetricFamily) bool {
	for _, mf := range fams {
		if mf.GetName() != "workqueue_depth" && mf.GetName() != "controller_runtime_active_workers" {
			continue
		}
		for _, m := range mf.Metric {
			if m.GetGauge().GetValue() != 0 {
				return false
			}
		}
	}
	return true
}

func write(out string, fams []*dto.MetricFamily) error {
	w := os.Stdout
	if out != "" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	series := 0
	for _, mf := range fams {
		n, err := expfmt.MetricFamilyToText(w, mf)
		if err != nil {
			return err
		}
		_ = n
		for _, m := range mf.Metric {
			switch {
			case m.Histogram != nil:
				series += len(m.Histogram.Bucket) + 2
			case m.Summary != nil:
				series += len(m.Summary.Quantile) + 2
			default:
				series++
			}
		}
	}
	fmt.Fprintf(os.Stderr, "benchpayload: %d families, about %d series\n", len(fams), series)
	return nil
}
