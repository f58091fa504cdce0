#!/usr/bin/env bash
# The README's quick start: build moat and run `moat up`, which generates a
# CA, a server certificate, an admin client bundle and a token key under
# ./.moat (first run only), starts a bundled dockerd on a private socket, and
# serves mutual TLS on 127.0.0.1:2376. Installs Debian's docker.io when
# dockerd is missing, and says so. Extra arguments go to `moat up`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dockerd >/dev/null 2>&1; then
  echo "==> dockerd not found: installing Debian's docker.io (the bundled engine)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker.io >/dev/null
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "==> the bundled engine (dockerd) needs root: re-running with sudo"
  exec sudo -E "$0" "$@"
fi
echo "==> building moat (release)"
cargo build --release --locked --quiet
exec ./target/release/moat up "$@"
