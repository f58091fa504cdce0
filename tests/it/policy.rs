//! Policy (issue 4), end to end: the shipped pack decides real docker CLI
//! commands per role, an opa-docker-authz policy runs unchanged, edits to a
//! policy take effect without a restart, and every known way of smuggling a
//! privileged container past an authorization layer (chunked bodies, case
//! folding, duplicate keys, encoded paths, pipelining...) is refused over
//! raw HTTP before anything reaches the engine.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    self, as_role, engine, image, pki, raw, tempdir, unique, Docker, Moat, MoatOptions,
};

fn remove_container(name: &str) {
    let _ = engine().direct(&["rm", "-f", name]);
}

/// The docker CLI must fail with a daemon error containing `why`.
fn assert_refused(d: &Docker, args: &[&str], why: &str) -> String {
    d.refused(args, &[why])
}

// ------------------------------------------------------------- the roles

/// An admin's `--privileged` reaches the engine as asked. (The container is
/// created, not started: the engine under test runs inside a container that
/// may not grant a privileged child all capabilities, which is the engine's
/// business, not moat's.)
#[test]
fn admin_runs_privileged() {
    let moat = Moat::start();
    let d = as_role(&moat, "alice", "admin");
    let name = unique("admin-priv");
    d.ok(&["create", "--privileged", "--name", &name, image(), "true"]);
    let out = engine().direct(&["inspect", "--format", "{{.HostConfig.Privileged}}", &name]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "true");
    d.ok(&["rm", &name]);
}

#[test]
fn developer_is_refused_every_route_to_the_host() {
    let moat = Moat::start();
    let d = as_role(&moat, "dave", "developer");
    let img = image();
    // (docker run flags, a distinctive part of the shipped pack's message)
    let cases: &[(&[&str], &str)] = &[
        (
            &["--privileged"],
            "developer policy: privileged containers are not allowed (HostConfig.Privileged)",
        ),
        (
            &["-v", "/:/host"],
            "developer policy: bind mounts of / are not allowed",
        ),
        (
            &["--mount", "type=bind,source=/,target=/h"],
            "developer policy: bind mounts of / are not allowed",
        ),
        (
            &["--cap-add", "SYS_ADMIN"],
            "capability SYS_ADMIN is not in the allowlist",
        ),
        (
            &["--network", "host"],
            "host namespaces are not allowed (HostConfig.NetworkMode=host)",
        ),
        (
            &["--pid", "host"],
            "host namespaces are not allowed (HostConfig.PidMode=host)",
        ),
        (
            &["--device", "/dev/null"],
            "host devices are not allowed (Devices)",
        ),
        (
            &["--security-opt", "seccomp=unconfined"],
            "seccomp=unconfined is not allowed (HostConfig.SecurityOpt)",
        ),
        (
            &["-v", "/var/run/docker.sock:/var/run/docker.sock"],
            "mounting the Docker socket is not allowed",
        ),
    ];
    for (flags, why) in cases {
        let name = unique("dev-refused");
        let mut args = vec!["run", "--rm", "--name", &name];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[img, "echo", "reached"]);
        let stderr = assert_refused(&d, &args, why);
        assert!(!stderr.contains("reached"));
        assert!(
            !engine().has("containers", &name),
            "{flags:?}: container {name} reached the engine"
        );
    }

    // exec --privileged on a container the developer may create.
    let name = unique("dev-exec");
    d.ok(&["run", "-d", "--name", &name, img, "sleep", "60"]);
    assert_refused(
        &d,
        &["exec", "--privileged", &name, "echo", "reached"],
        "developer policy: privileged exec is not allowed",
    );
    // ... while a plain exec works, so the refusal is about --privileged.
    assert_eq!(d.ok(&["exec", &name, "echo", "plain"]).trim(), "plain");
    // A classic build whose RUN steps would join a container's namespace
    // (the daemon does not check the build's networkmode; one with the
    // host network would put the build on it).
    let ctx = tempdir("dev-build");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {img}\nRUN echo reached\n"),
    )
    .unwrap();
    let tag = unique("dev-build-netns");
    let network = format!("container:{name}");
    let context = ctx.to_string_lossy().into_owned();
    assert_refused(
        &d,
        &["build", "--network", &network, "-t", &tag, &context],
        &format!("not networkmode={network}"),
    );
    let out = engine().direct(&["image", "ls", "-q", &tag]);
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "{tag} was built"
    );
    d.ok(&["rm", "-f", &name]);

    // A local volume that bind-mounts the host: refused at create.
    let vol = unique("dev-bindvol");
    assert_refused(
        &d,
        &[
            "volume",
            "create",
            "--driver",
            "local",
            "--opt",
            "type=none",
            "--opt",
            "o=bind",
            "--opt",
            "device=/",
            &vol,
        ],
        "volume options that bind-mount the host are not allowed (DriverOpts",
    );
    assert!(
        !engine().has("volumes", &vol),
        "volume {vol} reached the engine"
    );
    // The same options inline in --mount: refused at container create.
    let name = unique("dev-inline-vol");
    let mount = format!(
        "type=volume,source={vol},target=/h,volume-driver=local,volume-opt=type=none,volume-opt=o=bind,volume-opt=device=/"
    );
    assert_refused(
        &d,
        &[
            "run", "--rm", "--name", &name, "--mount", &mount, img, "true",
        ],
        "volume options that bind-mount the host are not allowed (HostConfig.Mounts",
    );
    assert!(!engine().has("containers", &name));
    assert!(!engine().has("volumes", &vol));
}

#[test]
fn developer_runs_an_ordinary_container() {
    let moat = Moat::start();
    let d = as_role(&moat, "dave", "developer");
    assert_eq!(d.ok(&["run", "--rm", image(), "echo", "ok"]).trim(), "ok");
}

#[test]
fn viewer_reads_but_cannot_run_copy_out_or_export() {
    let moat = Moat::start();
    let admin = as_role(&moat, "alice", "admin");
    let viewer = as_role(&moat, "vera", "viewer");
    let name = unique("viewed");
    admin.ok(&["run", "-d", "--name", &name, image(), "sleep", "60"]);

    assert!(viewer.ok(&["ps"]).contains(&name));
    assert!(viewer.ok(&["top", &name]).contains("sleep 60"));
    // Not the inspect of someone else's container: its environment holds
    // secrets (policies/ownership.rego).
    assert_refused(
        &viewer,
        &["inspect", "--format", "{{.State.Running}}", &name],
        &format!("viewer policy: ContainerInspect of container {name} is not allowed"),
    );

    let refused = unique("viewer-run");
    assert_refused(
        &viewer,
        &["run", "--rm", "--name", &refused, image(), "true"],
        "no policy rule allows ContainerCreate for vera",
    );
    assert!(!engine().has("containers", &refused));

    let tmp = tempdir("moat-viewer-");
    let out = tmp.join("passwd");
    assert_refused(
        &viewer,
        &["cp", &format!("{name}:/etc"), out.to_str().unwrap()],
        "viewer policy: ContainerArchive",
    );
    assert!(!out.exists());
    let tar = tmp.join("export.tar");
    assert_refused(
        &viewer,
        &["export", "-o", tar.to_str().unwrap(), &name],
        "viewer policy: ContainerExport copies file contents out",
    );
    assert!(std::fs::metadata(&tar).map(|m| m.len()).unwrap_or(0) == 0);
    admin.ok(&["rm", "-f", &name]);
}

// ------------------------------------------------------ other policy packs

#[test]
fn opa_docker_authz_policy_runs_unchanged() {
    let moat = Moat::start_with(MoatOptions {
        policy_dir: Some(support::repo().join("src/policy/testdata/opa-docker-authz")),
        ..Default::default()
    });
    // That policy knows no roles: anyone may do anything but privileged or
    // seccomp:unconfined containers.
    let d = as_role(&moat, "olga", "developer");
    assert_eq!(d.ok(&["run", "--rm", image(), "echo", "ok"]).trim(), "ok");
    for flags in [
        &["--privileged"][..],
        &["--security-opt", "seccomp:unconfined"][..],
    ] {
        let name = unique("opa-refused");
        let mut args = vec!["run", "--rm", "--name", &name];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[image(), "true"]);
        assert_refused(&d, &args, "denied by policy rule data.docker.authz.deny");
        assert!(!engine().has("containers", &name), "{flags:?}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Status and body of a raw `GET /containers/json` as `bundle`.
fn list_containers(moat: &Moat, bundle: &support::Bundle) -> (u16, String) {
    let resp = raw::exchange(
        moat.addr,
        bundle,
        b"GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    (raw::status(&resp), resp)
}

#[test]
fn editing_a_policy_file_changes_the_next_decision() {
    let dir = tempdir("moat-policy-edit-").join("policies");
    copy_dir(&support::repo().join("policies"), &dir);
    let moat = Moat::start_with(MoatOptions {
        policy_dir: Some(dir.clone()),
        ..Default::default()
    });
    let dev = pki().client("dave", "developer");
    let (status, resp) = list_containers(&moat, &dev);
    assert_eq!(status, 200, "{resp}");

    // Rewrite authz.rego as an editor does: write a temporary file, rename.
    let path = dir.join("authz.rego");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(
        "\ndeny contains \"edited policy: developers may not list containers today\" if {\n\t\"developer\" in roles\n\top == \"ContainerList\"\n}\n",
    );
    let tmp = dir.join(".authz.rego.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();

    // The gateway promises 2 s.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (status, resp) = list_containers(&moat, &dev);
        if status == 403 {
            assert!(
                resp.contains("edited policy: developers may not list containers today"),
                "{resp}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edited policy is not in force after 2 s: {resp}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Admins are untouched by the new rule.
    let (status, resp) = list_containers(&moat, &pki().client("alice", "admin"));
    assert_eq!(status, 200, "{resp}");
}

// ------------------------------------------------------- raw HTTP evasions

/// A container the developer policy allows (for refusals that are not the
/// policy's).
const PLAIN: &str = r#"{"Image":"moat-test/busybox:latest","Cmd":["true"]}"#;

const PRIVILEGED: &str =
    r#"{"Image":"moat-test/busybox:latest","Cmd":["true"],"HostConfig":{"Privileged":true}}"#;

/// A `POST` request head and body, with `Connection: close`.
fn post(target: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {target} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The JSON body of the (last) response in `raw`.
fn json_body(raw: &str) -> Value {
    let start = raw.find('{').unwrap_or_else(|| panic!("no JSON in {raw}"));
    let end = raw.rfind('}').unwrap_or_else(|| panic!("no JSON in {raw}"));
    serde_json::from_str(&raw[start..=end]).unwrap_or_else(|e| panic!("{e}: {raw}"))
}

/// Builds a raw request that creates a container with the given name.
type MakeRequest = Box<dyn Fn(&str) -> Vec<u8>>;

#[test]
fn raw_http_evasions_do_not_get_past_the_developer_policy() {
    image();
    let moat = Moat::start();
    let dev = pki().client("dave", "developer");

    // (case, what moat's answer says, the request). Each must be refused
    // before the engine: 400 for forms moat will not pass on, 403 where moat
    // read the real body and the policy saw the privileged flag. (With both
    // Transfer-Encoding and Content-Length, hyper lets chunked win as RFC
    // 9112 says and drops the length, so the whole body is inspected.)
    let cases: Vec<(&str, &str, MakeRequest)> = vec![
        (
            "chunked body with Content-Length: 0",
            "privileged containers are not allowed",
            Box::new(|name: &str| {
                format!(
                    "POST /v1.41/containers/create?name={name} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{PRIVILEGED}\r\n0\r\n\r\n",
                    PRIVILEGED.len()
                )
                .into_bytes()
            }),
        ),
        (
            "chunked body alone",
            "privileged containers are not allowed",
            Box::new(|name: &str| {
                format!(
                    "POST /v1.41/containers/create?name={name} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{PRIVILEGED}\r\n0\r\n\r\n",
                    PRIVILEGED.len()
                )
                .into_bytes()
            }),
        ),
        (
            "lower-case keys (rewritten to the canonical spelling)",
            "privileged containers are not allowed",
            Box::new(|name: &str| {
                post(
                    &format!("/v1.41/containers/create?name={name}"),
                    "",
                    r#"{"Image":"moat-test/busybox:latest","Cmd":["true"],"hostconfig":{"privileged":true}}"#,
                )
            }),
        ),
        (
            "duplicate keys",
            "which the daemon treats as the same field",
            Box::new(|name: &str| {
                post(
                    &format!("/v1.41/containers/create?name={name}"),
                    "",
                    r#"{"Image":"moat-test/busybox:latest","Cmd":["true"],"HostConfig":{"Privileged":false,"Privileged":true}}"#,
                )
            }),
        ),
        (
            "duplicate keys differing in case",
            "which the daemon treats as the same field",
            Box::new(|name: &str| {
                post(
                    &format!("/v1.41/containers/create?name={name}"),
                    "",
                    r#"{"Image":"moat-test/busybox:latest","Cmd":["true"],"HostConfig":{"Privileged":false,"privileged":true}}"#,
                )
            }),
        ),
        (
            "\\u-escaped key",
            "privileged containers are not allowed",
            Box::new(|name: &str| {
                post(
                    &format!("/v1.41/containers/create?name={name}"),
                    "",
                    r#"{"Image":"moat-test/busybox:latest","Cmd":["true"],"HostConfig":{"\u0050rivileged":true}}"#,
                )
            }),
        ),
        (
            "long-s folded key (Hoſtconfig, rewritten)",
            "privileged containers are not allowed",
            Box::new(|name: &str| {
                post(
                    &format!("/v1.41/containers/create?name={name}"),
                    "",
                    r#"{"Image":"moat-test/busybox:latest","Cmd":["true"],"Hoſtconfig":{"Privileged":true}}"#,
                )
            }),
        ),
        (
            "Kelvin-sign folded key (NetworKMode, rewritten)",
            "host namespaces are not allowed (HostConfig.NetworkMode=host)",
            Box::new(|name: &str| {
                post(
                    &format!("/v1.41/containers/create?name={name}"),
                    "",
                    "{\"Image\":\"moat-test/busybox:latest\",\"Cmd\":[\"true\"],\"HostConfig\":{\"Networ\u{212A}Mode\":\"host\"}}",
                )
            }),
        ),
        (
            "form-encoded body",
            "form-encoded request bodies are refused",
            Box::new(|name: &str| {
                let body = "Image=moat-test%2Fbusybox%3Alatest&HostConfig.Privileged=true";
                format!(
                    "POST /v1.41/containers/create?name={name} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            }),
        ),
        (
            "percent-encoded path",
            "privileged containers are not allowed",
            Box::new(|name: &str| {
                post(
                    &format!("/v1.41/containers/%63reate?name={name}"),
                    "",
                    PRIVILEGED,
                )
            }),
        ),
        (
            "path without version",
            "privileged containers are not allowed",
            Box::new(|name: &str| post(&format!("/containers/create?name={name}"), "", PRIVILEGED)),
        ),
        // Issue 14: the daemon's deprecated top-level HostConfig position.
        (
            "top-level Privileged and Binds (no HostConfig)",
            "deprecated position",
            Box::new(|name: &str| {
                post(
                    &format!("/v1.41/containers/create?name={name}"),
                    "",
                    r#"{"Image":"moat-test/busybox:latest","Cmd":["sh"],"Privileged":true,"Binds":["/:/host"]}"#,
                )
            }),
        ),
        (
            "\"HostConfig\": null beside top-level Binds",
            "belongs in `HostConfig.Binds`",
            Box::new(|name: &str| {
                post(
                    &format!("/containers/create?name={name}"),
                    "",
                    r#"{"Image":"moat-test/busybox:latest","Cmd":["sh"],"HostConfig":null,"Binds":["/:/host"]}"#,
                )
            }),
        ),
        (
            "empty HostConfig beside top-level Privileged",
            "belongs in `HostConfig.Privileged`",
            Box::new(|name: &str| {
                post(
                    &format!("/v1.24/containers/create?name={name}"),
                    "",
                    r#"{"Image":"moat-test/busybox:latest","Cmd":["sh"],"HostConfig":{},"Privileged":true}"#,
                )
            }),
        ),
        (
            "chunked body with top-level Privileged",
            "deprecated position",
            Box::new(|name: &str| {
                let body = r#"{"Image":"moat-test/busybox:latest","Cmd":["sh"],"Privileged":true}"#;
                format!(
                    "POST /v1.41/containers/create?name={name} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                    body.len()
                )
                .into_bytes()
            }),
        ),
        (
            "version /v1.12/ (below engine.min_api_version)",
            "engine.min_api_version",
            Box::new(|name: &str| {
                post(&format!("/v1.12/containers/create?name={name}"), "", PLAIN)
            }),
        ),
        (
            "version /v1.23/ (below engine.min_api_version)",
            "engine.min_api_version",
            Box::new(|name: &str| {
                post(&format!("/v1.23/containers/create?name={name}"), "", PLAIN)
            }),
        ),
        (
            "version /v1.99/ (newer than the engine)",
            "not served by the engine",
            Box::new(|name: &str| {
                post(&format!("/v1.99/containers/create?name={name}"), "", PLAIN)
            }),
        ),
        (
            "absolute-form target",
            "origin-form",
            Box::new(|name: &str| {
                post(
                    &format!("http://localhost/v1.41/containers/create?name={name}"),
                    "",
                    PRIVILEGED,
                )
            }),
        ),
        (
            "Upgrade on a non-hijack endpoint",
            "`Upgrade` is only accepted",
            Box::new(|name: &str| {
                format!(
                    "POST /v1.41/containers/create?name={name} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n{PRIVILEGED}",
                    PRIVILEGED.len()
                )
                .into_bytes()
            }),
        ),
        (
            "version /v1/",
            "not a valid API version prefix",
            Box::new(|name: &str| {
                post(
                    &format!("/v1/containers/create?name={name}"),
                    "",
                    PRIVILEGED,
                )
            }),
        ),
        (
            "version /v01.41/",
            "not a valid API version prefix",
            Box::new(|name: &str| {
                post(
                    &format!("/v01.41/containers/create?name={name}"),
                    "",
                    PRIVILEGED,
                )
            }),
        ),
        (
            "empty segment //containers/create",
            "is not clean",
            Box::new(|name: &str| {
                post(&format!("//containers/create?name={name}"), "", PRIVILEGED)
            }),
        ),
        (
            "%2F inside a segment",
            "encoded slash",
            Box::new(|name: &str| {
                post(
                    &format!("/v1.41/containers%2Fcreate?name={name}"),
                    "",
                    PRIVILEGED,
                )
            }),
        ),
        (
            "dot segment",
            "is not clean",
            Box::new(|name: &str| {
                post(
                    &format!("/v1.41/images/../containers/create?name={name}"),
                    "",
                    PRIVILEGED,
                )
            }),
        ),
    ];

    for (case, why, request) in &cases {
        let name = unique("evasion");
        let resp = raw::exchange(moat.addr, &dev, &request(&name)).unwrap_or_default();
        let status = raw::status(&resp);
        assert!(
            matches!(status, 400 | 403 | 413),
            "{case}: answered {status}: {resp}"
        );
        let message = json_body(&resp)["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(message.contains(why), "{case}: expected {why:?} in {resp}");
        assert!(
            !engine().has("containers", &name),
            "{case}: container {name} reached the engine ({resp})"
        );
    }
}

#[test]
fn oversize_padded_body_is_refused_with_413() {
    image();
    let moat = Moat::start();
    let dev = pki().client("dave", "developer");
    let name = unique("padded");
    // A privileged create followed by 5 MiB of whitespace (the limit is 4 MiB):
    // a gateway that inspects only a prefix would see nothing wrong.
    let mut body = String::from(PRIVILEGED);
    body.push_str(&" ".repeat(5 * 1024 * 1024));
    let request = post(&format!("/v1.41/containers/create?name={name}"), "", &body);
    let mut tls = raw::connect(moat.addr, &dev).unwrap();
    // moat answers once it has read its limit and closes, so the rest of the
    // write may fail; the answer is still there to read.
    let _ = tls.write_all(&request).and_then(|()| tls.flush());
    let resp = read_without_writing(&mut tls);
    assert_eq!(raw::status(&resp), 413, "{resp}");
    assert!(!engine().has("containers", &name));
}

/// Regression: a refused upload was answered and the connection closed with
/// the client's bytes unread, so the kernel reset it and the client lost the
/// answer (the docker CLI printed "broken pipe" instead of the policy's
/// message). moat now reads the rest of an unread body after answering.
#[test]
fn refused_upload_reset_before_the_answer() {
    image();
    let moat = Moat::start();
    let dev = pki().client("dave", "developer");
    // Far more than the socket buffers on both sides can hold: the client
    // can only finish writing if moat reads it all.
    let context = vec![0u8; 32 * 1024 * 1024];
    let head = format!(
        "POST /v1.41/build?networkmode=host&t={} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        unique("linger"),
        context.len()
    );
    let mut tls = raw::connect(moat.addr, &dev).unwrap();
    tls.write_all(head.as_bytes()).unwrap();
    tls.write_all(&context)
        .and_then(|()| tls.flush())
        .expect("moat reset the connection before the client finished its upload");
    let mut reader = std::io::BufReader::new(&mut tls);
    let resp = raw::read_response(&mut reader).unwrap();
    assert_eq!(resp.status, 403, "{}", resp.body);
    assert!(resp.body.contains("networkmode"), "{}", resp.body);
    // The whole body was read, so the connection serves the next request.
    drop(reader);
    tls.write_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let ping = raw::read_response(&mut std::io::BufReader::new(&mut tls)).unwrap();
    assert_eq!(ping.status, 200, "{}", ping.body);
}

/// Reads the server's answer until it closes. Unlike `StreamOwned::read`,
/// this never tries to flush what a failed write left buffered first.
fn read_without_writing(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match tls.conn.read_tls(&mut tls.sock) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if tls.conn.process_new_packets().is_err() {
            break;
        }
        loop {
            match tls.conn.reader().read(&mut buf) {
                Ok(0) => return String::from_utf8_lossy(&out).into_owned(),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => break,
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn pipelined_second_request_is_decided_on_its_own() {
    image();
    let moat = Moat::start();
    let dev = pki().client("dave", "developer");
    let plain = unique("pipelined-plain");
    let privileged = unique("pipelined-priv");
    let plain_body = r#"{"Image":"moat-test/busybox:latest","Cmd":["true"]}"#;
    let mut bytes = format!(
        "POST /v1.41/containers/create?name={plain} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{plain_body}",
        plain_body.len()
    )
    .into_bytes();
    bytes.extend(post(
        &format!("/v1.41/containers/create?name={privileged}"),
        "",
        PRIVILEGED,
    ));
    let resp = raw::exchange(moat.addr, &dev, &bytes).unwrap();
    let statuses: Vec<u16> = resp
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| raw::status(&resp[i..]))
        .collect();
    assert_eq!(statuses, vec![201, 403], "{resp}");
    assert!(
        resp.contains("privileged containers are not allowed"),
        "{resp}"
    );
    assert!(
        engine().has("containers", &plain),
        "the first request was allowed"
    );
    assert!(!engine().has("containers", &privileged));
    remove_container(&plain);
}

#[test]
fn denial_is_403_json_with_the_deny_messages() {
    image();
    let moat = Moat::start();
    let dev = pki().client("dave", "developer");
    let name = unique("denied-json");
    let body =
        r#"{"Image":"moat-test/busybox:latest","HostConfig":{"Privileged":true,"PidMode":"host"}}"#;
    let resp = raw::exchange(
        moat.addr,
        &dev,
        &post(&format!("/v1.41/containers/create?name={name}"), "", body),
    )
    .unwrap();
    assert_eq!(raw::status(&resp), 403, "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{resp}"
    );
    let json = json_body(&resp);
    let obj = json.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), vec!["message"], "{json}");
    let message = obj["message"].as_str().unwrap();
    // Both rules that fired are named.
    assert!(
        message.contains("privileged containers are not allowed"),
        "{message}"
    );
    assert!(message.contains("HostConfig.PidMode=host"), "{message}");
    assert!(!engine().has("containers", &name));

    // With no deny message, the message names the operation and the user.
    let viewer = pki().client("vera", "viewer");
    let resp = raw::exchange(
        moat.addr,
        &viewer,
        &post(
            &format!("/v1.41/containers/create?name={name}"),
            "",
            r#"{"Image":"x"}"#,
        ),
    )
    .unwrap();
    assert_eq!(raw::status(&resp), 403, "{resp}");
    assert_eq!(
        json_body(&resp)["message"],
        "no policy rule allows ContainerCreate for vera"
    );
}

// ------------------------------------------------------------- the tooling

fn moat_cli(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
    cmd.args(args).current_dir(support::repo());
    support::run_with_deadline(cmd, None, Duration::from_secs(120))
}

#[test]
fn policy_cli_tests_and_checks_the_shipped_pack() {
    for sub in ["test", "check"] {
        let out = moat_cli(&["policy", sub, "policies"]);
        assert!(
            out.status.success(),
            "moat policy {sub} policies failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let dir = tempdir("moat-broken-policy-");
    std::fs::write(
        dir.join("broken.rego"),
        "package docker.authz\n\nimport rego.v1\n\nallow if {\n\tinput.x ==\n}\n",
    )
    .unwrap();
    let out = moat_cli(&["policy", "check", dir.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "a broken policy passed: {text}");
    let location = regex_like_file_line_col(&text, "broken.rego");
    assert!(location, "no file:line:col in: {text}");
}

/// Whether `text` has `<...file>:<line>:<col>`.
fn regex_like_file_line_col(text: &str, file: &str) -> bool {
    text.match_indices(file).any(|(i, _)| {
        let rest = &text[i + file.len()..];
        let mut parts = rest.splitn(3, ':');
        parts.next() == Some("")
            && parts
                .next()
                .is_some_and(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit()))
            && parts
                .next()
                .is_some_and(|c| c.chars().next().is_some_and(|c| c.is_ascii_digit()))
    })
}
