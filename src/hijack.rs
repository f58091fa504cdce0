//! Docker's connection hijack: attach, exec start, `/session` and `/grpc`.
//!
//! The request goes to the engine on a dedicated connection with
//! `Upgrade`; only when the engine answers `101 Switching Protocols` does
//! moat answer the client with 101 and tunnel bytes both ways. Anything else
//! the engine answers (404 no such container, 409 not running, …) is passed
//! back as an ordinary response.
//!
//! Half-close is honoured in both directions: the docker CLI ends stdin with
//! a TLS close_notify (or a bare FIN, which tokio-rustls reports as
//! `UnexpectedEof` and which counts as end of input here) and keeps reading.
//! moat then shuts down the write side toward the engine and keeps relaying
//! the engine's output until the engine closes. Errors in one direction
//! never tear down the other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::forward::{stream_body, ForwardError, Upstream};
use crate::resbody::{full, ResBody};

/// Bytes relayed in each direction, updated as they flow.
#[derive(Debug, Default)]
pub struct Counters {
    /// Client to engine.
    pub bytes_in: AtomicU64,
    /// Engine to client.
    pub bytes_out: AtomicU64,
}

/// What the engine answered to a hijack request.
pub enum Opened {
    /// The engine switched protocols: answer the client with `response` and
    /// then run `tunnel`.
    Switched {
        response: Response<ResBody>,
        engine: OnUpgrade,
    },
    /// The engine answered normally (an error, usually): pass it on.
    Plain(Response<ResBody>),
}

/// Sends the hijack request on a dedicated engine connection.
pub async fn open(
    upstream: &Upstream,
    mut req: Request<ResBody>,
    protocol: HeaderValue,
) -> Result<Opened, ForwardError> {
    let io = upstream.dedicated().await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|_| ForwardError::Unreachable)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "hijack engine connection ended");
        }
    });
    req.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    req.headers_mut().insert(header::UPGRADE, protocol);
    let mut resp = sender.send_request(req).await.map_err(|e| {
        tracing::warn!(error = %e, "engine failed on a hijack request");
        ForwardError::Failed
    })?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        crate::forward::strip_hop_by_hop(resp.headers_mut());
        return Ok(Opened::Plain(resp.map(stream_body)));
    }
    let engine = hyper::upgrade::on(&mut resp);
    let mut response = Response::new(full(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (name, value) in resp.headers() {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(Opened::Switched { response, engine })
}

/// Waits for both upgrades, then relays until the engine closes, or until
/// `cancel` fires (shutdown after the grace period, or revocation).
pub async fn tunnel(
    client: OnUpgrade,
    engine: OnUpgrade,
    counters: Arc<Counters>,
    cancel: CancellationToken,
) {
    let (client, engine) = match tokio::try_join!(client, engine) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "hijack upgrade failed");
            return;
        }
    };
    tokio::select! {
        _ = relay(TokioIo::new(client), TokioIo::new(engine), &counters) => {}
        _ = cancel.cancelled() => tracing::debug!("hijacked session closed by shutdown"),
    }
}

/// How long the client may keep its side open after the engine has closed
/// its output. The docker CLI closes at once; this only bounds a client
/// that never does.
const CLIENT_LINGER: Duration = Duration::from_secs(2);

/// Relays both ways with half-close semantics. Ends when the engine has
/// closed its output and the client has finished (or lingered too long).
pub async fn relay<C, E>(client: C, engine: E, counters: &Counters)
where
    C: AsyncRead + AsyncWrite + Send,
    E: AsyncRead + AsyncWrite + Send,
{
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut engine_r, mut engine_w) = tokio::io::split(engine);
    let upstream = async {
        let _ = copy_half(&mut client_r, &mut engine_w, &counters.bytes_in).await;
        // The client is done sending: tell the engine (stdin EOF).
        let _ = engine_w.shutdown().await;
    };
    let downstream = async {
        let _ = copy_half(&mut engine_r, &mut client_w, &counters.bytes_out).await;
        // The engine is done: close_notify + FIN to the client.
        let _ = client_w.shutdown().await;
    };
    tokio::pin!(upstream, downstream);
    tokio::select! {
        _ = &mut downstream => {
            let _ = tokio::time::timeout(CLIENT_LINGER, upstream).await;
        }
        _ = &mut upstream => downstream.await,
    }
}

/// Copies until end of input. A TCP FIN without close_notify
/// (`UnexpectedEof`) is end of input, not an error.
async fn copy_half<R, W>(r: &mut R, w: &mut W, count: &AtomicU64) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n]).await?;
        w.flush().await?;
        count.fetch_add(n as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn client_half_close_still_relays_engine_output() {
        let (client, mut client_peer) = tokio::io::duplex(1024);
        let (engine, mut engine_peer) = tokio::io::duplex(1024);
        let counters = Arc::new(Counters::default());
        let c2 = counters.clone();
        let relay = tokio::spawn(async move { relay(client, engine, &c2).await });
        client_peer.write_all(b"hi\n").await.unwrap();
        client_peer.shutdown().await.unwrap();
        // The engine sees stdin, then EOF.
        let mut got = Vec::new();
        engine_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hi\n");
        // …and still reaches the client after it.
        engine_peer.write_all(b"hi\n").await.unwrap();
        engine_peer.shutdown().await.unwrap();
        drop(engine_peer);
        let mut out = Vec::new();
        client_peer.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"hi\n");
        relay.await.unwrap();
        assert_eq!(counters.bytes_in.load(Ordering::Relaxed), 3);
        assert_eq!(counters.bytes_out.load(Ordering::Relaxed), 3);
    }

    /// tokio-rustls reports a FIN without close_notify as UnexpectedEof.
    struct EofErr;
    impl AsyncRead for EofErr {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Err(std::io::ErrorKind::UnexpectedEof.into()))
        }
    }

    #[tokio::test]
    async fn unexpected_eof_from_client_is_end_of_input() {
        let mut sink = Vec::new();
        let n = AtomicU64::new(0);
        copy_half(&mut EofErr, &mut sink, &n).await.unwrap();
    }
}
