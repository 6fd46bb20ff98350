// Package test holds opview's heavier checks in a module of their own: validation that needs
// github.com/prometheus/prometheus as a library (PromQL parser, config loader), Kubernetes and
// Traefik schemas, and the real-binary end-to-end scenario. Keeping them here keeps the root
// module (the relay) small and `go mod tidy` clean. Prometheus as a library cannot be tidied
// plainly (`go mod tidy` walks the tests of its config package, which import a service discovery
// the module proxy does not serve): tidy this module with `go mod tidy -e`.
package test
