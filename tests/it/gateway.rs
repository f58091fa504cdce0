//! The gateway core (issue 2): the stock docker CLI works end to end through
//! moat over mutual TLS, against a real engine.

use std::time::Duration;

use crate::support::{self, image, pki, raw, unique, Docker, Moat};

fn admin(moat: &Moat) -> Docker {
    Docker::new(moat, &pki().client("alice", "admin"))
}

#[test]
fn version_info_ps_images() {
    let moat = Moat::start();
    let d = admin(&moat);
    let v = d.ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert!(v.trim().starts_with("1."), "{v}");
    assert!(
        d.ok(&["info", "--format", "{{.ServerVersion}}"])
            .trim()
            .len()
            > 2
    );
    d.ok(&["ps", "-a"]);
    image();
    assert!(d.ok(&["images"]).contains("moat-test/busybox"));
}

#[test]
fn container_lifecycle() {
    let moat = Moat::start();
    let d = admin(&moat);
    let name = unique("life");
    let renamed = format!("{name}-renamed");
    d.ok(&["create", "--name", &name, image(), "sleep", "30"]);
    d.ok(&["start", &name]);
    d.ok(&["rename", &name, &renamed]);
    d.ok(&["stop", "-t", "1", &renamed]);
    d.ok(&["start", &renamed]);
    d.ok(&["kill", &renamed]);
    let code = d.ok(&["wait", &renamed]);
    assert_eq!(code.trim(), "137");
    d.ok(&["rm", &renamed]);
    assert!(!d.ok(&["ps", "-a"]).contains(&renamed));
}

#[test]
fn run_rm_echo() {
    let moat = Moat::start();
    let out = admin(&moat).ok(&["run", "--rm", image(), "echo", "hello from moat"]);
    assert_eq!(out.trim(), "hello from moat");
}

#[test]
fn piped_stdin_reaches_the_container_and_output_comes_back() {
    let moat = Moat::start();
    let d = admin(&moat);
    let out = d.run_stdin(&["run", "-i", "--rm", image(), "cat"], b"hi\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    // A larger stream survives the half-close too.
    let big: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let out = d.run_stdin(&["run", "-i", "--rm", image(), "wc", "-c"], &big);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        big.len().to_string()
    );
}

#[test]
fn run_it_under_a_pseudo_terminal() {
    let moat = Moat::start();
    let d = admin(&moat);
    // `script` gives the docker CLI a real pty, as an interactive user has.
    let docker_line = format!("docker run -it --rm {} sh -c 'tty && echo pty-ok'", image());
    let script = d.program("script", &["-qec", &docker_line, "/dev/null"]);
    let out = support::run_with_deadline(script, Some(b"exit\n"), Duration::from_secs(120));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("pty-ok"), "{text}");
}

#[test]
fn exec_with_and_without_stdin() {
    let moat = Moat::start();
    let d = admin(&moat);
    let name = unique("exec");
    d.ok(&["run", "-d", "--name", &name, image(), "sleep", "60"]);
    assert_eq!(d.ok(&["exec", &name, "echo", "plain"]).trim(), "plain");
    let out = d.run_stdin(&["exec", "-i", &name, "cat"], b"piped\n");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped\n");
    let out = d.run(&["exec", &name, "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    d.ok(&["rm", "-f", &name]);
}

#[test]
fn logs_follow_ends_when_the_container_exits() {
    let moat = Moat::start();
    let d = admin(&moat);
    let name = unique("logs");
    d.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        image(),
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; sleep 1; done",
    ]);
    let out = d.ok(&["logs", "-f", &name]);
    assert_eq!(out, "line1\nline2\nline3\n");
    d.ok(&["rm", &name]);
}

#[test]
fn cp_both_directions() {
    let moat = Moat::start();
    let d = admin(&moat);
    let name = unique("cp");
    d.ok(&["run", "-d", "--name", &name, image(), "sleep", "60"]);
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("in.txt");
    std::fs::write(&src, "copied in\n").unwrap();
    d.ok(&["cp", src.to_str().unwrap(), &format!("{name}:/tmp/in.txt")]);
    assert_eq!(d.ok(&["exec", &name, "cat", "/tmp/in.txt"]), "copied in\n");
    let back = tmp.path().join("back.txt");
    d.ok(&["cp", &format!("{name}:/tmp/in.txt"), back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(back).unwrap(), "copied in\n");
    d.ok(&["rm", "-f", &name]);
}

#[test]
fn build_a_small_context() {
    let moat = Moat::start();
    let d = admin(&moat);
    let ctx = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("hello.txt"), "built by moat\n").unwrap();
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!(
            "FROM {}\nCOPY hello.txt /hello.txt\nRUN cat /hello.txt\n",
            image()
        ),
    )
    .unwrap();
    let tag = unique("moat-test/built");
    d.ok(&["build", "-t", &tag, ctx.path().to_str().unwrap()]);
    assert_eq!(
        d.ok(&["run", "--rm", &tag, "cat", "/hello.txt"]),
        "built by moat\n"
    );
    d.ok(&["rmi", &tag]);
}

#[test]
fn events_since_until() {
    let moat = Moat::start();
    let d = admin(&moat);
    let start = time::OffsetDateTime::now_utc().unix_timestamp();
    let name = unique("ev");
    d.ok(&["create", "--name", &name, image(), "true"]);
    d.ok(&["rm", &name]);
    let until = time::OffsetDateTime::now_utc().unix_timestamp() + 1;
    let out = d.ok(&[
        "events",
        "--since",
        &start.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        &format!("container={name}"),
        "--format",
        "{{.Action}}",
    ]);
    assert!(out.contains("create"), "{out}");
    assert!(out.contains("destroy"), "{out}");
}

#[test]
fn save_and_load_a_200mb_image_keeps_its_id() {
    let moat = Moat::start();
    let d = admin(&moat);
    let engine = support::engine();
    image();
    // A 200 MB layer of random bytes, built directly on the engine.
    let tag = unique("moat-test/big");
    let script = format!(
        "set -e; d=$(mktemp -d); mkdir -p $d/root; head -c 209715200 /dev/urandom > $d/root/blob; \
         tar -C $d/root -c . | docker -H '{}' import - {tag}; rm -rf $d",
        engine.host()
    );
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(script);
    let out = support::run_with_deadline(cmd, None, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = d.ok(&["image", "inspect", "--format", "{{.Id}}", &tag]);
    let tmp = tempfile::tempdir().unwrap();
    let tar = tmp.path().join("big.tar");
    d.ok(&["save", "-o", tar.to_str().unwrap(), &tag]);
    assert!(std::fs::metadata(&tar).unwrap().len() > 200 * 1024 * 1024);
    d.ok(&["rmi", &tag]);
    assert!(!d.run(&["image", "inspect", &tag]).status.success());
    d.ok(&["load", "-i", tar.to_str().unwrap()]);
    assert_eq!(d.ok(&["image", "inspect", "--format", "{{.Id}}", &tag]), id);
    // And as a pipe, both ends through moat at once.
    let pipe = format!("docker save {tag} | docker load");
    let cmd = d.program("sh", &["-c", &pipe]);
    let out = support::run_with_deadline(cmd, None, Duration::from_secs(300));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(d.ok(&["image", "inspect", "--format", "{{.Id}}", &tag]), id);
    d.ok(&["rmi", &tag]);
}

#[test]
fn volume_and_network_create_ls_rm() {
    let moat = Moat::start();
    let d = admin(&moat);
    let vol = unique("vol");
    d.ok(&["volume", "create", &vol]);
    assert!(d.ok(&["volume", "ls", "-q"]).contains(&vol));
    d.ok(&["volume", "rm", &vol]);
    let net = unique("net");
    d.ok(&["network", "create", "--internal", &net]);
    assert!(d
        .ok(&["network", "ls", "--format", "{{.Name}}"])
        .contains(&net));
    d.ok(&["network", "rm", &net]);
}

#[test]
fn handshake_fails_without_a_valid_client_certificate() {
    let moat = Moat::start();
    let pki = pki();
    for (what, bundle) in [
        ("no certificate", pki.ca_only("nobody")),
        ("another CA", pki.foreign_client("mallory")),
        ("expired", pki.expired_client("old")),
    ] {
        let err = raw::exchange(
            moat.addr,
            &bundle,
            b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        match err {
            Err(_) => {}
            Ok(resp) => assert!(resp.is_empty(), "{what}: got a response: {resp}"),
        }
        let out = Docker::new(&moat, &bundle).run(&["ps"]);
        assert!(!out.status.success(), "{what}: docker ps succeeded");
    }
    // Nothing reached the engine: no audit record was written for them.
    assert!(moat
        .audit_records()
        .iter()
        .all(|r| r["request"]["uri"] != "/_ping"));
}

#[test]
fn hijack_endpoint_without_upgrade_is_refused_with_400() {
    let moat = Moat::start();
    let bundle = pki().client("alice", "admin");
    let resp = raw::exchange(
        moat.addr,
        &bundle,
        b"POST /v1.41/containers/nonexistent/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(raw::status(&resp), 400, "{resp}");
    assert!(resp.contains("Upgrade"), "{resp}");
}

#[test]
fn engine_unreachable_answers_503_and_moat_recovers() {
    // A private engine this test can stop and start again.
    let dir = tempfile::Builder::new()
        .prefix("moat-eng-")
        .tempdir_in("/tmp")
        .unwrap();
    let socket = dir.path().join("down.sock");
    let moat = Moat::start_with(support::MoatOptions {
        engine_socket: Some(socket.clone()),
        ..Default::default()
    });
    let d = admin(&moat);
    let err = d.fails(&["ps"]);
    assert!(err.contains("not reachable"), "{err}");
    // The engine appears at the configured socket: moat serves at once.
    let shared = support::engine();
    std::os::unix::fs::symlink(&shared.socket, &socket).unwrap();
    d.ok(&["ps"]);
}
