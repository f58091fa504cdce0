//! The plain-HTTP monitoring endpoint on `metrics.listen`, separate from the
//! mTLS port: `/metrics` for Prometheus, `/healthz` (the process answers) and
//! `/readyz` (engine reachable, policy loaded, audit writable).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{Metrics, ReadyCheck};

/// What Prometheus asks for first and what `prometheus-client` writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown`
/// is cancelled; open connections are then closed gracefully.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    ready: ReadyCheck,
    shutdown: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let ready = ready.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let metrics = metrics.clone();
                let ready = ready.clone();
                async move { Ok::<_, Infallible>(route(req, &metrics, &ready).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "metrics connection ended with an error");
                    }
                }
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

async fn route(
    req: Request<Incoming>,
    metrics: &Metrics,
    ready: &ReadyCheck,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return reply(StatusCode::NOT_FOUND, TEXT, "not found\n".into());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET and HEAD are served here\n".into(),
        );
    }
    match path {
        "/metrics" => reply(StatusCode::OK, OPENMETRICS, metrics.encode()),
        "/healthz" => reply(StatusCode::OK, TEXT, "ok\n".into()),
        _ => {
            let (status, body) = readiness(ready().await);
            reply(status, TEXT, body)
        }
    }
}

/// `200 ready`, or `503` with one `component: reason` line per failed
/// component.
fn readiness(checks: Vec<(&'static str, Result<(), String>)>) -> (StatusCode, String) {
    let failed: Vec<String> = checks
        .into_iter()
        .filter_map(|(name, r)| r.err().map(|why| format!("{name}: {why}\n")))
        .collect();
    if failed.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready\n{}", failed.concat()),
        )
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One HTTP/1.0-style exchange (`Connection: close`): status code and body.
    async fn get(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        let code = head[9..12].parse().unwrap();
        (code, head.to_owned(), body.to_owned())
    }

    #[tokio::test]
    async fn endpoints_answer_and_readyz_names_the_failed_component() {
        let engine_ok = Arc::new(AtomicBool::new(false));
        let flag = engine_ok.clone();
        let ready: ReadyCheck = Arc::new(move || {
            let up = flag.load(Ordering::SeqCst);
            Box::pin(async move {
                vec![
                    (
                        "engine",
                        if up {
                            Ok(())
                        } else {
                            Err("/var/run/docker.sock: connection refused".to_owned())
                        },
                    ),
                    ("policy", Ok(())),
                    ("audit", Ok(())),
                ]
            })
        });
        let metrics = Arc::new(Metrics::new());
        metrics.request_done(
            "Ping",
            crate::metrics::Outcome::Allow,
            200,
            Duration::ZERO,
            Duration::ZERO,
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, metrics, ready, stop.clone()));

        let (code, head, body) = get(addr, "GET", "/metrics").await;
        assert_eq!(code, 200);
        assert!(head
            .to_ascii_lowercase()
            .contains("application/openmetrics-text"));
        assert!(
            body.contains(r#"moat_requests_total{operation="Ping",decision="allow",code="200"} 1"#)
        );

        assert_eq!(get(addr, "GET", "/healthz").await.0, 200);
        assert_eq!(get(addr, "GET", "/healthz").await.2, "ok\n");

        let (code, _, body) = get(addr, "GET", "/readyz").await;
        assert_eq!(code, 503);
        assert_eq!(
            body,
            "not ready\nengine: /var/run/docker.sock: connection refused\n"
        );
        engine_ok.store(true, Ordering::SeqCst);
        assert_eq!(get(addr, "GET", "/readyz").await.0, 200);

        assert_eq!(get(addr, "GET", "/nope").await.0, 404);
        assert_eq!(get(addr, "POST", "/metrics").await.0, 405);

        stop.cancel();
        task.await.unwrap();
    }
}
