//! `moat certs intermediate`: an intermediate CA under moat's root, so that
//! an admin can run a two-level PKI (say one intermediate per team, each
//! revocable on its own) without openssl. See the directory layout in
//! [`super`].

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyIdMethod, KeyUsagePurpose};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::FromDer;

use super::ca::{dn, load_ca, new_key, random_serial};
use super::crl::sign_crl;
use super::files::{create_private_dir, lock, rfc3339, write_atomic};
use super::{CertKind, Index, IndexEntry, PkiError, PkiPaths};

/// Default validity of an intermediate CA.
pub const DEFAULT_INTERMEDIATE_DAYS: u32 = 1825;

/// `moat certs intermediate`.
#[derive(Debug, Clone)]
pub struct IntermediateOptions {
    /// The root's PKI directory.
    pub dir: PathBuf,
    /// Letters, digits, `.`, `_`, `-`; names the directory
    /// `DIR/intermediates/NAME` and the subject CN `moat intermediate NAME`.
    pub name: String,
    pub days: u32,
}

impl IntermediateOptions {
    pub fn new(dir: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        Self {
            dir: dir.into(),
            name: name.into(),
            days: DEFAULT_INTERMEDIATE_DAYS,
        }
    }
}

/// Creates the intermediate CA `opts.name` signed by the root in
/// `opts.dir`, records it in the root's index and rebuilds the root's CRL
/// bundle. Returns the intermediate's paths (pass its `dir` to
/// [`super::issue()`] and [`super::revoke`]).
pub fn intermediate(opts: &IntermediateOptions) -> Result<PkiPaths, PkiError> {
    if opts.days == 0 {
        return Err(PkiError::InvalidDays);
    }
    let n = &opts.name;
    if n.is_empty()
        || n.len() > 64
        || n.starts_with('.')
        || !n
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(PkiError::Intermediate(format!(
            "intermediate name {:?}: use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'",
            crate::identity::name::escape(n)
        )));
    }
    let root = PkiPaths::new(&opts.dir);
    let _lock = lock(&root)?;
    let (root_pem, root_issuer) = load_ca(&root)?;
    if root.is_intermediate() {
        return Err(PkiError::Intermediate(format!(
            "{} holds an intermediate CA; create intermediates under the root",
            root.dir.display()
        )));
    }
    allows_one_more_ca(&root)?;
    let paths = PkiPaths::new(&root.dir.join("intermediates").join(n));
    if paths.dir.exists() {
        return Err(PkiError::Intermediate(format!(
            "{} exists already: intermediate {n:?} was created before",
            paths.dir.display()
        )));
    }
    let mut root_index = Index::load(&root.index)?;

    let now = OffsetDateTime::now_utc();
    let not_after = now + Duration::days(i64::from(opts.days));
    let key = new_key()?;
    let mut params = CertificateParams::default();
    let cn = format!("moat intermediate {n}");
    params.distinguished_name = dn(&cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let (serial, serial_hex) = loop {
        let s = random_serial();
        if !root_index.certificates.iter().any(|c| c.serial == s.1) {
            break s;
        }
    };
    params.serial_number = Some(serial);
    params.not_before = now - Duration::minutes(5);
    params.not_after = not_after;
    params.key_identifier_method = KeyIdMethod::Sha256;
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &root_issuer)?;

    create_private_dir(&paths.dir)?;
    write_atomic(&paths.ca_key, key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&paths.ca_cert, cert.pem().as_bytes(), 0o644)?;
    write_atomic(&paths.root_cert, root_pem.as_bytes(), 0o644)?;
    let issuer = rcgen::Issuer::new(params, key);
    sign_crl(&paths, &issuer, Index::default())?;

    root_index.certificates.push(IndexEntry {
        serial: serial_hex,
        kind: CertKind::Intermediate,
        user: cn,
        groups: Vec::new(),
        not_after: rfc3339(not_after),
        revoked: false,
        revoked_at: None,
    });
    // Saves the root's index and rewrites its bundle, which now includes
    // the intermediate's CRL.
    sign_crl(&root, &root_issuer, root_index)?;
    Ok(paths)
}

/// Refuses a root created with a path length of 0 (moat before
/// intermediates), which verifiers would refuse as the issuer of a CA.
fn allows_one_more_ca(root: &PkiPaths) -> Result<(), PkiError> {
    let der = rustls_pki_types::pem::PemObject::from_pem_file(&root.ca_cert).map_err(
        |e: rustls_pki_types::pem::Error| PkiError::BadFile {
            path: root.ca_cert.clone(),
            message: e.to_string(),
        },
    )?;
    let der: rustls_pki_types::CertificateDer<'_> = der;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).map_err(|e| {
        PkiError::BadFile {
            path: root.ca_cert.clone(),
            message: e.to_string(),
        }
    })?;
    let path_len = cert
        .basic_constraints()
        .ok()
        .flatten()
        .and_then(|bc| bc.value.path_len_constraint);
    if path_len == Some(0) {
        return Err(PkiError::Intermediate(format!(
            "the CA in {} was created with path length 0 and cannot sign an intermediate CA; create a new root with `moat certs init --force` (every certificate the old one issued stops working)",
            root.dir.display()
        )));
    }
    Ok(())
}
