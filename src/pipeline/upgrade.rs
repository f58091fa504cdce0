//! Connection upgrades (Docker's hijack), in one place: which requests may
//! carry `Upgrade`, which must, and how an upgraded request is forwarded.
//!
//! attach, exec start, `/session` and `/grpc` hijack the connection: the
//! client sends `Connection: Upgrade`/`Upgrade: tcp`, and once the engine
//! answers 101 both sides are tunnelled ([`crate::hijack`]). `Upgrade` on
//! any other operation is refused before the body is read; a hijacking
//! operation without it is refused once the body shows it is not a detached
//! exec start.

use std::sync::Arc;

use crate::body::RequestBody;
use http::{header, HeaderValue, Request, Response};
use hyper::upgrade::OnUpgrade;

use super::trail::Trail;
use crate::classify::{OpId, Route};
use crate::conn::ConnInfo;
use crate::gateway::Gateway;
use crate::hijack::{self, Counters, Opened};
use crate::resbody::ResBody;
use crate::respond::Rejection;

/// An upgrade the client asked for: the protocol it named, and its side of
/// the connection once switched.
pub(super) struct Upgrade {
    protocol: HeaderValue,
    client: OnUpgrade,
}

impl Upgrade {
    /// Takes the upgrade the client asks for, if any, from `req`. Refuses
    /// one on an operation that does not hijack.
    pub(super) fn take(
        req: &mut Request<RequestBody>,
        route: &Route,
    ) -> Result<Option<Upgrade>, Rejection> {
        let Some(protocol) = req.headers().get(header::UPGRADE).cloned() else {
            return Ok(None);
        };
        if !route.op.hijack {
            return Err(Rejection::UnexpectedUpgrade { op: route.op.id });
        }
        Ok(Some(Upgrade {
            protocol,
            client: hyper::upgrade::on(req),
        }))
    }

    /// Sends the request to the engine on a dedicated connection; when the
    /// engine switches protocols, tunnels both sides in a tracked task that
    /// writes the completion record when the session ends.
    pub(super) async fn forward(
        self,
        gw: &Gateway,
        conn: &ConnInfo,
        trail: &mut Trail,
        req: Request<ResBody>,
    ) -> Result<Response<ResBody>, Rejection> {
        match hijack::open(&gw.upstream, req, self.protocol).await? {
            Opened::Plain(resp) => Ok(resp),
            Opened::Switched { response, engine } => {
                let counters = Arc::new(Counters::default());
                let completion = trail.hijacked(counters.clone());
                let cancel = conn.cancel.clone();
                let metrics = gw.metrics.clone();
                let client = self.client;
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
}

/// A hijacking operation must come with an upgrade, except an exec start
/// that detaches (its body says so).
pub(super) fn require(
    upgrade: Option<&Upgrade>,
    route: &Route,
    body: Option<&serde_json::Value>,
) -> Result<(), Rejection> {
    if route.op.hijack && upgrade.is_none() && !is_detached_exec(route, body) {
        return Err(Rejection::UpgradeRequired { op: route.op.id });
    }
    Ok(())
}

/// `POST /exec/{id}/start` with `"Detach": true` starts the exec without
/// attaching, so it is an ordinary request and needs no upgrade.
fn is_detached_exec(route: &Route, body: Option<&serde_json::Value>) -> bool {
    route.op.id == OpId::ExecStart
        && body
            .and_then(|b| b.get("Detach"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
}
