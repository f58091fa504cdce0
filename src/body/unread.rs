//! A request body that is read to its end even when moat answers without it.
//!
//! When moat refuses a request before it has read the body (a denied build
//! context, a 401, a body over its limit), hyper would close the connection
//! with the client's bytes still unread. The kernel then answers the close
//! with a TCP reset, which throws away the response moat has just written:
//! the docker CLI, still uploading, reports "broken pipe" instead of the
//! policy's message. This is why web servers linger on close.
//!
//! [`RequestBody`] wraps hyper's body for the whole request path. When it is
//! dropped before its end, a task reads and discards the rest for at most
//! `limits.body_read_timeout`; the client reads the answer, and if the body
//! ends in time the connection even stays open for the next request. Past
//! that time the body is dropped and hyper closes the connection. The
//! connection keeps its slot (and its identity's) while the task reads, so
//! lingering gives a client nothing that holding the connection would not.
//! The task is one of the gateway's tracked tasks: shutdown waits for it
//! within its grace, and a forced close ends it with the connection.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio_util::task::TaskTracker;

/// hyper's request body, drained in the background if dropped unread.
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<Incoming>,
    linger: Duration,
    /// The gateway's tasks, so that shutdown waits for the drain too.
    tasks: TaskTracker,
}

impl RequestBody {
    /// Wraps `body`; an unread rest is drained for at most `linger`, in a
    /// task of `tasks`.
    pub fn new(body: Incoming, linger: Duration, tasks: TaskTracker) -> Self {
        RequestBody {
            inner: Some(body),
            linger,
            tasks,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.inner.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let Some(body) = self.inner.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        // Outside a runtime (never on the request path) there is nothing to
        // linger on: hyper closes the connection as before.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            self.tasks.spawn_on(drain(body, self.linger), &rt);
        }
    }
}

/// Reads and discards `body` until it ends, fails, or `within` has passed.
async fn drain(mut body: Incoming, within: Duration) {
    let rest = async { while let Some(Ok(_)) = body.frame().await {} };
    let _ = tokio::time::timeout(within, rest).await;
}
