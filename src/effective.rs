//! The effective request: what the engine will actually do.
//!
//! moat's promise is that the policy sees exactly what the daemon will act
//! on, or the request is refused. A strictly parsed body is not enough for
//! that: the daemon's handlers decode bodies through deprecated wrapper
//! positions and change their meaning with the API version. So, after the
//! body stage and before the decision:
//!
//! 1. [`version()`]: the API version the engine will apply (the path's prefix,
//!    or the engine's newest when there is none), refused below
//!    `engine.min_api_version` or outside the engine's own range;
//! 2. [`apply`]: the effective document of the inspected JSON body, built
//!    per operation ([`container`], [`swarm`]): deprecated positions refused
//!    (or dropped where the daemon ignores them), version adjustments
//!    applied.
//!
//! 3. [`fetch`]: the addresses the engine will contact because of the
//!    request (`input.operation.fetches`), from the effective query and
//!    body.
//!
//! The policy decides on that document and the engine receives moat's
//! serialization of it, never the client's bytes: the engine cannot act on
//! anything the policy did not see. `docs/policy-input.md` lists each
//! operation's effective body.

mod container;
pub mod fetch;
mod swarm;
pub mod version;

use http::StatusCode;
use serde_json::Value;

use crate::body::Inspected;
use crate::classify::{OpId, Route};
use crate::forward::Upstream;

pub use version::{ApiVersion, EngineApi, EngineFacts, DEFAULT_MIN_API_VERSION};

/// Why moat refused a request at this stage.
#[derive(Debug, thiserror::Error)]
pub enum EffectiveError {
    #[error("API version {requested} is older than moat allows (engine.min_api_version is {min}): use a client that speaks API {min} or newer, or have the admin lower engine.min_api_version")]
    BelowMinimum {
        requested: ApiVersion,
        min: ApiVersion,
    },
    #[error("API version {requested} is not served by the engine behind moat, which serves API versions {min} to {max}: use one of those (the docker CLI negotiates this itself)")]
    NotServed {
        requested: String,
        min: ApiVersion,
        max: ApiVersion,
    },
    #[error("{0}: moat must know which API versions it serves (GET /version) before it forwards anything; try again in a few seconds")]
    EngineUnknown(&'static str),
    #[error("`{key}` at the top level of a {op} body is a deprecated position, which moat refuses: the field belongs in `{target}`")]
    DeprecatedPosition {
        op: &'static str,
        key: String,
        target: String,
    },
    #[error("`{field}` is no longer supported by the engine: {instead}")]
    Removed {
        field: &'static str,
        instead: &'static str,
    },
    #[error("ContainerStart takes no request body (below API 1.24 the daemon would apply it as the container's HostConfig): put the host configuration in ContainerCreate's `HostConfig`")]
    StartBody,
}

impl EffectiveError {
    pub fn status(&self) -> StatusCode {
        match self {
            EffectiveError::EngineUnknown(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// The API version a request will be served at, and the engine's facts.
#[derive(Debug, Clone, Copy)]
pub struct Version {
    /// What the engine will apply (`input.request.api_version`).
    pub api: ApiVersion,
    pub engine: EngineFacts,
}

/// Stage 1: the version the engine will apply to `route`, or why moat
/// refuses it ([`version::resolve`]). Asks the engine on first use.
pub async fn version(
    api: &EngineApi,
    upstream: &Upstream,
    config: &crate::config::Engine,
    route: &Route,
) -> Result<Version, EffectiveError> {
    let engine = api.facts(upstream).await?;
    let api = version::resolve(
        route.api_version.as_deref(),
        config.min_api_version,
        &engine,
    )?;
    Ok(Version { api, engine })
}

/// Stage 2: the effective body. A JSON body is replaced by its effective
/// document (or by nothing, when nothing is to be forwarded); empty bodies
/// and uploads pass unchanged.
pub fn body(
    route: &Route,
    version: &Version,
    inspected: Inspected,
) -> Result<Inspected, EffectiveError> {
    match inspected {
        Inspected::Json { value, received } => Ok(
            match apply(route.op.id, version.api, &version.engine, value)? {
                Some(value) => Inspected::Json { value, received },
                None => Inspected::Empty,
            },
        ),
        other => Ok(other),
    }
}

/// The effective body of an operation whose JSON body moat inspected:
/// `Some(document)` to forward (and show the policy), `None` when nothing is
/// forwarded.
pub fn apply(
    op: OpId,
    version: ApiVersion,
    engine: &EngineFacts,
    body: Value,
) -> Result<Option<Value>, EffectiveError> {
    Ok(Some(match op {
        OpId::ContainerCreate => container::create(body, version, engine)?,
        OpId::ContainerStart => return container::start(body),
        OpId::ContainerUpdate => container::update(body, version),
        OpId::ContainerExec => container::exec(body, version),
        OpId::ImageCommit => container::commit(body),
        OpId::ServiceCreate | OpId::ServiceUpdate => swarm::service(body, version),
        OpId::SwarmInit => swarm::init(body, version),
        _ => body,
    }))
}
