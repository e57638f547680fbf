# Sluice build. `make help` lists targets.
SHELL := /bin/bash
GO ?= go
BIN := bin
TOOLS := $(CURDIR)/bin/tools

# Pinned tool versions: `make proto` and `make lint` install exactly these.
BUF_VERSION := v1.61.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.0
STATICCHECK_VERSION := v0.8.2

# Packages that run concurrent code are tested with the race detector.
RACE_PKGS := ./internal/... ./pkg/...

# Build tags for every go command these targets run, exported through GOFLAGS so that
# the go commands tests start themselves (binary builds, go list) get them too. The
# base is `go env GOFLAGS`, so flags set with `go env -w` are kept. duckdb_arrow turns
# on duckdb-go's Arrow interface, which pkg/sqlengine is built on; without it that
# package is its documentation only. Add tags here, comma-separated
# (TAGS=duckdb_arrow,netgo), rather than as -tags in GOFLAGS, which this replaces.
TAGS ?= duckdb_arrow
export GOFLAGS := $(strip $(filter-out -tags=%,$(shell $(GO) env GOFLAGS)) -tags=$(TAGS))

.PHONY: help build test test-short demo proto proto-check lint bench chaos clean docs

include mk/bench.mk
include mk/k8s.mk
include mk/chaos.mk

help: ## list targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/driver, bin/executor, bin/sluice
	$(GO) build -o $(BIN)/driver ./cmd/driver
	$(GO) build -o $(BIN)/executor ./cmd/executor
	$(GO) build -o $(BIN)/sluice ./cmd/sluice

test: ## run every test (unit, real services, end-to-end with built binaries); race detector on
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 30m $(RACE_PKGS)
	$(GO) test -count=1 -timeout 30m ./cmd/... ./test/... ./examples/... ./sluicecmd/...
	$(MAKE) test-k8s

test-short: ## unit tests only
	$(GO) test -short -count=1 ./...

demo: build ## run the treasury job of seed 003 end to end on `sluice local` and check its sums
	$(GO) run ./examples/treasury --sluice $(BIN)/sluice

bench: bench-all ## benchmarks (never part of make test): Go benchmarks, then the bench/ scenarios (docs/performance.md)

$(TOOLS)/buf:
	GOBIN=$(TOOLS) $(GO) install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

proto: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc ## regenerate proto/sluice/v1/*.pb.go
	cd proto && PATH=$(TOOLS):$$PATH buf generate

docs: ## regenerate docs/reference/job-spec.md and api.md from the comments of proto/sluice/v1/*.proto
	$(GO) run ./internal/docgen/cmd/docgen

proto-check: proto ## fail when the committed generated code is stale
	@git diff --exit-code -- proto/ || (echo "generated code is stale: run make proto and commit" >&2; exit 1)

lint: proto-check ## vet, staticcheck, import boundaries
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	$(GO) test -count=1 ./internal/archtest/

clean:
	rm -rf $(BIN)
