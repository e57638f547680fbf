# Sluice images, one per binary: a fully static binary (Go and DuckDB, linked with cgo) on an
# empty base (scratch) with CA certificates, DuckDB's licence notices and an unprivileged user
# (65532), nothing else: no shell, no package manager.
#
#   docker build --target driver   --build-arg VERSION=0.1.0 -t ghcr.io/sluicehq/sluice-driver:0.1.0 .
#   docker build --target executor --build-arg VERSION=0.1.0 -t ghcr.io/sluicehq/sluice-executor:0.1.0 .
#   docker build --target cli      --build-arg VERSION=0.1.0 -t ghcr.io/sluicehq/sluice:0.1.0 .
#
# `make image` builds all three. The SQL engine is DuckDB, linked in through cgo, so the build
# stage runs on the target platform (docker buildx build --platform linux/arm64 ... builds arm64
# under emulation) rather than cross-compiling, which would need a C++ cross toolchain.

ARG GO_IMAGE=golang:1.26.8-bookworm

FROM ${GO_IMAGE} AS build
ARG VERSION=dev
WORKDIR /src
# Modules first, so this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO_ENABLED=1 with -extldflags -static: DuckDB (duckdb-go's prebuilt static library, C++)
# and libstdc++ are linked into binaries that need no libc at run time. netgo and osusergo keep
# Go's own resolver and user lookup (glibc's need its shared modules, which scratch lacks);
# DuckDB's only uses of them (extension downloads, home directories) are disabled by the engine.
# duckdb_arrow turns on duckdb-go's Arrow interface. -trimpath and -buildvcs=false: the same
# sources give the same binaries wherever they are built. timetzdata embeds the zone database,
# which scratch lacks and which CEL's timestamp functions need for zone names. The version is
# stamped into internal/buildinfo.Version.
RUN CGO_ENABLED=1 go build -trimpath -buildvcs=false -tags duckdb_arrow,timetzdata,netgo,osusergo \
      -ldflags "-s -w -linkmode external -extldflags -static -X github.com/sluicehq/sluice/internal/buildinfo.Version=${VERSION}" \
      -o /out/ ./cmd/driver ./cmd/executor ./cmd/sluice
# The licences of DuckDB and of what its static library bundles, shipped with the binaries.
RUN mkdir -p /out/licenses/duckdb \
 && cp "$(go list -m -f '{{.Dir}}' github.com/duckdb/duckdb-go/v2)/LICENSE" /out/licenses/duckdb/duckdb-go.LICENSE \
 && d="$(go list -m -f '{{.Dir}}' go.duckdb.org/libduckdb/linux-$(go env GOARCH))" \
 && find "$d" -maxdepth 2 \( -iname 'LICENSE*' -o -iname 'NOTICE*' -o -iname 'THIRD*' \) -exec cp {} /out/licenses/duckdb/ \;
# Name the unprivileged user so that tools inside and outside the container show a name.
RUN printf 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' > /out/passwd \
 && printf 'nonroot:x:65532:\n' > /out/group

FROM scratch AS base
ARG VERSION=dev
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/passwd /etc/passwd
COPY --from=build /out/group /etc/group
COPY --from=build /out/licenses /usr/share/licenses
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
