# deploybot container image. Docker is not available on the development machines, so this file
# is kept correct by review: the runtime needs are the ones listed in README.md ("Running it").
#
#   docker build -t deploybot .
#   docker run -e DEPLOYBOT_WEBHOOK_SECRET=... -v $PWD/deploybot.yaml:/etc/deploybot/deploybot.yaml \
#              -v deploybot-data:/var/lib/deploybot -p 8080:8080 deploybot

FROM rust:1.95-bookworm AS build
WORKDIR /src
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --release --locked && strip target/release/deploybot

FROM debian:bookworm-slim
# ca-certificates: TLS to GitHub, the LLM and Prometheus; libssl3: git2's https transport;
# git: operators inspecting the clones in the data dir (deploybot itself uses libgit2).
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 git curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/deploybot deploybot \
    && mkdir -p /var/lib/deploybot /etc/deploybot && chown deploybot /var/lib/deploybot
COPY --from=build /src/target/release/deploybot /usr/local/bin/deploybot
COPY examples/deploybot.yaml /etc/deploybot/deploybot.yaml
WORKDIR /var/lib/deploybot
USER deploybot
VOLUME ["/var/lib/deploybot"]
EXPOSE 8080
ENV DEPLOYBOT_LOG_FORMAT=json
HEALTHCHECK --interval=30s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["deploybot"]
CMD ["serve", "--config", "/etc/deploybot/deploybot.yaml"]
