//! `index.json`: the record of every certificate moat's CA has issued, so
//! `moat certs list` can show them and `moat certs revoke` can rebuild the
//! CRL from the full set of revoked serials.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{write_atomic, PkiError};

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    Server,
    Client,
    /// An intermediate CA (`moat certs intermediate`).
    Intermediate,
}

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Lower-case hex, no leading zeros (as [`crate::identity::CertInfo`]
    /// prints it).
    pub serial: String,
    pub kind: CertKind,
    /// The subject CN (the user name for client certificates).
    pub user: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// RFC 3339.
    pub not_after: String,
    #[serde(default)]
    pub revoked: bool,
    /// RFC 3339, when revoked.
    #[serde(default)]
    pub revoked_at: Option<String>,
}

/// The whole index file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Index {
    /// The number of the last CRL signed; each new CRL gets the next one.
    #[serde(default)]
    pub crl_number: u64,
    #[serde(default)]
    pub certificates: Vec<IndexEntry>,
}

impl Index {
    pub fn load(path: &Path) -> Result<Index, PkiError> {
        let text = std::fs::read_to_string(path).map_err(|e| PkiError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| PkiError::Index {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), PkiError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| PkiError::Index {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        text.push('\n');
        write_atomic(path, text.as_bytes(), 0o644)
    }

    pub fn find_mut(&mut self, serial: &str) -> Option<&mut IndexEntry> {
        self.certificates.iter_mut().find(|c| c.serial == serial)
    }
}
