# syntax=docker/dockerfile:1
#
# Container image for prereg-sync (MOSIP reverse data sync worker).
#
# Build (BuildKit is required for the cache mounts; it is the default builder
# in current Docker releases):
#
#   docker build -t prereg-sync:dev .
#   docker build -t prereg-sync:1.2.3 \
#       --build-arg VERSION=1.2.3 --build-arg REVISION="$(git rev-parse HEAD)" \
#       --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#
# Run (the full local stack is in docker-compose.yml: `docker compose up`):
#
#   docker run --rm -p 127.0.0.1:9464:9464 \
#       -e AMQP_URL=amqp://user:pass@rabbitmq:5672/%2f \
#       -e DATABASE_URL_FILE=/run/secrets/database_url \
#       prereg-sync:dev            # default command: `run`
#   docker run --rm ... prereg-sync:dev migrate
#   docker exec -it <container> sh     # a shell is available for operators
#
# Notes:
# * The app reads config/default.toml (and config/$PREREG_SYNC_ENV.toml) from
#   its working directory, /app; both config/ and sql/ are copied there.
# * The image listens on 0.0.0.0:9464 (the binary's default, 127.0.0.1, is
#   unreachable from outside the container: a Kubernetes probe or a Prometheus
#   scrape on the pod IP would fail) and logs JSON lines for log pipelines.
#   Both are environment defaults: override PREREG_SYNC__HTTP__LISTEN and
#   PREREG_SYNC__LOG__FORMAT to change them.
# * The process runs as uid/gid 10001 and writes nothing to disk, so the
#   container can run with a read-only root filesystem.
# * HEALTHCHECK runs `prereg-sync probe` (GET /readyz on the worker's own
#   port; the image has no HTTP client). Kubernetes: an exec probe with
#   `prereg-sync probe` (readiness) and `prereg-sync probe --path /healthz`
#   (liveness), or httpGet probes on port 9464.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------
# Builder: compile a release binary. The cargo registry and the target
# directory live in BuildKit cache mounts, so rebuilds after a source change
# only recompile this crate, not the whole dependency tree.
# ---------------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder

WORKDIR /build

# .dockerignore is an allow-list: only the manifest, lockfile and the
# directories cargo may need (src/, config/, sql/, benches/, tests/ ...)
# reach the build context.
COPY . .

RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git/db,sharing=locked \
    --mount=type=cache,target=/build/target,sharing=locked \
    cargo build --release --locked --bin prereg-sync \
 && install -D -m 0755 target/release/prereg-sync /out/prereg-sync

# ---------------------------------------------------------------------------
# Runtime: Debian slim (not distroless) so operators can `docker exec` a
# shell. Only ca-certificates is added (rustls verifies TLS peers against the
# system trust store, e.g. for amqps:// URLs).
# ---------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

# Re-declare to use the global value inside this stage (for the label).
ARG DEBIAN_RELEASE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=unknown

LABEL org.opencontainers.image.title="prereg-sync" \
      org.opencontainers.image.description="Durable RabbitMQ worker for MOSIP reverse data sync (consumed pre-registration IDs)" \
      org.opencontainers.image.licenses="MPL-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="docker.io/library/debian:${DEBIAN_RELEASE}-slim"

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 prereg \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin prereg

WORKDIR /app

# Root-owned and read-only for the service user: nothing here is written at
# runtime.
COPY --from=builder /out/prereg-sync /usr/local/bin/prereg-sync
COPY config ./config
COPY sql ./sql

USER 10001:10001

# Reachable metrics and health endpoints, and logs for a pipeline (see Notes).
ENV PREREG_SYNC__HTTP__LISTEN=0.0.0.0:9464 \
    PREREG_SYNC__LOG__FORMAT=json
# Metrics / health HTTP server; the HTTP ingress when ingress.listen is set (e.g. 0.0.0.0:8093).
EXPOSE 9464 8093
# Ready = consuming, database reachable, broker not blocked. start-period
# covers migrations and the first connection.
HEALTHCHECK --interval=15s --timeout=6s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/prereg-sync", "probe"]

# The worker drains in-flight messages on SIGTERM (30 s grace); give it
# longer than that before SIGKILL (compose: stop_grace_period: 40s).
STOPSIGNAL SIGTERM

ENTRYPOINT ["/usr/local/bin/prereg-sync"]
CMD ["run"]
