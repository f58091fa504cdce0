//! Fewer, larger reads on client connections, for uploads (`docker load`,
//! `build`, `cp`) and hijacked stdin.
//!
//! Without this, a bulk upload costs one `recv` per 4 KiB (rustls asks its
//! transport for at most 4 KiB at a time) and one engine write per 16 KiB
//! TLS record (tokio-rustls hands out one record's plaintext per read), so
//! moat and the engine wake each other for every record. Two adapters:
//!
//! - [`ReadAhead`], under TLS: while data is streaming in (the last read
//!   filled what rustls asked for), reads up to 64 KiB from the socket and
//!   serves rustls's small reads from that. The buffer
//!   is only held while data is flowing: it is freed as soon as the socket
//!   has nothing more to read, so idle connections do not pay for it.
//! - [`Coalesce`], over TLS: keeps reading decrypted records into the
//!   caller's buffer for as long as they are ready without waiting, so hyper
//!   sees one large read (and forwards one large chunk) instead of many
//!   record-sized ones. Nothing is held back: it returns as soon as the next
//!   record is not already there.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much [`ReadAhead`] reads from the socket at once.
const READ_AHEAD: usize = 64 * 1024;

/// Reads the transport in large gulps when the reader above asks for little.
pub struct ReadAhead<S> {
    inner: S,
    /// `buf[pos..filled]` is read but not yet consumed. Empty (no
    /// allocation) while the connection is idle.
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
    /// The last read filled the buffer it was given: data is streaming.
    bulk: bool,
}

impl<S> ReadAhead<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            pos: 0,
            filled: 0,
            bulk: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos == this.filled {
            if !this.bulk || out.remaining() >= READ_AHEAD {
                // Handshakes and small requests read straight through (no
                // buffer); a read that fills the caller's buffer suggests
                // more is waiting, so the next small read reads ahead.
                let (before, want) = (out.filled().len(), out.remaining());
                let polled = Pin::new(&mut this.inner).poll_read(cx, out);
                this.bulk = matches!(polled, Poll::Ready(Ok(())))
                    && want > 0
                    && out.filled().len() - before == want;
                return polled;
            }
            if this.buf.is_empty() {
                this.buf = vec![0; READ_AHEAD];
            }
            let mut rb = ReadBuf::new(&mut this.buf);
            let polled = Pin::new(&mut this.inner).poll_read(cx, &mut rb);
            let n = rb.filled().len();
            // Nothing to read (the connection is idle, or waiting): hold no
            // buffer meanwhile.
            if let Poll::Ready(Err(_)) | Poll::Pending = polled {
                this.release();
                return polled;
            }
            this.pos = 0;
            this.filled = n;
            if n == 0 {
                // End of stream.
                this.release();
                return Poll::Ready(Ok(()));
            }
        }
        let n = out.remaining().min(this.filled - this.pos);
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl<S> ReadAhead<S> {
    fn release(&mut self) {
        self.bulk = false;
        self.buf = Vec::new();
        self.pos = 0;
        self.filled = 0;
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Fills the caller's buffer with everything that is ready now.
pub struct Coalesce<S> {
    inner: S,
    /// An error met after some data was already returned; reported by the
    /// next read, so it is never lost.
    deferred: Option<io::Error>,
}

impl<S> Coalesce<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            deferred: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(e) = this.deferred.take() {
            return Poll::Ready(Err(e));
        }
        let start = out.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, out))?;
        if out.filled().len() == start {
            // End of stream.
            return Poll::Ready(Ok(()));
        }
        while out.remaining() > 0 {
            let before = out.filled().len();
            match Pin::new(&mut this.inner).poll_read(cx, out) {
                Poll::Ready(Ok(())) if out.filled().len() > before => continue,
                // End of stream: the next read reports it.
                Poll::Ready(Ok(())) => break,
                Poll::Ready(Err(e)) => {
                    this.deferred = Some(e);
                    break;
                }
                Poll::Pending => break,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A reader that hands out at most `step` bytes per read, then an error.
    struct Trickle {
        data: Vec<u8>,
        step: usize,
        fail_at_end: bool,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if self.data.is_empty() {
                if self.fail_at_end {
                    return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
                }
                return Poll::Ready(Ok(()));
            }
            let n = self.step.min(out.remaining()).min(self.data.len());
            let chunk: Vec<u8> = self.data.drain(..n).collect();
            out.put_slice(&chunk);
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn coalesce_joins_ready_reads_and_keeps_the_error_for_later() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut c = Coalesce::new(Trickle {
            data: data.clone(),
            step: 1000,
            fail_at_end: true,
        });
        let mut buf = vec![0; 200_000];
        let n = c.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], &data[..]);
        let e = c.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn coalesce_reports_end_of_stream() {
        let mut c = Coalesce::new(Trickle {
            data: b"abc".to_vec(),
            step: 1,
            fail_at_end: false,
        });
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"abc");
    }

    #[tokio::test]
    async fn read_ahead_serves_small_reads_and_frees_its_buffer_when_drained() {
        let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        let (mut tx, rx) = tokio::io::duplex(1 << 20);
        tx.write_all(&data).await.unwrap();
        drop(tx);
        let mut r = ReadAhead::new(rx);
        let mut got = Vec::new();
        let mut small = [0u8; 4096];
        loop {
            let n = r.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, data);
        assert!(r.buf.is_empty(), "buffer held after the stream ended");
    }

    #[tokio::test]
    async fn read_ahead_passes_writes_through() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut w = ReadAhead::new(a);
        w.write_all(b"hello").await.unwrap();
        w.shutdown().await.unwrap();
        let mut out = Vec::new();
        b.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"hello");
    }
}
