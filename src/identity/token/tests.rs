//! Token verification: one table of rejections (each with the message an
//! operator sees), acceptance for every key type, and revocation reloads.
//! Keys are generated here; nothing secret is committed.

use std::path::PathBuf;
use std::sync::OnceLock;

use base64::Engine;
use serde_json::{json, Value};

use super::*;
use crate::config::{TokenAlgorithm, TokenKey};

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://ci.example";
const AUD: &str = "moat";

struct Keys {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    es: SigningKey,
    es_other: SigningKey,
    rsa: SigningKey,
    ed: SigningKey,
    hs: SigningKey,
    rsa_public_pem: Vec<u8>,
}

/// Generated once per test run: RSA key generation is slow.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let write_pair = |name: &str, kp: rcgen::KeyPair| -> SigningKey {
            std::fs::write(dir.join(format!("{name}.pub")), kp.public_key_pem()).unwrap();
            std::fs::write(dir.join(format!("{name}.key")), kp.serialize_pem()).unwrap();
            SigningKey::from_bytes(kp.serialize_pem().as_bytes(), None).unwrap()
        };
        let es = write_pair(
            "es",
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        );
        let es_other = write_pair(
            "es-other",
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        );
        let rsa_kp =
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
                .unwrap();
        let rsa_public_pem = rsa_kp.public_key_pem().into_bytes();
        let rsa = write_pair("rsa", rsa_kp);
        let ed = write_pair(
            "ed",
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
        );
        let secret = hex::encode([7u8; 32]);
        std::fs::write(dir.join("hs.secret"), format!("{secret}\n")).unwrap();
        let hs = SigningKey::from_bytes(secret.as_bytes(), None).unwrap();
        std::fs::write(dir.join("revoked"), "# revoked tokens\nrevoked-id\n\n").unwrap();
        Keys {
            _dir: tmp,
            dir,
            es,
            es_other,
            rsa,
            ed,
            hs,
            rsa_public_pem,
        }
    })
}

fn config(keys: &[(&str, TokenAlgorithm)]) -> Tokens {
    let k = self::keys();
    Tokens {
        issuer: ISS.into(),
        audience: AUD.into(),
        keys: keys
            .iter()
            .map(|(f, a)| TokenKey {
                file: k.dir.join(f),
                algorithm: *a,
            })
            .collect(),
        jwks: None,
        leeway: Duration::from_secs(30),
        max_ttl: Duration::from_secs(24 * 3600),
        claims: TokenClaims::default(),
        revoked: Some(k.dir.join("revoked")),
    }
}

/// ES256, RS256 and EdDSA public keys; no HS256.
fn verifier() -> Verifier {
    Verifier::from_config(&config(&[
        ("es.pub", TokenAlgorithm::ES256),
        ("rsa.pub", TokenAlgorithm::RS256),
        ("ed.pub", TokenAlgorithm::EdDSA),
    ]))
    .unwrap()
}

fn good_claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "ci-bot",
        "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 3600,
        "jti": "abc", "groups": ["ci", "deployers"], "scope": "containers:read images:pull",
    })
}

fn with(changes: Value) -> Value {
    let mut c = good_claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
}

/// A token with a hand-made header and signature bytes.
fn raw_token(header: Value, claims: &Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(sig)
    )
}

/// HS256 "signed" with the RSA public key PEM as the secret: the classic
/// algorithm-confusion forgery.
fn confused_token() -> String {
    let k = keys();
    let forger = SigningKey::from_bytes(&k.rsa_public_pem, Some(Algorithm::HS256));
    // The PEM is not accepted as a secret by SigningKey (it is PEM), so sign
    // by hand with jsonwebtoken.
    assert!(forger.is_err());
    let key = jsonwebtoken::EncodingKey::from_secret(&k.rsa_public_pem);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(Algorithm::HS256),
        &good_claims(),
        &key,
    )
    .unwrap()
}

#[test]
fn every_rejection_says_why() {
    let k = keys();
    let es = |c: Value| sign(&k.es, &c).unwrap();
    let tampered = {
        let t = es(good_claims());
        let parts: Vec<&str> = t.split('.').collect();
        let evil = with(json!({"sub": "root"}));
        format!(
            "{}.{}.{}",
            parts[0],
            b64(evil.to_string().as_bytes()),
            parts[2]
        )
    };
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "expired 3m ago",
            es(with(json!({"exp": NOW - 180}))),
            "token expired 3m ago",
            "token_expired",
        ),
        (
            "expired beyond leeway",
            es(with(json!({"exp": NOW - 31}))),
            "token expired 31s ago",
            "token_expired",
        ),
        (
            "not yet valid",
            es(with(json!({"nbf": NOW + 600}))),
            "token not valid before 2027-01-15T08:10:00Z (in 10m)",
            "token_not_yet_valid",
        ),
        (
            "issued in the future",
            es(with(json!({"iat": NOW + 600, "nbf": null}))),
            "token issued in the future",
            "token_not_yet_valid",
        ),
        (
            "wrong issuer",
            es(with(json!({"iss": "https://evil.example"}))),
            "issuer mismatch: expected https://ci.example",
            "token_issuer",
        ),
        (
            "no issuer",
            es(with(json!({"iss": null}))),
            "issuer mismatch",
            "token_issuer",
        ),
        (
            "wrong audience",
            es(with(json!({"aud": "other"}))),
            "audience mismatch: expected moat",
            "token_audience",
        ),
        (
            "audience list without moat",
            es(with(json!({"aud": ["a", "b"]}))),
            "audience mismatch",
            "token_audience",
        ),
        (
            "no audience",
            es(with(json!({"aud": null}))),
            "audience mismatch",
            "token_audience",
        ),
        (
            "wrong key",
            sign(&k.es_other, &good_claims()).unwrap(),
            "signature does not verify with any configured key",
            "token_signature",
        ),
        (
            "tampered payload",
            tampered,
            "signature does not verify with any configured key",
            "token_signature",
        ),
        (
            "alg none",
            raw_token(json!({"alg": "none", "typ": "JWT"}), &good_claims(), b""),
            "algorithm none is not allowed",
            "token_algorithm",
        ),
        (
            "alg NONE",
            raw_token(json!({"alg": "NONE"}), &good_claims(), b""),
            "algorithm none is not allowed",
            "token_algorithm",
        ),
        (
            "HS256 not configured",
            sign(&k.hs, &good_claims()).unwrap(),
            "algorithm HS256 is not configured",
            "token_algorithm",
        ),
        (
            "algorithm confusion",
            confused_token(),
            "algorithm HS256 is not configured",
            "token_algorithm",
        ),
        (
            "unknown algorithm",
            raw_token(json!({"alg": "XX999"}), &good_claims(), b"x"),
            "algorithm XX999 is not configured",
            "token_algorithm",
        ),
        (
            "revoked jti",
            es(with(json!({"jti": "revoked-id"}))),
            "token id revoked-id is revoked",
            "token_revoked",
        ),
        (
            "lifetime too long",
            es(with(
                json!({"iat": NOW, "nbf": NOW, "exp": NOW + 48 * 3600}),
            )),
            "token lifetime 48h exceeds auth.tokens.max_ttl 24h",
            "token_lifetime",
        ),
        (
            "no exp",
            es(with(json!({"exp": null}))),
            "token has no `exp` claim",
            "token_claims",
        ),
        (
            "exp not a number",
            es(with(json!({"exp": "tomorrow"}))),
            "token claim `exp` is not a number",
            "token_claims",
        ),
        (
            "no iat nor nbf",
            es(with(json!({"iat": null, "nbf": null}))),
            "token has no `iat` claim",
            "token_claims",
        ),
        (
            "no jti with a revocation list",
            es(with(json!({"jti": null}))),
            "token has no `jti` claim",
            "token_claims",
        ),
        (
            "no user",
            es(with(json!({"sub": null}))),
            "token has no `sub` claim",
            "token_claims",
        ),
        (
            "empty user",
            es(with(json!({"sub": ""}))),
            "token claim `sub` (the user name) \"\" is refused: it is empty",
            "token_name",
        ),
        (
            "groups not strings",
            es(with(json!({"groups": [1, 2]}))),
            "token claim `groups` is neither",
            "token_claims",
        ),
        (
            "scope an object",
            es(with(json!({"scope": {"a": 1}}))),
            "token claim `scope` is neither",
            "token_claims",
        ),
        (
            "not a JWT",
            "abc".into(),
            "not a well-formed JWT",
            "token_malformed",
        ),
        (
            "four parts",
            format!("{}.x", es(good_claims())),
            "not a well-formed JWT",
            "token_malformed",
        ),
        (
            "crit header",
            raw_token(
                json!({"alg": "ES256", "crit": ["exp"]}),
                &good_claims(),
                b"x",
            ),
            "`crit`",
            "token_malformed",
        ),
    ];
    let v = verifier();
    for (name, token, want, reason) in cases {
        match v.verify_at(&token, NOW) {
            Ok(t) => panic!("{name}: accepted as {t:?}"),
            Err(e) => {
                assert!(e.to_string().contains(want), "{name}: got {e:?} / {e}");
                assert_eq!(e.reason(), reason, "{name}");
            }
        }
    }
}

#[test]
fn algorithm_confusion_fails_even_with_hs256_configured() {
    // With an HS256 secret configured too, the RSA public key is still never
    // used as an HMAC secret.
    let v = Verifier::from_config(&config(&[
        ("rsa.pub", TokenAlgorithm::RS256),
        ("hs.secret", TokenAlgorithm::HS256),
    ]))
    .unwrap();
    let err = v.verify_at(&confused_token(), NOW).unwrap_err();
    assert!(matches!(err, TokenError::BadSignature), "{err}");
    // while a real HS256 token with the configured secret passes.
    let ok = sign(&keys().hs, &good_claims()).unwrap();
    v.verify_at(&ok, NOW).unwrap();
}

#[test]
fn accepts_every_configured_key_type() {
    let k = keys();
    let v = verifier();
    for (name, key) in [("ES256", &k.es), ("RS256", &k.rsa), ("EdDSA", &k.ed)] {
        let t = v
            .verify_at(&sign(key, &good_claims()).unwrap(), NOW)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(t.user, "ci-bot");
        assert_eq!(t.groups, vec!["ci", "deployers"]);
        assert_eq!(t.scopes, vec!["containers:read", "images:pull"]);
        assert_eq!(t.id.as_deref(), Some("abc"));
        assert_eq!(t.claims["iss"], ISS);
    }
}

#[test]
fn claim_shapes_and_names_are_configurable() {
    let k = keys();
    let mut cfg = config(&[("es.pub", TokenAlgorithm::ES256)]);
    cfg.claims = TokenClaims {
        user: "email".into(),
        groups: "roles".into(),
        scopes: "scp".into(),
    };
    cfg.revoked = None;
    let v = Verifier::from_config(&cfg).unwrap();
    let c = with(json!({
        "email": "bot@ci.example", "roles": "admins", "scp": ["a", "b"],
        "aud": ["x", AUD], "jti": null, "iat": null, "exp": NOW + 60,
    }));
    let t = v.verify_at(&sign(&k.es, &c).unwrap(), NOW).unwrap();
    assert_eq!(t.user, "bot@ci.example");
    assert_eq!(t.groups, vec!["admins"]);
    assert_eq!(t.scopes, vec!["a", "b"]);
    assert_eq!(t.id, None);
}

#[test]
fn leeway_allows_small_clock_skew() {
    let k = keys();
    let v = verifier();
    for c in [
        with(json!({"exp": NOW - 29})),
        with(json!({"nbf": NOW + 29, "iat": NOW + 29})),
    ] {
        v.verify_at(&sign(&k.es, &c).unwrap(), NOW).unwrap();
    }
}

#[test]
fn issued_tokens_verify() {
    let k = keys();
    let req = TokenRequest {
        subject: "ci".into(),
        groups: vec!["g".into()],
        scopes: vec!["s1".into(), "s2".into()],
        ttl: Duration::from_secs(3600),
        issuer: Some(ISS.into()),
        audience: Some(AUD.into()),
    };
    let a = req.claims(NOW);
    let b = req.claims(NOW);
    assert_ne!(a["jti"], b["jti"], "jti must be random");
    let t = verifier()
        .verify_at(&sign(&k.ed, &a).unwrap(), NOW + 10)
        .unwrap();
    assert_eq!(
        (t.user.as_str(), t.groups.len(), t.scopes.len()),
        ("ci", 1, 2)
    );
}

#[test]
fn signing_key_type_picks_the_algorithm() {
    let k = keys();
    assert_eq!(k.es.algorithm, Algorithm::ES256);
    assert_eq!(k.rsa.algorithm, Algorithm::RS256);
    assert_eq!(k.ed.algorithm, Algorithm::EdDSA);
    assert_eq!(k.hs.algorithm, Algorithm::HS256);
    let pem = std::fs::read(k.dir.join("rsa.key")).unwrap();
    let ps = SigningKey::from_bytes(&pem, Some(Algorithm::PS256)).unwrap();
    assert_eq!(ps.algorithm, Algorithm::PS256);
    let pem = std::fs::read(k.dir.join("es.key")).unwrap();
    assert!(SigningKey::from_bytes(&pem, Some(Algorithm::RS256)).is_err());
}

#[test]
fn bad_key_configs_are_refused_with_the_file_named() {
    let k = keys();
    std::fs::write(k.dir.join("short.secret"), "tooshort").unwrap();
    for (file, alg, want) in [
        ("short.secret", TokenAlgorithm::HS256, "use at least 32"),
        ("rsa.pub", TokenAlgorithm::HS256, "holds a PEM key"),
        ("es.pub", TokenAlgorithm::RS256, "not an RSA public key"),
        ("missing.pub", TokenAlgorithm::ES256, "cannot read"),
    ] {
        let err = Verifier::from_config(&config(&[(file, alg)])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(want) && msg.contains(file), "{file}: {msg}");
        assert_eq!(err.reason(), "token_config");
    }
}

#[test]
fn jwks_keys_are_matched_by_kid_and_algorithm() {
    let k = keys();
    let es_pub = std::fs::read(k.dir.join("es.pub")).unwrap();
    let dk = jsonwebtoken::DecodingKey::from_ec_pem(&es_pub).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_decoding_key(&dk, Some(Algorithm::ES256)).unwrap();
    jwk.common.key_id = Some("k1".into());
    let set = json!({"keys": [jwk]});
    let path = k.dir.join("jwks.json");
    std::fs::write(&path, set.to_string()).unwrap();
    let mut cfg = config(&[]);
    cfg.jwks = Some(path);
    let v = Verifier::from_config(&cfg).unwrap();
    v.verify_at(&sign(&k.es, &good_claims()).unwrap(), NOW)
        .unwrap();
    let err = v
        .verify_at(&sign(&k.rsa, &good_claims()).unwrap(), NOW)
        .unwrap_err();
    assert!(
        matches!(err, TokenError::AlgorithmNotConfigured(_)),
        "{err}"
    );

    let oct = k.dir.join("oct.json");
    std::fs::write(&oct, r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#).unwrap();
    cfg.jwks = Some(oct);
    let err = Verifier::from_config(&cfg).unwrap_err();
    assert!(err.to_string().contains("symmetric"), "{err}");
}

#[test]
fn revocation_list_reloads_on_change() {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("revoked");
    std::fs::write(&file, "").unwrap();
    let mut cfg = config(&[("es.pub", TokenAlgorithm::ES256)]);
    cfg.revoked = Some(file.clone());
    let v = Verifier::from_config(&cfg).unwrap();
    let token = sign(&k.es, &good_claims()).unwrap();
    v.verify_at(&token, NOW).unwrap();

    // Replaced by rename, as editors and tools do; noticed on the request
    // path after the once-a-second freshness check.
    let tmp = dir.path().join("revoked.new");
    std::fs::write(&tmp, "abc\n").unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let err = v.verify_at(&token, NOW).unwrap_err();
    assert_eq!(err.to_string(), "token id abc is revoked");

    // An explicit reload (SIGHUP) takes effect at once.
    std::fs::write(&file, "other\n").unwrap();
    assert_eq!(v.reload_revoked().unwrap(), 1);
    v.verify_at(&token, NOW).unwrap();

    // An unreadable list refuses every token (fail closed).
    std::fs::remove_file(&file).unwrap();
    assert!(v.reload_revoked().is_err());
    let err = v.verify_at(&token, NOW).unwrap_err();
    assert_eq!(err.reason(), "token_revocation_unavailable");
}

#[test]
fn durations_print_compactly() {
    for (secs, want) in [
        (0, "0s"),
        (45, "45s"),
        (180, "3m"),
        (192, "3m12s"),
        (3600, "1h"),
        (48 * 3600, "48h"),
        (7500, "2h5m"),
    ] {
        assert_eq!(fmt_secs(secs), want);
    }
}

use crate::identity::name::tests::hostile;

/// Every hostile corpus value, as the user claim and as a group, scope and
/// token id, is refused with the naming rule's message, escaped.
#[test]
fn hostile_claims_are_refused_by_the_naming_rule() {
    let k = keys();
    let v = verifier();
    let mut n = 0;
    for case in hostile::corpus() {
        let Some((_, value)) = case.token_claim() else {
            continue;
        };
        for (claim, changes) in [
            ("sub", json!({ "sub": value })),
            ("groups", json!({ "groups": ["ci", value] })),
            ("jti", json!({ "jti": value })),
        ] {
            n += 1;
            let token = sign(&k.es, &with(changes)).unwrap();
            let e = v.verify_at(&token, NOW).unwrap_err();
            let msg = e.to_string();
            assert_eq!(e.reason(), "token_name", "{} in {claim}: {msg}", case.label);
            assert!(
                msg.contains(&case.expect),
                "{} in {claim}: {msg}",
                case.label
            );
            assert!(
                msg.chars().all(|c| name::forbidden(c).is_none()),
                "{} in {claim}: not escaped: {msg:?}",
                case.label
            );
        }
        // `scope` is split on white space: a value without any is one scope.
        if !value.contains(char::is_whitespace) && !value.is_empty() {
            let token = sign(&k.es, &with(json!({ "scope": value }))).unwrap();
            assert!(v.verify_at(&token, NOW).is_err(), "{} in scope", case.label);
        }
    }
    assert!(n > 200, "{n}");
}

#[test]
fn token_issue_refuses_names_the_verifier_would_refuse() {
    let req = |subject: &str, group: &str, scope: &str| TokenRequest {
        subject: subject.into(),
        groups: vec![group.into()],
        scopes: vec![scope.into()],
        ttl: Duration::from_secs(60),
        issuer: None,
        audience: None,
    };
    assert!(req("ci", "g", "s").check().is_ok());
    let e = req("rt-admin\0.evil", "g", "s").check().unwrap_err();
    assert!(
        e.to_string().contains("--subject \"rt-admin\\u{0}.evil\""),
        "{e}"
    );
    assert!(req("ci", "a\u{202e}b", "s").check().is_err());
    assert!(req("ci", "g", "two words").check().is_err());
    assert!(req("", "g", "s").check().is_err());
}

/// A payload with a claim twice: serde_json keeps the last, other parsers
/// the first. Signed validly, and still refused.
#[test]
fn a_claim_or_header_key_twice_is_refused() {
    use jsonwebtoken::crypto::sign as raw_sign;
    let k = keys();
    let es_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(k.dir.join("es.key")).unwrap()).unwrap();
    let enc = jsonwebtoken::EncodingKey::from_ec_pem(es_key.serialize_pem().as_bytes()).unwrap();
    let signed = |header: &str, claims: &str| {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let sig = raw_sign(input.as_bytes(), &enc, Algorithm::ES256).unwrap();
        format!("{input}.{sig}")
    };
    let claims = |extra: &str| {
        format!(
            r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"ci-bot","iat":{},"exp":{},"jti":"j"{extra}}}"#,
            NOW - 60,
            NOW + 600
        )
    };
    let v = verifier();
    let header = r#"{"alg":"ES256","typ":"JWT"}"#;
    v.verify_at(&signed(header, &claims("")), NOW).unwrap();
    for (case, token) in [
        ("sub twice", signed(header, &claims(r#","sub":"admin""#))),
        (
            "nested key twice",
            signed(header, &claims(r#","x":{"a":1,"a":2}"#)),
        ),
        (
            "alg twice",
            signed(r#"{"alg":"ES256","alg":"ES256"}"#, &claims("")),
        ),
    ] {
        let e = v.verify_at(&token, NOW).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("appears twice") || msg.contains("duplicate field"),
            "{case}: {msg}"
        );
    }
}

/// ECDSA signatures are malleable: (r, n - s) verifies too. moat accepts
/// the twin (requiring low-s would refuse about half of the tokens that
/// common JWT libraries mint) because nothing in moat is keyed on signature
/// bytes: the twin is the same token, with the same `jti`, and revoking
/// that `jti` refuses both.
#[test]
fn a_high_s_twin_is_the_same_token_for_revocation() {
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let k = keys();
    let token = sign(&k.es, &with(json!({"jti": "revoked-id"}))).unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[2])
        .unwrap();
    let (r, s) = sig.split_at(32);
    // n - s, big-endian.
    let mut twin_s = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        twin_s[i] = (d + 256 * borrow) as u8;
    }
    let twin = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        b64(&[r, &twin_s[..]].concat())
    );
    assert_ne!(twin, token);
    let plain = Verifier::from_config(&Tokens {
        revoked: None,
        ..config(&[("es.pub", TokenAlgorithm::ES256)])
    })
    .unwrap();
    let a = plain.verify_at(&token, NOW).unwrap();
    let b = plain.verify_at(&twin, NOW).unwrap();
    assert_eq!((a.id, a.user), (b.id, b.user));
    // With the revocation list (which names `revoked-id`): both refused.
    let v = verifier();
    for t in [&token, &twin] {
        assert!(matches!(v.verify_at(t, NOW), Err(TokenError::Revoked(_))));
    }
}
