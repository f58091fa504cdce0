//! Minting tokens: `moat token issue`, `moat up` and the tests. The
//! algorithm follows from the key (EC P-256 → ES256, P-384 → ES384,
//! Ed25519 → EdDSA, RSA → RS256, a non-PEM file → HS256 secret), and every
//! token gets a random `jti` and `iat`/`nbf`/`exp`.

use std::path::Path;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::Rng;
use serde_json::{json, Value};

use super::keys::MIN_HS256_SECRET;
use crate::identity::name::{GroupName, NameError, UserName, Why};

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{path}: cannot read the key: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the signing key is not usable: {0}")]
    Key(String),
    #[error("algorithm {requested:?} does not fit a {key} key")]
    Mismatch {
        requested: Algorithm,
        key: &'static str,
    },
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A private key (or HS256 secret) and the algorithm it signs with.
pub struct SigningKey {
    pub algorithm: Algorithm,
    key: EncodingKey,
}

impl SigningKey {
    /// Reads a PEM private key (PKCS#8, or PKCS#1 for RSA) or an HS256
    /// secret file. `algorithm` overrides the one the key implies, within
    /// its family (e.g. PS256 for an RSA key).
    pub fn load(path: &Path, algorithm: Option<Algorithm>) -> Result<Self, SignError> {
        let bytes = std::fs::read(path).map_err(|source| SignError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes, algorithm)
    }

    pub fn from_bytes(bytes: &[u8], algorithm: Option<Algorithm>) -> Result<Self, SignError> {
        let key_err = |e: jsonwebtoken::errors::Error| SignError::Key(e.to_string());
        if !bytes.starts_with(b"-----BEGIN") {
            let secret = bytes.strip_suffix(b"\n").unwrap_or(bytes);
            let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
            if secret.len() < MIN_HS256_SECRET {
                return Err(SignError::Key(format!(
                    "not a PEM key, and too short ({} bytes) for an HS256 secret (at least {MIN_HS256_SECRET})",
                    secret.len()
                )));
            }
            let alg = check(algorithm, Algorithm::HS256, "HS256 secret")?;
            return Ok(Self {
                algorithm: alg,
                key: EncodingKey::from_secret(secret),
            });
        }
        let text = String::from_utf8_lossy(bytes);
        let implied = if text.contains("BEGIN RSA PRIVATE KEY") {
            Algorithm::RS256
        } else {
            let kp = rcgen::KeyPair::from_pem(&text).map_err(|e| SignError::Key(e.to_string()))?;
            let a = kp.algorithm();
            if a == &rcgen::PKCS_ECDSA_P256_SHA256 {
                Algorithm::ES256
            } else if a == &rcgen::PKCS_ECDSA_P384_SHA384 {
                Algorithm::ES384
            } else if a == &rcgen::PKCS_ED25519 {
                Algorithm::EdDSA
            } else if a == &rcgen::PKCS_RSA_SHA256 {
                Algorithm::RS256
            } else {
                return Err(SignError::Key(format!("unsupported key type {a:?}")));
            }
        };
        let (alg, key) = match implied {
            Algorithm::ES256 | Algorithm::ES384 => (
                check(algorithm, implied, "EC")?,
                EncodingKey::from_ec_pem(bytes).map_err(key_err)?,
            ),
            Algorithm::EdDSA => (
                check(algorithm, implied, "Ed25519")?,
                EncodingKey::from_ed_pem(bytes).map_err(key_err)?,
            ),
            _ => (
                check(algorithm, implied, "RSA")?,
                EncodingKey::from_rsa_pem(bytes).map_err(key_err)?,
            ),
        };
        Ok(Self {
            algorithm: alg,
            key,
        })
    }
}

fn check(
    requested: Option<Algorithm>,
    implied: Algorithm,
    key: &'static str,
) -> Result<Algorithm, SignError> {
    match requested {
        None => Ok(implied),
        Some(r) if r == implied => Ok(r),
        Some(r)
            if implied.family() == jsonwebtoken::AlgorithmFamily::Rsa
                && r.family() == implied.family() =>
        {
            Ok(r)
        }
        Some(r) => Err(SignError::Mismatch { requested: r, key }),
    }
}

/// What a new token says.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub subject: String,
    pub groups: Vec<String>,
    pub scopes: Vec<String>,
    pub ttl: Duration,
    pub issuer: Option<String>,
    pub audience: Option<String>,
}

impl TokenRequest {
    /// The naming rule moat applies when it verifies ([`crate::identity::name`]),
    /// applied before signing: moat never mints a token it would refuse.
    /// A scope cannot hold a space either, since the `scope` claim is
    /// space-separated.
    pub fn check(&self) -> Result<(), NameError> {
        UserName::parse(&self.subject)
            .map_err(|why| NameError::new("--subject", &self.subject, why))?;
        for g in &self.groups {
            GroupName::parse(g).map_err(|why| NameError::new("--group", g, why))?;
        }
        for sc in &self.scopes {
            GroupName::parse(sc).map_err(|why| NameError::new("--scope", sc, why))?;
            if sc.contains(' ') {
                return Err(NameError::new(
                    "--scope",
                    sc,
                    Why::Forbidden {
                        ch: ' ',
                        class: "a space (the scope claim is space-separated)",
                    },
                ));
            }
        }
        Ok(())
    }

    /// The claims, issued at `now` (seconds since the epoch): `sub`,
    /// `groups` and `scope` (space-separated) when non-empty, `iss`, `aud`,
    /// `iat` = `nbf` = now, `exp` = now + ttl, and a random 128-bit `jti`.
    pub fn claims(&self, now: i64) -> Value {
        let mut jti = [0u8; 16];
        rand::rng().fill(&mut jti[..]);
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let mut c = json!({
            "sub": self.subject,
            "jti": hex::encode(jti),
            "iat": now,
            "nbf": now,
            "exp": now.saturating_add(ttl),
        });
        if let Value::Object(m) = &mut c {
            if let Some(i) = &self.issuer {
                m.insert("iss".into(), json!(i));
            }
            if let Some(a) = &self.audience {
                m.insert("aud".into(), json!(a));
            }
            if !self.groups.is_empty() {
                m.insert("groups".into(), json!(self.groups));
            }
            if !self.scopes.is_empty() {
                m.insert("scope".into(), json!(self.scopes.join(" ")));
            }
        }
        c
    }
}

/// Signs arbitrary claims (a JSON object) with `key`.
pub fn sign(key: &SigningKey, claims: &Value) -> Result<String, SignError> {
    let header = Header::new(key.algorithm);
    jsonwebtoken::encode(&header, claims, &key.key).map_err(|e| SignError::Sign(e.to_string()))
}
