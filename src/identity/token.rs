//! Bearer tokens (JWT) for clients without a certificate, typically CI.
//!
//! [`Verifier::verify`] does the checks in a fixed order and says which one
//! failed, in words an operator can act on:
//!
//! 1. the header: `alg: none` is refused, and so is any algorithm that no
//!    configured key is for (which is what stops algorithm confusion, e.g.
//!    HS256 "signed" with an RSA public key: an RSA key is only ever used
//!    for the RSA algorithm it is configured with);
//! 2. the signature, against every configured key of that algorithm (keys
//!    with a `kid` matching the header's are tried first);
//! 3. the claims, checked here rather than by jsonwebtoken so each failure
//!    has its own message: `exp` (required), `nbf` and `iat` (not in the
//!    future), `iss`, `aud`, the lifetime against `auth.tokens.max_ttl`,
//!    the revocation list, then the user, groups and scopes claims.
//!
//! Lifetime: `exp - iat` must not exceed `max_ttl`. A token without `iat`
//! is measured from `nbf`; a token with neither is refused, since its
//! lifetime cannot be known. All time checks allow `leeway`.
//!
//! Revocation: `auth.tokens.revoked` names a file of revoked `jti`s, one a
//! line (`#` comments and blank lines ignored). It is re-read when its
//! inode, size or mtime change, checked at most once a second on the
//! request path, so a revocation takes effect within about a second;
//! [`Verifier::reload_revoked`] forces it (SIGHUP). While the file cannot
//! be read every token is refused. With a revocation list configured, a
//! token without `jti` is refused too, since it could never be revoked.

mod keys;
mod sign;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::name::{self, GroupName, NameError, UserName};
use crate::config::{TokenClaims, Tokens};

pub use keys::VerifyKey;
pub use sign::{sign, SignError, SigningKey, TokenRequest};

/// A token that passed every check.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub user: UserName,
    pub groups: Vec<GroupName>,
    pub scopes: Vec<GroupName>,
    pub claims: Value,
    pub id: Option<String>,
}

/// Why a token was refused (or, for [`TokenError::Config`], why the token
/// configuration was). Every message says which check failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("auth.tokens.{key}: {message}")]
    Config { key: &'static str, message: String },
    #[error("the token is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error("algorithm none is not allowed")]
    AlgNone,
    #[error("algorithm {0} is not configured")]
    AlgorithmNotConfigured(String),
    #[error("signature does not verify with any configured key")]
    BadSignature,
    #[error("token expired {ago} ago")]
    Expired { ago: String },
    #[error("token not valid before {at} (in {wait})")]
    NotYetValid { at: String, wait: String },
    #[error("token issued in the future (iat {at})")]
    IssuedInFuture { at: String },
    #[error("token has no `{claim}` claim{why}")]
    MissingClaim { claim: String, why: &'static str },
    #[error("token claim `{claim}` {why}")]
    BadClaim { claim: String, why: &'static str },
    #[error("issuer mismatch: expected {expected}")]
    IssuerMismatch { expected: String },
    #[error("audience mismatch: expected {expected}")]
    AudienceMismatch { expected: String },
    #[error("token lifetime {lifetime} exceeds auth.tokens.max_ttl {max}")]
    LifetimeTooLong { lifetime: String, max: String },
    #[error("{0}; ask for a token whose names follow moat's naming rule (printable text in NFC, at most 256 bytes)")]
    Name(NameError),
    #[error("token id {0} is revoked")]
    Revoked(String),
    #[error("the token revocation list {path} cannot be read ({message}); tokens are refused until it can")]
    RevocationUnavailable { path: PathBuf, message: String },
}

impl TokenError {
    /// A short, stable label for the `moat_auth_failures_total{reason}` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Config { .. } => "token_config",
            TokenError::Malformed(_) => "token_malformed",
            TokenError::AlgNone | TokenError::AlgorithmNotConfigured(_) => "token_algorithm",
            TokenError::BadSignature => "token_signature",
            TokenError::Expired { .. } => "token_expired",
            TokenError::NotYetValid { .. } | TokenError::IssuedInFuture { .. } => {
                "token_not_yet_valid"
            }
            TokenError::MissingClaim { .. } | TokenError::BadClaim { .. } => "token_claims",
            TokenError::Name(_) => "token_name",
            TokenError::IssuerMismatch { .. } => "token_issuer",
            TokenError::AudienceMismatch { .. } => "token_audience",
            TokenError::LifetimeTooLong { .. } => "token_lifetime",
            TokenError::Revoked(_) => "token_revoked",
            TokenError::RevocationUnavailable { .. } => "token_revocation_unavailable",
        }
    }
}

/// Checks bearer tokens against `auth.tokens`. Shared by every connection.
pub struct Verifier {
    issuer: String,
    audience: String,
    keys: Vec<VerifyKey>,
    leeway: u64,
    max_ttl: Duration,
    claims: TokenClaims,
    revoked: Option<RevokedList>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Loads the keys (or JWKS) and the revocation list.
    pub fn from_config(cfg: &Tokens) -> Result<Self, TokenError> {
        let keys = keys::load(cfg)?;
        let revoked = match &cfg.revoked {
            Some(path) => {
                let list = RevokedList::new(path.clone());
                if let Err(e) = list.reload() {
                    return Err(TokenError::Config {
                        key: "revoked",
                        message: e.to_string(),
                    });
                }
                Some(list)
            }
            None => None,
        };
        Ok(Self {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            keys,
            leeway: cfg.leeway.as_secs(),
            max_ttl: cfg.max_ttl,
            claims: cfg.claims.clone(),
            revoked,
        })
    }

    /// The algorithms some configured key is for.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        let mut out: Vec<Algorithm> = Vec::new();
        for k in &self.keys {
            if !out.contains(&k.algorithm) {
                out.push(k.algorithm);
            }
        }
        out
    }

    /// Re-reads the revocation list now (for SIGHUP). Returns the number of
    /// revoked ids; on error every token is refused until a reload succeeds.
    /// Without `auth.tokens.revoked` this does nothing and returns 0.
    pub fn reload_revoked(&self) -> Result<usize, TokenError> {
        match &self.revoked {
            Some(list) => list.reload(),
            None => Ok(0),
        }
    }

    /// Verifies `raw` (the part after `Bearer `).
    pub fn verify(&self, raw: &str) -> Result<VerifiedToken, TokenError> {
        self.verify_at(raw, now_secs())
    }

    /// [`Verifier::verify`] as if the time were `now` (seconds since the
    /// epoch).
    pub fn verify_at(&self, raw: &str, now: i64) -> Result<VerifiedToken, TokenError> {
        let header = parse_header(raw)?;
        let alg = self.check_algorithm(&header)?;
        let claims = self.check_signature(raw, alg, &header)?;
        // The signature holds; now the claims as another parser would see
        // them: a key twice in one object is read as the first by some
        // parsers and as the last by others (serde_json keeps the last).
        let payload = raw.split('.').nth(1).unwrap_or_default();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| TokenError::Malformed("the claims are not base64url".into()))?;
        unique_keys(&payload, "claims")?;
        let Value::Object(obj) = &claims else {
            return Err(TokenError::Malformed(
                "the claims are not a JSON object".into(),
            ));
        };
        let leeway = i64::try_from(self.leeway).unwrap_or(i64::MAX);

        let exp = time_claim(obj, "exp")?.ok_or(TokenError::MissingClaim {
            claim: "exp".into(),
            why: "; tokens must expire",
        })?;
        if now > exp.saturating_add(leeway) {
            return Err(TokenError::Expired {
                ago: fmt_secs(now - exp),
            });
        }
        let nbf = time_claim(obj, "nbf")?;
        if let Some(nbf) = nbf {
            if nbf > now.saturating_add(leeway) {
                return Err(TokenError::NotYetValid {
                    at: fmt_time(nbf),
                    wait: fmt_secs(nbf - now),
                });
            }
        }
        let iat = time_claim(obj, "iat")?;
        if let Some(iat) = iat {
            if iat > now.saturating_add(leeway) {
                return Err(TokenError::IssuedInFuture { at: fmt_time(iat) });
            }
        }
        match obj.get("iss") {
            Some(Value::String(s)) if *s == self.issuer => {}
            _ => {
                return Err(TokenError::IssuerMismatch {
                    expected: self.issuer.clone(),
                })
            }
        }
        let aud_ok = match obj.get("aud") {
            Some(Value::String(s)) => *s == self.audience,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(&self.audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(TokenError::AudienceMismatch {
                expected: self.audience.clone(),
            });
        }
        let start = iat.or(nbf).ok_or(TokenError::MissingClaim {
            claim: "iat".into(),
            why: "; auth.tokens.max_ttl needs it (or nbf) to know the token's lifetime",
        })?;
        let lifetime = exp.saturating_sub(start);
        let max = i64::try_from(self.max_ttl.as_secs()).unwrap_or(i64::MAX);
        if lifetime > max {
            return Err(TokenError::LifetimeTooLong {
                lifetime: fmt_secs(lifetime),
                max: fmt_secs(max),
            });
        }
        let id = match obj.get("jti") {
            None => None,
            Some(Value::String(s)) => Some(
                GroupName::parse(s)
                    .map_err(|why| TokenError::Name(NameError::new("token claim `jti`", s, why)))?
                    .into_string(),
            ),
            Some(_) => {
                return Err(TokenError::BadClaim {
                    claim: "jti".into(),
                    why: "is not a string",
                })
            }
        };
        if let Some(list) = &self.revoked {
            let id = id.as_deref().ok_or(TokenError::MissingClaim {
                claim: "jti".into(),
                why: "; auth.tokens.revoked is set, so every token needs one",
            })?;
            list.check(id)?;
        }

        let user = match obj.get(&self.claims.user) {
            Some(Value::String(s)) => UserName::parse(s).map_err(|why| {
                TokenError::Name(NameError::new(
                    format!("token claim `{}` (the user name)", self.claims.user),
                    s,
                    why,
                ))
            })?,
            Some(_) => {
                return Err(TokenError::BadClaim {
                    claim: self.claims.user.clone(),
                    why: "(auth.tokens.claims.user) is not a string",
                })
            }
            None => {
                return Err(TokenError::MissingClaim {
                    claim: self.claims.user.clone(),
                    why: " (auth.tokens.claims.user) to name the user",
                })
            }
        };
        let groups = names(
            string_list(obj.get(&self.claims.groups), &self.claims.groups, false)?,
            &self.claims.groups,
        )?;
        let scopes = names(
            string_list(obj.get(&self.claims.scopes), &self.claims.scopes, true)?,
            &self.claims.scopes,
        )?;
        Ok(VerifiedToken {
            user,
            groups,
            scopes,
            claims,
            id,
        })
    }

    fn check_algorithm(
        &self,
        header: &serde_json::Map<String, Value>,
    ) -> Result<Algorithm, TokenError> {
        let alg = match header.get("alg") {
            Some(Value::String(s)) => s.as_str(),
            _ => return Err(TokenError::Malformed("the header has no `alg`".into())),
        };
        if alg.eq_ignore_ascii_case("none") {
            return Err(TokenError::AlgNone);
        }
        if header.contains_key("crit") {
            return Err(TokenError::Malformed(
                "the header has `crit` extensions moat does not understand".into(),
            ));
        }
        let parsed: Option<Algorithm> = alg.parse().ok();
        match parsed {
            Some(a) if self.keys.iter().any(|k| k.algorithm == a) => Ok(a),
            _ => Err(TokenError::AlgorithmNotConfigured(printable(alg))),
        }
    }

    fn check_signature(
        &self,
        raw: &str,
        alg: Algorithm,
        header: &serde_json::Map<String, Value>,
    ) -> Result<Value, TokenError> {
        let mut validation = Validation::new(alg);
        validation.required_spec_claims = HashSet::new();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let kid = header.get("kid").and_then(Value::as_str);
        let candidates: Vec<&VerifyKey> = self.keys.iter().filter(|k| k.algorithm == alg).collect();
        let with_kid: Vec<&VerifyKey> = candidates
            .iter()
            .copied()
            .filter(|k| kid.is_some() && k.kid.as_deref() == kid)
            .collect();
        let ordered = if with_kid.is_empty() {
            candidates
        } else {
            with_kid
        };
        for key in ordered {
            match jsonwebtoken::decode::<Value>(raw, &key.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature
                    | jsonwebtoken::errors::ErrorKind::InvalidEcdsaKey
                    | jsonwebtoken::errors::ErrorKind::InvalidEddsaKey
                    | jsonwebtoken::errors::ErrorKind::InvalidRsaKey(_)
                    | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm
                    | jsonwebtoken::errors::ErrorKind::InvalidKeyFormat => continue,
                    jsonwebtoken::errors::ErrorKind::Base64(_)
                    | jsonwebtoken::errors::ErrorKind::Json(_)
                    | jsonwebtoken::errors::ErrorKind::Utf8(_)
                    | jsonwebtoken::errors::ErrorKind::InvalidToken => {
                        return Err(TokenError::Malformed(e.to_string()))
                    }
                    _ => continue,
                },
            }
        }
        Err(TokenError::BadSignature)
    }
}

/// Decodes the JOSE header without trusting it.
fn parse_header(raw: &str) -> Result<serde_json::Map<String, Value>, TokenError> {
    let mut parts = raw.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed(
            "expected three base64url parts separated by dots".into(),
        ));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(h.trim_end_matches('='))
        .map_err(|_| TokenError::Malformed("the header is not base64url".into()))?;
    unique_keys(&bytes, "header")?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(TokenError::Malformed(
            "the header is not a JSON object".into(),
        )),
    }
}

/// Refuses JSON in which one object holds a key twice, at any depth:
/// parsers disagree on which value wins, so two components could read two
/// different identities out of one token.
fn unique_keys(json: &[u8], part: &str) -> Result<(), TokenError> {
    use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};

    struct Unique;
    struct UniqueVisitor;

    impl<'de> Deserialize<'de> for Unique {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(UniqueVisitor)
        }
    }

    impl<'de> Visitor<'de> for UniqueVisitor {
        type Value = Unique;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_unit<E>(self) -> Result<Unique, E> {
            Ok(Unique)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
            while seq.next_element::<Unique>()?.is_some() {}
            Ok(Unique)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
            let mut seen = HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    return Err(A::Error::custom(format!(
                        "the key `{}` appears twice in one object",
                        name::escape(&key)
                    )));
                }
                map.next_value::<Unique>()?;
            }
            Ok(Unique)
        }
    }

    let mut de = serde_json::Deserializer::from_slice(json);
    match Unique::deserialize(&mut de).and_then(|_| de.end()) {
        Ok(()) => Ok(()),
        Err(e) if e.is_data() => Err(TokenError::Malformed(format!(
            "the token's {part}: {e}; moat refuses what two parsers could read differently"
        ))),
        Err(_) => Err(TokenError::Malformed(format!(
            "the token's {part} is not JSON"
        ))),
    }
}

/// A NumericDate claim as whole seconds.
fn time_claim(obj: &serde_json::Map<String, Value>, name: &str) -> Result<Option<i64>, TokenError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
                    _ => Err(TokenError::BadClaim {
                        claim: name.into(),
                        why: "is not a time in seconds",
                    }),
                }
            }
        }
        Some(_) => Err(TokenError::BadClaim {
            claim: name.into(),
            why: "is not a number (seconds since 1970)",
        }),
    }
}

/// A list claim: absent is empty, a list of strings, or one string (split
/// on spaces when `split`, as OAuth's `scope` is).
fn string_list(v: Option<&Value>, claim: &str, split: bool) -> Result<Vec<String>, TokenError> {
    let bad = || TokenError::BadClaim {
        claim: claim.into(),
        why: "is neither a string nor a list of strings",
    };
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if split => Ok(s.split_whitespace().map(str::to_owned).collect()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// Each value of a list claim, under the naming rule ([`name`]).
fn names(values: Vec<String>, claim: &str) -> Result<Vec<GroupName>, TokenError> {
    values
        .iter()
        .map(|v| {
            GroupName::parse(v).map_err(|why| {
                TokenError::Name(NameError::new(format!("token claim `{claim}`"), v, why))
            })
        })
        .collect()
}

/// Keeps an attacker-chosen string short and printable in messages.
fn printable(s: &str) -> String {
    name::escape(&s.chars().take(32).collect::<String>())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `45s`, `3m`, `3m12s`, `48h`, `2h5m`.
pub fn fmt_secs(secs: i64) -> String {
    let s = secs.max(0);
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        let (m, r) = (s / 60, s % 60);
        if r == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{r}s")
        }
    } else {
        let (h, m) = (s / 3600, (s % 3600) / 60);
        if m == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{m}m")
        }
    }
}

fn fmt_time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// The revoked-`jti` file and what was last read from it.
struct RevokedList {
    path: PathBuf,
    state: ArcSwap<RevokedState>,
    /// Milliseconds since the epoch of the last freshness check.
    last_check: AtomicU64,
}

#[derive(Default)]
struct RevokedState {
    ids: HashSet<String>,
    /// (inode, size, mtime ns) of the file read.
    stamp: Option<(u64, u64, i128)>,
    /// Set while the file cannot be read: every token is refused.
    error: Option<String>,
}

/// Seconds between freshness checks of the revocation file on the
/// request path.
const REVOKED_CHECK_MS: u64 = 1000;

impl RevokedList {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            state: ArcSwap::from_pointee(RevokedState::default()),
            last_check: AtomicU64::new(now_ms()),
        }
    }

    fn reload(&self) -> Result<usize, TokenError> {
        match read_revoked(&self.path) {
            Ok((ids, stamp)) => {
                let n = ids.len();
                self.state.store(Arc::new(RevokedState {
                    ids,
                    stamp: Some(stamp),
                    error: None,
                }));
                Ok(n)
            }
            Err(e) => {
                let message = e.to_string();
                self.state.store(Arc::new(RevokedState {
                    ids: HashSet::new(),
                    stamp: None,
                    error: Some(message.clone()),
                }));
                Err(TokenError::RevocationUnavailable {
                    path: self.path.clone(),
                    message,
                })
            }
        }
    }

    /// Reloads when the file changed (checked at most once a second), then
    /// looks `id` up.
    fn check(&self, id: &str) -> Result<(), TokenError> {
        let now = now_ms();
        let last = self.last_check.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= REVOKED_CHECK_MS
            && self
                .last_check
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let current = stamp_of(&self.path).ok();
            let known = self.state.load().stamp;
            if current.is_none() || current != known {
                // An error is recorded in the state and answered below.
                let _ = self.reload();
            }
        }
        let state = self.state.load();
        if let Some(message) = &state.error {
            return Err(TokenError::RevocationUnavailable {
                path: self.path.clone(),
                message: message.clone(),
            });
        }
        if state.ids.contains(id) {
            return Err(TokenError::Revoked(printable(id)));
        }
        Ok(())
    }
}

fn stamp_of(path: &Path) -> std::io::Result<(u64, u64, i128)> {
    let m = std::fs::metadata(path)?;
    Ok((
        m.ino(),
        m.size(),
        i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    ))
}

fn read_revoked(path: &Path) -> std::io::Result<(HashSet<String>, (u64, u64, i128))> {
    // Stamp first: a change racing the read is seen at the next check.
    let stamp = stamp_of(path)?;
    let text = std::fs::read_to_string(path)?;
    let ids = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    Ok((ids, stamp))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Maps the config's algorithm names to jsonwebtoken's.
pub fn algorithm_of(a: crate::config::TokenAlgorithm) -> Algorithm {
    use crate::config::TokenAlgorithm as T;
    match a {
        T::ES256 => Algorithm::ES256,
        T::ES384 => Algorithm::ES384,
        T::RS256 => Algorithm::RS256,
        T::PS256 => Algorithm::PS256,
        T::EdDSA => Algorithm::EdDSA,
        T::HS256 => Algorithm::HS256,
    }
}
