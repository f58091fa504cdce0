//! The audit trail: one JSON line per request stage, hash-chained.
//!
//! PLACEHOLDER until the audit writer lands: the record shape is final, the
//! writer discards.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::config;
use crate::metrics::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Written, and flushed, before a state-changing request is forwarded.
    Decision,
    /// Written when the response (or hijacked session) has ended.
    Complete,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserRecord {
    pub name: String,
    pub groups: Vec<String>,
    pub auth_method: crate::identity::AuthMethod,
    pub cert_serial: Option<String>,
    pub token_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    pub method: String,
    /// The request target as received.
    pub uri: String,
    /// The operation id, or `Unknown`/`Unclassified`.
    pub operation: String,
    pub params: BTreeMap<String, String>,
    /// The inspected body (audit.level `request` only), secrets redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    pub allow: bool,
    pub reasons: Vec<String>,
    pub policy_revision: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResponseRecord {
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: f64,
    pub hijacked: bool,
}

/// One audit record, as the pipeline fills it. `ts` and `prev` are added by
/// the writer, which alone knows the order of lines.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub id: String,
    pub stage: Stage,
    pub user: Option<UserRecord>,
    pub client: String,
    pub request: RequestRecord,
    pub decision: Option<DecisionRecord>,
    pub response: Option<ResponseRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the audit log cannot be written")]
    Unavailable,
}

pub struct Auditor;

impl Auditor {
    pub async fn open(_cfg: &config::Audit, _metrics: Arc<Metrics>) -> Result<Self, AuditError> {
        Ok(Auditor)
    }

    /// Writes one record; returns once it is written as `audit.sync` asks.
    pub async fn record(&self, _rec: Record) -> Result<(), AuditError> {
        Ok(())
    }
}
