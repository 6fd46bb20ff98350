// Package test holds opview's heavier checks in a module of their own: validation that needs
// github.com/prometheus/prometheus as a library (PromQL parser, config loader), Kubernetes and
// Traefik schemas, and the real-binary end-to-end scenario. Keeping them here keeps the root
// module (the relay) small and `go mod tidy` clean; see shared/reference/library-gotchas.md.
package test
