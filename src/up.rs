//! `moat up`'s bootstrap: everything a state directory needs to serve, made
//! on the first run and reused on every later one.
//!
//! This is the "one command" path of the design: a new user runs `moat up`
//! and gets a CA, a server certificate, an admin client bundle, a token
//! signing key, a complete `moat.yaml`, an editable copy of the shipped
//! policy pack and an audit directory, all under one directory:
//!
//! ```text
//! DIR/moat.yaml                  the config; `moat serve --config DIR/moat.yaml` runs it as is
//! DIR/moat.lock                  held while a moat runs on DIR (a second one refuses)
//! DIR/pki/                       CA, server certificate, CRL, index (`moat certs … --dir DIR/pki`)
//! DIR/clients/admin/             the admin's docker CLI bundle (ca.pem, cert.pem, key.pem)
//! DIR/tokens/signing-key.pem     ES256 key for `moat token issue --key`
//! DIR/tokens/signing-key.pub.pem its public half (auth.tokens.keys)
//! DIR/tokens/revoked-jti.txt     revoked token ids, one a line
//! DIR/policies/                  the shipped pack, the admin's to edit
//! DIR/audit/                     the audit log
//! DIR/engine/                    0700: the bundled engine's socket, exec root, pid file
//! DIR/engine-data/               the bundled engine's data root
//! ```
//!
//! Nothing that exists is ever regenerated: keys, certificates, the config
//! and the policies are the admin's once written. Command-line flags
//! (`--listen`, `--metrics`, `--engine-socket`) apply to the run in memory
//! and never rewrite `moat.yaml`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, ConfigError, Listen, Metrics};
use crate::engine::{self, DirLock, EngineError};
use crate::pki::{self, PkiError, PkiPaths};

/// The shipped policy pack (the repository's `policies/`, without the Rego
/// tests), copied into `DIR/policies` on the first run.
pub const SHIPPED_POLICIES: &[(&str, &str)] = &[
    ("authz.rego", include_str!("../policies/authz.rego")),
    ("sandbox.rego", include_str!("../policies/sandbox.rego")),
    ("ownership.rego", include_str!("../policies/ownership.rego")),
    ("data.json", include_str!("../policies/data.json")),
];

/// The token issuer and audience `moat up` configures.
pub const TOKEN_ISSUER: &str = "moat";
pub const TOKEN_AUDIENCE: &str = "moat";

/// How long an `--engine-socket` engine has to answer `/_ping`.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Why `moat up` could not prepare its directory. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("--engine-socket {socket}: no engine answers there ({source}); start it, or leave --engine-socket out to run the bundled engine")]
    EngineSocket {
        socket: PathBuf,
        source: EngineError,
    },
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
}

fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> UpError {
    let path = path.to_path_buf();
    move |source| UpError::Io { path, what, source }
}

/// What `moat up` was asked for.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// The state directory.
    pub dir: PathBuf,
    /// Overrides `listen.tcp` for this run (and is written into a new
    /// `moat.yaml`); `None` keeps the file's value, 127.0.0.1:2376 at first.
    pub listen: Option<SocketAddr>,
    /// Overrides `metrics.listen` the same way; 127.0.0.1:9323 at first.
    pub metrics: Option<SocketAddr>,
    /// Serve an engine that already runs on this socket instead of the
    /// bundled one (for this run only; `moat.yaml` keeps `engine.bundled`).
    pub engine_socket: Option<PathBuf>,
    /// Also serve a local unix socket here (`listen.unix`), this run only.
    pub unix: Option<PathBuf>,
}

/// The files of a `moat up` directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub pki: PkiPaths,
    pub admin_bundle: PathBuf,
    pub token_key: PathBuf,
    pub token_public_key: PathBuf,
    pub revoked_tokens: PathBuf,
    pub policies: PathBuf,
    pub audit: PathBuf,
    pub engine_dir: PathBuf,
    pub engine_socket: PathBuf,
    pub engine_data: PathBuf,
}

impl Layout {
    /// The layout under `dir` (made absolute against the working directory).
    pub fn new(dir: &Path) -> Self {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let engine_dir = dir.join("engine");
        Self {
            config: dir.join("moat.yaml"),
            pki: PkiPaths::new(&dir.join("pki")),
            admin_bundle: dir.join("clients").join("admin"),
            token_key: dir.join("tokens").join("signing-key.pem"),
            token_public_key: dir.join("tokens").join("signing-key.pub.pem"),
            revoked_tokens: dir.join("tokens").join("revoked-jti.txt"),
            policies: dir.join("policies"),
            audit: dir.join("audit"),
            engine_socket: engine_dir.join("docker.sock"),
            engine_dir,
            engine_data: dir.join("engine-data"),
            dir,
        }
    }
}

/// A prepared directory: the config to serve, and the lock that keeps a
/// second moat off the directory for as long as this value lives.
#[derive(Debug)]
pub struct Prepared {
    pub layout: Layout,
    pub config: Config,
    /// What this run created (empty when everything was reused).
    pub created: Vec<String>,
    /// True when the engine is one moat starts (not `--engine-socket`).
    pub bundled: bool,
    _lock: DirLock,
}

/// Checks the engine can be had, takes the directory lock, creates whatever
/// is missing under `opts.dir`, and returns the config to serve with the
/// command-line overrides applied.
pub async fn prepare(opts: &UpOptions) -> Result<Prepared, UpError> {
    let layout = Layout::new(&opts.dir);

    // Fail before touching anything when there is no engine to serve.
    let planned = match layout.config.exists() {
        true => Config::load(&layout.config)?,
        false => Config::parse(&render_config(opts.listen, opts.metrics), &layout.config)?,
    };
    match &opts.engine_socket {
        Some(socket) => {
            engine::ping(socket, PING_TIMEOUT)
                .await
                .map_err(|source| UpError::EngineSocket {
                    socket: socket.clone(),
                    source,
                })?
        }
        None => {
            if let Some(b) = &planned.engine.bundled {
                engine::find_dockerd(b)?;
            }
        }
    }

    make_private_dir(&layout.dir)?;
    let lock = engine::lock_dir(&layout.dir)?;
    let created = ensure_state(&layout, opts.listen, opts.metrics)?;
    let mut config = Config::load(&layout.config)?;
    apply_overrides(&mut config, opts);
    let bundled = config.engine.bundled.is_some();
    Ok(Prepared {
        layout,
        config,
        created,
        bundled,
        _lock: lock,
    })
}

/// The flags win over the file, for this run only.
fn apply_overrides(config: &mut Config, opts: &UpOptions) {
    if let Some(l) = opts.listen {
        config.listen.tcp = l;
    }
    if let Some(m) = opts.metrics {
        config.metrics.listen = Some(m);
    }
    if let Some(s) = &opts.engine_socket {
        config.engine.socket = std::path::absolute(s).unwrap_or_else(|_| s.clone());
        config.engine.bundled = None;
    }
    if let Some(u) = &opts.unix {
        config.listen.unix = Some(std::path::absolute(u).unwrap_or_else(|_| u.clone()));
    }
}

/// Creates each missing piece of the directory and says what it created.
/// Existing files are left exactly as they are.
pub fn ensure_state(
    layout: &Layout,
    listen: Option<SocketAddr>,
    metrics: Option<SocketAddr>,
) -> Result<Vec<String>, UpError> {
    let mut created = Vec::new();
    make_private_dir(&layout.dir)?;

    let pki = &layout.pki;
    let new_ca = !pki.ca_cert.exists() && !pki.ca_key.exists();
    if new_ca {
        let listen_addr = listen.unwrap_or_else(|| Listen::default().tcp);
        pki::init(&pki::InitOptions {
            sans: listen_sans(listen_addr),
            ..pki::InitOptions::new(&pki.dir)
        })?;
        created.push(format!(
            "CA and server certificate in {}",
            pki.dir.display()
        ));
    }
    if new_ca || !layout.admin_bundle.join("cert.pem").exists() {
        let bundle = pki::issue(&pki::IssueOptions {
            groups: vec!["admin".into()],
            ..pki::IssueOptions::new(&pki.dir, "admin")
        })?;
        bundle.write_to(&layout.admin_bundle)?;
        created.push(format!(
            "admin client bundle (group admin) in {}",
            layout.admin_bundle.display()
        ));
    }

    if !layout.token_key.exists() || !layout.token_public_key.exists() {
        if let Some(tokens) = layout.token_key.parent() {
            make_private_dir(tokens)?;
        }
        pki::write_token_key(&layout.token_key, &layout.token_public_key)?;
        created.push(format!("ES256 token key {}", layout.token_key.display()));
    }
    if !layout.revoked_tokens.exists() {
        std::fs::write(
            &layout.revoked_tokens,
            "# Revoked token ids (the `jti` that `moat token issue` prints), one a line.\n\
             # moat reloads this file when it changes.\n",
        )
        .map_err(io(
            &layout.revoked_tokens,
            "cannot write the token revocation list",
        ))?;
    }

    if !layout.policies.exists() {
        copy_policies(&layout.policies)?;
        created.push(format!(
            "the shipped policy pack in {}",
            layout.policies.display()
        ));
    }
    if !layout.audit.exists() {
        make_private_dir(&layout.audit)?;
        created.push(format!("audit directory {}", layout.audit.display()));
    }

    if !layout.config.exists() {
        pki::write_atomic(
            &layout.config,
            render_config(listen, metrics).as_bytes(),
            0o600,
        )?;
        created.push(format!("config {}", layout.config.display()));
    }
    Ok(created)
}

/// Writes the shipped pack into `dir` through a temporary directory, so an
/// interrupted copy never leaves half a pack behind.
fn copy_policies(dir: &Path) -> Result<(), UpError> {
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp, "cannot create the policy directory"))?;
    for (name, text) in SHIPPED_POLICIES {
        let path = tmp.join(name);
        std::fs::write(&path, text).map_err(io(&path, "cannot write the policy pack"))?;
    }
    std::fs::rename(&tmp, dir).map_err(io(dir, "cannot create the policy directory"))
}

/// Creates `dir` (and parents) with mode 0700 when it does not exist yet;
/// an existing directory keeps its mode.
fn make_private_dir(dir: &Path) -> Result<(), UpError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir, "cannot create the directory"))
}

/// The server certificate's extra SANs for a listen address: its IP unless
/// it is a wildcard (localhost, 127.0.0.1, ::1 and the hostname are always
/// in it).
pub fn listen_sans(listen: SocketAddr) -> Vec<String> {
    if listen.ip().is_unspecified() {
        Vec::new()
    } else {
        vec![listen.ip().to_string()]
    }
}

/// The `tcp://HOST:PORT` a local docker CLI uses to reach `bound`: the
/// listen host, or the loopback address when moat listens on a wildcard.
pub fn docker_host(bound: SocketAddr) -> String {
    let host = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_string(),
        IpAddr::V6(ip) if ip.is_unspecified() => "localhost".to_string(),
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    format!("tcp://{host}:{}", bound.port())
}

/// What `moat up` prints once the gateway listens: the exports, a docker
/// context, and how to give more people access. `moat` is the command to
/// print for moat itself.
pub fn instructions(
    prepared: &Prepared,
    tls: SocketAddr,
    metrics: Option<SocketAddr>,
    moat: &str,
) -> String {
    let l = &prepared.layout;
    let host = docker_host(tls);
    let mut out = String::new();
    let engine = if prepared.bundled {
        format!(
            "bundled dockerd on {}",
            prepared.config.engine.socket.display()
        )
    } else {
        format!("the engine on {}", prepared.config.engine.socket.display())
    };
    out.push_str(&format!(
        "# moat is serving mutual TLS on {tls} (engine: {engine}).\n"
    ));
    if let Some(m) = metrics {
        out.push_str(&format!("# /metrics, /healthz and /readyz: http://{m}\n"));
    }
    if prepared.created.is_empty() {
        out.push_str(&format!("# Reused everything in {}.\n", l.dir.display()));
    } else {
        out.push_str(&format!("# Created in {}:\n", l.dir.display()));
        for c in &prepared.created {
            out.push_str(&format!("#   {c}\n"));
        }
    }
    if tls.ip().is_unspecified() {
        out.push_str(
            "# From another machine, use a name or address that is in the server certificate\n\
             # (localhost, 127.0.0.1, ::1 and this host's name) and copy the bundle there.\n",
        );
    }
    out.push_str("\n# Use the docker CLI through moat as admin:\n");
    out.push_str(&format!(
        "export DOCKER_HOST={host} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={}\n",
        l.admin_bundle.display()
    ));
    let d = l.admin_bundle.display();
    if let Some(u) = &prepared.config.listen.unix {
        out.push_str(&format!(
            "\n# Or, on this host, through the local socket (no certificate: the kernel says who\n\
             # you are; map users and groups under auth.local in {}):\n\
             export DOCKER_HOST=unix://{}\n",
            l.config.display(),
            u.display()
        ));
    }
    out.push_str(&format!(
        "\n# or as a docker context:\n\
         docker context create moat --docker \"host={host},ca={d}/ca.pem,cert={d}/cert.pem,key={d}/key.pem\"\n\
         docker context use moat\n"
    ));
    out.push_str(&format!(
        "\n# Give someone else a bundle (groups: admin, developer, viewer; see {}/data.json):\n\
         {moat} certs issue --dir {} --user NAME --group developer --out {}/NAME\n",
        l.policies.display(),
        l.pki.dir.display(),
        l.dir.join("clients").display(),
    ));
    out.push_str(&format!(
        "\n# Or a bearer token for CI (send it with HttpHeaders in $DOCKER_CONFIG/config.json;\n\
         # the client then needs only ca.pem):\n\
         {moat} token issue --key {} --issuer {TOKEN_ISSUER} --audience {TOKEN_AUDIENCE} --subject NAME --group ci --scope containers:run --ttl 1h\n",
        l.token_key.display(),
    ));
    out.push_str(&format!(
        "\n# Config: {} (moat serve --config {} runs it as is)\n",
        l.config.display(),
        l.config.display()
    ));
    out
}

/// Quotes an address for YAML (`[::1]:2376` would otherwise be a list).
fn yaml_addr(a: SocketAddr) -> String {
    format!("\"{a}\"")
}

/// The `moat.yaml` a first run writes: every key, commented, with paths
/// relative to DIR so that the directory can be moved as a whole.
pub fn render_config(listen: Option<SocketAddr>, metrics: Option<SocketAddr>) -> String {
    let listen = yaml_addr(listen.unwrap_or_else(|| Listen::default().tcp));
    let metrics = match metrics.or(Metrics::default().listen) {
        Some(m) => yaml_addr(m),
        None => "null".into(),
    };
    format!(
        r#"# moat configuration, written by `moat up` on its first run in this directory.
#
# It is yours to edit: later `moat up` runs reuse it and never rewrite it, and
#   moat serve --config THIS_FILE
# runs it as is. Check an edited file with: moat config check THIS_FILE
# config.example.yaml in moat's repository documents every key.
#
# `moat up` flags apply to that run only and do not change this file:
#   --listen ADDR / --metrics ADDR replace listen.tcp / metrics.listen;
#   --engine-socket PATH serves the engine on PATH instead of engine.bundled.
#
# Relative paths are resolved against this file's directory. Unknown keys
# are an error. Durations are written like 500ms, 10s, 2m, 1h.

listen:
  # The mutual-TLS listener. Port 0 picks a free port.
  tcp: {listen}

tls:
  # Made by `moat up` (the same layout as `moat certs init --dir pki`).
  # Issue and revoke client bundles with `moat certs issue|revoke --dir pki`.
  cert: pki/server-cert.pem
  key: pki/server-key.pem
  client_ca: pki/ca.pem
  # Revoked certificates; reloaded when `moat certs revoke` re-signs it.
  crl: pki/crl.pem
  # optional: a client may authenticate with a bearer token instead of a
  # certificate (auth.tokens); a certificate that is presented must verify.
  # Set to `required` to accept certificates only.
  client_cert: optional

engine:
  # The engine's unix socket, inside engine/ (mode 0700, moat's user only).
  socket: engine/docker.sock
  # moat starts and supervises its own dockerd, listening only on `socket`;
  # its exec root and pid file live beside the socket. Remove this section
  # and point `socket` at an existing engine to use that one instead.
  bundled:
    dockerd: dockerd            # the binary; a bare name is looked up on PATH and in /usr/sbin
    root: engine-data           # --data-root: images, containers, volumes
    extra_args: []              # more dockerd flags; -H/--host is refused

limits:
  handshake_timeout: 10s        # to finish the TLS handshake
  header_read_timeout: 30s      # to send a complete request head (and a new connection its first one)
  idle_timeout: 120s            # keep-alive connection with nothing in flight
  max_header_bytes: 65536       # request line plus headers (at least 8192)
  max_headers: 100              # header fields per request
  max_connections: 1024         # open client connections; more wait in the backlog
  max_inspect_body_bytes: 4194304  # JSON bodies read whole for the policy; larger -> 413
  policy_eval_timeout: 1s       # a slower evaluation is a deny
  shutdown_grace: 10s           # in-flight requests get this long on SIGTERM/SIGINT

auth:
  certificate:
    # Where the user name comes from: cn | san_email | san_uri
    user: cn
    # Where the groups come from: o | ou (every value of the attribute)
    groups: o
  # Bearer tokens (JWT) for CI, signed with tokens/signing-key.pem:
  #   moat token issue --key tokens/signing-key.pem --issuer {TOKEN_ISSUER} --audience {TOKEN_AUDIENCE} \
  #     --subject NAME --group ci --scope containers:run --ttl 1h
  tokens:
    issuer: {TOKEN_ISSUER}
    audience: {TOKEN_AUDIENCE}
    keys:
      - file: tokens/signing-key.pub.pem
        algorithm: ES256
    leeway: 30s
    max_ttl: 24h                # exp - iat above this is refused; exp is required
    claims:
      user: sub
      groups: groups
      scopes: scope             # a space-separated string or a list
    revoked: tokens/revoked-jti.txt   # one jti a line; reloaded when it changes

policy:
  # The shipped pack, copied here on the first run: *.rego plus data.json
  # (which maps groups to roles). Reloaded when it changes.
  dir: policies

audit:
  file: audit/audit.log
  stdout: false
  level: metadata               # metadata | request (adds the redacted body)
  sync: always                  # always (fsync each decision record before forwarding) | batch
  batch_interval: 50ms          # the longest a written record waits for its fsync (completion records; every record with batch)
  max_bytes: 104857600          # rotate at this size
  keep: 10                      # rotated files kept
  on_failure: deny              # deny (503) | allow
  queue: 4096                   # records waiting to be written

metrics:
  # Plain HTTP: /metrics, /healthz, /readyz. null turns it off.
  listen: {metrics}

log:
  format: text                  # text | json
  level: info                   # a tracing filter; RUST_LOG overrides
"#
    )
}

#[cfg(test)]
mod tests;
