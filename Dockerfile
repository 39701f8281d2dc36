# syntax=docker/dockerfile:1
#
# cwtap container image.
#
#   docker build -t cwtap .
#   docker run --rm --stop-timeout 15 -v "$PWD/config.yaml:/etc/cwtap/config.yaml:ro" \
#       -v cwtap-state:/var/lib/cwtap -e AWS_REGION -e VECTADB_API_KEY cwtap
#
# The config is read from $CWTAP_CONFIG (/etc/cwtap/config.yaml): mount yours
# there. The working directory /var/lib/cwtap is a volume, so the default
# agent.state_path (./cwtap-state.db) survives container restarts; keep that
# volume, or a restarted container reads (and delivers) from scratch.
# `docker run ... cwtap check` validates the mounted config; `backfill --since 7d`
# and `status` work the same way.
#
# Metrics and health: `cwtap run` serves /healthz, /readyz and /metrics on
# agent.listen. Its default (127.0.0.1:9464) is enough for the HEALTHCHECK
# below; to scrape from outside the container set `agent.listen: 0.0.0.0:9464`
# in the config and publish the port (-p 9464:9464).

# ---------------------------------------------------------------- build
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# src: the crate; parsers: the shipped rule sets, compiled in (include_str!);
# benches: Cargo.toml declares the benchmarks, so their files must exist.
COPY src ./src
COPY parsers ./parsers
COPY benches ./benches
# The registry and target caches make rebuilds incremental (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -m 0755 target/release/cwtap /usr/local/bin/cwtap

# ---------------------------------------------------------------- runtime
FROM debian:bookworm-slim

# ca-certificates: TLS to AWS and VectaDB (rustls reads the system roots).
# Unpinned on purpose: the bookworm security updates are what we want.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 cwtap \
    && useradd --system --uid 10001 --gid cwtap --no-create-home \
        --home-dir /var/lib/cwtap --shell /usr/sbin/nologin cwtap \
    && mkdir -p /etc/cwtap /var/lib/cwtap \
    && chown cwtap:cwtap /var/lib/cwtap

COPY --from=builder /usr/local/bin/cwtap /usr/local/bin/cwtap
COPY config.example.yaml /etc/cwtap/config.example.yaml

# The cwtap user, by number so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
WORKDIR /var/lib/cwtap
VOLUME ["/var/lib/cwtap"]
ENV CWTAP_CONFIG=/etc/cwtap/config.yaml

# The metrics and health listener (agent.listen). `cwtap serve` also
# listens on its firehose.listen port (8443 in config.example.yaml):
# publish that too.
EXPOSE 9464

# `cwtap health` GETs http://127.0.0.1:9464/healthz (no curl in the image).
# One-shot commands (backfill, check, ...) serve nothing: run them with
# --no-healthcheck, or ignore their health status.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20s --retries=3 \
    CMD ["cwtap", "health"]

# `run` polls until SIGTERM, then finishes in-flight deliveries and exits
# within 10 s; docker stop's default grace is exactly 10 s, so give it some
# margin (`docker run --stop-timeout 15`, compose's stop_grace_period: 15s).
ENTRYPOINT ["cwtap"]
CMD ["run"]
