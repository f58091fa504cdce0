//! The engine side: requests re-serialized onto the engine's unix socket.
//!
//! Ordinary requests go over keep-alive connections that the client's own
//! task drives (the `driven` module: no other task is woken to carry a
//! request or its answer). Bodies stream both ways: nothing is
//! buffered whole, so `logs -f`, `events`, pull progress and `save`/`load`
//! run as the engine produces and consumes them. Hijacked requests (attach,
//! exec start, `/session`, `/grpc`) each get a dedicated connection (the
//! `hijack` module, above this one).
//!
//! The request head is rebuilt, never spliced: hop-by-hop headers and the
//! credentials moat consumes (`Authorization`) are dropped, and the framing
//! (Content-Length or chunked) is derived from the body moat sends.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::{
    header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri,
};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use crate::resbody::{full, BoxError, ResBody};

/// Why the engine could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("the container engine is not reachable; moat forwards again as soon as it is back")]
    Unreachable,
    #[error("the container engine failed while answering; the request may not have completed")]
    Failed,
    #[error("the container engine answered an upgrade request without switching protocols")]
    NoUpgrade,
}

impl ForwardError {
    pub fn status(&self) -> StatusCode {
        match self {
            ForwardError::Unreachable => StatusCode::SERVICE_UNAVAILABLE,
            ForwardError::Failed | ForwardError::NoUpgrade => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The engine's whole answer to a request moat made itself
/// ([`Upstream::call`]): status, headers (hop-by-hop ones removed) and body.
#[derive(Debug, Clone)]
pub struct EngineReply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl EngineReply {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The engine's own error message (`{"message": "..."}`), if any.
    pub fn message(&self) -> Option<String> {
        let v = self.json().ok()?;
        v.get("message")?.as_str().map(String::from)
    }

    /// The reply as a client's response: the engine's status, headers (the
    /// framing is hyper's, for the whole body) and body.
    pub fn into_response(self) -> Response<ResBody> {
        let mut resp = Response::new(full(self.body));
        *resp.status_mut() = self.status;
        let mut headers = self.headers;
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::TRANSFER_ENCODING);
        *resp.headers_mut() = headers;
        resp
    }
}

mod driven;

/// The engine: its idle keep-alive connections plus the socket path for
/// dedicated (hijack) connections.
pub struct Upstream {
    idle: Arc<driven::Idle>,
    socket: Arc<PathBuf>,
}

/// Headers that belong to one connection and are never forwarded, in either
/// direction (RFC 9110 §7.6.1), plus the framing headers hyper recomputes.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including any that `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

impl Upstream {
    pub fn new(socket: PathBuf) -> Self {
        let socket = Arc::new(socket);
        Self {
            idle: driven::Idle::new(socket.clone()),
            socket,
        }
    }

    /// Builds the engine-side request: canonical target, cleaned headers.
    /// `Content-Length` is dropped here and set by hyper from the body.
    pub fn request(
        method: Method,
        target: &str,
        mut headers: HeaderMap,
        body: ResBody,
    ) -> Result<Request<ResBody>, ForwardError> {
        strip_hop_by_hop(&mut headers);
        for h in [
            header::AUTHORIZATION,
            header::CONTENT_LENGTH,
            header::HOST,
            HeaderName::from_static("x-moat-request-id"),
        ] {
            headers.remove(h);
        }
        headers.insert(header::HOST, HeaderValue::from_static("docker"));
        // Origin form: the request line names the path, `Host` the engine.
        let uri: Uri = target.parse().map_err(|_| ForwardError::Failed)?;
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        Ok(req)
    }

    /// Sends a request on a keep-alive connection and returns the engine's
    /// response with its body still streaming.
    pub async fn send(&self, req: Request<ResBody>) -> Result<Response<ResBody>, ForwardError> {
        use http_body_util::BodyExt;
        let resp = self.exchange(req).await?;
        Ok(resp.map(|b| b.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()))
    }

    /// The engine's answer to `req`, hop-by-hop headers removed, its body
    /// driving its connection (for [`Upstream::send`] and
    /// [`Upstream::call`]).
    async fn exchange(
        &self,
        req: Request<ResBody>,
    ) -> Result<Response<driven::Driven>, ForwardError> {
        let mut resp = self.idle.send(req).await?;
        strip_hop_by_hop(resp.headers_mut());
        Ok(resp)
    }

    /// A request moat makes itself (a lookup, a volume it creates): sent
    /// on a keep-alive connection, its whole answer read, at most `max`
    /// bytes of it. An answer that cannot be read whole is
    /// [`ForwardError::Failed`].
    pub async fn call(
        &self,
        method: Method,
        target: &str,
        json: Option<&serde_json::Value>,
        max: usize,
    ) -> Result<EngineReply, ForwardError> {
        use http_body_util::{BodyExt, Limited};
        let mut headers = HeaderMap::new();
        let body = match json {
            Some(v) => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                full(bytes::Bytes::from(v.to_string()))
            }
            None => full(bytes::Bytes::new()),
        };
        let resp = self
            .exchange(Self::request(method, target, headers, body)?)
            .await?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, max)
            .collect()
            .await
            .map_err(|e| {
                tracing::warn!(%target, error = %e, "the engine's answer could not be read whole");
                ForwardError::Failed
            })?
            .to_bytes();
        Ok(EngineReply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// A fresh connection for a hijacked request. The caller drives the
    /// connection with upgrades enabled.
    pub async fn dedicated(&self) -> Result<TokioIo<UnixStream>, ForwardError> {
        UnixStream::connect(&*self.socket)
            .await
            .map(TokioIo::new)
            .map_err(|e| {
                tracing::warn!(error = %e, "engine socket unreachable");
                ForwardError::Unreachable
            })
    }

    /// `GET /_ping`, for readiness, over a fresh connection: an idle
    /// keep-alive connection can outlive the socket path (engine restarted
    /// elsewhere, socket removed), and then new requests and every hijack,
    /// which connect anew, fail while a pooled ping still succeeds.
    pub async fn ping(&self) -> Result<(), ForwardError> {
        let mut req = Request::new(full(bytes::Bytes::new()));
        *req.uri_mut() = Uri::from_static("/_ping");
        req.headers_mut()
            .insert(header::HOST, HeaderValue::from_static("docker"));
        let attempt = async {
            let io = UnixStream::connect(&*self.socket)
                .await
                .map_err(|_| ForwardError::Unreachable)?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .map_err(|_| ForwardError::Unreachable)?;
            let driver = tokio::spawn(conn);
            let resp = sender.send_request(req).await;
            driver.abort();
            resp.map_err(|_| ForwardError::Failed)
        };
        let resp = tokio::time::timeout(Duration::from_secs(2), attempt)
            .await
            .map_err(|_| ForwardError::Unreachable)??;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(ForwardError::Failed)
        }
    }
}

/// Maps a streamed engine body's error into the response body error type
/// (a hijack's answer that did not switch protocols).
pub fn stream_body(body: hyper::body::Incoming) -> ResBody {
    use http_body_util::BodyExt;
    body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn credentials_never_reach_the_engine() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let req =
            Upstream::request(Method::GET, "/v1.41/info", h, full(bytes::Bytes::new())).unwrap();
        assert!(!req.headers().contains_key(header::AUTHORIZATION));
        assert_eq!(req.headers()[header::HOST], "docker");
        assert_eq!(req.uri().path(), "/v1.41/info");
    }
}
