//! Identity (issue 3): bearer tokens sent by the stock docker CLI through
//! `HttpHeaders`, every way a token or a client can fail (401, nothing
//! reaches the engine), certificate revocation and server certificate
//! rotation without a restart, and the `moat certs` / `moat token` commands
//! run as a user would run them.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use moat::identity::token::{sign, SigningKey, TokenRequest};
use moat::pki::{InitOptions, IssueOptions, PkiPaths, RevokeTarget};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::support::{
    self, engine, image, pki, raw, tempdir, unique, Bundle, Docker, Moat, MoatOptions,
};

const ISSUER: &str = "moat-it";
const AUDIENCE: &str = "moat-gateway";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------- tokens

/// A token signing key pair on disk, an (initially empty) jti revocation
/// file, and moat configured to accept tokens from that key, with client
/// certificates optional.
struct TokenGateway {
    moat: Moat,
    key: SigningKey,
    private_key: PathBuf,
    revoked: PathBuf,
    dir: PathBuf,
}

impl TokenGateway {
    fn start(revoked_jtis: &[&str]) -> TokenGateway {
        let dir = tempdir("moat-tokens-");
        let private_key = dir.join("token-key.pem");
        let public_key = dir.join("token-key.pub.pem");
        moat::pki::write_token_key(&private_key, &public_key).unwrap();
        // An RSA key beside it, so HS256 keyed with an RSA public key (the
        // classic algorithm confusion) can be tried too.
        let rsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        std::fs::write(dir.join("rsa-key.pub.pem"), rsa.public_key_pem()).unwrap();
        let revoked = dir.join("revoked-jti.txt");
        let mut list = String::from("# revoked token ids\n");
        for j in revoked_jtis {
            list.push_str(j);
            list.push('\n');
        }
        std::fs::write(&revoked, list).unwrap();
        let p = pki();
        let moat = Moat::start_with(MoatOptions {
            tls_yaml: Some(p.tls_yaml_optional()),
            extra_yaml: format!(
                "auth:\n  tokens:\n    issuer: {ISSUER}\n    audience: {AUDIENCE}\n    keys:\n      - file: {}\n        algorithm: ES256\n      - file: {}\n        algorithm: RS256\n    leeway: 5s\n    max_ttl: 1h\n    revoked: {}\n",
                public_key.display(),
                dir.join("rsa-key.pub.pem").display(),
                revoked.display()
            ),
            ..Default::default()
        });
        TokenGateway {
            moat,
            key: SigningKey::load(&private_key, None).unwrap(),
            private_key,
            revoked,
            dir,
        }
    }

    /// Good claims for `sub` in group admin, valid for 10 minutes.
    fn claims(&self, sub: &str) -> Value {
        TokenRequest {
            subject: sub.into(),
            groups: vec!["admin".into()],
            scopes: vec![],
            ttl: Duration::from_secs(600),
            issuer: Some(ISSUER.into()),
            audience: Some(AUDIENCE.into()),
        }
        .claims(now())
    }

    fn token(&self, claims: &Value) -> String {
        sign(&self.key, claims).unwrap()
    }

    /// The docker CLI with only ca.pem in its cert path and `token` (if
    /// any) in `$DOCKER_CONFIG/config.json`.
    fn docker(&self, token: Option<&str>) -> Docker {
        let bundle = pki().ca_only(&unique("token-client"));
        self.docker_with(&bundle, token)
    }

    fn docker_with(&self, bundle: &Bundle, token: Option<&str>) -> Docker {
        let config = tempdir("moat-docker-config-");
        let mut cfg = json!({});
        if let Some(t) = token {
            cfg = json!({ "HttpHeaders": { "Authorization": format!("Bearer {t}") } });
        }
        std::fs::write(config.join("config.json"), cfg.to_string()).unwrap();
        Docker::new(&self.moat, bundle).with_config_dir(config)
    }
}

fn engine_has_container(name: &str) -> bool {
    let out = engine().direct(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(out.status.success(), "{}", text(&out).1);
    text(&out).0.lines().any(|l| l.trim() == name)
}

/// `docker run` with `docker`, which must be refused: it fails, says
/// `why`, and no container of that name exists on the engine afterwards.
fn refused_and_reaches_nothing(docker: &Docker, case: &str, why: &str) {
    let name = unique("refused");
    let out = docker.run(&["run", "--name", &name, image(), "echo", "reached"]);
    let (stdout, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "{case}: docker run succeeded: {stdout}"
    );
    assert!(!stdout.contains("reached"), "{case}: {stdout}");
    assert!(
        stderr.contains(why),
        "{case}: the docker CLI should say {why:?}, it said: {stderr}"
    );
    assert!(
        !engine_has_container(&name),
        "{case}: container {name} reached the engine"
    );
}

/// The status moat answers a raw `GET /containers/json` with.
fn raw_status(moat: &Moat, bundle: &Bundle, authorization: Option<&str>) -> (u16, String) {
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\n{auth}Connection: close\r\n\r\n"
    );
    let resp = raw::exchange(moat.addr, bundle, req.as_bytes()).unwrap();
    (raw::status(&resp), resp)
}

#[test]
fn token_client_with_only_ca_pem_runs_ps_run_stdin_and_exec() {
    let gw = TokenGateway::start(&[]);
    let claims = gw.claims("ci-bot");
    let jti = claims["jti"].as_str().unwrap().to_string();
    let d = gw.docker(Some(&gw.token(&claims)));

    d.ok(&["ps"]);
    let out = d.ok(&["run", "--rm", image(), "echo", "hello token"]);
    assert_eq!(out.trim(), "hello token");

    // Attach is hijacked: the header must reach it too.
    let out = d.run_stdin(&["run", "-i", "--rm", image(), "cat"], b"hi\n");
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(text(&out).0, "hi\n");

    let name = unique("token-exec");
    d.ok(&["run", "-d", "--name", &name, image(), "sleep", "60"]);
    let out = d.run_stdin(&["exec", "-i", &name, "cat"], b"piped\n");
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(text(&out).0, "piped\n");
    d.ok(&["rm", "-f", &name]);

    // The audit trail names the token's user and id.
    let records = gw.moat.audit_records();
    assert!(
        records.iter().any(|r| r["user"]["name"] == "ci-bot"
            && r["user"]["auth_method"] == "token"
            && r["user"]["token_id"] == jti.as_str()
            && r["user"]["groups"] == json!(["admin"])),
        "no audit record for the token user: {records:?}"
    );
}

#[test]
fn bad_tokens_and_no_credentials_get_401_and_reach_nothing() {
    let revoked = TokenRequest {
        subject: "revoked-bot".into(),
        groups: vec!["admin".into()],
        scopes: vec![],
        ttl: Duration::from_secs(600),
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
    }
    .claims(now());
    let revoked_jti = revoked["jti"].as_str().unwrap().to_string();
    let gw = TokenGateway::start(&[&revoked_jti]);
    let t = now();
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut c = gw.claims("ci-bot");
        edit(&mut c);
        c
    };

    let other_key = moat::pki::generate_token_key().unwrap();
    let other_key = SigningKey::from_bytes(other_key.private_pem.as_bytes(), None).unwrap();
    let public_pem = std::fs::read(gw.dir.join("token-key.pub.pem")).unwrap();
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&gw.claims("ci-bot"))
    );
    // Algorithm confusion: HS256 keyed with a configured public key.
    let confused = |public_pem: &[u8]| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &gw.claims("ci-bot"),
            &jsonwebtoken::EncodingKey::from_secret(public_pem),
        )
        .unwrap()
    };
    let rsa_public_pem = std::fs::read(gw.dir.join("rsa-key.pub.pem")).unwrap();

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            gw.token(&with(&|c| {
                c["iat"] = json!(t - 1200);
                c["nbf"] = json!(t - 1200);
                c["exp"] = json!(t - 600);
            })),
            "token expired",
        ),
        (
            "not yet valid",
            gw.token(&with(&|c| {
                c["nbf"] = json!(t + 600);
                c["exp"] = json!(t + 1200);
            })),
            "not valid before",
        ),
        (
            "wrong issuer",
            gw.token(&with(&|c| c["iss"] = json!("someone-else"))),
            "issuer mismatch",
        ),
        (
            "wrong audience",
            gw.token(&with(&|c| c["aud"] = json!("another-gateway"))),
            "audience mismatch",
        ),
        (
            "lifetime over max_ttl",
            gw.token(&with(&|c| c["exp"] = json!(t + 7200))),
            "exceeds auth.tokens.max_ttl",
        ),
        (
            "wrong key",
            sign(&other_key, &gw.claims("ci-bot")).unwrap(),
            "signature does not verify",
        ),
        ("alg none", alg_none, "algorithm none is not allowed"),
        (
            "algorithm confusion (EC public key as HS256 secret)",
            confused(&public_pem),
            "algorithm HS256 is not configured",
        ),
        (
            "algorithm confusion (RSA public key as HS256 secret)",
            confused(&rsa_public_pem),
            "algorithm HS256 is not configured",
        ),
        ("revoked jti", gw.token(&revoked), "is revoked"),
    ];

    let ca_only = pki().ca_only(&unique("bad-token-client"));
    for (case, token, why) in &cases {
        let (status, resp) = raw_status(&gw.moat, &ca_only, Some(&format!("Bearer {token}")));
        assert_eq!(status, 401, "{case}: {resp}");
        assert!(resp.contains(why), "{case}: {resp}");
        refused_and_reaches_nothing(&gw.docker_with(&ca_only, Some(token)), case, why);
    }

    // A valid certificate does not rescue an invalid token.
    let alice = pki().client("alice", "admin");
    refused_and_reaches_nothing(
        &gw.docker_with(&alice, Some(&cases[0].1)),
        "expired token with a valid certificate",
        "token expired",
    );
    // ... while the same certificate alone is fine.
    gw.docker_with(&alice, None).ok(&["ps"]);

    // Neither a token nor a certificate.
    let (status, resp) = raw_status(&gw.moat, &ca_only, None);
    assert_eq!(status, 401, "{resp}");
    refused_and_reaches_nothing(
        &gw.docker_with(&ca_only, None),
        "no token and no certificate",
        "authentication required",
    );
}

#[test]
fn revoking_a_jti_takes_effect_without_a_restart() {
    let gw = TokenGateway::start(&[]);
    let claims = gw.claims("ci-bot");
    let jti = claims["jti"].as_str().unwrap().to_string();
    let d = gw.docker(Some(&gw.token(&claims)));
    d.ok(&["ps"]);

    let tmp = gw.revoked.with_extension("new");
    std::fs::write(&tmp, format!("# revoked token ids\n{jti}\n")).unwrap();
    std::fs::rename(&tmp, &gw.revoked).unwrap();
    // Hang guard, not a timing assertion: the list is re-checked every second.
    let deadline = Instant::now() + Duration::from_secs(10);
    let bundle = pki().ca_only(&unique("jti-client"));
    let auth = format!("Bearer {}", gw.token(&claims));
    loop {
        let (status, resp) = raw_status(&gw.moat, &bundle, Some(&auth));
        if status == 401 {
            assert!(resp.contains("is revoked"), "{resp}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "revoked jti still accepted: {resp}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(d.fails(&["ps"]).contains("is revoked"));
}

// ------------------------------------------------- certificates on disk

/// A PKI made with the library (`moat certs init`) and a moat serving its
/// server certificate, checking client certificates against its CA and CRL.
fn pki_gateway(prefix: &str) -> (PkiPaths, Moat) {
    let paths = moat::pki::init(&InitOptions::new(tempdir(prefix).join("pki"))).unwrap();
    let moat = serve_pki(&paths);
    (paths, moat)
}

/// moat serving a `moat certs` directory's server certificate, CA and CRL.
fn serve_pki(paths: &PkiPaths) -> Moat {
    Moat::start_with(MoatOptions {
        tls_yaml: Some(format!(
            "  cert: {}\n  key: {}\n  client_ca: {}\n  crl: {}\n",
            paths.server_cert.display(),
            paths.server_key.display(),
            paths.ca_cert.display(),
            paths.crl.display()
        )),
        ..Default::default()
    })
}

fn issue(paths: &PkiPaths, user: &str, groups: &[&str]) -> Bundle {
    let out = paths.dir.parent().unwrap().join(user);
    let mut opts = IssueOptions::new(&paths.dir, user);
    opts.groups = groups.iter().map(|g| g.to_string()).collect();
    opts.out = Some(out.clone());
    moat::pki::issue(&opts).unwrap();
    Bundle { dir: out }
}

/// Whether a fresh connection with `bundle` gets `GET /_ping` answered 200.
fn ping_ok(moat: &Moat, bundle: &Bundle) -> bool {
    raw::exchange(
        moat.addr,
        bundle,
        b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n",
    )
    .map(|r| raw::status(&r) == 200)
    .unwrap_or(false)
}

/// Reads from `r` until `needle` has been seen.
fn read_until(r: &mut impl Read, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) {
        let n = r.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "closed before {needle:?}: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn a_revoked_certificate_fails_new_handshakes_within_2s_and_its_open_connection_closes() {
    let (paths, moat) = pki_gateway("moat-revoke-");
    let doomed = issue(&paths, "mallory", &["admin"]);
    let other = issue(&paths, "bob", &["admin"]);
    let d = Docker::new(&moat, &doomed);
    d.ok(&["ps"]);
    assert!(ping_ok(&moat, &doomed));

    // An open keep-alive connection authenticated by the doomed certificate.
    let mut open = raw::connect(moat.addr, &doomed).unwrap();
    open.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        .unwrap();
    open.flush().unwrap();
    let first = read_until(&mut open, "OK");
    assert_eq!(raw::status(&first), 200, "{first}");

    moat::pki::revoke(
        &paths.dir,
        &RevokeTarget::CertFile(doomed.dir.join("cert.pem")),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while ping_ok(&moat, &doomed) {
        assert!(
            Instant::now() < deadline,
            "the revoked certificate still completes handshakes 2 s after `moat certs revoke`"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The open connection is closed by moat (5 s is a hang guard).
    open.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 256];
    match open.read(&mut buf) {
        Ok(0) => {}
        Err(e)
            if e.kind() != std::io::ErrorKind::WouldBlock
                && e.kind() != std::io::ErrorKind::TimedOut => {}
        other => panic!("the open connection of a revoked certificate is still usable: {other:?}"),
    }

    d.fails(&["ps"]);
    // Other certificates from the same CA are unaffected.
    Docker::new(&moat, &other).ok(&["ps"]);
    assert!(ping_ok(&moat, &other));
}

/// SHA-256 of the certificate moat presents to a new connection.
fn presented_fingerprint(moat: &Moat, bundle: &Bundle) -> String {
    let tls = raw::connect(moat.addr, bundle).unwrap();
    let certs = tls.conn.peer_certificates().unwrap();
    hex::encode(Sha256::digest(certs[0].as_ref()))
}

/// Issues a new server key and certificate from the PKI's CA and moves
/// them over server-key.pem / server-cert.pem by rename (key first).
/// Returns the new certificate's SHA-256.
fn rotate_server_certificate(paths: &PkiPaths) -> String {
    use rcgen::{
        CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType, SerialNumber,
    };
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(&paths.ca_key).unwrap()).unwrap();
    let ca = Issuer::from_ca_cert_pem(&std::fs::read_to_string(&paths.ca_cert).unwrap(), ca_key)
        .unwrap();
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    p.distinguished_name
        .push(DnType::CommonName, "moat server (rotated)");
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    let cert = p.signed_by(&key, &ca).unwrap();
    for (path, content) in [
        (&paths.server_key, key.serialize_pem()),
        (&paths.server_cert, cert.pem()),
    ] {
        let tmp = path.with_extension("pem.new");
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    hex::encode(Sha256::digest(cert.der().as_ref()))
}

#[test]
fn server_certificate_rotation_keeps_an_open_logs_follow_alive() {
    let (paths, moat) = pki_gateway("moat-rotate-");
    let alice = issue(&paths, "alice", &["admin"]);
    let d = Docker::new(&moat, &alice);
    let name = unique("rotate");
    d.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        image(),
        "sh",
        "-c",
        "for i in $(seq 1 16); do echo line$i; sleep 0.5; done",
    ]);
    let mut follow = d
        .command(&["logs", "-f", &name])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(follow.stdout.take().unwrap());
    let mut lines = String::new();
    stdout.read_line(&mut lines).unwrap();
    assert_eq!(lines, "line1\n");

    let old = presented_fingerprint(&moat, &alice);
    let new = rotate_server_certificate(&paths);
    assert_ne!(old, new);
    // Hang guard, not a timing assertion.
    let deadline = Instant::now() + Duration::from_secs(10);
    while presented_fingerprint(&moat, &alice) != new {
        assert!(
            Instant::now() < deadline,
            "moat still presents the old certificate"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        follow.try_wait().unwrap().is_none(),
        "`docker logs -f` ended before the rotation was in force; the test proves nothing"
    );
    // The docker CLI trusts the new certificate (same CA) on new connections.
    d.ok(&["ps"]);

    stdout.read_to_string(&mut lines).unwrap();
    let mut stderr = String::new();
    follow
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = follow.wait().unwrap();
    assert!(status.success(), "docker logs -f: {status}: {stderr}");
    let expected: String = (1..=16).map(|i| format!("line{i}\n")).collect();
    assert_eq!(lines, expected);
    d.ok(&["rm", &name]);
}

// ------------------------------------------------- the moat command line

fn moat_cli(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
    cmd.args(args).env_remove("RUST_LOG");
    support::run_with_deadline(cmd, None, Duration::from_secs(60))
}

fn moat_ok(args: &[&str]) -> String {
    let out = moat_cli(args);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "moat {args:?}: {}\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// Runs `script` in sh with a clean docker environment.
fn sh(script: &str, docker_config: &Path) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .env("DOCKER_CONFIG", docker_config)
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .env_remove("DOCKER_CONTEXT");
    support::run_with_deadline(cmd, None, Duration::from_secs(120))
}

#[test]
fn certs_cli_bundles_work_with_the_docker_cli_as_issued() {
    let tmp = tempdir("moat-certs-cli-");
    let dir = tmp.join("pki");
    let dir_s = dir.to_str().unwrap();
    moat_ok(&["certs", "init", "--dir", dir_s]);
    for f in ["ca-key.pem", "server-key.pem"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }

    // A second init refuses, in one line, and changes nothing.
    let ca_before = std::fs::read(dir.join("ca.pem")).unwrap();
    let out = moat_cli(&["certs", "init", "--dir", dir_s]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert_eq!(std::fs::read(dir.join("ca.pem")).unwrap(), ca_before);

    let paths = PkiPaths::new(&dir);
    let moat = serve_pki(&paths);
    let host = moat.host();
    let out_dir = tmp.join("carol-bundle");
    let printed = moat_ok(&[
        "certs",
        "issue",
        "--dir",
        dir_s,
        "--user",
        "carol",
        "--group",
        "admin",
        "--group",
        "dev",
        "--out",
        out_dir.to_str().unwrap(),
        "--host",
        &host,
    ]);
    let serial = printed
        .split_whitespace()
        .nth(2)
        .expect("the first line names the serial")
        .to_string();
    assert!(
        printed.contains(&format!("export DOCKER_HOST={host}\n")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("export DOCKER_CERT_PATH={}\n", out_dir.display())),
        "{printed}"
    );
    for f in ["ca.pem", "cert.pem", "key.pem"] {
        assert!(out_dir.join(f).exists(), "{f}");
    }

    // The printed exports, as pasted into a shell.
    let exports: String = printed
        .lines()
        .filter(|l| l.starts_with("export "))
        .map(|l| format!("{l}\n"))
        .collect();
    let config = tempdir("moat-docker-config-");
    let out = sh(&format!("{exports}docker ps"), &config);
    assert!(out.status.success(), "{exports}{:?}", text(&out));
    // The printed docker context, as pasted into a shell.
    let context: String = printed
        .lines()
        .filter(|l| l.starts_with("docker context"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(context.lines().count(), 2, "{printed}");
    let out = sh(&format!("{context}docker ps"), &config);
    assert!(out.status.success(), "{context}{:?}", text(&out));

    // moat read both groups from the certificate (`docker ps` leaves
    // completion records only, written once the response has ended).
    let records = moat.audit_records_once(|r| r["user"]["name"] == "carol");
    assert!(
        records.iter().any(|r| r["user"]["name"] == "carol"
            && r["user"]["groups"] == json!(["admin", "dev"])
            && r["user"]["auth_method"] == "certificate"),
        "{records:?}"
    );

    // `certs list` shows it, with both groups, not revoked.
    let list = moat_ok(&["certs", "list", "--dir", dir_s]);
    let row = list
        .lines()
        .find(|l| l.starts_with(&serial))
        .unwrap_or_else(|| panic!("serial {serial} not listed:\n{list}"));
    assert!(row.contains("carol"), "{row}");
    assert!(row.contains("admin,dev"), "{row}");
    assert!(row.trim_end().ends_with("no"), "{row}");

    // Revoked through the CLI: listed as revoked, and refused.
    let cert = out_dir.join("cert.pem");
    moat_ok(&[
        "certs",
        "revoke",
        "--dir",
        dir_s,
        "--cert",
        cert.to_str().unwrap(),
    ]);
    let list = moat_ok(&["certs", "list", "--dir", dir_s]);
    let row = list.lines().find(|l| l.starts_with(&serial)).unwrap();
    assert!(row.contains("yes"), "{row}");
    let bundle = Bundle { dir: out_dir };
    let deadline = Instant::now() + Duration::from_secs(2);
    while ping_ok(&moat, &bundle) {
        assert!(
            Instant::now() < deadline,
            "revocation not in force after 2 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!sh(&format!("{exports}docker ps"), &config).status.success());
}

#[test]
fn token_cli_issue_works_with_the_docker_cli_and_inspect_prints_claims() {
    let gw = TokenGateway::start(&[]);
    let key = gw.private_key.to_str().unwrap();
    let token = moat_ok(&[
        "token",
        "issue",
        "--key",
        key,
        "--subject",
        "ci-pipeline",
        "--group",
        "admin",
        "--scope",
        "deploy",
        "--ttl",
        "15m",
        "--issuer",
        ISSUER,
        "--audience",
        AUDIENCE,
    ]);
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "{token}");

    gw.docker(Some(token)).ok(&["ps"]);
    // `docker ps` leaves completion records only, written once the
    // response has ended: wait for it.
    let records = gw
        .moat
        .audit_records_once(|r| r["user"]["name"] == "ci-pipeline");
    assert!(records
        .iter()
        .any(|r| { r["user"]["name"] == "ci-pipeline" && r["user"]["auth_method"] == "token" }));

    let inspected = moat_ok(&["token", "inspect", token]);
    for want in [
        "\"sub\": \"ci-pipeline\"",
        "\"admin\"",
        "\"scope\": \"deploy\"",
        "\"jti\"",
        "\"exp\"",
        "ES256",
    ] {
        assert!(inspected.contains(want), "{want} missing:\n{inspected}");
    }
    let config = gw.moat.config_path.to_str().unwrap();
    let checked = moat_ok(&["token", "inspect", token, "--config", config]);
    assert!(checked.contains("valid: user ci-pipeline"), "{checked}");

    // A token longer-lived than max_ttl is refused, and inspect says why.
    let long = moat_ok(&[
        "token",
        "issue",
        "--key",
        key,
        "--subject",
        "ci-pipeline",
        "--ttl",
        "2h",
        "--issuer",
        ISSUER,
        "--audience",
        AUDIENCE,
    ]);
    let out = moat_cli(&["token", "inspect", long.trim(), "--config", config]);
    assert!(!out.status.success());
    assert!(
        text(&out).0.contains("exceeds auth.tokens.max_ttl"),
        "{:?}",
        text(&out)
    );
    assert!(gw
        .docker(Some(long.trim()))
        .fails(&["ps"])
        .contains("exceeds auth.tokens.max_ttl"));
}
