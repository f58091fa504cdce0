//! moat itself, started in-process on port 0 with a config file written to
//! a temporary directory, on its own runtime thread.

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio_util::sync::CancellationToken;

use super::{engine, pki};

/// What differs from the default test config.
#[derive(Default, Clone)]
pub(crate) struct MoatOptions {
    /// Policy directory; default: the repository's shipped pack.
    pub policy_dir: Option<PathBuf>,
    /// Engine socket; default: the shared private engine.
    pub engine_socket: Option<PathBuf>,
    /// Extra top-level YAML appended to the config (sections not written
    /// by default: `auth`, and overrides of `limits`/`audit` replace ours).
    pub extra_yaml: String,
    /// Replaces the default `limits:` section.
    pub limits_yaml: Option<String>,
    /// Replaces the default `audit:` section body.
    pub audit_yaml: Option<String>,
    /// Replaces the default `tls:` section body.
    pub tls_yaml: Option<String>,
    /// `listen.unix`: also serve this local socket.
    pub unix_socket: Option<PathBuf>,
    /// Extra lines of the `engine:` section (after `socket`).
    pub engine_yaml: Option<String>,
}

pub(crate) struct Moat {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub audit_file: PathBuf,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Moat {
    pub(crate) fn start() -> Moat {
        Self::start_with(MoatOptions::default())
    }

    pub(crate) fn start_with(opts: MoatOptions) -> Moat {
        let pki = pki();
        let dir = tempfile::Builder::new()
            .prefix("moat-srv-")
            .tempdir()
            .expect("tempdir")
            .keep();
        let socket = opts
            .engine_socket
            .clone()
            .unwrap_or_else(|| engine().socket.clone());
        let policy_dir = opts
            .policy_dir
            .clone()
            .unwrap_or_else(|| super::repo().join("policies"));
        let tls = opts.tls_yaml.clone().unwrap_or_else(|| {
            format!(
                "  cert: {}\n  key: {}\n  client_ca: {}\n",
                pki.server_cert.display(),
                pki.server_key.display(),
                pki.ca_pem.display()
            )
        });
        let limits = opts
            .limits_yaml
            .clone()
            .unwrap_or_else(|| "  shutdown_grace: 2s\n".into());
        let audit = opts
            .audit_yaml
            .clone()
            .unwrap_or_else(|| "  file: audit/audit.log\n".into());
        let unix = opts
            .unix_socket
            .as_ref()
            .map(|p| format!("  unix: {}\n", p.display()))
            .unwrap_or_default();
        let yaml = format!(
            "listen:\n  tcp: 127.0.0.1:0\n{unix}tls:\n{tls}engine:\n  socket: {}\n{}limits:\n{limits}policy:\n  dir: {}\naudit:\n{audit}metrics:\n  listen: 127.0.0.1:0\nlog:\n  level: warn\n{}",
            socket.display(),
            opts.engine_yaml.clone().unwrap_or_default(),
            policy_dir.display(),
            opts.extra_yaml,
        );
        let config_path = dir.join("moat.yaml");
        std::fs::write(&config_path, yaml).expect("write config");
        Self::start_config(config_path)
    }

    /// Starts moat from an existing config file.
    pub(crate) fn start_config(config_path: PathBuf) -> Moat {
        let config = moat::config::Config::load(&config_path).expect("test config must load");
        let audit_file = config.audit.file.clone();
        let dir = config_path.parent().expect("config dir").to_path_buf();
        let shutdown = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let stop = shutdown.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                match moat::server::Server::bind(config).await {
                    Ok(server) => {
                        let _ = tx.send(Ok((server.local_addr(), server.metrics_addr())));
                        server.run(stop).await.expect("moat run");
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        });
        let (addr, metrics_addr) = rx
            .recv()
            .expect("moat thread")
            .unwrap_or_else(|e| panic!("moat did not start: {e}"));
        Moat {
            addr,
            metrics_addr,
            dir,
            config_path,
            audit_file,
            shutdown,
            thread: Some(thread),
        }
    }

    /// `tcp://127.0.0.1:PORT` for DOCKER_HOST.
    pub(crate) fn host(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// Graceful shutdown; returns when moat has drained.
    pub(crate) fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// The audit records written so far, parsed. A last line without its
    /// newline is still being written (the log is read while moat writes
    /// it): it is left for the next read.
    pub(crate) fn audit_records(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.audit_file).unwrap_or_default();
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        complete
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
            .collect()
    }

    /// The audit records once one satisfies `pred`, waiting up to 10 s:
    /// completion records (all a read-only request leaves) are queued when
    /// the response has ended, so they can reach the file just after the
    /// client has its answer. Panics with the records seen if none comes.
    pub(crate) fn audit_records_once(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let records = self.audit_records();
            if records.iter().any(&pred) {
                return records;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no matching audit record within 10 s: {records:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Moat {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
