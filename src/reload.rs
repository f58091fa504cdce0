//! Reloading without a restart, orchestrated in one place: what happens
//! when the TLS files change on disk, and what SIGHUP reloads (the token
//! revocation list, TLS material, the policy set).
//!
//! A change to the `tls.*` files (or to the token revocation list) rebuilds
//! the rustls configuration ([`crate::tls::TlsSettings::reload`]); new
//! handshakes use it at once, open connections keep theirs. A change is in
//! force well within 2 s (about 250 ms of debounce, see
//! [`crate::tls::reload::watch_files`], plus the rebuild). A rebuild that
//! fails (say a new certificate is in place but its key is not yet) keeps
//! the previous configuration and is retried for a few seconds.
//!
//! After each TLS reload, open connections with a certificate in their
//! chain (the client's own or an intermediate CA's) now on the CRL are
//! closed, each logged, counted and audited with the certificate of the
//! chain that is revoked; a second sweep one handshake timeout later
//! catches connections whose handshake began under the previous CRL.
//!
//! SIGHUP is handled once, here, for everything that reloads: tokens, TLS
//! ([`reload_and_sweep`]) and the policy. Each keeps its previous state when
//! its reload fails. The policy also watches its own files
//! ([`crate::policy::Policy::watch`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::gateway::Gateway;
use crate::tls::reload::{watch_files, ReloadError};
use crate::tls::revocation::{RevokedLink, RevokedSet};
use crate::tls::TlsError;

/// Retries of a failed rebuild (files mid-rotation), this far apart.
const RETRY_EVERY: Duration = Duration::from_millis(500);
const RETRIES: u32 = 10;

/// Starts the watcher of the TLS files and the token revocation list; it
/// stops when `shutdown` fires. Call from inside the tokio runtime.
pub fn spawn_watcher(gw: Arc<Gateway>, shutdown: CancellationToken) -> Result<(), ReloadError> {
    let mut files = gw.tls.watched_files();
    if let Some(t) = &gw.config.auth.tokens {
        files.extend(t.revoked.clone());
    }
    let (debouncer, mut changed) = watch_files(&files)?;
    tokio::spawn(async move {
        let _debouncer = debouncer; // dropped (and stopped) with the task
        let mut retries_left = 0u32;
        loop {
            let retrying = retries_left > 0;
            let retry = async move {
                if retrying {
                    tokio::time::sleep(RETRY_EVERY).await
                } else {
                    std::future::pending::<()>().await
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                c = changed.recv() => {
                    if c.is_none() { break }
                    tracing::info!("certificate files changed; reloading TLS");
                }
                _ = retry => {}
            }
            match reload_and_sweep(&gw, &shutdown) {
                Ok(_) => retries_left = 0,
                Err(e) => {
                    retries_left = if retries_left == 0 {
                        RETRIES
                    } else {
                        retries_left - 1
                    };
                    tracing::error!(error = %e, "TLS reload failed; the previous certificates stay in force");
                }
            }
        }
    });
    Ok(())
}

/// SIGHUP reloads everything that reloads: the token revocation list, TLS
/// material (closing revoked connections) and the policy set. Each keeps
/// its previous state when its reload fails.
pub fn spawn_sighup(
    gw: Arc<Gateway>,
    shutdown: CancellationToken,
    mut hup: tokio::signal::unix::Signal,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = hup.recv() => {}
            }
            tracing::info!("SIGHUP: reloading tokens, TLS and policy");
            if let Err(e) = reload_and_sweep(&gw, &shutdown) {
                tracing::error!(error = %e, "SIGHUP: TLS reload failed; the previous certificates stay in force");
            }
            let p = gw.policy.clone();
            match tokio::task::spawn_blocking(move || p.reload()).await {
                Ok(Ok(())) => {
                    tracing::info!(revision = %gw.policy.revision(), "SIGHUP: policy reloaded")
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "SIGHUP: policy reload failed; keeping the last good set")
                }
                Err(e) => tracing::error!(error = %e, "SIGHUP: policy reload task failed"),
            }
        }
    });
}

/// Re-reads the token revocation list (it also reloads itself on the
/// request path; this makes it immediate), rebuilds TLS, closes revoked
/// connections now and again one handshake timeout later.
pub fn reload_and_sweep(
    gw: &Arc<Gateway>,
    shutdown: &CancellationToken,
) -> Result<usize, TlsError> {
    if let Some(v) = gw.auth.tokens() {
        if let Err(e) = v.reload_revoked() {
            tracing::error!(error = %e, "token revocation list reload failed");
        }
    }
    gw.tls.reload()?;
    tracing::info!("TLS configuration reloaded");
    let closed = close_revoked(gw);
    sweep_later(gw.clone(), shutdown.clone());
    Ok(closed)
}

/// Closes open connections with a certificate in their chain (the leaf or
/// an intermediate) that `tls.crl` revokes; logs, counts and audits which.
/// Returns how many were closed.
pub fn close_revoked(gw: &Gateway) -> usize {
    let Some(crl) = gw.tls.crl_path() else {
        return 0;
    };
    let revoked = match RevokedSet::load(crl) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the CRL to close revoked connections");
            return 0;
        }
    };
    if revoked.is_empty() {
        return 0;
    }
    let closed = gw.connections.close_where(|c| {
        let cert = c.cert.as_ref()?;
        let found = revoked.find(&cert.chain)?;
        Some((c.peer, cert.clone(), found))
    });
    for (peer, cert, found) in &closed {
        if let Some(counter) = gw.tls.revoked_counter() {
            counter.inc(found.position(), "open_connection");
        }
        tracing::info!(
            %peer,
            position = found.position(),
            depth = found.depth,
            serial = %found.serial,
            subject = %found.subject,
            leaf_serial = %cert.serial,
            "closed a connection: a CRL revokes this certificate of its chain"
        );
        audit_closed(gw, *peer, cert, found);
    }
    closed.len()
}

/// The audit record of a connection closed because a certificate of its
/// chain was revoked: operation `Connection`, a `decision` record whose
/// reason names that certificate.
fn audit_closed(
    gw: &Gateway,
    peer: std::net::SocketAddr,
    cert: &crate::identity::CertInfo,
    found: &RevokedLink,
) {
    use crate::audit::{Record, UserRecord};
    let which = if found.depth == 0 {
        "the client certificate".to_string()
    } else {
        format!(
            "the intermediate CA certificate at depth {} of the chain",
            found.depth
        )
    };
    let user = cert.names.as_ref().ok().map(|n| UserRecord {
        name: n.user.as_str().to_owned(),
        groups: n.groups.iter().map(|g| g.as_str().to_owned()).collect(),
        auth_method: crate::identity::AuthMethod::Certificate,
        cert_serial: Some(cert.serial.clone()),
        token_id: None,
        uid: None,
        pid: None,
    });
    let reason = format!(
        "connection closed: a CRL revokes {which} (serial {}, subject \"{}\")",
        found.serial, found.subject
    );
    gw.audit_unwaited(
        Record::connection(user, peer.to_string(), reason),
        "revoked connection",
    );
}

/// Sweeps again once every handshake begun under the old configuration has
/// finished or timed out.
fn sweep_later(gw: Arc<Gateway>, shutdown: CancellationToken) {
    let wait = gw.config.limits.handshake_timeout + Duration::from_millis(100);
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(wait) => { close_revoked(&gw); }
        }
    });
}
