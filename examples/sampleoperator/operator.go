// Package sampleoperator is a small but real controller-runtime operator. opview's dashboard tests,
// forwarder tests and e2e run it to get every metric family a controller-runtime operator exposes,
// produced by controller-runtime itself.
//
// It runs two controllers on one manager:
//
//   - "sample-jobs" is fed by a source.Channel, so it works without an API server. Each work item
//     is a name whose prefix picks what Reconcile does (see the Outcome constants): succeed, fail a
//     few times then succeed, fail terminally, requeue, requeue after a delay, overrun the
//     reconciliation timeout, or panic. Enqueue items with Operator.Enqueue, or set Options.Load
//     for a steady mixed stream.
//   - "sample-configmaps" reconciles ConfigMaps labelled opview.dev/sample=true when a *rest.Config
//     of a real API server is given; the ConfigMap's data key "outcome" picks the behaviour the same
//     way.
//
// Without an API server (New(nil, ...)), leader election uses an in-process lock, so the real
// client-go elector still runs and sets leader_election_master_status. With Options.Webhook set, a
// validating webhook for ConfigMaps is served at WebhookPath.
//
// Metrics go to controller-runtime's global metrics.Registry and are served by the manager's
// metrics server as configured by Options.Metrics (plain HTTP, HTTPS, custom FilterProvider).
package sampleoperator

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
)

// Controller names (the `controller` label of their metrics).
const (
	JobsController       = "sample-jobs"
	ConfigMapsController = "sample-configmaps"
)

// SampleLabel selects the ConfigMaps the ConfigMap controller reconciles (value "true").
const SampleLabel = "opview.dev/sample"

// WebhookPath is where the validating webhook for ConfigMaps is served (the `webhook` label).
const WebhookPath = "/validate-configmap"

// DefaultLeaderElectionID is the Lease name used for leader election.
const DefaultLeaderElectionID = "opview-sample-operator"

// Outcomes of a work item, chosen by the prefix of its name ("error-42") or, for ConfigMaps, by
// data["outcome"]. Anything else succeeds.
const (
	OutcomeOK           = "ok"       // success
	OutcomeError        = "error"    // fails FailAttempts times (retried with backoff), then succeeds
	OutcomeTerminal     = "terminal" // reconcile.TerminalError: counted, never retried
	OutcomeRequeue      = "requeue"  // Result{Requeue: true} once, then succeeds
	OutcomeRequeueAfter = "after"    // Result{RequeueAfter: 100ms} once, then succeeds
	OutcomeSlow         = "slow"     // overruns the reconciliation timeout once, then succeeds
	OutcomePanic        = "panic"    // panics once (recovered by controller-runtime), then succeeds
)

// FailAttempts is how many times an OutcomeError item fails before it succeeds.
const FailAttempts = 3

// Options configures the operator. The zero value is usable but note that a zero Metrics means
// controller-runtime's default BindAddress ":8080"; set BindAddress "0" to disable the server.
type Options struct {
	// Metrics configures the manager's metrics server (BindAddress, SecureServing, FilterProvider, ...).
	Metrics metricsserver.Options
	// HealthProbeBindAddress serves /healthz and /readyz when set (e.g. ":8081").
	HealthProbeBindAddress string
	// LeaderElection turns leader election on: a Lease in LeaderElectionNamespace when New gets a
	// rest.Config, an in-process lock otherwise.
	LeaderElection          bool
	LeaderElectionID        string // default DefaultLeaderElectionID
	LeaderElectionNamespace string // default: the Pod's namespace in a cluster, "default" outside
	// Webhook, when set, serves the validating webhook at WebhookPath with these options
	// (CertDir must hold tls.crt and tls.key).
	Webhook *webhook.Options
	// Load, when > 0, makes the operator enqueue a batch of work items with mixed outcomes every
	// Load, so its metrics move without anyone calling Enqueue.
	Load time.Duration
	// ReconcileTimeout is the jobs controller's ReconciliationTimeout (default 500ms).
	ReconcileTimeout time.Duration
	// MaxConcurrentReconciles per controller (default 2).
	MaxConcurrentReconciles int
	// Logger for the manager and controllers; default discards.
	Logger logr.Logger
}

// Operator is a configured sample operator. Start it with Start.
type Operator struct {
	// Manager is the underlying controller-runtime manager (e.g. for GetWebhookServer or Elected).
	Manager manager.Manager

	events   chan event.TypedGenericEvent[string]
	opts     Options
	attempts sync.Map // item name -> *atomic.Int32
	seq      atomic.Int64
}

// New builds the operator. cfg may be nil: the operator then needs no API server (only the jobs
// controller runs and leader election, if on, uses an in-process lock).
func New(cfg *rest.Config, opts Options) (*Operator, error) {
	if opts.LeaderElectionID == "" {
		opts.LeaderElectionID = DefaultLeaderElectionID
	}
	if opts.ReconcileTimeout == 0 {
		opts.ReconcileTimeout = 500 * time.Millisecond
	}
	if opts.MaxConcurrentReconciles == 0 {
		opts.MaxConcurrentReconciles = 2
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = logr.Discard()
	}
	standalone := cfg == nil
	mopts := manager.Options{
		Logger:                        opts.Logger,
		Metrics:                       opts.Metrics,
		HealthProbeBindAddress:        opts.HealthProbeBindAddress,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              opts.LeaderElectionID,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
	}
	if standalone {
		// The manager insists on a config; nothing in standalone mode dials it (no informers, no
		// Lease lock), so point it at a closed port.
		cfg = &rest.Config{Host: "http://127.0.0.1:1"}
		if opts.LeaderElection {
			mopts.LeaderElectionResourceLockInterface = newMemoryLock(opts.LeaderElectionID)
		}
	} else {
		// Cache only the labelled ConfigMaps, not every ConfigMap of the cluster.
		mopts.Cache = cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.ConfigMap{}: {Label: labels.SelectorFromSet(labels.Set{SampleLabel: "true"})},
		}}
		if opts.LeaderElection && opts.LeaderElectionNamespace == "" {
			if _, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err != nil {
				mopts.LeaderElectionNamespace = "default"
			}
		}
	}
	if opts.Webhook != nil {
		mopts.WebhookServer = webhook.NewServer(*opts.Webhook)
	}
	mgr, err := manager.New(cfg, mopts)
	if err != nil {
		return nil, fmt.Errorf("sampleoperator: manager: %w", err)
	}
	o := &Operator{Manager: mgr, events: make(chan event.TypedGenericEvent[string], 1024), opts: opts}

	skip := true
	enqueue := handler.TypedFuncs[string, reconcile.Request]{
		GenericFunc: func(_ context.Context, e event.TypedGenericEvent[string], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Name: e.Object}})
		},
	}
	err = builder.TypedControllerManagedBy[reconcile.Request](mgr).
		Named(JobsController).
		WatchesRawSource(source.Channel(o.events, enqueue)).
		WithOptions(controller.TypedOptions[reconcile.Request]{
			MaxConcurrentReconciles: opts.MaxConcurrentReconciles,
			ReconciliationTimeout:   opts.ReconcileTimeout,
			SkipNameValidation:      &skip,
		}).
		Complete(reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
			return o.act(ctx, req.Name, outcomeOf(req.Name))
		}))
	if err != nil {
		return nil, fmt.Errorf("sampleoperator: %s controller: %w", JobsController, err)
	}

	if !standalone {
		c := mgr.GetClient()
		err = builder.ControllerManagedBy(mgr).
			Named(ConfigMapsController).
			For(&corev1.ConfigMap{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(obj client.Object) bool {
				return obj.GetLabels()[SampleLabel] == "true"
			}))).
			WithOptions(controller.Options{
				MaxConcurrentReconciles: opts.MaxConcurrentReconciles,
				ReconciliationTimeout:   opts.ReconcileTimeout,
				SkipNameValidation:      &skip,
			}).
			Complete(reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
				var cm corev1.ConfigMap
				if err := c.Get(ctx, req.NamespacedName, &cm); err != nil {
					if apierrors.IsNotFound(err) {
						o.attempts.Delete(req.String())
						return reconcile.Result{}, nil
					}
					return reconcile.Result{}, err
				}
				return o.act(ctx, req.String(), cm.Data["outcome"])
			}))
		if err != nil {
			return nil, fmt.Errorf("sampleoperator: %s controller: %w", ConfigMapsController, err)
		}
	}

	if opts.Webhook != nil {
		mgr.GetWebhookServer().Register(WebhookPath, &webhook.Admission{Handler: configMapValidator{}})
	}
	if opts.HealthProbeBindAddress != "" {
		if err := mgr.AddHealthzCheck("ping", func(_ *http.Request) error { return nil }); err != nil {
			return nil, err
		}
		if err := mgr.AddReadyzCheck("ping", func(_ *http.Request) error { return nil }); err != nil {
			return nil, err
		}
	}
	if opts.Load > 0 {
		if err := mgr.Add(manager.RunnableFunc(o.load)); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// Start runs the operator until ctx is cancelled.
func (o *Operator) Start(ctx context.Context) error { return o.Manager.Start(ctx) }

// Enqueue hands work items to the jobs controller; each name's prefix picks its outcome
// (e.g. "error-1", "after-2", "ok-3"). It blocks when 1024 items are waiting to be picked up.
func (o *Operator) Enqueue(names ...string) {
	for _, n := range names {
		o.events <- event.TypedGenericEvent[string]{Object: n}
	}
}

// load enqueues a mixed batch every opts.Load: mostly successes, some of every other outcome.
func (o *Operator) load(ctx context.Context) error {
	mix := []string{OutcomeOK, OutcomeOK, OutcomeOK, OutcomeOK, OutcomeError, OutcomeRequeueAfter,
		OutcomeOK, OutcomeRequeue, OutcomeOK, OutcomeTerminal, OutcomeOK, OutcomeSlow, OutcomeOK, OutcomePanic}
	t := time.NewTicker(o.opts.Load)
	defer t.Stop()
	i := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			for range 4 {
				n := o.seq.Add(1)
				select {
				case o.events <- event.TypedGenericEvent[string]{Object: fmt.Sprintf("%s-%d", mix[i%len(mix)], n)}:
				case <-ctx.Done():
					return nil
				}
				i++
			}
		}
	}
}

func outcomeOf(name string) string {
	prefix, _, _ := strings.Cut(name, "-")
	return prefix
}

// act performs outcome for the item key; attempt counting makes failures transient.
func (o *Operator) act(ctx context.Context, key, outcome string) (reconcile.Result, error) {
	v, _ := o.attempts.LoadOrStore(key, new(atomic.Int32))
	attempt := v.(*atomic.Int32).Add(1)
	done := func() { o.attempts.Delete(key) }
	switch outcome {
	case OutcomeError:
		if attempt <= FailAttempts {
			return reconcile.Result{}, fmt.Errorf("item %s: attempt %d of %d fails on purpose", key, attempt, FailAttempts)
		}
	case OutcomeTerminal:
		done()
		return reconcile.Result{}, reconcile.TerminalError(fmt.Errorf("item %s fails terminally on purpose", key))
	case OutcomeRequeue:
		if attempt == 1 {
			//lint:ignore SA1019 the sample exercises every result controller-runtime still counts, including result="requeue".
			return reconcile.Result{Requeue: true}, nil
		}
	case OutcomeRequeueAfter:
		if attempt == 1 {
			return reconcile.Result{RequeueAfter: 100 * time.Millisecond}, nil
		}
	case OutcomeSlow:
		if attempt == 1 {
			<-ctx.Done() // the ReconciliationTimeout fires
			return reconcile.Result{}, ctx.Err()
		}
	case OutcomePanic:
		if attempt == 1 {
			panic(fmt.Sprintf("item %s panics on purpose", key))
		}
	}
	done()
	return reconcile.Result{}, nil
}
