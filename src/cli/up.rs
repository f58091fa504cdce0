//! `moat up`: the one command from nothing to a secured Docker endpoint.
//! Prepares DIR ([`crate::up`]), starts the bundled engine and the gateway
//! ([`crate::launch`]), prints the `export` lines once moat listens, and
//! serves until SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::serve::{init_logging, spawn_signal_handler};
use crate::up::{self, UpOptions};

#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// The state directory: PKI, client bundles, token key, moat.yaml,
    /// policies, audit log and the bundled engine. Made on the first run,
    /// reused afterwards.
    #[arg(long, value_name = "DIR", default_value = ".moat")]
    pub dir: PathBuf,
    /// The mutual-TLS listener [default: 127.0.0.1:2376 on the first run,
    /// then DIR/moat.yaml's listen.tcp]. Given, it overrides the file for
    /// this run.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// The plain-HTTP /metrics, /healthz and /readyz listener [default:
    /// 127.0.0.1:9323 on the first run, then DIR/moat.yaml's
    /// metrics.listen]. Given, it overrides the file for this run.
    #[arg(long, value_name = "ADDR", env = "MOAT_METRICS")]
    pub metrics: Option<SocketAddr>,
    /// Serve an engine already running on this unix socket instead of
    /// starting the bundled one (this run only; DIR/moat.yaml is unchanged).
    #[arg(long, value_name = "PATH")]
    pub engine_socket: Option<PathBuf>,
    /// Also serve a local unix socket here (listen.unix), for users on this
    /// host instead of the `docker` group: the kernel names them, and
    /// auth.local in DIR/moat.yaml maps them to groups (root is admin).
    /// This run only.
    #[arg(long, value_name = "PATH")]
    pub unix: Option<PathBuf>,
}

pub(super) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let opts = UpOptions {
        dir: args.dir,
        listen: args.listen,
        metrics: args.metrics,
        engine_socket: args.engine_socket,
        unix: args.unix,
    };
    let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    rt.block_on(async move {
        let prepared = up::prepare(&opts).await?;
        init_logging(&prepared.config.log);
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone());
        let moat = moat_command();
        crate::launch::run(prepared.config.clone(), shutdown, |b| {
            tracing::info!(tls = %b.tls, metrics = ?b.metrics, "moat is serving");
            print!("{}", up::instructions(&prepared, b.tls, b.metrics, &moat));
        })
        .await?;
        // The directory lock is released only now, after the engine stopped.
        drop(prepared);
        Ok(ExitCode::SUCCESS)
    })
}

/// How to call moat again in the printed commands: as it was invoked when
/// that was a path (`./target/release/moat`), else `moat` from PATH.
fn moat_command() -> String {
    std::env::args_os()
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .filter(|a| a.contains('/'))
        .unwrap_or_else(|| "moat".into())
}
