//! Revocation covers the chain (issue 19): with a two-level PKI built here
//! (rcgen), a client under an intermediate that the root's CRL revokes is
//! refused on new connections and its open connection is closed on the CRL
//! reload; a CA of the chain without a CRL in `tls.crl` refuses its clients.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::support::pki::{crl, replace_file};
use crate::support::{pki, raw, tempdir, Bundle, Moat, MoatOptions};

fn ping_ok(moat: &Moat, bundle: &Bundle) -> bool {
    raw::exchange(
        moat.addr,
        bundle,
        b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n",
    )
    .map(|r| raw::status(&r) == 200)
    .unwrap_or(false)
}

/// Waits (10 s hang guard: the test fails only if it never happens) for
/// `cond`.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric(moat: &Moat, line_start: &str) -> f64 {
    let addr = moat.metrics_addr.expect("metrics listener");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    eprintln!(
        "{}",
        text.lines()
            .filter(|l| l.contains("revoked"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn revoking_an_intermediate_refuses_its_clients_and_closes_their_connections() {
    let p = pki();
    let dir = tempdir("moat-chain-");
    let two = p.two_level(&dir);
    let crl_file = dir.join("crl.pem");

    // The root's CRL only: the intermediate's clients have no known status.
    replace_file(&crl_file, &crl(&two.root, &[]));
    let moat = Moat::start_with(MoatOptions {
        tls_yaml: Some(p.tls_yaml_with(&two.root_pem, &crl_file)),
        ..Default::default()
    });
    assert!(
        !ping_ok(&moat, &two.leaf),
        "a chain with a CA whose CRL moat lacks must be refused"
    );

    // Both CRLs: accepted.
    replace_file(
        &crl_file,
        &format!("{}{}", crl(&two.root, &[]), crl(&two.inter, &[])),
    );
    eventually("accepted once the intermediate's CRL is in force", || {
        ping_ok(&moat, &two.leaf)
    });

    // An open keep-alive connection through the intermediate.
    let mut open = raw::connect(moat.addr, &two.leaf).unwrap();
    open.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        .unwrap();
    open.flush().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&got).contains("OK") {
        let n = open.read(&mut buf).unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(raw::status(&String::from_utf8_lossy(&got)), 200);

    // The root revokes the intermediate (the leaf itself is on no CRL).
    replace_file(
        &crl_file,
        &format!(
            "{}{}",
            crl(&two.root, &[&two.inter_serial]),
            crl(&two.inter, &[])
        ),
    );
    // New handshakes are refused, and counted as refused for the
    // intermediate (a ping that completed its handshake just before the
    // reload is closed by the sweep instead: keep trying).
    let refused_at_handshake = || {
        metric(
            &moat,
            "moat_revoked_certificates_total{position=\"intermediate\",at=\"handshake\"}",
        )
    };
    eventually("new handshakes refused as revoked", || {
        !ping_ok(&moat, &two.leaf) && refused_at_handshake() >= 1.0
    });
    assert!(!ping_ok(&moat, &two.leaf));

    // The open connection was closed by that reload (5 s hang guard).
    open.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    match open.read(&mut buf) {
        Ok(0) => {}
        Err(e)
            if e.kind() != std::io::ErrorKind::WouldBlock
                && e.kind() != std::io::ErrorKind::TimedOut => {}
        other => {
            panic!("the open connection under a revoked intermediate is still usable: {other:?}")
        }
    }

    // The metrics say which certificate of the chain was revoked: the
    // intermediate, never the leaf (which no CRL lists).
    assert!(
        metric(
            &moat,
            "moat_revoked_certificates_total{position=\"intermediate\",at=\"open_connection\"}"
        ) >= 1.0
    );
    for at in ["handshake", "open_connection"] {
        assert_eq!(
            metric(
                &moat,
                &format!("moat_revoked_certificates_total{{position=\"leaf\",at=\"{at}\"}}")
            ),
            0.0
        );
    }
    // The audit says it too: a Connection record naming the intermediate.
    let inter_serial = moat::identity::serial_hex(two.inter_serial.as_ref());
    let records = moat.audit_records_once(|r| r["request"]["operation"] == "Connection");
    let closed: Vec<_> = records
        .iter()
        .filter(|r| r["request"]["operation"] == "Connection")
        .collect();
    assert!(!closed.is_empty());
    for r in closed {
        let reason = r["decision"]["reasons"][0].as_str().unwrap();
        assert!(
            reason.contains("the intermediate CA certificate at depth 1")
                && reason.contains(&inter_serial)
                && reason.contains("test intermediate CA"),
            "{reason}"
        );
        assert_eq!(r["user"]["name"], "dana", "{r}");
        assert_eq!(r["decision"]["allow"], false);
    }
    let _ = two.leaf_serial;
}
