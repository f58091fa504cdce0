#!/usr/bin/env bash
# Builds moat's Docker image with no registry at all, and optionally runs it.
#
# No registry is reachable from the test machines, so the Dockerfile's base
# images are replaced by local ones:
#   moat-local/debian:bookworm-slim  debootstrap (minbase) of bookworm from
#                                    Debian's mirror, imported with `docker import`;
#   moat-local/rust:bookworm         that image plus gcc, with this machine's
#                                    Rust toolchain and cargo registry cache
#                                    copied in (CARGO_NET_OFFLINE=true);
# then `docker build` (classic builder) of the repository's Dockerfile with
#   --build-arg RUST_IMAGE=moat-local/rust:bookworm
#   --build-arg RUNTIME_IMAGE=moat-local/debian:bookworm-slim
# With --run it also starts the image (--privileged), waits for the
# HEALTHCHECK, copies the admin bundle out and runs `docker version` and a
# container through moat.
#
# Usage: tests/image/build-local-images.sh [--run]
# Needs: root, debootstrap, dockerd and the docker CLI (apt-get install
# debootstrap docker.io). Uses $DOCKER_HOST when set; otherwise it starts a
# private dockerd under $WORK (and stops it on exit). Base images and the
# debootstrap tree are cached in the engine/$WORK: later runs skip them.
#
# Env: WORK (default /var/tmp/moat-image), MIRROR (default
# http://deb.debian.org/debian), IMAGE (default moat:local).
set -euo pipefail

RUN=0
[[ "${1:-}" == "--run" ]] && RUN=1
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${WORK:-/var/tmp/moat-image}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
IMAGE=${IMAGE:-moat:local}
BASE=moat-local/debian:bookworm-slim
RUST=moat-local/rust:bookworm
export DOCKER_BUILDKIT=0

say() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }
die() { echo "build-local-images: $*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root (debootstrap and dockerd need it)"
command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install debootstrap"
command -v docker >/dev/null || die "docker CLI not found: apt-get install docker.io"
mkdir -p "$WORK"

# --- an engine to build with ---------------------------------------------
ENGINE_PID=
cleanup() {
    if [[ -n "${CONTAINER:-}" ]]; then docker rm -f "$CONTAINER" >/dev/null 2>&1 || true; fi
    if [[ -n "$ENGINE_PID" ]]; then
        kill -TERM "$ENGINE_PID" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$ENGINE_PID" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$ENGINE_PID" 2>/dev/null || true
        # dockerd 20.10 leaves its netns/default bind mount behind.
        awk -v p="$WORK/engine/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo \
            | sort -r | xargs -r -n1 umount 2>/dev/null || true
    fi
}
trap cleanup EXIT
if [[ -z "${DOCKER_HOST:-}" ]]; then
    command -v dockerd >/dev/null || PATH=$PATH:/usr/sbin:/sbin
    command -v dockerd >/dev/null || die "dockerd not found: apt-get install docker.io"
    say "starting a private dockerd in $WORK/engine"
    mkdir -p "$WORK/engine"
    rm -f "$WORK/engine/d.pid"
    # No bridge and no iptables: this engine must not touch the host's
    # networking; builds and runs use --network host instead.
    dockerd --host "unix://$WORK/engine/d.sock" --data-root "$WORK/engine/data" \
        --exec-root "$WORK/engine/exec" --pidfile "$WORK/engine/d.pid" \
        --bridge=none --iptables=false >"$WORK/engine/dockerd.log" 2>&1 &
    ENGINE_PID=$!
    export DOCKER_HOST="unix://$WORK/engine/d.sock"
    for _ in $(seq 1 120); do docker version >/dev/null 2>&1 && break; sleep 0.5; done
    docker version >/dev/null || die "private dockerd did not start; see $WORK/engine/dockerd.log"
fi

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# --- runtime base: debootstrap + docker import -----------------------------
if ! have_image "$BASE"; then
    if [[ ! -f "$WORK/rootfs/.complete" ]]; then
        say "debootstrap bookworm (minbase) from $MIRROR"
        rm -rf "$WORK/rootfs"
        debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR"
        # Like the official slim image: no apt caches, no docs.
        rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
        touch "$WORK/rootfs/.complete"
    fi
    say "docker import $BASE"
    tar -C "$WORK/rootfs" --exclude=./.complete --numeric-owner -c . \
        | docker import -c 'CMD ["bash"]' - "$BASE" >/dev/null
fi

# --- build base: the local image + gcc + this machine's Rust ---------------
if ! have_image "$RUST"; then
    say "assembling $RUST from the local toolchain"
    RUSTC=$(rustc --print sysroot 2>/dev/null) || die "no Rust toolchain on this machine"
    CARGO_DIR=${CARGO_HOME:-$HOME/.cargo}
    CTX="$WORK/rust-ctx"
    rm -rf "$CTX" && mkdir -p "$CTX/toolchain" "$CTX/registry"
    # Hard links where possible: the context is large (rustc, std, crates).
    cp -al "$RUSTC/bin" "$RUSTC/lib" "$CTX/toolchain/" 2>/dev/null \
        || cp -a "$RUSTC/bin" "$RUSTC/lib" "$CTX/toolchain/"
    for d in index cache; do
        [[ -d "$CARGO_DIR/registry/$d" ]] && { cp -al "$CARGO_DIR/registry/$d" "$CTX/registry/" 2>/dev/null \
            || cp -a "$CARGO_DIR/registry/$d" "$CTX/registry/"; }
    done
    cat >"$CTX/Dockerfile" <<DOCKERFILE
FROM $BASE
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
COPY toolchain /usr/local/rust
COPY registry /usr/local/cargo/registry
ENV CARGO_HOME=/usr/local/cargo \\
    CARGO_NET_OFFLINE=true \\
    PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
DOCKERFILE
    docker build --network host -t "$RUST" "$CTX"
    rm -rf "$CTX"
fi

# --- the image itself -------------------------------------------------------
say "docker build $IMAGE"
docker build --network host \
    --build-arg RUST_IMAGE="$RUST" --build-arg RUNTIME_IMAGE="$BASE" \
    -t "$IMAGE" "$REPO"
docker run --rm --entrypoint moat "$IMAGE" --version
docker run --rm --entrypoint dockerd "$IMAGE" --version
say "built $IMAGE"

[[ $RUN == 1 ]] || exit 0

# --- run it ----------------------------------------------------------------
say "running $IMAGE"
CONTAINER=moat-image-test-$$
PORT=${PORT:-22376}
# --network host: the private build engine has no bridge. moat inside listens
# on 0.0.0.0:2376 by default; the test moves it (and its metrics) off the
# usual ports.
docker run -d --name "$CONTAINER" --privileged --network host \
    -e MOAT_METRICS=127.0.0.1:$((PORT + 1)) \
    -v "$CONTAINER:/var/lib/moat" "$IMAGE" --listen "127.0.0.1:$PORT" >/dev/null
for _ in $(seq 1 120); do
    state=$(docker inspect -f '{{.State.Health.Status}}' "$CONTAINER" 2>/dev/null || echo gone)
    [[ $state == healthy || $state == gone ]] && break
    sleep 1
done
[[ ${state:-} == healthy ]] || { docker logs "$CONTAINER" | tail -40; die "container not healthy ($state)"; }
BUNDLE="$WORK/admin-bundle"
rm -rf "$BUNDLE" && docker cp "$CONTAINER:/var/lib/moat/clients/admin" "$BUNDLE"
(
    export DOCKER_HOST="tcp://127.0.0.1:$PORT" DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH="$BUNDLE"
    docker version
    docker info --format '{{.ServerVersion}}'
)
say "image test passed"
