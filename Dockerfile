# rotor's container image: a release build, run as a non-root user on a slim runtime.
#
#   docker build -t rotor .
#   docker run -d -v rotor-data:/var/lib/rotor/data -e ROTOR_STORE=postgres://… -p 127.0.0.1:9464:9464 rotor
#
# The data volume holds the master key file (created on first start, mode 0600): back it up.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin rotor

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /var/lib/rotor rotor \
 && install -d -o rotor -g rotor -m 0700 /var/lib/rotor/data \
 && install -d -o rotor -g rotor -m 0700 /var/lib/rotor/agent
COPY --from=build /src/target/release/rotor /usr/local/bin/rotor
USER rotor
ENV ROTOR_DATA_DIR=/var/lib/rotor/data
VOLUME ["/var/lib/rotor/data"]
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9464/healthz || exit 1
ENTRYPOINT ["rotor"]
CMD ["worker", "--metrics-listen", "0.0.0.0:9464"]
