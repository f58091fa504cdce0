//! The engine's keep-alive connections, each driven by the task that uses
//! it.
//!
//! A pooled client (hyper-util's) drives every engine connection in a task
//! of its own: a request wakes that task, its answer wakes the client's task
//! again, and each wakeup across the runtime's threads is a futex call,
//! about four per request (issue 17). Here a request takes an idle
//! connection, or opens one, and the task that serves the client drives it:
//! while the answer's head is awaited ([`Idle::send`]) and, through the
//! answer's body ([`Driven`]), while the answer streams. An answer read to
//! its end gives the connection back to the idle set; a body dropped before
//! its end closes the connection, as the engine may still be sending.
//!
//! The idle set is a stack under a lock held only to push or pop (the
//! most recently used connection first, so that few stay warm). An idle
//! connection is driven by nobody: one the engine closed meanwhile is found
//! closed when it is next taken, and the request goes to another one (it
//! was never sent on the closed one).

use std::future::Future;
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::task::AtomicWaker;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use super::ForwardError;
use crate::resbody::ResBody;

/// Idle connections kept at most; more are closed when given back.
const MAX_IDLE: usize = 256;

/// An idle connection unused for longer is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// One keep-alive connection to the engine.
struct EngineConn {
    sender: http1::SendRequest<ResBody>,
    driver: Driver,
    idle_since: Instant,
}

/// The connection's own future, which reads and writes it.
struct Driver {
    conn: http1::Connection<TokioIo<UnixStream>, ResBody>,
    /// It has completed (closed or failed): never polled or reused again.
    done: bool,
    wake: Arc<Absorb>,
}

impl Driver {
    /// Polls the connection, unless it has completed.
    fn poll(&mut self, cx: &mut Context<'_>) {
        if !self.done && Pin::new(&mut self.conn).poll(cx).is_ready() {
            self.done = true;
        }
    }

    /// Polls the connection, then `f` (what waits on it), under the waker
    /// that absorbs the wake-ups they give each other ([`Absorb`]).
    fn poll_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut f: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        let wake = self.wake.clone();
        wake.run(cx, |cx| {
            self.poll(cx);
            f(cx)
        })
    }

    /// Polls the connection and `f` as [`Driver::poll_with`]; a `f` still
    /// pending once the connection has completed never would be ready
    /// (nothing drives the connection any more): [`Ended`].
    fn poll_or_ended<T>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<Result<T, Ended>> {
        match self.poll_with(cx, f) {
            Poll::Pending if self.done => Poll::Ready(Err(Ended)),
            polled => polled.map(Ok),
        }
    }

    /// Drives the connection while `fut` runs, and returns `fut`'s output;
    /// [`Ended`] if the connection completes while `fut` still waits (it
    /// never would be answered: nothing drives the connection any more).
    async fn drive<T>(&mut self, fut: impl Future<Output = T>) -> Result<T, Ended> {
        let mut fut = pin!(fut);
        std::future::poll_fn(|cx| self.poll_or_ended(cx, |cx| fut.as_mut().poll(cx))).await
    }
}

/// The waker a connection and what waits on it are polled with.
///
/// The connection and the request or body waiting on it talk through
/// channels that wake the other side: both are this task, so each such
/// wake-up would make tokio poll the task again from its run queue, and
/// wake a parked worker thread to share the work (a futex call, for a task
/// that is running anyway). While the task is inside [`Absorb::run`], a
/// wake-up only marks that the polls must run again, which `run` does at
/// once; outside it, it wakes the task.
struct Absorb {
    state: AtomicU8,
    task: AtomicWaker,
}

const IDLE: u8 = 0;
const POLLING: u8 = 1;
const WOKEN: u8 = 2;

/// Times `run` polls again for wake-ups it absorbed before it yields.
const MAX_REPOLLS: usize = 16;

impl Absorb {
    fn new() -> Arc<Self> {
        Arc::new(Absorb {
            state: AtomicU8::new(IDLE),
            task: AtomicWaker::new(),
        })
    }

    /// Drops the task's waker.
    fn forget(&self) {
        drop(self.task.take());
    }

    /// Runs `poll` under this waker (see the type's docs); `cx`'s task is
    /// the one woken from outside.
    fn run<T>(
        self: Arc<Self>,
        cx: &mut Context<'_>,
        mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.task.register(cx.waker());
        let waker = Waker::from(self.clone());
        let mut inner = Context::from_waker(&waker);
        for _ in 0..MAX_REPOLLS {
            self.state.store(POLLING, Ordering::SeqCst);
            let polled = poll(&mut inner);
            let state = self.state.swap(IDLE, Ordering::SeqCst);
            if polled.is_ready() || state != WOKEN {
                return polled;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Wake for Absorb {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match self
            .state
            .compare_exchange(POLLING, WOKEN, Ordering::SeqCst, Ordering::SeqCst)
        {
            // Inside `run`, or woken there already: it polls again.
            Ok(_) | Err(WOKEN) => {}
            Err(_) => self.task.wake(),
        }
    }
}

/// The engine's idle keep-alive connections (see the module docs).
pub(super) struct Idle {
    socket: Arc<PathBuf>,
    conns: Mutex<Vec<EngineConn>>,
}

impl Idle {
    pub(super) fn new(socket: Arc<PathBuf>) -> Arc<Self> {
        Arc::new(Idle {
            socket,
            conns: Mutex::new(Vec::new()),
        })
    }

    /// The most recently used idle connection, if any (those idle too long
    /// are closed on the way).
    fn take(&self) -> Option<EngineConn> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = conns.pop() {
            if c.idle_since.elapsed() < IDLE_TIMEOUT {
                return Some(c);
            }
        }
        None
    }

    /// Gives back a connection whose last answer was read to its end.
    fn put(&self, mut c: EngineConn) {
        if c.driver.done || c.sender.is_closed() {
            return;
        }
        c.idle_since = Instant::now();
        // Nobody waits on an idle connection: its last task may end.
        c.driver.wake.forget();
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if conns.len() < MAX_IDLE {
            conns.push(c);
        }
    }

    /// A new connection to the engine's socket.
    async fn connect(&self) -> Result<EngineConn, ForwardError> {
        let io = UnixStream::connect(&*self.socket).await.map_err(|e| {
            tracing::warn!(error = %e, "engine socket unreachable");
            ForwardError::Unreachable
        })?;
        let (sender, conn) = http1::handshake(TokioIo::new(io)).await.map_err(|e| {
            tracing::warn!(error = %e, "engine connection failed");
            ForwardError::Unreachable
        })?;
        Ok(EngineConn {
            sender,
            driver: Driver {
                conn,
                done: false,
                wake: Absorb::new(),
            },
            idle_since: Instant::now(),
        })
    }

    /// Sends `req` on an idle connection (a new one when none is left, or
    /// when those taken turn out closed) and returns the answer, whose body
    /// drives the connection until it has been read.
    pub(super) async fn send(
        self: &Arc<Self>,
        mut req: Request<ResBody>,
    ) -> Result<Response<Driven>, ForwardError> {
        loop {
            let (mut c, reused) = match self.take() {
                Some(c) => (c, true),
                None => (self.connect().await?, false),
            };
            // Ready: the connection has finished its last exchange and wants
            // a request. One the engine closed while idle fails here.
            let EngineConn { sender, driver, .. } = &mut c;
            let ready = driver.drive(sender.ready()).await;
            if !matches!(ready, Ok(Ok(()))) {
                if reused {
                    continue;
                }
                tracing::warn!(?ready, "engine connection failed");
                return Err(ForwardError::Unreachable);
            }
            // Handed over inside the driven poll (the async block is lazy),
            // so that the wake-up it gives the connection is absorbed.
            let sent = driver.drive(async { sender.try_send_request(req).await });
            let Ok(sent) = sent.await else {
                tracing::warn!("engine closed the connection before answering");
                return Err(ForwardError::Failed);
            };
            match sent {
                Ok(resp) => {
                    let idle = self.clone();
                    return Ok(resp.map(|body| Driven {
                        body,
                        conn: Some(c),
                        ended: false,
                        failed: None,
                        idle,
                    }));
                }
                Err(mut e) => match e.take_message() {
                    // Never written: the connection closed first.
                    Some(r) if reused => req = r,
                    _ => {
                        let e = e.into_error();
                        if e.is_canceled() || e.is_closed() {
                            tracing::warn!(error = %e, "engine closed the connection");
                        } else {
                            tracing::warn!(error = %e, "engine failed while answering");
                        }
                        return Err(ForwardError::Failed);
                    }
                },
            }
        }
    }
}

/// An engine answer's body, which drives its connection while it streams
/// and gives the connection back once read to its end.
pub(super) struct Driven {
    body: Incoming,
    conn: Option<EngineConn>,
    ended: bool,
    /// The body's failure, given on the poll after the one that met it.
    failed: Option<BodyError>,
    idle: Arc<Idle>,
}

/// The connection completed while a request or body still waited on it.
#[derive(Debug, thiserror::Error)]
#[error("the engine connection ended before its answer did")]
pub(super) struct Ended;

/// Why an answer's body failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum BodyError {
    #[error(transparent)]
    Engine(#[from] hyper::Error),
    #[error(transparent)]
    Ended(#[from] Ended),
}

impl Body for Driven {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        let body = &mut this.body;
        let polled = match this.conn.as_mut() {
            // A body its completed connection would never end fails
            // visibly, never ends cleanly.
            Some(c) => match c
                .driver
                .poll_or_ended(cx, |cx| Pin::new(&mut *body).poll_frame(cx))
            {
                Poll::Ready(Ok(polled)) => polled.map(|f| f.map_err(BodyError::from)),
                Poll::Ready(Err(ended)) => Some(Err(ended.into())),
                Poll::Pending => return Poll::Pending,
            },
            None => match Pin::new(&mut *body).poll_frame(cx) {
                Poll::Ready(polled) => polled.map(|f| f.map_err(BodyError::from)),
                Poll::Pending => return Poll::Pending,
            },
        };
        match polled {
            None => this.ended = true,
            Some(Ok(_)) => this.ended = this.body.is_end_stream(),
            Some(Err(e)) => {
                // The engine failed mid-answer (died, cut the stream). What
                // came before the failure often arrives in the same read;
                // hyper has buffered it but not written it yet, and would
                // drop it with the connection on the error. So the error
                // waits one turn: hyper writes out what it has, and the
                // next poll gives the error, which ends the client's
                // connection visibly unfinished.
                this.conn = None;
                this.failed = Some(e);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        if self.ended || self.body.is_end_stream() {
            if let Some(c) = self.conn.take() {
                self.idle.put(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::resbody::full;

    /// A raw HTTP/1.1 engine on a unix socket: `GET /ok` is answered `OK`
    /// and the connection kept; `GET /once` is answered `OK` and the
    /// connection closed without notice (reported on `closed`); `GET
    /// /close` is answered `OK` with `Connection: close`, and closed; `GET
    /// /stream` starts a chunked answer that never ends; `GET /die` starts
    /// one and closes the connection (reported on `closed`). Counts
    /// connections.
    struct Engine {
        socket: Arc<PathBuf>,
        accepted: Arc<AtomicUsize>,
        closed: mpsc::UnboundedReceiver<()>,
        _dir: tempfile::TempDir,
    }

    fn engine() -> Engine {
        let dir = tempfile::tempdir().unwrap();
        let socket = Arc::new(dir.path().join("engine.sock"));
        let listener = UnixListener::bind(&*socket).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (tx, closed) = mpsc::unbounded_channel();
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 1024];
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_string();
                            buf.drain(..end + 4);
                            if head.starts_with("GET /stream ") {
                                let _ = s
                                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n")
                                    .await;
                                std::future::pending::<()>().await;
                            }
                            if head.starts_with("GET /die ") {
                                let _ = s
                                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
                                    .await;
                                drop(s);
                                let _ = tx.send(());
                                return;
                            }
                            if head.starts_with("GET /close ") {
                                let _ = s
                                    .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nOK")
                                    .await;
                                return;
                            }
                            let _ = s
                                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK")
                                .await;
                            if head.starts_with("GET /once ") {
                                drop(s);
                                let _ = tx.send(());
                                return;
                            }
                        }
                    }
                });
            }
        });
        Engine {
            socket,
            accepted,
            closed,
            _dir: dir,
        }
    }

    fn get(path: &str) -> Request<ResBody> {
        let mut req = Request::new(full(Bytes::new()));
        *req.uri_mut() = path.parse().unwrap();
        req.headers_mut()
            .insert(http::header::HOST, "docker".parse().unwrap());
        req
    }

    async fn body(resp: Response<Driven>) -> Bytes {
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn answers_read_to_their_end_reuse_one_connection() {
        let e = engine();
        let idle = Idle::new(e.socket.clone());
        for _ in 0..3 {
            assert_eq!(body(idle.send(get("/ok")).await.unwrap()).await, "OK");
        }
        assert_eq!(e.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_connection_the_engine_closed_while_idle_is_not_used() {
        let mut e = engine();
        let idle = Idle::new(e.socket.clone());
        assert_eq!(body(idle.send(get("/once")).await.unwrap()).await, "OK");
        e.closed.recv().await.unwrap();
        // The idle connection is closed: the request goes to a new one.
        assert_eq!(body(idle.send(get("/ok")).await.unwrap()).await, "OK");
        assert_eq!(e.accepted.load(Ordering::SeqCst), 2);
    }

    /// Regression: the engine's `Connection: close` answer left a
    /// connection whose driver had completed; taken again, it was waited on
    /// for a readiness nothing would ever signal (the fault test
    /// `engine_dying_mid_stream_truncates_visibly` timed out on it).
    #[tokio::test]
    async fn an_answer_that_closes_its_connection_is_never_waited_on() {
        let e = engine();
        let idle = Idle::new(e.socket.clone());
        for _ in 0..3 {
            let answered = tokio::time::timeout(Duration::from_secs(5), async {
                body(idle.send(get("/close")).await.unwrap()).await
            });
            assert_eq!(answered.await.unwrap(), "OK");
        }
        assert_eq!(e.accepted.load(Ordering::SeqCst), 3);
    }

    /// Regression: an engine dying mid-answer, its last bytes and its end
    /// read together, made the body fail in the poll right after its data:
    /// hyper then dropped the buffered response (head and data) with the
    /// connection, and the client got nothing (the fault test
    /// `engine_dying_mid_stream_truncates_visibly`).
    #[tokio::test]
    async fn a_failure_is_given_a_poll_after_the_data_before_it() {
        let mut e = engine();
        let idle = Idle::new(e.socket.clone());
        let mut body = idle.send(get("/die")).await.unwrap().into_body();
        e.closed.recv().await.unwrap();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "hello");
        let mut next = std::pin::pin!(body.frame());
        let now = std::future::poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await;
        assert!(now.is_pending(), "the failure came with the data's poll");
        assert!(next.await.unwrap().is_err());
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_closes_its_connection() {
        let e = engine();
        let idle = Idle::new(e.socket.clone());
        let mut stream = idle.send(get("/stream")).await.unwrap().into_body();
        let first = stream.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "ab");
        drop(stream);
        // Never reused: the engine may still be sending on it.
        assert_eq!(body(idle.send(get("/ok")).await.unwrap()).await, "OK");
        assert_eq!(e.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_engine_that_is_gone_is_unreachable() {
        let e = engine();
        let idle = Idle::new(Arc::new(e.socket.with_extension("missing")));
        assert!(matches!(
            idle.send(get("/ok")).await,
            Err(ForwardError::Unreachable)
        ));
    }

    /// Counts the wake-ups of the task.
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_wake_up_from_inside_the_poll_polls_again_without_waking_the_task() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let absorb = Absorb::new();
        let mut polls = 0;
        let polled = absorb.clone().run(&mut cx, |cx| {
            polls += 1;
            if polls == 1 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            Poll::Ready(())
        });
        assert!(polled.is_ready());
        assert_eq!((polls, count.0.load(Ordering::SeqCst)), (2, 0));
    }

    #[test]
    fn a_wake_up_after_the_poll_wakes_the_task() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let absorb = Absorb::new();
        let mut registered = None;
        let polled = absorb.clone().run(&mut cx, |cx| {
            registered = Some(cx.waker().clone());
            Poll::<()>::Pending
        });
        assert!(polled.is_pending());
        registered.unwrap().wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // Given back idle, nobody is woken any more.
        absorb.forget();
        Waker::from(absorb).wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }
}
