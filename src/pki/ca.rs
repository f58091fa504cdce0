//! The CA itself: `moat certs init` creates the CA key and certificate, the
//! server certificate, an empty CRL and the index; [`load_ca`] reads the CA
//! back for every later signing operation.

use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SerialNumber,
};
use std::path::PathBuf;
use time::{Duration, OffsetDateTime};

use super::crl::sign_crl;
use super::files::{create_private_dir, lock, rfc3339, short_hex, write_atomic};
use super::{CertKind, Index, IndexEntry, PkiError, PkiPaths};

/// `moat certs init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub dir: PathBuf,
    /// Extra server SANs (DNS names or IP addresses) besides localhost,
    /// 127.0.0.1, ::1 and the hostname.
    pub sans: Vec<String>,
    /// Validity of the CA and the server certificate.
    pub days: u32,
    /// Replace an existing CA.
    pub force: bool,
}

impl InitOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            sans: Vec::new(),
            days: DEFAULT_CA_DAYS,
            force: false,
        }
    }
}

/// Default validity of the CA and server certificate.
pub const DEFAULT_CA_DAYS: u32 = 3650;
/// Creates a CA, a server certificate, an empty CRL and an index in
/// `opts.dir`. Refuses to replace an existing CA unless `opts.force`.
pub fn init(opts: &InitOptions) -> Result<PkiPaths, PkiError> {
    if opts.days == 0 {
        return Err(PkiError::InvalidDays);
    }
    let paths = PkiPaths::new(&opts.dir);
    create_private_dir(&paths.dir)?;
    let _lock = lock(&paths)?;
    if !opts.force && (paths.ca_cert.exists() || paths.ca_key.exists()) {
        return Err(PkiError::AlreadyExists {
            dir: paths.dir.clone(),
        });
    }
    let now = OffsetDateTime::now_utc();
    let not_after = now + Duration::days(i64::from(opts.days));

    let ca_key = new_key()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = dn(&format!("moat CA {}", short_hex(8)));
    // Path length 1: the CA may sign intermediate CAs (`moat certs
    // intermediate`), which may not sign further CAs.
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.serial_number = Some(random_serial().0);
    ca.not_before = now - Duration::minutes(5);
    ca.not_after = not_after;
    ca.key_identifier_method = KeyIdMethod::Sha256;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut sans: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Some(h) = hostname() {
        sans.push(h);
    }
    sans.extend(opts.sans.iter().map(|s| s.trim().to_string()));
    sans.retain(|s| !s.is_empty());
    let mut seen = std::collections::HashSet::new();
    sans.retain(|s| seen.insert(s.to_ascii_lowercase()));

    let server_key = new_key()?;
    let mut server = CertificateParams::new(sans)?;
    server.distinguished_name = dn("moat server");
    let (serial, serial_hex) = random_serial();
    server.serial_number = Some(serial);
    server.not_before = now - Duration::minutes(5);
    server.not_after = not_after;
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let index = Index {
        crl_number: 0,
        certificates: vec![IndexEntry {
            serial: serial_hex,
            kind: CertKind::Server,
            user: "moat server".into(),
            groups: Vec::new(),
            not_after: rfc3339(not_after),
            revoked: false,
            revoked_at: None,
        }],
    };
    // Keys first, certificates after, so a watcher never pairs a new
    // certificate with an old key for long.
    write_atomic(
        &paths.ca_key,
        issuer.key().serialize_pem().as_bytes(),
        0o600,
    )?;
    write_atomic(&paths.ca_cert, ca_cert.pem().as_bytes(), 0o644)?;
    write_atomic(
        &paths.server_key,
        server_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write_atomic(&paths.server_cert, server_cert.pem().as_bytes(), 0o644)?;
    sign_crl(&paths, &issuer, index)?;
    Ok(paths)
}

/// Reads the CA back: its PEM (for bundles) and an issuer to sign with.
pub(super) fn load_ca(paths: &PkiPaths) -> Result<(String, Issuer<'static, KeyPair>), PkiError> {
    if !paths.ca_cert.exists() || !paths.ca_key.exists() {
        return Err(PkiError::NoCa {
            dir: paths.dir.clone(),
        });
    }
    let ca_pem =
        std::fs::read_to_string(&paths.ca_cert).map_err(|e| PkiError::io(&paths.ca_cert, e))?;
    let key_pem =
        std::fs::read_to_string(&paths.ca_key).map_err(|e| PkiError::io(&paths.ca_key, e))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| PkiError::BadFile {
        path: paths.ca_key.clone(),
        message: format!("not a usable private key: {e}"),
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, key).map_err(|e| PkiError::BadFile {
        path: paths.ca_cert.clone(),
        message: format!("not a usable CA certificate: {e}"),
    })?;
    Ok((ca_pem, issuer))
}

pub(super) fn new_key() -> Result<KeyPair, PkiError> {
    Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?)
}

pub(super) fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// 16 random bytes, first byte 0x10..=0x7f: positive, no DER padding and no
/// leading zero in hex, so the hex form is the same everywhere.
pub(super) fn random_serial() -> (SerialNumber, String) {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes[..]);
    bytes[0] = 0x10 + (bytes[0] % 0x70);
    (SerialNumber::from_slice(&bytes), hex::encode(bytes))
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}
