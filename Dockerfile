# syntax=docker/dockerfile:1
#
# The cardio node image: a release build of the one binary on a distroless
# base (glibc and CA certificates, no shell, no package manager).
#
#   docker build -t cardio:0.1.0 .
#   docker run -p 8080:8080 -e CARDIO_JWT_SECRET=... cardio:0.1.0
#
# Needs BuildKit (the default builder of current Docker) for the cache
# mounts. For reproducible production images, pin both base images by digest
# (FROM rust:1.95-bookworm@sha256:...), which the release pipeline resolves.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# The whole crate: cargo resolves every declared target (tests and benches
# too) before it builds anything, sqlx::migrate! embeds migrations/ and the
# API embeds schema.graphql at compile time. .dockerignore keeps out target/,
# .git and local data.
COPY . .
# Dependency caching: the registry and target/ live in BuildKit cache
# mounts, so a rebuild after a source change recompiles only the crate itself.
# The binary is copied out of the (unpersisted) cache into /out. The
# release profile strips it already (no debug info, no symbols: 35 MB, not
# 197 MB); `install -s` keeps it so whatever the profile says.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin cardio \
 && install -D -s -m 0755 target/release/cardio /out/cardio \
 && install -d -m 0750 /out/state

# :nonroot carries CA certificates, tzdata, glibc and libgcc, which is all a
# Rust binary without OpenSSL needs. The node runs as uid/gid 10001 (as the
# Kubernetes manifests require), not the image's default 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/cardio /usr/local/bin/cardio
# A writable working directory for the no-configuration default
# (CARDIO_DATABASE_URL=sqlite://data/cardio.db, relative to it), so a bare
# `docker run` works. Production points CARDIO_DATABASE_URL at PostgreSQL
# and the node writes nothing to disk (read-only root file system in k8s/).
COPY --from=builder --chown=10001:10001 /out/state /var/lib/cardio
WORKDIR /var/lib/cardio
ENV CARDIO_HTTP_ADDR=0.0.0.0:8080 \
    CARDIO_LOG_FORMAT=json
EXPOSE 8080
USER 10001:10001
# The image has no shell or curl: the binary probes itself (`cardio probe`:
# GET /healthz on 127.0.0.1 at CARDIO_HTTP_ADDR's port, https when
# CARDIO_TLS_CERT_FILE is set, verified with CARDIO_TLS_PEER_CA_FILE).
# Kubernetes ignores HEALTHCHECK and uses its own probes (k8s/).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/usr/local/bin/cardio", "probe"]
ENTRYPOINT ["/usr/local/bin/cardio"]
CMD ["serve"]
