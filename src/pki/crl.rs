//! Revocation: `moat certs revoke` marks an index entry revoked and signs
//! a fresh `crl.pem` listing every revoked serial; `moat certs list` reads
//! the index back.

use std::path::{Path, PathBuf};

use rcgen::{
    CertificateRevocationListParams, Issuer, KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use super::ca::load_ca;
use super::files::{lock, rfc3339, write_atomic};
use super::{Index, IndexEntry, PkiError, PkiPaths};

/// What to revoke.
#[derive(Debug, Clone)]
pub enum RevokeTarget {
    /// A serial in hex (colons, case and leading zeros do not matter).
    Serial(String),
    /// A PEM certificate file.
    CertFile(PathBuf),
}

/// Marks a certificate revoked in the index and writes a freshly signed
/// `crl.pem` (temp file + rename) listing every revoked serial. Revoking an
/// already revoked certificate re-signs the CRL and keeps the first date.
pub fn revoke(dir: &Path, target: &RevokeTarget) -> Result<IndexEntry, PkiError> {
    let serial = match target {
        RevokeTarget::Serial(s) => normalize_serial(s),
        RevokeTarget::CertFile(path) => serial_of_pem_file(path)?,
    };
    let paths = PkiPaths::new(dir);
    let _lock = lock(&paths)?;
    let (_, issuer) = load_ca(&paths)?;
    let mut index = Index::load(&paths.index)?;
    let entry = index
        .find_mut(&serial)
        .ok_or_else(|| PkiError::UnknownSerial {
            serial: serial.clone(),
            index: paths.index.clone(),
        })?;
    if !entry.revoked {
        entry.revoked = true;
        entry.revoked_at = Some(rfc3339(OffsetDateTime::now_utc()));
    }
    let entry = entry.clone();
    sign_crl(&paths, &issuer, index)?;
    rebuild_root_bundle(&paths)?;
    Ok(entry)
}

/// Signs `crl.pem` again from the index (for example to renew its
/// `nextUpdate`).
pub fn refresh_crl(dir: &Path) -> Result<(), PkiError> {
    let paths = PkiPaths::new(dir);
    let _lock = lock(&paths)?;
    let (_, issuer) = load_ca(&paths)?;
    let index = Index::load(&paths.index)?;
    sign_crl(&paths, &issuer, index)?;
    rebuild_root_bundle(&paths)
}

/// Every certificate in the index, in issue order.
pub fn list(dir: &Path) -> Result<Vec<IndexEntry>, PkiError> {
    Ok(Index::load(&PkiPaths::new(dir).index)?.certificates)
}

/// The serial of the first certificate in a PEM file, normalised like
/// [`IndexEntry::serial`].
pub fn serial_of_pem_file(path: &Path) -> Result<String, PkiError> {
    use rustls_pki_types::pem::PemObject;
    let der =
        rustls_pki_types::CertificateDer::from_pem_file(path).map_err(|e| PkiError::BadFile {
            path: path.to_path_buf(),
            message: format!("no PEM certificate: {e}"),
        })?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::BadFile {
        path: path.to_path_buf(),
        message: format!("not an X.509 certificate: {e}"),
    })?;
    Ok(normalize_serial(
        &cert.tbs_certificate.raw_serial_as_string(),
    ))
}

/// Lower-case hex without colons or leading zeros.
pub fn normalize_serial(s: &str) -> String {
    let s: String = s
        .trim()
        .trim_start_matches("0x")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    let t = s.trim_start_matches('0');
    if t.is_empty() && !s.is_empty() {
        "0".into()
    } else {
        t.into()
    }
}

/// Signs a CRL of every revoked entry with the next CRL number, then saves
/// the index (source of truth first, so a failed CRL write is redone by the
/// next run).
pub(super) fn sign_crl(
    paths: &PkiPaths,
    issuer: &Issuer<'_, KeyPair>,
    mut index: Index,
) -> Result<(), PkiError> {
    index.crl_number += 1;
    let now = OffsetDateTime::now_utc();
    let mut revoked_certs = Vec::new();
    for c in index.certificates.iter().filter(|c| c.revoked) {
        let padded = if c.serial.len() % 2 == 1 {
            format!("0{}", c.serial)
        } else {
            c.serial.clone()
        };
        let bytes = hex::decode(&padded).map_err(|_| PkiError::Index {
            path: paths.index.clone(),
            message: format!("serial {:?} is not hex", c.serial),
        })?;
        let revocation_time = c
            .revoked_at
            .as_deref()
            .and_then(|t| {
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .unwrap_or(now);
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&bytes),
            revocation_time,
            reason_code: None,
            invalidity_date: None,
        });
    }
    let params = CertificateRevocationListParams {
        this_update: now - Duration::minutes(5),
        next_update: now + Duration::days(365),
        crl_number: SerialNumber::from_slice(&index.crl_number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(issuer)?;
    index.save(&paths.index)?;
    let pem = crl.pem()?;
    if paths.is_intermediate() {
        // Its own CRL; the caller rebuilds the root's bundle
        // ([`rebuild_root_bundle`]).
        write_atomic(&paths.crl, pem.as_bytes(), 0o644)
    } else {
        write_atomic(&paths.own_crl, pem.as_bytes(), 0o644)?;
        write_bundle(paths)
    }
}

/// For an intermediate's directory: rewrites the root's `crl.pem` under the
/// root's lock (taken after the intermediate's: always in that order).
pub(super) fn rebuild_root_bundle(paths: &PkiPaths) -> Result<(), PkiError> {
    if let Some(root) = paths.root_dir() {
        let root = PkiPaths::new(&root);
        let _lock = lock(&root)?;
        write_bundle(&root)?;
    }
    Ok(())
}

/// Writes a root's `crl.pem`: its own CRL, then each intermediate's (in
/// name order), so one file holds a CRL from every CA of the hierarchy.
pub(super) fn write_bundle(root: &PkiPaths) -> Result<(), PkiError> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| PkiError::io(p, e));
    let mut bundle = read(&root.own_crl)?;
    let dir = root.dir.join("intermediates");
    if dir.exists() {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| PkiError::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("crl.pem").exists())
            .collect();
        names.sort();
        for n in names {
            let text = read(&n.join("crl.pem"))?;
            if !bundle.ends_with('\n') {
                bundle.push('\n');
            }
            bundle.push_str(&text);
        }
    }
    write_atomic(&root.crl, bundle.as_bytes(), 0o644)
}
