package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/opview/opview/exporter/forward"
)

func forwardCommand(app *kingpin.Application) command {
	cmd := app.Command("forward", `Scrape an operator's metrics endpoint and push it to a relay, until interrupted; then delete the group.

Plain HTTP (kubebuilder: go run ./cmd/main.go --metrics-bind-address=:8080 --metrics-secure=false):
  opview-relay forward --from http://localhost:8080/metrics --to http://<relay>:9091 --job my-operator
Secure metrics (the kubebuilder default, HTTPS on :8443 with a self-signed certificate and a token):
  kubectl create token <service-account> -n <namespace> > /tmp/metrics-token
  opview-relay forward --from https://localhost:8443/metrics --from.token-file /tmp/metrics-token \
    --from.insecure-skip-verify --to http://<relay>:9091 --job my-operator`)
	from := cmd.Flag("from", "The operator's metrics URL (http://localhost:8080/metrics or https://localhost:8443/metrics).").Required().String()
	to := cmd.Flag("to", "The relay's base URL (through Traefik: http://<node>:9091).").Required().String()
	job := cmd.Flag("job", "Job label of the pushed group, usually the operator's name.").Required().String()
	instance := cmd.Flag("instance", "Instance label of the pushed group (default: this host's name).").String()
	interval := durationFlag(cmd, "interval", "Time between scrape-and-push rounds.", 15*time.Second)
	fromToken := cmd.Flag("from.token-file", "File with the bearer token for the operator's endpoint (kubebuilder's secure metrics: the output of kubectl create token). Read at every scrape.").String()
	fromCA := cmd.Flag("from.ca-file", "CA certificate (PEM) that signed the operator's serving certificate.").String()
	fromInsecure := cmd.Flag("from.insecure-skip-verify", "Do not verify the operator's certificate (controller-runtime's generated self-signed one).").Bool()
	fromLimit := sizeFlag(cmd, "from.body-size-limit", "Largest answer read from the operator; a larger one fails the scrape.", forward.DefaultBodyLimit)
	toToken := cmd.Flag("to.token-file", "File with the relay's write token (the relay's --web.write-token-file). Read at every push.").String()
	toCA := cmd.Flag("to.ca-file", "CA certificate (PEM) of a relay served over HTTPS.").String()
	toInsecure := cmd.Flag("to.insecure-skip-verify", "Do not verify the relay's certificate.").Bool()

	return command{clause: cmd, action: func(ctx context.Context, logger *slog.Logger) int {
		if *interval <= 0 {
			return usageError(logger, "--interval must be positive")
		}
		f, err := forward.New(forward.Config{
			From: forward.Target{URL: *from, BearerTokenFile: *fromToken, CAFile: *fromCA, InsecureSkipVerify: *fromInsecure, BodyLimit: *fromLimit},
			To:   *to, ToTokenFile: *toToken, ToCAFile: *toCA, ToInsecureSkipVerify: *toInsecure,
			Job: *job, Instance: *instance, Interval: *interval, Logger: logger,
		})
		if err != nil {
			return usageError(logger, err.Error())
		}
		if err := f.Run(ctx); err != nil {
			return 1
		}
		return 0
	}}
}
