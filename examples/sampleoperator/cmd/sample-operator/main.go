// Command sample-operator runs opview's sample controller-runtime operator (see package
// sampleoperator). Its flags mirror a kubebuilder v4 scaffold:
//
//	# metrics over plain HTTP on :8080, no API server needed
//	go run ./sampleoperator/cmd/sample-operator --metrics-bind-address=:8080 --metrics-secure=false
//	# against a cluster: also reconciles ConfigMaps labelled opview.dev/sample=true; metrics over
//	# HTTPS on :8443, authenticated and authorised by the API server (TokenReview/SubjectAccessReview)
//	go run ./sampleoperator/cmd/sample-operator --kubeconfig ~/.kube/config --metrics-bind-address=:8443 --leader-elect
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/opview/opview/examples/sampleoperator"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "sample-operator:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		metricsAddr   = flag.String("metrics-bind-address", "0", "The address the metrics endpoint binds to. Use :8443 for HTTPS or :8080 for HTTP, or leave as 0 to disable the metrics service.")
		secure        = flag.Bool("metrics-secure", true, "If set, the metrics endpoint is served securely via HTTPS. Use --metrics-secure=false to use HTTP instead.")
		certDir       = flag.String("metrics-cert-path", "", "The directory that contains the metrics server certificate (tls.crt, tls.key); a self-signed one is generated when empty.")
		probeAddr     = flag.String("health-probe-bind-address", ":8081", "The address the probe endpoint binds to (0 disables).")
		leaderElect   = flag.Bool("leader-elect", false, "Enable leader election: a Lease with --kubeconfig, an in-process lock without.")
		leaderNS      = flag.String("leader-election-namespace", "", "Namespace of the leader election Lease (default: the Pod's namespace in a cluster, \"default\" outside).")
		kubeconfig    = flag.String("kubeconfig", "", "Path to a kubeconfig. When set (or when running in a cluster), ConfigMaps labelled opview.dev/sample=true are reconciled too.")
		load          = flag.Duration("load", time.Second, "Enqueue a batch of work items with mixed outcomes this often (0 disables).")
		reconcileTime = flag.Duration("reconcile-timeout", 500*time.Millisecond, "Reconciliation timeout of the sample controllers.")
	)
	zapOpts := zap.Options{Development: true}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	logger := zap.New(zap.UseFlagOptions(&zapOpts))

	var cfg *rest.Config
	var err error
	switch {
	case *kubeconfig != "":
		if cfg, err = clientcmd.BuildConfigFromFlags("", *kubeconfig); err != nil {
			return fmt.Errorf("--kubeconfig %s: %w", *kubeconfig, err)
		}
	case os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		if cfg, err = rest.InClusterConfig(); err != nil {
			return fmt.Errorf("in-cluster config: %w", err)
		}
	}

	metrics := metricsserver.Options{BindAddress: *metricsAddr, SecureServing: *secure, CertDir: *certDir}
	if *secure {
		if cfg != nil {
			metrics.FilterProvider = filters.WithAuthenticationAndAuthorization
		} else {
			logger.Info("WARNING: --metrics-secure without an API server: HTTPS without authentication")
		}
	}
	op, err := sampleoperator.New(cfg, sampleoperator.Options{
		Metrics:                 metrics,
		HealthProbeBindAddress:  *probeAddr,
		LeaderElection:          *leaderElect,
		LeaderElectionNamespace: *leaderNS,
		Load:                    *load,
		ReconcileTimeout:        *reconcileTime,
		Logger:                  logger,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger.Info("starting", "apiServer", cfg != nil, "metrics", *metricsAddr, "secure", *secure)
	return op.Start(ctx)
}
