//! moat's own certificate authority: `moat certs init|issue|revoke|list`,
//! and the library functions behind them that `moat up` and the tests call.
//!
//! A PKI directory holds:
//!
//! | file              | what                                              |
//! |-------------------|---------------------------------------------------|
//! | `ca.pem`          | the CA certificate (clients and moat trust it)    |
//! | `ca-key.pem`      | the CA key (0600)                                 |
//! | `server-cert.pem` | moat's server certificate                         |
//! | `server-key.pem`  | its key (0600)                                    |
//! | `crl.pem`         | the signed CRL (`tls.crl`), rebuilt on revoke     |
//! | `index.json`      | every certificate issued, revoked or not          |
//!
//! Keys are ECDSA P-256. Serial numbers are 128 random bits. Client
//! certificates carry the user in the subject CN and each group as its own
//! subject O attribute, the layout Kubernetes and cfssl use and the one
//! [`crate::identity::CertInfo::from_der`] reads with `auth.certificate.groups: o`.
//! rcgen writes one O at most, so the subject is written by [`der`] and the
//! certificate re-signed.
//!
//! Every file is written to a temporary file and renamed into place, so a
//! server watching the directory never reads half a file; a lock file
//! serialises concurrent `moat certs` runs on one directory.

mod der;
mod index;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber, SigningKey,
};
use time::{Duration, OffsetDateTime};

pub use der::DerError;
pub use index::{CertKind, Index, IndexEntry};

/// Why a PKI operation failed. Messages name the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{dir} already holds a CA (ca.pem or ca-key.pem); pass --force to replace it (every certificate it issued stops working)")]
    AlreadyExists { dir: PathBuf },
    #[error("no CA in {dir} (ca.pem and ca-key.pem); run `moat certs init --dir {dir}` first")]
    NoCa { dir: PathBuf },
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    #[error("{path}: the index is unreadable: {message}")]
    Index { path: PathBuf, message: String },
    #[error("{what} {value:?} is not usable: {why}")]
    InvalidName {
        what: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("serial {serial} is not in {index}: moat only revokes certificates its CA issued")]
    UnknownSerial { serial: String, index: PathBuf },
    #[error("--days must be at least 1")]
    InvalidDays,
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("certificate generation failed: {0}")]
    Der(#[from] DerError),
}

impl PkiError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        PkiError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The files of a PKI directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiPaths {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub crl: PathBuf,
    pub index: PathBuf,
}

impl PkiPaths {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            ca_cert: dir.join("ca.pem"),
            ca_key: dir.join("ca-key.pem"),
            server_cert: dir.join("server-cert.pem"),
            server_key: dir.join("server-key.pem"),
            crl: dir.join("crl.pem"),
            index: dir.join("index.json"),
        }
    }
}

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
    /// Contents of `cert.pem`.
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

/// What to revoke.
#[derive(Debug, Clone)]
pub enum RevokeTarget {
    /// A serial in hex (colons, case and leading zeros do not matter).
    Serial(String),
    /// A PEM certificate file.
    CertFile(PathBuf),
}

/// A token signing key pair (ES256), PEM.
#[derive(Debug, Clone)]
pub struct TokenKeyPair {
    /// PKCS#8 private key: for `moat token issue --key`.
    pub private_pem: String,
    /// SubjectPublicKeyInfo: for `auth.tokens.keys[].file` with
    /// `algorithm: ES256`.
    pub public_pem: String,
}

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
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
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
        cert_pem: pem_encode("CERTIFICATE", &cert_der),
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
    Ok(entry)
}

/// Signs `crl.pem` again from the index (for example to renew its
/// `nextUpdate`).
pub fn refresh_crl(dir: &Path) -> Result<(), PkiError> {
    let paths = PkiPaths::new(dir);
    let _lock = lock(&paths)?;
    let (_, issuer) = load_ca(&paths)?;
    let index = Index::load(&paths.index)?;
    sign_crl(&paths, &issuer, index)
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

/// A fresh ES256 key pair for signing bearer tokens.
pub fn generate_token_key() -> Result<TokenKeyPair, PkiError> {
    let key = new_key()?;
    Ok(TokenKeyPair {
        private_pem: key.serialize_pem(),
        public_pem: key.public_key_pem(),
    })
}

/// Writes a fresh ES256 token key pair to `private` (0600) and `public`.
pub fn write_token_key(private: &Path, public: &Path) -> Result<TokenKeyPair, PkiError> {
    let pair = generate_token_key()?;
    write_atomic(private, pair.private_pem.as_bytes(), 0o600)?;
    write_atomic(public, pair.public_pem.as_bytes(), 0o644)?;
    Ok(pair)
}

/// The shell lines that point the docker CLI at a bundle in `cert_dir`:
/// the `DOCKER_*` exports and the equivalent `docker context create`.
pub fn docker_instructions(host: &str, cert_dir: &Path, context: &str) -> String {
    let d = cert_dir.display();
    format!(
        "export DOCKER_HOST={host}\n\
         export DOCKER_TLS_VERIFY=1\n\
         export DOCKER_CERT_PATH={d}\n\
         \n\
         # or, as a docker context:\n\
         docker context create {context} --docker \"host={host},ca={d}/ca.pem,cert={d}/cert.pem,key={d}/key.pem\"\n\
         docker context use {context}\n"
    )
}

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, with `mode`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        short_hex(4)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        PkiError::io(path, e)
    })
}

fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| PkiError::io(dir, e))
}

/// Holds `DIR/.lock` exclusively until dropped.
fn lock(paths: &PkiPaths) -> Result<nix::fcntl::Flock<File>, PkiError> {
    let path = paths.dir.join(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| PkiError::io(&path, e))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| PkiError::io(&path, std::io::Error::from(errno)))
}

/// Reads the CA back: its PEM (for bundles) and an issuer to sign with.
fn load_ca(paths: &PkiPaths) -> Result<(String, Issuer<'static, KeyPair>), PkiError> {
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

/// Signs a CRL of every revoked entry with the next CRL number, then saves
/// the index (source of truth first, so a failed CRL write is redone by the
/// next run).
fn sign_crl(
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
    write_atomic(&paths.crl, crl.pem()?.as_bytes(), 0o644)
}

fn new_key() -> Result<KeyPair, PkiError> {
    Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?)
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

/// 16 random bytes, first byte 0x10..=0x7f: positive, no DER padding and no
/// leading zero in hex, so the hex form is the same everywhere.
fn random_serial() -> (SerialNumber, String) {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes[..]);
    bytes[0] = 0x10 + (bytes[0] % 0x70);
    (SerialNumber::from_slice(&bytes), hex::encode(bytes))
}

fn short_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill(&mut bytes[..]);
    hex::encode(bytes)
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn check_name(what: &'static str, value: &str) -> Result<(), PkiError> {
    let why = if value.trim().is_empty() {
        "it is empty"
    } else if value.trim() != value {
        "it has leading or trailing spaces"
    } else if value.chars().any(char::is_control) {
        "it has control characters"
    } else if value.len() > 128 {
        "it is longer than 128 bytes"
    } else {
        return Ok(());
    };
    Err(PkiError::InvalidName {
        what,
        value: value.to_string(),
        why,
    })
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests;
