//! The request path, top to bottom in one function: [`handle`].
//!
//! authenticate → classify → check framing → read/inspect the body → decide
//! → audit the decision → forward or hijack → respond (and audit the
//! completion when the response has ended).
//!
//! Every outcome, refusals included, leaves an audit record: state-changing
//! requests get a `decision` record written before anything reaches the
//! engine, and every request gets a `complete` record when its response (or
//! hijacked session) ends.

mod track;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::audit::{DecisionRecord, Record, RequestRecord, ResponseRecord, Stage, UserRecord};
use crate::body::{self, Inspected};
use crate::classify::{self, Route};
use crate::config::{AuditLevel, AuditOnFailure};
use crate::conn::{ConnInfo, InFlight};
use crate::forward::{stream_body, Upstream};
use crate::gateway::Gateway;
use crate::hijack::{self, Counters, Opened};
use crate::identity::Identity;
use crate::policy::{Decision, Facts};
use crate::resbody::{full, ResBody};
use crate::respond::{error_response, Rejection};

pub use track::Completion;

/// Handles one request. Never fails: every refusal becomes a response.
pub async fn handle(
    gw: Arc<Gateway>,
    conn: Arc<ConnInfo>,
    mut req: Request<Incoming>,
) -> Result<Response<ResBody>, Infallible> {
    let started = Instant::now();
    let in_flight = conn.begin();
    let id = request_id();
    let mut trail = Trail::new(&conn, &req, &id);

    let outcome: Result<Response<ResBody>, Rejection> = async {
        // 0. hyper bounds the head only roughly (by read buffer): be exact.
        let limit = gw.config.limits.max_header_bytes;
        if head_size(&req) > limit {
            return Err(Rejection::HeadTooLarge { limit });
        }

        // 1. Who is asking.
        let identity = gw
            .auth
            .authenticate(conn.cert.as_ref(), req.headers())
            .inspect_err(|e| {
                gw.metrics.auth_failure(e.reason());
            })?;
        trail.identity(&identity);

        // 2. What they ask for, exactly as the daemon will route it.
        let route = classify::classify(req.method(), req.uri())?;
        trail.route(&route);
        if gw.engine.is_restarting() {
            return Err(Rejection::EngineRestarting);
        }
        body::check_framing(req.headers())?;
        let upgrade = req.headers().get(header::UPGRADE).cloned();
        if upgrade.is_some() && !route.op.hijack {
            return Err(Rejection::UnexpectedUpgrade { op: route.op.id });
        }
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

        // 3. The body the policy must see (uploads stream untouched).
        let (parts, incoming) = req.into_parts();
        let inspected = body::inspect(
            route.op,
            &parts.headers,
            incoming,
            gw.config.limits.max_inspect_body_bytes,
        )
        .await?;
        let json = match &inspected {
            Inspected::Json { value, .. } => Some(value),
            _ => None,
        };
        if route.op.hijack && upgrade.is_none() && !is_detached_exec(&route, json) {
            return Err(Rejection::UpgradeRequired { op: route.op.id });
        }
        if gw.config.audit.level == AuditLevel::Request {
            trail.body(json);
        }

        // 4. The decision.
        let facts = Facts {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            route: &route,
            body: json,
            identity: &identity,
            client: conn.peer,
        };
        // `Policy::decide` observes `moat_policy_eval_seconds` itself.
        let decision = gw.policy.decide(&facts).await;
        trail.decision(&decision);

        // 5. The decision record, on disk before anything reaches the engine.
        if !route.op.readonly || !decision.allow {
            trail.write_decision(&gw).await?;
        }
        if !decision.allow {
            return Err(Rejection::Denied(denial_message(
                &decision, &route, &identity,
            )));
        }

        // 6. The engine.
        let (bytes_in, body) = match inspected {
            Inspected::Empty => (0, full(Bytes::new())),
            Inspected::Json { bytes, .. } => (bytes.len() as u64, full(bytes)),
            Inspected::Stream(s) => {
                let (counted, counter) = track::count_request(s);
                trail.request_counter(counter);
                (0, counted)
            }
        };
        trail.bytes_in(bytes_in);
        let upstream_req =
            Upstream::request(parts.method.clone(), &route.upstream, parts.headers, body)?;
        trail.forwarding();
        match (client_upgrade, upgrade) {
            (Some(client), Some(protocol)) => {
                match hijack::open(&gw.upstream, upstream_req, protocol).await? {
                    Opened::Plain(resp) => Ok(resp),
                    Opened::Switched { response, engine } => {
                        let counters = Arc::new(Counters::default());
                        let completion = trail.hijacked(counters.clone());
                        let cancel = conn.cancel.clone();
                        let metrics = gw.metrics.clone();
                        gw.tasks.spawn(async move {
                            metrics.hijack_started();
                            hijack::tunnel(client, engine, counters, cancel).await;
                            metrics.hijack_ended();
                            // The session's record is written when it ends.
                            if let Ok(c) = completion.await {
                                c.complete(0);
                            }
                        });
                        Ok(response)
                    }
                }
            }
            _ => Ok(gw.upstream.send(upstream_req).await?.map(stream_body)),
        }
    }
    .await;

    // 7. The response; the completion record is written when it has ended.
    let mut response = match outcome {
        Ok(resp) => resp,
        Err(rejection) => {
            if let Rejection::Audit(e) = &rejection {
                tracing::error!(error = %e, "audit record not written; request refused");
            }
            trail.refused(&rejection);
            error_response(&rejection)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-moat-request-id", v);
    }
    let completion = trail.finish(gw.clone(), response.status(), started, in_flight);
    Ok(track::on_complete(response, completion))
}

/// The size of the request head as sent, near enough: request line plus
/// `name: value\r\n` per header.
fn head_size<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let line = req.method().as_str().len() + target + 12;
    req.headers()
        .iter()
        .fold(line, |n, (k, v)| n + k.as_str().len() + v.len() + 4)
}

/// `POST /exec/{id}/start` with `"Detach": true` starts the exec without
/// attaching, so it is an ordinary request and needs no upgrade.
fn is_detached_exec(route: &Route, body: Option<&serde_json::Value>) -> bool {
    route.op.id == "ExecStart"
        && body
            .and_then(|b| b.get("Detach"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
}

fn denial_message(decision: &Decision, route: &Route, identity: &Identity) -> String {
    if decision.reasons.is_empty() {
        format!(
            "no policy rule allows {} for {}",
            route.op.id, identity.name
        )
    } else {
        decision.reasons.join("; ")
    }
}

/// A random, unique request id (128 bits, hex).
fn request_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The audit record under construction for one request.
struct Trail {
    record: Record,
    readonly_op: bool,
    decision_written: bool,
    forwarded_at: Option<Instant>,
    operation: &'static str,
    decision_label: &'static str,
    hijack: Option<Arc<Counters>>,
    hijack_done: Option<tokio::sync::oneshot::Sender<Completion>>,
    request_counter: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl Trail {
    fn new(conn: &ConnInfo, req: &Request<Incoming>, id: &str) -> Self {
        Trail {
            record: Record {
                id: id.to_string(),
                stage: Stage::Decision,
                user: None,
                client: conn.peer.to_string(),
                request: RequestRecord {
                    method: req.method().to_string(),
                    uri: req.uri().to_string(),
                    operation: "Unclassified".into(),
                    params: BTreeMap::new(),
                    body: None,
                },
                decision: None,
                response: None,
            },
            readonly_op: req.method() == Method::GET || req.method() == Method::HEAD,
            decision_written: false,
            forwarded_at: None,
            operation: "Unclassified",
            decision_label: "error",
            hijack: None,
            hijack_done: None,
            request_counter: None,
        }
    }

    fn identity(&mut self, id: &Identity) {
        self.record.user = Some(UserRecord {
            name: id.name.clone(),
            groups: id.groups.clone(),
            auth_method: id.auth_method,
            cert_serial: id.certificate.as_ref().map(|c| c.serial.clone()),
            token_id: id.token_id.clone(),
        });
    }

    fn route(&mut self, route: &Route) {
        self.operation = route.op.id;
        self.readonly_op = route.op.readonly;
        self.record.request.operation = route.op.id.to_string();
        self.record.request.params = route
            .params
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect();
    }

    fn body(&mut self, body: Option<&serde_json::Value>) {
        self.record.request.body = body.cloned();
    }

    fn decision(&mut self, d: &Decision) {
        self.decision_label = if d.allow { "allow" } else { "deny" };
        self.record.decision = Some(DecisionRecord {
            allow: d.allow,
            reasons: d.reasons.clone(),
            policy_revision: d.revision.clone(),
        });
    }

    async fn write_decision(&mut self, gw: &Gateway) -> Result<(), Rejection> {
        self.record.stage = Stage::Decision;
        let result = gw.audit.record(self.record.clone()).await;
        self.decision_written = true;
        match result {
            Ok(()) => Ok(()),
            Err(e) if gw.config.audit.on_failure == AuditOnFailure::Allow => {
                tracing::error!(error = %e, "audit record not written; request allowed (audit.on_failure: allow)");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn bytes_in(&mut self, n: u64) {
        self.set_response(|r| r.bytes_in = n);
    }

    fn request_counter(&mut self, c: Arc<std::sync::atomic::AtomicU64>) {
        self.request_counter = Some(c);
    }

    fn forwarding(&mut self) {
        self.forwarded_at = Some(Instant::now());
    }

    /// The session task receives the completion once the 101 is built.
    fn hijacked(&mut self, counters: Arc<Counters>) -> tokio::sync::oneshot::Receiver<Completion> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.hijack = Some(counters);
        self.hijack_done = Some(tx);
        rx
    }

    fn refused(&mut self, rejection: &Rejection) {
        if matches!(rejection, Rejection::Denied(_)) {
            self.decision_label = "deny";
        } else if !matches!(self.decision_label, "allow" | "deny")
            || matches!(rejection, Rejection::Engine(_) | Rejection::Audit(_))
        {
            self.decision_label = "error";
        }
        if self.record.decision.is_none() {
            self.record.decision = Some(DecisionRecord {
                allow: false,
                reasons: vec![rejection.to_string()],
                policy_revision: String::new(),
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
    fn finish(
        mut self,
        gw: Arc<Gateway>,
        status: StatusCode,
        started: Instant,
        in_flight: InFlight,
    ) -> Option<Completion> {
        self.set_response(|r| r.status = status.as_u16());
        self.record.stage = Stage::Complete;
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
            decision: self.decision_label,
            hijack: self.hijack,
            request_counter: self.request_counter,
            in_flight: Some(in_flight),
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

impl Completion {
    /// Writes the completion record and counts the request. Called once,
    /// from the response body's end (or drop), or from the end of a
    /// hijacked session.
    pub(crate) fn complete(mut self, bytes_out: u64) {
        let gw = self.gw.clone();
        let elapsed = self.started.elapsed();
        let status = self.record.response.as_ref().map(|r| r.status).unwrap_or(0);
        let hijack = self.hijack.take();
        let request_counter = self.request_counter.take();
        if let Some(r) = self.record.response.as_mut() {
            r.duration_ms = elapsed.as_secs_f64() * 1000.0;
            r.bytes_out = bytes_out;
            if let Some(c) = &request_counter {
                r.bytes_in = c.load(std::sync::atomic::Ordering::Relaxed);
            }
            if let Some(h) = &hijack {
                r.hijacked = true;
                r.bytes_in += h.bytes_in.load(std::sync::atomic::Ordering::Relaxed);
                r.bytes_out += h.bytes_out.load(std::sync::atomic::Ordering::Relaxed);
            }
        }
        gw.metrics.request_done(
            self.operation,
            self.decision,
            status,
            elapsed,
            self.overhead,
        );
        tracing::debug!(id = %self.record.id, op = self.operation, status, ms = elapsed.as_millis() as u64, "request");
        // Moved, not cloned: this is the last use of the record.
        let record = self.record;
        drop(self.in_flight.take());
        // Queued without waiting for the writer's answer: written and
        // fsynced like any record; the writer logs a failure.
        match gw.audit.submit(record) {
            Ok(None) => {}
            Ok(Some(wait_for_room)) => {
                gw.tasks.spawn(wait_for_room);
            }
            Err(e) => tracing::error!(error = %e, "completion audit record not written"),
        }
    }
}
