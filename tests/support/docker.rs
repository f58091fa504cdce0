//! The real docker CLI pointed at moat with a client bundle, exactly as a
//! user would set it up (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH).

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use super::{Bundle, Moat};

pub(crate) struct Docker {
    host: String,
    cert_path: PathBuf,
    config_dir: PathBuf,
}

impl Docker {
    pub(crate) fn new(moat: &Moat, bundle: &Bundle) -> Docker {
        let config_dir = bundle.dir.join("docker-config");
        std::fs::create_dir_all(&config_dir).expect("docker config dir");
        Docker {
            host: moat.host(),
            cert_path: bundle.dir.clone(),
            config_dir,
        }
    }

    /// Uses this docker config directory (for `HttpHeaders`).
    pub(crate) fn with_config_dir(mut self, dir: PathBuf) -> Docker {
        self.config_dir = dir;
        self
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", &self.host)
            .env("DOCKER_TLS_VERIFY", "1")
            .env("DOCKER_CERT_PATH", &self.cert_path)
            .env("DOCKER_CONFIG", &self.config_dir)
            .env("DOCKER_BUILDKIT", "0")
            .env_remove("DOCKER_CONTEXT")
            .args(args);
        cmd
    }

    /// Another program (`sh`, `script`) run with this client's docker
    /// environment, for pipelines and pseudo-terminals.
    pub(crate) fn program(&self, program: &str, args: &[&str]) -> Command {
        let cmd = self.command(&[]);
        let mut other = Command::new(program);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => other.env(k, v),
                None => other.env_remove(k),
            };
        }
        other.args(args);
        other
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        super::run_with_deadline(self.command(args), None, Duration::from_secs(300))
    }

    pub(crate) fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        super::run_with_deadline(self.command(args), Some(stdin), Duration::from_secs(300))
    }

    /// Runs and insists on success; returns stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and insists on failure; returns stderr.
    pub(crate) fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "docker {args:?} should have failed:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs and insists on a refusal: a daemon error (what moat's refusals
    /// look like to the CLI) containing every fragment of `why`. Returns
    /// stderr.
    pub(crate) fn refused(&self, args: &[&str], why: &[&str]) -> String {
        let stderr = self.fails(args);
        assert!(
            stderr.contains("Error response from daemon:"),
            "docker {args:?}: not a daemon error: {stderr}"
        );
        for w in why {
            assert!(
                stderr.contains(w),
                "docker {args:?}: expected {w:?} in: {stderr}"
            );
        }
        stderr
    }
}

/// The docker CLI through `moat` as `user`, a member of `group`.
pub(crate) fn as_role(moat: &Moat, user: &str, group: &str) -> Docker {
    Docker::new(moat, &super::pki().client(user, group))
}
