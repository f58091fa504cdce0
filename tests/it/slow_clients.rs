//! Slow clients on authenticated connections (issue 16): a body that
//! trickles in, a client that stops reading a large response, and one that
//! pipelines 10,000 requests without reading any answer. moat runs as its
//! own process here, so that its memory can be read from /proc.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

use crate::support::{engine, image, pki, raw, repo, tempdir, unique, Bundle, Moat, MoatOptions};

#[test]
fn a_trickling_inspected_body_is_answered_408() {
    let moat = Moat::start_with(MoatOptions {
        limits_yaml: Some("  body_read_timeout: 1s\n  shutdown_grace: 2s\n".into()),
        ..Default::default()
    });
    let bundle = pki().client("alice", "admin");
    let mut c = raw::connect(moat.addr, &bundle).unwrap();
    c.write_all(b"POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"Ima")
        .unwrap();
    c.flush().unwrap();
    // Nothing more: moat answers by itself, well before the client's 30 s.
    let resp = raw::read_response(&mut BufReader::new(&mut c)).unwrap();
    assert_eq!(resp.status, 408, "{}", resp.body);
    assert!(
        resp.body.contains("limits.body_read_timeout"),
        "{}",
        resp.body
    );
    // Audited like any refusal (the completion record is queued once the
    // response has ended).
    let audited = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        moat.audit_records().iter().any(|r| {
            r["request"]["operation"] == "ContainerCreate" && r["response"]["status"] == 408
        })
    });
    assert!(audited, "the 408 was not audited");
}

/// moat as a child process (`moat serve`), for its RSS.
struct MoatProcess {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
}

impl Drop for MoatProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl MoatProcess {
    fn start(limits: &str) -> MoatProcess {
        let p = pki();
        let dir = tempdir("moat-slow-");
        let (addr, metrics) = (free_port(), free_port());
        let config = dir.join("moat.yaml");
        std::fs::write(
            &config,
            format!(
                "listen:\n  tcp: {addr}\ntls:\n  cert: {}\n  key: {}\n  client_ca: {}\nengine:\n  socket: {}\nlimits:\n{limits}policy:\n  dir: {}\naudit:\n  file: audit/audit.log\nmetrics:\n  listen: {metrics}\nlog:\n  level: warn\n",
                p.server_cert.display(),
                p.server_key.display(),
                p.ca_pem.display(),
                engine().socket.display(),
                repo().join("policies").display(),
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_moat"))
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let m = MoatProcess {
            child,
            addr,
            metrics,
        };
        for _ in 0..200 {
            if TcpStream::connect(addr).is_ok() {
                return m;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moat did not start listening on {addr}");
    }

    /// Resident memory, in KiB, from /proc.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    /// One sample of the metrics endpoint.
    fn metric(&self, series: &str) -> f64 {
        let mut s = TcpStream::connect(self.metrics).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        crate::audit::sample(&text, series)
    }
}

/// A stopped container whose log is 30 MB (30,000 lines of 1,000 bytes).
fn chatty_container() -> String {
    let name = unique("chatty");
    let out = engine().direct(&[
        "run",
        "--name",
        &name,
        image(),
        "sh",
        "-c",
        "head -c 30000000 /dev/zero | tr '\\0' a | fold -w 1000",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    name
}

/// A TLS connection whose client side buffers little (so that a client
/// that does not read holds moat's writes up at once).
fn connect_small_buffer(
    addr: SocketAddr,
    bundle: &Bundle,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&addr.into()).unwrap();
    let tcp: TcpStream = sock.into();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let conn = rustls::ClientConnection::new(
        raw::client_config(bundle),
        ServerName::try_from("localhost").unwrap().to_owned(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// Samples moat's RSS until its connections are all closed (bounded);
/// returns the largest growth over `base`, in KiB.
fn peak_growth_until_closed(moat: &MoatProcess, base: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut peak = 0;
    // Let the client's requests arrive first.
    std::thread::sleep(Duration::from_millis(300));
    loop {
        peak = peak.max(moat.rss_kib().saturating_sub(base));
        if moat.metric("moat_connections_active") == 0.0 {
            return peak;
        }
        assert!(
            Instant::now() < deadline,
            "moat never closed the connection of a client that does not read"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the test's limits are measured against: moat after serving a
/// first request, all connections closed.
fn warmed_up(moat: &MoatProcess, bundle: &Bundle) -> u64 {
    let resp = raw::exchange(
        moat.addr,
        bundle,
        b"GET /v1.41/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(raw::status(&resp), 200, "{resp}");
    std::thread::sleep(Duration::from_millis(300));
    moat.rss_kib()
}

/// Most a client that does not read may grow moat's memory by, in KiB:
/// buffers of a few connections' worth, far below the responses it asked
/// for (30 MB and 1 GB below).
const BOUND_KIB: u64 = 32 * 1024;

#[test]
fn a_client_that_stops_reading_a_large_response_is_disconnected() {
    let moat = MoatProcess::start("  write_timeout: 2s\n  shutdown_grace: 2s\n");
    let bundle = pki().client("alice", "admin");
    let name = chatty_container();
    let base = warmed_up(&moat, &bundle);
    let mut c = connect_small_buffer(moat.addr, &bundle);
    let req = format!("GET /v1.41/containers/{name}/logs?stdout=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    c.write_all(req.as_bytes()).unwrap();
    c.flush().unwrap();
    // The client reads nothing; moat must close the connection by itself.
    let growth = peak_growth_until_closed(&moat, base);
    eprintln!("moat RSS grew by at most {growth} KiB while the client did not read 30 MB");
    assert!(growth < BOUND_KIB, "moat grew by {growth} KiB");
    // What the client can still read ends well short of the 30 MB log.
    let mut got = Vec::new();
    let _ = c.read_to_end(&mut got);
    assert!(got.len() < 30_000_000 / 2, "{} bytes arrived", got.len());
}

#[test]
fn memory_stays_bounded_while_a_client_pipelines_10000_requests_without_reading() {
    let moat = MoatProcess::start("  write_timeout: 2s\n  shutdown_grace: 2s\n");
    let bundle = pki().client("alice", "admin");
    let name = chatty_container();
    let base = warmed_up(&moat, &bundle);
    let mut c = connect_small_buffer(moat.addr, &bundle);
    // Each answer is 100 lines of 1,000 bytes: 1 GB for all of them.
    let req =
        format!("GET /v1.41/containers/{name}/logs?stdout=1&tail=100 HTTP/1.1\r\nHost: x\r\n\r\n");
    let writer = std::thread::spawn(move || {
        let mut sent = 0;
        for _ in 0..10_000 {
            if c.write_all(req.as_bytes()).and_then(|_| c.flush()).is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let growth = peak_growth_until_closed(&moat, base);
    let sent = writer.join().unwrap();
    eprintln!("moat RSS grew by at most {growth} KiB while a client pipelined {sent} requests without reading");
    assert!(growth < BOUND_KIB, "moat grew by {growth} KiB");
}
