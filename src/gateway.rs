//! The state every request shares, loaded once from the config: TLS
//! material, the authenticator, the policy set, the audit log, metrics, the
//! engine and the open connections.
//!
//! [`Gateway`] sits above the stages it holds and below the code that
//! strings them together (the pipeline, reloads and the server): stages take
//! the narrow parts they need, not the whole gateway. What `/readyz` reports
//! of this state is here too ([`readiness`]).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admission::Admission;
use crate::audit::Auditor;
use crate::config::Config;
use crate::conn::Connections;
use crate::engine::EngineStatus;
use crate::forward::Upstream;
use crate::identity::{token, Authenticator};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::tls::TlsSettings;

/// Why the gateway's state could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("policy: {0}")]
    Policy(#[from] crate::policy::PolicyError),
    #[error("audit: {0}")]
    Audit(#[from] crate::audit::AuditError),
    #[error("auth.tokens: {0}")]
    Tokens(#[from] token::TokenError),
    #[error("{0}; fix it in the config file")]
    Local(#[from] crate::identity::name::NameError),
}

/// Everything a request needs, shared by all connections.
pub struct Gateway {
    pub config: Config,
    pub tls: TlsSettings,
    pub auth: Authenticator,
    pub policy: Arc<Policy>,
    pub audit: Auditor,
    pub metrics: Arc<Metrics>,
    pub upstream: Upstream,
    /// The engine's API version range, learnt on first use.
    pub engine_api: crate::effective::EngineApi,
    /// The engine's state: always running for an external engine; for a
    /// bundled one, not running while it (re)starts.
    pub engine: Arc<EngineStatus>,
    pub connections: Arc<Connections>,
    /// The pre-authentication budget and the per-identity limits.
    pub admission: Admission,
    /// `auth.local`: the policy groups of local users on `listen.unix`.
    pub local: crate::identity::local::LocalMap,
    /// Fired after the grace period: closes streams and hijacked sessions.
    pub force_close: CancellationToken,
    /// Tracks every connection and hijack task.
    pub tasks: TaskTracker,
}

impl Gateway {
    /// Loads TLS, tokens, policy and audit from the config.
    pub async fn load(config: Config, engine: Arc<EngineStatus>) -> Result<Gateway, LoadError> {
        let tls = TlsSettings::load(&config.tls)?;
        let tokens = match &config.auth.tokens {
            Some(t) => Some(token::Verifier::from_config(t)?),
            None => None,
        };
        let metrics = Arc::new(Metrics::new());
        tls.count_revocations_in(metrics.revoked());
        let policy =
            Arc::new(Policy::load(&config.policy, &config.limits)?.with_metrics(metrics.clone()));
        let audit = Auditor::open(&config.audit, metrics.clone()).await?;
        let admission = Admission::new(&config.limits, metrics.clone());
        let local = crate::identity::local::LocalMap::new(&config.auth.local)?;
        Ok(Gateway {
            tls,
            auth: Authenticator::new(&config.auth.certificate, tokens),
            policy,
            audit,
            metrics,
            upstream: Upstream::new(config.engine.socket.clone()),
            engine_api: crate::effective::EngineApi::default(),
            engine,
            connections: Arc::new(Connections::default()),
            admission,
            local,
            force_close: CancellationToken::new(),
            tasks: TaskTracker::new(),
            config,
        })
    }
}

impl Gateway {
    /// Queues a record nobody waits for (a completion, a closed
    /// connection): when the queue is full, a tracked task waits for room;
    /// a failure is logged with `what`.
    pub fn audit_unwaited(&self, record: crate::audit::Record, what: &str) {
        match self.audit.submit(record) {
            Ok(None) => {}
            Ok(Some(wait_for_room)) => {
                self.tasks.spawn(wait_for_room);
            }
            Err(e) => tracing::error!(error = %e, "{what} not audited"),
        }
    }
}

/// What `/readyz` reports: the engine answers `/_ping`, a policy is
/// loaded, and the audit log is writable.
pub fn readiness(gw: Arc<Gateway>) -> crate::metrics::ReadyCheck {
    Arc::new(move || {
        let gw = gw.clone();
        Box::pin(async move {
            let engine = match gw.engine.readiness() {
                Ok(()) => gw.upstream.ping().await.map_err(|e| e.to_string()),
                Err(e) => Err(e),
            };
            gw.metrics.engine_up(engine.is_ok());
            vec![
                ("engine", engine),
                ("policy", gw.policy.status()),
                ("audit", gw.audit.writable()),
            ]
        })
    })
}

/// Keeps `moat_engine_up` current even when nobody polls `/readyz`.
pub async fn watch_engine(gw: Arc<Gateway>, shutdown: CancellationToken) {
    loop {
        let up = gw.engine.is_running() && gw.upstream.ping().await.is_ok();
        gw.metrics.engine_up(up);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}
