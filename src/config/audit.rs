//! The audit log: the `audit` section.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Invalid;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditLevel {
    /// Who, what, decision and outcome; no request bodies.
    #[default]
    Metadata,
    /// Metadata plus the inspected request body and the policy input the
    /// decision was made on (for `moat audit replay`), secrets redacted.
    Request,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditSync {
    /// fsync every decision record before it is acknowledged; completion
    /// records (acknowledged to nobody) within `audit.batch_interval`.
    #[default]
    Always,
    /// fsync at most every `audit.batch_interval`.
    Batch,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOnFailure {
    /// A request whose audit record cannot be written is refused with 503.
    #[default]
    Deny,
    /// Requests go on when the audit log cannot be written (counted and logged).
    Allow,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    /// JSON-lines audit log.
    #[serde(default = "default_audit_file")]
    pub file: PathBuf,
    /// Also write every record to standard output.
    #[serde(default)]
    pub stdout: bool,
    #[serde(default)]
    pub level: AuditLevel,
    #[serde(default)]
    pub sync: AuditSync,
    #[serde(default = "default_batch_interval", with = "humantime_serde")]
    pub batch_interval: Duration,
    /// Rotate when the file reaches this size.
    #[serde(default = "default_audit_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (`audit.log.1` … `audit.log.N`).
    #[serde(default = "default_audit_keep")]
    pub keep: usize,
    #[serde(default)]
    pub on_failure: AuditOnFailure,
    /// Records waiting to be written; producers wait when it is full.
    #[serde(default = "default_audit_queue")]
    pub queue: usize,
}

impl Default for Audit {
    fn default() -> Self {
        Self {
            file: default_audit_file(),
            stdout: false,
            level: AuditLevel::default(),
            sync: AuditSync::default(),
            batch_interval: default_batch_interval(),
            max_bytes: default_audit_max_bytes(),
            keep: default_audit_keep(),
            on_failure: AuditOnFailure::default(),
            queue: default_audit_queue(),
        }
    }
}

fn default_audit_file() -> PathBuf {
    PathBuf::from("audit/audit.log")
}
fn default_batch_interval() -> Duration {
    Duration::from_millis(50)
}
fn default_audit_max_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_audit_keep() -> usize {
    10
}
fn default_audit_queue() -> usize {
    4096
}

impl Audit {
    pub(super) fn check(&self) -> Result<(), Invalid> {
        if self.queue == 0 {
            return Err(("audit.queue", "must be at least 1".into()));
        }
        Ok(())
    }
}
