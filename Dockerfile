# The daemon image: built from this repository, run by deploy/docker-compose.yml.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p kalpana-api --bin kalpana-buckets

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/kalpana-buckets /usr/local/bin/kalpana-buckets
ENV KALPANA_LISTEN=0.0.0.0:8080 KALPANA_DATA_DIR=/var/lib/kalpana
VOLUME /var/lib/kalpana
EXPOSE 8080
ENTRYPOINT ["kalpana-buckets"]
CMD ["serve"]
