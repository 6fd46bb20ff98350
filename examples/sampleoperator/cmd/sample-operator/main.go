// Command sample-operator runs opview's sample controller-runtime operator (see package
// sampleoperator). Its flags mirror a kubebuilder v4 scaffold:
//
//	# metrics over plain HTTP on :8080, no API server needed
//	go run ./sampleoperator/cmd/sample-operator --metrics-bind-address=:8080 --metrics-secure=false
//	# against a cluster: also reconciles ConfigMaps labelled opview.dev/sample=true; metrics over
//	# HTTPS on :8443, authenticated and authorised by the API server (TokenReview/SubjectAccessReview)
//	go run ./sampleoperator/cmd/sample-operator --kubeconfig ~/.kube/config --metrics-bind-address=:8443 --leader-elect
//	# pushing its metrics from inside the process to an opview relay (exporter/pusher), no scrape needed
//	go run ./sampleoperator/cmd/sample-operator --push-to=http://relay.example:9091 --push-job=sample-operator
//	# serving the validating webhook for ConfigMaps at /validate-configmap on :9443
//	go run ./sampleoperator/cmd/sample-operator --kubeconfig ~/.kube/config --webhook-port=9443 --webhook-cert-path=/certs
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/opview/opview/examples/sampleoperator"
	"github.com/opview/opview/exporter/pusher"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "sample-operator:", err)
		stop()
		os.Exit(1)
	}
}

// run parses args, starts the operator and runs it until ctx ends. Flag errors name the flag.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("sample-operator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		metricsAddr   = fs.String("metrics-bind-address", "0", "The address the metrics endpoint binds to. Use :8443 for HTTPS or :8080 for HTTP, or leave as 0 to disable the metrics service.")
		secure        = fs.Bool("metrics-secure", true, "If set, the metrics endpoint is served securely via HTTPS. Use --metrics-secure=false to use HTTP instead.")
		certDir       = fs.String("metrics-cert-path", "", "The directory that contains the metrics server certificate (tls.crt, tls.key); a self-signed one is generated when empty.")
		probeAddr     = fs.String("health-probe-bind-address", ":8081", "The address the probe endpoint binds to (0 disables).")
		leaderElect   = fs.Bool("leader-elect", false, "Enable leader election: a Lease with --kubeconfig, an in-process lock without.")
		leaderNS      = fs.String("leader-election-namespace", "", "Namespace of the leader election Lease (default: the Pod's namespace in a cluster, \"default\" outside).")
		leaderID      = fs.String("leader-election-id", sampleoperator.DefaultLeaderElectionID, "Name of the leader election Lease: replicas of one operator share it, distinct operators need distinct ones.")
		webhookHost   = fs.String("webhook-host", "", "The address the webhook server binds to (empty: all).")
		webhookPort   = fs.Int("webhook-port", 0, "Serve the validating webhook for ConfigMaps at "+sampleoperator.WebhookPath+" over HTTPS on this port (0 disables; kubebuilder uses 9443).")
		webhookCerts  = fs.String("webhook-cert-path", "", "The directory that contains the webhook server certificate (tls.crt, tls.key); required with --webhook-port.")
		pushTo        = fs.String("push-to", "", "Push the metrics from inside the process to this opview relay (or Pushgateway) base URL, e.g. http://relay.example:9091 (empty disables).")
		pushJob       = fs.String("push-job", "", "The job label of the pushed group; required with --push-to.")
		pushInstance  = fs.String("push-instance", "", "The instance label of the pushed group (default: the host name).")
		pushInterval  = fs.Duration("push-interval", 15*time.Second, "Time between pushes.")
		pushTokenFile = fs.String("push-token-file", "", "File holding the relay's write token, sent as a bearer token and read at every push, so a rotated token needs no restart (optional).")
		kubeconfig    = fs.String("kubeconfig", "", "Path to a kubeconfig. When set (or when running in a cluster), ConfigMaps labelled opview.dev/sample=true are reconciled too.")
		load          = fs.Duration("load", time.Second, "Enqueue a batch of work items with mixed outcomes this often (0 disables).")
		reconcileTime = fs.Duration("reconcile-timeout", 500*time.Millisecond, "Reconciliation timeout of the sample controllers.")
	)
	// The sample fails on purpose all the time (--load): a stack trace on every "Reconciler error"
	// (zap's development default) would bury the log, so only panics carry one, as the
	// controller-runtime panic handler logs them; --zap-stacktrace-level=error brings them back.
	panicLevel := zapcore.PanicLevel
	zapOpts := zap.Options{Development: true, StacktraceLevel: &panicLevel}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (all options are flags; see --help)", fs.Arg(0))
	}
	zapOpts.DestWriter = stderr
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
	if *secure && *metricsAddr != "0" {
		if cfg != nil {
			metrics.FilterProvider = filters.WithAuthenticationAndAuthorization
		} else {
			logger.Info("WARNING: --metrics-secure without an API server: HTTPS without authentication")
		}
	}
	var wh *webhook.Options
	if *webhookPort != 0 {
		if *webhookPort < 0 || *webhookPort > 65535 {
			return fmt.Errorf("--webhook-port %d: want 1-65535 (0 disables)", *webhookPort)
		}
		if *webhookCerts == "" {
			return fmt.Errorf("--webhook-port needs --webhook-cert-path (a directory with tls.crt and tls.key)")
		}
		wh = &webhook.Options{Host: *webhookHost, Port: *webhookPort, CertDir: *webhookCerts}
	}
	var push *pusher.Pusher
	if *pushTo != "" {
		if *pushJob == "" {
			return fmt.Errorf("--push-to needs --push-job (the job label of the pushed group)")
		}
		if *pushInterval <= 0 {
			return fmt.Errorf("--push-interval %s: must be positive", *pushInterval)
		}
		push, err = pusher.New(pusher.Config{URL: *pushTo, Job: *pushJob, Instance: *pushInstance, Interval: *pushInterval,
			TokenFile: *pushTokenFile, Gatherer: crmetrics.Registry, Logger: slog.New(logr.ToSlogHandler(logger.WithName("pusher")))})
		if err != nil {
			if ce := (*pusher.ConfigError)(nil); errors.As(err, &ce) && pushFlags[ce.Field] != "" {
				return fmt.Errorf("%s: %w", pushFlags[ce.Field], ce.Err)
			}
			return err
		}
	} else if *pushJob != "" || *pushInstance != "" || *pushTokenFile != "" {
		return fmt.Errorf("--push-job, --push-instance and --push-token-file need --push-to")
	}

	op, err := sampleoperator.New(cfg, sampleoperator.Options{
		Metrics:                 metrics,
		HealthProbeBindAddress:  *probeAddr,
		LeaderElection:          *leaderElect,
		LeaderElectionID:        *leaderID,
		LeaderElectionNamespace: *leaderNS,
		Webhook:                 wh,
		Load:                    *load,
		ReconcileTimeout:        *reconcileTime,
		Logger:                  logger,
	})
	if err != nil {
		return err
	}
	if push != nil {
		// The pusher is a manager.Runnable: it pushes at once and then every interval on every
		// replica (not only the leader), and deletes its group when the manager stops.
		if err := op.Manager.Add(push); err != nil {
			return fmt.Errorf("adding the pusher: %w", err)
		}
	}
	logger.Info("starting", "apiServer", cfg != nil, "metrics", *metricsAddr, "secure", *secure,
		"webhookPort", *webhookPort, "pushTo", *pushTo, "pushJob", *pushJob)
	return op.Start(ctx)
}

// pushFlags names the flag of each pusher.Config field the flags set.
var pushFlags = map[string]string{"URL": "--push-to", "Job": "--push-job", "Instance": "--push-instance", "TokenFile": "--push-token-file"}
