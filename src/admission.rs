//! Admission: which connections, requests and streams moat takes on, so
//! that no unauthenticated client can lock others out and no identity can
//! starve the rest.
//!
//! - [`pool`]: connections that have not proven an identity yet have a
//!   budget of their own; when it is full, a new connection evicts the
//!   oldest of them.
//! - [`identities`]: per-identity limits on open connections, requests in
//!   flight, streaming sessions and request rate, with group overrides.
//!
//! A connection leaves the pool, and counts for its identity, once its
//! certificate verifies and names a user (at the handshake), or once a
//! request on it carries a valid token. Over a limit, a connection is
//! closed (after the handshake, or after the 429 of its first request) and
//! a request gets 429 with `Retry-After`; each is logged, audited and
//! counted in `moat_limit_rejections_total{limit}`.

pub mod identities;
pub mod pool;

use std::sync::{Arc, Mutex};

use crate::classify::{OpId, Route};
use crate::config::Limits;
use crate::metrics::Metrics;

pub use identities::{Held, Identities, Kind, Limit, Over};
pub use pool::{Pool, Unauth};

/// The pre-authentication pool and the per-identity counts, shared by all
/// connections.
pub struct Admission {
    pub pool: Arc<Pool>,
    pub identities: Arc<Identities>,
    metrics: Arc<Metrics>,
}

impl Admission {
    pub fn new(limits: &Limits, metrics: Arc<Metrics>) -> Admission {
        let u = &limits.unauthenticated;
        Admission {
            pool: Arc::new(Pool::new(
                u.budget(limits.max_connections),
                u.max_per_source,
                u.grace(),
                metrics.clone(),
            )),
            identities: Arc::new(Identities::new(identities::Table::from_config(limits))),
            metrics,
        }
    }

    /// Counts `conn` for the identity unless it already counts for one;
    /// over the identity's connection limit, the connection must close.
    pub fn authenticate(
        &self,
        conn: &ConnAdmission,
        name: &str,
        groups: &[String],
    ) -> Result<(), Over> {
        conn.authenticate(&self.identities, name, groups)
            .inspect_err(|e| self.refused(e))
    }

    /// Counts a request (or stream) for the identity; the count ends when
    /// the returned guard drops.
    pub fn begin(&self, name: &str, groups: &[String], kind: Kind) -> Result<Held, Over> {
        self.identities
            .begin(name, groups, kind)
            .inspect_err(|e| self.refused(e))
    }

    fn refused(&self, over: &Over) {
        self.metrics.limit_rejected(over.limit.label());
        tracing::info!(identity = %over.identity, limit = over.limit.label(), "{over}");
    }
}

/// Where one connection stands: unauthenticated (holding its place in the
/// pool) or counted for an identity.
pub struct ConnAdmission {
    state: Mutex<ConnState>,
}

/// The guards are held for their drop: leaving the pool, uncounting.
enum ConnState {
    Unauthenticated { _place: Option<Unauth> },
    Counted { _held: Held },
}

impl ConnAdmission {
    /// A connection that has not proven an identity yet.
    pub fn unauthenticated(place: Unauth) -> ConnAdmission {
        ConnAdmission {
            state: Mutex::new(ConnState::Unauthenticated {
                _place: Some(place),
            }),
        }
    }

    /// A connection outside the pool (tests, or none configured).
    pub fn untracked() -> ConnAdmission {
        ConnAdmission {
            state: Mutex::new(ConnState::Unauthenticated { _place: None }),
        }
    }

    pub fn is_authenticated(&self) -> bool {
        matches!(
            *self.state.lock().unwrap_or_else(|p| p.into_inner()),
            ConnState::Counted { .. }
        )
    }

    fn authenticate(
        &self,
        ids: &Arc<Identities>,
        name: &str,
        groups: &[String],
    ) -> Result<(), Over> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let ConnState::Counted { .. } = *state {
            return Ok(());
        }
        // Over the limit, the connection stays in the pool until it closes.
        let held = ids.connect(name, groups)?;
        // Leaves the pool: its place is dropped with the old state.
        *state = ConnState::Counted { _held: held };
        Ok(())
    }
}

/// Whether a request is a long-lived stream (hijacked sessions, `logs -f`,
/// `events`, streaming `stats`, `wait`) or an ordinary request. The query
/// is read as the daemon reads it: the first value of a name, and Go's
/// `BoolValue` truthiness.
pub fn kind(route: &Route, upgrade: bool) -> Kind {
    let first = |name: &str| {
        route
            .query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let streaming = match route.op.id {
        _ if route.op.hijack => upgrade,
        OpId::ContainerLogs | OpId::ServiceLogs | OpId::TaskLogs => {
            first("follow").is_some_and(truthy)
        }
        OpId::ContainerStats => first("stream").is_none_or(truthy),
        OpId::SystemEvents | OpId::ContainerWait => true,
        _ => false,
    };
    if streaming {
        Kind::Stream
    } else {
        Kind::Request
    }
}

/// Go's `httputils.BoolValue`.
fn truthy(v: &str) -> bool {
    let v = v.trim().to_ascii_lowercase();
    !matches!(v.as_str(), "" | "0" | "no" | "false" | "none")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, target: &str) -> Route {
        let uri: http::Uri = target.parse().unwrap();
        crate::classify::classify(&method.parse().unwrap(), &uri).unwrap()
    }

    #[test]
    fn long_lived_streams_are_told_from_requests() {
        let cases = [
            (
                "GET",
                "/v1.41/containers/c/logs?follow=1",
                false,
                Kind::Stream,
            ),
            (
                "GET",
                "/v1.41/containers/c/logs?follow=false",
                false,
                Kind::Request,
            ),
            (
                "GET",
                "/v1.41/containers/c/logs?follow=0&follow=1",
                false,
                Kind::Request,
            ),
            ("GET", "/v1.41/containers/c/logs", false, Kind::Request),
            ("GET", "/v1.41/events", false, Kind::Stream),
            ("GET", "/v1.41/containers/c/stats", false, Kind::Stream),
            (
                "GET",
                "/v1.41/containers/c/stats?stream=0",
                false,
                Kind::Request,
            ),
            ("POST", "/v1.41/containers/c/wait", false, Kind::Stream),
            (
                "POST",
                "/v1.41/containers/c/attach?stream=1",
                true,
                Kind::Stream,
            ),
            ("POST", "/v1.41/exec/e/start", true, Kind::Stream),
            ("POST", "/v1.41/exec/e/start", false, Kind::Request),
            ("GET", "/v1.41/containers/json", false, Kind::Request),
            ("GET", "/_ping", false, Kind::Request),
        ];
        for (m, t, upgrade, want) in cases {
            assert_eq!(kind(&route(m, t), upgrade), want, "{m} {t}");
        }
    }

    #[tokio::test]
    async fn a_connection_counts_for_its_first_identity_once() {
        let text = "tls:\n  cert: s.pem\n  key: k.pem\n  client_ca: ca.pem\nlimits:\n  identity:\n    max_connections: 1\n";
        let c = crate::config::Config::parse(text, std::path::Path::new("/m.yaml")).unwrap();
        let a = Admission::new(&c.limits, Arc::new(Metrics::new()));
        let place = a
            .pool
            .admit(
                std::net::IpAddr::from([127, 0, 0, 1]),
                tokio_util::sync::CancellationToken::new(),
            )
            .await;
        let conn = ConnAdmission::unauthenticated(place);
        assert_eq!(a.pool.len(), 1);
        a.authenticate(&conn, "alice", &[]).unwrap();
        assert!(conn.is_authenticated());
        assert!(
            a.pool.is_empty(),
            "an authenticated connection left the pool"
        );
        // Later requests on the same connection do not count it again.
        a.authenticate(&conn, "alice", &[]).unwrap();
        // A second connection of the same identity is over its limit.
        let other = ConnAdmission::untracked();
        let e = a.authenticate(&other, "alice", &[]).unwrap_err();
        assert_eq!(e.limit, Limit::Connections);
        assert!(!other.is_authenticated());
        drop(conn);
        a.authenticate(&other, "alice", &[]).unwrap();
    }
}
