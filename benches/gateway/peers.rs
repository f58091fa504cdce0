//! The peers (issue 17): the reverse proxies a user would put in front of
//! the engine instead of moat, started on the same engine with the same
//! ECDSA server certificate and client CA, tuned as their manuals say for
//! this job, so the table compares moat with them in the same rounds.
//!
//! - nginx (Debian's package): mutual TLS, `worker_processes` = cores,
//!   keep-alive to the engine's unix socket (`keepalive` upstream, HTTP/1.1,
//!   `Connection: ""`), no buffering either way (`proxy_request_buffering
//!   off; proxy_buffering off;`), `Upgrade` passed through for `docker run
//!   -i` (the engine answers 101).
//! - HAProxy (Debian's package): TLS with `verify required`, HTTP mode,
//!   `nbthread` = cores, keep-alive both sides (`option http-keep-alive`,
//!   `http-reuse always`), `option http-no-delay`.
//!
//! Both: no access log, no session resumption (tickets and cache off, as
//! moat), TLS 1.3 with AES-128-GCM preferred by the server (as moat), and
//! an hour of idle time for streams and hijacked connections. The configs
//! are written into the bench's directory and documented in
//! `docs/performance.md`. `MOAT_BENCH_PEERS=0` skips both.

use std::net::SocketAddr;
use std::path::Path;

use crate::setup::{free_port, read_pid, wait_for_port, watchdog};
use crate::support::pki::Pki;

/// One running peer.
pub(crate) struct Peer {
    /// `nginx` or `haproxy` (the path's name in the table and JSON).
    pub name: &'static str,
    pub addr: SocketAddr,
    /// Every process that serves (nginx: master and workers; HAProxy: one
    /// process), so that its CPU per connection counts all of them.
    pub pids: Vec<u32>,
}

/// Whether the peers run (`MOAT_BENCH_PEERS=0` skips them).
pub(crate) fn wanted() -> bool {
    std::env::var("MOAT_BENCH_PEERS").map_or(true, |v| v != "0")
}

/// The cores the peers may use: their worker count.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Starts nginx and HAProxy in front of `socket`, skipping (and saying so)
/// one whose binary is missing.
pub(crate) fn start(dir: &Path, pki: &Pki, socket: &Path) -> Vec<Peer> {
    let mut peers = Vec::new();
    for (name, start) in [
        ("nginx", start_nginx as fn(&Path, &Pki, &Path) -> Peer),
        ("haproxy", start_haproxy),
    ] {
        if which(name) {
            peers.push(start(dir, pki, socket));
        } else {
            eprintln!(
                "bench: {name} not found (scripts/bench.sh installs it; MOAT_BENCH_PEERS=0 skips the peers)"
            );
        }
    }
    peers
}

fn which(bin: &str) -> bool {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .any(|d| Path::new(d).join(bin).exists())
}

/// The nginx configuration for `socket` on `addr`.
pub(crate) fn nginx_config(dir: &Path, pki: &Pki, socket: &Path, addr: SocketAddr) -> String {
    format!(
        r#"# Written by benches/gateway/peers.rs (docs/performance.md, "Peers").
daemon off;
master_process on;
# The workers connect to the engine's socket (root's) and the bench's
# private directory.
user root;
worker_processes {cores};
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {d}/nginx-tmp/body;
    proxy_temp_path {d}/nginx-tmp/proxy;
    upstream engine {{
        server unix:{sock};
        keepalive 64;
    }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      '';
    }}
    server {{
        listen {addr} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_prefer_server_ciphers on;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
        ssl_session_cache off;
        ssl_session_tickets off;
        keepalive_requests 1000000;
        keepalive_timeout 3600s;
        client_max_body_size 0;
        location / {{
            proxy_pass http://engine;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_request_buffering off;
            proxy_buffering off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
        }}
    }}
}}
"#,
        cores = cores(),
        d = dir.display(),
        sock = socket.display(),
        cert = pki.server_cert.display(),
        key = pki.server_key.display(),
        ca = pki.ca_pem.display(),
    )
}

/// The HAProxy configuration for `socket` on `addr`; `pem` holds the server
/// certificate and key in one file (HAProxy's `crt`).
pub(crate) fn haproxy_config(pki: &Pki, pem: &Path, socket: &Path, addr: SocketAddr) -> String {
    format!(
        r#"# Written by benches/gateway/peers.rs (docs/performance.md, "Peers").
global
    nbthread {cores}
    maxconn 4096
    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
    tune.ssl.cachesize 0
defaults
    mode http
    option http-keep-alive
    option http-no-delay
    http-reuse always
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    timeout http-keep-alive 1h
frontend moat_bench
    bind {addr} ssl crt {pem} ca-file {ca} verify required
    default_backend engine
backend engine
    server dockerd unix@{sock}
"#,
        cores = cores(),
        pem = pem.display(),
        ca = pki.ca_pem.display(),
        sock = socket.display(),
    )
}

fn start_nginx(dir: &Path, pki: &Pki, socket: &Path) -> Peer {
    let addr = free_port();
    let config = dir.join("nginx.conf");
    std::fs::create_dir_all(dir.join("nginx-tmp")).expect("nginx temp dir");
    std::fs::write(&config, nginx_config(dir, pki, socket, addr)).expect("write nginx.conf");
    let log = dir.join("nginx.out");
    watchdog(
        &format!(
            r#"nginx -c "{cfg}" -e "{d}/nginx-error.log" >"{log}" 2>&1"#,
            cfg = config.display(),
            d = dir.display(),
            log = log.display(),
        ),
        &dir.join("nginx.watch.pid"),
        "",
    );
    let master = read_pid(&dir.join("nginx.watch.pid"));
    wait_for_port(addr, "nginx", &dir.join("nginx-error.log"));
    let pids = with_children(master, cores());
    Peer {
        name: "nginx",
        addr,
        pids,
    }
}

fn start_haproxy(dir: &Path, pki: &Pki, socket: &Path) -> Peer {
    let addr = free_port();
    let pem = dir.join("haproxy.pem");
    let mut both = std::fs::read(&pki.server_cert).expect("server cert");
    both.extend(std::fs::read(&pki.server_key).expect("server key"));
    std::fs::write(&pem, both).expect("write haproxy.pem");
    let config = dir.join("haproxy.cfg");
    std::fs::write(&config, haproxy_config(pki, &pem, socket, addr)).expect("write haproxy.cfg");
    let log = dir.join("haproxy.log");
    // -db: stay in the foreground, one process (threads), no master.
    watchdog(
        &format!(
            r#"haproxy -db -f "{cfg}" >"{log}" 2>&1"#,
            cfg = config.display(),
            log = log.display(),
        ),
        &dir.join("haproxy.watch.pid"),
        "",
    );
    let pid = read_pid(&dir.join("haproxy.watch.pid"));
    wait_for_port(addr, "haproxy", &log);
    Peer {
        name: "haproxy",
        addr,
        pids: vec![pid],
    }
}

/// `pid` and its children, waiting (briefly) until `want` children exist:
/// nginx's workers.
fn with_children(pid: u32, want: usize) -> Vec<u32> {
    let start = std::time::Instant::now();
    loop {
        let kids: Vec<u32> = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if kids.len() >= want || start.elapsed() > std::time::Duration::from_secs(5) {
            return std::iter::once(pid).chain(kids).collect();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
