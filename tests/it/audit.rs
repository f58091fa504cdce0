//! The audit trail and monitoring (issue 5), end to end: real docker CLI
//! sessions leave exactly the expected records, the chain is checked by the
//! real `moat audit verify`, an unwritable log fails closed and recovers, the
//! metrics count what happened, `/readyz` follows the engine, and no record
//! is lost under load.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, image, pki, raw, unique, Docker, Moat, MoatOptions};

/// Calls `f` until it returns `Ok`, or panics with `what` and the last
/// `Err` after `limit` (a hang guard for asynchronous writes, not a timing
/// assertion).
fn poll<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => assert!(
                start.elapsed() < limit,
                "gave up waiting for {what}; last seen:\n{last}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A plain HTTP/1.1 GET (the metrics port has no TLS): status and body.
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics port");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (raw::status(&out), body)
}

pub(crate) fn scrape(moat: &Moat) -> String {
    let (status, body) = http_get(moat.metrics_addr.expect("metrics listener"), "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// The value of one series (`name` or `name{labels}` exactly as printed);
/// 0 when the series does not exist yet.
pub(crate) fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn requests_series(op: &str, decision: &str, code: u16) -> String {
    format!(r#"moat_requests_total{{operation="{op}",decision="{decision}",code="{code}"}}"#)
}

/// The `X-Moat-Request-Id` of a raw response.
fn request_id(resp: &str) -> String {
    resp.split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("x-moat-request-id")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no X-Moat-Request-Id in {resp}"))
}

fn name_of(r: &Value) -> &str {
    r["user"]["name"].as_str().unwrap_or("")
}

fn is_ping(op: &str) -> bool {
    matches!(op, "SystemPing" | "SystemPingHead")
}

/// One completed request as the session test compares it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Done {
    op: String,
    allow: bool,
    status: u64,
    hijacked: bool,
}

fn done(op: &str, allow: bool, status: u64, hijacked: bool) -> Done {
    Done {
        op: op.into(),
        allow,
        status,
        hijacked,
    }
}

/// Each user's completed requests (pings left out: the CLI's version
/// negotiation varies), sorted.
fn completed_by_user(records: &[Value]) -> BTreeMap<String, Vec<Done>> {
    let mut out: BTreeMap<String, Vec<Done>> = BTreeMap::new();
    for r in records.iter().filter(|r| r["stage"] == "complete") {
        let op = r["request"]["operation"].as_str().unwrap_or("");
        if is_ping(op) {
            continue;
        }
        out.entry(name_of(r).to_string()).or_default().push(done(
            op,
            r["decision"]["allow"].as_bool().unwrap_or(false),
            r["response"]["status"].as_u64().unwrap_or(0),
            r["response"]["hijacked"].as_bool().unwrap_or(false),
        ));
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// Every request has its records in order: `decision` then `complete` for
/// state-changing or denied requests, `complete` alone for allowed reads;
/// the two share the request fields and user.
fn assert_stages(records: &[Value]) {
    let mut by_id: HashMap<&str, Vec<&Value>> = HashMap::new();
    for r in records {
        by_id.entry(r["id"].as_str().unwrap()).or_default().push(r);
    }
    for (id, rs) in by_id {
        let stages: Vec<&str> = rs.iter().map(|r| r["stage"].as_str().unwrap()).collect();
        let last = rs.last().unwrap();
        let method = last["request"]["method"].as_str().unwrap();
        let readonly = method == "GET" || method == "HEAD";
        let allow = last["decision"]["allow"].as_bool().unwrap_or(false);
        let want: &[&str] = if readonly && allow {
            &["complete"]
        } else {
            &["decision", "complete"]
        };
        assert_eq!(stages, want, "records of request {id}: {rs:#?}");
        if rs.len() == 2 {
            assert_eq!(rs[0]["user"], rs[1]["user"], "{id}");
            assert_eq!(rs[0]["request"], rs[1]["request"], "{id}");
            assert_eq!(rs[0]["decision"], rs[1]["decision"], "{id}");
            assert!(rs[0]["response"].is_null(), "{id}");
        }
    }
}

#[test]
fn a_docker_session_yields_exactly_the_expected_records() {
    let moat = Moat::start();
    let p = pki();
    let img = image();
    let name = unique("audited");

    // alice runs a container attached, then one detached.
    let alice = Docker::new(&moat, &p.client("alice", "admin"));
    assert_eq!(alice.ok(&["run", "--rm", img, "echo", "hi"]), "hi\n");
    alice.ok(&["run", "-d", "--name", &name, img, "sleep", "120"]);
    // bob pipes into an exec.
    let bob = Docker::new(&moat, &p.client("bob", "admin"));
    let out = bob.run_stdin(&["exec", "-i", &name, "cat"], b"piped\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped\n");
    // dana, a developer, may not run privileged containers.
    let dana = Docker::new(&moat, &p.client("dana", "developer"));
    let err = dana.fails(&["run", "--privileged", "--rm", img, "true"]);
    assert!(
        err.contains("privileged containers are not allowed"),
        "{err}"
    );
    // carol lists, erin reads the logs.
    let carol = Docker::new(&moat, &p.client("carol", "admin"));
    assert!(carol.ok(&["ps"]).contains(&name));
    let erin = Docker::new(&moat, &p.client("erin", "admin"));
    erin.ok(&["logs", &name]);

    let expected: BTreeMap<String, Vec<Done>> = [
        (
            "alice",
            vec![
                done("ContainerAttach", true, 101, true),
                done("ContainerCreate", true, 201, false),
                done("ContainerCreate", true, 201, false),
                done("ContainerStart", true, 204, false),
                done("ContainerStart", true, 204, false),
                // `run -d` too opens a wait (condition=next-exit) and drops it.
                done("ContainerWait", true, 200, false),
                done("ContainerWait", true, 200, false),
            ],
        ),
        (
            "bob",
            vec![
                done("ContainerExec", true, 201, false),
                done("ContainerInspect", true, 200, false),
                done("ExecInspect", true, 200, false),
                done("ExecStart", true, 101, true),
            ],
        ),
        ("carol", vec![done("ContainerList", true, 200, false)]),
        ("dana", vec![done("ContainerCreate", false, 403, false)]),
        (
            "erin",
            vec![
                done("ContainerInspect", true, 200, false),
                done("ContainerLogs", true, 200, false),
            ],
        ),
    ]
    .into_iter()
    .map(|(u, mut v)| {
        v.sort();
        (u.to_string(), v)
    })
    .collect();
    // Completion records are written after the response has ended.
    let records = poll(
        "the session's completion records",
        Duration::from_secs(30),
        || {
            let r = moat.audit_records();
            let got = completed_by_user(&r);
            if got == expected {
                Ok(r)
            } else {
                Err(format!("{got:?}"))
            }
        },
    );
    assert_stages(&records);

    // Who they are, and the policy's message on the denial.
    for r in &records {
        let user = &r["user"];
        let group = if user["name"] == "dana" {
            "developer"
        } else {
            "admin"
        };
        assert_eq!(user["groups"], serde_json::json!([group]), "{r}");
        assert_eq!(user["auth_method"], "certificate", "{r}");
        assert!(user["cert_serial"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(r["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    let denial: Vec<&Value> = records
        .iter()
        .filter(|r| name_of(r) == "dana" && !is_ping(r["request"]["operation"].as_str().unwrap()))
        .collect();
    assert_eq!(denial.len(), 2, "{denial:#?}");
    for r in denial {
        let reasons = r["decision"]["reasons"].to_string();
        assert!(
            reasons.contains("developer policy: privileged containers are not allowed"),
            "{r}"
        );
    }

    // The ids are the ones clients receive.
    let body = format!(r#"{{"Image":"{img}","HostConfig":{{"Privileged":true}}}}"#);
    let req = format!(
        "POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = raw::exchange(moat.addr, &p.client("dana", "developer"), req.as_bytes()).unwrap();
    assert_eq!(raw::status(&resp), 403, "{resp}");
    let denied_id = request_id(&resp);
    let resp = raw::exchange(
        moat.addr,
        &p.client("alice", "admin"),
        b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(raw::status(&resp), 200, "{resp}");
    let ping_id = request_id(&resp);
    let records = poll("the raw requests' records", Duration::from_secs(30), || {
        let r = moat.audit_records();
        if r.iter().any(|r| r["id"] == ping_id.as_str()) {
            Ok(r)
        } else {
            Err(format!("no record with id {ping_id}"))
        }
    });
    let stages = |id: &str| -> Vec<(String, String, Value)> {
        records
            .iter()
            .filter(|r| r["id"] == id)
            .map(|r| {
                (
                    r["stage"].as_str().unwrap().to_string(),
                    r["request"]["operation"].as_str().unwrap().to_string(),
                    r["response"]["status"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(
        stages(&denied_id),
        [
            ("decision".into(), "ContainerCreate".into(), Value::Null),
            ("complete".into(), "ContainerCreate".into(), 403.into())
        ]
    );
    assert_eq!(
        stages(&ping_id),
        [("complete".into(), "SystemPing".into(), 200.into())]
    );
    alice.ok(&["rm", "-f", &name]);
}

#[test]
fn a_hijacked_session_counts_bytes_both_ways() {
    let moat = Moat::start();
    let d = Docker::new(&moat, &pki().client("hal", "admin"));
    let out = d.run_stdin(&["run", "-i", "--rm", image(), "cat"], b"hi\n");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    let session = poll(
        "the attach completion record",
        Duration::from_secs(30),
        || {
            moat.audit_records()
                .into_iter()
                .find(|r| {
                    r["stage"] == "complete" && r["request"]["operation"] == "ContainerAttach"
                })
                .ok_or_else(|| "no ContainerAttach completion yet".to_string())
        },
    );
    let resp = &session["response"];
    assert_eq!(resp["hijacked"], true, "{session}");
    assert_eq!(resp["status"], 101, "{session}");
    // "hi\n" went in; "hi\n" came back in a multiplexed frame after the 101.
    assert!(resp["bytes_in"].as_u64().unwrap() >= 3, "{session}");
    assert!(resp["bytes_out"].as_u64().unwrap() >= 3, "{session}");
    assert!(resp["duration_ms"].as_f64().unwrap() > 0.0, "{session}");
}

/// Runs the real `moat audit verify` binary.
fn verify(files: &[&Path]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_moat"))
        .arg("audit")
        .arg("verify")
        .args(files)
        .output()
        .expect("run moat audit verify");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn audit_verify_finds_the_tampered_line() {
    let moat = Moat::start();
    let d = Docker::new(&moat, &pki().client("vera", "admin"));
    let vol = unique("verified");
    d.ok(&["volume", "create", &vol]);
    d.ok(&["volume", "ls"]);
    d.ok(&["volume", "rm", &vol]);
    let file = moat.audit_file.clone();
    moat.stop(); // drains: every completion record is written
    let (ok, out) = verify(&[&file]);
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    let orig: Vec<String> = text.lines().map(String::from).collect();
    assert!(orig.len() >= 6, "{text}");
    assert!(
        out.contains(&format!("ok: {} records", orig.len())),
        "{out}"
    );

    type Tamper = fn(&mut Vec<String>);
    let cases: &[(&str, Tamper, usize)] = &[
        (
            "edit line 3",
            |l| l[2] = l[2].replacen("\"ts\":\"", "\"ts\":\"1", 1),
            3,
        ),
        (
            "edit the user on line 5",
            |l| l[4] = l[4].replace("vera", "eve"),
            5,
        ),
        ("delete line 3", |l| drop(l.remove(2)), 2),
        ("delete line 5", |l| drop(l.remove(4)), 4),
        ("swap lines 3 and 4", |l| l.swap(2, 3), 3),
        (
            "insert a copy of line 5 at 3",
            |l| {
                let x = l[4].clone();
                l.insert(2, x)
            },
            3,
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (what, tamper, line) in cases {
        let mut l = orig.clone();
        tamper(&mut l);
        assert_ne!(l, orig, "{what}: the tampering changed nothing");
        let copy = dir.path().join("audit.log");
        std::fs::write(
            &copy,
            l.iter().map(|x| format!("{x}\n")).collect::<String>(),
        )
        .unwrap();
        let (ok, out) = verify(&[&copy]);
        assert!(!ok, "{what}: verify passed:\n{out}");
        let want = format!("{}:{line}: ", copy.display());
        assert!(
            out.starts_with(&want),
            "{what}: expected {want}…, got {out}"
        );
    }
}

#[test]
fn an_unwritable_audit_log_refuses_changes_then_recovers_without_restart() {
    let moat = Moat::start();
    let d = Docker::new(&moat, &pki().client("uma", "admin"));
    d.ok(&["ps"]);
    let audit_dir = moat.audit_file.parent().unwrap().to_path_buf();
    let moved = audit_dir.with_extension("moved");
    // Root ignores permissions: a regular file where the directory was
    // makes every open fail (ENOTDIR).
    std::fs::rename(&audit_dir, &moved).unwrap();
    std::fs::write(&audit_dir, b"not a directory").unwrap();

    let vol = unique("unaudited");
    let name = unique("unaudited");
    let err = d.fails(&["volume", "create", &vol]);
    assert!(err.contains("audit"), "{err}");
    let err = d.fails(&["run", "-d", "--name", &name, image(), "sleep", "60"]);
    assert!(err.contains("audit log cannot be written"), "{err}");
    let body = r#"{"Name":"raw-unaudited"}"#;
    let req = format!(
        "POST /v1.41/volumes/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = raw::exchange(moat.addr, &pki().client("uma", "admin"), req.as_bytes()).unwrap();
    assert_eq!(raw::status(&resp), 503, "{resp}");
    assert!(resp.contains("audit"), "{resp}");
    // The path of the log is for operators, not for clients.
    assert!(!resp.contains(audit_dir.to_str().unwrap()), "{resp}");
    // Nothing reached the engine.
    let engine = support::engine();
    for (what, args) in [
        ("volume", ["volume", "inspect", vol.as_str()]),
        ("volume", ["volume", "inspect", "raw-unaudited"]),
        ("container", ["container", "inspect", name.as_str()]),
    ] {
        let out = engine.direct(&args);
        assert!(!out.status.success(), "the {what} {args:?} was created");
    }
    // /readyz says why.
    let (status, body) = http_get(moat.metrics_addr.unwrap(), "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("audit"), "{body}");

    // Writable again: no restart needed.
    std::fs::remove_file(&audit_dir).unwrap();
    d.ok(&["volume", "create", &vol]);
    d.ok(&["volume", "rm", &vol]);
    let (status, body) = http_get(moat.metrics_addr.unwrap(), "/readyz");
    assert_eq!(status, 200, "{body}");
    let file = moat.audit_file.clone();
    moat.stop();
    // The chain goes on from the moved file into the new one.
    let (ok, out) = verify(&[&moved.join("audit.log"), &file]);
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("VolumeCreate") && text.contains("VolumeDelete"));
    assert!(!text.contains("raw-unaudited"));
}

#[test]
fn metrics_count_the_requests_made() {
    let moat = Moat::start();
    let p = pki();
    let before = scrape(&moat);
    let n = 3;
    let alice = Docker::new(&moat, &p.client("alice", "admin"));
    for _ in 0..n {
        alice.ok(&["ps"]);
    }
    let dana = Docker::new(&moat, &p.client("dana", "developer"));
    dana.fails(&["run", "--privileged", "--rm", image(), "true"]);
    let _ = raw::exchange(
        moat.addr,
        &p.foreign_client("mallory"),
        b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );

    let list = requests_series("ContainerList", "allow", 200);
    let denied = requests_series("ContainerCreate", "deny", 403);
    let tls = "moat_tls_handshake_failures_total";
    let want = [
        (list.as_str(), n as f64),
        (denied.as_str(), 1.0),
        (tls, 1.0),
    ];
    let delta = |after: &str| -> Vec<(String, f64)> {
        want.iter()
            .map(|(s, _)| (s.to_string(), sample(after, s) - sample(&before, s)))
            .collect()
    };
    let expected: Vec<(String, f64)> = want.iter().map(|(s, v)| (s.to_string(), *v)).collect();
    // Requests are counted when their response has ended.
    let after = poll("the counters", Duration::from_secs(30), || {
        let after = scrape(&moat);
        if delta(&after) == expected {
            Ok(after)
        } else {
            Err(format!("{:?}", delta(&after)))
        }
    });
    // Every audit line written is counted, and nothing failed.
    poll("moat_audit_records_total", Duration::from_secs(30), || {
        let lines = moat.audit_records().len() as f64;
        let counted = sample(&scrape(&moat), "moat_audit_records_total");
        if counted == lines {
            Ok(())
        } else {
            Err(format!("{counted} counted, {lines} lines"))
        }
    });
    assert_eq!(sample(&after, "moat_audit_write_errors_total"), 0.0);
    assert_eq!(sample(&after, "moat_engine_up"), 1.0);
    assert!(after.contains("moat_build_info{version=\""), "{after}");
}

#[test]
fn metrics_count_authentication_failures() {
    let p = pki();
    let moat = Moat::start_with(MoatOptions {
        tls_yaml: Some(p.tls_yaml_optional()),
        ..Default::default()
    });
    let series = r#"moat_auth_failures_total{reason="missing"}"#;
    // Authentication comes before classification.
    let refused = requests_series("Unclassified", "error", 401);
    let before = scrape(&moat);
    for _ in 0..2 {
        let resp = raw::exchange(
            moat.addr,
            &p.ca_only("anonymous"),
            b"GET /v1.41/containers/json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        assert_eq!(raw::status(&resp), 401, "{resp}");
    }
    let after = poll("the 401 counters", Duration::from_secs(30), || {
        let after = scrape(&moat);
        let d = (
            sample(&after, series) - sample(&before, series),
            sample(&after, &refused) - sample(&before, &refused),
        );
        if d == (2.0, 2.0) {
            Ok(after)
        } else {
            Err(format!("{d:?}\n{after}"))
        }
    });
    assert_eq!(sample(&after, "moat_tls_handshake_failures_total"), 0.0);
    // And each 401 left a record without a user.
    poll("the 401 records", Duration::from_secs(30), || {
        let r = moat.audit_records();
        let n = r
            .iter()
            .filter(|r| r["user"].is_null() && r["response"]["status"] == 401)
            .count();
        if n == 2 {
            Ok(())
        } else {
            Err(format!("{n} records: {r:#?}"))
        }
    });
}

#[test]
/// Also the regression test for a bug: `/readyz` pinged over the pooled
/// engine connection, which outlives the socket path, so it stayed ready
/// while every new connection (each hijack, for one) failed.
fn readyz_follows_the_engine_not_a_pooled_connection_and_healthz_stays_up() {
    let dir = tempfile::Builder::new()
        .prefix("moat-ready-")
        .tempdir_in("/tmp")
        .unwrap();
    let socket = dir.path().join("engine.sock");
    let shared = support::engine();
    std::os::unix::fs::symlink(&shared.socket, &socket).unwrap();
    let moat = Moat::start_with(MoatOptions {
        engine_socket: Some(socket.clone()),
        ..Default::default()
    });
    let metrics = moat.metrics_addr.unwrap();
    let wait_for = |code: u16| {
        poll(&format!("/readyz {code}"), Duration::from_secs(30), || {
            let (status, body) = http_get(metrics, "/readyz");
            assert_eq!(http_get(metrics, "/healthz").0, 200);
            if status == code {
                Ok(body)
            } else {
                Err(format!("{status} {body}"))
            }
        })
    };
    wait_for(200);
    // A request leaves a keep-alive connection to the engine in moat's pool.
    Docker::new(&moat, &pki().client("rita", "admin")).ok(&["ps"]);
    // The engine goes away.
    std::fs::remove_file(&socket).unwrap();
    let body = wait_for(503);
    assert!(body.contains("engine"), "{body}");
    assert!(
        !body.contains("policy") && !body.contains("audit"),
        "{body}"
    );
    assert_eq!(sample(&scrape(&moat), "moat_engine_up"), 0.0);
    // It comes back.
    std::os::unix::fs::symlink(&shared.socket, &socket).unwrap();
    wait_for(200);
    assert_eq!(sample(&scrape(&moat), "moat_engine_up"), 1.0);
}

#[test]
fn no_record_is_lost_under_200_concurrent_clients() {
    const CLIENTS: usize = 200;
    let moat = Moat::start();
    let bundle = pki().client("loader", "admin");
    // Every client connects first, then all send for the same 10 s.
    let ready = std::sync::Arc::new(std::sync::Barrier::new(CLIENTS + 1));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (bundle, ready, stop, addr) =
                (bundle.clone(), ready.clone(), stop.clone(), moat.addr);
            std::thread::spawn(move || -> Result<Vec<(u16, String)>, String> {
                let tls = raw::connect(addr, &bundle);
                ready.wait();
                let mut conn = BufReader::new(tls.map_err(|e| format!("client {i}: {e}"))?);
                let path = if i % 2 == 0 {
                    "/_ping"
                } else {
                    "/v1.41/containers/json"
                };
                let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
                let mut got = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    conn.get_mut()
                        .write_all(req.as_bytes())
                        .map_err(|e| format!("client {i} write: {e}"))?;
                    let resp = raw::read_response(&mut conn)
                        .map_err(|e| format!("client {i} read: {e}"))?;
                    got.push((resp.status, resp.request_id));
                }
                Ok(got)
            })
        })
        .collect();
    ready.wait();
    std::thread::sleep(Duration::from_secs(10));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut responses: Vec<(u16, String)> = Vec::new();
    for t in threads {
        responses.extend(t.join().unwrap().unwrap());
    }
    assert!(responses.len() >= CLIENTS, "{} responses", responses.len());
    let ids: HashSet<&str> = responses.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len(), responses.len(), "every response has its own id");
    let statuses: HashSet<u16> = responses.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, HashSet::from([200]), "all were answered");

    // The completion records land asynchronously: wait for the count to
    // reach the responses (it must not pass them either).
    let count = || -> usize {
        std::fs::read_to_string(&moat.audit_file)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(r#""stage":"complete""#) && l.contains(r#""name":"loader""#))
            .count()
    };
    poll("every completion record", Duration::from_secs(120), || {
        let n = count();
        if n >= responses.len() {
            Ok(())
        } else {
            Err(format!("{n} records for {} responses", responses.len()))
        }
    });
    let file = moat.audit_file.clone();
    moat.stop();
    let records: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r["stage"] == "complete" && name_of(r) == "loader")
        .collect();
    assert_eq!(records.len(), responses.len());
    let mut per_op: HashMap<&str, usize> = HashMap::new();
    for r in &records {
        assert!(ids.contains(r["id"].as_str().unwrap()), "{r}");
        *per_op
            .entry(r["request"]["operation"].as_str().unwrap())
            .or_default() += 1;
    }
    assert_eq!(
        per_op.keys().copied().collect::<HashSet<_>>(),
        HashSet::from(["SystemPing", "ContainerList"])
    );
    let (ok, out) = verify(&[&file]);
    assert!(ok, "{out}");
}
