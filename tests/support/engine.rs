//! A private dockerd for the test run, and the locally built test image.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The test image, built from Debian's busybox-static (no registry here).
pub(crate) const IMAGE: &str = "moat-test/busybox:latest";

pub(crate) struct Engine {
    /// Directory holding the socket, data root, exec root and logs.
    pub dir: PathBuf,
    pub socket: PathBuf,
}

impl Engine {
    /// `unix:///…` for DOCKER_HOST.
    pub(crate) fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// One Engine API request straight to the engine's socket (HTTP/1.0,
    /// so the answer is never chunked): status and JSON body (null when the
    /// body is empty or not JSON). For setup and for inspecting what the
    /// engine really did.
    pub(crate) fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(&self.socket).expect("engine socket");
        s.set_read_timeout(Some(Duration::from_secs(60))).ok();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).expect("write to engine");
        let mut out = Vec::new();
        s.read_to_end(&mut out).expect("read from engine");
        let text = String::from_utf8_lossy(&out);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let json = text
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    /// The docker CLI talking to the engine directly (for setup only).
    pub(crate) fn direct(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.join("docker-config"))
            .args(args);
        super::run_with_deadline(cmd, None, Duration::from_secs(300))
    }

    /// Whether the engine has the object `name` of `kind` (`containers`,
    /// `volumes`, `networks`), asked directly. Any answer but found (200) or
    /// not found (404) fails the test, so that "not there" is never an
    /// engine error.
    pub(crate) fn has(&self, kind: &str, name: &str) -> bool {
        let path = match kind {
            "containers" => format!("/containers/{name}/json"),
            _ => format!("/{kind}/{name}"),
        };
        match self.api("GET", &path, None) {
            (200, _) => true,
            (404, _) => false,
            (status, body) => panic!("GET {path}: the engine answered {status}: {body}"),
        }
    }

    /// Removes what a test made, directly, ignoring what is already gone.
    pub(crate) fn remove(&self, containers: &[&str], volumes: &[&str], networks: &[&str]) {
        for c in containers {
            let _ = self.direct(&["rm", "-f", c]);
        }
        for v in volumes {
            let _ = self.direct(&["volume", "rm", "-f", v]);
        }
        for n in networks {
            let _ = self.direct(&["network", "rm", n]);
        }
    }
}

static ENGINE: OnceLock<Engine> = OnceLock::new();

/// The shared private engine, started on first use.
pub(crate) fn engine() -> &'static Engine {
    ENGINE.get_or_init(start_engine)
}

/// Starts dockerd with its own data root, exec root and pidfile, no bridge
/// and no iptables, under a watchdog that stops it when this process exits.
pub(crate) fn start_engine_in(dir: &Path) -> Engine {
    std::fs::create_dir_all(dir).expect("engine dir");
    let socket = dir.join("docker.sock");
    let script = format!(
        r#"dockerd --host "unix://{sock}" --data-root "{d}/data" --exec-root "{d}/exec" --pidfile "{d}/dockerd.pid" \
             --bridge=none --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false >"{d}/dockerd.log" 2>&1 &
           engine=$!
           while kill -0 {parent} 2>/dev/null && kill -0 $engine 2>/dev/null; do sleep 0.5; done
           kill -TERM $engine 2>/dev/null; wait $engine
           rm -rf "{d}/data" "{d}/exec" 2>/dev/null"#,
        sock = socket.display(),
        d = dir.display(),
        parent = std::process::id(),
    );
    // The watchdog outlives this call on purpose; it reaps dockerd itself.
    let watchdog = Command::new("sh")
        .arg("-c")
        .arg(script)
        .spawn()
        .expect("start dockerd (is docker.io installed?)");
    std::mem::forget(watchdog);
    let engine = Engine {
        dir: dir.to_path_buf(),
        socket,
    };
    wait_for_ping(&engine.socket, Duration::from_secs(60)).unwrap_or_else(|e| {
        let log = std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
        panic!("private dockerd did not come up: {e}\n{log}")
    });
    engine
}

fn start_engine() -> Engine {
    let dir = tempfile::Builder::new()
        .prefix("moat-it-")
        .tempdir_in("/tmp")
        .expect("tempdir")
        .keep();
    start_engine_in(&dir)
}

/// Polls `GET /_ping` on a unix socket.
pub(crate) fn wait_for_ping(socket: &Path, limit: Duration) -> Result<(), String> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        match ping(socket) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

pub(crate) fn ping(socket: &Path) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok();
    s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    if out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(out)
    }
}

static IMAGE_BUILT: OnceLock<()> = OnceLock::new();

/// Builds the busybox test image in the shared engine (once).
pub(crate) fn image() -> &'static str {
    IMAGE_BUILT.get_or_init(|| build_image(engine()));
    IMAGE
}

pub(crate) fn build_image(engine: &Engine) {
    let root = engine.dir.join("image-root");
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).expect("image dir");
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is not installed (apt-get install busybox-static)");
    std::fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
    }
    for d in ["tmp", "etc", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).expect("image dir");
    }
    let script = format!(
        "tar -C '{}' -c . | docker -H '{}' import -c 'CMD [\"/bin/sh\"]' -c 'ENV PATH=/bin' - {IMAGE}",
        root.display(),
        engine.host()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(script)
        .env("DOCKER_CONFIG", engine.dir.join("docker-config"));
    let out = super::run_with_deadline(cmd, None, Duration::from_secs(120));
    assert!(
        out.status.success(),
        "import test image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
