//! The audit trail of one request: the record under construction as the
//! request goes through the stages (who, what, the decision, the refusal),
//! written as the `decision` record before anything reaches the engine, and
//! turned into the [`Completion`] that writes the `complete` record when
//! the response has ended.

use crate::admission::Held;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request, StatusCode};

use super::completion::{Completion, UNCLASSIFIED};
use crate::audit::{
    Auditor, DecisionRecord, Record, RequestRecord, ResponseRecord, Stage, UserRecord,
};
use crate::classify::{OpId, Route};
use crate::config::AuditOnFailure;
use crate::conn::{ConnInfo, InFlight};
use crate::gateway::Gateway;
use crate::hijack::Counters;
use crate::identity::Identity;
use crate::metrics::Outcome;
use crate::policy::Decision;
use crate::respond::Rejection;

/// The audit record under construction for one request.
pub(super) struct Trail {
    record: Record,
    readonly_op: bool,
    decision_written: bool,
    forwarded_at: Option<Instant>,
    /// `None` until the request is classified.
    operation: Option<OpId>,
    outcome: Outcome,
    hijack: Option<Arc<Counters>>,
    hijack_done: Option<tokio::sync::oneshot::Sender<Completion>>,
    request_counter: Option<Arc<AtomicU64>>,
    /// The identity's count of this request, until its completion.
    held: Option<Held>,
}

impl Trail {
    pub(super) fn new<B>(conn: &ConnInfo, req: &Request<B>, id: &str) -> Self {
        Trail {
            record: Record {
                id: id.to_string(),
                stage: Stage::Decision,
                user: None,
                client: conn.client_label(),
                request: RequestRecord {
                    method: req.method().to_string(),
                    uri: req.uri().to_string(),
                    operation: UNCLASSIFIED.into(),
                    params: BTreeMap::new(),
                    body: None,
                },
                decision: None,
                response: None,
                input: None,
            },
            readonly_op: req.method() == Method::GET || req.method() == Method::HEAD,
            decision_written: false,
            forwarded_at: None,
            operation: None,
            outcome: Outcome::Error,
            hijack: None,
            hijack_done: None,
            request_counter: None,
            held: None,
        }
    }

    pub(super) fn identity(&mut self, id: &Identity) {
        self.record.user = Some(UserRecord {
            name: id.name.clone(),
            groups: id.groups.clone(),
            auth_method: id.auth_method,
            cert_serial: id.certificate.as_ref().map(|c| c.serial.clone()),
            token_id: id.token_id.clone(),
            uid: id.local.map(|c| c.uid),
            pid: id.local.and_then(|c| c.pid),
        });
    }

    pub(super) fn route(&mut self, route: &Route) {
        self.operation = Some(route.op.id);
        self.readonly_op = route.op.readonly;
        self.record.request.operation = route.op.id.to_string();
        self.record.request.params = route
            .params
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect();
    }

    pub(super) fn body(&mut self, body: Option<&serde_json::Value>) {
        self.record.request.body = body.cloned();
    }

    /// The policy input the decision was made on (audit.level `request`),
    /// for `moat audit replay` and `moat policy explain`.
    pub(super) fn input(&mut self, input: serde_json::Value) {
        self.record.input = Some(input);
    }

    pub(super) fn decision(&mut self, d: &Decision) {
        self.outcome = if d.allow {
            Outcome::Allow
        } else {
            Outcome::Deny
        };
        self.record.decision = Some(DecisionRecord {
            allow: d.allow,
            reasons: d.reasons.clone(),
            policy_revision: d.revision.clone(),
            owner_scope: d.owner_scope.clone(),
            view_scope: d.view_scope.clone(),
        });
    }

    pub(super) async fn write_decision(
        &mut self,
        audit: &Auditor,
        on_failure: AuditOnFailure,
    ) -> Result<(), Rejection> {
        self.record.stage = Stage::Decision;
        let result = audit.record(self.record.clone()).await;
        self.decision_written = true;
        match result {
            Ok(()) => Ok(()),
            Err(e) if on_failure == AuditOnFailure::Allow => {
                tracing::error!(error = %e, "audit record not written; request allowed (audit.on_failure: allow)");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(super) fn bytes_in(&mut self, n: u64) {
        self.set_response(|r| r.bytes_in = n);
    }

    /// Keeps the identity's count of this request until it completes.
    pub(super) fn hold(&mut self, held: Held) {
        self.held = Some(held);
    }

    pub(super) fn request_counter(&mut self, c: Arc<AtomicU64>) {
        self.request_counter = Some(c);
    }

    pub(super) fn forwarding(&mut self) {
        self.forwarded_at = Some(Instant::now());
    }

    /// The session task receives the completion once the 101 is built.
    pub(super) fn hijacked(
        &mut self,
        counters: Arc<Counters>,
    ) -> tokio::sync::oneshot::Receiver<Completion> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.hijack = Some(counters);
        self.hijack_done = Some(tx);
        rx
    }

    pub(super) fn refused(&mut self, rejection: &Rejection) {
        if matches!(rejection, Rejection::Denied(_)) {
            self.outcome = Outcome::Deny;
        } else if matches!(rejection, Rejection::Engine(_) | Rejection::Audit(_)) {
            // Decided, but failed at the audit log or the engine.
            self.outcome = Outcome::Error;
        }
        if self.record.decision.is_none() {
            self.record.decision = Some(DecisionRecord {
                allow: false,
                reasons: vec![rejection.to_string()],
                policy_revision: String::new(),
                owner_scope: None,
                view_scope: None,
            });
        }
    }

    fn set_response(&mut self, f: impl FnOnce(&mut ResponseRecord)) {
        let r = self.record.response.get_or_insert(ResponseRecord {
            status: 0,
            bytes_in: 0,
            bytes_out: 0,
            duration_ms: 0.0,
            hijacked: false,
        });
        f(r);
    }

    /// Turns the trail into what runs when the response has ended: returned
    /// for the response body to run, or handed to the hijacked session.
    pub(super) fn finish(
        mut self,
        gw: Arc<Gateway>,
        status: StatusCode,
        started: Instant,
        in_flight: InFlight,
    ) -> Option<Completion> {
        self.set_response(|r| r.status = status.as_u16());
        self.record.stage = Stage::Complete;
        if self.decision_written {
            // The decision record carries it; the completion need not repeat it.
            self.record.input = None;
        }
        let overhead = self
            .forwarded_at
            .map(|t| t.duration_since(started))
            .unwrap_or_else(|| started.elapsed());
        let completion = Completion {
            gw,
            record: self.record,
            started,
            overhead,
            operation: self.operation,
            outcome: self.outcome,
            hijack: self.hijack,
            request_counter: self.request_counter,
            in_flight: Some(in_flight),
            held: self.held,
        };
        match self.hijack_done {
            Some(tx) if status == StatusCode::SWITCHING_PROTOCOLS => {
                // The session task runs it; if that task is gone, run it now.
                tx.send(completion).err()
            }
            _ => Some(completion),
        }
    }
}
