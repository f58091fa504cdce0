//! Who a client is: the `auth` section (client certificates, bearer
//! tokens, and local users on the unix socket).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Invalid;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    #[serde(default)]
    pub certificate: CertificateAuth,
    /// Bearer tokens (JWT). Absent: tokens are not accepted.
    #[serde(default)]
    pub tokens: Option<Tokens>,
    /// Local users on `listen.unix`: their policy groups.
    #[serde(default)]
    pub local: LocalAuth,
}

/// How a local user (identified by the kernel on `listen.unix`) gets its
/// policy groups: the union of its entry under `users` and the entries
/// under `groups` of every group it is a member of (from the group
/// database). `root` maps to `admin` unless `users` names `root` itself;
/// everyone else has no groups until mapped here.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalAuth {
    /// Local user name (or `uid:N` for a uid without a passwd entry) to
    /// policy groups.
    #[serde(default)]
    pub users: BTreeMap<String, Vec<String>>,
    /// Local group name to policy groups.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertUser {
    #[default]
    Cn,
    SanEmail,
    SanUri,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertGroups {
    #[default]
    O,
    Ou,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateAuth {
    /// Which part of the client certificate names the user.
    #[serde(default)]
    pub user: CertUser,
    /// Which subject attribute lists the user's groups.
    #[serde(default)]
    pub groups: CertGroups,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim.
    pub audience: String,
    /// Verification keys. Exactly one of `keys` and `jwks` must be set.
    #[serde(default)]
    pub keys: Vec<TokenKey>,
    /// A JWKS file of verification keys.
    #[serde(default)]
    pub jwks: Option<PathBuf>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    #[serde(default = "d30s", with = "humantime_serde")]
    pub leeway: Duration,
    /// Tokens whose `exp - iat` exceeds this are refused, and so are tokens
    /// without `exp`.
    #[serde(default = "d24h", with = "humantime_serde")]
    pub max_ttl: Duration,
    #[serde(default)]
    pub claims: TokenClaims,
    /// A file of revoked `jti` values, one a line; reloaded when it changes.
    #[serde(default)]
    pub revoked: Option<PathBuf>,
}

fn d30s() -> Duration {
    Duration::from_secs(30)
}

fn d24h() -> Duration {
    Duration::from_secs(24 * 3600)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenKey {
    pub file: PathBuf,
    pub algorithm: TokenAlgorithm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TokenAlgorithm {
    ES256,
    ES384,
    RS256,
    PS256,
    EdDSA,
    HS256,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenClaims {
    #[serde(default = "default_claim_user")]
    pub user: String,
    #[serde(default = "default_claim_groups")]
    pub groups: String,
    #[serde(default = "default_claim_scopes")]
    pub scopes: String,
}

impl Default for TokenClaims {
    fn default() -> Self {
        Self {
            user: default_claim_user(),
            groups: default_claim_groups(),
            scopes: default_claim_scopes(),
        }
    }
}

fn default_claim_user() -> String {
    "sub".into()
}
fn default_claim_groups() -> String {
    "groups".into()
}
fn default_claim_scopes() -> String {
    "scope".into()
}

impl Auth {
    pub(super) fn resolve_paths(&mut self, r: &impl Fn(&mut PathBuf)) {
        if let Some(t) = &mut self.tokens {
            for k in &mut t.keys {
                r(&mut k.file);
            }
            if let Some(j) = &mut t.jwks {
                r(j);
            }
            if let Some(rv) = &mut t.revoked {
                r(rv);
            }
        }
    }

    pub(super) fn check(&self) -> Result<(), Invalid> {
        if let Some(t) = &self.tokens {
            if t.keys.is_empty() == t.jwks.is_none() {
                return Err((
                    "auth.tokens",
                    "set exactly one of `keys` (a list of {file, algorithm}) and `jwks` (a JWKS file)"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}
