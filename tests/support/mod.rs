//! Test harness shared by the integration tests: a private `dockerd` on a
//! temporary socket, a local busybox image, a test PKI generated in code,
//! moat itself started in-process on port 0, and a fake engine
//! ([`fake_engine`]) for what needs neither root nor a real dockerd.
//!
//! The engine and the PKI are created once per test binary. The engine is
//! started under a small watchdog shell that stops it (and removes its
//! directory) as soon as the test process exits, since Rust runs no
//! destructors for statics.

// Each test binary (and the gateway bench) uses a part of the harness.
#![allow(dead_code, unused_imports)]

pub(crate) mod docker;
pub(crate) mod engine;
pub(crate) mod fake_engine;
pub(crate) mod hostile;
pub(crate) mod moat;
pub(crate) mod pki;
pub(crate) mod raw;

pub(crate) use docker::{as_role, Docker};
pub(crate) use engine::{engine, image};
pub(crate) use fake_engine::{FakeEngine, Kind};
pub(crate) use moat::{Moat, MoatOptions};
pub(crate) use pki::{pki, Bundle};

/// A name no other test uses (containers, volumes, images).
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", hex::encode(rand::random::<[u8; 4]>()))
}

/// A temporary directory that outlives the test (moat and dockerd may still
/// hold files in it when the test returns).
pub(crate) fn tempdir(prefix: &str) -> std::path::PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("tempdir")
        .keep()
}

/// The repository root.
pub(crate) fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a command with a deadline (a hang guard, not a timing assertion).
pub(crate) fn run_with_deadline(
    mut cmd: std::process::Command,
    stdin: Option<&[u8]>,
    deadline: std::time::Duration,
) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn command");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(out) => out.expect("wait for command"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(pid.to_string())
                .status();
            panic!("command did not finish within {deadline:?}: {cmd:?}");
        }
    }
}
