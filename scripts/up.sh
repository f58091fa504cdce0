#!/usr/bin/env bash
# The README's quick start: build moat and run `moat up`, which generates a
# CA, a server certificate, an admin client bundle and a token key under
# ./.moat (first run only), starts a bundled dockerd on a private socket, and
# serves mutual TLS on 127.0.0.1:2376. Installs Debian's docker.io when
# dockerd is missing, and says so. Extra arguments go to `moat up`.
#
# moat is built as the calling user (cargo is usually on that user's PATH
# only); `moat up` then runs as root, through sudo when needed, because the
# bundled dockerd needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/packages.sh
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v dockerd >/dev/null 2>&1; then
  echo "==> dockerd not found: Debian's docker.io provides the bundled engine"
  install_packages docker.io
fi
echo "==> building moat (release)"
cargo build --release --locked --quiet
if [ -n "$SUDO" ]; then
  echo "==> the bundled engine (dockerd) needs root: running moat up with sudo"
fi
exec $SUDO "${CARGO_TARGET_DIR:-target}/release/moat" up "$@"
