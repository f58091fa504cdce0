#!/usr/bin/env bash
# The README's benchmark command: `cargo bench --bench gateway`, after
# installing what it needs (Debian's docker.io for dockerd and the CLI,
# busybox-static for the test image) when it is missing, and saying so. It
# starts its own private dockerd, moat and dockerd's TLS listener; the host's
# Docker daemon is never touched. The MOAT_BENCH_* variables
# (docs/performance.md) pass through.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/packages.sh
mapfile -t need < <(engine_packages_missing)
install_packages "${need[@]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "==> the benchmark starts a private dockerd, which needs root: run as root (or with sudo -E)" >&2
  exit 1
fi
exec cargo bench --locked --bench gateway
