# opview Makefile. Run `make help` for the list of targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO          ?= go
BIN         := bin
RELAY       := $(BIN)/opview-relay
OPVIEW      := $(BIN)/opview
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -X github.com/prometheus/common/version.Version=$(VERSION) \
               -X github.com/prometheus/common/version.Revision=$(shell git rev-parse --short HEAD 2>/dev/null)
# Tools are pinned here and run with `go run pkg@version`, so nothing needs installing by hand.
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Modules of the repository: the root (relay, dashboards generator), examples/ (sample operator) and test/, which holds
# the checks that need github.com/prometheus/prometheus or real binaries (kept out of the root module).
MODULES     := . examples test
# Modules whose tests run with -race: the root, where the concurrency under test is this
# repository's own (relay, store, pusher, forwarder, opview top). examples/ and test/ drive
# controller-runtime, Prometheus and Kubernetes as libraries and real binaries; race-instrumented
# builds of those libraries took most of make test's cold time, while the code of ours they run is
# race-tested in the root module.
RACE_MODULES := .

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the relay into bin/opview-relay and the user CLI (opview top) into bin/opview.
	$(GO) build -ldflags '$(LDFLAGS)' -o $(RELAY) ./exporter/cmd/opview-relay
	$(GO) build -ldflags '$(LDFLAGS)' -o $(OPVIEW) ./cmd/opview

.PHONY: run
run: build ## Start the relay on :9091 with defaults.
	./$(RELAY) $(ARGS)

# go test's default 10m per package is too short for test/top/terminal on a cold build cache: it
# builds opview, opview-relay and the sample operator (controller-runtime, client-go) first, which
# took 13 to 17 min on this 2-core machine while other builds ran.
TEST_TIMEOUT ?= 30m

.PHONY: test
test: lint check-generated ## Unit and integration tests of every module, lint, generated files in sync (~15.5 min with cold caches).
	@for m in $(MODULES); do \
	  race=; case " $(RACE_MODULES) " in *" $$m "*) race=-race;; esac; \
	  if [ -f $$m/go.mod ]; then echo ">> go test $$race ($$m)"; (cd $$m && $(GO) test $$race -count=1 -timeout $(TEST_TIMEOUT) ./...); fi; \
	done

.PHONY: lint
lint: ## gofmt, go vet and staticcheck on every module.
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^\.cache/' || true)); \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	@for m in $(MODULES); do \
	  if [ -f $$m/go.mod ]; then echo ">> vet + staticcheck ($$m)"; \
	    (cd $$m && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...); fi; \
	done

.PHONY: generate
generate: dashboards haproxy remote-write ## Regenerate every generated file.

.PHONY: check-generated
check-generated: generate ## Fail when committed generated files differ from the generators' output.
	@git diff --exit-code -- dashboards deploy || { echo "generated files are out of date: run 'make generate' and commit"; exit 1; }
	@untracked=$$(git ls-files --others --exclude-standard -- dashboards deploy); \
	  if [ -n "$$untracked" ]; then echo "generated files not committed:"; echo "$$untracked"; exit 1; fi

.PHONY: haproxy
haproxy: ## Write deploy/haproxy/haproxy.cfg from the node list in deploy/haproxy/nodes.txt (docs/multinode.md).
	$(GO) run ./hack/haproxy -nodes deploy/haproxy/nodes.txt -out deploy/haproxy/haproxy.cfg

.PHONY: remote-write
remote-write: ## Write the remote-write component's prometheus.yml from the base one and its remote-write.yml (docs/remote-write.md).
	$(GO) run ./hack/remotewrite -base deploy/k3s/prometheus/prometheus.yml \
	  -settings deploy/k3s/components/remote-write/remote-write.yml -out deploy/k3s/components/remote-write/prometheus.yml

.PHONY: dashboards
dashboards: ## Regenerate the Grafana dashboards' JSON in dashboards/.
	@if [ -d dashboards/cmd/generate ]; then $(GO) run ./dashboards/cmd/generate -out dashboards; fi

# --- the homelab bundle (deploy/). The relay image's name and tag must match the images: entry of
# deploy/k3s/kustomization.yaml; test/deploy fails when they differ.
IMAGE       ?= localhost/opview-relay
IMAGE_TAG   ?= 0.1.0
IMAGE_ARCH  ?= $(shell $(GO) env GOARCH)
IMAGE_TAR   ?= dist/opview-relay-image.tar
IMAGE_BIN   := dist/image/linux-$(IMAGE_ARCH)/opview-relay
GRAFANA_ADMIN_ENV   := deploy/k3s/secrets/grafana-admin.env
PROMETHEUS_HTPASSWD := deploy/traefik/secrets/prometheus.htpasswd
RELAY_WRITE_TOKEN   := deploy/k3s/secrets/relay-write-token

# IMAGE_ARCH defaults to this machine's architecture, which is not the node's when a laptop builds
# for a homelab node (an Apple Silicon laptop and an amd64 mini PC): the target says which it uses.
IMAGE_ARCH_NOTE := $(if $(filter file,$(origin IMAGE_ARCH)),this machine's architecture; for a node of another one: make image IMAGE_ARCH=$(if $(filter amd64,$(IMAGE_ARCH)),arm64,amd64),as asked)

.PHONY: image
image: build ## Build the relay image tarball (dist/opview-relay-image.tar) in pure Go, for k3s ctr images import; IMAGE_ARCH=amd64|arm64 (default: this machine's).
	@echo ">> building the relay image for linux/$(IMAGE_ARCH) ($(IMAGE_ARCH_NOTE))"
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath \
	  -ldflags '-s -w -X github.com/prometheus/common/version.Version=$(IMAGE_TAG)' \
	  -o $(IMAGE_BIN) ./exporter/cmd/opview-relay
	$(GO) run ./hack/image -binary $(IMAGE_BIN) -image $(IMAGE):$(IMAGE_TAG) -out $(IMAGE_TAR)
	@echo ">> $(IMAGE_TAR) runs on linux/$(IMAGE_ARCH) nodes only (kubectl get nodes -L kubernetes.io/arch shows theirs)"

.PHONY: secret
secret: ## Generate the Grafana admin and Prometheus basic-auth credentials and the relay's write token (git-ignored; existing ones are kept).
	@umask 077; \
	if [ -s $(GRAFANA_ADMIN_ENV) ]; then echo "kept $(GRAFANA_ADMIN_ENV)"; else \
	  pw=$$(openssl rand -base64 24 | tr -d '/+='); \
	  printf 'admin-user=admin\nadmin-password=%s\n' "$$pw" > $(GRAFANA_ADMIN_ENV); \
	  echo "wrote $(GRAFANA_ADMIN_ENV): Grafana login admin / $$pw"; fi; \
	if [ -s $(PROMETHEUS_HTPASSWD) ]; then echo "kept $(PROMETHEUS_HTPASSWD)"; else \
	  pw=$$(openssl rand -base64 24 | tr -d '/+='); \
	  printf 'admin:%s\n' "$$(openssl passwd -apr1 "$$pw")" > $(PROMETHEUS_HTPASSWD); \
	  printf '%s\n' "$$pw" > $(PROMETHEUS_HTPASSWD).password; \
	  echo "wrote $(PROMETHEUS_HTPASSWD): Prometheus login admin / $$pw (also in $(PROMETHEUS_HTPASSWD).password)"; fi; \
	if [ -s $(RELAY_WRITE_TOKEN) ]; then echo "kept $(RELAY_WRITE_TOKEN)"; else \
	  openssl rand -hex 32 > $(RELAY_WRITE_TOKEN); \
	  echo "wrote $(RELAY_WRITE_TOKEN): the relay's write token; copy it to each laptop that pushes (docs/install.md)"; fi

# The kustomizations whose secretGenerators read the files `make secret` writes.
KUSTOMIZATIONS ?= deploy/k3s deploy/traefik

.PHONY: check-secrets
check-secrets: ## Check that the credential files the bundle's secretGenerators read exist (make secret writes them).
	@missing=; for k in $(KUSTOMIZATIONS); do \
	  for f in $$(sed 's/#.*//' $$k/kustomization.yaml | grep -o 'secrets/[A-Za-z0-9._-]*' | sort -u); do \
	    [ -s "$$k/$$f" ] || missing="$$missing $$k/$$f"; done; done; \
	if [ -n "$$missing" ]; then \
	  echo "missing credential files:$$missing"; \
	  echo "run 'make secret' to generate them (docs/install.md, step 4); kubectl apply -k and kubectl kustomize fail without them"; exit 1; fi
	@echo "credential files present: kubectl apply -k deploy/k3s && kubectl apply -k deploy/traefik"

.PHONY: fuzz
fuzz: ## Fuzz the push-body parser for FUZZTIME (default 30s).
	$(GO) test ./exporter/ingest -run '^$$' -fuzz FuzzParsePush -fuzztime $${FUZZTIME:-30s}

.PHONY: fuzz-top
fuzz-top: ## Fuzz opview top's statistics with arbitrary expositions for FUZZTIME (default 30s).
	$(GO) test ./internal/top/stats -run '^$$' -fuzz FuzzScreens -fuzztime $${FUZZTIME:-30s}

.PHONY: fuzz-persistence
fuzz-persistence: ## Fuzz the persistence-file decoder for FUZZTIME (default 30s); seeds in exporter/persist/testdata/fuzz.
	$(GO) test ./exporter/persist -run '^$$' -fuzz FuzzDecode -fuzztime $${FUZZTIME:-30s}

# --- e2e: a real single-node cluster from binaries at the versions pinned in test/e2e/tools/versions.env
# (the one place that defines them; the e2e Go code reads it too). Built once into the git-ignored
# .cache/e2e/bin/<name>-<version>/. The scenario also needs containerd, runc, the CNI plugins and
# iptables (Debian packages; .ci/run installs them) and root.
include test/e2e/tools/versions.env
E2E_BIN     := .cache/e2e/bin
E2E_KUBE    := $(foreach c,kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy,$(E2E_BIN)/$(c)-$(E2E_KUBERNETES_VERSION)/$(c))
E2E_TOOLS   := $(E2E_BIN)/kine-$(E2E_KINE_VERSION)/kine \
               $(E2E_KUBE) \
               $(E2E_BIN)/traefik-$(E2E_TRAEFIK_VERSION)/traefik \
               $(E2E_BIN)/prometheus-$(E2E_PROMETHEUS_VERSION)/prometheus

.PHONY: e2e-tools
e2e-tools: $(E2E_TOOLS) ## Build the e2e's real binaries once (kine, Kubernetes, Traefik, Prometheus; ~19 min cold on 2 cores).

$(E2E_BIN)/kine-%/kine:
	test/e2e/tools/build.sh kine
# The five Kubernetes components come from one go build (they share most of their packages).
$(E2E_KUBE) &:
	test/e2e/tools/build.sh kubernetes
$(E2E_BIN)/traefik-%/traefik:
	test/e2e/tools/build.sh traefik
$(E2E_BIN)/prometheus-%/prometheus:
	test/e2e/tools/build.sh prometheus

.PHONY: e2e
e2e: e2e-tools ## Run the scenario on a real node (needs root, containerd, runc, CNI plugins, iptables; skips without root).
	cd test && $(GO) vet -tags e2e ./e2e/...
	cd test && $(GO) test -tags e2e -count=1 -v -timeout 60m ./e2e/...

.PHONY: clean
clean: ## Remove build outputs (not the e2e binary cache; see clean-cache).
	rm -rf $(BIN) dist

.PHONY: clean-cache
clean-cache: ## Remove the cache of real binaries built for make e2e.
	rm -rf .cache

# make bench: opview-relay side by side with Pushgateway (Debian package prometheus-pushgateway) in its
# default mode and with --push.disable-consistency-check, and against the parse-only and bare-bytes
# limits, on a captured controller-runtime payload; see docs/benchmarks.md. BENCH_ARGS go to
# bin/opview-bench (e.g. BENCH_ARGS='-n 1,10 -repeats 2' for a quick run; -h lists them all).
PUSHGATEWAY ?= prometheus-pushgateway
BENCH_ARGS  ?=
BENCH_BASE  ?=
BENCHSTAT   := golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
GOBENCH_ARGS := ./exporter/store ./exporter/api -run ^$$ -bench . -benchmem -count 6 -benchtime 50x

.PHONY: bench
bench: build bench-go ## Relay vs Pushgateway (both modes) and the limits, 5 runs per figure (~7 min): docs/benchmarks.md, bench/results.json.
	@command -v $(PUSHGATEWAY) >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get install -y prometheus-pushgateway || { apt-get update && apt-get install -y prometheus-pushgateway; }; \
	  else echo "make bench needs Pushgateway: apt-get install prometheus-pushgateway (or PUSHGATEWAY=/path/to/it)"; exit 1; fi; }
	$(GO) build -o $(BIN)/opview-bench ./bench/cmd/opview-bench
	$(GO) build -o $(BIN)/opview-bench-limits ./bench/cmd/opview-bench-limits
	./$(BIN)/opview-bench -relay $(RELAY) -limits $(BIN)/opview-bench-limits -pushgateway $(PUSHGATEWAY) -benchstat bench/benchstat.txt $(BENCH_ARGS)

.PHONY: bench-profile
bench-profile: ## CPU and allocation profiles of a push and a scrape (text, protobuf) at N=1 and N=100 (~1 min): top lists in docs/benchmarks.md.
	$(GO) run ./bench/cmd/opview-bench-profile -go $(GO) $(PROFILE_ARGS)

.PHONY: bench-go
bench-go: ## Go benchmarks through benchstat: bench/gobench.txt, bench/benchstat.txt; BENCH_BASE=<file or git revision> compares with it.
	GO='$(GO)' GOBENCH_ARGS="$(GOBENCH_ARGS)" BENCHSTAT='$(BENCHSTAT)' BENCH_BASE='$(BENCH_BASE)' bench/gobench.sh

.PHONY: bench-payload
bench-payload: ## Recapture bench/testdata/controller-runtime.prom from a real controller-runtime manager.
	cd examples && $(GO) run ./benchpayload -out ../bench/testdata/controller-runtime.prom
