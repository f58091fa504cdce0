//! The local socket (`listen.unix`): local users identified by the kernel,
//! mapped by `auth.local`, through the same policy and audit, driven with
//! the real docker CLI as root and as `nobody` (`runuser`).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::{self, unique, Moat, MoatOptions};

/// A directory every local user may enter, holding the socket, and a
/// docker config directory `nobody` may write.
fn socket_dir() -> (PathBuf, PathBuf) {
    let dir = support::tempdir("moat-local-");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = dir.join("docker-config");
    std::fs::create_dir(&config).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o777)).unwrap();
    (dir.join("moat.sock"), config)
}

fn start(socket: &Path, auth_local: &str) -> Moat {
    Moat::start_with(MoatOptions {
        unix_socket: Some(socket.to_path_buf()),
        extra_yaml: format!("auth:\n  local:\n{auth_local}"),
        ..MoatOptions::default()
    })
}

/// The docker CLI on the local socket, as `user` (`None`: root itself).
fn docker_as(user: Option<&str>, socket: &Path, config: &Path, args: &[&str]) -> Output {
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", "docker"]);
            c
        }
        None => Command::new("docker"),
    };
    cmd.env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .env("DOCKER_CONFIG", config)
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .env_remove("DOCKER_CONTEXT")
        .args(args);
    support::run_with_deadline(cmd, None, Duration::from_secs(120))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn local_users_are_named_by_the_kernel_and_mapped_by_auth_local() {
    let (socket, config) = socket_dir();
    // nobody is mapped through its group, nogroup: viewer.
    let moat = start(&socket, "    groups:\n      nogroup: [viewer]\n");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o666, "the default socket mode");

    // root is admin by default: it reads and writes.
    let vol = unique("local-root-vol");
    let out = docker_as(None, &socket, &config, &["volume", "create", &vol]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = docker_as(None, &socket, &config, &["volume", "rm", &vol]);
    assert!(out.status.success(), "{}", stderr(&out));

    // nobody, a viewer through its group: reads, cannot write.
    let out = docker_as(Some("nobody"), &socket, &config, &["ps"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = docker_as(
        Some("nobody"),
        &socket,
        &config,
        &["volume", "create", &unique("local-nobody-vol")],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no policy rule allows VolumeCreate for nobody"),
        "{}",
        stderr(&out)
    );

    let audit_file = moat.audit_file.clone();
    moat.stop();
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&audit_file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let nobody = records
        .iter()
        .find(|r| r["user"]["name"] == "nobody" && r["request"]["operation"] == "ContainerList")
        .expect("nobody's docker ps is audited");
    assert_eq!(nobody["user"]["auth_method"], "peer");
    assert_eq!(nobody["user"]["uid"], 65534);
    assert!(nobody["user"]["pid"].as_i64().is_some_and(|p| p > 0));
    assert_eq!(nobody["user"]["groups"], serde_json::json!(["viewer"]));
    assert_eq!(nobody["client"], "unix");
    let root = records
        .iter()
        .find(|r| r["user"]["name"] == "root" && r["request"]["operation"] == "VolumeCreate")
        .expect("root's volume create is audited");
    assert_eq!(root["user"]["uid"], 0);
    assert_eq!(root["user"]["groups"], serde_json::json!(["admin"]));
    assert!(
        !socket.exists(),
        "the socket file is removed when moat stops"
    );
}

#[test]
fn an_unmapped_local_user_is_told_how_to_map_it() {
    let (socket, config) = socket_dir();
    let moat = start(&socket, "    users: {}\n");
    let out = docker_as(Some("nobody"), &socket, &config, &["ps"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("local user nobody (uid 65534) has no moat role")
            && err.contains("auth.local.users"),
        "{err}"
    );
    moat.stop();
}

/// One request, one identity: a bearer token on the local socket does not
/// replace (or add to) what the kernel says.
#[test]
fn a_credential_on_the_local_socket_is_refused() {
    let (socket, _config) = socket_dir();
    let moat = start(&socket, "    users: {}\n");
    let mut s = UnixStream::connect(&socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /_ping HTTP/1.1\r\nHost: moat\r\nAuthorization: Bearer x.y.z\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    assert!(resp.contains("authenticated by the kernel"), "{resp}");
    // Without it, root is served.
    let mut s = UnixStream::connect(&socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: moat\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    moat.stop();
}

/// A local user at its identity's connection limit: the next connection is
/// closed before any request, and the refusal is audited, as for a
/// certificate client.
#[test]
fn a_local_connection_over_the_identity_limit_is_closed_and_audited() {
    let (socket, _config) = socket_dir();
    let moat = Moat::start_with(MoatOptions {
        unix_socket: Some(socket.clone()),
        limits_yaml: Some("  shutdown_grace: 2s\n  identity:\n    max_connections: 1\n".into()),
        ..MoatOptions::default()
    });
    let mut first = UnixStream::connect(&socket).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The first connection is served (and so counted) before the second.
    first
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: moat\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 12];
    first.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    let mut second = UnixStream::connect(&socket).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = second.write_all(b"GET /_ping HTTP/1.1\r\nHost: moat\r\nConnection: close\r\n\r\n");
    let mut resp = Vec::new();
    let _ = second.read_to_end(&mut resp);
    assert!(resp.is_empty(), "{}", String::from_utf8_lossy(&resp));
    drop(first);
    let audit_file = moat.audit_file.clone();
    moat.stop();
    let log = std::fs::read_to_string(&audit_file).unwrap();
    let refusal: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["request"]["operation"] == "Connection")
        .expect("the refused local connection is audited");
    assert_eq!(refusal["user"]["name"], "root");
    assert_eq!(refusal["user"]["auth_method"], "peer");
    assert_eq!(refusal["client"], "unix");
    assert_eq!(refusal["decision"]["allow"], false);
    assert!(
        refusal["decision"]["reasons"][0]
            .as_str()
            .is_some_and(|r| r.contains("max_connections")),
        "{refusal}"
    );
}
