//! Starting everything in order and stopping it in reverse: the bundled
//! engine (when `engine.bundled` is configured), then the gateway; on
//! shutdown the gateway drains first, then the engine stops. `moat serve`
//! and `moat up` both run through [`run`].

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::engine::{self, EngineStatus};
use crate::server::{ServeError, Server};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("bundled engine: {0}")]
    Engine(#[from] engine::EngineError),
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// Where the gateway ended up listening, reported once it is bound.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    pub tls: SocketAddr,
    pub metrics: Option<SocketAddr>,
}

/// Runs the engine (if bundled) and the gateway until `shutdown` fires.
/// `on_bound` is called once the gateway listens (to print instructions).
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    on_bound: impl FnOnce(Bound),
) -> Result<(), LaunchError> {
    // The engine gets its own token: it must outlive the gateway's drain.
    let engine_stop = CancellationToken::new();
    let (status, bundled) = match &config.engine.bundled {
        Some(b) => {
            let status = Arc::new(EngineStatus::new());
            let e = engine::start(
                b,
                &config.engine.socket,
                status.clone(),
                engine_stop.clone(),
            )
            .await?;
            (status, Some(e))
        }
        None => (Arc::new(EngineStatus::external()), None),
    };
    let result = async {
        let server = Server::bind_with_engine(config, status).await?;
        on_bound(Bound {
            tls: server.local_addr(),
            metrics: server.metrics_addr(),
        });
        server.run(shutdown).await
    }
    .await;
    if let Some(e) = bundled {
        tracing::info!("stopping the bundled engine");
        e.stop().await;
    }
    Ok(result?)
}
