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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// `host:port` of the mutual-TLS listener. Port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub tcp: SocketAddr,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            tcp: default_listen(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 2376))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCert {
    /// Every client must present a certificate chaining to `client_ca`.
    #[default]
    Required,
    /// A client may connect without a certificate and authenticate with a
    /// bearer token instead. A certificate that is presented must still verify.
    Optional,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA bundle that client certificates must chain to (PEM).
    pub client_ca: PathBuf,
    /// Certificate revocation list (PEM), reloaded when it changes.
    #[serde(default)]
    pub crl: Option<PathBuf>,
    #[serde(default)]
    pub client_cert: ClientCert,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Engine {
    /// The engine's unix socket. moat forwards every allowed request here.
    #[serde(default = "default_engine_socket")]
    pub socket: PathBuf,
    /// When present, moat starts and supervises its own dockerd listening
    /// only on `socket`.
    #[serde(default)]
    pub bundled: Option<Bundled>,
}

impl Default for Engine {
    fn default() -> Self {
        Self {
            socket: default_engine_socket(),
            bundled: None,
        }
    }
}

fn default_engine_socket() -> PathBuf {
    PathBuf::from("/var/run/docker.sock")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundled {
    /// Path of the dockerd binary.
    #[serde(default = "default_dockerd")]
    pub dockerd: PathBuf,
    /// The engine's data directory (`--data-root`); its exec root and pid
    /// file live beside the socket.
    pub root: PathBuf,
    /// Extra dockerd arguments. Any `-H`/`--host` is refused: the engine
    /// listens on `engine.socket` only.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

fn default_dockerd() -> PathBuf {
    PathBuf::from("dockerd")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Time a client has to finish the TLS handshake.
    #[serde(default = "d10s", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Time a client has to send a complete request head, from its first
    /// byte; also how long a new connection may wait before its first.
    #[serde(default = "d30s", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this.
    #[serde(default = "d120s", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest request head (request line plus headers), in bytes.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most header fields in one request.
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Most client connections open at once; further ones wait in the
    /// kernel's accept queue.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest JSON body moat reads whole to inspect; larger ones get 413.
    #[serde(default = "default_max_inspect_body_bytes")]
    pub max_inspect_body_bytes: usize,
    /// Longest a single policy evaluation may run before it counts as deny.
    #[serde(default = "d1s", with = "humantime_serde")]
    pub policy_eval_timeout: Duration,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish before
    /// hijacked sessions and remaining connections are closed.
    #[serde(default = "d10s", with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: d10s(),
            header_read_timeout: d30s(),
            idle_timeout: d120s(),
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            max_connections: default_max_connections(),
            max_inspect_body_bytes: default_max_inspect_body_bytes(),
            policy_eval_timeout: d1s(),
            shutdown_grace: d10s(),
        }
    }
}

fn d1s() -> Duration {
    Duration::from_secs(1)
}
fn d10s() -> Duration {
    Duration::from_secs(10)
}
fn d30s() -> Duration {
    Duration::from_secs(30)
}
fn d120s() -> Duration {
    Duration::from_secs(120)
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_max_headers() -> usize {
    100
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_inspect_body_bytes() -> usize {
    4 * 1024 * 1024
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    #[serde(default)]
    pub certificate: CertificateAuth,
    /// Bearer tokens (JWT). Absent: tokens are not accepted.
    #[serde(default)]
    pub tokens: Option<Tokens>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CertUser {
    #[default]
    Cn,
    SanEmail,
    SanUri,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertGroups {
    #[default]
    O,
    Ou,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateAuth {
    /// Which part of the client certificate names the user.
    #[serde(default)]
    pub user: CertUser,
    /// Which subject attribute lists the user's groups.
    #[serde(default)]
    pub groups: CertGroups,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim.
    pub audience: String,
    /// Verification keys. Exactly one of `keys` and `jwks` must be set.
    #[serde(default)]
    pub keys: Vec<TokenKey>,
    /// A JWKS file of verification keys.
    #[serde(default)]
    pub jwks: Option<PathBuf>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    #[serde(default = "d30s", with = "humantime_serde")]
    pub leeway: Duration,
    /// Tokens whose `exp - iat` exceeds this are refused, and so are tokens
    /// without `exp`.
    #[serde(default = "d24h", with = "humantime_serde")]
    pub max_ttl: Duration,
    #[serde(default)]
    pub claims: TokenClaims,
    /// A file of revoked `jti` values, one a line; reloaded when it changes.
    #[serde(default)]
    pub revoked: Option<PathBuf>,
}

fn d24h() -> Duration {
    Duration::from_secs(24 * 3600)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenKey {
    pub file: PathBuf,
    pub algorithm: TokenAlgorithm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TokenAlgorithm {
    ES256,
    ES384,
    RS256,
    PS256,
    EdDSA,
    HS256,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenClaims {
    #[serde(default = "default_claim_user")]
    pub user: String,
    #[serde(default = "default_claim_groups")]
    pub groups: String,
    #[serde(default = "default_claim_scopes")]
    pub scopes: String,
}

impl Default for TokenClaims {
    fn default() -> Self {
        Self {
            user: default_claim_user(),
            groups: default_claim_groups(),
            scopes: default_claim_scopes(),
        }
    }
}

fn default_claim_user() -> String {
    "sub".into()
}
fn default_claim_groups() -> String {
    "groups".into()
}
fn default_claim_scopes() -> String {
    "scope".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Directory of `*.rego` files plus optional `data.json`/`data.yaml`.
    #[serde(default = "default_policy_dir")]
    pub dir: PathBuf,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            dir: default_policy_dir(),
        }
    }
}

fn default_policy_dir() -> PathBuf {
    PathBuf::from("policies")
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditLevel {
    /// Who, what, decision and outcome; no request bodies.
    #[default]
    Metadata,
    /// Metadata plus the inspected request body and the policy input the
    /// decision was made on (for `moat audit replay`), secrets redacted.
    Request,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditSync {
    /// fsync every decision record before it is acknowledged; completion
    /// records (acknowledged to nobody) within `audit.batch_interval`.
    #[default]
    Always,
    /// fsync at most every `audit.batch_interval`.
    Batch,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditOnFailure {
    /// A request whose audit record cannot be written is refused with 503.
    #[default]
    Deny,
    /// Requests go on when the audit log cannot be written (counted and logged).
    Allow,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Audit {
    /// JSON-lines audit log.
    #[serde(default = "default_audit_file")]
    pub file: PathBuf,
    /// Also write every record to standard output.
    #[serde(default)]
    pub stdout: bool,
    #[serde(default)]
    pub level: AuditLevel,
    #[serde(default)]
    pub sync: AuditSync,
    #[serde(default = "default_batch_interval", with = "humantime_serde")]
    pub batch_interval: Duration,
    /// Rotate when the file reaches this size.
    #[serde(default = "default_audit_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept (`audit.log.1` … `audit.log.N`).
    #[serde(default = "default_audit_keep")]
    pub keep: usize,
    #[serde(default)]
    pub on_failure: AuditOnFailure,
    /// Records waiting to be written; producers wait when it is full.
    #[serde(default = "default_audit_queue")]
    pub queue: usize,
}

impl Default for Audit {
    fn default() -> Self {
        Self {
            file: default_audit_file(),
            stdout: false,
            level: AuditLevel::default(),
            sync: AuditSync::default(),
            batch_interval: default_batch_interval(),
            max_bytes: default_audit_max_bytes(),
            keep: default_audit_keep(),
            on_failure: AuditOnFailure::default(),
            queue: default_audit_queue(),
        }
    }
}

fn default_audit_file() -> PathBuf {
    PathBuf::from("audit/audit.log")
}
fn default_batch_interval() -> Duration {
    Duration::from_millis(50)
}
fn default_audit_max_bytes() -> u64 {
    100 * 1024 * 1024
}
fn default_audit_keep() -> usize {
    10
}
fn default_audit_queue() -> usize {
    4096
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Plain-HTTP listener for `/metrics`, `/healthz` and `/readyz`.
    /// `null` turns it off.
    #[serde(default = "default_metrics_listen")]
    pub listen: Option<SocketAddr>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            listen: default_metrics_listen(),
        }
    }
}

fn default_metrics_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9323)))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Log {
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter (`info`, `moat=debug`, …). `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_log_level(),
        }
    }
}

fn default_log_level() -> String {
    "info".into()
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
        r(&mut self.tls.cert);
        r(&mut self.tls.key);
        r(&mut self.tls.client_ca);
        if let Some(crl) = &mut self.tls.crl {
            r(crl);
        }
        r(&mut self.engine.socket);
        if let Some(b) = &mut self.engine.bundled {
            r(&mut b.root);
            // `dockerd` is looked up on PATH when it is a bare name.
            if b.dockerd.components().count() > 1 {
                r(&mut b.dockerd);
            }
        }
        if let Some(t) = &mut self.auth.tokens {
            for k in &mut t.keys {
                r(&mut k.file);
            }
            if let Some(j) = &mut t.jwks {
                r(j);
            }
            if let Some(rv) = &mut t.revoked {
                r(rv);
            }
        }
        r(&mut self.policy.dir);
        r(&mut self.audit.file);
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message,
        };
        if self.limits.max_header_bytes < 8192 {
            return Err(invalid(
                "limits.max_header_bytes",
                format!(
                    "{} is too small; use at least 8192",
                    self.limits.max_header_bytes
                ),
            ));
        }
        if self.limits.max_connections == 0 {
            return Err(invalid(
                "limits.max_connections",
                "must be at least 1".into(),
            ));
        }
        if self.audit.queue == 0 {
            return Err(invalid("audit.queue", "must be at least 1".into()));
        }
        if let Some(t) = &self.auth.tokens {
            if t.keys.is_empty() == t.jwks.is_none() {
                return Err(invalid(
                    "auth.tokens",
                    "set exactly one of `keys` (a list of {file, algorithm}) and `jwks` (a JWKS file)"
                        .into(),
                ));
            }
        }
        if let Some(b) = &self.engine.bundled {
            if let Some(bad) = b.extra_args.iter().find(|a| is_host_flag(a)) {
                return Err(invalid(
                    "engine.bundled.extra_args",
                    format!(
                        "`{bad}` would open another engine listener; the bundled engine listens only on engine.socket. Remove it"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// True for dockerd flags that add an API listener (`-H`, `--host`, in any
/// of their spellings).
fn is_host_flag(arg: &str) -> bool {
    arg == "-H"
        || arg.starts_with("-H")
        || arg == "--host"
        || arg.starts_with("--host=")
        || arg == "-host"
        || arg.starts_with("-host=")
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
    fn tokens_need_exactly_one_key_source() {
        let text = format!("{MINIMAL}auth:\n  tokens:\n    issuer: i\n    audience: a\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("auth.tokens"), "{err}");
    }
}
