# syntax=docker/dockerfile:1
#
# The Tame server. Build and run (see the README's "Run in a container"):
#
#   docker build -t tame .
#   docker run -p 127.0.0.1:8000:8000 -e TAME_ADMIN_KEYS=... -e TAME_AGENT_KEYS=... tame
#
# Build stage: the official Rust image. Run stage: Debian slim (the glibc
# the binary was linked against), a non-root user, the example policy at
# /etc/tame/policies.yml (mount yours over it), the SQLite store in the
# /var/lib/tame volume (or TAME_DB=postgres://... with TAME_AUDIT_SECRET).
# `tame serve` reads its settings from the TAME_* variables below; flags
# given to `docker run IMAGE ...` are appended to `tame serve` and override
# them.

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit, Podman).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p tame-cli \
    && cp target/release/tame /usr/local/bin/tame

FROM ${RUNTIME_IMAGE}
# CA roots: PostgreSQL over TLS checks its server against them.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* \
    && groupadd --system --gid 10001 tame \
    && useradd --system --uid 10001 --gid tame --home-dir /var/lib/tame --shell /usr/sbin/nologin tame \
    && mkdir -p /etc/tame /var/lib/tame \
    && chown tame:tame /var/lib/tame
COPY --from=build /usr/local/bin/tame /usr/local/bin/tame
COPY policies/example.yml /etc/tame/policies.yml
ENV TAME_ADDR=0.0.0.0:8000 \
    TAME_POLICY=/etc/tame/policies.yml \
    TAME_DB=/var/lib/tame/tame.db \
    TAME_LOG_FORMAT=json \
    TAME_API_URL=http://127.0.0.1:8000
USER 10001:10001
WORKDIR /var/lib/tame
VOLUME ["/var/lib/tame"]
EXPOSE 8000
# Liveness: `tame health` GETs /health of TAME_API_URL (the image has no curl).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["tame", "--timeout", "3", "health"]
ENTRYPOINT ["tame", "serve"]
