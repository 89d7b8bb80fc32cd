# syntax=docker/dockerfile:1
#
# guestkit-worker image.
#
#   docker build -t guestkit-worker:local .
#
# Three stages:
#   planner  reduces the workspace to its manifests plus stub targets
#            (integration/deploy/cargo-skeleton.sh), so that
#   builder  can compile the dependencies in a layer of their own that only a
#            manifest or Cargo.lock change invalidates, then the real sources;
#   runtime  is distroless: glibc, libgcc and CA certificates, no shell, no
#            package manager. It runs as an unprivileged numeric UID and needs
#            no capability, device or privilege: inspection is pure userspace.
#
# Pin the runtime by digest for releases (RUNTIME_IMAGE=...@sha256:...).

ARG RUST_VERSION=1.95.0
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM rust:${RUST_VERSION}-bookworm AS planner
WORKDIR /src
COPY . .
RUN sh integration/deploy/cargo-skeleton.sh /src /skeleton

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /build
# Dependencies only: this layer is reused until a manifest or Cargo.lock changes.
COPY --from=planner /skeleton/ ./
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    cargo build --release --locked --bin guestkit-worker
# Real sources. COPY may keep the files' own mtimes, older than the stub build
# above: touch them so cargo cannot take the stubs' artifacts for current.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    find . -path ./target -prune -o -type f -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bin guestkit-worker \
 && install -D -m 0755 target/release/guestkit-worker /out/usr/local/bin/guestkit-worker \
 && install -d -m 0755 /out/var/lib/guestkit/images

FROM ${RUNTIME_IMAGE} AS runtime
LABEL org.opencontainers.image.title="guestkit-worker" \
      org.opencontainers.image.description="Userspace VM disk-image inspection worker for RabbitMQ" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
COPY --from=builder /out/ /
# Numeric, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
EXPOSE 9090
# The daemon serves /healthz on GUESTKIT_METRICS_ADDR; the same binary probes it,
# since there is no shell or curl in this image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/guestkit-worker", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/guestkit-worker"]
