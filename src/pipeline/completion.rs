//! The end of a request: the `complete` audit record and the request
//! metrics ([`Completion`]), and knowing when a request has really ended.
//! Response bodies stream (logs -f, save, events), so the completion runs
//! from a body wrapper when the last byte is sent or the client goes away,
//! not when the handler returns; a hijacked session runs it when the
//! session ends. Uploads are counted as they stream to the engine.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::body::RequestBody;
use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::audit::Record;
use crate::classify::OpId;
use crate::conn::InFlight;
use crate::gateway::Gateway;
use crate::metrics::Outcome;
use crate::resbody::{BoxError, ResBody};

/// The operation of a request refused before it was classified, in the
/// audit record and the metrics.
pub(super) const UNCLASSIFIED: &str = "Unclassified";

/// What is left to do when a request ends (see `Completion::complete`).
pub struct Completion {
    pub(super) gw: Arc<Gateway>,
    pub(super) record: Record,
    pub(super) started: Instant,
    pub(super) overhead: Duration,
    /// `None` when the request was refused before it was classified.
    pub(super) operation: Option<OpId>,
    pub(super) outcome: Outcome,
    pub(super) hijack: Option<Arc<crate::hijack::Counters>>,
    pub(super) request_counter: Option<Arc<AtomicU64>>,
    pub(super) in_flight: Option<InFlight>,
    /// The identity's count of this request (see [`crate::admission`]).
    pub(super) held: Option<crate::admission::Held>,
}

impl Completion {
    /// Writes the completion record and counts the request. Called once,
    /// from the response body's end (or drop), or from the end of a
    /// hijacked session.
    pub(crate) fn complete(mut self, bytes_out: u64) {
        let gw = self.gw.clone();
        let elapsed = self.started.elapsed();
        let status = self.record.response.as_ref().map(|r| r.status).unwrap_or(0);
        let hijack = self.hijack.take();
        let request_counter = self.request_counter.take();
        if let Some(r) = self.record.response.as_mut() {
            r.duration_ms = elapsed.as_secs_f64() * 1000.0;
            r.bytes_out = bytes_out;
            if let Some(c) = &request_counter {
                r.bytes_in = c.load(Ordering::Relaxed);
            }
            if let Some(h) = &hijack {
                r.hijacked = true;
                r.bytes_in += h.bytes_in.load(Ordering::Relaxed);
                r.bytes_out += h.bytes_out.load(Ordering::Relaxed);
            }
        }
        let operation = self.operation.map_or(UNCLASSIFIED, OpId::as_str);
        gw.metrics
            .request_done(operation, self.outcome, status, elapsed, self.overhead);
        tracing::debug!(id = %self.record.id, op = operation, status, ms = elapsed.as_millis() as u64, "request");
        // Moved, not cloned: this is the last use of the record.
        let record = self.record;
        drop(self.in_flight.take());
        drop(self.held.take());
        // Queued without waiting for the writer's answer: written and
        // fsynced like any record; the writer logs a failure.
        gw.audit_unwaited(record, "completion record");
    }
}

pin_project_lite::pin_project! {
    /// A body that counts its bytes and runs a completion at its end.
    struct Tracked<B> {
        #[pin]
        inner: B,
        count: u64,
        completion: Option<Completion>,
    }

    impl<B> PinnedDrop for Tracked<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(c) = this.completion.take() {
                c.complete(*this.count);
            }
        }
    }
}

impl<B: Body<Data = Bytes>> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    *this.count += d.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                if let Some(c) = this.completion.take() {
                    c.complete(*this.count);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps a response so that `completion` runs when its body has ended.
pub(super) fn on_complete(
    resp: Response<ResBody>,
    completion: Option<Completion>,
) -> Response<ResBody> {
    resp.map(|inner| {
        Tracked {
            inner,
            count: 0,
            completion,
        }
        .boxed_unsync()
    })
}

pin_project_lite::pin_project! {
    /// A streamed upload, counted as it goes to the engine.
    struct Counted {
        #[pin]
        inner: RequestBody,
        count: Arc<AtomicU64>,
    }
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.count.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps an upload so its size can be audited.
pub(super) fn count_request(body: RequestBody) -> (ResBody, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    (
        Counted {
            inner: body,
            count: count.clone(),
        }
        .boxed_unsync(),
        count,
    )
}
