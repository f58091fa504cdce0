//! The listener: accepts TCP connections, bounds them, runs the TLS
//! handshake and hands each connection to hyper with moat's limits; and
//! shuts all of it down gracefully.
//!
//! Limits on what an attacker controls: at most `limits.max_connections`
//! connections (more wait in the kernel backlog, unless an unauthenticated
//! connection can be evicted to make room: see [`crate::admission`]; each
//! new connection enters its pre-authentication budget, and counts for its
//! identity once its certificate names one), `limits.handshake_timeout`
//! for the handshake, `limits.header_read_timeout` and
//! `limits.max_header_bytes`/`max_headers` for each request head, and
//! `limits.idle_timeout` for a keep-alive connection with nothing in flight,
//! `limits.write_timeout` for a client that stops reading (see `server/deadline.rs`).
//! Such an idle connection is parked without its HTTP buffers ([`park`]), so
//! many idle clients cost little memory.
//!
//! Shutdown is passed in as a [`CancellationToken`]. On it the listener
//! closes, connections finish their in-flight requests, and after
//! `limits.shutdown_grace` whatever is left (streams, hijacked sessions) is
//! closed. Every task is tracked, so [`Server::run`] returns only when none
//! is left.
//!
//! What the server hands on lives below it: the shared state in
//! [`crate::gateway`], each connection's facts in [`crate::conn`], and reloads
//! (file changes, SIGHUP) in [`crate::reload`].

mod deadline;
mod local;
mod park;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::admission::ConnAdmission;
use crate::config::Config;
use crate::conn::{ConnInfo, Connections};
use crate::engine::EngineStatus;
use crate::gateway::{self, Gateway};
use crate::identity::CertInfo;
use crate::metrics::Metrics;
use crate::resbody::ResBody;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Load(#[from] gateway::LoadError),
    #[error("reload: {0}")]
    Reload(#[from] crate::tls::reload::ReloadError),
    #[error("policy watch: {0}")]
    PolicyWatch(#[from] crate::policy::WatchError),
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(std::io::Error),
    #[error("cannot listen on the local socket {path} (listen.unix): {reason}")]
    Local {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// A bound, ready-to-run gateway.
pub struct Server {
    gateway: Arc<Gateway>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    /// `listen.unix`, when set ([`local`]).
    local_listener: Option<local::LocalListener>,
    /// SIGHUP, taken over at bind: once moat says it listens, a SIGHUP must
    /// reload, never terminate (the signal's default action).
    hup: tokio::signal::unix::Signal,
}

impl Server {
    /// Loads TLS, tokens, policy and audit from the config and binds the
    /// listeners, for an engine moat does not manage; nothing is accepted
    /// until [`Server::run`].
    pub async fn bind(config: Config) -> Result<Server, ServeError> {
        Self::bind_with_engine(config, Arc::new(EngineStatus::external())).await
    }

    /// As [`Server::bind`], with the status of a bundled engine.
    pub async fn bind_with_engine(
        config: Config,
        engine: Arc<EngineStatus>,
    ) -> Result<Server, ServeError> {
        let gateway = Gateway::load(config, engine).await?;
        let config = &gateway.config;
        let listener = TcpListener::bind(config.listen.tcp)
            .await
            .map_err(|source| ServeError::Bind {
                addr: config.listen.tcp,
                source,
            })?;
        let metrics_listener = match config.metrics.listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServeError::Bind { addr, source })?,
            ),
            None => None,
        };
        let local_listener = local::bind(&config.listen)?;
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(ServeError::Signal)?;
        Ok(Server {
            gateway: Arc::new(gateway),
            listener,
            metrics_listener,
            local_listener,
            hup,
        })
    }

    /// The mutual-TLS address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.gateway.config.listen.tcp)
    }

    /// The metrics address actually bound, if metrics are on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The local socket's path, if `listen.unix` is set.
    pub fn local_path(&self) -> Option<&std::path::Path> {
        self.local_listener.as_ref().map(|l| l.path())
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// Serves until `shutdown` fires, then drains within the grace period.
    /// Fails only if a watcher that security depends on (certificate and
    /// CRL reload) cannot be started.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        let Server {
            gateway,
            listener,
            metrics_listener,
            local_listener,
            hup,
        } = self;
        crate::reload::spawn_watcher(gateway.clone(), shutdown.clone())?;
        gateway.policy.watch(shutdown.clone())?;
        crate::reload::spawn_sighup(gateway.clone(), shutdown.clone(), hup);
        if let Some(l) = metrics_listener {
            let ready = gateway::readiness(gateway.clone());
            tokio::spawn(crate::metrics::serve(
                l,
                gateway.metrics.clone(),
                ready,
                shutdown.clone(),
            ));
        }
        tokio::spawn(gateway::watch_engine(gateway.clone(), shutdown.clone()));
        if let Some(l) = local_listener {
            tracing::info!(path = %l.path().display(), "moat listening (local socket)");
            gateway
                .tasks
                .spawn(l.serve(gateway.clone(), shutdown.clone()));
        }
        tracing::info!(addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(), "moat listening (mutual TLS)");
        let limit = Arc::new(Semaphore::new(gateway.config.limits.max_connections));
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = listener.accept() => a,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    let Some(permit) = slot(&limit, &gateway.admission.pool, &shutdown).await
                    else {
                        break;
                    };
                    // Counted as unauthenticated until it proves an identity;
                    // evicting the oldest unauthenticated one when full.
                    let cancel = gateway.force_close.child_token();
                    let place = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        p = gateway.admission.pool.admit(peer.ip(), cancel.clone()) => p,
                    };
                    let admitted = Admitted {
                        permit,
                        place,
                        cancel,
                    };
                    let gw = gateway.clone();
                    let conns = gateway.connections.clone();
                    let stop = shutdown.clone();
                    gateway
                        .tasks
                        .spawn(connection(gw, conns, tcp, peer, admitted, stop));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        drop(listener);
        tracing::info!("shutting down: no new connections; draining in-flight requests");
        gateway.tasks.close();
        let grace = gateway.config.limits.shutdown_grace;
        if tokio::time::timeout(grace, gateway.tasks.wait())
            .await
            .is_err()
        {
            tracing::info!("grace period over: closing remaining streams and hijacked sessions");
            gateway.force_close.cancel();
            if tokio::time::timeout(Duration::from_secs(5), gateway.tasks.wait())
                .await
                .is_err()
            {
                tracing::warn!("some connections did not close in time");
            }
        }
        Ok(())
    }
}

/// A slot among `limits.max_connections` for a connection just accepted.
/// When none is free, an unauthenticated connection is evicted to make
/// room (see [`crate::admission::pool`]); with none of those, the new
/// connection waits for one to close. `None` on shutdown.
async fn slot(
    limit: &Arc<Semaphore>,
    pool: &crate::admission::Pool,
    shutdown: &CancellationToken,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = limit.clone().try_acquire_owned() {
        return Some(p);
    }
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            p = limit.clone().acquire_owned() => return p.ok(),
            _ = pool.evict_one() => {
                // The evicted connection's slot comes back as its task ends;
                // evict another only if it does not.
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    p = limit.clone().acquire_owned() => return p.ok(),
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
}

/// What the accept loop gives a new connection: its slot, its place among
/// the unauthenticated connections, and the token that closes it.
struct Admitted {
    permit: OwnedSemaphorePermit,
    place: crate::admission::Unauth,
    cancel: CancellationToken,
}

async fn connection(
    gw: Arc<Gateway>,
    conns: Arc<Connections>,
    tcp: TcpStream,
    peer: SocketAddr,
    admitted: Admitted,
    shutdown: CancellationToken,
) {
    let Admitted {
        permit: _permit,
        place,
        cancel,
    } = admitted;
    // Boxed, like the serving below: a connection's task is allocated at the
    // size of its largest state, and the handshake's is the largest by far;
    // boxed, it is freed once the handshake is done.
    let handshake = Box::pin(accept_tls(&gw, tcp, peer));
    let accepted = tokio::select! {
        a = handshake => a,
        _ = cancel.cancelled() => {
            tracing::debug!(%peer, "unauthenticated connection evicted during its handshake");
            return;
        }
    };
    let Some((tls, cert)) = accepted else {
        return;
    };
    let admission = ConnAdmission::unauthenticated(place);
    // A certificate that verified and names a user authenticates the
    // connection; over that identity's connection limit, it closes now.
    if let Some(Ok(names)) = cert.as_ref().map(|c| &c.names) {
        let user = names.user.as_str();
        let groups: Vec<String> = names.groups.iter().map(|g| g.as_str().into()).collect();
        if let Err(over) = gw.admission.authenticate(&admission, user, &groups) {
            if let Some(c) = &cert {
                audit_refused_connection(&gw, peer, c, user, &groups, &over);
            }
            close(tls).await;
            return;
        }
    }
    let info = Arc::new(ConnInfo::new(peer, cert, cancel, admission));
    let _registered = conns.register(info.clone());
    gw.metrics.connection_opened();
    Box::pin(serve_http(&gw, &info, tls, &shutdown)).await;
    gw.metrics.connection_closed();
}

/// Audits a connection closed over its identity's connection limit.
fn audit_refused_connection(
    gw: &Gateway,
    peer: SocketAddr,
    cert: &CertInfo,
    user: &str,
    groups: &[String],
    over: &crate::admission::Over,
) {
    use crate::audit::{DecisionRecord, Record, RequestRecord, Stage, UserRecord};
    let record = Record {
        id: hex::encode(rand::random::<[u8; 16]>()),
        stage: Stage::Decision,
        user: Some(UserRecord {
            name: user.to_string(),
            groups: groups.to_vec(),
            auth_method: crate::identity::AuthMethod::Certificate,
            cert_serial: Some(cert.serial.clone()),
            token_id: None,
            uid: None,
            pid: None,
        }),
        client: peer.to_string(),
        request: RequestRecord {
            method: String::new(),
            uri: String::new(),
            operation: "Connection".into(),
            params: Default::default(),
            body: None,
        },
        decision: Some(DecisionRecord {
            allow: false,
            reasons: vec![over.to_string()],
            policy_revision: String::new(),
        }),
        response: None,
        input: None,
    };
    match gw.audit.submit(record) {
        Ok(None) => {}
        Ok(Some(wait_for_room)) => {
            gw.tasks.spawn(wait_for_room);
        }
        Err(e) => tracing::error!(error = %e, "connection refusal not audited"),
    }
}

/// The TLS handshake within `limits.handshake_timeout`, and the client
/// certificate as moat reads it; `None` (logged and counted) when either
/// fails.
async fn accept_tls(
    gw: &Gateway,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<(ClientStream, Option<Arc<CertInfo>>)> {
    let _ = tcp.set_nodelay(true);
    let acceptor = tokio_rustls::TlsAcceptor::from(gw.tls.current());
    let accepted =
        tokio::time::timeout(gw.config.limits.handshake_timeout, acceptor.accept(tcp)).await;
    let tls = match accepted {
        Ok(Ok(tls)) => Box::new(tls),
        Ok(Err(e)) => {
            gw.metrics.tls_handshake_failure();
            tracing::info!(%peer, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            gw.metrics.tls_handshake_failure();
            tracing::info!(%peer, "TLS handshake timed out");
            return None;
        }
    };
    let chain: Vec<&[u8]> = tls
        .get_ref()
        .1
        .peer_certificates()
        .unwrap_or_default()
        .iter()
        .map(|c| c.as_ref())
        .collect();
    let cert = match chain.first() {
        Some(_) => match CertInfo::from_chain(&chain, &gw.config.auth.certificate) {
            Ok(info) => Some(Arc::new(info)),
            Err(e) => {
                tracing::info!(%peer, error = %e, "client certificate refused");
                return None;
            }
        },
        None => None,
    };
    Some((tls, cert))
}

/// The client's TLS stream, boxed: it moves between the parked and the
/// serving state, and futures that hold it inline are as large as it is.
type ClientStream = Box<tokio_rustls::server::TlsStream<TcpStream>>;

/// Serves HTTP/1.1 on an established connection until it closes.
///
/// Between requests the connection is parked ([`park`]): hyper's part of it
/// ends once nothing has been in flight for [`PARK_AFTER`], and a new hyper
/// connection starts with the first bytes of the next request. A parked
/// connection waits at most `limits.idle_timeout`
/// (`limits.header_read_timeout` before its first request) and closes on
/// shutdown or when moat closes it (revocation); one that cannot be parked
/// closes after `limits.idle_timeout` idle ([`idle_deadline`]).
async fn serve_http(
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
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Also caps the read buffer, so a connection that uploads holds at
        // most this much (hyper keeps the buffer's capacity).
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .keep_alive(true);
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
async fn close(mut stream: ClientStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
}
