# DS01 Gateway. `make help` lists the targets.

export PATH := /usr/local/go/bin:$(PATH)
SHELL := /bin/bash

GO         ?= go
BIN        := bin/ds01-gateway
BASE_IMAGE ?= ds01-base:bookworm
TEST_FLAGS ?= -race -count=1 -timeout 20m -parallel 12
# The e2e suite on the Kubernetes runtime (e2e/kube_*_test.go, build tag
# kube): its own go test after the others, so the two e2e suites never
# compete for the cores. Its cluster: $DS01_KUBECONFIG, else .k8s's if it
# answers, else one make k8s-up starts for the run (see e2e/kube_main_test.go).
KUBE_TEST_FLAGS ?= -race -count=1 -timeout 20m -parallel 4
# Build tags that select more test files; vet and lint check them too.
LINT_TAGS := kube

.DEFAULT_GOAL := help

# Linters, installed into bin/tools on first use, one binary per version.
STATICCHECK_VERSION ?= v0.8.2
GOLANGCI_VERSION    ?= v2.15.0
TOOLS               := bin/tools
STATICCHECK         := $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)
GOLANGCI            := $(TOOLS)/golangci-lint-$(GOLANGCI_VERSION)

.PHONY: help build run base-image vet lint test e2e bench gpu-check clean clean-data k8s-build k8s-up k8s-down

help: ## List targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-11s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build bin/ds01-gateway
	$(GO) build -o $(BIN) ./cmd/ds01-gateway

base-image: ## Build the $(BASE_IMAGE) Docker image (debootstrap; cached by tag)
	.ci/base-image.sh $(BASE_IMAGE)

run: build base-image ## Run a dev gateway on 127.0.0.1:2222 (data in ./.ds01)
	./$(BIN) serve --dev

vet: ## go vet ./... (kube-tagged files included)
	$(GO) vet -tags $(LINT_TAGS) ./...

lint: $(STATICCHECK) $(GOLANGCI) ## staticcheck, then golangci-lint (errcheck, gosec, ...; .golangci.yml)
	$(STATICCHECK) -tags $(LINT_TAGS) ./...
	$(GOLANGCI) run ./...

$(STATICCHECK):
	mkdir -p $(TOOLS)
	GOBIN=$(CURDIR)/$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(TOOLS)/staticcheck $@

$(GOLANGCI):
	mkdir -p $(TOOLS)
	GOBIN=$(CURDIR)/$(TOOLS) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)
	mv $(TOOLS)/golangci-lint $@

test: vet ## go vet, all tests with -race (e2e needs root + Docker), then the kube e2e suite
	$(GO) test $(TEST_FLAGS) ./...
	$(GO) test -tags kube $(KUBE_TEST_FLAGS) -run '^TestKube' ./e2e/

e2e: ## Only the end-to-end tests (verbose)
	$(GO) test $(TEST_FLAGS) -v ./e2e/

.PHONY: e2e-kube
e2e-kube: ## Only the e2e tests on the Kubernetes runtime (verbose)
	$(GO) test -tags kube $(KUBE_TEST_FLAGS) -v -run '^TestKube' ./e2e/

bench: build base-image ## Compare login/stream times with docker run and OpenSSH
	bench/run.sh

gpu-check: build ## Print the NVML GPU inventory; fails on an NVML error (run on a GPU host)
	./$(BIN) gpu-check

# The Kubernetes test cluster (hack/k8s): binaries cached by version in
# $(DS01_K8S_CACHE)/<version>/bin, state under $(K8S_DIR).
K8S_DIR         ?= .k8s
DS01_K8S_CACHE  ?= /var/cache/ds01-k8s
export K8S_DIR DS01_K8S_CACHE

k8s-build: ## Build (or reuse) the Kubernetes + etcd binaries of the test cluster
	hack/k8s/build.sh

k8s-up: ## Start the test cluster (root): K8S_DIR/admin.kubeconfig, registry 127.0.0.1:5000
	hack/k8s/up.sh

k8s-down: ## Stop the test cluster and put the host back as it was
	hack/k8s/down.sh

clean: ## Remove build outputs (keeps ./.ds01 data)
	rm -rf bin

clean-data: ## Remove the dev gateway's data dir ./.ds01
	rm -rf .ds01
