//! Parking idle keep-alive connections without their HTTP buffers.
//!
//! hyper keeps a connection's read and write buffers (8 KiB each) for the
//! connection's whole life, idle or not. A gateway in front of CI fleets and
//! long-lived docker contexts holds many idle keep-alive connections, so moat
//! ends hyper's part of a connection once it has been idle for a moment
//! (`PARK_AFTER` in the server) and keeps only the TLS stream: the
//! connection is *parked*. When the client's next request begins, a new
//! hyper connection picks up the stream where the last left off, starting
//! with the bytes already read.
//!
//! [`Parkable`] is the stream hyper sees. It replays those bytes first, and
//! while a park is under way its shutdown only flushes, so that hyper's
//! graceful end of an idle connection hands the open stream back
//! (`into_parts`) instead of closing it.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http::{header, Request, Version};
use hyper::rt::{Read, ReadBufCursor, Write};

/// Whether the connection may be parked once `req` has been answered: it
/// asks for keep-alive (HTTP/1.1, no `Connection: close`), has no body (so
/// none can be left unread, which hyper would close the connection for) and
/// is no upgrade. Anything else keeps hyper's own handling of the
/// connection.
pub(super) fn parkable<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    let close = h.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().map_or(true, |s| {
            s.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"))
        })
    });
    req.version() == Version::HTTP_11
        && !close
        && !h.contains_key(header::UPGRADE)
        && !h.contains_key(header::TRANSFER_ENCODING)
        && h.get_all(header::CONTENT_LENGTH).iter().all(|v| v == "0")
}

/// What a finished hyper connection left unprocessed, in stream order: the
/// bytes it read but did not parse (`read_buf`), then the replayed bytes it
/// never read.
pub(super) fn leftover(read_buf: Bytes, unread_replay: Bytes) -> Bytes {
    match (read_buf.is_empty(), unread_replay.is_empty()) {
        (_, true) => read_buf,
        (true, false) => unread_replay,
        (false, false) => [read_buf, unread_replay].concat().into(),
    }
}

/// The client stream as hyper sees it (see the module docs).
pub(super) struct Parkable<T> {
    inner: T,
    /// Bytes read from the client before this hyper connection existed.
    replay: Bytes,
    /// Set while moat parks the connection: shutdown must not close it.
    parking: Arc<AtomicBool>,
}

impl<T> Parkable<T> {
    pub(super) fn new(inner: T, replay: Bytes, parking: Arc<AtomicBool>) -> Self {
        Parkable {
            inner,
            replay,
            parking,
        }
    }

    /// The stream, and whatever of the replayed bytes hyper did not read.
    pub(super) fn into_inner(self) -> (T, Bytes) {
        (self.inner, self.replay)
    }
}

impl<T: Read + Unpin> Read for Parkable<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.replay.is_empty() {
            let n = self.replay.len().min(buf.remaining());
            buf.put_slice(&self.replay[..n]);
            self.replay.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Parkable<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.parking.load(Ordering::Acquire) {
            // Flushed, not closed: the stream is handed back for parking.
            return Pin::new(&mut self.inner).poll_flush(cx);
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serves `requests` one hyper connection at a time over one stream,
    /// parking between them exactly as the server does; returns what the
    /// client received.
    async fn serve_parked(requests: &[&[u8]]) -> String {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let svc = service_fn(|req: Request<hyper::body::Incoming>| async move {
            let path = req.uri().path().to_string();
            let body = req.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from(format!(
                "{path}:{}",
                body.len()
            )))))
        });
        let parking = Arc::new(AtomicBool::new(false));
        let server = tokio::spawn({
            let parking = parking.clone();
            async move {
                let mut stream = TokioIo::new(server);
                let mut replay = Bytes::new();
                let mut served = 0;
                loop {
                    parking.store(false, Ordering::Release);
                    let mut conn = http1::Builder::new()
                        .serve_connection(Parkable::new(stream, replay, parking.clone()), svc)
                        .with_upgrades();
                    // One request per hyper connection: park when idle.
                    let mut parked = false;
                    loop {
                        tokio::select! {
                            r = &mut conn => { r.unwrap(); break; }
                            _ = tokio::time::sleep(std::time::Duration::from_millis(20)), if !parked => {
                                parked = true;
                                parking.store(true, Ordering::Release);
                                Pin::new(&mut conn).graceful_shutdown();
                            }
                        }
                    }
                    let Some(parts) = conn.into_parts() else {
                        return served;
                    };
                    served += 1;
                    let (io, rest) = parts.io.into_inner();
                    stream = io;
                    replay = leftover(parts.read_buf, rest);
                    if replay.is_empty() {
                        let mut first = [0u8; 1];
                        match stream.inner_mut().read(&mut first).await {
                            Ok(0) | Err(_) => return served,
                            Ok(n) => replay = Bytes::copy_from_slice(&first[..n]),
                        }
                    }
                }
            }
        });
        let mut out = Vec::new();
        for r in requests {
            client.write_all(r).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(60)).await;
        }
        client.shutdown().await.unwrap();
        client.read_to_end(&mut out).await.unwrap();
        let served = server.await.unwrap();
        assert!(served >= 1, "nothing was parked");
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn leftover_bytes_keep_stream_order() {
        // hyper read (but did not parse) the start; the rest of the replay
        // was never read: the start comes first.
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        assert_eq!(leftover(b("GET /a"), b(" HTTP/1.1")), b("GET /a HTTP/1.1"));
        assert_eq!(leftover(b(""), b("GET")), b("GET"));
        assert_eq!(leftover(b("GET"), b("")), b("GET"));
    }

    #[test]
    fn only_bodiless_keep_alive_requests_park() {
        let req = |lines: &[(&str, &str)], v: Version| {
            let mut b = Request::builder().uri("/_ping").version(v);
            for (k, val) in lines {
                b = b.header(*k, *val);
            }
            b.body(()).unwrap()
        };
        let v11 = Version::HTTP_11;
        assert!(parkable(&req(&[], v11)));
        assert!(parkable(&req(&[("content-length", "0")], v11)));
        assert!(parkable(&req(&[("connection", "keep-alive")], v11)));
        for (lines, v) in [
            (vec![("content-length", "3")], v11),
            (vec![("transfer-encoding", "chunked")], v11),
            (vec![("connection", "close")], v11),
            (vec![("connection", "keep-alive, Close")], v11),
            (vec![("upgrade", "tcp"), ("connection", "upgrade")], v11),
            (vec![], Version::HTTP_10),
        ] {
            assert!(!parkable(&req(&lines, v)), "{lines:?} {v:?}");
        }
    }

    #[tokio::test]
    async fn requests_around_a_park_are_served_in_order() {
        let out = serve_parked(&[
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
            b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n",
        ])
        .await;
        let bodies: Vec<&str> = out
            .split("\r\n\r\n")
            .skip(1)
            .map(|s| s.split("HTTP/1.1").next().unwrap_or(""))
            .collect();
        assert_eq!(bodies, ["/a:0", "/b:3", "/c:0"], "{out}");
        assert!(
            !out.to_ascii_lowercase().contains("connection: close"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn a_request_split_across_a_park_is_served_whole() {
        // The head starts before the park and ends after it; pipelined
        // bytes read by the parked connection are replayed to the next.
        let out = serve_parked(&[
            b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HT",
            b"TP/1.1\r\nHost: x\r\n\r\n",
        ])
        .await;
        assert!(out.contains("/a:0") && out.contains("/b:0"), "{out}");
    }
}
