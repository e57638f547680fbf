# Kubernetes: container images, the plain manifests rendered from the Helm chart, and the chart's
# tests against a real kube-apiserver. Included by the Makefile.

IMAGE_REGISTRY ?= ghcr.io/sluicehq
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
DOCKER ?= docker
K8S_DIR := test/k8s

.PHONY: image manifests manifests-check test-k8s

image: ## build the driver, executor and CLI images (needs a Docker engine; VERSION, IMAGE_REGISTRY)
	@$(DOCKER) info >/dev/null 2>&1 || { echo "image: no Docker engine reachable through '$(DOCKER)'" >&2; exit 1; }
	$(DOCKER) build --target driver --build-arg VERSION=$(VERSION) -t $(IMAGE_REGISTRY)/sluice-driver:$(VERSION) .
	$(DOCKER) build --target executor --build-arg VERSION=$(VERSION) -t $(IMAGE_REGISTRY)/sluice-executor:$(VERSION) .
	$(DOCKER) build --target cli --build-arg VERSION=$(VERSION) -t $(IMAGE_REGISTRY)/sluice:$(VERSION) .

manifests: ## render deploy/k8s/manifests and the operations kit copies (deploy/grafana, deploy/prometheus) from the Helm chart (commit the result)
	cd $(K8S_DIR) && GOWORK=off $(GO) run ./cmd/manifests -root $(CURDIR)

manifests-check: ## fail when deploy/k8s/manifests or the operations kit copies differ from a fresh render of the chart
	cd $(K8S_DIR) && GOWORK=off $(GO) run ./cmd/manifests -root $(CURDIR) -check

# The first run builds kube-apiserver into $SLUICE_TOOLS_DIR (default ~/.cache/sluice/tools),
# about 7 minutes on 2 cores; later runs reuse it.
test-k8s: ## Helm chart tests: render, strict decoding, values schema, install into a real kube-apiserver
	cd $(K8S_DIR) && GOWORK=off $(GO) vet ./... && GOWORK=off $(GO) test -count=1 -timeout 30m ./...
