//! Loading the token verification keys named by `auth.tokens.keys` or
//! `auth.tokens.jwks`. Each key is bound to exactly one algorithm here, and
//! the verifier only ever uses a key for its own algorithm.

use std::path::Path;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::{algorithm_of, TokenError};
use crate::config::{TokenAlgorithm, Tokens};

/// Shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the
/// hash size).
pub(super) const MIN_HS256_SECRET: usize = 32;

/// One verification key, bound to its algorithm.
pub struct VerifyKey {
    pub algorithm: Algorithm,
    pub key: DecodingKey,
    /// The JWKS `kid`, if any.
    pub kid: Option<String>,
}

fn config_err(key: &'static str, message: String) -> TokenError {
    TokenError::Config { key, message }
}

pub(super) fn load(cfg: &Tokens) -> Result<Vec<VerifyKey>, TokenError> {
    if let Some(jwks) = &cfg.jwks {
        return load_jwks(jwks);
    }
    if cfg.keys.is_empty() {
        return Err(config_err(
            "keys",
            "no keys: set `keys` (a list of {file, algorithm}) or `jwks`".into(),
        ));
    }
    cfg.keys
        .iter()
        .map(|k| {
            Ok(VerifyKey {
                algorithm: algorithm_of(k.algorithm),
                key: load_key_file(&k.file, k.algorithm)?,
                kid: None,
            })
        })
        .collect()
}

/// A PEM public key (or certificate) for the asymmetric algorithms; the raw
/// file contents, trailing newline removed, for HS256.
pub(super) fn load_key_file(path: &Path, alg: TokenAlgorithm) -> Result<DecodingKey, TokenError> {
    let bytes = std::fs::read(path)
        .map_err(|e| config_err("keys", format!("{}: cannot read: {e}", path.display())))?;
    let bad = |what: &str, e: jsonwebtoken::errors::Error| {
        config_err(
            "keys",
            format!(
                "{}: not {what} for algorithm {alg:?} ({e}); fix the file or the algorithm",
                path.display()
            ),
        )
    };
    match alg {
        TokenAlgorithm::HS256 => {
            let secret = trim_newline(&bytes);
            if secret.starts_with(b"-----BEGIN") {
                return Err(config_err(
                    "keys",
                    format!(
                        "{}: holds a PEM key, but HS256 needs a shared secret; use the key's own algorithm (ES256, RS256, …)",
                        path.display()
                    ),
                ));
            }
            if secret.len() < MIN_HS256_SECRET {
                return Err(config_err(
                    "keys",
                    format!(
                        "{}: the HS256 secret is {} bytes; use at least {MIN_HS256_SECRET} (e.g. `head -c 32 /dev/urandom | base64 > FILE`)",
                        path.display(),
                        secret.len()
                    ),
                ));
            }
            Ok(DecodingKey::from_secret(secret))
        }
        TokenAlgorithm::ES256 | TokenAlgorithm::ES384 => {
            DecodingKey::from_ec_pem(&bytes).map_err(|e| bad("an EC public key", e))
        }
        TokenAlgorithm::RS256 | TokenAlgorithm::PS256 => {
            DecodingKey::from_rsa_pem(&bytes).map_err(|e| bad("an RSA public key", e))
        }
        TokenAlgorithm::EdDSA => {
            DecodingKey::from_ed_pem(&bytes).map_err(|e| bad("an Ed25519 public key", e))
        }
    }
}

fn trim_newline(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

/// The signing keys of a JWKS file. Symmetric (`oct`) keys are refused (a
/// JWKS is public); keys for encryption, and key types moat cannot verify,
/// are skipped; at least one usable key must remain.
fn load_jwks(path: &Path) -> Result<Vec<VerifyKey>, TokenError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| config_err("jwks", format!("{}: cannot read: {e}", path.display())))?;
    let set: JwkSet = serde_json::from_str(&text)
        .map_err(|e| config_err("jwks", format!("{}: not a JWKS: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            return Err(config_err(
                "jwks",
                format!(
                    "{}: key {i} is a symmetric (oct) key; a JWKS holds public keys only (use `keys` with HS256 for a shared secret)",
                    path.display()
                ),
            ));
        }
        let declared: Option<Algorithm> = jwk
            .common
            .key_algorithm
            .and_then(|a| serde_json::to_value(a).ok())
            .and_then(|v| v.as_str().and_then(|s| s.parse().ok()));
        let inferred = match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(p) => match p.curve {
                EllipticCurve::P256 => Some(Algorithm::ES256),
                EllipticCurve::P384 => Some(Algorithm::ES384),
                _ => None,
            },
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                Some(Algorithm::EdDSA)
            }
            AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
            _ => None,
        };
        let Some(alg) = declared.or(inferred) else {
            tracing::warn!(file = %path.display(), key = i, "skipping a JWKS key moat cannot verify with");
            continue;
        };
        if !matches!(
            alg,
            Algorithm::ES256
                | Algorithm::ES384
                | Algorithm::RS256
                | Algorithm::PS256
                | Algorithm::EdDSA
        ) || inferred.is_some_and(|i| i.family() != alg.family())
        {
            tracing::warn!(file = %path.display(), key = i, ?alg, "skipping a JWKS key with an unsupported algorithm");
            continue;
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
            config_err(
                "jwks",
                format!("{}: key {i} is unusable: {e}", path.display()),
            )
        })?;
        out.push(VerifyKey {
            algorithm: alg,
            key,
            kid: jwk.common.key_id.clone(),
        });
    }
    if out.is_empty() {
        return Err(config_err(
            "jwks",
            format!(
                "{}: no usable signing key (ES256, ES384, RS256, PS256 or EdDSA)",
                path.display()
            ),
        ));
    }
    Ok(out)
}
