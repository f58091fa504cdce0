#!/usr/bin/env bash
# A bounded soak (a benchmark, not a test): about MOAT_SOAK_SECONDS (300) of
# mixed traffic against `moat up` (bundled engine), and what it did:
#   - docker CLI traffic from four identities (three certificates, one token);
#   - slowloris attackers (TCP without a ClientHello, TLS without a
#     certificate and half a request head), reconnecting whenever closed;
#   - the engine killed (SIGKILL) twice, restarted by moat's supervisor;
#   - a policy reload (SIGHUP) and a CRL update (a spare certificate revoked).
# It reports requests served and failed by kind, the p50/p99 latency of the
# legitimate traffic, audit records against requests counted, and moat's RSS
# over time, and writes the report to docs/reliability.md's "Latest run".
#
# MOAT_SOAK_BIN: the moat binary (default: a release build, made here).
# MOAT_SOAK_SECONDS: the duration. MOAT_SOAK_KEEP=1 keeps the state directory.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

. scripts/packages.sh
mapfile -t need < <(engine_packages_missing)
install_packages "${need[@]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "==> the soak starts a bundled dockerd, which needs root: run as root (or with sudo -E)" >&2
  exit 1
fi

seconds=${MOAT_SOAK_SECONDS:-300}
bin=${MOAT_SOAK_BIN:-}
if [ -z "$bin" ]; then
  echo "==> cargo build --release"
  cargo build --locked --release --bin moat
  bin=$repo/target/release/moat
fi
bin=$(realpath "$bin")

dir=$(mktemp -d /tmp/moat-soak.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "${moat_pid:-}" ]; then kill -TERM "$moat_pid" 2>/dev/null || true; wait "$moat_pid" 2>/dev/null || true; fi
  if [ "${MOAT_SOAK_KEEP:-0}" != 1 ]; then rm -rf "$dir"; else echo "==> kept $dir"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
mport=$(free_port)
state=$dir/state

# The first run writes moat.yaml; the soak then runs with
# limits.max_connections: 64, so that the 64 attackers fill the
# pre-authentication budget (half of it) and moat has to evict.
up() {
  "$bin" up --dir "$state" --listen "127.0.0.1:$port" --metrics "127.0.0.1:$mport" >>"$dir/moat.log" 2>&1 &
  moat_pid=$!
  for _ in $(seq 1 300); do
    if curl -fsS "http://127.0.0.1:$mport/readyz" >/dev/null 2>&1; then return; fi
    sleep 0.2
  done
  cat "$dir/moat.log"
  exit 1
}
echo "==> moat up --dir $state (bundled engine)"
up
kill -TERM "$moat_pid"; wait "$moat_pid" || true
sed -i 's/^  max_connections: 1024 /  max_connections: 64   /' "$state/moat.yaml"
grep -q '^  max_connections: 64 ' "$state/moat.yaml"
up
engine_sock=$state/engine/docker.sock

echo "==> test image (busybox) into the bundled engine"
root=$dir/image-root
mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/proc" "$root/sys" "$root/dev"
bb=$(command -v busybox || echo /bin/busybox)
cp "$bb" "$root/bin/busybox"
for a in $("$bb" --list); do [ "$a" = busybox ] || ln -sf busybox "$root/bin/$a"; done
tar -C "$root" -c . | docker -H "unix://$engine_sock" import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - soak/busybox >/dev/null

echo "==> identities"
clients=$dir/clients
for u in alice bob carol victim; do
  "$bin" certs issue --dir "$state/pki" --user "$u" --group admin --out "$clients/$u" >/dev/null
done
mkdir -p "$clients/ci-bot"
cp "$state/clients/admin/ca.pem" "$clients/ci-bot/ca.pem"
token=$("$bin" token issue --key "$state/tokens/signing-key.pem" --subject ci-bot --group admin --ttl 1h --issuer moat --audience moat)
mkdir -p "$clients/ci-bot/config"
printf '{"HttpHeaders":{"Authorization":"Bearer %s"}}\n' "$token" >"$clients/ci-bot/config/config.json"

# One worker: docker CLI commands in a loop until the deadline; one line per
# command: kind, start and end (ns), exit status.
results=$dir/results
mkdir -p "$results"
deadline=$(( $(date +%s) + seconds ))
worker() {
  local who=$1 out=$results/$1.tsv
  local cfg=$clients/$who/config
  mkdir -p "$cfg"
  local kinds=(ps images version run inspect)
  local i=0
  while [ "$(date +%s)" -lt "$deadline" ]; do
    local kind=${kinds[$((i % ${#kinds[@]}))]}
    i=$((i + 1))
    local args
    case $kind in
      ps) args=(ps -a) ;;
      images) args=(images) ;;
      version) args=(version) ;;
      run) args=(run --rm soak/busybox true) ;;
      inspect) args=(image inspect soak/busybox) ;;
    esac
    local s e rc=0
    s=$(date +%s%N)
    DOCKER_HOST=tcp://127.0.0.1:$port DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$clients/$who \
      DOCKER_CONFIG=$cfg timeout -k 5 60 docker "${args[@]}" >/dev/null 2>>"$results/$who.err" || rc=$?
    e=$(date +%s%N)
    printf '%s\t%s\t%s\t%s\t%s\n' "$who" "$kind" "$s" "$e" "$rc" >>"$out"
    sleep 0.2
  done
}

echo "==> ${seconds}s of traffic, attackers and faults"
for who in alice bob carol ci-bot; do worker "$who" & pids+=($!); done

# Slowloris: 32 connections at the handshake, 32 in the head (TLS without a
# certificate), each reopened as soon as moat closes it.
python3 - "$port" "$clients/ci-bot/ca.pem" "$deadline" >"$results/attackers.txt" 2>&1 <<'EOF' &
import socket, ssl, sys, threading, time
port, ca, deadline = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
opened = [0, 0]
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
def hold(kind):
    while time.time() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            opened[kind] += 1
            if kind == 1:
                s = ctx.wrap_socket(s, server_hostname="localhost")
                s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n")
            s.settimeout(1)
            while time.time() < deadline:
                try:
                    if not s.recv(256):
                        break
                except socket.timeout:
                    continue
            s.close()
        except Exception:
            pass
        time.sleep(0.05)
threads = [threading.Thread(target=hold, args=(k,)) for k in (0, 1) for _ in range(32)]
for t in threads: t.start()
for t in threads: t.join()
print(f"handshake_connections\t{opened[0]}\nhead_connections\t{opened[1]}")
EOF
pids+=($!)

# moat's RSS every 5 s.
( while [ "$(date +%s)" -lt "$deadline" ]; do
    printf '%s\t%s\n' "$(date +%s)" "$(awk '/VmRSS/ {print $2}' /proc/$moat_pid/status)"
    sleep 5
  done >"$results/rss.tsv" ) & pids+=($!)

start=$(date +%s)
at() { local t=$(( start + $1 * seconds / 100 )); while [ "$(date +%s)" -lt "$t" ]; do sleep 1; done; }
events=$results/events.tsv
at 20; kill -KILL "$(cat "$state/engine/dockerd.pid")"; printf '%s\tengine killed\n' "$(date +%s)" >>"$events"
at 40; kill -HUP "$moat_pid"; printf '%s\tpolicy reload (SIGHUP)\n' "$(date +%s)" >>"$events"
at 55; kill -KILL "$(cat "$state/engine/dockerd.pid")"; printf '%s\tengine killed\n' "$(date +%s)" >>"$events"
at 70; "$bin" certs revoke --dir "$state/pki" --cert "$clients/victim/cert.pem" >/dev/null
printf '%s\tCRL update (victim revoked)\n' "$(date +%s)" >>"$events"
sleep 3
victim=0
DOCKER_HOST=tcp://127.0.0.1:$port DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=$clients/victim \
  DOCKER_CONFIG=$clients/victim timeout -k 5 60 docker version >/dev/null 2>&1 || victim=1
printf '%s\tthe revoked certificate refused: %s\n' "$(date +%s)" "$([ $victim = 1 ] && echo yes || echo NO)" >>"$events"

for p in "${pids[@]}"; do wait "$p" || true; done
pids=()
# Every request has ended (streams and sessions too) before counting, so
# that the audit log and the metrics cover the same requests.
for _ in $(seq 1 60); do
  curl -fsS "http://127.0.0.1:$mport/metrics" >"$results/metrics.txt"
  grep -q '^moat_connections_active 0$' "$results/metrics.txt" && break
  sleep 0.5
done
kill -TERM "$moat_pid"; wait "$moat_pid" || true; moat_pid=
"$bin" audit verify "$state/audit/audit.log" >"$results/verify.txt" 2>&1 || true

python3 - "$results" "$seconds" "$repo/docs/reliability.md" "$state/audit" "$bin" <<'EOF'
import glob, os, re, subprocess, sys, datetime
results, seconds, doc, audit_dir, binary = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
rows = []
for f in glob.glob(os.path.join(results, "*.tsv")):
    if os.path.basename(f) in ("rss.tsv", "events.tsv"):
        continue
    for line in open(f):
        who, kind, s, e, rc = line.rstrip("\n").split("\t")
        rows.append((who, kind, (int(e) - int(s)) / 1e6, int(rc)))
kinds = sorted({k for _, k, _, _ in rows})
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")
lines = ["| command | served | failed | p50 ms | p99 ms |", "|---|---|---|---|---|"]
for k in kinds:
    ok = [ms for _, kk, ms, rc in rows if kk == k and rc == 0]
    bad = [ms for _, kk, ms, rc in rows if kk == k and rc != 0]
    lines.append(f"| `docker {k}` | {len(ok)} | {len(bad)} | {pct(ok, 50):.0f} | {pct(ok, 99):.0f} |")
allok = [ms for _, _, ms, rc in rows if rc == 0]
lines.append(f"| all | {len(allok)} | {len(rows) - len(allok)} | {pct(allok, 50):.0f} | {pct(allok, 99):.0f} |")
metrics = open(os.path.join(results, "metrics.txt")).read()
def total(prefix):
    return sum(float(l.split()[-1]) for l in metrics.splitlines() if l.startswith(prefix))
requests = total("moat_requests_total{")
by_status = {}
for l in metrics.splitlines():
    m = re.match(r'moat_requests_total\{.*code="(\d+)"\} (\S+)', l)
    if m:
        by_status[m.group(1)] = by_status.get(m.group(1), 0) + float(m.group(2))
complete = 0
for f in glob.glob(os.path.join(audit_dir, "audit.log*")):
    complete += sum(1 for l in open(f) if '"stage":"complete"' in l)
rss = [(int(t), int(k)) for t, k in (l.split() for l in open(os.path.join(results, "rss.tsv")) if len(l.split()) == 2)]
t0 = rss[0][0] if rss else 0
rss_line = ", ".join(f"{t - t0}s {k // 1024} MiB" for t, k in rss[:: max(1, len(rss) // 12)])
events = [l.rstrip("\n").split("\t", 1) for l in open(os.path.join(results, "events.tsv"))]
attackers = dict(l.split("\t") for l in open(os.path.join(results, "attackers.txt")).read().split("\n") if "\t" in l)
verify = open(os.path.join(results, "verify.txt")).read().strip().splitlines()
errors = {}
for f in glob.glob(os.path.join(results, "*.err")):
    for l in open(f):
        l = re.sub(r"[0-9a-f]{12,}", "<id>", l.strip())
        l = re.sub(r'time="[^"]*" ', "", l)
        if l and not l.startswith(("Run 'docker", "See 'docker")):
            errors[l] = errors.get(l, 0) + 1
top_errors = sorted(errors.items(), key=lambda kv: -kv[1])[:6]
build = "release" if "/release/" in binary else "debug"
report = "\n".join([
    f"### Latest run: {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC, {seconds} s, {build} build",
    "",
    "`limits.max_connections: 64`, the other limits at their defaults. Legitimate traffic (docker CLI, four identities, one command at a time each, 0.2 s apart):",
    "",
    *lines,
    "",
    f"Requests moat answered (`moat_requests_total`): {requests:.0f}, by status: "
    + ", ".join(f"{c}: {n:.0f}" for c, n in sorted(by_status.items())) + ".",
    f"Audit `complete` records: {complete} ({'one per request, nothing lost' if complete == requests else 'MISMATCH with the requests counted'}); "
    f"`moat audit verify`: {verify[0] if verify else 'no output'}.",
    f"Slowloris connections opened: {attackers.get('handshake_connections', '?')} at the handshake, {attackers.get('head_connections', '?')} in the head; "
    f"evictions: {total('moat_unauthenticated_evictions_total'):.0f}.",
    "",
    "The CLI's most frequent errors:",
    "",
    *[f"- {n} × `{e[:200]}`" for e, n in top_errors],
    "",
    "Faults: " + "; ".join(f"{int(t) - t0}s {what}" for t, what in events) + ".",
    "",
    f"moat RSS: {rss_line}.",
    "",
])
print(report)
text = open(doc).read() if os.path.exists(doc) else ""
marker = "### Latest run"
text = text.split(marker)[0].rstrip() + "\n\n" + report if marker in text else text.rstrip() + "\n\n" + report
open(doc, "w").write(text)
EOF
