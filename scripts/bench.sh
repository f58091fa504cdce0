#!/usr/bin/env bash
# The README's benchmark command: `cargo bench --bench gateway`, after
# installing what it needs (Debian's docker.io for dockerd and the CLI,
# busybox-static for the test image, nginx and haproxy for the peers unless
# MOAT_BENCH_PEERS=0) when it is missing, and saying so. It starts its own
# private dockerd, moat, dockerd's TLS listener, nginx and HAProxy (each
# with its own config in the bench's directory); the host's Docker daemon
# is never touched, nor are the nginx or HAProxy services (Debian starts
# them with their default configs when it installs them, where services
# run).
# The MOAT_BENCH_* variables (docs/performance.md) pass through.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/packages.sh
mapfile -t need < <(engine_packages_missing)
if [ "${MOAT_BENCH_PEERS:-1}" != 0 ]; then
  mapfile -t -O "${#need[@]}" need < <(peer_packages_missing)
fi
install_packages "${need[@]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "==> the benchmark starts a private dockerd, which needs root: run as root (or with sudo -E)" >&2
  exit 1
fi
exec cargo bench --locked --bench gateway
