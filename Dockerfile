# syntax=docker/dockerfile:1
#
# flashgate container image: one image, six binaries.
#   flashgate-gateway   (default CMD; compose runs `flashgate-gateway serve`)
#   flashgate-persister (compose runs `flashgate-persister run`)
#   flashgate-saga      (compose runs `flashgate-saga run`)
#   flashgate-psp       (the virtual payment provider; compose runs `flashgate-psp serve`)
#   flashgate-notifier  (compose runs `flashgate-notifier run`)
#   flashgate-batch
# Configuration comes from FLASHGATE__SECTION__KEY environment variables;
# see docker-compose.yml for a working set.

# ---------------------------------------------------------------------------
# Build stage
# ---------------------------------------------------------------------------
FROM rust:1-bookworm AS builder

# rdkafka builds librdkafka from source (default features: libz), which needs
# a C/C++ toolchain, cmake, pkg-config and the zlib headers; the notifier's TLS (SMTP
# STARTTLS, https webhooks) links the system's OpenSSL (libssl-dev).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        build-essential \
        cmake \
        pkg-config \
        zlib1g-dev \
        libssl-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# The whole workspace (minus target/, .stack/, .git; see .dockerignore).
COPY . .

# The cargo registry/git caches are BuildKit cache mounts so rebuilds do not
# re-download crates; target/ stays in the layer so the binaries can be copied.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    cargo build --release --locked \
        -p flashgate-gateway \
        -p flashgate-persister \
        -p flashgate-saga \
        -p flashgate-psp \
        -p flashgate-notifier \
        -p flashgate-batch

# ---------------------------------------------------------------------------
# Runtime stage
# ---------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 flashgate \
    && useradd --system --uid 10001 --gid flashgate \
        --home-dir /app --no-create-home --shell /usr/sbin/nologin flashgate

COPY --from=builder /src/target/release/flashgate-gateway   /usr/local/bin/flashgate-gateway
COPY --from=builder /src/target/release/flashgate-persister /usr/local/bin/flashgate-persister
COPY --from=builder /src/target/release/flashgate-saga      /usr/local/bin/flashgate-saga
COPY --from=builder /src/target/release/flashgate-psp       /usr/local/bin/flashgate-psp
COPY --from=builder /src/target/release/flashgate-batch     /usr/local/bin/flashgate-batch
COPY --from=builder /src/target/release/flashgate-notifier  /usr/local/bin/flashgate-notifier

# Redis Lua scripts loaded by the gateway, and the example config for reference.
COPY lua/ /app/lua/
# The notifier's email templates (notifier.templates_dir defaults to notifier/templates).
COPY notifier/templates/ /app/notifier/templates/
COPY config/flashgate.example.toml /app/config/flashgate.example.toml

# flashgate-batch keeps checkpoints in .stack/batch (relative to the working
# directory) by default; give the runtime user a writable place for them.
RUN mkdir -p /app/.stack/batch && chown -R flashgate:flashgate /app/.stack

WORKDIR /app
USER flashgate:flashgate

EXPOSE 8080 8081

CMD ["flashgate-gateway"]
