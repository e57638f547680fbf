# Sluice images, one per binary: a static Go binary on an empty base (scratch) with CA
# certificates and an unprivileged user (65532), nothing else: no shell, no package manager.
#
#   docker build --target driver   --build-arg VERSION=0.1.0 -t ghcr.io/sluicehq/sluice-driver:0.1.0 .
#   docker build --target executor --build-arg VERSION=0.1.0 -t ghcr.io/sluicehq/sluice-executor:0.1.0 .
#   docker build --target cli      --build-arg VERSION=0.1.0 -t ghcr.io/sluicehq/sluice:0.1.0 .
#
# `make image` builds all three. With BuildKit (Docker 23 and later) the build stage runs on the
# build machine's platform and cross-compiles for the target (docker buildx build --platform
# linux/arm64 ...); the legacy builder, which sets no platform arguments, builds linux/amd64.

ARG GO_IMAGE=golang:1.26.8-bookworm

FROM --platform=${BUILDPLATFORM:-linux/amd64} ${GO_IMAGE} AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
# Modules first, so this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO_ENABLED=0: static binaries that need no libc. -trimpath and -buildvcs=false: the same
# sources give the same binaries wherever they are built. timetzdata embeds the zone database,
# which scratch lacks and which CEL's timestamp functions need for zone names. The version is
# stamped into internal/buildinfo.Version.
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH:-amd64} \
    go build -trimpath -buildvcs=false -tags timetzdata \
      -ldflags "-s -w -X github.com/sluicehq/sluice/internal/buildinfo.Version=${VERSION}" \
      -o /out/ ./cmd/driver ./cmd/executor ./cmd/sluice
# Name the unprivileged user so that tools inside and outside the container show a name.
RUN printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' > /out/passwd \
 && printf 'nonroot:x:65532:\n' > /out/group

FROM scratch AS base
ARG VERSION=dev
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/passwd /etc/passwd
COPY --from=build /out/group /etc/group
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
LABEL org.opencontainers.image.source="https://github.com/sluicehq/sluice" \
      org.opencontainers.image.version="${VERSION}"

FROM base AS driver
LABEL org.opencontainers.image.title="sluice-driver" \
      org.opencontainers.image.description="Sluice driver: gRPC API, etcd leader election, micro-batch planning and commits"
COPY --from=build /out/driver /usr/local/bin/driver
# gRPC (--listen) and HTTP (--http: /metrics, /healthz, /readyz).
EXPOSE 7077 8080
ENTRYPOINT ["/usr/local/bin/driver"]

FROM base AS executor
LABEL org.opencontainers.image.title="sluice-executor" \
      org.opencontainers.image.description="Sluice executor: runs the tasks the leading driver dispatches"
COPY --from=build /out/executor /usr/local/bin/executor
ENTRYPOINT ["/usr/local/bin/executor"]

FROM base AS cli
LABEL org.opencontainers.image.title="sluice" \
      org.opencontainers.image.description="Sluice CLI: submit, watch and manage jobs"
COPY --from=build /out/sluice /usr/local/bin/sluice
ENTRYPOINT ["/usr/local/bin/sluice"]
