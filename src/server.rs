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
//! many idle clients cost little memory; the HTTP serving and parking loop
//! is [`http`].
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
mod http;
mod local;
mod park;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use self::http::{close, serve_http, ClientStream};
use crate::admission::ConnAdmission;
use crate::config::Config;
use crate::conn::{ConnInfo, Connections};
use crate::engine::EngineStatus;
use crate::gateway::{self, Gateway};
use crate::identity::CertInfo;

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
        // The audit writer is a thread the process does not wait for:
        // every record queued so far (completion records, refusals of
        // connections) reaches the disk before `run` returns.
        match tokio::time::timeout(Duration::from_secs(5), gateway.audit.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "audit log not flushed on shutdown"),
            Err(_) => tracing::error!("audit log not flushed on shutdown within 5 s"),
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
    use crate::audit::{Record, UserRecord};
    let user = UserRecord {
        name: user.to_string(),
        groups: groups.to_vec(),
        auth_method: crate::identity::AuthMethod::Certificate,
        cert_serial: Some(cert.serial.clone()),
        token_id: None,
        uid: None,
        pid: None,
    };
    gw.audit_unwaited(
        Record::connection(Some(user), peer.to_string(), over.to_string()),
        "connection refusal",
    );
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
