//! One dockerd process: how it is started, how moat knows it is ready, and
//! how it is stopped so that nothing of it survives.
//!
//! dockerd runs in its own process group, so SIGKILL can take the whole group.
//! containerd (which dockerd starts in a session of its own) and the
//! containerd shims (which outlive containerd by design) are not in that
//! group; all of them name our exec root on their command line, so after
//! every stop a `/proc` scan finds any that remain and kills them together
//! with their descendants (the containers' processes).

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::logs::{relay, LogTail};
use super::{ping, EngineError, EngineStatus, Layout, READY_TIMEOUT, STOP_TIMEOUT};

/// How long a single `/_ping` may take while waiting for readiness.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between readiness probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// How long killed stragglers get to disappear from `/proc`.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the log relays get to deliver dockerd's last lines.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything needed to (re)start dockerd the same way every time.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub dockerd: PathBuf,
    pub layout: Layout,
    pub args: Vec<OsString>,
    /// `--live-restore` keeps containers across engine restarts, so their
    /// shims must survive a crash of dockerd.
    pub live_restore: bool,
}

impl Spec {
    pub(crate) fn new(dockerd: PathBuf, layout: &Layout, extra_args: &[String]) -> Self {
        let mut args: Vec<OsString> = vec![
            "--host".into(),
            format!("unix://{}", layout.socket.display()).into(),
            "--data-root".into(),
            layout.data_root.clone().into(),
            "--exec-root".into(),
            layout.exec_root.clone().into(),
            "--pidfile".into(),
            layout.pidfile.clone().into(),
        ];
        if !extra_args.iter().any(|a| a.starts_with("--config-file")) {
            // The host's /etc/docker/daemon.json belongs to the host's engine.
            args.push("--config-file".into());
            args.push(layout.config_file().into());
        }
        args.extend(extra_args.iter().map(OsString::from));
        let live_restore = extra_args
            .iter()
            .any(|a| a == "--live-restore" || a == "--live-restore=true");
        Self {
            dockerd,
            layout: layout.clone(),
            args,
            live_restore,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.dockerd);
        cmd.args(&self.args)
            .env("PATH", self.search_path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // Last resort only: stop() is the clean way.
            .kill_on_drop(true);
        cmd
    }

    /// PATH for dockerd: it looks up containerd, runc and docker-init there,
    /// which Debian spreads over /usr/bin and /usr/sbin.
    fn search_path(&self) -> OsString {
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        let extra = self
            .dockerd
            .parent()
            .map(Path::to_path_buf)
            .into_iter()
            .chain(
                [
                    "/usr/local/sbin",
                    "/usr/local/bin",
                    "/usr/sbin",
                    "/usr/bin",
                    "/sbin",
                    "/bin",
                ]
                .map(PathBuf::from),
            );
        for d in extra {
            if !d.as_os_str().is_empty() && !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        std::env::join_paths(dirs).unwrap_or_default()
    }
}

impl Layout {
    /// dockerd's own daemon.json, in the private directory.
    pub(crate) fn config_file(&self) -> PathBuf {
        self.dir.join("daemon.json")
    }
}

/// A started dockerd.
#[derive(Debug)]
pub(crate) struct Running {
    pub child: Child,
    pub tail: LogTail,
    pub started: Instant,
    relays: Vec<JoinHandle<()>>,
}

impl Running {
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits (briefly) for the relays to deliver dockerd's last lines.
    pub(crate) async fn drain_logs(&mut self) {
        for r in self.relays.drain(..) {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, r).await;
        }
    }
}

/// Removes pid files whose process is gone. dockerd takes a zombie for a
/// live containerd (it only sends signal 0) and then waits 15 s for it to
/// answer, so a pid file naming a dead or zombie process must go first.
fn clear_stale_pidfiles(layout: &Layout) {
    for file in [
        layout.exec_root.join("containerd/containerd.pid"),
        layout.pidfile.clone(),
    ] {
        let pid = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if pid.is_some_and(|p| !alive(p)) {
            let _ = std::fs::remove_file(&file);
        }
    }
}

/// The bundled engine's daemon.json when moat creates it (an existing one,
/// edited by an admin, is kept). BuildKit's `network.host` and
/// `security.insecure` entitlements travel inside the `/session` and
/// `/grpc` tunnels, where the policy cannot see them (`RUN --network=host`
/// is granted by default): both are off. Containers get a private cgroup and
/// IPC namespace unless they ask otherwise (the request, and so the policy,
/// says so). None of this changes what the docker CLI can do.
pub(super) const HARDENED_DAEMON_JSON: &str = r#"{
  "builder": {
    "entitlements": {
      "network-host": false,
      "security-insecure": false
    }
  },
  "default-cgroupns-mode": "private",
  "default-ipc-mode": "private"
}
"#;

fn spawn(spec: &Spec) -> Result<Running, EngineError> {
    clear_stale_pidfiles(&spec.layout);
    let config = spec.layout.config_file();
    if !config.exists() {
        std::fs::write(&config, HARDENED_DAEMON_JSON).map_err(|source| EngineError::Io {
            path: config.clone(),
            what: "cannot write the engine's daemon.json",
            source,
        })?;
    }
    let mut child = spec
        .command()
        .spawn()
        .map_err(|source| EngineError::Spawn {
            dockerd: spec.dockerd.clone(),
            source,
        })?;
    let tail = LogTail::default();
    let mut relays = Vec::new();
    if let Some(out) = child.stdout.take() {
        relays.push(tokio::spawn(relay(out, tail.clone())));
    }
    if let Some(err) = child.stderr.take() {
        relays.push(tokio::spawn(relay(err, tail.clone())));
    }
    tracing::info!(target: "engine", pid = child.id(), dockerd = %spec.dockerd.display(), "starting the bundled engine");
    Ok(Running {
        child,
        tail,
        started: Instant::now(),
        relays,
    })
}

/// Starts dockerd and waits until it answers `/_ping`. On failure nothing
/// of it is left running. `status` learns the pid as soon as there is one.
pub(crate) async fn start_ready(
    spec: &Spec,
    status: &Arc<EngineStatus>,
    stop_token: &CancellationToken,
) -> Result<Running, EngineError> {
    // dockerd bind-mounts its data root onto itself when the mount is not
    // shared, and leaves this marker so that a clean shutdown unmounts it.
    // A dockerd started after a crash finds the mount already shared and
    // deletes the marker, which would leave the mount behind for good: keep it.
    let marker = spec.layout.exec_root.join("unmount-on-shutdown");
    let had_marker = marker.exists();
    let mut running = spawn(spec)?;
    status.set_pid(running.pid());
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    loop {
        tokio::select! {
            exit = running.child.wait() => {
                running.drain_logs().await;
                reap_stragglers(&spec.layout).await;
                status.set_pid(None);
                return Err(EngineError::Exited {
                    status: exit.map_or_else(|e| e.to_string(), |s| s.to_string()),
                    log: running.tail.render(),
                });
            }
            () = stop_token.cancelled() => {
                stop(running, spec).await;
                status.set_pid(None);
                return Err(EngineError::Cancelled);
            }
            () = tokio::time::sleep_until(deadline) => {
                let log = running.tail.render();
                stop(running, spec).await;
                status.set_pid(None);
                return Err(EngineError::NotReady {
                    socket: spec.layout.socket.clone(),
                    timeout: READY_TIMEOUT,
                    log,
                });
            }
            () = tokio::time::sleep(PROBE_INTERVAL) => {
                if ping(&spec.layout.socket, PING_TIMEOUT).await.is_ok() {
                    if had_marker && !marker.exists() {
                        let _ = std::fs::write(&marker, b"");
                    }
                    return Ok(running);
                }
            }
        }
    }
}

/// Stops dockerd: SIGTERM, up to [`STOP_TIMEOUT`] for it to exit, then
/// SIGKILL to its process group; then kills whatever of the engine remains.
pub(crate) async fn stop(mut running: Running, spec: &Spec) {
    if let Some(pid) = running.pid().and_then(|p| i32::try_from(p).ok()) {
        let pid = Pid::from_raw(pid);
        tracing::info!(target: "engine", pid = pid.as_raw(), "stopping the bundled engine");
        let _ = kill(pid, Signal::SIGTERM);
        if tokio::time::timeout(STOP_TIMEOUT, running.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(target: "engine", "dockerd did not stop within {STOP_TIMEOUT:?}; killing its process group");
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = running.child.wait().await;
        }
        // Anything still in dockerd's group (docker-proxy, …) is a leftover.
        let _ = killpg(pid, Signal::SIGKILL);
    }
    reap_stragglers(&spec.layout).await;
    running.drain_logs().await;
    tracing::info!(target: "engine", "bundled engine stopped");
}

/// After dockerd died on its own: its group and, unless containers are meant
/// to survive (`--live-restore`), its containerd and shims go too.
pub(crate) async fn after_crash(mut running: Running, spec: &Spec) -> LogTail {
    running.drain_logs().await;
    if let Some(pid) = running.pid().and_then(|p| i32::try_from(p).ok()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    if !spec.live_restore {
        reap_stragglers(&spec.layout).await;
    }
    running.tail
}

/// Stops a dockerd that a killed moat left running on this exec root (its
/// pid file names it), then anything else of that engine.
pub(crate) async fn reap_orphans(layout: &Layout) {
    let pid = std::fs::read_to_string(&layout.pidfile)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|&p| p > 0);
    if let Some(pid) = pid {
        let table = proc_table();
        let ours = table
            .iter()
            .any(|p| p.pid == pid && p.args.iter().any(|a| references(a, &layout.exec_root)));
        if ours {
            tracing::warn!(target: "engine", pid, "stopping a dockerd left running on this directory by an earlier moat");
            let pid = Pid::from_raw(pid);
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while alive(pid.as_raw()) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = killpg(pid, Signal::SIGKILL);
        }
    }
    reap_stragglers(layout).await;
}

/// Kills every process whose command line names our exec root (containerd,
/// shims, a dockerd) and all their descendants, and waits until they are gone.
pub(crate) async fn reap_stragglers(layout: &Layout) {
    let table = proc_table();
    let victims = stragglers(&table, &layout.exec_root, std::process::id() as i32);
    if victims.is_empty() {
        return;
    }
    let names: Vec<String> = victims
        .iter()
        .filter_map(|pid| table.iter().find(|p| p.pid == *pid))
        .map(|p| format!("{} ({})", p.pid, p.args.first().map_or("?", String::as_str)))
        .collect();
    tracing::warn!(target: "engine", "killing engine processes left behind: {}", names.join(", "));
    for &pid in &victims {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + REAP_TIMEOUT;
    while victims.iter().any(|&p| alive(p)) {
        if Instant::now() >= deadline {
            tracing::error!(target: "engine", "engine processes still present after SIGKILL: {victims:?}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One `/proc` entry.
#[derive(Debug, Clone)]
pub(crate) struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub args: Vec<String>,
}

/// Every live (non-zombie) process, as far as `/proc` lets us see.
pub(crate) fn proc_table() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (state, ppid) = parse_stat(&stat)?;
            if state == 'Z' || state == 'X' {
                return None;
            }
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let args = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            Some(Proc { pid, ppid, args })
        })
        .collect()
}

/// State and parent pid from `/proc/PID/stat` (`pid (comm) S ppid …`; comm
/// may itself hold spaces and parentheses, so split at the last `)`).
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_stat(&s))
        .is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// Does this argument name `root` itself or something under it?
fn references(arg: &str, root: &Path) -> bool {
    let Some(root) = root.to_str() else {
        return false;
    };
    let root = root.trim_end_matches('/');
    if root.is_empty() {
        return false;
    }
    arg.match_indices(root)
        .any(|(i, _)| matches!(arg[i + root.len()..].chars().next(), None | Some('/')))
}

/// The processes naming `root`, plus all their descendants, never `me`.
fn stragglers(table: &[Proc], root: &Path, me: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for p in table {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut found: HashSet<i32> = HashSet::new();
    let mut todo: Vec<i32> = table
        .iter()
        .filter(|p| p.pid != me && p.args.iter().any(|a| references(a, root)))
        .map(|p| p.pid)
        .collect();
    while let Some(pid) = todo.pop() {
        if pid == me || !found.insert(pid) {
            continue;
        }
        todo.extend(children.get(&pid).into_iter().flatten().copied());
    }
    let mut v: Vec<i32> = found.into_iter().collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_daemon_json_turns_off_what_the_policy_cannot_see() {
        let v: serde_json::Value = serde_json::from_str(HARDENED_DAEMON_JSON).unwrap();
        let e = &v["builder"]["entitlements"];
        assert_eq!(e["network-host"], false);
        assert_eq!(e["security-insecure"], false);
        assert_eq!(v["default-cgroupns-mode"], "private");
    }

    #[test]
    fn stat_lines_parse_even_with_odd_names() {
        let cases = [
            ("123 (dockerd) S 1 123 123 0", Some(('S', 1))),
            ("9 (a) b) (c) Z 42 9 9", Some(('Z', 42))),
            ("garbage", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_stat(line), want, "{line}");
        }
    }

    #[test]
    fn references_match_whole_path_components() {
        let root = Path::new("/tmp/m/engine/exec");
        let cases = [
            ("/tmp/m/engine/exec", true),
            ("/tmp/m/engine/exec/containerd/containerd.toml", true),
            ("unix:///tmp/m/engine/exec/containerd/containerd.sock", true),
            ("--exec-root=/tmp/m/engine/exec", true),
            ("/tmp/m/engine/exec2", false),
            ("/tmp/m/engine", false),
            ("--dir", false),
        ];
        for (arg, want) in cases {
            assert_eq!(references(arg, root), want, "{arg}");
        }
    }

    #[test]
    fn stragglers_include_descendants_but_not_moat() {
        let p = |pid, ppid, args: &[&str]| Proc {
            pid,
            ppid,
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        let table = vec![
            p(1, 0, &["/sbin/init"]),
            p(10, 1, &["moat", "up", "--dir", "/x"]),
            p(
                20,
                1,
                &[
                    "containerd",
                    "--config",
                    "/x/engine/exec/containerd/containerd.toml",
                ],
            ),
            p(
                30,
                1,
                &[
                    "containerd-shim-runc-v2",
                    "-address",
                    "/x/engine/exec/containerd/containerd.sock",
                ],
            ),
            p(31, 30, &["sleep", "1000"]),
            p(32, 31, &["sh"]),
            p(
                40,
                1,
                &[
                    "containerd-shim-runc-v2",
                    "-address",
                    "/run/containerd/containerd.sock",
                ],
            ),
            p(41, 40, &["nginx"]),
            p(50, 10, &["moat", "--exec-root", "/x/engine/exec"]),
        ];
        assert_eq!(
            stragglers(&table, Path::new("/x/engine/exec"), 50),
            vec![20, 30, 31, 32]
        );
    }

    #[test]
    fn spec_keeps_the_engine_on_the_socket_and_its_own_config() {
        let layout = Layout::new(Path::new("/s/engine/docker.sock"), Path::new("/s/data")).unwrap();
        let spec = Spec::new(
            "/usr/sbin/dockerd".into(),
            &layout,
            &["--bridge=none".into()],
        );
        let args: Vec<String> = spec
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--host",
                "unix:///s/engine/docker.sock",
                "--data-root",
                "/s/data",
                "--exec-root",
                "/s/engine/exec",
                "--pidfile",
                "/s/engine/dockerd.pid",
                "--config-file",
                "/s/engine/daemon.json",
                "--bridge=none"
            ]
        );
        assert!(!spec.live_restore);
        let spec = Spec::new(
            "dockerd".into(),
            &layout,
            &["--config-file=/etc/x.json".into(), "--live-restore".into()],
        );
        assert_eq!(
            spec.args
                .iter()
                .filter(|a| a.to_string_lossy().starts_with("--config-file"))
                .count(),
            1
        );
        assert!(spec.live_restore);
    }

    #[test]
    fn stale_pidfiles_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(&dir.path().join("docker.sock"), dir.path()).unwrap();
        std::fs::create_dir_all(layout.exec_root.join("containerd")).unwrap();
        let containerd = layout.exec_root.join("containerd/containerd.pid");
        std::fs::write(&containerd, format!("{}\n", i32::MAX)).unwrap();
        std::fs::write(&layout.pidfile, std::process::id().to_string()).unwrap();
        clear_stale_pidfiles(&layout);
        assert!(!containerd.exists());
        assert!(layout.pidfile.exists());
    }

    #[test]
    fn proc_table_sees_this_process() {
        let me = std::process::id() as i32;
        let table = proc_table();
        let mine = table.iter().find(|p| p.pid == me).unwrap();
        assert!(!mine.args.is_empty());
        assert!(alive(me));
        assert!(!alive(i32::MAX));
    }
}
