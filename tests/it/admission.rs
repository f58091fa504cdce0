//! Admission (issue 16): no unauthenticated client can lock others out, and
//! no identity can starve the rest.
//!
//! Slowloris attackers hold `limits.max_connections` worth of connections at
//! the TLS handshake or in the request head, reconnecting whenever moat
//! closes one, while clients with a valid certificate and with a valid token
//! must keep being served. Per-identity limits: connections, streams and the
//! request rate, through raw HTTP and the docker CLI.

use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moat::identity::token::{sign, SigningKey, TokenRequest};
use rustls::pki_types::ServerName;

use crate::audit::{sample, scrape};
use crate::support::{pki, raw, tempdir, Bundle, Docker, Moat, MoatOptions};

/// The attackers' address: another host, as far as moat can tell.
const ATTACKER: [u8; 4] = [127, 0, 0, 2];
const MAX_CONNECTIONS: usize = 32;

/// A token signing key, and the `auth:` section that makes moat accept it.
struct Tokens {
    key: SigningKey,
    yaml: String,
}

impl Tokens {
    fn new() -> Tokens {
        let dir = tempdir("moat-admission-tokens-");
        let (private, public) = (dir.join("key.pem"), dir.join("key.pub.pem"));
        moat::pki::write_token_key(&private, &public).unwrap();
        Tokens {
            key: SigningKey::load(&private, None).unwrap(),
            yaml: format!(
                "auth:\n  tokens:\n    issuer: it\n    audience: moat\n    keys:\n      - file: {}\n        algorithm: ES256\n",
                public.display()
            ),
        }
    }

    fn bearer(&self, sub: &str) -> String {
        let claims = TokenRequest {
            subject: sub.into(),
            groups: vec!["admin".into()],
            scopes: vec![],
            ttl: Duration::from_secs(600),
            issuer: Some("it".into()),
            audience: Some("moat".into()),
        }
        .claims(time::OffsetDateTime::now_utc().unix_timestamp());
        format!("Bearer {}", sign(&self.key, &claims).unwrap())
    }
}

fn start(optional: bool, limits: &str, tokens: &Tokens) -> Moat {
    Moat::start_with(MoatOptions {
        tls_yaml: optional.then(|| pki().tls_yaml_optional()),
        limits_yaml: Some(format!(
            "  max_connections: {MAX_CONNECTIONS}\n  shutdown_grace: 2s\n{limits}"
        )),
        extra_yaml: tokens.yaml.clone(),
        ..Default::default()
    })
}

/// A TCP connection to `addr` from `source`.
fn connect_from(source: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(source, 0).into())?;
    sock.connect(&addr.into())?;
    let tcp: TcpStream = sock.into();
    // Patient while moat answers (a slowloris attacker waits as long as it
    // is let), and polling the stop flag while it holds the connection.
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(tcp)
}

#[derive(Clone, Copy, Debug)]
enum Stage {
    /// TCP only: no ClientHello, ever.
    Handshake,
    /// TLS without a certificate, then the first line of a request head.
    Head,
    /// With a valid certificate (user `mallory`): a whole head, then a
    /// JSON body that never comes.
    Body,
}

/// Attackers holding connections and reconnecting whenever one closes.
struct Attack {
    stop: Arc<AtomicBool>,
    opened: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Attack {
    fn start(addr: SocketAddr, stage: Stage, n: usize) -> Attack {
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicU64::new(0));
        let nocert = pki().ca_only("attacker");
        let mallory = pki().client("mallory", "admin");
        let threads = (0..n)
            .map(|_| {
                let (stop, opened) = (stop.clone(), opened.clone());
                let bundle = match stage {
                    Stage::Body => mallory.clone(),
                    _ => nocert.clone(),
                };
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(tcp) = connect_from(IpAddr::from(ATTACKER), addr) {
                            opened.fetch_add(1, Ordering::Relaxed);
                            hold(tcp, stage, &bundle, &stop);
                        }
                        // Reconnect at once, but for a pause that keeps the
                        // test's own CPU use modest on a shared machine.
                        std::thread::sleep(Duration::from_millis(50));
                    }
                })
            })
            .collect();
        Attack {
            stop,
            opened,
            threads,
        }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        self.opened.load(Ordering::Relaxed)
    }
}

/// One attacking connection, held until moat closes it (or the attack stops).
fn hold(tcp: TcpStream, stage: Stage, bundle: &Bundle, stop: &AtomicBool) {
    let mut buf = [0u8; 256];
    let mut read_until_closed = |r: &mut dyn Read, tcp: &TcpStream| {
        let _ = tcp.set_read_timeout(Some(Duration::from_millis(200)));
        while !stop.load(Ordering::Relaxed) {
            match r.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
    };
    match stage {
        Stage::Handshake => {
            let mut reader = &tcp;
            read_until_closed(&mut reader, &tcp);
        }
        Stage::Head | Stage::Body => {
            let Ok(conn) = rustls::ClientConnection::new(
                raw::client_config(bundle),
                ServerName::try_from("localhost").unwrap().to_owned(),
            ) else {
                return;
            };
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let partial: &[u8] = match stage {
                Stage::Head => b"GET /_ping HTTP/1.1\r\nHost: x\r\n",
                _ => b"POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"Ima",
            };
            while tls.conn.is_handshaking() {
                if tls.conn.complete_io(&mut tls.sock).is_err() {
                    return;
                }
            }
            if tls.write_all(partial).and_then(|_| tls.flush()).is_err() {
                return;
            }
            let tcp = tls.sock.try_clone();
            if let Ok(tcp) = tcp {
                read_until_closed(&mut tls, &tcp);
            }
        }
    }
}

/// Connects (from 127.0.0.1), sends `GET /_ping` and reads the answer;
/// returns the status and how long all of it took.
fn ping(addr: SocketAddr, bundle: &Bundle, authorization: Option<&str>) -> (u16, Duration) {
    let started = Instant::now();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!("GET /_ping HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    let status = match raw::connect(addr, bundle) {
        Ok(mut tls) => {
            tls.write_all(req.as_bytes()).unwrap();
            raw::read_response(&mut BufReader::new(tls))
                .map(|r| r.status)
                .unwrap_or(0)
        }
        Err(_) => 0,
    };
    (status, started.elapsed())
}

/// Waits (bounded) until the attack fills the pre-authentication budget
/// and moat is evicting.
fn until_attack_in_force(moat: &Moat, stage: Stage) {
    let budget = (MAX_CONNECTIONS / 2) as f64;
    for _ in 0..300 {
        let m = scrape(moat);
        let full = match stage {
            Stage::Body => sample(&m, r#"moat_limit_rejections_total{limit="connections"}"#) > 0.0,
            _ => {
                sample(&m, "moat_unauthenticated_connections") >= budget - 1.0
                    && sample(&m, "moat_unauthenticated_evictions_total") > 0.0
            }
        };
        if full {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the attack never filled the budget:\n{}", scrape(moat));
}

/// How long an attacker could hold a slot before moat times it out here:
/// long, so that only eviction (not a timeout) can let a client in.
const ATTACKER_HOLD: &str =
    "  handshake_timeout: 60s\n  header_read_timeout: 60s\n  body_read_timeout: 60s\n";

/// A locked-out client would wait for an attacker's slot, that is
/// [`ATTACKER_HOLD`]; a served one waits for one eviction (the grace,
/// 250 ms). This bound tells the two apart with room for a loaded machine
/// (the issue's 1 s is what an idle one measures: see the printed slowest
/// request); it is a lockout detector, not a benchmark.
const NOT_LOCKED_OUT: Duration = Duration::from_secs(10);

/// The issue's acceptance test: with max_connections worth of attackers at
/// `stage`, a certificate client and a token client are each served, five
/// times over, while the attack goes on.
fn legitimate_clients_are_served_during(stage: Stage, optional: bool) {
    let tokens = Tokens::new();
    let moat = start(optional, ATTACKER_HOLD, &tokens);
    let attack = Attack::start(moat.addr, stage, MAX_CONNECTIONS);
    until_attack_in_force(&moat, stage);
    let alice = pki().client("alice", "admin");
    // Without client_cert: optional a token client still needs a
    // certificate (naming the token's user).
    let token_client = if optional {
        pki().ca_only("ci")
    } else {
        pki().client("ci-bot", "admin")
    };
    let bearer = tokens.bearer("ci-bot");
    let mut slowest = Duration::ZERO;
    for round in 0..5 {
        for (who, bundle, auth) in [
            ("certificate", &alice, None),
            ("token", &token_client, Some(bearer.as_str())),
        ] {
            let (status, took) = ping(moat.addr, bundle, auth);
            assert_eq!(
                status, 200,
                "{stage:?}: the {who} client was refused (round {round})"
            );
            assert!(
                took < NOT_LOCKED_OUT,
                "{stage:?}: the {who} client took {took:?} (round {round}): locked out"
            );
            slowest = slowest.max(took);
        }
    }
    let metrics = scrape(&moat);
    let opened = attack.stop();
    eprintln!("{stage:?} (optional: {optional}): slowest legitimate request {slowest:?}; {opened} attacking connections");
    match stage {
        Stage::Body => assert!(
            sample(
                &metrics,
                r#"moat_limit_rejections_total{limit="connections"}"#
            ) > 0.0
        ),
        _ => assert!(sample(&metrics, "moat_unauthenticated_evictions_total") > 0.0),
    }
}

#[test]
fn slowloris_at_the_handshake_does_not_lock_out_clients() {
    legitimate_clients_are_served_during(Stage::Handshake, false);
}

#[test]
fn slowloris_at_the_handshake_does_not_lock_out_clients_when_certificates_are_optional() {
    legitimate_clients_are_served_during(Stage::Handshake, true);
}

#[test]
fn slowloris_in_the_head_does_not_lock_out_clients_when_certificates_are_optional() {
    legitimate_clients_are_served_during(Stage::Head, true);
}

#[test]
fn slowloris_in_an_inspected_body_by_an_identity_does_not_lock_out_others() {
    legitimate_clients_are_served_during(Stage::Body, true);
}

#[test]
fn one_identity_at_its_connection_limit_cannot_stop_another() {
    let tokens = Tokens::new();
    let moat = start(false, "  identity:\n    max_connections: 4\n", &tokens);
    let mallory = pki().client("mallory", "admin");
    let ping_req = b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = BufReader::new(raw::connect(moat.addr, &mallory).unwrap());
        c.get_mut().write_all(ping_req).unwrap();
        assert_eq!(raw::read_response(&mut c).unwrap().status, 200);
        held.push(c);
    }
    // Her fifth connection is closed right after the handshake.
    let (status, _) = ping(moat.addr, &mallory, None);
    assert_eq!(
        status, 0,
        "a connection over the identity's limit was served"
    );
    // Another identity works, through the docker CLI as well.
    let bob = pki().client("bob", "admin");
    assert_eq!(ping(moat.addr, &bob, None).0, 200);
    Docker::new(&moat, &bob).ok(&["version"]);
    // Her open connections still work.
    for c in &mut held {
        c.get_mut().write_all(ping_req).unwrap();
        assert_eq!(raw::read_response(c).unwrap().status, 200);
    }
    // Logged, audited and counted by limit (not by user).
    let metrics = scrape(&moat);
    assert_eq!(
        sample(
            &metrics,
            r#"moat_limit_rejections_total{limit="connections"}"#
        ),
        1.0
    );
    assert!(!metrics.contains("mallory"));
    let refused: Vec<_> = moat
        .audit_records()
        .into_iter()
        .filter(|r| r["request"]["operation"] == "Connection")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["user"]["name"], "mallory");
    let reason = refused[0]["decision"]["reasons"][0].as_str().unwrap();
    assert!(
        reason.contains("limits.identity.max_connections"),
        "{reason}"
    );
}

/// Sends `n` pings on one keep-alive connection; returns the responses.
fn burst(moat: &Moat, bundle: &Bundle, n: usize) -> Vec<raw::Response> {
    let mut c = BufReader::new(raw::connect(moat.addr, bundle).unwrap());
    (0..n)
        .map(|_| {
            c.get_mut()
                .write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            raw::read_response(&mut c).unwrap()
        })
        .collect()
}

#[test]
fn a_burst_gets_exactly_the_expected_429s_and_the_docker_cli_says_why() {
    let tokens = Tokens::new();
    // One request per 100 s: nothing refills during the test.
    let moat = start(
        false,
        "  identity:\n    rate: 0.01\n    burst: 5\n  groups:\n    ci:\n      burst: 8\n",
        &tokens,
    );
    let dave = pki().client("dave", "admin");
    let statuses: Vec<u16> = burst(&moat, &dave, 12).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [[200; 5].as_slice(), &[429; 7]].concat());
    // A group override raises the burst for its members.
    let erin = pki().client("erin", "ci");
    let ok = burst(&moat, &erin, 12)
        .iter()
        .filter(|r| r.status == 200)
        .count();
    assert_eq!(ok, 8);
    // The refusal names the limit and how to raise it, and says when to retry.
    let mut c = raw::connect(moat.addr, &dave).unwrap();
    c.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw_resp = String::new();
    let _ = c.read_to_string(&mut raw_resp);
    assert_eq!(raw::status(&raw_resp), 429, "{raw_resp}");
    assert!(
        raw_resp.to_ascii_lowercase().contains("retry-after: 100"),
        "{raw_resp}"
    );
    assert!(raw_resp.contains("limits.identity.rate"), "{raw_resp}");
    // The docker CLI fails with that message, in one line.
    let stderr = Docker::new(&moat, &dave).fails(&["ps"]);
    assert!(
        stderr.contains("request rate limit exceeded for dave") && stderr.contains("limits.groups"),
        "{stderr}"
    );
    // Every refusal is audited and counted by limit. The counter moves when
    // the refusal is made, the completion record is queued once its response
    // has ended: wait for the records to catch up (no request is in flight).
    let counted = sample(
        &scrape(&moat),
        r#"moat_limit_rejections_total{limit="rate"}"#,
    );
    let audited_429s = || {
        moat.audit_records()
            .iter()
            .filter(|r| r["stage"] == "complete" && r["response"]["status"] == 429)
            .count()
    };
    let mut refused = audited_429s();
    for _ in 0..100 {
        if refused as f64 >= counted {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        refused = audited_429s();
    }
    assert_eq!(refused as f64, counted);
    // 7 of dave's burst, 4 of erin's, the raw one and the CLI's.
    assert!(refused > 7 + 4 + 1, "{refused}");
}

#[test]
fn streams_count_as_streams_not_against_the_rate() {
    let tokens = Tokens::new();
    let moat = start(
        false,
        "  identity:\n    rate: 0.01\n    burst: 2\n    max_streams: 2\n",
        &tokens,
    );
    let frank = pki().client("frank", "admin");
    let events = b"GET /v1.41/events HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut c = raw::connect(moat.addr, &frank).unwrap();
        c.write_all(events).unwrap();
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200");
        streams.push(c);
    }
    let mut c = BufReader::new(raw::connect(moat.addr, &frank).unwrap());
    c.get_mut().write_all(events).unwrap();
    let r = raw::read_response(&mut c).unwrap();
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("too many streaming sessions"), "{}", r.body);
    // The two streams took nothing from the bucket: the burst is whole.
    let statuses: Vec<u16> = burst(&moat, &frank, 3).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 200, 429]);
    // A stream that ends gives its place back.
    drop(streams.pop());
    let mut ok = false;
    for _ in 0..50 {
        let mut c = raw::connect(moat.addr, &frank).unwrap();
        c.write_all(events).unwrap();
        let mut head = [0u8; 12];
        c.read_exact(&mut head).unwrap();
        if &head == b"HTTP/1.1 200" {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok, "the ended stream's place never came back");
}

#[test]
fn a_token_connection_over_its_identitys_limit_gets_429_and_closes() {
    let tokens = Tokens::new();
    let moat = start(true, "  identity:\n    max_connections: 1\n", &tokens);
    let bundle = pki().ca_only("ci");
    let bearer = tokens.bearer("ci-bot");
    let ping = format!("GET /_ping HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\n\r\n");
    let mut first = BufReader::new(raw::connect(moat.addr, &bundle).unwrap());
    first.get_mut().write_all(ping.as_bytes()).unwrap();
    assert_eq!(raw::read_response(&mut first).unwrap().status, 200);
    // The identity is known only from the token: the second connection's
    // first request is refused, and the connection closes.
    let mut second = BufReader::new(raw::connect(moat.addr, &bundle).unwrap());
    second.get_mut().write_all(ping.as_bytes()).unwrap();
    let r = raw::read_response(&mut second).unwrap();
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.body.contains("too many open connections for ci-bot"),
        "{}",
        r.body
    );
    let mut rest = Vec::new();
    let end = second.read_to_end(&mut rest);
    assert!(
        end.is_ok() || matches!(end, Err(ref e) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "the connection stayed open: {end:?}"
    );
    assert!(rest.is_empty());
    // The first connection goes on.
    first.get_mut().write_all(ping.as_bytes()).unwrap();
    assert_eq!(raw::read_response(&mut first).unwrap().status, 200);
    assert_eq!(
        sample(
            &scrape(&moat),
            r#"moat_limit_rejections_total{limit="connections"}"#
        ),
        1.0
    );
}
