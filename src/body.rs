//! Request bodies: read whole and parsed where the policy must see them,
//! streamed where they are uploads.
//!
//! The rule: the policy sees exactly what the daemon will act on, or the
//! request is refused. So, on every endpoint whose body is JSON
//! ([`BodyKind::Inspect`]):
//! - the framing is unambiguous ([`check_framing`], called by the pipeline
//!   before anything else): hyper de-chunks, and a request carrying both
//!   `Transfer-Encoding` and `Content-Length`, or an encoding other than
//!   `chunked`, is refused;
//! - the whole body is read, whatever `Content-Length` says, up to
//!   `limits.max_inspect_body_bytes` (more is a 413, never "not inspected");
//! - a non-empty body must be JSON (`Content-Type` absent or
//!   `application/json`): a form-encoded body would override query
//!   parameters in the daemon;
//! - it is parsed strictly ([`parse_json_strict`]): one JSON value, no
//!   trailing data, no two keys equal ignoring case; a key that reaches a
//!   known Go struct field in another case is rewritten to the field's
//!   canonical spelling, and one whose field is not known is refused (see
//!   [`schema`]);
//! - the client's bytes are dropped here: what goes on is the parsed
//!   document, which the effective-request stage (the `effective` module,
//!   above this one) turns into what the engine will
//!   apply; the engine receives moat's serialization of that document.
//!
//! Uploads ([`BodyKind::Stream`]) are streamed untouched; they must not be
//! form-encoded either, because Go's `ParseForm` would read such a body as
//! parameters.
//!
//! Whatever moat does not read of a body is drained after the answer
//! ([`unread`]), so that a refused upload hears why instead of a reset.

mod json;
pub mod schema;
pub mod unread;

pub use unread::RequestBody;

use bytes::Bytes;
use http::{header, HeaderMap, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::classify::{BodyKind, Operation};

pub use json::fold_key;
pub use schema::SchemaRoot;

/// The request body after inspection.
#[derive(Debug)]
pub enum Inspected {
    /// No body.
    Empty,
    /// A JSON body, keys spelled canonically. The client's bytes are not
    /// kept: the engine is sent moat's serialization of what the policy saw.
    Json {
        value: serde_json::Value,
        /// How many bytes the client sent.
        received: u64,
    },
    /// An upload, streamed to the engine untouched.
    Stream(RequestBody),
}

impl Inspected {
    /// The JSON document the policy sees, if the body is one.
    pub fn json(&self) -> Option<&serde_json::Value> {
        match self {
            Inspected::Json { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// Why a body was refused. [`BodyError::status`] gives the answer: 413 for
/// [`BodyError::TooLarge`], 400 for everything else.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body is larger than {limit} bytes, the most moat inspects (limits.max_inspect_body_bytes)")]
    TooLarge { limit: usize },
    #[error("request body not received within {} (limits.body_read_timeout): send it at once, or ask an admin to raise the limit", humantime::format_duration(*.after))]
    Timeout { after: std::time::Duration },
    #[error("request body could not be read: {0}")]
    Read(String),
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("request body must be JSON (Content-Type: application/json), not `{0}`")]
    NotJson(String),
    #[error("form-encoded request bodies are refused (Content-Type `{0}`): send parameters in the query string")]
    FormBody(String),
    #[error("request body has the keys `{first}` and `{second}` in one object, which the daemon treats as the same field: send it once")]
    DuplicateKey { first: String, second: String },
    #[error("request body key `{key}` must be spelled `{canonical}`{}", at_suffix(.at))]
    NonCanonicalKey {
        key: String,
        canonical: String,
        /// Dotted path of the enclosing object, empty at the top level.
        at: String,
    },
    #[error("the request body of {0} must be a JSON object")]
    NotObject(String),
    #[error("ambiguous request framing: {0}")]
    Framing(&'static str),
    #[error("the request has more than one `{0}` header: send it once")]
    RepeatedHeader(&'static str),
}

fn at_suffix(at: &str) -> String {
    if at.is_empty() {
        String::new()
    } else {
        format!(" (in `{at}`)")
    }
}

impl BodyError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn non_canonical(key: &str, canonical: &str) -> BodyError {
        BodyError::NonCanonicalKey {
            key: key.to_string(),
            canonical: canonical.to_string(),
            at: String::new(),
        }
    }

    /// Prefixes the position of a key error with its parent key.
    fn under(self, parent: &str) -> BodyError {
        match self {
            BodyError::NonCanonicalKey { key, canonical, at } => BodyError::NonCanonicalKey {
                key,
                canonical,
                at: if at.is_empty() {
                    parent.to_string()
                } else {
                    format!("{parent}.{at}")
                },
            },
            other => other,
        }
    }
}

/// Refuses ambiguous message framing. hyper (1.x) already answers 400 to two
/// different `Content-Length` values and to a `Transfer-Encoding` whose last
/// coding is not `chunked`; when both headers arrive it drops
/// `Content-Length`, de-chunks, and closes the connection afterwards. moat is
/// stricter: both headers, a repeated header, or any `Transfer-Encoding`
/// other than exactly `chunked` is a 400.
pub fn check_framing(headers: &HeaderMap) -> Result<(), BodyError> {
    let te: Vec<_> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    let cl: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    if !te.is_empty() && !cl.is_empty() {
        return Err(BodyError::Framing(
            "the request has both Transfer-Encoding and Content-Length",
        ));
    }
    match te[..] {
        [] => {}
        [v] if v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked") => {}
        [_] => {
            return Err(BodyError::Framing(
                "Transfer-Encoding must be exactly `chunked`",
            ))
        }
        _ => return Err(BodyError::RepeatedHeader("Transfer-Encoding")),
    }
    match cl[..] {
        [] => Ok(()),
        [v] if !v.is_empty() && v.as_bytes().iter().all(u8::is_ascii_digit) => Ok(()),
        [_] => Err(BodyError::Framing(
            "Content-Length must be a decimal number",
        )),
        _ => Err(BodyError::RepeatedHeader("Content-Length")),
    }
}

/// The media type of the single `Content-Type` header, lower-cased and
/// without parameters; None when absent.
fn media_type(headers: &HeaderMap) -> Result<Option<String>, BodyError> {
    let all: Vec<_> = headers.get_all(header::CONTENT_TYPE).iter().collect();
    match all[..] {
        [] => Ok(None),
        [v] => {
            let s = String::from_utf8_lossy(v.as_bytes());
            let mt = s
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            Ok(Some(mt))
        }
        _ => Err(BodyError::RepeatedHeader("Content-Type")),
    }
}

/// Refuses an upload that Go's `ParseForm`/`ParseMultipartForm` would read as
/// parameters overriding the query.
pub fn check_stream_headers(headers: &HeaderMap) -> Result<(), BodyError> {
    match media_type(headers)? {
        Some(mt) if mt == "application/x-www-form-urlencoded" || mt.starts_with("multipart/") => {
            Err(BodyError::FormBody(mt))
        }
        _ => Ok(()),
    }
}

/// Parses a JSON body the strict way (see the module docs) and spells its
/// keys canonically against the schema from `root`
/// ([`SchemaRoot::for_operation`]).
pub fn parse_json_strict(bytes: &[u8], root: SchemaRoot) -> Result<serde_json::Value, BodyError> {
    let value = json::parse_strict(bytes)?;
    schema::canonicalize(value, root)
}

/// Inspects a fully read body of an [`BodyKind::Inspect`] operation.
pub fn inspect_bytes(
    op: &Operation,
    headers: &HeaderMap,
    bytes: Bytes,
) -> Result<Inspected, BodyError> {
    if bytes.is_empty() {
        return Ok(Inspected::Empty);
    }
    match media_type(headers)? {
        None => {}
        Some(mt) if mt == "application/json" => {}
        Some(mt) if mt == "application/x-www-form-urlencoded" || mt.starts_with("multipart/") => {
            return Err(BodyError::FormBody(mt))
        }
        Some(mt) => return Err(BodyError::NotJson(mt)),
    }
    let value = parse_json_strict(&bytes, SchemaRoot::for_operation(op.id.as_str()))?;
    Ok(Inspected::Json {
        value,
        received: bytes.len() as u64,
    })
}

/// Inspects a request body. Call [`check_framing`] first.
pub async fn inspect(
    op: &Operation,
    headers: &HeaderMap,
    body: RequestBody,
    limit: usize,
) -> Result<Inspected, BodyError> {
    if op.body == BodyKind::Stream {
        check_stream_headers(headers)?;
        return Ok(Inspected::Stream(body));
    }
    let bytes = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                BodyError::TooLarge { limit }
            } else {
                BodyError::Read(e.to_string())
            }
        })?
        .to_bytes();
    inspect_bytes(op, headers, bytes)
}

#[cfg(test)]
mod tests;
