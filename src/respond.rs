//! The one place where a refusal becomes a client response.
//!
//! Every stage has its own small error type; the pipeline wraps them in a
//! [`Rejection`], and [`error_response`] turns that into a Docker-style JSON
//! error `{"message": "..."}` with the right status, which the docker CLI
//! prints as `Error response from daemon: ...`. Messages say what to change;
//! they never carry internal details such as socket paths or OS errors.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::audit::AuditError;
use crate::body::BodyError;
use crate::classify::{ClassifyError, OpId};
use crate::effective::EffectiveError;
use crate::forward::ForwardError;
use crate::identity::AuthError;
use crate::resbody::{full, ResBody};
use crate::resolve::ResolveError;
use crate::scope::ScopeError;

/// Why a request was not forwarded, or failed at the engine.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Classify(#[from] ClassifyError),
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error(transparent)]
    Effective(#[from] EffectiveError),
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("{op} hijacks the connection: send it with `Connection: Upgrade` and `Upgrade: tcp` (the docker CLI does this itself)")]
    UpgradeRequired { op: OpId },
    #[error("`Upgrade` is only accepted on attach, exec start, /session and /grpc, not on {op}")]
    UnexpectedUpgrade { op: OpId },
    #[error("the request head is larger than {limit} bytes (limits.max_header_bytes)")]
    HeadTooLarge { limit: usize },
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Engine(#[from] ForwardError),
    #[error("the container engine is restarting; try again in a few seconds")]
    EngineRestarting,
    #[error(transparent)]
    Limit(#[from] crate::admission::Over),
    #[error(transparent)]
    Scope(#[from] ScopeError),
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::Auth(_) => StatusCode::UNAUTHORIZED,
            Rejection::Classify(e) => e.status(),
            Rejection::Body(e) => e.status(),
            Rejection::Effective(e) => e.status(),
            Rejection::Resolve(e) => e.status(),
            Rejection::UpgradeRequired { .. } | Rejection::UnexpectedUpgrade { .. } => {
                StatusCode::BAD_REQUEST
            }
            Rejection::HeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Rejection::Denied(_) => StatusCode::FORBIDDEN,
            Rejection::Audit(_) | Rejection::EngineRestarting => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::Engine(e) => e.status(),
            Rejection::Limit(_) => StatusCode::TOO_MANY_REQUESTS,
            Rejection::Scope(e) => e.status(),
        }
    }
}

/// Serializes `{"message": ...}` with a status.
pub fn json_error(status: StatusCode, message: &str) -> Response<ResBody> {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut resp = Response::new(full(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The response for a rejection.
pub fn error_response(rejection: &Rejection) -> Response<ResBody> {
    let mut resp = json_error(rejection.status(), &rejection.to_string());
    if matches!(rejection, Rejection::Auth(_)) {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"moat\""),
        );
    }
    if let Rejection::Limit(over) = rejection {
        if let Ok(v) = HeaderValue::from_str(&over.retry_after.as_secs().max(1).to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if over.limit == crate::admission::Limit::Connections {
            // The connection is over its identity's limit: it closes.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_is_docker_style_json_with_403() {
        let r = error_response(&Rejection::Denied("no policy rule allows X for bob".into()));
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    }

    #[test]
    fn limits_answer_429_with_retry_after_and_close_over_connections() {
        use crate::admission::{Limit, Over};
        let over = |limit| Over {
            limit,
            identity: "ci".into(),
            value: "2".into(),
            retry_after: std::time::Duration::from_secs(3),
        };
        let r = error_response(&Rejection::Limit(over(Limit::Rate)));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        assert!(!r.headers().contains_key(header::CONNECTION));
        let r = error_response(&Rejection::Limit(over(Limit::Connections)));
        assert_eq!(r.headers()[header::CONNECTION], "close");
    }

    #[test]
    fn auth_failures_ask_for_a_bearer_token() {
        let r = error_response(&Rejection::Auth(AuthError::Missing));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
