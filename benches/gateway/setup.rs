//! The bench's world: one private dockerd listening both on a bare unix
//! socket and on its own mutual-TLS port (the reference), moat as a child
//! process in front of the same socket (so its CPU and RSS can be read from
//! /proc), the peers (nginx and HAProxy, [`crate::peers`]), the client PKI,
//! and the images the measurements use.
//!
//! Everything is started under small watchdog shells that stop it when the
//! bench process exits, however it exits.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::engine::{build_image, wait_for_ping, Engine};
use crate::support::pki::{Bundle, Pki};
use crate::support::run_with_deadline;

pub(crate) const SMALL_IMAGE: &str = crate::support::engine::IMAGE;
pub(crate) const BIG_IMAGE: &str = "moat-bench/big:latest";

pub(crate) struct World {
    pub dir: PathBuf,
    pub engine: Engine,
    pub dockerd_pid: u32,
    pub dockerd_tls: SocketAddr,
    pub moat_addr: SocketAddr,
    pub moat_pid: u32,
    /// moat's plain-HTTP metrics listener.
    pub moat_metrics: SocketAddr,
    /// `MOAT_BENCH_COMPARE_BIN`: another moat binary, as (address, pid).
    pub moat_b: Option<(SocketAddr, u32)>,
    /// nginx and HAProxy on the same engine (none with `MOAT_BENCH_PEERS=0`).
    pub peers: Vec<crate::peers::Peer>,
    /// A stopped container of [`SMALL_IMAGE`], for `GET /containers/{id}/json`.
    pub container_id: String,
    pub bundle: Bundle,
    pub big_tar: PathBuf,
}

/// A free loopback port (bound, then released for the child to take).
pub(crate) fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr")
}

/// Runs `body` in the background under a shell that kills `$child` as soon
/// as this process is gone, and writes the child's pid to `pidfile`.
pub(crate) fn watchdog(body: &str, pidfile: &Path, cleanup: &str) {
    let script = format!(
        r#"{body} &
           child=$!
           echo $child > "{pidfile}"
           while kill -0 {parent} 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done
           kill -TERM $child 2>/dev/null; wait $child
           {cleanup}"#,
        pidfile = pidfile.display(),
        parent = std::process::id(),
    );
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .spawn()
        .expect("start watchdog shell");
    // The watchdog outlives this call on purpose; it reaps its child itself.
    std::mem::forget(child);
}

pub(crate) fn read_pid(pidfile: &Path) -> u32 {
    let start = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(pidfile) {
            if let Ok(p) = s.trim().parse() {
                return p;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no pid in {}",
            pidfile.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn wait_for_port(addr: SocketAddr, what: &str, log: &Path) {
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        if start.elapsed() > Duration::from_secs(60) {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} did not listen on {addr}:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl World {
    pub(crate) fn start(big_image_bytes: u64) -> World {
        let dir = tempfile::Builder::new()
            .prefix("moat-bench-")
            .tempdir_in("/tmp")
            .expect("tempdir")
            .keep();
        eprintln!("bench: working in {}", dir.display());
        // ECDSA P-256 everywhere (rcgen's default key type).
        let pki = Pki::generate(&dir.join("pki"));
        let bundle = pki.client("bench", "admin");

        // The engine: a bare socket, and dockerd's own mTLS listener.
        let socket = dir.join("docker.sock");
        let dockerd_tls = free_port();
        let d = dir.display();
        watchdog(
            &format!(
                r#"dockerd --host "unix://{sock}" --host "tcp://{dockerd_tls}" \
                   --tlsverify --tlscacert "{ca}" --tlscert "{cert}" --tlskey "{key}" \
                   --data-root "{d}/data" --exec-root "{d}/exec" --pidfile "{d}/dockerd.pid" \
                   --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
                   >"{d}/dockerd.log" 2>&1"#,
                sock = socket.display(),
                ca = pki.ca_pem.display(),
                cert = pki.server_cert.display(),
                key = pki.server_key.display(),
            ),
            &dir.join("dockerd.watch.pid"),
            &format!(r#"rm -rf "{d}/data" "{d}/exec" 2>/dev/null"#),
        );
        let dockerd_pid = read_pid(&dir.join("dockerd.watch.pid"));
        wait_for_ping(&socket, Duration::from_secs(60)).unwrap_or_else(|e| {
            let log = std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
            panic!("private dockerd did not come up: {e}\n{log}")
        });
        wait_for_port(dockerd_tls, "dockerd (TLS)", &dir.join("dockerd.log"));
        let engine = Engine {
            dir: dir.clone(),
            socket: socket.clone(),
        };

        // moat, as a child process, with the shipped policy pack and audit on.
        let (moat_addr, moat_pid) =
            start_moat(&dir, &pki, &socket, env!("CARGO_BIN_EXE_moat"), "moat");
        // Optionally a second build, measured side by side (A/B).
        let moat_b = std::env::var("MOAT_BENCH_COMPARE_BIN")
            .ok()
            .map(|bin| start_moat(&dir, &pki, &socket, &bin, "moat-b"));

        let peers = if crate::peers::wanted() {
            crate::peers::start(&dir, &pki, &socket)
        } else {
            Vec::new()
        };

        // Images: busybox for `docker run`, and a big random layer to stream.
        build_image(&engine);
        let big_tar = dir.join("big.tar");
        let mib = big_image_bytes / (1024 * 1024);
        let script = format!(
            "set -e; r=$(mktemp -d -p '{d}'); head -c {big_image_bytes} /dev/urandom > $r/blob; \
             tar -C $r -c blob | docker -H '{host}' import - {BIG_IMAGE} >/dev/null; rm -rf $r; \
             docker -H '{host}' save -o '{tar}' {BIG_IMAGE}",
            host = engine.host(),
            tar = big_tar.display(),
        );
        eprintln!("bench: building a {mib} MiB image");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .env("DOCKER_CONFIG", dir.join("docker-config"));
        let out = run_with_deadline(cmd, None, Duration::from_secs(300));
        assert!(
            out.status.success(),
            "big image: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // A stopped container, for `GET /containers/{id}/json` (an
        // object-addressed request).
        let mut cmd = Command::new("docker");
        cmd.args(["-H", &engine.host(), "create", SMALL_IMAGE, "true"])
            .env("DOCKER_CONFIG", dir.join("docker-config"));
        let out = run_with_deadline(cmd, None, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "docker create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let container_id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let moat_metrics = std::fs::read_to_string(dir.join("moat.metrics"))
            .expect("metrics address")
            .parse()
            .expect("metrics address");
        World {
            dir,
            engine,
            dockerd_pid,
            dockerd_tls,
            moat_addr,
            moat_pid,
            moat_metrics,
            moat_b,
            peers,
            container_id,
            bundle,
            big_tar,
        }
    }

    /// Stops moat and dockerd now (their watchdogs would otherwise do it
    /// within half a second of this process exiting).
    pub(crate) fn stop(&self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        let b = self.moat_b.map(|(_, p)| p);
        let peers = self.peers.iter().filter_map(|p| p.pids.first().copied());
        for pid in [Some(self.moat_pid), b]
            .into_iter()
            .flatten()
            .chain(peers)
            .chain([self.dockerd_pid])
        {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
}

/// Starts one moat (binary `bin`) as a child process in front of `socket`,
/// with the shipped policy pack and audit on; returns its address and pid.
/// `max_connections` is raised so that the memory phase's idle connections
/// (one identity) fit within the per-identity default, half of it.
fn start_moat(dir: &Path, pki: &Pki, socket: &Path, bin: &str, name: &str) -> (SocketAddr, u32) {
    let addr = free_port();
    let metrics = free_port();
    std::fs::write(dir.join(format!("{name}.metrics")), metrics.to_string()).expect("write");
    let repo = crate::support::repo();
    let d = dir.display();
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        format!(
            "listen:\n  tcp: {addr}\ntls:\n  cert: {}\n  key: {}\n  client_ca: {}\n\
             engine:\n  socket: {}\nlimits:\n  max_connections: 4096\npolicy:\n  dir: {}\naudit:\n  file: {d}/{name}-audit/audit.log\n  sync: {sync}\n\
             metrics:\n  listen: {metrics}\nlog:\n  level: warn\n",
            pki.server_cert.display(),
            pki.server_key.display(),
            pki.ca_pem.display(),
            socket.display(),
            std::env::var_os("MOAT_BENCH_POLICY_DIR")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| repo.join("policies"))
                .display(),
            sync = std::env::var("MOAT_BENCH_AUDIT_SYNC").unwrap_or_else(|_| "always".into()),
        ),
    )
    .expect("write moat config");
    let log = dir.join(format!("{name}.log"));
    watchdog(
        &format!(
            r#"env -u RUST_BACKTRACE "{bin}" serve --config "{cfg}" >"{log}" 2>&1"#,
            cfg = config.display(),
            log = log.display(),
        ),
        &dir.join(format!("{name}.watch.pid")),
        "",
    );
    let pid = read_pid(&dir.join(format!("{name}.watch.pid")));
    wait_for_port(addr, name, &log);
    (addr, pid)
}
