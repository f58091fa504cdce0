//! The configuration file, parsed into typed structs.
//!
//! Parse, don't validate: `moat serve --config FILE` and `moat config check
//! FILE` both go through [`Config::load`], which rejects unknown keys, names
//! the file, line and key of any error, and resolves every relative path
//! against the directory that holds the config file. Nothing downstream ever
//! sees a half-checked value.
//!
//! `config.example.yaml` at the repository root documents every key with its
//! default; a unit test below parses it so the two cannot drift apart.
//!
//! Each section has its own file below `config/` (its keys, defaults,
//! relative paths and checks); this file strings them together.

mod audit;
mod auth;
mod engine;
mod limits;
mod listen;
mod log;
mod policy;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use audit::{Audit, AuditLevel, AuditOnFailure, AuditSync};
pub use auth::{
    Auth, CertGroups, CertUser, CertificateAuth, LocalAuth, TokenAlgorithm, TokenClaims, TokenKey,
    Tokens,
};
pub use engine::{Bundled, Engine};
pub use limits::{IdentityLimits, IdentityOverride, Limits, Unauthenticated};
pub use listen::{ClientCert, Listen, Metrics, Tls};
pub use log::{Log, LogFormat};
pub use policy::Policy;

/// A section's check failed: the key, and what to change.
type Invalid = (&'static str, String);

/// Why a configuration file was refused. The message is meant for an admin
/// and names the file and, where the parser knows it, line, column and key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config file: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        message: String,
    },
}

/// The whole configuration. Every section has defaults except the ones that
/// name files moat cannot guess (`tls.*`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listen: Listen,
    pub tls: Tls,
    #[serde(default)]
    pub engine: Engine,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub auth: Auth,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub audit: Audit,
    #[serde(default)]
    pub metrics: Metrics,
    #[serde(default)]
    pub log: Log,
}

impl Config {
    /// Reads, parses and checks a config file; relative paths in it are
    /// resolved against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text as if it had been read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: explain_parse_error(
                &e.to_string()
                    .replace("<input>", &path.display().to_string()),
            ),
        })?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.check(path)?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let r = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        self.listen.resolve_paths(&r);
        self.tls.resolve_paths(&r);
        self.engine.resolve_paths(&r);
        self.auth.resolve_paths(&r);
        r(&mut self.policy.dir);
        r(&mut self.audit.file);
    }

    /// Each section's checks, in a fixed order; the first failure is
    /// reported.
    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        self.limits
            .check()
            .and_then(|()| self.audit.check())
            .and_then(|()| self.auth.check())
            .and_then(|()| self.engine.check())
            .map_err(|(key, message)| ConfigError::Invalid {
                path: path.to_path_buf(),
                key,
                message,
            })
    }
}

/// Adds the fix to serde's wording for the errors admins meet most.
fn explain_parse_error(msg: &str) -> String {
    if msg.contains("unknown field") {
        format!("{msg}\n  fix: remove or rename the key; config.example.yaml lists every valid key")
    } else if msg.contains("missing field") {
        format!("{msg}\n  fix: add the key; config.example.yaml shows it with an example value")
    } else {
        msg.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/moat/moat.yaml"))
    }

    const MINIMAL: &str = "tls:\n  cert: s.pem\n  key: k.pem\n  client_ca: ca.pem\n";

    #[test]
    fn example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.yaml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.limits.max_inspect_body_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn relative_paths_resolve_against_the_config_file() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.tls.cert, Path::new("/etc/moat/s.pem"));
        assert_eq!(c.policy.dir, Path::new("/etc/moat/policies"));
        assert_eq!(c.audit.file, Path::new("/etc/moat/audit/audit.log"));
    }

    #[test]
    fn unknown_key_names_key_file_and_line() {
        let text = format!("{MINIMAL}limits:\n  max_conections: 5\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("/etc/moat/moat.yaml"), "{err}");
        assert!(err.contains("max_conections"), "{err}");
        assert!(err.contains("line 6"), "{err}");
        assert!(err.contains("fix:"), "{err}");
    }

    #[test]
    fn durations_are_human_readable() {
        let c = parse(&format!("{MINIMAL}limits:\n  handshake_timeout: 3s\n")).unwrap();
        assert_eq!(c.limits.handshake_timeout, Duration::from_secs(3));
    }

    #[test]
    fn bundled_engine_refuses_tcp_hosts() {
        for arg in [
            "-H",
            "-Htcp://0.0.0.0:2375",
            "--host=tcp://0.0.0.0:2375",
            "--host",
        ] {
            let text = format!(
                "{MINIMAL}engine:\n  bundled:\n    root: engine\n    extra_args: [\"{arg}\"]\n"
            );
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("engine.bundled.extra_args"), "{arg}: {err}");
        }
    }

    #[test]
    fn admission_limits_parse_and_nonsense_is_refused() {
        let c = parse(&format!(
            "{MINIMAL}limits:\n  max_connections: 40\n  unauthenticated:\n    max_per_source: 4\n    grace: 50ms\n  identity:\n    rate: 10\n  groups:\n    ci:\n      burst: 100\n"
        ))
        .unwrap();
        assert_eq!(c.limits.unauthenticated.budget(40), 20);
        assert_eq!(c.limits.unauthenticated.grace(), Duration::from_millis(50));
        assert_eq!(c.limits.groups["ci"].burst, Some(100));
        for (bad, key) in [
            ("  identity:\n    rate: 0\n", "limits.identity"),
            ("  identity:\n    max_streams: 0\n", "limits.identity"),
            ("  groups:\n    ci:\n      burst: 0\n", "limits.groups"),
            (
                "  unauthenticated:\n    max_connections: 5000\n",
                "limits.unauthenticated.max_connections",
            ),
            ("  identity:\n    max_conns: 3\n", "max_conns"),
        ] {
            let err = parse(&format!("{MINIMAL}limits:\n{bad}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn resolve_limits_default_parse_and_refuse_zero() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.limits.max_resolved_objects, 32);
        assert_eq!(c.limits.resolve_timeout, Duration::from_secs(10));
        let c = parse(&format!(
            "{MINIMAL}limits:\n  max_resolved_objects: 4\n  resolve_timeout: 2s\n"
        ))
        .unwrap();
        assert_eq!(c.limits.max_resolved_objects, 4);
        assert_eq!(c.limits.resolve_timeout, Duration::from_secs(2));
        for (bad, key) in [
            ("  max_resolved_objects: 0\n", "limits.max_resolved_objects"),
            ("  resolve_timeout: 0s\n", "limits.resolve_timeout"),
        ] {
            let err = parse(&format!("{MINIMAL}limits:\n{bad}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    #[test]
    fn tokens_need_exactly_one_key_source() {
        let text = format!("{MINIMAL}auth:\n  tokens:\n    issuer: i\n    audience: a\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("auth.tokens"), "{err}");
    }
}
