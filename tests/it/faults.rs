//! Fault injection the real engine cannot give: an engine that dies in the
//! middle of a response, or before answering. A fake engine on a unix socket
//! plays that part; everything else is real.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use crate::support::{pki, raw, Docker, Moat, MoatOptions};

/// The answers to the version lookup moat makes before its first request.
const VERSION: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 44\r\n\r\n{\"ApiVersion\":\"1.41\",\"MinAPIVersion\":\"1.12\"}";
const INFO: &[u8] =
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n{\"CgroupVersion\":\"1\"}";

/// The answer to moat's lookup of the container `x` (the resolve stage).
const CONTAINER_X: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 85\r\n\r\n{\"Id\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"Name\":\"/x\"}";

/// A fake engine that answers each connection with `script` and closes
/// (after answering moat's `GET /version` and `GET /info` as dockerd 20.10,
/// and its lookup of the container `x`).
fn fake_engine(script: &'static [u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("fake.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
            let n = conn.read(&mut buf).unwrap_or(0);
            let answer = match &buf[..n] {
                r if r.starts_with(b"GET /version ") => VERSION,
                r if r.starts_with(b"GET /info ") => INFO,
                r if r.starts_with(b"GET /containers/x/json ") => CONTAINER_X,
                _ => script,
            };
            let _ = conn.write_all(answer);
            // Dropping the stream is the engine dying.
        }
    });
    (dir, socket)
}

#[test]
fn engine_dying_before_answering_is_a_502_and_moat_keeps_serving() {
    let (_dir, socket) = fake_engine(b"");
    let moat = Moat::start_with(MoatOptions {
        engine_socket: Some(socket),
        ..Default::default()
    });
    let d = Docker::new(&moat, &pki().client("alice", "admin"));
    let err = d.fails(&["ps"]);
    assert!(err.contains("Error response from daemon"), "{err}");
    assert!(err.contains("engine"), "{err}");
    // moat is still there.
    let again = d.fails(&["ps"]);
    assert!(again.contains("engine"), "{again}");
}

#[test]
fn engine_dying_mid_stream_truncates_visibly() {
    let (_dir, socket) = fake_engine(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    );
    let moat = Moat::start_with(MoatOptions {
        engine_socket: Some(socket),
        ..Default::default()
    });
    let bundle = pki().client("alice", "admin");
    let resp = raw::exchange(
        moat.addr,
        &bundle,
        b"GET /v1.41/containers/x/logs?follow=1&stdout=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap_or_default();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("hello"), "{resp}");
    // The client must not see a clean end of the chunked body.
    assert!(
        !resp.ends_with("0\r\n\r\n"),
        "a truncated stream looked complete: {resp:?}"
    );
}
