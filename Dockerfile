# syntax=docker/dockerfile:1
# deploybot container image. Docker does not run on the development machines, so this file is
# kept correct by review and by tests/it/packaging.rs (which checks its key lines and runs its
# HEALTHCHECK command against a real `deploybot serve`).
#
#   docker build -t deploybot .
#   docker run -e DEPLOYBOT_WEBHOOK_SECRET=... -e GITHUB_TOKEN=... \
#              -v deploybot-data:/var/lib/deploybot -p 8080:8080 deploybot
#   # your own config: add -v $PWD/deploybot.yaml:/etc/deploybot/deploybot.yaml:ro
#
# What the binary needs at run time, and why (keep this list in step with Cargo.toml):
#   libssl3          git2's https transport (openssl-sys links libssl/libcrypto dynamically)
#   zlib1g           libgit2 and libssh2 (already in debian:bookworm-slim)
#   ca-certificates  TLS to GitHub, the LLM endpoint, Prometheus and https:// GitOps remotes
#   libgcc-s1, libc6 every Rust binary (in the base image)
# Statically linked, nothing to install: libgit2 and libssh2 (vendored by libgit2-sys and
# libssh2-sys), SQLite (rusqlite "bundled"), rustls (reqwest, async-openai).
# Not installed: git, curl. deploybot uses libgit2, never the git CLI; the HEALTHCHECK uses
# bash's /dev/tcp so that no HTTP client has to be in the image.

FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . .
# --locked: exactly the dependency versions of Cargo.lock, as CI tests them. The cache mounts
# only speed up rebuilds; the binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && strip target/release/deploybot \
    && cp target/release/deploybot /usr/local/bin/deploybot

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 deploybot \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/deploybot \
       --no-create-home --shell /usr/sbin/nologin deploybot \
    && mkdir -p /var/lib/deploybot /etc/deploybot \
    && chown 10001:10001 /var/lib/deploybot
COPY --from=build /usr/local/bin/deploybot /usr/local/bin/deploybot
# The container config: the webhook on 0.0.0.0:8080 and the admin listener (status page,
# /metrics) on 0.0.0.0:9090 (the example config's 127.0.0.1 would be unreachable from outside
# the container), data in /var/lib/deploybot, secrets from the
# environment. The same file is the Kubernetes base's ConfigMap.
COPY deploy/deploybot.yaml /etc/deploybot/deploybot.yaml
WORKDIR /var/lib/deploybot
# Numeric, so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# The data dir holds the SQLite store and the GitOps clones: losing it loses the queue.
VOLUME ["/etc/deploybot", "/var/lib/deploybot"]
EXPOSE 8080 9090
ENV DEPLOYBOT_LOG_FORMAT=json
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["deploybot"]
CMD ["serve", "--config", "/etc/deploybot/deploybot.yaml"]
