//! Prometheus metrics and the health endpoints.
//!
//! PLACEHOLDER until the metrics work lands: counts nothing.

use std::time::Duration;

#[derive(Default)]
pub struct Metrics;

impl Metrics {
    pub fn new() -> Self {
        Metrics
    }
    /// One finished request: its operation id, `allow`/`deny`/`error`, status,
    /// end-to-end time and moat's own share of it.
    pub fn request_done(
        &self,
        _op: &str,
        _decision: &str,
        _code: u16,
        _total: Duration,
        _overhead: Duration,
    ) {
    }
    pub fn policy_eval(&self, _d: Duration) {}
    pub fn auth_failure(&self, _reason: &str) {}
    pub fn tls_handshake_failure(&self) {}
    pub fn connection_opened(&self) {}
    pub fn connection_closed(&self) {}
    pub fn hijack_started(&self) {}
    pub fn hijack_ended(&self) {}
    pub fn engine_up(&self, _up: bool) {}
    pub fn policy_reload(&self, _ok: bool) {}
    pub fn audit_record(&self) {}
    pub fn audit_write_error(&self) {}
}

/// What `/readyz` asks the server: each component's name and whether it is
/// ready, with the reason when it is not.
pub type ReadyCheck = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Vec<(&'static str, Result<(), String>)>> + Send>,
        > + Send
        + Sync,
>;

#[allow(dead_code)]
struct _Placeholder {}
