//! The local socket (`listen.unix`): the same pipeline as the mutual-TLS
//! listener, for users on the gateway host, identified by the kernel
//! (`SO_PEERCRED`) instead of a certificate or token. It is what replaces
//! membership in the `docker` group: the engine's own socket stays root's,
//! and local users reach it only through moat's policy and audit.
//!
//! The socket file gets `listen.unix_mode` (default `0666`: who may connect
//! is not what decides, who connects is) and `listen.unix_group`. A stale
//! socket left by an earlier run is replaced; any other file at the path is
//! an error. Local connections are bounded by `limits.max_connections` of
//! their own, count for their identity's limits from the start (they are
//! authenticated when they connect), and are not parked (they come from
//! this host, and are few).

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::ServeError;
use crate::admission::ConnAdmission;
use crate::config::Listen;
use crate::conn::ConnInfo;
use crate::gateway::Gateway;
use crate::identity::local::PeerCred;

/// The bound local socket and its path (removed when moat stops).
pub(super) struct LocalListener {
    listener: UnixListener,
    path: PathBuf,
}

/// Binds `listen.unix`, if set, with its mode and group.
pub(super) fn bind(cfg: &Listen) -> Result<Option<LocalListener>, ServeError> {
    let Some(path) = &cfg.unix else {
        return Ok(None);
    };
    let fail = |reason: String| ServeError::Local {
        path: path.clone(),
        reason,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path)
                .map_err(|e| fail(format!("cannot replace the old socket: {e}")))?;
        }
        Ok(_) => return Err(fail(
            "a file that is not a socket is in the way; remove it or choose another listen.unix"
                .into(),
        )),
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(|e| fail(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(cfg.unix_mode))
        .map_err(|e| fail(format!("cannot set its mode: {e}")))?;
    if let Some(group) = &cfg.unix_group {
        let gid = nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .ok_or_else(|| {
                fail(format!(
                    "listen.unix_group `{group}` is not in the group database"
                ))
            })?
            .gid;
        nix::unistd::chown(path, None, Some(gid))
            .map_err(|e| fail(format!("cannot give it group `{group}`: {e}")))?;
    }
    Ok(Some(LocalListener {
        listener,
        path: path.clone(),
    }))
}

impl LocalListener {
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts local connections until `shutdown`, then removes the socket
    /// file. Connection tasks are tracked by the gateway.
    pub(super) async fn serve(self, gw: Arc<Gateway>, shutdown: CancellationToken) {
        let limit = Arc::new(Semaphore::new(gw.config.limits.max_connections));
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                a = self.listener.accept() => a,
            };
            match accepted {
                Ok((stream, _)) => {
                    let permit = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        p = limit.clone().acquire_owned() => match p {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                    };
                    let conn = connection(gw.clone(), stream, permit, shutdown.clone());
                    gw.tasks.spawn(conn);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed on the local socket");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        drop(self.listener);
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn connection(
    gw: Arc<Gateway>,
    stream: UnixStream,
    _permit: OwnedSemaphorePermit,
    shutdown: CancellationToken,
) {
    let cred = match stream.peer_cred() {
        Ok(c) => PeerCred {
            uid: c.uid(),
            gid: c.gid(),
            pid: c.pid(),
        },
        Err(e) => {
            tracing::info!(error = %e, "local connection without peer credentials closed");
            return;
        }
    };
    let peer = gw.local.resolve(cred).map(Arc::new);
    let admission = ConnAdmission::untracked();
    match &peer {
        Ok(p) => {
            let groups: Vec<String> = p.groups.iter().map(|g| g.as_str().to_owned()).collect();
            if let Err(over) = gw
                .admission
                .authenticate(&admission, p.user.as_str(), &groups)
            {
                tracing::info!(uid = cred.uid, "local connection closed: {over}");
                let user = crate::audit::UserRecord {
                    name: p.user.as_str().to_owned(),
                    groups,
                    auth_method: crate::identity::AuthMethod::Peer,
                    cert_serial: None,
                    token_id: None,
                    uid: Some(cred.uid),
                    pid: cred.pid,
                };
                let record = crate::audit::Record::connection(
                    Some(user),
                    "unix".to_owned(),
                    over.to_string(),
                );
                gw.audit_unwaited(record, "local connection refusal");
                return;
            }
        }
        // Answered 401, with the reason, on each of its requests.
        Err(e) => tracing::info!(uid = cred.uid, error = %e, "local user refused"),
    }
    let info = Arc::new(ConnInfo::local(
        peer,
        gw.force_close.child_token(),
        admission,
    ));
    let _registered = gw.connections.register(info.clone());
    gw.metrics.connection_opened();
    serve_http(&gw, &info, stream, &shutdown).await;
    gw.metrics.connection_closed();
}

/// HTTP/1.1 on one local connection, with the mutual-TLS listener's head
/// limits; `limits.header_read_timeout` also bounds the wait between
/// keep-alive requests.
async fn serve_http(
    gw: &Arc<Gateway>,
    info: &Arc<ConnInfo>,
    stream: UnixStream,
    shutdown: &CancellationToken,
) {
    let limits = &gw.config.limits;
    let svc = {
        let gw = gw.clone();
        let info = info.clone();
        service_fn(move |req| crate::pipeline::handle(gw.clone(), info.clone(), req))
    };
    let conn = super::http::builder(limits)
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            r = &mut conn => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "local connection ended with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = info.cancel.cancelled() => return,
        }
    }
}
