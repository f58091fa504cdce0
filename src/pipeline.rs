//! The request path, top to bottom in one function: [`handle`].
//!
//! check the head → authenticate → classify → admit (engine up, framing,
//! upgrade) → the identity's limits → API version → read/inspect the body →
//! effective request → moat's labels refused → resolve the objects named
//! → decide → audit the decision → enforce → scope (owner labels, lists
//! narrowed) → forward or hijack → respond (and audit the completion
//! when the response has ended).
//!
//! Each stage is one call that returns what the next needs, or a
//! [`Rejection`]; the first refusal ends the request.
//!
//! Every outcome, refusals included, leaves an audit record ([`trail`]):
//! state-changing requests get a `decision` record written before anything
//! reaches the engine, and every request gets a `complete` record when its
//! response (or hijacked session) ends ([`completion`]). Upgrades (Docker's
//! hijack) are handled in [`upgrade`].

mod completion;
mod trail;
mod upgrade;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;

use crate::admission::{self, Admission, Held};
use crate::body::{self, Inspected, RequestBody};
use crate::classify::{self, Route};
use crate::config::{AuditLevel, Limits};
use crate::conn::ConnInfo;
use crate::effective;
use crate::engine::EngineStatus;
use crate::forward::Upstream;
use crate::gateway::Gateway;
use crate::identity::{Authenticator, Identity};
use crate::metrics::Metrics;
use crate::policy::{Decision, Facts};
use crate::resbody::{full, ResBody};
use crate::resolve::{self, Resolved};
use crate::respond::{error_response, Rejection};
use crate::scope;

pub use completion::Completion;
use trail::Trail;
use upgrade::Upgrade;

/// Handles one request. Never fails: every refusal becomes a response.
pub async fn handle(
    gw: Arc<Gateway>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ResBody>, Infallible> {
    let started = Instant::now();
    let in_flight = conn.begin();
    let id = request_id();
    let mut trail = Trail::new(&conn, &req, &id);
    // Whatever of the body is not read is drained after the answer.
    let req =
        req.map(|b| RequestBody::new(b, gw.config.limits.body_read_timeout, gw.tasks.clone()));
    let outcome = stages(&gw, &conn, req, &mut trail).await;
    let response = respond(outcome, &mut trail, &id);
    // The completion record is written when the response has ended.
    let completion = trail.finish(gw.clone(), response.status(), started, in_flight);
    Ok(completion::on_complete(response, completion))
}

/// The stages, in request order. Each returns what the next needs, or the
/// refusal that ends the request.
async fn stages(
    gw: &Gateway,
    conn: &ConnInfo,
    mut req: Request<RequestBody>,
    trail: &mut Trail,
) -> Result<Response<ResBody>, Rejection> {
    let limits = &gw.config.limits;

    // 0. hyper bounds the head only roughly (by read buffer): be exact.
    check_head(&req, limits.max_header_bytes)?;

    // 1. Who is asking.
    let identity = authenticate(&gw.auth, &gw.metrics, conn, &req)?;
    trail.identity(&identity);
    // The connection counts for this identity from now on (a token's; a
    // certificate's did from its handshake), or closes over its limit.
    gw.admission
        .authenticate(&conn.admission, &identity.name, &identity.groups)?;

    // 2. What they ask for, exactly as the daemon will route it, whether
    //    it can be taken in at all, and the API version the engine will
    //    apply to it.
    let route = classify::classify(req.method(), req.uri())?;
    trail.route(&route);
    admit(&gw.engine, &req)?;
    let upgrade = Upgrade::take(&mut req, &route)?;
    trail.hold(limit(&gw.admission, &identity, &route, upgrade.is_some())?);
    // A version moat refuses is answered after the decision, so that a
    // client the policy refuses anyway hears why (a client whose `/_ping`
    // was refused could not negotiate its version).
    let version = effective::version(&gw.engine_api, &gw.upstream, &gw.config.engine, &route).await;

    // 3. The body the policy must see (uploads stream untouched).
    let (parts, incoming) = req.into_parts();
    let inspected = read_body(&route, &parts, incoming, limits).await?;

    // 3b. The effective request: what the engine will really apply. It
    //     replaces `inspected`: the policy decides on it, and the engine
    //     receives exactly its serialization.
    let inspected = match &version {
        Ok(v) => effective::body(&route, v, inspected)?,
        Err(_) => inspected,
    };
    upgrade::require(upgrade.as_ref(), &route, inspected.json())?;
    // 3c. No client writes moat's owner labels (`io.moat.*`).
    scope::check(&route, inspected.json())?;
    if gw.config.audit.level == AuditLevel::Request {
        trail.body(inspected.json());
    }

    // 3d. The objects the request names, looked up in the engine: the
    //     policy sees them with their owners and facts (`input.resources`),
    //     and the path and body name them by id from here on, so that the
    //     engine acts on the objects the policy saw. When the engine's API
    //     version is unknown the request is refused after the decision
    //     anyway, and nothing is looked up.
    let mut resolved = match &version {
        Ok(_) => resolve::resolve(&gw.upstream, limits, route, inspected).await?,
        Err(_) => Resolved::nothing(route, inspected),
    };
    // An inspect was its own lookup: the engine has answered it already.
    let answered = resolved.answer.take();
    let route = &resolved.route;
    if gw.config.audit.level == AuditLevel::Request && !resolved.resources.is_empty() {
        // What the policy decides on and the engine receives: ids, not the
        // names the client gave (those are in the input's `resources`).
        trail.body(resolved.inspected.json());
    }

    // 4. The decision.
    let api_version = match &version {
        Ok(v) => Some(v.api.to_string()),
        Err(_) => route.api_version.clone(),
    };
    let (decision, input) = decide(
        gw,
        conn,
        &parts,
        api_version.as_deref(),
        &resolved,
        &identity,
    )
    .await;
    if let Some(input) = input {
        trail.input(input);
    }
    trail.decision(&decision);

    // 5. The decision record, on disk before anything reaches the engine;
    //    then the decision is enforced.
    if !route.op.readonly || !decision.allow {
        trail
            .write_decision(&gw.audit, gw.config.audit.on_failure)
            .await?;
    }
    enforce(&decision, route, &identity)?;
    version?;

    // 5b. Ownership at forwarding: owner labels stamped on what is
    //     created (missing named volumes created first, labelled); lists,
    //     events and prunes narrowed to the decision's `view_scope`.
    let missing_volumes = resolved.missing_volumes();
    let scoped = scope::apply(
        route,
        &decision,
        &identity,
        resolved.inspected,
        &gw.upstream,
        &missing_volumes,
    )
    .await?;

    // 6. The engine (an inspect: the answer to its lookup, which the
    //    policy has just allowed).
    if let Some(reply) = answered {
        trail.forwarding();
        return Ok(reply.into_response());
    }
    forward(
        gw,
        conn,
        trail,
        parts,
        scoped.upstream.as_deref().unwrap_or(&route.upstream),
        scoped.inspected,
        upgrade,
    )
    .await
}

/// Step 0: the request head within `limits.max_header_bytes`.
fn check_head<B>(req: &Request<B>, limit: usize) -> Result<(), Rejection> {
    if head_size(req) > limit {
        return Err(Rejection::HeadTooLarge { limit });
    }
    Ok(())
}

/// Step 1: the client's identity, from its certificate or bearer token (or,
/// on the local socket, from the kernel);
/// failures are counted by reason.
fn authenticate<B>(
    auth: &Authenticator,
    metrics: &Metrics,
    conn: &ConnInfo,
    req: &Request<B>,
) -> Result<Identity, Rejection> {
    let identity = match &conn.local {
        Some(peer) => auth.authenticate_local(peer, req.headers()),
        None => auth.authenticate(conn.cert.as_ref(), req.headers()),
    }
    .inspect_err(|e| metrics.auth_failure(e.reason()))?;
    Ok(identity)
}

/// Step 2: a classified request is taken in only while the engine is not
/// restarting, and only with unambiguous framing.
fn admit<B>(engine: &EngineStatus, req: &Request<B>) -> Result<(), Rejection> {
    if engine.is_restarting() {
        return Err(Rejection::EngineRestarting);
    }
    body::check_framing(req.headers())?;
    Ok(())
}

/// Step 2, last: the identity's limits (requests in flight and rate, or
/// streams); the request counts until its completion (response or session
/// ended), which holds the returned count.
fn limit(
    admission: &Admission,
    identity: &Identity,
    route: &Route,
    upgrade: bool,
) -> Result<Held, Rejection> {
    let kind = admission::kind(route, upgrade);
    Ok(admission.begin(&identity.name, &identity.groups, kind)?)
}

/// Step 3: the body, inspected, within `limits.body_read_timeout`.
async fn read_body(
    route: &Route,
    parts: &Parts,
    incoming: RequestBody,
    limits: &Limits,
) -> Result<Inspected, Rejection> {
    let read = body::inspect(
        route.op,
        &parts.headers,
        incoming,
        limits.max_inspect_body_bytes,
    );
    let after = limits.body_read_timeout;
    let inspected = tokio::time::timeout(after, read)
        .await
        .map_err(|_| body::BodyError::Timeout { after })??;
    Ok(inspected)
}

/// Step 4: the policy's decision on the effective request, and, when
/// `audit.level` is `request`, the input document it was made
/// on, for the audit record. `Policy::decide` observes
/// `moat_policy_eval_seconds` itself.
async fn decide(
    gw: &Gateway,
    conn: &ConnInfo,
    parts: &Parts,
    api_version: Option<&str>,
    resolved: &Resolved,
    identity: &Identity,
) -> (Decision, Option<serde_json::Value>) {
    let (policy, record_input) = (&gw.policy, gw.config.audit.level == AuditLevel::Request);
    let facts = Facts {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        route: &resolved.route,
        api_version,
        body: resolved.inspected.json(),
        identity,
        client: conn.peer,
        resources: &resolved.resources,
    };
    let input = record_input.then(|| policy.input(&facts));
    (policy.decide(&facts).await, input)
}

/// Step 5: a denial ends the request with the policy's reasons.
fn enforce(decision: &Decision, route: &Route, identity: &Identity) -> Result<(), Rejection> {
    if decision.allow {
        return Ok(());
    }
    Err(Rejection::Denied(denial_message(decision, route, identity)))
}

/// Step 6: the request, re-serialized for the engine to `target` (the
/// classified target, narrowed by the scope stage), streamed or (when
/// upgraded) hijacked.
async fn forward(
    gw: &Gateway,
    conn: &ConnInfo,
    trail: &mut Trail,
    mut parts: Parts,
    target: &str,
    inspected: Inspected,
    upgrade: Option<Upgrade>,
) -> Result<Response<ResBody>, Rejection> {
    let (bytes_in, body) = match inspected {
        Inspected::Empty => (0, full(Bytes::new())),
        // moat's serialization of what the policy saw, never the client's
        // bytes; hyper sets its Content-Length.
        Inspected::Json { value, received } => {
            parts.headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            (received, full(Bytes::from(value.to_string())))
        }
        Inspected::Stream(s) => {
            let (counted, counter) = completion::count_request(s);
            trail.request_counter(counter);
            (0, counted)
        }
    };
    trail.bytes_in(bytes_in);
    let req = Upstream::request(parts.method, target, parts.headers, body)?;
    trail.forwarding();
    match upgrade {
        Some(upgrade) => upgrade.forward(gw, conn, trail, req).await,
        None => Ok(gw.upstream.send(req).await?),
    }
}

/// Step 7: the response, or the refusal as one (noted in the trail);
/// tagged with the request id either way.
fn respond(
    outcome: Result<Response<ResBody>, Rejection>,
    trail: &mut Trail,
    id: &str,
) -> Response<ResBody> {
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
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-moat-request-id", v);
    }
    response
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
