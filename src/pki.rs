//! moat's own certificate authority: `moat certs init|intermediate|issue|revoke|list`,
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
//! | `crl.pem`         | the CRLs in force (`tls.crl`), rebuilt on revoke: |
//! |                   | the CA's own and every intermediate's             |
//! | `ca-crl.pem`      | the CA's own CRL                                  |
//! | `index.json`      | every certificate issued, revoked or not          |
//! | `intermediates/`  | one directory per intermediate CA (see below)     |
//!
//! An intermediate CA (`moat certs intermediate`, a two-level PKI without
//! openssl) lives in `DIR/intermediates/NAME/`: its own `ca.pem` and
//! `ca-key.pem`, `root.pem` (the root, which its client bundles carry as
//! `ca.pem`), its own `crl.pem` and `index.json`. `moat certs issue --dir`
//! on that directory issues client certificates whose `cert.pem` carries
//! the intermediate after the leaf; `moat certs revoke --dir` on it revokes
//! them; `moat certs revoke --dir DIR` with the intermediate's serial
//! revokes the intermediate itself, and with it every certificate it
//! issued. Each revocation rebuilds the root's `crl.pem`, so moat's single
//! `tls.crl` always holds a CRL from every CA of the hierarchy (moat
//! refuses chains with a CA whose CRL it does not have).
//!
//! Keys are ECDSA P-256. Serial numbers are 128 random bits. Client
//! certificates carry the user in the subject CN and each group as its own
//! subject O attribute, the layout Kubernetes and cfssl use and the one
//! [`crate::identity::CertInfo::from_der`] reads with `auth.certificate.groups: o`.
//! rcgen writes one O at most, so the subject is written by `der` and the
//! certificate re-signed.
//!
//! Every file is written to a temporary file and renamed into place, so a
//! server watching the directory never reads half a file; a lock file
//! serialises concurrent `moat certs` runs on one directory.
//!
//! One file per job: `ca` creates the CA and server certificate,
//! `issue` client certificates, `crl` revocation and the CRL,
//! `token_key` token signing keys, `instructions` the docker CLI set-up
//! lines, `files` atomic writes and the directory lock; `der` rewrites
//! subjects and `index` keeps the record of what was issued.

mod ca;
mod crl;
pub mod der;
mod files;
mod index;
mod instructions;
mod intermediate;
mod issue;
mod token_key;

use std::path::{Path, PathBuf};

pub use ca::{init, InitOptions, DEFAULT_CA_DAYS};
pub use crl::{list, normalize_serial, refresh_crl, revoke, serial_of_pem_file, RevokeTarget};
pub use der::DerError;
pub(crate) use files::write_atomic;
pub use index::{CertKind, Index, IndexEntry};
pub use instructions::docker_instructions;
pub use intermediate::{intermediate, IntermediateOptions, DEFAULT_INTERMEDIATE_DAYS};
pub use issue::{issue, IssueOptions, IssuedBundle, DEFAULT_CLIENT_DAYS};
pub use token_key::{generate_token_key, write_token_key, TokenKeyPair};

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
    #[error("{what} \"{value}\" is refused: {why}")]
    InvalidName {
        what: &'static str,
        /// Escaped.
        value: String,
        why: crate::identity::name::Why,
    },
    #[error("serial {serial} is not in {index}: moat only revokes certificates its CA issued")]
    UnknownSerial { serial: String, index: PathBuf },
    #[error("{0}")]
    Intermediate(String),
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
    /// The CA's own CRL (`crl` is the bundle moat reads).
    pub own_crl: PathBuf,
    pub index: PathBuf,
    /// Present in an intermediate CA's directory only: the root.
    pub root_cert: PathBuf,
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
            own_crl: dir.join("ca-crl.pem"),
            index: dir.join("index.json"),
            root_cert: dir.join("root.pem"),
        }
    }

    /// Whether this directory holds an intermediate CA.
    pub fn is_intermediate(&self) -> bool {
        self.root_cert.exists()
    }

    /// The root directory of an intermediate (`ROOT/intermediates/NAME`).
    pub fn root_dir(&self) -> Option<PathBuf> {
        if !self.is_intermediate() {
            return None;
        }
        self.dir.parent()?.parent().map(Path::to_path_buf)
    }
}

#[cfg(test)]
mod tests;
