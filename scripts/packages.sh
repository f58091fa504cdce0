# Sourced by the scripts in this directory: what a private engine and the
# busybox test image need, and installing what is missing (saying so).

# Prints, one per line, the Debian packages missing for a private dockerd,
# the docker CLI, the busybox-static test image and tar.
engine_packages_missing() {
  PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v dockerd >/dev/null 2>&1 || echo docker.io
  command -v docker >/dev/null 2>&1 || echo docker.io
  dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed" || echo busybox-static
  command -v tar >/dev/null 2>&1 || echo tar
}

# Prints the Debian packages missing for the integration tests beyond the
# engine's: docker-compose (Debian's 1.29, on docker-py) drives moat in
# tests/it/compose.rs.
test_packages_missing() {
  command -v docker-compose >/dev/null 2>&1 || echo docker-compose
}

# Prints the Debian packages missing for the benchmark's peers (nginx and
# HAProxy in front of the same engine, docs/performance.md).
peer_packages_missing() {
  PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v nginx >/dev/null 2>&1 || echo nginx
  PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v haproxy >/dev/null 2>&1 || echo haproxy
}

# Installs the given Debian packages (none: does nothing), through sudo when
# not root, and says which.
install_packages() {
  [ $# -gt 0 ] || return 0
  local pkgs sudo=""
  pkgs=$(printf '%s\n' "$@" | sort -u | tr '\n' ' ')
  echo "==> installing missing system packages: $pkgs"
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $pkgs >/dev/null
}
