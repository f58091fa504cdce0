//! A write deadline on the client stream: a client that stops reading (a
//! large response, a pipelined flood it never reads the answers to) closes
//! after `limits.write_timeout` without progress, instead of holding its
//! connection, its request and the engine's stream for ever.
//!
//! Memory stays bounded meanwhile without help from here: hyper buffers at
//! most `limits.max_header_bytes` of a response before it waits for the
//! socket, and reads the next request only when the last response is out.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use tokio::time::Sleep;

/// The stream hyper writes to, failing a write (or flush) that has made no
/// progress for the timeout.
pub(super) struct WriteDeadline<T> {
    inner: T,
    timeout: Duration,
    /// Running while a write is blocked; reset by any progress.
    blocked: Option<Pin<Box<Sleep>>>,
}

impl<T> WriteDeadline<T> {
    pub(super) fn new(inner: T, timeout: Duration) -> Self {
        WriteDeadline {
            inner,
            timeout,
            blocked: None,
        }
    }

    pub(super) fn into_inner(self) -> T {
        self.inner
    }

    /// Records the outcome of a write-side poll: progress resets the
    /// deadline; a blocked write starts it, and fails once it has passed.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        match polled {
            Poll::Ready(r) => {
                self.blocked = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self
                    .blocked
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(sleep.as_mut().poll(cx));
                self.blocked = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client read nothing for limits.write_timeout",
                )))
            }
        }
    }
}

use std::future::Future;

impl<T: Read + Unpin> Read for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_util::rt::TokioIo;
    use tokio::io::AsyncReadExt;

    async fn write(
        w: &mut WriteDeadline<TokioIo<tokio::io::DuplexStream>>,
        buf: &[u8],
    ) -> io::Result<usize> {
        std::future::poll_fn(|cx| Pin::new(&mut *w).poll_write(cx, buf)).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_blocked_past_the_timeout_fails_and_progress_resets_it() {
        let (client, server) = tokio::io::duplex(16);
        let mut client = client;
        let mut w = WriteDeadline::new(TokioIo::new(server), Duration::from_secs(5));
        assert_eq!(write(&mut w, &[0; 16]).await.unwrap(), 16);
        // The pipe is full; the client reads a little after 4 s: progress.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            let mut b = [0u8; 8];
            client.read_exact(&mut b).await.unwrap();
            client
        });
        assert_eq!(write(&mut w, &[0; 16]).await.unwrap(), 8);
        let _client = reader.await.unwrap();
        // Then it reads nothing more: the next blocked write times out.
        let started = tokio::time::Instant::now();
        let e = write(&mut w, &[0; 16]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
