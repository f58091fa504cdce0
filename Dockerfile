# moat with its own container engine, so that only port 2376 is published.
#
#   docker build -t moat .
#   docker run -d --name moat --privileged -p 2376:2376 -v moat:/var/lib/moat moat
#   docker cp moat:/var/lib/moat/clients/admin ./moat-admin    # the admin bundle
#
# The image runs `moat up`: on first start it makes the CA, server
# certificate, admin bundle, token key, moat.yaml and policy pack under the
# /var/lib/moat volume, starts its bundled dockerd (which is why the
# container must be --privileged) on a private socket, and serves mutual TLS
# on 2376. Stop it with `docker stop -t 40 moat` so that moat has time to
# drain requests and stop the engine cleanly.
#
# Both base images can be replaced by build arguments, e.g. with images made
# locally without a registry (see tests/image/build-local-images.sh):
#   docker build --build-arg RUST_IMAGE=... --build-arg RUNTIME_IMAGE=... .
# The classic builder (DOCKER_BUILDKIT=0) and BuildKit both accept this file.

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
 && install -m 0755 target/release/moat /usr/local/bin/moat

FROM ${RUNTIME_IMAGE}
# docker.io: the bundled engine (dockerd, containerd, runc).
# tini: PID 1 that reaps orphans; dockerd takes a zombie containerd for a
#       live one and then fails to start.
# busybox-static: `wget` for the HEALTHCHECK, without pulling in curl.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      docker.io tini busybox-static ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/moat /usr/local/bin/moat
VOLUME /var/lib/moat
EXPOSE 2376
# `moat up` reads its metrics address (/metrics, /healthz, /readyz) from
# MOAT_METRICS; the health check follows it. Arguments after the image name
# are added to `moat up` and override the ones below, e.g. `--listen ADDR`.
ENV MOAT_METRICS=127.0.0.1:9323
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
  CMD busybox wget -q -O /dev/null "http://${MOAT_METRICS}/readyz" || exit 1
ENTRYPOINT ["tini", "--", "moat", "up", "--dir", "/var/lib/moat", "--listen", "0.0.0.0:2376"]
