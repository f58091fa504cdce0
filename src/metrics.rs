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
}
