//! Ownership at forwarding (issue 15): what a request creates is labelled
//! with its owner, and what lists, events and prunes return is narrowed to
//! the caller's scope.
//!
//! Two calls from the pipeline:
//! - [`check`], before the decision: a client-supplied label in moat's
//!   namespace (`io.moat.*`) is refused wherever a label can be set
//!   ([`labels`]), so that an owner label on the engine was always written
//!   by moat;
//! - [`apply`], after the decision is enforced:
//!   - ContainerCreate, VolumeCreate and NetworkCreate get the owner labels
//!     `io.moat.owner`, `io.moat.scope` (the decision's `owner_scope`, by
//!     default `user:<name>`) and `io.moat.auth` in the body the engine
//!     receives, for every identity;
//!   - the named volumes a ContainerCreate mounts that do not exist yet are
//!     created first, labelled ([`volumes`]);
//!   - when the decision carries a `view_scope`, ContainerList, VolumeList,
//!     NetworkList, SystemEvents and the container, volume and network
//!     prunes get `label=io.moat.scope=<view_scope>` merged into their
//!     `filters` ([`filters`]); SystemDataUsage, ImagePrune and BuildPrune,
//!     which the engine cannot narrow by label, are refused.

mod filters;
mod labels;
mod volumes;

use http::StatusCode;

use crate::body::Inspected;
use crate::classify::{encode_query, OpId, Route};
use crate::forward::{ForwardError, Upstream};
use crate::identity::Identity;
use crate::policy::Decision;

use labels::OwnerLabels;

/// Why the scope stage refused a request.
#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error("label `{key}` in {position} is refused: the `io.moat.` label namespace is moat's (it records who owns an object); remove the label or rename it outside that namespace")]
    Spoofed { position: String, key: String },
    #[error("the build's `labels` query parameter must be a JSON object of strings")]
    BadBuildLabels,
    #[error("the request body must be a JSON object")]
    NotAnObject,
    #[error("`Labels` must be an object of strings")]
    LabelsNotObject,
    #[error("the `filters` query parameter must be a JSON object mapping each filter to a list of strings or to an object of booleans")]
    BadFilters,
    #[error("{op} is not available to you: it covers every owner's objects on the engine and cannot be narrowed to yours (you see only your own objects); ask an admin")]
    NotNarrowable { op: OpId },
    #[error("volume `{name}` was created meanwhile by someone else (owner: {owner}); choose another volume name")]
    VolumeTaken { name: String, owner: String },
    #[error("moat could not create volume `{name}` for this container: {message}")]
    VolumeCreate {
        name: String,
        status: StatusCode,
        message: String,
    },
    #[error(transparent)]
    Engine(#[from] ForwardError),
}

impl ScopeError {
    pub fn status(&self) -> StatusCode {
        match self {
            ScopeError::NotNarrowable { .. } => StatusCode::FORBIDDEN,
            ScopeError::VolumeTaken { .. } => StatusCode::CONFLICT,
            ScopeError::VolumeCreate { status, .. } => *status,
            ScopeError::Engine(e) => e.status(),
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// Before the decision: refuses any client-supplied label in moat's
/// namespace (the body's `Labels` anywhere, the build's `labels`, a
/// commit's or import's `LABEL` changes).
pub fn check(route: &Route, body: Option<&serde_json::Value>) -> Result<(), ScopeError> {
    labels::check(route, body)
}

/// What the engine receives after the scope stage.
pub struct Scoped {
    /// The request target with its `filters` narrowed, when they were
    /// (else the route's own is sent).
    pub upstream: Option<String>,
    pub inspected: Inspected,
}

/// At forwarding: stamps the owner labels, creates the missing named
/// volumes of a container create (`missing_volumes`: names the engine does
/// not have), and narrows lists, events and prunes to `view_scope`.
pub async fn apply(
    route: &Route,
    decision: &Decision,
    identity: &Identity,
    inspected: Inspected,
    upstream: &Upstream,
    missing_volumes: &[String],
) -> Result<Scoped, ScopeError> {
    let inspected = match route.op.id {
        OpId::ContainerCreate | OpId::VolumeCreate | OpId::NetworkCreate => {
            let owner = OwnerLabels::new(identity, decision);
            let (mut value, received) = match inspected {
                Inspected::Json { value, received } => (value, received),
                Inspected::Empty => (serde_json::Value::Object(Default::default()), 0),
                Inspected::Stream(_) => return Err(ScopeError::NotAnObject),
            };
            labels::stamp(&mut value, &owner)?;
            if route.op.id == OpId::ContainerCreate && !missing_volumes.is_empty() {
                let prefix = route
                    .api_version
                    .as_ref()
                    .map(|v| format!("/v{v}"))
                    .unwrap_or_default();
                volumes::create_missing(upstream, &prefix, missing_volumes, &value, &owner).await?;
            }
            Inspected::Json { value, received }
        }
        _ => inspected,
    };
    let upstream = match &decision.view_scope {
        Some(view) => narrow(route, view)?,
        None => None,
    };
    Ok(Scoped {
        upstream,
        inspected,
    })
}

/// The request target narrowed to `view` (`None`: unchanged, for
/// operations that list nothing), or the refusal of an operation that
/// cannot be narrowed.
fn narrow(route: &Route, view: &str) -> Result<Option<String>, ScopeError> {
    match route.op.id {
        OpId::ContainerList
        | OpId::VolumeList
        | OpId::NetworkList
        | OpId::SystemEvents
        | OpId::ContainerPrune
        | OpId::VolumePrune
        | OpId::NetworkPrune => {
            let mut query = route.query.clone();
            filters::narrow(&mut query, labels::SCOPE, view)?;
            let path = route
                .upstream
                .split_once('?')
                .map_or(route.upstream.as_str(), |(p, _)| p);
            Ok(Some(format!("{path}?{}", encode_query(&query))))
        }
        OpId::SystemDataUsage | OpId::ImagePrune | OpId::BuildPrune => {
            Err(ScopeError::NotNarrowable { op: route.op.id })
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, target: &str) -> Route {
        crate::classify::classify(&method.parse().unwrap(), &target.parse().unwrap()).unwrap()
    }

    #[test]
    fn lists_events_and_prunes_are_narrowed_keeping_the_version_and_query() {
        let r = route(
            "GET",
            "/v1.41/containers/json?all=1&limit=2&filters=%7B%22status%22%3A%5B%22exited%22%5D%7D",
        );
        let target = narrow(&r, "user:alice").unwrap().unwrap();
        assert!(
            target.starts_with("/v1.41/containers/json?all=1&limit=2&filters="),
            "{target}"
        );
        let again = route("GET", &target);
        assert_eq!(again.op.id, OpId::ContainerList);
        let f: serde_json::Value =
            serde_json::from_str(&again.query.iter().find(|(k, _)| k == "filters").unwrap().1)
                .unwrap();
        assert_eq!(
            f,
            serde_json::json!({"label": {"io.moat.scope=user:alice": true}, "status": {"exited": true}})
        );
        for (m, t) in [
            ("GET", "/volumes"),
            ("GET", "/networks"),
            ("GET", "/events"),
            ("POST", "/containers/prune"),
            ("POST", "/volumes/prune"),
            ("POST", "/networks/prune"),
        ] {
            let target = narrow(&route(m, t), "team:web").unwrap().unwrap();
            assert!(target.starts_with(&format!("{t}?filters=")), "{target}");
            assert!(target.contains("io.moat.scope%3Dteam%3Aweb"), "{target}");
        }
    }

    #[test]
    fn what_cannot_be_narrowed_is_refused_and_the_rest_unchanged() {
        for (m, t) in [
            ("GET", "/system/df"),
            ("POST", "/images/prune"),
            ("POST", "/build/prune"),
        ] {
            let e = narrow(&route(m, t), "user:alice").unwrap_err();
            assert_eq!(e.status(), StatusCode::FORBIDDEN);
            assert!(e.to_string().contains("cannot be narrowed"), "{e}");
        }
        let r = route("GET", "/v1.41/images/json?all=1");
        assert_eq!(narrow(&r, "user:alice").unwrap(), None);
    }
}
