// Package test holds opview's heavier checks in a module of their own: validation that needs
// github.com/prometheus/prometheus as a library (PromQL parser, config loader), Kubernetes and
// Traefik schemas, and the real-binary end-to-end scenario. Keeping them here keeps the root
// module (the relay) small: Prometheus as a library brings service discoveries, cloud SDKs and
// their go.sum lines (its config package's tests import every discovery, so `go mod tidy` here
// records hashicorp/nomad/api too) that the relay must not depend on.
package test
