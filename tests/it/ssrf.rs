//! The engine as an HTTP client (issue 14, server-side request forgery):
//! as a developer, every request that would make the engine connect to the
//! gateway host's loopback is refused by the shipped pack with the
//! parameter named, and a listener on 127.0.0.1 sees no connection. The
//! same request as an admin does reach the listener, which shows the
//! listener would have seen the developer's. A developer's pull from Docker
//! Hub is not refused by the policy.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{engine, image, pki, raw, unique, Bundle, Docker, Moat};

/// A TCP listener that counts the connections it accepts and answers each
/// with a 404.
struct Listener {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Listener {
    fn bind(addr: &str) -> Option<Listener> {
        let listener = TcpListener::bind(addr).ok()?;
        let port = listener.local_addr().ok()?.port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Some(Listener { port, accepted })
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Status and `message` of a raw request as `bundle`.
fn send(
    moat: &Moat,
    bundle: &Bundle,
    method: &str,
    target: &str,
    body: Option<&Value>,
) -> (u16, String) {
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = raw::exchange(moat.addr, bundle, request.as_bytes()).unwrap_or_default();
    let message = resp
        .find("\r\n\r\n")
        .and_then(|i| {
            let b = &resp[i + 4..];
            let start = b.find('{')?;
            let end = b.rfind('}')?;
            serde_json::from_str::<Value>(&b[start..=end]).ok()
        })
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    (raw::status(&resp), message)
}

#[test]
fn developer_cannot_make_the_engine_connect_to_the_gateway_loopback() {
    let moat = Moat::start();
    let dev = pki().client("dora", "developer");
    let d = Docker::new(&moat, &dev);
    let v4 = Listener::bind("127.0.0.1:0").expect("a listener on 127.0.0.1");
    let p = v4.port;
    // The IPv6 loopback, when this host has one.
    let v6 = Listener::bind("[::1]:0");
    let p6 = v6.as_ref().map(|l| l.port).unwrap_or(p);

    // (case, method, target, body, the refusal's distinctive part)
    let cases: Vec<(&str, &str, String, Option<Value>, String)> = vec![
        (
            "import from a URL",
            "POST",
            format!("/v1.41/images/create?fromSrc=http://127.0.0.1:{p}/x&repo=ssrf"),
            None,
            format!("fromSrc=http://127.0.0.1:{p}/x makes the engine connect to 127.0.0.1:{p} (loopback)"),
        ),
        (
            "import at API 1.24",
            "POST",
            format!("/v1.24/images/create?fromSrc=http://127.0.0.1:{p}/x"),
            None,
            format!("fromSrc=http://127.0.0.1:{p}/x makes the engine connect"),
        ),
        (
            "import, unversioned",
            "POST",
            format!("/images/create?fromSrc=http://127.0.0.1:{p}/x"),
            None,
            format!("fromSrc=http://127.0.0.1:{p}/x makes the engine connect"),
        ),
        (
            "import, no scheme",
            "POST",
            format!("/v1.41/images/create?fromSrc=127.0.0.1:{p}/x"),
            None,
            format!("connect to 127.0.0.1:{p} (loopback)"),
        ),
        (
            "import, v4-mapped v6",
            "POST",
            format!("/v1.41/images/create?fromSrc=http://%5B::ffff:127.0.0.1%5D:{p}/x"),
            None,
            format!("connect to [::ffff:127.0.0.1]:{p} (loopback)"),
        ),
        (
            "import, decimal IPv4",
            "POST",
            format!("/v1.41/images/create?fromSrc=http://2130706433:{p}/x"),
            None,
            format!("connect to 2130706433:{p} (loopback)"),
        ),
        (
            "import, octal IPv4",
            "POST",
            format!("/v1.41/images/create?fromSrc=http://0177.0.0.1:{p}/x"),
            None,
            format!("connect to 0177.0.0.1:{p} (loopback)"),
        ),
        (
            "import, v6 loopback",
            "POST",
            format!("/v1.41/images/create?fromSrc=http://%5B::1%5D:{p6}/x"),
            None,
            format!("connect to [::1]:{p6} (loopback)"),
        ),
        (
            "build from a URL",
            "POST",
            format!("/v1.41/build?remote=http://127.0.0.1:{p}/ctx.tar&t=ssrf"),
            None,
            format!("remote=http://127.0.0.1:{p}/ctx.tar makes the engine connect to 127.0.0.1:{p} (loopback)"),
        ),
        (
            "build, unversioned",
            "POST",
            format!("/build?remote=http://localhost:{p}/ctx.tar"),
            None,
            format!("connect to localhost:{p} (loopback)"),
        ),
        (
            "pull from 127.0.0.1",
            "POST",
            format!("/v1.41/images/create?fromImage=127.0.0.1:{p}/img&tag=latest"),
            None,
            format!("registry 127.0.0.1:{p} is not allowed (fromImage=127.0.0.1:{p}/img"),
        ),
        (
            "pull from localhost",
            "POST",
            format!("/v1.41/images/create?fromImage=localhost:{p}/img&tag=latest"),
            None,
            format!("registry localhost:{p} is not allowed"),
        ),
        (
            "pull from [::1]",
            "POST",
            format!("/v1.41/images/create?fromImage=%5B::1%5D:{p6}/img&tag=latest"),
            None,
            format!("registry [::1]:{p6} is not allowed"),
        ),
        (
            "push",
            "POST",
            format!("/v1.41/images/127.0.0.1:{p}/img/push?tag=latest"),
            None,
            format!("registry 127.0.0.1:{p} is not allowed (name="),
        ),
        (
            "search",
            "GET",
            format!("/v1.41/images/search?term=127.0.0.1:{p}/img"),
            None,
            format!("registry 127.0.0.1:{p} is not allowed (term="),
        ),
        (
            "login",
            "POST",
            "/v1.41/auth".to_owned(),
            Some(json!({"username": "u", "password": "p", "serveraddress": format!("http://127.0.0.1:{p}/")})),
            format!("registry 127.0.0.1:{p} is not allowed (serveraddress="),
        ),
        (
            "syslog log driver",
            "POST",
            format!("/v1.41/containers/create?name={}", unique("ssrf-syslog")),
            Some(json!({"Image": image(), "HostConfig": {"LogConfig": {"Type": "syslog",
                "Config": {"syslog-address": format!("tcp://127.0.0.1:{p}")}}}})),
            format!("HostConfig.LogConfig.Config.syslog-address=tcp://127.0.0.1:{p} makes the engine connect to 127.0.0.1:{p} (loopback)"),
        ),
        (
            "NFS volume",
            "POST",
            "/v1.41/volumes/create".to_owned(),
            Some(json!({"Name": unique("ssrf-nfs"), "Driver": "local",
                "DriverOpts": {"type": "nfs", "o": format!("addr=127.0.0.1,port={p}"), "device": ":/export"}})),
            "DriverOpts.o=addr=127.0.0.1 makes the engine connect to 127.0.0.1 (loopback)".to_owned(),
        ),
    ];
    for (case, method, target, body, why) in &cases {
        let (status, message) = send(&moat, &dev, method, target, body.as_ref());
        assert_eq!(status, 403, "{case}: {message}");
        assert!(
            message.contains(why),
            "{case}: expected {why:?} in {message:?}"
        );
        assert!(message.contains("developer policy:"), "{case}: {message}");
    }
    // A chunked body is judged as a whole.
    let body = json!({"Image": image(), "HostConfig": {"LogConfig": {"Type": "fluentd",
        "Config": {"fluentd-address": format!("127.0.0.1:{p}")}}}})
    .to_string();
    let (head, tail) = body.split_at(body.len() / 2);
    let request = format!(
        "POST /v1.41/containers/create HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{head}\r\n{:x}\r\n{tail}\r\n0\r\n\r\n",
        head.len(),
        tail.len()
    );
    let resp = raw::exchange(moat.addr, &dev, request.as_bytes()).unwrap_or_default();
    assert_eq!(raw::status(&resp), 403, "{resp}");
    assert!(
        resp.contains(&format!("HostConfig.LogConfig.Config.fluentd-address=127.0.0.1:{p} makes the engine connect to 127.0.0.1:{p} (loopback)")),
        "{resp}"
    );

    // The docker CLI hears the same.
    let stderr = d.fails(&["import", &format!("http://127.0.0.1:{p}/x.tar"), "ssrf:cli"]);
    assert!(
        stderr.contains(&format!(
            "fromSrc=http://127.0.0.1:{p}/x.tar makes the engine connect"
        )),
        "{stderr}"
    );
    let stderr = d.fails(&["pull", &format!("localhost:{p}/img")]);
    assert!(
        stderr.contains(&format!("registry localhost:{p} is not allowed")),
        "{stderr}"
    );
    let name = unique("ssrf-gelf");
    let stderr = d.fails(&[
        "create",
        "--name",
        &name,
        "--log-driver",
        "gelf",
        "--log-opt",
        &format!("gelf-address=udp://127.0.0.1:{p}"),
        image(),
        "true",
    ]);
    assert!(
        stderr.contains("HostConfig.LogConfig.Config.gelf-address="),
        "{stderr}"
    );
    assert!(!engine().has("containers", &name));
    let vol = unique("ssrf-cifs");
    let stderr = d.fails(&[
        "volume",
        "create",
        "--name",
        &vol,
        "--opt",
        "type=cifs",
        "--opt",
        "device=//127.0.0.1/share",
        "--opt",
        "o=username=u",
    ]);
    assert!(
        stderr.contains(
            "DriverOpts.device=//127.0.0.1/share makes the engine connect to 127.0.0.1 (loopback)"
        ),
        "{stderr}"
    );
    assert!(!engine().has("volumes", &vol));

    // Nothing reached the listeners: the refusals came before the engine.
    assert_eq!(v4.accepted(), 0, "the engine connected to 127.0.0.1:{p}");
    if let Some(v6) = &v6 {
        assert_eq!(v6.accepted(), 0, "the engine connected to [::1]:{p6}");
    }

    // The control: the same import as an admin reaches the listener, so the
    // listener would have seen the developer's.
    let admin = pki().client("ada", "admin");
    let (status, _) = send(
        &moat,
        &admin,
        "POST",
        &format!("/v1.41/images/create?fromSrc=http://127.0.0.1:{p}/x&repo=ssrf-admin"),
        None,
    );
    assert_ne!(status, 403);
    let deadline = Instant::now() + Duration::from_secs(30);
    while v4.accepted() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        v4.accepted() >= 1,
        "the admin's import never reached the listener: the test could not see a connection"
    );
}

/// `docker pull busybox` from Docker Hub is not the policy's business: the
/// engine has no internet here and fails (or, with internet, pulls), but
/// not with moat's refusal, and the audit trail records an allow.
#[test]
fn developer_pull_from_docker_hub_is_not_refused_by_the_policy() {
    let moat = Moat::start();
    let dev = pki().client("dora", "developer");
    let out = Docker::new(&moat, &dev).run(&["pull", "busybox"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("policy:"), "{stderr}");
    let records = moat.audit_records();
    let pulls: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["stage"] == "decision"
                && r["request"]["operation"] == "ImageCreate"
                && r["request"]["uri"]
                    .as_str()
                    .unwrap_or("")
                    .contains("busybox")
        })
        .collect();
    assert!(
        !pulls.is_empty(),
        "no decision record of the pull: {records:?}"
    );
    for r in pulls {
        assert_eq!(r["decision"]["allow"], true, "{r}");
    }
}
