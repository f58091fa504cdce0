//! Names and credentials (issue 19): every hostile subject and token claim
//! of the corpus (`tests/data/hostile-names.tsv`) is refused with 401 over
//! a real TLS connection through moat and audited escaped; one credential
//! per request.

use std::time::Duration;

use moat::identity::token::{sign, SigningKey, TokenRequest};
use serde_json::Value;

use crate::support::hostile::{self, Case};
use crate::support::{pki, raw, tempdir, Bundle, Moat, MoatOptions};

const ISSUER: &str = "moat-names";
const AUDIENCE: &str = "moat-gateway";

/// moat with client certificates optional and tokens from one ES256 key.
fn token_gateway() -> (Moat, SigningKey) {
    let dir = tempdir("moat-names-");
    let private_key = dir.join("token-key.pem");
    let public_key = dir.join("token-key.pub.pem");
    moat::pki::write_token_key(&private_key, &public_key).unwrap();
    let moat = Moat::start_with(MoatOptions {
        tls_yaml: Some(pki().tls_yaml_optional()),
        extra_yaml: format!(
            "auth:\n  tokens:\n    issuer: {ISSUER}\n    audience: {AUDIENCE}\n    keys:\n      - file: {}\n        algorithm: ES256\n    max_ttl: 1h\n",
            public_key.display(),
        ),
        ..Default::default()
    });
    (moat, SigningKey::load(&private_key, None).unwrap())
}

fn claims(sub: &str, ttl: Duration) -> Value {
    TokenRequest {
        subject: sub.into(),
        groups: vec!["admin".into()],
        scopes: vec![],
        ttl,
        issuer: Some(ISSUER.into()),
        audience: Some(AUDIENCE.into()),
    }
    .claims(time::OffsetDateTime::now_utc().unix_timestamp())
}

/// `GET /containers/json` with these extra header lines; returns the
/// status and the whole response.
fn request(moat: &Moat, bundle: &Bundle, headers: &[String]) -> (u16, String) {
    let mut req = String::from("GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("Connection: close\r\n\r\n");
    let resp = raw::exchange(moat.addr, bundle, req.as_bytes()).unwrap();
    (raw::status(&resp), resp)
}

/// No raw control byte, separator or bidi control in `s`.
fn clean(s: &str) -> bool {
    s.chars()
        .all(|c| moat::identity::name::forbidden(c).is_none())
}

/// The refusal reason of the audit record of the request whose response
/// carried `x-moat-request-id: id`.
fn audited_reason(moat: &Moat, resp: &str) -> String {
    let id = resp
        .lines()
        .find_map(|l| l.strip_prefix("x-moat-request-id: "))
        .unwrap_or_else(|| panic!("no request id in {resp}"))
        .trim()
        .to_string();
    let records = moat.audit_records_once(|r| r["id"] == id.as_str());
    let r = records.iter().find(|r| r["id"] == id.as_str()).unwrap();
    assert_eq!(r["response"]["status"], 401, "{r}");
    assert!(r["user"].is_null(), "a refused request has no user: {r}");
    r["decision"]["reasons"][0].as_str().unwrap().to_string()
}

fn check_refusal(moat: &Moat, case: &Case, what: &str, status: u16, resp: &str) {
    assert_eq!(status, 401, "{} ({what}): {resp}", case.label);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(
        body.contains(&case.expect),
        "{} ({what}): {body}",
        case.label
    );
    assert!(
        clean(body),
        "{} ({what}): raw bytes in the response: {body:?}",
        case.label
    );
    let reason = audited_reason(moat, resp);
    assert!(
        reason.contains(&case.expect),
        "{} ({what}): audited {reason:?}",
        case.label
    );
    assert!(
        clean(&reason),
        "{} ({what}): audited raw: {reason:?}",
        case.label
    );
    if case.must_not_appear_raw() {
        assert!(
            reason.contains("\\u{") || reason.contains("\\x"),
            "{}: {reason}",
            case.label
        );
    }
}

#[test]
fn every_hostile_subject_and_claim_is_refused_with_401_and_audited_escaped() {
    let (moat, key) = token_gateway();
    let p = pki();
    let ca_only = p.ca_only("names-token-client");
    let cases = hostile::corpus();
    let (mut certs, mut tokens) = (0, 0);
    for case in &cases {
        let bundle = p.client_with_subject(&case.subject_der(), &case.label);
        let (status, resp) = request(&moat, &bundle, &[]);
        check_refusal(&moat, case, "certificate", status, &resp);
        certs += 1;

        if let Some((claim, value)) = case.token_claim() {
            let mut c = claims("ci-bot", Duration::from_secs(600));
            c[claim] = match claim {
                "groups" => serde_json::json!(["admin", value]),
                _ => serde_json::json!(value),
            };
            let token = sign(&key, &c).unwrap();
            let (status, resp) =
                request(&moat, &ca_only, &[format!("Authorization: Bearer {token}")]);
            check_refusal(&moat, case, "token", status, &resp);
            tokens += 1;
        }
    }
    assert!(
        certs > 100 && tokens > 80,
        "{certs} certificates, {tokens} tokens"
    );
    // The same gateway accepts clean credentials.
    let ok = p.client("alice", "admin");
    assert_eq!(request(&moat, &ok, &[]).0, 200);
    let token = sign(&key, &claims("ci-bot", Duration::from_secs(600))).unwrap();
    assert_eq!(
        request(&moat, &ca_only, &[format!("Authorization: Bearer {token}")]).0,
        200
    );
}

#[test]
fn two_authorization_headers_are_refused_in_every_order_and_pairing() {
    let (moat, key) = token_gateway();
    let p = pki();
    let ca_only = p.ca_only("names-two-headers");
    let valid = sign(&key, &claims("ci-bot", Duration::from_secs(600))).unwrap();
    let mut expired_claims = claims("ci-bot", Duration::from_secs(600));
    expired_claims["exp"] = serde_json::json!(expired_claims["iat"].as_i64().unwrap() - 120);
    expired_claims["iat"] = serde_json::json!(expired_claims["iat"].as_i64().unwrap() - 600);
    expired_claims["nbf"] = expired_claims["iat"].clone();
    let expired = sign(&key, &expired_claims).unwrap();
    let invalid = format!("{}x", &valid[..valid.len() - 2]);
    let kinds = [
        ("valid", &valid),
        ("invalid", &invalid),
        ("expired", &expired),
    ];
    // One header of each: only the valid one passes (the pairs below are
    // refused for being two, not for what is in them).
    for (name, token) in &kinds {
        let (status, resp) = request(&moat, &ca_only, &[format!("Authorization: Bearer {token}")]);
        assert_eq!(status == 200, *name == "valid", "{name}: {resp}");
    }
    let mut refused = 0;
    for bundle in [&ca_only, &p.client("ci-bot", "admin")] {
        for (first, a) in &kinds {
            for (second, b) in &kinds {
                let (status, resp) = request(
                    &moat,
                    bundle,
                    &[
                        format!("Authorization: Bearer {a}"),
                        format!("Authorization: Bearer {b}"),
                    ],
                );
                assert_eq!(status, 401, "{first} then {second}: {resp}");
                assert!(
                    resp.contains("the request has 2 Authorization headers"),
                    "{first} then {second}: {resp}"
                );
                let reason = audited_reason(&moat, &resp);
                assert!(reason.contains("2 Authorization headers"), "{reason}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 18);
}

#[test]
fn a_token_and_a_certificate_must_name_the_same_user() {
    let (moat, key) = token_gateway();
    let p = pki();
    let token = |sub: &str| {
        format!(
            "Authorization: Bearer {}",
            sign(&key, &claims(sub, Duration::from_secs(600))).unwrap()
        )
    };
    let alice = p.client("alice", "admin");
    // The same user: the token applies.
    assert_eq!(request(&moat, &alice, &[token("alice")]).0, 200);
    // Another user: refused, whichever is "stronger".
    let (status, resp) = request(&moat, &alice, &[token("admin")]);
    assert_eq!(status, 401, "{resp}");
    assert!(
        resp.contains("the bearer token names user \\\"admin\\\" but the client certificate names \\\"alice\\\""),
        "{resp}"
    );
    assert!(audited_reason(&moat, &resp).contains("one request, one identity"));
    // A certificate whose name is refused is not rescued by a valid token.
    let nul = hostile::corpus()
        .into_iter()
        .find(|c| c.label == "nul")
        .unwrap();
    let bad = p.client_with_subject(&nul.subject_der(), "nul-with-token");
    let (status, resp) = request(&moat, &bad, &[token("ci-bot")]);
    assert_eq!(status, 401, "{resp}");
    assert!(resp.contains("NUL"), "{resp}");
}
