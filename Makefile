# DS01 Gateway. `make help` lists the targets.

export PATH := /usr/local/go/bin:$(PATH)
SHELL := /bin/bash

GO         ?= go
BIN        := bin/ds01-gateway
BASE_IMAGE ?= ds01-base:bookworm
TEST_FLAGS ?= -race -count=1 -timeout 20m

.DEFAULT_GOAL := help

.PHONY: help build run base-image vet test e2e bench gpu-check clean clean-data

help: ## List targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-11s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build bin/ds01-gateway
	$(GO) build -o $(BIN) ./cmd/ds01-gateway

base-image: ## Build the $(BASE_IMAGE) Docker image (debootstrap; cached by tag)
	.ci/base-image.sh $(BASE_IMAGE)

run: build base-image ## Run a dev gateway on 127.0.0.1:2222 (data in ./.ds01)
	./$(BIN) serve --dev

vet: ## go vet ./...
	$(GO) vet ./...

test: vet ## go vet, then all tests with -race (e2e needs root + Docker)
	$(GO) test $(TEST_FLAGS) ./...

e2e: ## Only the end-to-end tests (verbose)
	$(GO) test $(TEST_FLAGS) -v ./e2e/

bench: build base-image ## Compare login/stream times with docker run and OpenSSH
	bench/run.sh

gpu-check: build ## Print the NVML GPU inventory; fails on an NVML error (run on a GPU host)
	./$(BIN) gpu-check

clean: ## Remove build outputs (keeps ./.ds01 data)
	rm -rf bin

clean-data: ## Remove the dev gateway's data dir ./.ds01
	rm -rf .ds01
