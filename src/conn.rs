//! What moat knows about one client connection, and the registry of open
//! connections.
//!
//! [`ConnInfo`] is created by the server once the TLS handshake is done and
//! read by the pipeline for every request on that connection: the peer
//! address, the client certificate, the token that closes the connection,
//! and how many requests are in flight (which decides when an idle
//! connection is parked or closed). [`Connections`] lists the open
//! connections so that some can be closed on demand (a certificate was
//! revoked).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::admission::ConnAdmission;
use crate::identity::local::{LocalError, LocalPeer};
use crate::identity::CertInfo;

/// A client of the local socket, as the kernel and `auth.local` named it
/// when it connected (or why it could not be named).
pub type LocalConn = Result<Arc<LocalPeer>, LocalError>;

/// What the pipeline knows about the connection a request arrived on.
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub cert: Option<Arc<CertInfo>>,
    /// Cancelled to close this connection (revocation, forced shutdown,
    /// eviction from the pre-authentication budget).
    pub cancel: CancellationToken,
    /// Unauthenticated (in the pre-authentication budget) or counted for
    /// an identity.
    pub admission: ConnAdmission,
    /// Set for a connection on the local socket (`listen.unix`): its
    /// requests are authenticated by this, never by a certificate or token.
    pub local: Option<LocalConn>,
    in_flight: AtomicUsize,
    last_active: Mutex<Instant>,
    /// Notified when the last request in flight has finished.
    idle: Notify,
    /// Whether the last request allows parking the connection when idle
    /// (decided by the server, which parks).
    parkable: AtomicBool,
}

impl ConnInfo {
    pub fn new(
        peer: SocketAddr,
        cert: Option<Arc<CertInfo>>,
        cancel: CancellationToken,
        admission: ConnAdmission,
    ) -> Self {
        ConnInfo {
            peer,
            cert,
            cancel,
            admission,
            local: None,
            in_flight: AtomicUsize::new(0),
            last_active: Mutex::new(Instant::now()),
            idle: Notify::new(),
            parkable: AtomicBool::new(false),
        }
    }

    /// A connection on the local socket, from `peer` (its `peer` address
    /// is unspecified: a unix socket has none).
    pub fn local(peer: LocalConn, cancel: CancellationToken, admission: ConnAdmission) -> Self {
        let mut info = Self::new(SocketAddr::from(([0, 0, 0, 0], 0)), None, cancel, admission);
        info.local = Some(peer);
        info
    }

    /// The client as the audit log names it: `ip:port`, or `unix` for the
    /// local socket.
    pub fn client_label(&self) -> String {
        match self.local {
            Some(_) => "unix".to_owned(),
            None => self.peer.to_string(),
        }
    }

    /// Marks a request as started; the guard marks it finished when the
    /// response body has been sent or dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Notes whether the connection may be parked after the request that
    /// has just arrived.
    pub fn set_parkable(&self, parkable: bool) {
        self.parkable.store(parkable, Ordering::Release);
    }

    /// Whether the last request allows parking the connection when idle.
    pub fn parkable(&self) -> bool {
        self.parkable.load(Ordering::Acquire)
    }

    /// Since when nothing has been in flight; `None` while a request is.
    pub fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        self.last_active.lock().ok().map(|t| *t)
    }

    /// Completes when the last request in flight has finished.
    pub fn idle(&self) -> Notified<'_> {
        self.idle.notified()
    }
}

/// A request in flight on a connection (see [`ConnInfo::begin`]).
pub struct InFlight(Arc<ConnInfo>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut t) = self.0.last_active.lock() {
            *t = Instant::now();
        }
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_one();
        }
    }
}

/// The open client connections, so that some can be closed on demand (a
/// certificate was revoked).
#[derive(Default)]
pub struct Connections {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<ConnInfo>>>,
}

impl Connections {
    /// Lists `info` until the returned guard is dropped.
    pub fn register(self: &Arc<Self>, info: Arc<ConnInfo>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut open) = self.open.lock() {
            open.insert(id, info);
        }
        Registered {
            id,
            set: self.clone(),
        }
    }

    /// Closes every open connection for which `pick` returns a value;
    /// returns those values (one per connection closed).
    pub fn close_where<T>(&self, pick: impl Fn(&ConnInfo) -> Option<T>) -> Vec<T> {
        let Ok(open) = self.open.lock() else {
            return Vec::new();
        };
        let mut closed = Vec::new();
        for info in open.values() {
            if info.cancel.is_cancelled() {
                continue;
            }
            if let Some(v) = pick(info) {
                info.cancel.cancel();
                closed.push(v);
            }
        }
        closed
    }

    pub fn len(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A connection listed in [`Connections`]; unlisted when dropped.
pub struct Registered {
    id: u64,
    set: Arc<Connections>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut open) = self.set.open.lock() {
            open.remove(&self.id);
        }
    }
}
