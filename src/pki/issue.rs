//! `moat certs issue`: a client certificate for one user and its groups,
//! recorded in the index and written in the docker CLI's file layout.

use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, ExtendedKeyUsagePurpose, KeyUsagePurpose, SigningKey};
use time::{Duration, OffsetDateTime};

use super::ca::{dn, load_ca, new_key, random_serial};
use super::der;
use super::files::{create_private_dir, lock, pem_encode, rfc3339, write_atomic};
use super::{CertKind, Index, IndexEntry, PkiError, PkiPaths};

/// Default validity of a client certificate.
pub const DEFAULT_CLIENT_DAYS: u32 = 365;

/// `moat certs issue`.
#[derive(Debug, Clone)]
pub struct IssueOptions {
    /// The PKI directory (holds the CA).
    pub dir: PathBuf,
    pub user: String,
    pub groups: Vec<String>,
    pub days: u32,
    /// Where to write `ca.pem`, `cert.pem` and `key.pem`; `None` writes
    /// nothing (the bundle is only returned).
    pub out: Option<PathBuf>,
}

impl IssueOptions {
    pub fn new(dir: impl Into<PathBuf>, user: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            user: user.into(),
            groups: Vec::new(),
            days: DEFAULT_CLIENT_DAYS,
            out: None,
        }
    }
}

/// A client certificate as issued, in the docker CLI's file layout.
#[derive(Debug, Clone)]
pub struct IssuedBundle {
    /// Lower-case hex, no leading zeros.
    pub serial: String,
    pub user: String,
    pub groups: Vec<String>,
    pub not_after: OffsetDateTime,
    /// Contents of `ca.pem`.
    pub ca_pem: String,
    /// Contents of `cert.pem`: the certificate, then (under an
    /// intermediate CA) the intermediate.
    pub cert_pem: String,
    /// Contents of `key.pem`.
    pub key_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
}

impl IssuedBundle {
    /// Writes `ca.pem`, `cert.pem` and `key.pem` (0600) into `out`
    /// (created 0700 if missing).
    pub fn write_to(&self, out: &Path) -> Result<(), PkiError> {
        create_private_dir(out)?;
        write_atomic(&out.join("ca.pem"), self.ca_pem.as_bytes(), 0o644)?;
        write_atomic(&out.join("cert.pem"), self.cert_pem.as_bytes(), 0o644)?;
        write_atomic(&out.join("key.pem"), self.key_pem.as_bytes(), 0o600)
    }
}

/// Issues a client certificate for `opts.user` with `opts.groups` (one
/// subject O each), records it in the index and, when `opts.out` is set,
/// writes the docker CLI bundle there.
pub fn issue(opts: &IssueOptions) -> Result<IssuedBundle, PkiError> {
    if opts.days == 0 {
        return Err(PkiError::InvalidDays);
    }
    check_name("user", &opts.user)?;
    let mut groups: Vec<String> = Vec::new();
    for g in &opts.groups {
        check_name("group", g)?;
        if !groups.contains(g) {
            groups.push(g.clone());
        }
    }
    let paths = PkiPaths::new(&opts.dir);
    let _lock = lock(&paths)?;
    let (ca_pem, issuer) = load_ca(&paths)?;
    let mut index = Index::load(&paths.index)?;
    // Under an intermediate: the client trusts the root (which signed
    // moat's server certificate) and sends the intermediate after its leaf.
    let (ca_pem, chain_pem) = if paths.is_intermediate() {
        let root = std::fs::read_to_string(&paths.root_cert)
            .map_err(|e| PkiError::io(&paths.root_cert, e))?;
        (root, ca_pem)
    } else {
        (ca_pem, String::new())
    };

    let now = OffsetDateTime::now_utc();
    let not_after = now + Duration::days(i64::from(opts.days));
    let key = new_key()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&opts.user);
    let (serial, serial_hex) = loop {
        let s = random_serial();
        if !index.certificates.iter().any(|c| c.serial == s.1) {
            break s;
        }
    };
    params.serial_number = Some(serial);
    params.not_before = now - Duration::minutes(5);
    params.not_after = not_after;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &issuer)?;
    let subject = der::subject_name(&opts.user, &groups);
    let cert_der = der::replace_subject(cert.der(), &subject, |tbs| issuer.key().sign(tbs))??;

    let bundle = IssuedBundle {
        serial: serial_hex.clone(),
        user: opts.user.clone(),
        groups: groups.clone(),
        not_after,
        ca_pem,
        cert_pem: pem_encode("CERTIFICATE", &cert_der) + &chain_pem,
        key_pem: key.serialize_pem(),
        cert_der,
    };
    index.certificates.push(IndexEntry {
        serial: serial_hex,
        kind: CertKind::Client,
        user: opts.user.clone(),
        groups,
        not_after: rfc3339(not_after),
        revoked: false,
        revoked_at: None,
    });
    index.save(&paths.index)?;
    if let Some(out) = &opts.out {
        bundle.write_to(out)?;
    }
    Ok(bundle)
}

/// The naming rule the server applies ([`crate::identity::name`]), so that
/// moat never issues a certificate it would refuse.
fn check_name(what: &'static str, value: &str) -> Result<(), PkiError> {
    crate::identity::name::check(value).map_err(|why| PkiError::InvalidName {
        what,
        value: crate::identity::name::escape(value),
        why,
    })
}
