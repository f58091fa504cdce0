//! Serving HTTP/1.1 on an accepted connection until it closes, with idle
//! keep-alive connections parked between requests ([`super::park`]) and
//! closed after `limits.idle_timeout`, and a write deadline on the client
//! stream ([`super::deadline`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::{deadline, park};
use crate::conn::ConnInfo;
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::resbody::ResBody;

/// The client's TLS stream, boxed: it moves between the parked and the
/// serving state, and futures that hold it inline are as large as it is.
pub(super) type ClientStream = Box<tokio_rustls::server::TlsStream<TcpStream>>;

/// Serves HTTP/1.1 on an established connection until it closes.
///
/// Between requests the connection is parked ([`park`]): hyper's part of it
/// ends once nothing has been in flight for [`PARK_AFTER`], and a new hyper
/// connection starts with the first bytes of the next request. A parked
/// connection waits at most `limits.idle_timeout`
/// (`limits.header_read_timeout` before its first request) and closes on
/// shutdown or when moat closes it (revocation); one that cannot be parked
/// closes after `limits.idle_timeout` idle ([`idle_deadline`]).
pub(super) async fn serve_http(
    gw: &Arc<Gateway>,
    info: &Arc<ConnInfo>,
    tls: ClientStream,
    shutdown: &CancellationToken,
) {
    let limits = &gw.config.limits;
    let peer = info.peer;
    let svc = {
        let gw = gw.clone();
        let info = info.clone();
        service_fn(move |req| {
            // Whether the connection may be parked once this request has
            // been answered.
            info.set_parkable(park::parkable(&req));
            crate::pipeline::handle(gw.clone(), info.clone(), req)
        })
    };
    let builder = builder(limits);
    let mut stream = tls;
    let mut first = true;
    loop {
        // Parked: only the TLS stream is held until the next request begins.
        let wait = if first {
            limits.header_read_timeout
        } else {
            limits.idle_timeout
        };
        let mut byte = [0u8; 1];
        let parked = (!first).then(|| Parked::new(&gw.metrics));
        let replay = tokio::select! {
            r = stream.read(&mut byte) => match r {
                Ok(0) => return,
                Ok(n) => Bytes::copy_from_slice(&byte[..n]),
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                    return;
                }
            },
            _ = tokio::time::sleep(wait) => {
                tracing::debug!(%peer, "idle keep-alive connection closed");
                close(stream).await;
                return;
            }
            _ = shutdown.cancelled() => {
                close(stream).await;
                return;
            }
            _ = info.cancel.cancelled() => {
                tracing::debug!(%peer, "connection closed by moat");
                return;
            }
        };
        drop(parked);
        first = false;
        // Boxed: the serving state (hyper's connection) is allocated only
        // while serving, so a parked connection's task stays small.
        let serving = Box::pin(serve_until_idle(
            &builder,
            svc.clone(),
            info,
            stream,
            replay,
            limits,
            shutdown,
        ));
        match serving.await {
            Some(s) => stream = s,
            None => return,
        }
    }
}

/// Runs one hyper connection on `stream` (after replaying `replay`) until
/// the connection is idle, and returns the stream to park; `None` when the
/// connection has ended (closed, failed, upgraded, drained or cancelled).
async fn serve_until_idle<S>(
    builder: &http1::Builder,
    svc: S,
    info: &Arc<ConnInfo>,
    mut stream: ClientStream,
    mut replay: Bytes,
    limits: &crate::config::Limits,
    shutdown: &CancellationToken,
) -> Option<ClientStream>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = ResBody>
        + Clone
        + Unpin
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let peer = info.peer;
    // Set while moat parks the connection (see [`park::Parkable`]).
    let parking = Arc::new(AtomicBool::new(false));
    loop {
        parking.store(false, Ordering::Release);
        let io = park::Parkable::new(
            deadline::WriteDeadline::new(TokioIo::new(stream), limits.write_timeout),
            replay,
            parking.clone(),
        );
        let mut conn = builder.serve_connection(io, svc.clone()).with_upgrades();
        let mut draining = false;
        let mut park_at: Option<Instant> = None;
        loop {
            tokio::select! {
                r = &mut conn => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                        return None;
                    }
                    break;
                }
                _ = shutdown.cancelled(), if !draining => {
                    draining = true;
                    parking.store(false, Ordering::Release);
                    std::pin::Pin::new(&mut conn).graceful_shutdown();
                }
                _ = info.cancel.cancelled() => {
                    tracing::debug!(%peer, "connection closed by moat");
                    return None;
                }
                _ = info.idle(), if !draining && !parking.load(Ordering::Acquire) => {
                    park_at = idle_deadline(info, limits.idle_timeout);
                }
                _ = sleep_until_or_never(park_at), if !draining && !parking.load(Ordering::Acquire) => {
                    // Busy again since (`None`): its end notifies anew.
                    park_at = idle_deadline(info, limits.idle_timeout);
                    let Some(at) = park_at else { continue };
                    if Instant::now() < at {
                        continue;
                    }
                    park_at = None;
                    if info.parkable() {
                        // hyper ends an idle connection at once, and one
                        // with a response still being written once it is
                        // out; its shutdown then hands the stream back.
                        parking.store(true, Ordering::Release);
                    } else {
                        // Not parkable: idle for `limits.idle_timeout`, closed.
                        tracing::debug!(%peer, "idle keep-alive connection closed");
                        draining = true;
                    }
                    std::pin::Pin::new(&mut conn).graceful_shutdown();
                }
            }
        }
        if draining || !parking.load(Ordering::Acquire) {
            // Closed by the client, drained, or upgraded (the hijacked
            // session owns the stream now).
            return None;
        }
        let parts = conn.into_parts()?;
        let (io, unread) = parts.io.into_inner();
        let s = io.into_inner().into_inner();
        if !info.parkable() {
            // A request that came in meanwhile asked to close (or had a
            // body hyper may not have read): close as hyper would have.
            close(s).await;
            return None;
        }
        replay = park::leftover(parts.read_buf, unread);
        if replay.is_empty() {
            return Some(s);
        }
        // Bytes of the next request were read already: serve them now.
        stream = s;
    }
}

/// How long a keep-alive connection is idle before it is parked: clients
/// that send their next request at once (the docker CLI within one command,
/// a polling loop) keep their HTTP state; idle ones give it back.
const PARK_AFTER: Duration = Duration::from_millis(100);

/// When an idle connection is next due: parked [`PARK_AFTER`] after its
/// last request ended, or, when that request does not allow parking, closed
/// `idle_timeout` after it. `None` while a request is in flight.
fn idle_deadline(info: &ConnInfo, idle_timeout: Duration) -> Option<Instant> {
    let wait = if info.parkable() {
        PARK_AFTER
    } else {
        idle_timeout
    };
    info.idle_since().map(|t| t + wait)
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until_or_never(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Counts a parked connection in `moat_connections_parked` while it lives.
struct Parked<'a>(&'a Metrics);

impl<'a> Parked<'a> {
    fn new(m: &'a Metrics) -> Self {
        m.connection_parked(true);
        Parked(m)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.connection_parked(false);
    }
}

/// Closes a parked connection with a TLS close_notify, briefly.
pub(super) async fn close(mut stream: ClientStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
}

/// hyper's HTTP/1.1 server with moat's head limits, for both listeners.
pub(super) fn builder(limits: &crate::config::Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Also caps the read buffer, so a connection that uploads holds at
        // most this much (hyper keeps the buffer's capacity).
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    builder
}
