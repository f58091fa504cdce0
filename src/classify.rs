//! Classification: which Engine API operation a request is, decided exactly
//! as the daemon's router would decide it.
//!
//! PLACEHOLDER until the classifier lands: it strips a version prefix and
//! recognises the hijack endpoints by shape only.

use http::{Method, Uri};

/// How an operation's request body is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Read whole (bounded), parsed as JSON and shown to the policy.
    Inspect,
    /// Streamed to the engine unbuffered (build context, image load, archive
    /// upload); only query and headers are inspected.
    Stream,
}

/// One route of the daemon's table.
#[derive(Debug)]
pub struct Operation {
    /// The Engine API operation id, e.g. `ContainerCreate`; `Unknown` when
    /// nothing matched.
    pub id: &'static str,
    /// `containers`, `images`, `system`, …
    pub resource: &'static str,
    /// True when the operation changes nothing.
    pub readonly: bool,
    /// True for attach, exec start, `/session` and `/grpc`: the connection is
    /// hijacked after a 101.
    pub hijack: bool,
    pub body: BodyKind,
}

pub static UNKNOWN: Operation = Operation {
    id: "Unknown",
    resource: "unknown",
    readonly: false,
    hijack: false,
    body: BodyKind::Inspect,
};

/// A classified request.
#[derive(Debug)]
pub struct Route {
    pub op: &'static Operation,
    /// Path parameters by template name (`name`, `id`, …), decoded.
    pub params: Vec<(&'static str, String)>,
    /// `1.41` from `/v1.41/...`, or None.
    pub api_version: Option<String>,
    /// The canonical, decoded path without the version prefix.
    pub path: String,
    /// Query parameters in order, decoded; repeated names repeat.
    pub query: Vec<(String, String)>,
    /// What is sent to the engine: canonical path with the version prefix,
    /// plus the query as received.
    pub upstream: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error("the request target must be a path (origin-form), not `{0}`")]
    NotOriginForm(String),
}

pub fn classify(_method: &Method, uri: &Uri) -> Result<Route, ClassifyError> {
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(ClassifyError::NotOriginForm(uri.to_string()));
    }
    let path = uri.path();
    let (api_version, rest) = match path.strip_prefix("/v").and_then(|r| r.split_once('/')) {
        Some((v, rest)) if v.chars().all(|c| c.is_ascii_digit() || c == '.') => {
            (Some(v.to_string()), format!("/{rest}"))
        }
        _ => (None, path.to_string()),
    };
    static HIJACK: Operation = Operation {
        id: "Hijack",
        resource: "containers",
        readonly: false,
        hijack: true,
        body: BodyKind::Inspect,
    };
    static STREAM: Operation = Operation {
        id: "Stream",
        resource: "unknown",
        readonly: false,
        hijack: false,
        body: BodyKind::Stream,
    };
    let op = if rest.ends_with("/attach")
        || (rest.starts_with("/exec/") && rest.ends_with("/start"))
        || rest == "/session"
        || rest == "/grpc"
    {
        &HIJACK
    } else if rest == "/build"
        || rest == "/images/load"
        || rest.ends_with("/archive")
        || rest == "/images/create"
    {
        &STREAM
    } else {
        &UNKNOWN
    };
    Ok(Route {
        op,
        params: Vec::new(),
        api_version,
        path: rest,
        query: Vec::new(),
        upstream: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
    })
}

impl ClassifyError {
    pub fn status(&self) -> http::StatusCode {
        http::StatusCode::BAD_REQUEST
    }
}
