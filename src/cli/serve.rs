//! `moat serve --config FILE`: load the config, set up logging, serve until
//! SIGTERM/SIGINT, then drain.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, LogFormat};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The config file.
    #[arg(long, short)]
    pub config: PathBuf,
}

pub(super) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    init_logging(&config.log);
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone());
        crate::launch::run(config, shutdown, |b| {
            tracing::info!(tls = %b.tls, metrics = ?b.metrics, "moat is serving");
        })
        .await?;
        Ok(ExitCode::SUCCESS)
    })
}

/// SIGTERM or SIGINT starts a graceful shutdown.
pub(super) fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        shutdown.cancel();
    });
}

/// Logging through tracing; `RUST_LOG` overrides `log.level`.
pub(super) fn init_logging(log: &crate::config::Log) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
