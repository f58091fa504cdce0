//! The bundled container engine: moat starts its own `dockerd`, listening
//! only on a unix socket in a directory no one else can enter, and keeps it
//! running.
//!
//! This is the "bundled engine on a private socket" of the design: the engine
//! API is never on a TCP port, so the only way in is through moat. The module
//! owns the engine's whole life:
//!
//! - [`find_dockerd`] says up front, in one line, when no engine is installed;
//! - [`lock_dir`] keeps a second moat off the same state directory;
//! - [`start`] makes the private socket directory, starts dockerd in its own
//!   process group, relays its log into tracing (target `engine`) and waits
//!   for `GET /_ping`;
//! - the supervisor restarts a crashed engine with backoff, publishing the
//!   state in [`EngineStatus`] so the request path answers 503 meanwhile;
//! - [`BundledEngine::stop`] (or cancelling the shutdown token) stops it with
//!   SIGTERM, then SIGKILL, and leaves no dockerd, containerd or shim behind.
//!
//! The parts live in `engine/`: `lock` (the directory lock), `logs` (the log
//! relay), `ping` (the readiness probe), `process` (spawning, stopping and
//! reaping stragglers) and `supervise` (the restart loop).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config;

mod lock;
mod logs;
mod ping;
mod process;
mod supervise;

pub use lock::{lock_dir, DirLock};
pub use ping::ping;

/// How long dockerd has to answer `/_ping` after it was started.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dockerd has to exit after SIGTERM before its group is killed.
/// dockerd itself gives containers 15 s to stop on shutdown.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest unix socket path Linux accepts (`sun_path` minus the NUL).
const MAX_SOCKET_PATH: usize = 107;
/// The longest socket containerd makes under the exec root.
const CONTAINERD_SOCKET_SUFFIX: &str = "/containerd/containerd.sock.ttrpc";

/// Why the bundled engine could not be found, started or stopped. Messages
/// are for the admin running moat and say what to change.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("dockerd not found{at}: install Debian's docker.io package (apt-get install docker.io) or pass --engine-socket PATH")]
    NotFound {
        /// Empty when looked up on PATH; " at /x/dockerd (engine.bundled.dockerd)" otherwise.
        at: String,
    },
    #[error("another moat is running on {dir} (lock held on {lock})")]
    Locked { dir: PathBuf, lock: PathBuf },
    #[error("{path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{dir}: the engine socket directory belongs to uid {owner}, not to moat's user (uid {me}); remove it or pick another engine.socket")]
    SocketDirOwner { dir: PathBuf, owner: u32, me: u32 },
    #[error("{path}: path too long for a unix socket ({len} bytes, at most {max}); use a shorter DIR or engine.socket")]
    PathTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },
    #[error("cannot start {dockerd}: {source}")]
    Spawn {
        dockerd: PathBuf,
        source: std::io::Error,
    },
    #[error("dockerd exited before it was ready ({status}); its last log lines:\n{log}")]
    Exited { status: String, log: String },
    #[error(
        "dockerd did not answer /_ping on {socket} within {timeout:?}; its last log lines:\n{log}"
    )]
    NotReady {
        socket: PathBuf,
        timeout: Duration,
        log: String,
    },
    #[error("no engine answers on {socket}: {reason}")]
    Unreachable { socket: PathBuf, reason: String },
    #[error("moat is shutting down; the engine was not started")]
    Cancelled,
}

/// The engine's state as the request path and `/readyz` see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum EngineState {
    /// Started, not yet answering `/_ping`.
    Starting = 0,
    /// Answering `/_ping`.
    Running = 1,
    /// Died unexpectedly; being restarted.
    Restarting = 2,
    /// Stopped for good (moat is shutting down).
    Stopped = 3,
}

impl EngineState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Starting,
            1 => Self::Running,
            2 => Self::Restarting,
            _ => Self::Stopped,
        }
    }

    /// Lower-case name, for logs and `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Stopped => "stopped",
        }
    }
}

/// Shared, lock-free engine state: one atomic load on the hot path.
#[derive(Debug)]
pub struct EngineStatus {
    state: AtomicU8,
    pid: AtomicU32,
}

impl Default for EngineStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl EngineStatus {
    /// A status in state `Starting`.
    pub fn new() -> Self {
        Self {
            state: AtomicU8::new(EngineState::Starting as u8),
            pid: AtomicU32::new(0),
        }
    }

    /// A status that is always `Running`: for an engine moat does not
    /// supervise (`--engine-socket`, or `engine.bundled` absent).
    pub fn external() -> Self {
        let s = Self::new();
        s.set(EngineState::Running);
        s
    }

    pub fn state(&self) -> EngineState {
        EngineState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Only the supervisor changes the state; public so that tests and an
    /// external supervisor can drive it.
    pub fn set(&self, state: EngineState) {
        self.state.store(state as u8, Ordering::Release);
    }

    pub fn is_running(&self) -> bool {
        self.state() == EngineState::Running
    }

    /// True whenever the engine is not `Running` (starting, restarting or
    /// stopped): the request path answers 503 `engine restarting`.
    pub fn is_restarting(&self) -> bool {
        !self.is_running()
    }

    /// For `/readyz`: `Ok` when running, else the state as the reason.
    pub fn readiness(&self) -> Result<(), String> {
        match self.state() {
            EngineState::Running => Ok(()),
            s => Err(format!("engine {}", s.as_str())),
        }
    }

    /// The pid of the current dockerd, if one is running.
    pub fn pid(&self) -> Option<u32> {
        match self.pid.load(Ordering::Acquire) {
            0 => None,
            p => Some(p),
        }
    }

    fn set_pid(&self, pid: Option<u32>) {
        self.pid.store(pid.unwrap_or(0), Ordering::Release);
    }
}

/// A running, supervised dockerd. Stop it with [`BundledEngine::stop`]; if it
/// is dropped instead, cancelling the shutdown token given to [`start`] still
/// stops it.
#[derive(Debug)]
pub struct BundledEngine {
    socket: PathBuf,
    status: Arc<EngineStatus>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    _lock: DirLock,
}

impl BundledEngine {
    /// The engine's unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn status(&self) -> &Arc<EngineStatus> {
        &self.status
    }

    /// Stops dockerd (SIGTERM, up to [`STOP_TIMEOUT`], then SIGKILL of its
    /// process group) and kills any containerd or shim left behind. Returns
    /// once nothing of the engine runs any more.
    pub async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(target: "engine", "engine supervisor failed: {e}");
        }
    }

    /// Waits until the supervisor has stopped the engine because the
    /// shutdown token was cancelled.
    pub async fn stopped(self) {
        if let Err(e) = self.task.await {
            tracing::error!(target: "engine", "engine supervisor failed: {e}");
        }
    }
}

/// Where dockerd keeps its runtime state, all beside the socket so that the
/// private directory holds everything.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub socket: PathBuf,
    pub dir: PathBuf,
    pub exec_root: PathBuf,
    pub pidfile: PathBuf,
    pub data_root: PathBuf,
}

impl Layout {
    fn new(socket: &Path, data_root: &Path) -> Result<Self, EngineError> {
        let dir = socket
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let exec_root = dir.join("exec");
        let layout = Self {
            socket: socket.to_path_buf(),
            pidfile: dir.join("dockerd.pid"),
            exec_root,
            dir,
            data_root: data_root.to_path_buf(),
        };
        check_socket_len(&layout.socket, layout.socket.as_os_str().len())?;
        let longest = layout.exec_root.as_os_str().len() + CONTAINERD_SOCKET_SUFFIX.len();
        check_socket_len(&layout.exec_root, longest)?;
        Ok(layout)
    }
}

fn check_socket_len(path: &Path, len: usize) -> Result<(), EngineError> {
    if len > MAX_SOCKET_PATH {
        return Err(EngineError::PathTooLong {
            path: path.to_path_buf(),
            len,
            max: MAX_SOCKET_PATH,
        });
    }
    Ok(())
}

/// Finds the dockerd binary: `engine.bundled.dockerd` when it is a path,
/// else that name on PATH and in the sbin directories (Debian installs
/// dockerd in /usr/sbin, which a non-root PATH often lacks).
pub fn find_dockerd(cfg: &config::Bundled) -> Result<PathBuf, EngineError> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    find_in(&cfg.dockerd, &path_var)
}

fn find_in(dockerd: &Path, path_var: &std::ffi::OsStr) -> Result<PathBuf, EngineError> {
    if dockerd.components().count() > 1 {
        return if is_executable(dockerd) {
            Ok(dockerd.to_path_buf())
        } else {
            Err(EngineError::NotFound {
                at: format!(" at {} (engine.bundled.dockerd)", dockerd.display()),
            })
        };
    }
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    std::env::split_paths(path_var)
        .chain(sbin)
        .map(|d| d.join(dockerd))
        .find(|p| is_executable(p))
        .ok_or(EngineError::NotFound { at: String::new() })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Starts the bundled dockerd on `socket` and returns once it answers
/// `/_ping`; from then on a supervisor task restarts it if it dies, until
/// `shutdown` is cancelled or [`BundledEngine::stop`] is called.
///
/// `socket`'s directory is created with mode 0700 and must belong to moat's
/// user; dockerd's exec root (`DIR/exec`), pid file (`DIR/dockerd.pid`) and
/// its own `DIR/daemon.json` (created as [`process::HARDENED_DAEMON_JSON`];
/// the host's /etc/docker/daemon.json is not read) live in it, and `DIR/moat.lock` is
/// held for as long as the engine runs. A dockerd left running there by a
/// moat that was killed is stopped first.
pub async fn start(
    cfg: &config::Bundled,
    socket: &Path,
    status: Arc<EngineStatus>,
    shutdown: CancellationToken,
) -> Result<BundledEngine, EngineError> {
    let dockerd = find_dockerd(cfg)?;
    let layout = Layout::new(socket, &cfg.root)?;
    make_private_dir(&layout.dir)?;
    std::fs::create_dir_all(&layout.data_root).map_err(|source| EngineError::Io {
        path: layout.data_root.clone(),
        what: "cannot create the engine data root",
        source,
    })?;
    // Guards the exec root: only the holder may reap what runs in it.
    let lock = lock_dir(&layout.dir)?;
    process::reap_orphans(&layout).await;

    let spec = process::Spec::new(dockerd, &layout, &cfg.extra_args);
    status.set(EngineState::Starting);
    let stop = shutdown.child_token();
    let running = match process::start_ready(&spec, &status, &stop).await {
        Ok(r) => r,
        Err(e) => {
            status.set(EngineState::Stopped);
            return Err(e);
        }
    };
    status.set(EngineState::Running);
    tracing::info!(target: "engine", socket = %layout.socket.display(), pid = running.pid(), "bundled engine ready");
    let task = tokio::spawn(supervise::run(spec, running, status.clone(), stop.clone()));
    Ok(BundledEngine {
        socket: layout.socket,
        status,
        stop,
        task,
        _lock: lock,
    })
}

/// Creates `dir` with mode 0700, refusing one that belongs to someone else.
fn make_private_dir(dir: &Path) -> Result<(), EngineError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let io = |what, source| EngineError::Io {
        path: dir.to_path_buf(),
        what,
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io("cannot create the engine socket directory", e))?;
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| io("cannot inspect the engine socket directory", e))?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(EngineError::SocketDirOwner {
            dir: dir.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    if !meta.is_dir() {
        return Err(io(
            "the engine socket directory is not a directory",
            std::io::Error::from(std::io::ErrorKind::NotADirectory),
        ));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io("cannot make the engine socket directory private (0700)", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn status_transitions() {
        let s = EngineStatus::new();
        assert!(s.is_restarting());
        assert_eq!(s.readiness(), Err("engine starting".into()));
        s.set(EngineState::Running);
        assert!(!s.is_restarting());
        assert_eq!(s.readiness(), Ok(()));
        for (state, reason) in [
            (EngineState::Restarting, "engine restarting"),
            (EngineState::Stopped, "engine stopped"),
            (EngineState::Starting, "engine starting"),
        ] {
            s.set(state);
            assert_eq!(s.state(), state);
            assert!(s.is_restarting());
            assert_eq!(s.readiness(), Err(reason.into()));
        }
        assert!(EngineStatus::external().is_running());
    }

    #[test]
    fn missing_dockerd_names_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_in(Path::new("no-such-dockerd-xyz"), dir.path().as_os_str())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "dockerd not found: install Debian's docker.io package (apt-get install docker.io) or pass --engine-socket PATH"
        );
        let explicit = dir.path().join("dockerd");
        let err = find_in(&explicit, dir.path().as_os_str())
            .unwrap_err()
            .to_string();
        assert!(err.contains("engine.bundled.dockerd"), "{err}");
        assert!(err.contains("apt-get install docker.io"), "{err}");
    }

    #[test]
    fn dockerd_is_found_on_path_only_when_executable() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("fake-dockerd-xyz");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(find_in(Path::new("fake-dockerd-xyz"), dir.path().as_os_str()).is_err());
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            find_in(Path::new("fake-dockerd-xyz"), dir.path().as_os_str()).unwrap(),
            bin
        );
        assert_eq!(find_in(&bin, std::ffi::OsStr::new("")).unwrap(), bin);
    }

    #[test]
    fn socket_paths_must_fit_sun_path() {
        let long = PathBuf::from(format!("/tmp/{}/docker.sock", "x".repeat(80)));
        let err = Layout::new(&long, Path::new("/tmp/data"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("too long for a unix socket"), "{err}");
        let l = Layout::new(
            Path::new("/var/lib/moat/engine/docker.sock"),
            Path::new("/d"),
        )
        .unwrap();
        assert_eq!(l.exec_root, Path::new("/var/lib/moat/engine/exec"));
        assert_eq!(l.pidfile, Path::new("/var/lib/moat/engine/dockerd.pid"));
    }

    #[test]
    fn private_dir_is_0700() {
        let dir = tempfile::tempdir().unwrap();
        let sock_dir = dir.path().join("a/engine");
        make_private_dir(&sock_dir).unwrap();
        let mode = std::fs::metadata(&sock_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // An existing, too-open directory is tightened.
        std::fs::set_permissions(&sock_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        make_private_dir(&sock_dir).unwrap();
        let mode = std::fs::metadata(&sock_dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
