//! Classification: which Engine API operation a request is, decided exactly
//! as the daemon's router would decide it.
//!
//! The daemon (gorilla/mux) routes the percent-DECODED path, tries its routes
//! in registration order, and registers each route both bare and under
//! `/v{version:[0-9.]+}`. moat classifies with the same table
//! (`classify/routes.tsv`, a copy of `../shared/engine-api/routes.tsv`), the
//! same decoding (Go's `url.PathUnescape` / `url.ParseQuery`) and the same
//! matching rules, then hands the engine a canonical re-encoding of exactly
//! what it classified ([`Route::upstream`]). Every form where the two could
//! disagree is refused instead ([`ClassifyError`], a 400):
//! - a version prefix other than `/v<major>.<minor>/` (the daemon accepts any
//!   `[0-9.]+`; moat is deliberately stricter);
//! - absolute-form, authority-form and asterisk-form targets;
//! - unclean paths (`//`, `.` and `..` segments, also when produced by
//!   decoding), which the daemon answers with a redirect instead of routing;
//! - `%2F`, invalid escapes, control characters, non-UTF-8 and escapes that
//!   decode to `%` (double encoding);
//! - `;` in the query.
//!
//! A well-formed path that matches no route is the operation `Unknown`
//! ([`UNKNOWN`]); the policy decides it.

mod api_version;
mod encoding;
mod op_id;
pub(crate) use encoding::{encode_query, parse_query};
mod table;

use std::fmt;

use http::{Method, StatusCode, Uri};

pub use api_version::{ApiVersion, DEFAULT_MIN_API_VERSION};
pub use op_id::OpId;

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    pub id: OpId,
    /// `containers`, `exec`, `images`, `system`, `volumes`, `build`,
    /// `session`, `swarm`, `services`, `nodes`, `tasks`, `secrets`,
    /// `configs`, `plugins`, `distribution`, `networks`, `debug`, `grpc` or
    /// `checkpoints` (`unknown` for [`UNKNOWN`]).
    pub resource: &'static str,
    /// True when the operation changes nothing: GET and HEAD routes, except
    /// the websocket attach (a GET that writes to the container's stdin).
    pub readonly: bool,
    /// True for attach (also websocket), exec start, `/session` and `/grpc`:
    /// the connection is hijacked after a 101.
    pub hijack: bool,
    pub body: BodyKind,
}

pub static UNKNOWN: Operation = Operation {
    id: OpId::Unknown,
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
    /// Query parameters in order, decoded; repeated names repeat. The daemon
    /// reads only the FIRST value of a repeated name (`r.Form.Get`); the
    /// policy sees them all.
    pub query: Vec<(String, String)>,
    /// What is sent to the engine: `/v<version>` (when one was given), the
    /// canonical path re-encoded, and `?` plus the canonically re-encoded
    /// query when there is one. Classifying it again gives the same route.
    pub upstream: String,
}

/// Why a request target was refused. Each is a 400 ([`ClassifyError::status`]).
#[derive(Debug, thiserror::Error)]
pub enum ClassifyError {
    #[error(
        "the request target must be a path such as /v1.41/containers/json (origin-form), not `{0}`"
    )]
    NotOriginForm(String),
    #[error("`/{0}/` is not a valid API version prefix: use `/v<major>.<minor>/` such as `/v1.41/`, or no prefix")]
    BadVersion(String),
    #[error("the path contains `{0}`, which must be percent-encoded")]
    RawCharacter(String),
    #[error(
        "the path contains an encoded slash (`%2F`); moat does not route it, send a plain path"
    )]
    EncodedSlash,
    #[error("the path contains an invalid percent escape: use `%` followed by two hex digits")]
    BadEscape,
    #[error(
        "the query contains an invalid percent escape in `{0}`: use `%` followed by two hex digits"
    )]
    BadQueryEscape(String),
    #[error("the query contains `;`: separate query parameters with `&`")]
    QuerySemicolon,
    #[error("the path contains a control character; remove it")]
    ControlCharacter,
    #[error("the path or query does not decode to valid UTF-8")]
    NotUtf8,
    #[error("the path contains an encoded `%` (double encoding); send the path encoded once")]
    DoubleEncoded,
    #[error("the path `{0}` is not clean (`//`, `.` or `..` segments); send the canonical path")]
    NotClean(String),
}

impl ClassifyError {
    /// The HTTP status this error answers with: always 400 Bad Request.
    pub fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }
}

/// Splits a strict `/v<major>.<minor>` prefix off a decoded, clean path.
/// Errors when the first segment is something the daemon would take for a
/// version (`v` + `[0-9.]+`, followed by `/`) but is not strictly one.
fn split_version(path: &str) -> Result<(Option<String>, &str), ClassifyError> {
    let Some(after_v) = path.strip_prefix("/v") else {
        return Ok((None, path));
    };
    let Some(slash) = after_v.find('/') else {
        return Ok((None, path));
    };
    let version = &after_v[..slash];
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Ok((None, path));
    }
    let strict = version.split_once('.').is_some_and(|(major, minor)| {
        [major, minor].iter().all(|n| {
            !n.is_empty()
                && n.len() <= 4
                && n.bytes().all(|b| b.is_ascii_digit())
                && (*n == "0" || !n.starts_with('0'))
        })
    });
    if !strict {
        return Err(ClassifyError::BadVersion(format!("v{version}")));
    }
    Ok((Some(version.to_string()), &after_v[slash..]))
}

/// Classifies a request as the daemon would route it.
pub fn classify(method: &Method, uri: &Uri) -> Result<Route, ClassifyError> {
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(ClassifyError::NotOriginForm(uri.to_string()));
    }
    let decoded = encoding::decode_path(uri.path())?;
    let (api_version, path) = split_version(&decoded)?;
    let query = parse_query(uri.query().unwrap_or(""))?;

    let (op, params) = table::rows()
        .iter()
        .filter(|row| row.method == method.as_str())
        .find_map(|row| table::match_template(&row.tokens, path).map(|p| (&row.op, p)))
        .unwrap_or((&UNKNOWN, Vec::new()));

    let mut upstream = String::with_capacity(decoded.len() + 16);
    if let Some(v) = &api_version {
        upstream.push_str("/v");
        upstream.push_str(v);
    }
    upstream.push_str(&encoding::encode_path(path));
    if !query.is_empty() {
        upstream.push('?');
        upstream.push_str(&encode_query(&query));
    }
    Ok(Route {
        op,
        params,
        api_version,
        path: path.to_string(),
        query,
        upstream,
    })
}

#[cfg(test)]
mod tests;
