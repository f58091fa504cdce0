//! What an attacker controls is bounded, and shutdown drains: header size,
//! header read time, and graceful shutdown with in-flight requests.

use std::io::{Read, Write};
use std::time::Duration;

use crate::support::{image, pki, raw, Docker, Moat, MoatOptions};

#[test]
fn oversized_request_head_is_refused() {
    let moat = Moat::start();
    let bundle = pki().client("alice", "admin");
    let big = "a".repeat(70 * 1024);
    let req =
        format!("GET /_ping HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n");
    let resp = raw::exchange(moat.addr, &bundle, req.as_bytes()).unwrap_or_default();
    // hyper answers 431 or closes; either way nothing is served.
    assert!(!resp.contains("200 OK"), "{resp}");
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!("GET /_ping HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n");
    let resp = raw::exchange(moat.addr, &bundle, req.as_bytes()).unwrap_or_default();
    assert!(!resp.contains("200 OK"), "{resp}");
}

#[test]
fn slow_request_head_is_cut_off() {
    let moat = Moat::start_with(MoatOptions {
        limits_yaml: Some("  header_read_timeout: 1s\n  shutdown_grace: 2s\n".into()),
        ..Default::default()
    });
    let bundle = pki().client("alice", "admin");
    let mut tls = raw::connect(moat.addr, &bundle).unwrap();
    tls.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    tls.flush().unwrap();
    // Never finish the head: moat must close the connection by itself.
    let mut buf = Vec::new();
    let r = tls.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    assert!(r.is_ok() || !text.contains("200"), "{r:?} {text}");
    assert!(!text.contains("200 OK"), "{text}");
}

#[test]
fn shutdown_lets_in_flight_requests_finish() {
    let moat = Moat::start_with(MoatOptions {
        limits_yaml: Some("  shutdown_grace: 20s\n".into()),
        ..Default::default()
    });
    let bundle = pki().client("alice", "admin");
    let d = Docker::new(&moat, &bundle);
    let id = d.ok(&["run", "-d", image(), "sleep", "2"]);
    let id = id.trim().to_string();
    let mut tls = raw::connect(moat.addr, &bundle).unwrap();
    let req = format!("POST /v1.41/containers/{id}/wait HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).unwrap();
    tls.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let stopper = std::thread::spawn(move || moat.stop());
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(raw::status(&text), 200, "{text}");
    assert!(text.contains("\"StatusCode\":0"), "{text}");
    stopper.join().unwrap();
}

#[test]
fn shutdown_closes_streams_after_the_grace_period() {
    let moat = Moat::start_with(MoatOptions {
        limits_yaml: Some("  shutdown_grace: 1s\n".into()),
        ..Default::default()
    });
    let bundle = pki().client("alice", "admin");
    // An endless stream: events never end by themselves.
    let mut tls = raw::connect(moat.addr, &bundle).unwrap();
    tls.write_all(b"GET /v1.41/events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    tls.flush().unwrap();
    let mut first = [0u8; 12];
    tls.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        moat.stop();
        let _ = tx.send(());
    });
    // A hang guard, not a timing assertion: stop() must return at all.
    rx.recv_timeout(Duration::from_secs(60))
        .expect("moat did not shut down");
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest);
}

#[test]
fn connections_beyond_max_connections_wait_until_one_closes() {
    let moat = Moat::start_with(MoatOptions {
        // One identity may hold all of them here (by default it may hold
        // half): this is about the global limit.
        limits_yaml: Some(
            "  max_connections: 2\n  shutdown_grace: 2s\n  identity:\n    max_connections: 2\n"
                .into(),
        ),
        ..Default::default()
    });
    let bundle = pki().client("alice", "admin");
    let ping = b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = raw::connect(moat.addr, &bundle).unwrap();
        c.write_all(ping).unwrap();
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        held.push(c);
    }
    // The third connection is accepted by the kernel but not served.
    let third = std::thread::spawn(move || {
        let mut c = raw::connect(moat.addr, &bundle).unwrap();
        c.write_all(ping).unwrap();
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap();
        head
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !third.is_finished(),
        "a third connection was served while two were open"
    );
    drop(held.pop());
    let head = third.join().unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    let moat = Moat::start_with(MoatOptions {
        limits_yaml: Some("  idle_timeout: 1s\n  shutdown_grace: 2s\n".into()),
        ..Default::default()
    });
    let bundle = pki().client("alice", "admin");
    let mut c = raw::connect(moat.addr, &bundle).unwrap();
    c.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Read the whole first response, then nothing more arrives: moat must
    // close the idle connection by itself (read_to_end returns).
    let mut all = Vec::new();
    let r = c.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        r.is_ok() || matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "the connection was not closed by moat: {r:?}"
    );
}

/// Regression: after a request with a body the connection is not parked,
/// and the idle timeout lived only in the parked state, so such a
/// connection stayed open past `limits.idle_timeout`, holding a connection
/// slot until hyper's `header_read_timeout` ended it.
#[test]
fn idle_timeout_closes_a_connection_whose_last_request_had_a_body() {
    // header_read_timeout longer than the client's 30 s read timeout, so
    // that only the idle timeout can close the connection in time.
    let moat = Moat::start_with(MoatOptions {
        limits_yaml: Some(
            "  idle_timeout: 1s\n  header_read_timeout: 60s\n  shutdown_grace: 2s\n".into(),
        ),
        ..Default::default()
    });
    let bundle = pki().client("alice", "admin");
    let mut c = raw::connect(moat.addr, &bundle).unwrap();
    let body = r#"{"Image":"moat-test/no-such-image:1"}"#;
    let req = format!(
        "POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut reader = std::io::BufReader::new(&mut c);
    let resp = raw::read_response(&mut reader).unwrap();
    // The engine answered (no such image): the body was read, the
    // connection stays open for keep-alive.
    assert_eq!(resp.status, 404, "{}", resp.body);
    // Then nothing more is sent: moat must close it by itself, well before
    // the client's 30 s read timeout.
    let mut rest = Vec::new();
    let r = reader.read_to_end(&mut rest);
    assert!(
        r.is_ok() || matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "the idle connection was not closed by moat: {r:?}"
    );
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

#[test]
fn a_client_that_never_finishes_its_handshake_is_cut_off() {
    let moat = Moat::start_with(MoatOptions {
        limits_yaml: Some("  handshake_timeout: 1s\n  shutdown_grace: 2s\n".into()),
        ..Default::default()
    });
    // TCP only: no ClientHello is ever sent.
    let mut tcp = std::net::TcpStream::connect(moat.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 64];
    // moat closes the connection by itself (EOF), long before the guard.
    let n = tcp
        .read(&mut buf)
        .expect("moat should close the connection, not leave it open");
    assert_eq!(n, 0, "expected EOF, got {n} bytes");
}

/// Waits (bounded) until `moat_connections_parked` is `want`.
fn until_parked(moat: &Moat, want: f64) {
    for _ in 0..200 {
        if crate::audit::sample(&crate::audit::scrape(moat), "moat_connections_parked") == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("moat_connections_parked never became {want}");
}

#[test]
fn a_parked_keep_alive_connection_serves_its_next_requests() {
    let moat = Moat::start();
    let bundle = pki().client("alice", "admin");
    let mut c = std::io::BufReader::new(raw::connect(moat.addr, &bundle).unwrap());
    let ping = b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n";
    for _ in 0..3 {
        c.get_mut().write_all(ping).unwrap();
        let resp = raw::read_response(&mut c).unwrap();
        assert_eq!((resp.status, resp.body.as_str()), (200, "OK"));
        // Answered and idle: parked, with no HTTP buffers held.
        until_parked(&moat, 1.0);
    }
    // A head split across the park, then two pipelined requests.
    c.get_mut().write_all(b"GET /_pi").unwrap();
    c.get_mut().flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    c.get_mut()
        .write_all(b"ng HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(raw::read_response(&mut c).unwrap().body, "OK");
    c.get_mut()
        .write_all(
            b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\nGET /v1.41/version HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .unwrap();
    assert_eq!(raw::read_response(&mut c).unwrap().body, "OK");
    let version = raw::read_response(&mut c).unwrap();
    assert!(version.body.contains("\"ApiVersion\""), "{}", version.body);
    until_parked(&moat, 1.0);
    drop(c);
    until_parked(&moat, 0.0);
    // Every request on that connection was audited.
    let pings = moat
        .audit_records()
        .iter()
        .filter(|r| r["stage"] == "complete" && r["request"]["operation"] == "SystemPing")
        .count();
    assert_eq!(pings, 5);
}

#[test]
fn after_a_request_with_a_body_the_connection_is_not_parked() {
    // hyper may leave a refused body unread; parking then could take body
    // bytes for a request. The body here is a whole HTTP request.
    let moat = Moat::start();
    let bundle = pki().client("alice", "admin");
    let mut c = raw::connect(moat.addr, &bundle).unwrap();
    let inner = "GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n";
    let req = format!(
        "POST /v1.41/no/such/endpoint HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{inner}",
        inner.len()
    );
    c.write_all(req.as_bytes()).unwrap();
    let resp = raw::read_response(&mut std::io::BufReader::new(&mut c)).unwrap();
    assert!((400..500).contains(&resp.status), "{}", resp.status);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        crate::audit::sample(&crate::audit::scrape(&moat), "moat_connections_parked"),
        0.0
    );
    // Whatever moat does with the connection, the body is never served as
    // a request of its own (it would have been by now).
    std::thread::sleep(Duration::from_millis(500));
    let pings = moat
        .audit_records()
        .iter()
        .filter(|r| r["request"]["operation"] == "SystemPing")
        .count();
    assert_eq!(pings, 0);
}
