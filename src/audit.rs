//! The audit trail: one JSON line per request stage, hash-chained so that an
//! edited, deleted, inserted or reordered line is detectable.
//!
//! The pipeline fills a [`Record`] and awaits [`Auditor::record`], which
//! returns only once the line is written (see `audit.sync`). One writer thread
//! owns the file ([`writer`]); producers queue through a bounded channel and
//! wait when it is full, so records are never dropped. Secrets in request
//! bodies are removed by [`redact()`] before anything is queued. The chain is
//! checked by [`verify()`] (`moat audit verify`). The format is documented in
//! `docs/audit.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config;
use crate::metrics::Metrics;

mod chain;
mod redact;
mod verify;
mod writer;

#[cfg(test)]
mod tests;

pub use chain::GENESIS;
pub use redact::{redact, redact_input, redact_params, redact_uri, REDACTED};
pub use verify::{verify, verify_report, Verified, VerifyError};

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
    /// The uid and pid of a local client (`auth_method: peer`); absent
    /// otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
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
    /// The caller passes the body as parsed; [`Auditor::record`] drops it at
    /// level `metadata` and redacts it at level `request`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    pub allow: bool,
    pub reasons: Vec<String>,
    pub policy_revision: String,
    /// The decision's `owner_scope`: the `io.moat.scope` stamped on what the
    /// request creates (absent when the policy gives none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_scope: Option<String>,
    /// The decision's `view_scope`: what lists, events and prunes were
    /// narrowed to (absent: not narrowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view_scope: Option<String>,
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
    /// The policy input document the decision was made on (audit.level
    /// `request` only, secrets redacted as in `body`), so that
    /// `moat audit replay` and `moat policy explain` can decide it again.
    /// On the `decision` record when one is written, else on `complete`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
}

impl Record {
    /// The record of a connection moat closed without a request (over its
    /// identity's connection limit, or revoked on a CRL reload): operation
    /// `Connection`, empty method and target, a `decision` record with the
    /// reason and no `complete` record (docs/audit.md).
    pub fn connection(user: Option<UserRecord>, client: String, reason: String) -> Record {
        Record {
            id: hex::encode(rand::random::<[u8; 16]>()),
            stage: Stage::Decision,
            user,
            client,
            request: RequestRecord {
                method: String::new(),
                uri: String::new(),
                operation: "Connection".into(),
                params: BTreeMap::new(),
                body: None,
            },
            decision: Some(DecisionRecord {
                allow: false,
                reasons: vec![reason],
                policy_revision: String::new(),
                owner_scope: None,
                view_scope: None,
            }),
            response: None,
            input: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The record was not written; the pipeline answers 503 unless
    /// `audit.on_failure: allow`.
    #[error("audit log cannot be written: {0}; refusing state-changing requests (audit.on_failure: deny)")]
    Unavailable(String),
    /// `Auditor::open` could not prepare the log (directory, last line).
    #[error("audit log {path} cannot be opened: {reason} (check audit.file and its directory)")]
    Open { path: PathBuf, reason: String },
}

/// One queued record: its serialized body (without `ts`/`prev`) and the
/// channel the writer answers on once the line is written (`None` for a
/// record nobody waits for: the writer logs its failure itself). An empty
/// fragment (never a record's: a record serializes to a JSON object) is a
/// flush barrier ([`Auditor::flush`]).
struct Job {
    fragment: String,
    ack: Option<oneshot::Sender<Result<(), String>>>,
}

/// What the writer last saw, for `/readyz`.
#[derive(Default)]
struct Health {
    /// `None` after a successful write; the reason after a failed one.
    last_error: Mutex<Option<writer::WriteFailure>>,
}

/// The audit log. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct Auditor {
    tx: mpsc::Sender<Job>,
    level: config::AuditLevel,
    path: PathBuf,
    health: Arc<Health>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Auditor {
    /// Creates the directory if missing, continues the chain from the last
    /// line of an existing log (or of `audit.log.1` when the log is empty)
    /// and starts the writer thread.
    pub async fn open(cfg: &config::Audit, metrics: Arc<Metrics>) -> Result<Self, AuditError> {
        let health = Arc::new(Health::default());
        let w =
            writer::Writer::open(cfg, metrics, health.clone()).map_err(|e| AuditError::Open {
                path: cfg.file.clone(),
                reason: e.to_string(),
            })?;
        let (tx, rx) = mpsc::channel(cfg.queue.max(1));
        let thread = std::thread::Builder::new()
            .name("moat-audit".into())
            .spawn(move || w.run(rx))
            .map_err(|e| AuditError::Open {
                path: cfg.file.clone(),
                reason: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Auditor {
            tx,
            level: cfg.level,
            path: cfg.file.clone(),
            health,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Writes one record; returns once it is written as `audit.sync` asks:
    /// fsynced for `always`, handed to the OS for `batch` (fsynced within
    /// `audit.batch_interval`). Waits while the queue is full.
    pub async fn record(&self, rec: Record) -> Result<(), AuditError> {
        let fragment = self.encode(rec)?;
        self.send_and_wait(fragment).await
    }

    /// Queues `fragment` (empty: a flush barrier) and waits for the writer's
    /// answer.
    async fn send_and_wait(&self, fragment: String) -> Result<(), AuditError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Job {
                fragment,
                ack: Some(ack),
            })
            .await
            .map_err(|_| AuditError::Unavailable("the audit writer has stopped".into()))?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(AuditError::Unavailable(reason)),
            Err(_) => Err(AuditError::Unavailable(
                "the audit writer stopped before answering".into(),
            )),
        }
    }

    /// Queues a record that nobody waits for (the completion record, written
    /// after the response): written and chained in queue order like
    /// [`Auditor::record`]'s, but without a reply, so the request path
    /// spends no task and no wake-up on it; the writer logs a failure itself.
    /// Its line is written at once; its fsync is the next one the writer
    /// does, at most `audit.batch_interval` later (with `sync: always`, a
    /// waiting record's fsync covers it sooner).
    /// When the queue is full it returns a future that waits for room (spawn
    /// it), as `record` would have waited.
    pub fn submit(
        &self,
        rec: Record,
    ) -> Result<Option<impl std::future::Future<Output = ()> + Send + 'static>, AuditError> {
        let job = Job {
            fragment: self.encode(rec)?,
            ack: None,
        };
        match self.tx.try_send(job) {
            Ok(()) => Ok(None),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(AuditError::Unavailable(
                "the audit writer has stopped".into(),
            )),
            Err(mpsc::error::TrySendError::Full(job)) => {
                let tx = self.tx.clone();
                Ok(Some(async move {
                    if tx.send(job).await.is_err() {
                        tracing::error!(
                            "completion audit record not written: the audit writer has stopped"
                        );
                    }
                }))
            }
        }
    }

    /// Redacts `rec` as `audit.level` asks and serializes it for the writer.
    fn encode(&self, mut rec: Record) -> Result<String, AuditError> {
        let op = &rec.request.operation;
        match self.level {
            config::AuditLevel::Metadata => {
                rec.request.body = None;
                rec.input = None;
            }
            config::AuditLevel::Request => {
                rec.request.body = rec.request.body.take().map(|b| redact(op, &b));
                if let Some(input) = rec.input.as_mut() {
                    redact_input(op, input);
                }
            }
        }
        rec.request.uri = redact_uri(&rec.request.uri);
        redact_params(&mut rec.request.params);
        chain::fragment(&rec)
            .map_err(|e| AuditError::Unavailable(format!("the record cannot be encoded: {e}")))
    }

    /// For `/readyz`: `Err(reason)` when the log's directory cannot be
    /// opened for writing right now, or when the last write failed for lack
    /// of space and the file system is still full. Does not wait for the
    /// writer.
    pub fn writable(&self) -> Result<(), String> {
        let last = match self.health.last_error.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        writer::probe(&self.path, last.as_ref())
    }

    /// The log file this auditor writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns once every record queued before the call is written and
    /// fsynced (on shutdown: the writer thread is not waited for by the
    /// process, so records still queued at exit would be lost).
    pub async fn flush(&self) -> Result<(), AuditError> {
        self.send_and_wait(String::new()).await
    }

    /// Stops accepting records, lets the writer finish the queued ones,
    /// fsync and exit. Records sent after this fail.
    pub async fn close(self) {
        let Auditor { tx, thread, .. } = self;
        drop(tx);
        let handle = match thread.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}
