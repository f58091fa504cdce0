//! Request bodies: read whole and parsed where the policy must see them,
//! streamed where they are uploads.
//!
//! PLACEHOLDER until the body inspector lands: reads JSON bodies whole with
//! a limit and parses them with serde_json.

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::classify::{BodyKind, Operation};

/// The request body after inspection.
#[derive(Debug)]
pub enum Inspected {
    /// No body.
    Empty,
    /// A JSON body: what the policy sees, and exactly the bytes forwarded.
    Json {
        value: serde_json::Value,
        bytes: Bytes,
    },
    /// An upload, streamed to the engine untouched.
    Stream(Incoming),
}

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body is larger than {limit} bytes, the most moat inspects (limits.max_inspect_body_bytes)")]
    TooLarge { limit: usize },
    #[error("request body could not be read: {0}")]
    Read(String),
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
}

pub async fn inspect(
    op: &Operation,
    _headers: &HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<Inspected, BodyError> {
    if op.body == BodyKind::Stream {
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
    if bytes.is_empty() {
        return Ok(Inspected::Empty);
    }
    let value =
        serde_json::from_slice(&bytes).map_err(|e| BodyError::InvalidJson(e.to_string()))?;
    Ok(Inspected::Json { value, bytes })
}

impl BodyError {
    pub fn status(&self) -> http::StatusCode {
        match self {
            BodyError::TooLarge { .. } => http::StatusCode::PAYLOAD_TOO_LARGE,
            _ => http::StatusCode::BAD_REQUEST,
        }
    }
}

/// Refuses ambiguous framing (placeholder: accepts everything).
pub fn check_framing(_headers: &HeaderMap) -> Result<(), BodyError> {
    Ok(())
}
