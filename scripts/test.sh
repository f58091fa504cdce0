#!/usr/bin/env bash
# The whole test suite, as the README's test command. Installs what it needs
# (Debian's docker.io for dockerd, busybox-static for the test image) when it
# is missing, and says so. Integration tests start their own private dockerd
# on a temporary socket; the host's Docker daemon is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker >/dev/null 2>&1 || need+=(docker.io)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed" || need+=(busybox-static)
command -v script >/dev/null 2>&1 || need+=(bsdutils)
command -v tar >/dev/null 2>&1 || need+=(tar)
if [ ${#need[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${need[@]}" | sort -u | tr '\n' ' ')
  echo "==> installing missing system packages: $pkgs"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $pkgs >/dev/null
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "==> the integration tests start a private dockerd, which needs root: run as root (or with sudo -E)" >&2
  exit 1
fi

# The reference-data tests (route table, body schema) compare moat's copies
# with ../shared when it is there; then they must not skip.
if [ -d ../shared/engine-api ]; then
  export MOAT_CHECK_REFERENCE=1
  if ! python3 -c 'import yaml' 2>/dev/null; then
    echo "==> installing PyYAML (regenerates the body schema table for comparison)"
    python3 -m pip install -q pyyaml
  fi
fi

export RUST_LIB_BACKTRACE=0
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "==> cargo test (unit, policy and integration tests against a private dockerd)"
cargo test --locked -- --test-threads=2
