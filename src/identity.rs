//! Who is asking: the identity of a client, from its TLS certificate and,
//! when tokens are enabled, from a bearer token.
//!
//! The certificate part runs once per connection, right after the handshake
//! ([`CertInfo::from_der`]); the token part runs per request
//! ([`Authenticator::authenticate`]), since the docker CLI sends its
//! `Authorization` header on every request, hijacked ones included.

pub mod token;

use std::sync::Arc;

use http::HeaderMap;
use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::config::{CertGroups, CertUser, CertificateAuth};

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    Certificate,
    Token,
}

/// What moat knows about a verified client certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    /// The subject as an RFC 4514-style string.
    pub subject: String,
    /// Serial number, lower-case hex without leading zeros.
    pub serial: String,
    pub fingerprint_sha256: String,
    /// RFC 3339.
    pub not_after: String,
    /// The user name under `auth.certificate.user`.
    #[serde(skip)]
    pub user: Option<String>,
    /// The groups under `auth.certificate.groups`.
    #[serde(skip)]
    pub groups: Vec<String>,
}

/// The authenticated identity a request is decided and audited under.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub groups: Vec<String>,
    pub auth_method: AuthMethod,
    /// Token scopes; empty for certificate-only clients.
    pub scopes: Vec<String>,
    /// All token claims, or JSON null.
    pub claims: serde_json::Value,
    /// The client certificate, when one was presented (also for token
    /// requests: both are kept for policy and audit).
    pub certificate: Option<Arc<CertInfo>>,
    /// The token's `jti`, if any.
    pub token_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the client certificate cannot be parsed")]
    BadCertificate,
    #[error("the client certificate has no {0} to take the user name from")]
    NoUser(&'static str),
}

/// Why a request was not authenticated. Every variant answers 401.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "authentication required: present a client certificate or an `Authorization: Bearer` token"
    )]
    Missing,
    #[error("the client certificate names no user ({0}); ask for a certificate issued with `moat certs issue`")]
    CertificateUser(&'static str),
    #[error("bearer tokens are not enabled on this gateway (auth.tokens is not configured)")]
    TokensDisabled,
    #[error("the Authorization header is not `Bearer <token>`")]
    MalformedHeader,
    #[error("token rejected: {0}")]
    Token(#[from] token::TokenError),
}

impl AuthError {
    /// A short, stable label for the `moat_auth_failures_total{reason}` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::CertificateUser(_) => "certificate_user",
            AuthError::TokensDisabled => "tokens_disabled",
            AuthError::MalformedHeader => "malformed_header",
            AuthError::Token(e) => e.reason(),
        }
    }
}

impl CertInfo {
    /// Reads the identity out of a verified end-entity certificate.
    pub fn from_der(der: &[u8], mapping: &CertificateAuth) -> Result<CertInfo, IdentityError> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|_| IdentityError::BadCertificate)?;
        let subject = cert.subject();
        let attr = |oid: x509_parser::oid_registry::Oid<'static>| -> Vec<String> {
            subject
                .iter_by_oid(&oid)
                .filter_map(|a| a.as_str().ok().map(str::to_owned))
                .collect()
        };
        use x509_parser::oid_registry as oids;
        let user = match mapping.user {
            CertUser::Cn => attr(oids::OID_X509_COMMON_NAME).into_iter().next(),
            CertUser::SanEmail | CertUser::SanUri => cert
                .subject_alternative_name()
                .ok()
                .flatten()
                .and_then(|san| {
                    san.value
                        .general_names
                        .iter()
                        .find_map(|n| match (mapping.user, n) {
                            (CertUser::SanEmail, GeneralName::RFC822Name(e)) => Some(e.to_string()),
                            (CertUser::SanUri, GeneralName::URI(u)) => Some(u.to_string()),
                            _ => None,
                        })
                }),
        };
        let groups = match mapping.groups {
            CertGroups::O => attr(oids::OID_X509_ORGANIZATION_NAME),
            CertGroups::Ou => attr(oids::OID_X509_ORGANIZATIONAL_UNIT),
        };
        let not_after = cert
            .validity()
            .not_after
            .to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Ok(CertInfo {
            subject: subject.to_string(),
            serial: cert
                .tbs_certificate
                .raw_serial_as_string()
                .replace(':', "")
                .trim_start_matches('0')
                .to_lowercase(),
            fingerprint_sha256: hex::encode(Sha256::digest(der)),
            not_after,
            user,
            groups,
        })
    }
}

/// Turns a connection's certificate and a request's headers into an
/// [`Identity`]. Shared by every connection; cheap to call.
pub struct Authenticator {
    tokens: Option<token::Verifier>,
    user_source: &'static str,
}

impl Authenticator {
    pub fn new(mapping: &CertificateAuth, tokens: Option<token::Verifier>) -> Self {
        let user_source = match mapping.user {
            CertUser::Cn => "subject CN",
            CertUser::SanEmail => "email SAN",
            CertUser::SanUri => "URI SAN",
        };
        Self {
            tokens,
            user_source,
        }
    }

    /// The token verifier, for reloading its revocation list.
    pub fn tokens(&self) -> Option<&token::Verifier> {
        self.tokens.as_ref()
    }

    /// A token, when present, must be valid, and its identity wins; the
    /// certificate is kept beside it. Without a token the certificate must
    /// name a user.
    pub fn authenticate(
        &self,
        cert: Option<&Arc<CertInfo>>,
        headers: &HeaderMap,
    ) -> Result<Identity, AuthError> {
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let verifier = self.tokens.as_ref().ok_or(AuthError::TokensDisabled)?;
            let raw = value
                .to_str()
                .ok()
                .and_then(bearer)
                .ok_or(AuthError::MalformedHeader)?;
            let t = verifier.verify(raw)?;
            return Ok(Identity {
                name: t.user,
                groups: t.groups,
                auth_method: AuthMethod::Token,
                scopes: t.scopes,
                claims: t.claims,
                certificate: cert.cloned(),
                token_id: t.id,
            });
        }
        let cert = cert.ok_or(AuthError::Missing)?;
        let name = cert
            .user
            .clone()
            .ok_or(AuthError::CertificateUser(self.user_source))?;
        Ok(Identity {
            name,
            groups: cert.groups.clone(),
            auth_method: AuthMethod::Certificate,
            scopes: Vec::new(),
            claims: serde_json::Value::Null,
            certificate: Some(cert.clone()),
            token_id: None,
        })
    }
}

/// `Bearer <token>`, scheme case-insensitive as RFC 7235 says.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    let token = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Basic abc"), None);
    }
}
