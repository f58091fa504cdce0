//! `moat up` (issue 6) as a user runs it: the real binary in a temporary
//! DIR, starting its own dockerd, and the docker CLI driven only by the
//! `export` lines it prints. Also: tokens from the generated key, an engine
//! crash (503, then recovery), a clean stop that leaves no engine process,
//! the directory lock, reuse of the PKI on restart, and the refusals at
//! start (a TCP host in engine.bundled.extra_args, no dockerd installed).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::engine::{build_image, Engine, IMAGE};
use crate::support::{raw, run_with_deadline, Bundle};

// Containers run with `--network none`: several bundled engines start in
// parallel here, and they share the host's docker0 bridge.

const MOAT: &str = env!("CARGO_BIN_EXE_moat");
/// Hang guard for moat coming up (it starts dockerd first).
const START_LIMIT: Duration = Duration::from_secs(120);

/// A temporary DIR, short enough for dockerd's unix sockets.
fn state_dir(name: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(&format!("mu-{name}-"))
        .tempdir_in("/tmp")
        .unwrap()
        .keep()
}

/// A running `moat up`, stopped with SIGTERM (then SIGKILL) when dropped,
/// so a failing assertion never leaves it or its engine behind.
struct Up {
    child: Option<Child>,
    dir: PathBuf,
    /// Everything it printed on stdout up to the export line and a bit after.
    stdout: String,
    exports: HashMap<String, String>,
    tls: SocketAddr,
}

impl Up {
    fn start(dir: &Path) -> Up {
        Up::start_with(dir, &[])
    }

    fn start_with(dir: &Path, extra: &[&str]) -> Up {
        let log = std::fs::File::create(dir.with_extension("log")).unwrap();
        let mut child = Command::new(MOAT)
            .args(["up", "--dir"])
            .arg(dir)
            .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut up = Up {
            child: Some(child),
            dir: dir.to_path_buf(),
            stdout: String::new(),
            exports: HashMap::new(),
            tls: "0.0.0.0:0".parse().unwrap(),
        };
        let start = Instant::now();
        loop {
            let left = START_LIMIT.saturating_sub(start.elapsed());
            match rx.recv_timeout(left.min(Duration::from_millis(500))) {
                Ok(line) => {
                    up.stdout.push_str(&line);
                    up.stdout.push('\n');
                    if let Some(rest) = line.strip_prefix("export ") {
                        for kv in rest.split_whitespace() {
                            let (k, v) = kv.split_once('=').unwrap();
                            up.exports.insert(k.into(), v.into());
                        }
                    }
                    if line.starts_with("docker context use") {
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {
                    if let Some(status) = up.child.as_mut().unwrap().try_wait().unwrap() {
                        panic!("moat up exited early ({status}):\n{}", up.log());
                    }
                }
                Err(_) => panic!("moat up did not print its exports:\n{}", up.log()),
            }
        }
        let host = &up.exports["DOCKER_HOST"];
        up.tls = host.strip_prefix("tcp://").unwrap().parse().unwrap();
        assert_eq!(up.exports["DOCKER_TLS_VERIFY"], "1");
        up
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    fn admin(&self) -> Bundle {
        Bundle {
            dir: PathBuf::from(&self.exports["DOCKER_CERT_PATH"]),
        }
    }

    /// The docker CLI set up exactly by the printed exports.
    fn docker(&self, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
        let mut cmd = Command::new("docker");
        cmd.envs(&self.exports)
            .env("DOCKER_CONFIG", self.dir.with_extension("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .args(args);
        run_with_deadline(cmd, stdin, Duration::from_secs(120))
    }

    fn docker_ok(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let out = self.docker(args, stdin);
        assert!(
            out.status.success(),
            "docker {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Imports the busybox test image straight into the bundled engine.
    fn import_image(&self) {
        let scratch = self.dir.with_extension("image");
        build_image(&Engine {
            dir: scratch,
            socket: self.dir.join("engine/docker.sock"),
        });
    }

    /// SIGTERM, wait (a hang guard), SIGKILL as a last resort.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        let _ = kill(pid, Signal::SIGTERM);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Processes (other than this test binary) whose command line mentions `dir`.
fn processes_referencing(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) || name == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

/// A `moat` subcommand that must finish (hang guard).
fn moat(args: &[&str], path_env: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new(MOAT);
    cmd.args(args);
    if let Some(p) = path_env {
        cmd.env("PATH", p);
    }
    run_with_deadline(cmd, None, Duration::from_secs(120))
}

fn get(addr: SocketAddr, bundle: &Bundle, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n");
    raw::exchange(addr, bundle, req.as_bytes()).unwrap_or_else(|e| format!("io error: {e}"))
}

#[test]
fn up_exports_drive_the_docker_cli_tokens_work_and_a_second_up_refuses() {
    let dir = state_dir("cli");
    let up = Up::start(&dir);
    assert!(up.stdout.contains("Created in"), "{}", up.stdout);
    let cert_path = Path::new(&up.exports["DOCKER_CERT_PATH"]);
    assert!(cert_path.is_absolute());
    assert_eq!(cert_path, dir.join("clients/admin"));
    up.import_image();

    // run --rm
    let out = up.docker_ok(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            IMAGE,
            "echo",
            "hello from moat up",
        ],
        None,
    );
    assert_eq!(out.trim(), "hello from moat up");

    // exec -i
    let id = up.docker_ok(
        &["run", "-d", "--network", "none", IMAGE, "sleep", "300"],
        None,
    );
    let id = id.trim();
    let out = up.docker_ok(&["exec", "-i", id, "cat"], Some(b"through exec -i\n"));
    assert_eq!(out, "through exec -i\n");
    up.docker_ok(&["rm", "-f", id], None);

    // logs -f follows until the container exits.
    let id = up.docker_ok(
        &[
            "run",
            "-d",
            "--network",
            "none",
            IMAGE,
            "sh",
            "-c",
            "for i in 1 2 3; do echo line$i; sleep 0.3; done",
        ],
        None,
    );
    let id = id.trim();
    let out = up.docker_ok(&["logs", "-f", id], None);
    assert_eq!(out, "line1\nline2\nline3\n");
    up.docker_ok(&["rm", "-f", id], None);

    // A token signed with the generated key, sent by the docker CLI through
    // HttpHeaders, with only ca.pem in its cert path.
    let key = dir.join("tokens/signing-key.pem");
    let out = moat(
        &[
            "token",
            "issue",
            "--key",
            key.to_str().unwrap(),
            "--issuer",
            "moat",
            "--audience",
            "moat",
            "--subject",
            "ci-bot",
            "--group",
            "admin",
            "--ttl",
            "10m",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let token_dir = dir.with_extension("token-client");
    std::fs::create_dir_all(&token_dir).unwrap();
    std::fs::copy(cert_path.join("ca.pem"), token_dir.join("ca.pem")).unwrap();
    std::fs::write(
        token_dir.join("config.json"),
        serde_json::json!({ "HttpHeaders": { "Authorization": format!("Bearer {token}") } })
            .to_string(),
    )
    .unwrap();
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_HOST", &up.exports["DOCKER_HOST"])
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", &token_dir)
        .env("DOCKER_CONFIG", &token_dir)
        .env_remove("DOCKER_CONTEXT")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            IMAGE,
            "echo",
            "token ok",
        ]);
    let out = run_with_deadline(cmd, None, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "token client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "token ok");
    // Without the token the same client is refused.
    std::fs::write(token_dir.join("config.json"), "{}").unwrap();
    let mut cmd = Command::new("docker");
    cmd.env("DOCKER_HOST", &up.exports["DOCKER_HOST"])
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", &token_dir)
        .env("DOCKER_CONFIG", &token_dir)
        .env_remove("DOCKER_CONTEXT")
        .args(["ps"]);
    let out = run_with_deadline(cmd, None, Duration::from_secs(60));
    assert!(!out.status.success());

    // A second moat on the same DIR refuses, in one line naming the lock.
    let out = moat(
        &[
            "up",
            "--dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("another moat is running"), "{err}");
    assert!(
        err.contains(&dir.join("moat.lock").display().to_string()),
        "{err}"
    );
    // The first one still serves.
    assert_eq!(raw::status(&get(up.tls, &up.admin(), "/_ping")), 200);
}

#[test]
fn engine_crash_503_recovery_clean_stop_and_restart_reuses_the_pki() {
    let dir = state_dir("crash");
    let mut up = Up::start(&dir);
    let admin = up.admin();
    assert_eq!(raw::status(&get(up.tls, &admin, "/version")), 200);

    // SIGKILL the engine: requests get 503 until moat has restarted it.
    let pidfile = dir.join("engine/dockerd.pid");
    let old_pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    kill(Pid::from_raw(old_pid), Signal::SIGKILL).unwrap();
    let start = Instant::now();
    let unavailable = loop {
        let resp = get(up.tls, &admin, "/version");
        if raw::status(&resp) == 503 {
            break resp;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "never saw a 503 after killing the engine; last: {resp}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        unavailable.contains("restarting") || unavailable.contains("not reachable"),
        "{unavailable}"
    );
    let start = Instant::now();
    loop {
        let resp = get(up.tls, &admin, "/version");
        if raw::status(&resp) == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the engine did not come back: {resp}\n{}",
            up.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let new_pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(new_pid, old_pid);

    // SIGTERM: moat exits cleanly and no engine process is left.
    let status = up.stop().unwrap();
    assert!(
        status.success(),
        "moat up exited with {status}\n{}",
        up.log()
    );
    let left = processes_referencing(&dir);
    assert!(left.is_empty(), "processes left behind: {left:#?}");

    // Restart: everything is reused, and the old admin bundle still works.
    let ca_key = std::fs::read(dir.join("pki/ca-key.pem")).unwrap();
    let bundle_copy = dir.with_extension("old-admin");
    std::fs::create_dir_all(&bundle_copy).unwrap();
    for f in ["ca.pem", "cert.pem", "key.pem"] {
        std::fs::copy(admin.dir.join(f), bundle_copy.join(f)).unwrap();
    }
    let up = Up::start(&dir);
    assert!(up.stdout.contains("Reused everything"), "{}", up.stdout);
    assert_eq!(std::fs::read(dir.join("pki/ca-key.pem")).unwrap(), ca_key);
    let old = Bundle { dir: bundle_copy };
    assert_eq!(raw::status(&get(up.tls, &old, "/version")), 200);
    assert_eq!(
        up.docker_ok(&["version", "--format", "{{.Server.Os}}"], None)
            .trim(),
        "linux"
    );
}

#[test]
fn engine_socket_serves_an_existing_engine_without_starting_one() {
    let engine = crate::support::engine();
    crate::support::image();
    let dir = state_dir("extern");
    let up = Up::start_with(&dir, &["--engine-socket", engine.socket.to_str().unwrap()]);
    assert!(
        up.stdout.contains(&format!(
            "engine: the engine on {}",
            engine.socket.display()
        )),
        "{}",
        up.stdout
    );
    let out = up.docker_ok(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            IMAGE,
            "echo",
            "external",
        ],
        None,
    );
    assert_eq!(out.trim(), "external");
    assert!(!dir.join("engine/dockerd.pid").exists());
    assert!(processes_referencing(&dir.join("engine")).is_empty());
    // moat.yaml still describes the bundled engine: the flag is for this run.
    let config = moat::config::Config::load(&dir.join("moat.yaml")).unwrap();
    assert!(config.engine.bundled.is_some());
}

/// A state directory made without starting anything (the library's
/// bootstrap), for the refusals at start.
fn prepared_dir(name: &str) -> PathBuf {
    let dir = state_dir(name);
    moat::up::ensure_state(&moat::up::Layout::new(&dir), None, None).unwrap();
    dir
}

fn edit_config(dir: &Path, from: &str, to: &str) -> PathBuf {
    let path = dir.join("moat.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from} not in moat.yaml");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    path
}

#[test]
fn extra_args_with_a_tcp_host_are_refused_at_config_load() {
    let dir = prepared_dir("extra");
    let config = dir.join("moat.yaml");
    let out = moat(&["config", "check", config.to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "the generated config must pass: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    edit_config(
        &dir,
        "extra_args: []",
        "extra_args: [\"--debug\", \"-H\", \"tcp://0.0.0.0:2375\"]",
    );
    for args in [
        vec!["config", "check", config.to_str().unwrap()],
        vec!["serve", "--config", config.to_str().unwrap()],
        vec![
            "up",
            "--dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    ] {
        let out = moat(&args, None);
        assert!(!out.status.success(), "{args:?} accepted a TCP host");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("engine.bundled.extra_args"), "{args:?}: {err}");
    }
    assert!(processes_referencing(&dir).is_empty());
}

#[test]
fn no_dockerd_fails_in_one_line_naming_docker_io() {
    let dir = prepared_dir("nodockerd");
    // find_dockerd also looks in the sbin directories, where this machine
    // has dockerd: name a binary that is installed nowhere, and give PATH a
    // directory without it.
    edit_config(
        &dir,
        "dockerd: dockerd ",
        "dockerd: moat-test-no-such-dockerd ",
    );
    let empty = dir.with_extension("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let out = moat(
        &[
            "up",
            "--dir",
            dir.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        Some(&empty),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("dockerd not found"), "{err}");
    assert!(err.contains("apt-get install docker.io"), "{err}");
    assert!(
        !dir.join("moat.lock").exists(),
        "it should fail before taking the lock"
    );

    // An --engine-socket that nothing answers on is refused just as clearly.
    let out = moat(
        &[
            "up",
            "--dir",
            dir.to_str().unwrap(),
            "--engine-socket",
            dir.join("nothing.sock").to_str().unwrap(),
        ],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--engine-socket"), "{err}");
}

/// Without a handler, SIGHUP's default action ends the process: the one
/// reload signal must reload, not kill.
#[test]
fn sighup_reloads_everything_and_moat_keeps_serving() {
    // Also pins a start-up race: "moat is serving" was printed before the
    // SIGHUP handler existed, so a SIGHUP sent at once terminated moat.
    let engine = crate::support::engine();
    let dir = state_dir("hup");
    let up = Up::start_with(&dir, &["--engine-socket", engine.socket.to_str().unwrap()]);
    let pid = up.child.as_ref().unwrap().id();
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    while !(up.log().contains("SIGHUP: policy reloaded")
        && up.log().contains("TLS configuration reloaded"))
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no reload after SIGHUP:\n{}",
            up.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    up.docker_ok(&["ps"], None);
}
