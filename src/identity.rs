//! Who is asking: the identity of a client, from its TLS certificate and,
//! when tokens are enabled, from a bearer token.
//!
//! The certificate part runs once per connection, right after the handshake
//! ([`CertInfo::from_der`]); the token part runs per request
//! ([`Authenticator::authenticate`]), since the docker CLI sends its
//! `Authorization` header on every request, hijacked ones included.

pub mod local;
pub mod name;
pub mod token;

use std::sync::Arc;

use http::HeaderMap;
use serde::Serialize;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use name::{GroupName, NameError, UserName};

use crate::config::{CertGroups, CertUser, CertificateAuth};

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    Certificate,
    Token,
    /// A local user on `listen.unix`, identified by the kernel.
    Peer,
}

/// What moat knows about a verified client certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    /// The subject as an RFC 4514-style string, escaped ([`name::escape`]):
    /// attributes that are not names are not checked, only made harmless.
    pub subject: String,
    /// Serial number, lower-case hex without leading zeros.
    pub serial: String,
    pub fingerprint_sha256: String,
    /// RFC 3339.
    pub not_after: String,
    /// The user and groups under `auth.certificate`, or why the
    /// certificate names none that moat accepts ([`name`]). A refused name
    /// is answered 401 on every request of the connection.
    #[serde(skip)]
    pub names: Result<CertNames, NameError>,
    /// Every certificate the client presented, leaf first, as revocation
    /// needs them.
    #[serde(skip)]
    pub chain: Vec<ChainLink>,
}

/// The names a certificate carries, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertNames {
    pub user: UserName,
    pub groups: Vec<GroupName>,
}

/// One certificate of a client's chain, as a CRL names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    /// Lower-case hex, no leading zeros.
    pub serial: String,
    /// The issuer's Name, DER (what a CRL's issuer is compared with).
    pub issuer_der: Vec<u8>,
    /// The subject, escaped, for logs.
    pub subject: String,
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
    /// The kernel's credentials of a local client (`listen.unix`).
    pub local: Option<local::PeerCred>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the client certificate cannot be parsed")]
    BadCertificate,
}

/// Why a request was not authenticated. Every variant answers 401.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "authentication required: present a client certificate or an `Authorization: Bearer` token"
    )]
    Missing,
    #[error("{0}; ask for a certificate issued with `moat certs issue`, which only writes names moat accepts (printable text in NFC, one CN, at most 256 bytes)")]
    CertificateName(NameError),
    #[error("the request has {0} Authorization headers; send exactly one credential")]
    SeveralAuthorization(usize),
    #[error("the bearer token names user \"{token}\" but the client certificate names \"{certificate}\"; one request, one identity: send a token for the certificate's user, or no certificate")]
    Disagree { token: String, certificate: String },
    #[error("bearer tokens are not enabled on this gateway (auth.tokens is not configured)")]
    TokensDisabled,
    #[error("the Authorization header is not `Bearer <token>`")]
    MalformedHeader,
    #[error("token rejected: {0}")]
    Token(#[from] token::TokenError),
    #[error("requests on the local socket are authenticated by the kernel as the connecting user; remove the Authorization header")]
    LocalWithCredential,
    #[error("{0}; ask an administrator (the local socket names users from the passwd database)")]
    Local(local::LocalError),
}

impl AuthError {
    /// A short, stable label for the `moat_auth_failures_total{reason}` metric.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::CertificateName(_) => "certificate_name",
            AuthError::SeveralAuthorization(_) => "several_credentials",
            AuthError::Disagree { .. } => "credentials_disagree",
            AuthError::TokensDisabled => "tokens_disabled",
            AuthError::MalformedHeader => "malformed_header",
            AuthError::Token(e) => e.reason(),
            AuthError::LocalWithCredential => "local_with_credential",
            AuthError::Local(_) => "local_user",
        }
    }
}

impl CertInfo {
    /// Reads the identity out of a verified end-entity certificate.
    pub fn from_der(der: &[u8], mapping: &CertificateAuth) -> Result<CertInfo, IdentityError> {
        Self::from_chain(&[der], mapping)
    }

    /// Reads the identity out of a verified chain (leaf first, as the
    /// client sent it).
    pub fn from_chain(
        chain: &[&[u8]],
        mapping: &CertificateAuth,
    ) -> Result<CertInfo, IdentityError> {
        let der = *chain.first().ok_or(IdentityError::BadCertificate)?;
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|_| IdentityError::BadCertificate)?;
        let subject = cert.subject();
        let links = chain
            .iter()
            .map(|c| ChainLink::from_der(c))
            .collect::<Result<Vec<_>, _>>()?;
        let not_after = cert
            .validity()
            .not_after
            .to_datetime()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Ok(CertInfo {
            subject: name::escape(&subject.to_string()),
            serial: serial_hex(cert.raw_serial()),
            fingerprint_sha256: hex::encode(Sha256::digest(der)),
            not_after,
            names: cert_names(&cert, mapping),
            chain: links,
        })
    }

    /// The user name, if the certificate names one moat accepts.
    pub fn user(&self) -> Option<&UserName> {
        self.names.as_ref().ok().map(|n| &n.user)
    }
}

impl ChainLink {
    pub fn from_der(der: &[u8]) -> Result<ChainLink, IdentityError> {
        let (_, c) = X509Certificate::from_der(der).map_err(|_| IdentityError::BadCertificate)?;
        Ok(ChainLink {
            serial: serial_hex(c.raw_serial()),
            issuer_der: c.issuer().as_raw().to_vec(),
            subject: name::escape(&c.subject().to_string()),
        })
    }
}

/// Lower-case hex without leading zeros, as the CRL code prints serials.
pub fn serial_hex(raw: &[u8]) -> String {
    let s = hex::encode(raw);
    let t = s.trim_start_matches('0');
    if t.is_empty() {
        "0".into()
    } else {
        t.into()
    }
}

/// The user and groups of a certificate under `mapping`.
fn cert_names(
    cert: &X509Certificate<'_>,
    mapping: &CertificateAuth,
) -> Result<CertNames, NameError> {
    use x509_parser::oid_registry as oids;
    let subject = cert.subject();
    let user = match mapping.user {
        CertUser::Cn => name::subject_user(subject)?,
        CertUser::SanEmail | CertUser::SanUri => {
            let source = match mapping.user {
                CertUser::SanEmail => "the client certificate's email SAN",
                _ => "the client certificate's URI SAN",
            };
            let sans = cert.subject_alternative_name().map_err(|_| NameError {
                source: source.into(),
                shown: None,
                why: name::Why::BadExtension,
            })?;
            let values: Vec<&str> = sans
                .iter()
                .flat_map(|san| san.value.general_names.iter())
                .filter_map(|n| match (mapping.user, n) {
                    (CertUser::SanEmail, GeneralName::RFC822Name(e)) => Some(*e),
                    (CertUser::SanUri, GeneralName::URI(u)) => Some(*u),
                    _ => None,
                })
                .collect();
            name::san_user(&values, source)?
        }
    };
    let groups = match mapping.groups {
        CertGroups::O => name::subject_groups(
            subject,
            &oids::OID_X509_ORGANIZATION_NAME,
            "the client certificate's subject O",
        )?,
        CertGroups::Ou => name::subject_groups(
            subject,
            &oids::OID_X509_ORGANIZATIONAL_UNIT,
            "the client certificate's subject OU",
        )?,
    };
    Ok(CertNames { user, groups })
}

/// Turns a connection's certificate and a request's headers into an
/// [`Identity`]. Shared by every connection; cheap to call.
pub struct Authenticator {
    tokens: Option<token::Verifier>,
}

impl Authenticator {
    pub fn new(_mapping: &CertificateAuth, tokens: Option<token::Verifier>) -> Self {
        Self { tokens }
    }

    /// The token verifier, for reloading its revocation list.
    pub fn tokens(&self) -> Option<&token::Verifier> {
        self.tokens.as_ref()
    }

    /// One credential per request:
    /// - at most one `Authorization` header;
    /// - a client certificate, when presented, must name a user moat
    ///   accepts, even beside a token (a token does not rescue it);
    /// - a token, when present, must be valid and, beside a certificate,
    ///   name the same user; its groups and scopes then apply.
    ///
    /// Without a token the certificate's identity applies. Refusals are
    /// logged (escaped: no client byte reaches the log raw).
    pub fn authenticate(
        &self,
        cert: Option<&Arc<CertInfo>>,
        headers: &HeaderMap,
    ) -> Result<Identity, AuthError> {
        let result = self.authenticate_inner(cert, headers);
        if let Err(e) = &result {
            tracing::info!(
                reason = e.reason(),
                serial = cert.map(|c| c.serial.as_str()).unwrap_or(""),
                error = %e,
                "authentication refused"
            );
        }
        result
    }

    fn authenticate_inner(
        &self,
        cert: Option<&Arc<CertInfo>>,
        headers: &HeaderMap,
    ) -> Result<Identity, AuthError> {
        let mut authorization = headers.get_all(http::header::AUTHORIZATION).iter();
        let first = authorization.next();
        let more = authorization.count();
        if more > 0 {
            return Err(AuthError::SeveralAuthorization(more + 1));
        }
        let cert_names = match cert {
            Some(c) => Some(
                c.names
                    .as_ref()
                    .map_err(|e| AuthError::CertificateName(e.clone()))?,
            ),
            None => None,
        };
        if let Some(value) = first {
            let verifier = self.tokens.as_ref().ok_or(AuthError::TokensDisabled)?;
            let raw = value
                .to_str()
                .ok()
                .and_then(bearer)
                .ok_or(AuthError::MalformedHeader)?;
            let t = verifier.verify(raw)?;
            if let Some(n) = cert_names {
                if n.user != t.user {
                    return Err(AuthError::Disagree {
                        token: name::escape(t.user.as_str()),
                        certificate: name::escape(n.user.as_str()),
                    });
                }
            }
            return Ok(Identity {
                name: t.user.into_string(),
                groups: t.groups.into_iter().map(GroupName::into_string).collect(),
                auth_method: AuthMethod::Token,
                scopes: t.scopes.into_iter().map(GroupName::into_string).collect(),
                claims: t.claims,
                certificate: cert.cloned(),
                token_id: t.id,
                local: None,
            });
        }
        let (Some(cert), Some(names)) = (cert, cert_names) else {
            return Err(AuthError::Missing);
        };
        Ok(Identity {
            name: names.user.as_str().to_owned(),
            groups: names.groups.iter().map(|g| g.as_str().to_owned()).collect(),
            auth_method: AuthMethod::Certificate,
            scopes: Vec::new(),
            claims: serde_json::Value::Null,
            certificate: Some(cert.clone()),
            token_id: None,
            local: None,
        })
    }

    /// A request on the local socket: the connection's peer, as the kernel
    /// and `auth.local` named it. Any credential the request carries is
    /// refused: one request, one identity, and the kernel's is final.
    pub fn authenticate_local(
        &self,
        peer: &Result<Arc<local::LocalPeer>, local::LocalError>,
        headers: &HeaderMap,
    ) -> Result<Identity, AuthError> {
        if headers.contains_key(http::header::AUTHORIZATION) {
            return Err(AuthError::LocalWithCredential);
        }
        let peer = peer.as_ref().map_err(|e| AuthError::Local(e.clone()))?;
        Ok(Identity {
            name: peer.user.as_str().to_owned(),
            groups: peer.groups.iter().map(|g| g.as_str().to_owned()).collect(),
            auth_method: AuthMethod::Peer,
            scopes: Vec::new(),
            claims: serde_json::Value::Null,
            certificate: None,
            token_id: None,
            local: Some(peer.cred),
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

    use super::name::tests::hostile;

    /// A connection's certificate as [`CertInfo::from_chain`] would read it
    /// from a certificate with this subject.
    fn cert_with_subject(subject_der: &[u8]) -> Arc<CertInfo> {
        use x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME;
        let (_, subject) = x509_parser::x509::X509Name::from_der(subject_der).unwrap();
        let names = name::subject_user(&subject).and_then(|user| {
            let groups = name::subject_groups(&subject, &OID_X509_ORGANIZATION_NAME, "subject O")?;
            Ok(CertNames { user, groups })
        });
        Arc::new(CertInfo {
            subject: name::escape(&subject.to_string()),
            serial: "1f".into(),
            fingerprint_sha256: String::new(),
            not_after: String::new(),
            names,
            chain: Vec::new(),
        })
    }

    /// A self-signed certificate with CN `cn` and these SANs (DER).
    fn cert_with_sans(cn: &str, sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        p.subject_alt_names = sans;
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_san_user_needs_exactly_one_san_of_its_kind() {
        use rcgen::SanType;
        let email = |e: &str| SanType::Rfc822Name(e.try_into().unwrap());
        let uri = |u: &str| SanType::URI(u.try_into().unwrap());
        let by = |user| CertificateAuth {
            user,
            ..CertificateAuth::default()
        };
        let one = cert_with_sans("x", vec![email("alice@example.com"), uri("spiffe://e/a")]);
        let names = CertInfo::from_der(&one, &by(CertUser::SanEmail))
            .unwrap()
            .names
            .unwrap();
        assert_eq!(names.user, "alice@example.com");
        let names = CertInfo::from_der(&one, &by(CertUser::SanUri))
            .unwrap()
            .names
            .unwrap();
        assert_eq!(names.user, "spiffe://e/a");

        let two = cert_with_sans(
            "x",
            vec![email("alice@example.com"), email("admin@example.com")],
        );
        let e = CertInfo::from_der(&two, &by(CertUser::SanEmail))
            .unwrap()
            .names
            .unwrap_err();
        assert!(
            e.to_string().contains("there are 2; exactly one is needed"),
            "{e}"
        );
        let none = cert_with_sans("x", vec![uri("spiffe://e/a")]);
        let e = CertInfo::from_der(&none, &by(CertUser::SanEmail))
            .unwrap()
            .names
            .unwrap_err();
        assert!(e.to_string().contains("there is none"), "{e}");
        let bad = cert_with_sans("x", vec![email("ali\u{7}ce@example.com")]);
        let e = CertInfo::from_der(&bad, &by(CertUser::SanEmail))
            .unwrap()
            .names
            .unwrap_err();
        assert!(e.to_string().contains("\\u{7}"), "{e}");
    }

    fn authenticator() -> Authenticator {
        Authenticator::new(&CertificateAuth::default(), None)
    }

    #[test]
    fn two_authorization_headers_are_refused_before_anything_else() {
        let good = cert_with_subject(&hostile::corpus()[0].subject_der());
        let mut headers = HeaderMap::new();
        headers.append(http::header::AUTHORIZATION, "Bearer a".parse().unwrap());
        headers.append(http::header::AUTHORIZATION, "Bearer b".parse().unwrap());
        let e = authenticator()
            .authenticate(Some(&good), &headers)
            .unwrap_err();
        assert!(matches!(e, AuthError::SeveralAuthorization(2)), "{e}");
        assert_eq!(e.reason(), "several_credentials");
    }

    #[test]
    fn a_certificate_whose_name_is_refused_is_refused_on_every_request() {
        for case in hostile::corpus() {
            let cert = cert_with_subject(&case.subject_der());
            let e = authenticator()
                .authenticate(Some(&cert), &HeaderMap::new())
                .unwrap_err();
            assert!(
                matches!(e, AuthError::CertificateName(_)),
                "{}: {e}",
                case.label
            );
            assert!(e.to_string().contains(&case.expect), "{}: {e}", case.label);
            assert!(e.to_string().contains("moat certs issue"), "{e}");
        }
    }

    /// moat's own log (text and JSON) gets one line per refusal, and no
    /// byte a client put in its certificate reaches it raw.
    #[test]
    fn nothing_in_a_certificate_forges_a_log_line() {
        use std::io::Write;
        use std::sync::Mutex;

        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        let cases = hostile::corpus();
        for json in [false, true] {
            let buf = Buf::default();
            let writer = buf.clone();
            let builder = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .with_writer(move || writer.clone());
            let run = || {
                for case in &cases {
                    let cert = cert_with_subject(&case.subject_der());
                    assert!(authenticator()
                        .authenticate(Some(&cert), &HeaderMap::new())
                        .is_err());
                }
            };
            if json {
                tracing::subscriber::with_default(builder.json().finish(), run);
            } else {
                tracing::subscriber::with_default(builder.finish(), run);
            }
            let bytes = buf.0.lock().unwrap().clone();
            let text = String::from_utf8(bytes).expect("the log is UTF-8");
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(
                lines.len(),
                cases.len(),
                "json={json}: one line per refusal"
            );
            for (line, case) in lines.iter().zip(&cases) {
                assert!(
                    line.contains("authentication refused"),
                    "{}: {line}",
                    case.label
                );
                assert!(
                    line.chars().all(|c| name::forbidden(c).is_none()),
                    "json={json} {}: raw bytes in the log: {line:?}",
                    case.label
                );
                if json {
                    serde_json::from_str::<serde_json::Value>(line).expect("one JSON object");
                }
            }
        }
    }
}
