//! The body type of every response moat sends, and of every request it
//! sends to the engine.
//!
//! A leaf: it depends on no other module of moat, so that the stages that
//! build bodies (forwarding, hijacking, refusals, the pipeline) share it without importing one another.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// The body type of every response moat sends (and of requests to the
/// engine).
pub type ResBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// The error type of [`ResBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A complete in-memory body.
pub fn full(bytes: Bytes) -> ResBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}
