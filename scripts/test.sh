#!/usr/bin/env bash
# The whole test suite, as the README's test command. Installs what it needs
# (Debian's docker.io for dockerd, busybox-static for the test image) when it
# is missing, and says so. Integration tests start their own private dockerd
# on a temporary socket; the host's Docker daemon is never touched.
# scripts/check.sh (fmt, clippy, unit tests, docs, fuzz targets; no root)
# runs first.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/packages.sh

# The reference-data tests (route table, body schema) compare moat's copies
# with ../shared when it is there; then they must not skip.
if [ -d ../shared/engine-api ]; then
  export MOAT_CHECK_REFERENCE=1
  if ! python3 -c 'import yaml' 2>/dev/null; then
    echo "==> installing PyYAML (regenerates the body schema table for comparison)"
    python3 -m pip install -q pyyaml
  fi
fi

# docker-py (PyPI `docker`) drives moat in the client-compatibility tests.
if ! python3 -c 'import docker' 2>/dev/null; then
  echo "==> installing docker-py (PyPI docker) for the client-compatibility tests"
  python3 -m pip install -q docker
fi

export RUST_LIB_BACKTRACE=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# One closing line for the whole run (cargo prints one per test binary).
tally() {
  awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;/) p += $i; if ($(i+1) ~ /^failed;/) f += $i } }
       END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
}

# First what needs neither root nor an engine: fmt, clippy, unit tests,
# docs, fuzz targets.
set +e
./scripts/check.sh 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  tally
  exit "$status"
fi

mapfile -t need < <(engine_packages_missing; test_packages_missing)
command -v script >/dev/null 2>&1 || need+=(bsdutils)
install_packages "${need[@]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "==> the integration tests start a private dockerd, which needs root: run as root (or with sudo -E)" >&2
  exit 1
fi

echo "==> integration tests (against a private dockerd)"
set +e
cargo test --locked --test it -- --test-threads=2 2>&1 | tee -a "$log"
status=${PIPESTATUS[0]}
set -e
tally
exit "$status"
