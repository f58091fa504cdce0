//! Data-driven tests of the real `Policy` with the shipped pack: each case is
//! a request (operation, who, body, query) and the expected decision with a
//! substring of its message. Bodies include the docker CLI's real
//! ContainerCreate shape, captured from `docker run`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Uri};
use serde_json::{json, Value};

use super::*;
use crate::classify::{BodyKind, Operation, Route};
use crate::identity::{AuthMethod, Identity};

pub(super) fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")
}

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/policy/testdata")
        .join(name)
}

pub(super) fn load(dir: &Path) -> Policy {
    Policy::load(
        &config::Policy {
            dir: dir.to_path_buf(),
        },
        &config::Limits::default(),
    )
    .unwrap()
}

/// The one place that builds a `Route` by hand.
fn route(op: &'static str, readonly: bool, path: &str, params: &[(&'static str, &str)]) -> Route {
    let op: &'static Operation = Box::leak(Box::new(Operation {
        id: crate::classify::OpId::from_name(op).expect("an operation of the route table"),
        resource: "test",
        readonly,
        hijack: false,
        body: BodyKind::Inspect,
    }));
    let query = Vec::new();
    Route {
        op,
        params: params.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        api_version: Some("1.41".into()),
        path: path.to_string(),
        query,
        upstream: format!("/v1.41{path}"),
    }
}

pub(super) fn identity(name: &str, groups: &[&str], scopes: &[&str]) -> Identity {
    Identity {
        name: name.into(),
        groups: groups.iter().map(|s| s.to_string()).collect(),
        auth_method: if scopes.is_empty() {
            AuthMethod::Certificate
        } else {
            AuthMethod::Token
        },
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        claims: Value::Null,
        certificate: None,
        token_id: None,
        local: None,
    }
}

pub(super) struct Req {
    pub(super) op: &'static str,
    readonly: bool,
    method: &'static str,
    path: &'static str,
    params: Vec<(&'static str, &'static str)>,
    query: Vec<(&'static str, &'static str)>,
    body: Option<Value>,
}

pub(super) fn req(op: &'static str, method: &'static str, path: &'static str) -> Req {
    Req {
        op,
        readonly: method == "GET" || method == "HEAD",
        method,
        path,
        params: vec![],
        query: vec![],
        body: None,
    }
}

fn create(body: Value) -> Req {
    Req {
        body: Some(body),
        ..req("ContainerCreate", "POST", "/containers/create")
    }
}

fn create_hc(hc: Value) -> Req {
    create(json!({"Image": "alpine", "HostConfig": hc}))
}

/// Calls `f` with the facts of request `r` by `who`.
pub(super) fn with_facts<T>(r: &Req, who: &Identity, f: impl FnOnce(&Facts<'_>) -> T) -> T {
    let mut rt = route(r.op, r.readonly, r.path, &r.params);
    rt.query = r
        .query
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let method: Method = r.method.parse().unwrap();
    let uri: Uri = format!("/v1.41{}", r.path).parse().unwrap();
    let headers = HeaderMap::new();
    let facts = Facts {
        method: &method,
        uri: &uri,
        headers: &headers,
        route: &rt,
        api_version: rt.api_version.as_deref(),
        body: r.body.as_ref(),
        identity: who,
        client: "127.0.0.1:5555".parse().unwrap(),
        resources: &[],
    };
    f(&facts)
}

async fn decide(p: &Policy, r: &Req, who: &Identity) -> Decision {
    let doc = with_facts(r, who, input::build);
    p.decide_input(doc, r.op, &who.name)
}

/// The decision `moat policy test`'s interpreter reaches for `r`.
fn interpret(i: &mut testing::Interpreter, r: &Req, who: &Identity) -> Decision {
    let doc = with_facts(r, who, input::build);
    eval::decide(i.raw(doc).unwrap(), r.op, &who.name, "")
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(testdata(name)).unwrap()).unwrap()
}

pub(super) struct People {
    admin: Identity,
    dev: Identity,
    viewer: Identity,
    ci: Identity,
    builder: Identity,
    nobody: Identity,
}

pub(super) fn people() -> People {
    People {
        admin: identity("ada", &["admin"], &[]),
        dev: identity("dana", &["developer"], &[]),
        viewer: identity("vic", &["viewer"], &[]),
        ci: identity("ci-bot", &["ci"], &["containers:run"]),
        builder: identity("builder", &["ci"], &["images:build"]),
        nobody: identity("nora", &["sales"], &[]),
    }
}

/// The data-driven table: (case, request, who, allowed, message substring).
pub(super) fn cases(who: &People) -> Vec<(&'static str, Req, &Identity, bool, &'static str)> {
    let People {
        admin,
        dev,
        viewer,
        ci,
        builder,
        nobody,
    } = who;

    let plain = fixture("docker-cli-run-plain.json");
    let privileged = fixture("docker-cli-run-privileged.json");

    // (case, request, who, allowed, message substring)
    vec![
        ("admin runs --privileged", create(privileged.clone()), admin, true, ""),
        ("developer runs a plain container", create(plain.clone()), dev, true, ""),
        ("ci runs a plain container", create(plain.clone()), ci, true, ""),
        ("developer --privileged (real CLI body)", create(privileged.clone()), dev, false,
            "developer policy: privileged containers are not allowed (HostConfig.Privileged); ask an admin or drop --privileged"),
        ("real CLI body: CAP_SYS_ADMIN", create(privileged.clone()), dev, false, "capability SYS_ADMIN"),
        ("real CLI body: -v /etc", create(privileged), dev, false, "bind mounts of /etc are not allowed"),
        ("ci --privileged", create_hc(json!({"Privileged": true})), ci, false, "ci policy: privileged containers"),
        ("-v /:/host", create_hc(json!({"Binds": ["/:/host"]})), dev, false, "bind mounts of / are not allowed"),
        ("named volume bind is fine", create_hc(json!({"Binds": ["data:/data"]})), dev, true, ""),
        ("--mount type=bind", create_hc(json!({"Mounts": [{"Type": "bind", "Source": "/srv", "Target": "/s"}]})), dev, false, "bind mounts of /srv"),
        ("docker.sock", create_hc(json!({"Binds": ["/var/run/docker.sock:/var/run/docker.sock"]})), dev, false, "Docker socket"),
        ("--cap-add SYS_ADMIN", create_hc(json!({"CapAdd": ["SYS_ADMIN"]})), dev, false, "drop --cap-add SYS_ADMIN"),
        ("--cap-add NET_BIND_SERVICE", create_hc(json!({"CapAdd": ["NET_BIND_SERVICE"]})), dev, true, ""),
        ("--network host", create_hc(json!({"NetworkMode": "host"})), dev, false, "HostConfig.NetworkMode=host"),
        ("--pid host", create_hc(json!({"PidMode": "host"})), dev, false, "drop --pid host"),
        ("--ipc host", create_hc(json!({"IpcMode": "host"})), dev, false, "--ipc host"),
        ("--uts host", create_hc(json!({"UTSMode": "host"})), dev, false, "--uts host"),
        ("--userns host", create_hc(json!({"UsernsMode": "host"})), dev, false, "--userns host"),
        ("--cgroupns host", create_hc(json!({"CgroupnsMode": "host"})), dev, false, "--cgroupns host"),
        ("--device", create_hc(json!({"Devices": [{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}]})), dev, false, "host devices are not allowed (Devices)"),
        ("--gpus", create_hc(json!({"DeviceRequests": [{"Count": -1}]})), dev, false, "--gpus"),
        ("seccomp=unconfined", create_hc(json!({"SecurityOpt": ["seccomp=unconfined"]})), dev, false, "seccomp=unconfined is not allowed"),
        ("apparmor:unconfined", create_hc(json!({"SecurityOpt": ["apparmor:unconfined"]})), dev, false, "apparmor=unconfined"),
        ("systempaths=unconfined (CLI sends MaskedPaths [])", create_hc(json!({"MaskedPaths": [], "ReadonlyPaths": []})), dev, false, "masked /proc paths"),
        ("custom runtime", create_hc(json!({"Runtime": "kata"})), dev, false, "custom runtimes"),
        ("cgroup parent", create_hc(json!({"CgroupParent": "/system.slice"})), dev, false, "cgroup parent"),
        ("VolumesFrom", create_hc(json!({"VolumesFrom": ["other"]})), dev, false, "VolumesFrom"),
        ("bind-type volume mount", create_hc(json!({"Mounts": [{"Type": "volume", "Target": "/x", "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"type": "none", "o": "bind", "device": "/"}}}}]})), dev, false, "volume options that bind-mount the host"),
        ("nulls everywhere", create(json!({"Image": "alpine", "HostConfig": {"Binds": null, "Mounts": null, "CapAdd": null, "Devices": null, "SecurityOpt": null, "MaskedPaths": null}})), dev, true, ""),
        ("null HostConfig", create(json!({"Image": "alpine", "HostConfig": null})), dev, true, ""),
        ("no body", req("ContainerCreate", "POST", "/containers/create"), dev, true, ""),
        ("exec --privileged", Req { body: Some(json!({"Cmd": ["sh"], "Privileged": true})), ..req("ContainerExec", "POST", "/containers/c1/exec") }, dev, false, "privileged exec is not allowed"),
        ("plain exec", Req { body: Some(json!({"Cmd": ["sh"], "Privileged": false})), ..req("ContainerExec", "POST", "/containers/c1/exec") }, dev, true, ""),
        ("update adds a device", Req { body: Some(json!({"Devices": [{"PathOnHost": "/dev/kmsg"}]})), ..req("ContainerUpdate", "POST", "/containers/c1/update") }, dev, false, "host devices"),
        ("volume create bind", Req { body: Some(json!({"Name": "v", "Driver": "local", "DriverOpts": {"type": "none", "o": "bind", "device": "/etc"}})), ..req("VolumeCreate", "POST", "/volumes/create") }, dev, false, "DriverOpts type=none,o=bind,device="),
        ("volume create tmpfs", Req { body: Some(json!({"Name": "v", "DriverOpts": {"type": "tmpfs", "device": "tmpfs"}})), ..req("VolumeCreate", "POST", "/volumes/create") }, dev, true, ""),
        ("network connect host", Req { params: vec![("id", "host")], body: Some(json!({"Container": "c1"})), ..req("NetworkConnect", "POST", "/networks/host/connect") }, dev, false, "host network"),
        ("build --network host", Req { query: vec![("networkmode", "host")], ..req("ImageBuild", "POST", "/build") }, dev, false, "networkmode=host"),
        ("build", Req { query: vec![("t", "app")], ..req("ImageBuild", "POST", "/build") }, builder, true, ""),
        ("import from loopback", Req { query: vec![("fromSrc", "http://127.0.0.1:1/x")], ..req("ImageCreate", "POST", "/images/create") }, dev, false, "fromSrc=http://127.0.0.1:1/x makes the engine connect to 127.0.0.1"),
        ("build from a URL", Req { query: vec![("remote", "http://[::1]/c.tar")], ..req("ImageBuild", "POST", "/build") }, dev, false, "remote=http://[::1]/c.tar"),
        ("pull from Docker Hub", Req { query: vec![("fromImage", "busybox"), ("tag", "latest")], ..req("ImageCreate", "POST", "/images/create") }, dev, true, ""),
        ("pull from a local registry", Req { query: vec![("fromImage", "localhost:5000/x")], ..req("ImageCreate", "POST", "/images/create") }, dev, false, "registry localhost:5000 is not allowed (fromImage"),
        ("push to a local registry", Req { params: vec![("name", "127.0.0.1:5000/x")], ..req("ImagePush", "POST", "/images/127.0.0.1:5000/x/push") }, dev, false, "registry 127.0.0.1:5000"),
        ("admin pulls from a local registry", Req { query: vec![("fromImage", "localhost:5000/x")], ..req("ImageCreate", "POST", "/images/create") }, admin, true, ""),
        ("syslog-address", create_hc(json!({"LogConfig": {"Type": "syslog", "Config": {"syslog-address": "tcp://127.0.0.1:514"}}})), dev, false, "HostConfig.LogConfig.Config.syslog-address"),
        ("NFS volume", Req { body: Some(json!({"Name": "v", "DriverOpts": {"type": "nfs", "o": "addr=127.0.0.1", "device": ":/x"}})), ..req("VolumeCreate", "POST", "/volumes/create") }, dev, false, "DriverOpts.o"),
        ("build --security-opt", Req { query: vec![("securityopt", "seccomp=unconfined")], ..req("ImageBuild", "POST", "/build") }, dev, false, "securityopt"),
        ("swarm", req("SwarmInit", "POST", "/swarm/init"), dev, false, "swarm, plugin, secret and config operations are not allowed (SwarmInit)"),
        ("secrets", req("SecretCreate", "POST", "/secrets/create"), dev, false, "(SecretCreate)"),
        ("plugins", req("PluginPull", "POST", "/plugins/pull"), dev, false, "(PluginPull)"),
        ("viewer ps", req("ContainerList", "GET", "/containers/json"), viewer, true, ""),
        ("viewer inspect", Req { params: vec![("name", "c1")], ..req("ContainerInspect", "GET", "/containers/c1/json") }, viewer, true, ""),
        ("viewer run", create(plain.clone()), viewer, false, "no policy rule allows ContainerCreate for vic"),
        ("viewer cp out", req("ContainerArchive", "GET", "/containers/c1/archive"), viewer, false, "viewer policy: ContainerArchive copies file contents"),
        ("viewer export", req("ContainerExport", "GET", "/containers/c1/export"), viewer, false, "ContainerExport"),
        ("viewer save", req("ImageGet", "GET", "/images/alpine/get"), viewer, false, "ImageGet"),
        ("ci without scope", req("ImageBuild", "POST", "/build"), ci, false, "no policy rule allows ImageBuild for ci-bot"),
        ("no role", req("SystemPing", "GET", "/_ping"), nobody, false, "no policy rule allows SystemPing for nora"),
        ("Unknown, even for admin", req("Unknown", "GET", "/nope"), admin, false, "not a Docker Engine API operation"),
    ]
}

#[tokio::test]
async fn shipped_pack_decisions() {
    let p = load(&shipped());
    let who = people();
    let cases = cases(&who);
    let mut failures = Vec::new();
    for (name, r, who, allow, want) in &cases {
        let d = decide(&p, r, who).await;
        let joined = d.reasons.join(" | ");
        if d.allow != *allow || !joined.contains(want) {
            failures.push(format!(
                "{name}: got allow={} reasons=[{joined}], want allow={allow} with {want:?}",
                d.allow
            ));
        }
        if !d.allow {
            assert!(!d.reasons.is_empty(), "{name}: a deny must say why");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// An opa-docker-authz style policy (package docker.authz, flat input
/// fields, boolean `deny`) runs unchanged.
#[tokio::test]
async fn opa_docker_authz_example_runs_unchanged() {
    let p = load(&testdata("opa-docker-authz"));
    let dev = identity("bob", &[], &[]);
    let ok = create_hc(json!({"Privileged": false}));
    let bad = create_hc(json!({"Privileged": true}));
    let unconfined = create_hc(json!({"SecurityOpt": ["seccomp:unconfined"]}));
    assert!(decide(&p, &ok, &dev).await.allow);
    let d = decide(&p, &bad, &dev).await;
    assert!(!d.allow);
    assert!(
        d.reasons[0].contains("data.docker.authz.deny"),
        "{:?}",
        d.reasons
    );
    assert!(!decide(&p, &unconfined, &dev).await.allow);
}

#[test]
fn input_document_shape() {
    let rt = {
        let mut r = route(
            "ContainerCreate",
            false,
            "/containers/create",
            &[("name", "web")],
        );
        r.query = vec![
            ("name".into(), "web".into()),
            ("x".into(), "1".into()),
            ("x".into(), "2".into()),
        ];
        r
    };
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert("authorization", HeaderValue::from_static("Bearer secret"));
    headers.insert("x-registry-auth", HeaderValue::from_static("secret"));
    headers.insert("x-registry-config", HeaderValue::from_static("secret"));
    headers.append("x-multi", HeaderValue::from_static("a"));
    headers.append("x-multi", HeaderValue::from_static("b"));
    let method = Method::POST;
    let uri: Uri = "/v1.41/containers/create?name=web&x=1&x=2".parse().unwrap();
    let body = json!({"Image": "alpine", "HostConfig": {"Binds": ["/srv:/srv:ro"],
        "LogConfig": {"Type": "syslog", "Config": {"syslog-address": "udp://[::1]:514"}}}});
    let who = identity("ada", &["admin"], &[]);
    let client: SocketAddr = "10.0.0.7:40000".parse().unwrap();
    let resources = [Resource {
        kind: crate::owner::Kind::Container,
        position: "HostConfig.NetworkMode".into(),
        reference: "web".into(),
        id: "f".repeat(64),
        name: "web".into(),
        exists: true,
        owner: Some(crate::owner::Owner {
            user: "bob".into(),
            scope: Some("user:bob".into()),
            auth: Some("tls".into()),
        }),
        host_access: vec!["network=host".into()],
        container: Some(crate::owner::ContainerFacts {
            network_mode: "host".into(),
            ..Default::default()
        }),
        volume: None,
        network: None,
        exec: None,
    }];
    let facts = Facts {
        method: &method,
        uri: &uri,
        headers: &headers,
        route: &rt,
        api_version: rt.api_version.as_deref(),
        body: Some(&body),
        identity: &who,
        client,
        resources: &resources,
    };
    let doc = input::build(&facts);
    assert_eq!(
        input::build_value(&facts),
        regorus::Value::from(doc.clone()),
        "the evaluated document is the documented one"
    );
    let text = doc.to_string();
    assert!(!text.contains("secret"), "credentials leaked: {text}");
    assert_eq!(doc["request"]["method"], "POST");
    assert_eq!(doc["request"]["path"], "/containers/create");
    assert_eq!(doc["request"]["api_version"], "1.41");
    assert_eq!(doc["request"]["query"]["x"], json!(["1", "2"]));
    assert_eq!(
        doc["request"]["headers"]["content-type"],
        "application/json"
    );
    assert_eq!(doc["request"]["headers"]["x-multi"], "a, b");
    assert_eq!(
        doc["request"]["uri"],
        "/v1.41/containers/create?name=web&x=1&x=2"
    );
    assert_eq!(doc["request"]["body"]["Image"], "alpine");
    assert_eq!(doc["operation"]["id"], "ContainerCreate");
    assert_eq!(doc["operation"]["params"]["name"], "web");
    assert_eq!(doc["operation"]["readonly"], false);
    assert_eq!(
        doc["operation"]["fetches"],
        json!([{"param": "HostConfig.LogConfig.Config.syslog-address", "kind": "url",
                "value": "udp://[::1]:514", "host": "::1", "port": 514,
                "address_class": "loopback", "registry": null}])
    );
    assert_eq!(doc["user"]["name"], "ada");
    assert_eq!(doc["user"]["groups"], json!(["admin"]));
    assert_eq!(doc["user"]["auth_method"], "certificate");
    assert_eq!(doc["user"]["certificate"], Value::Null);
    assert_eq!(doc["client"]["address"], "10.0.0.7");
    assert_eq!(doc["resources"][0]["kind"], "container");
    assert_eq!(doc["resources"][0]["ref"], "web");
    assert_eq!(doc["resources"][0]["id"], "f".repeat(64));
    assert_eq!(doc["resources"][0]["owner"]["scope"], "user:bob");
    assert_eq!(doc["resources"][0]["host_access"], json!(["network=host"]));
    assert_eq!(doc["resources"][0]["container"]["network_mode"], "host");
    assert_eq!(doc["resources"][0]["volume"], Value::Null);
    assert_eq!(doc["Method"], "POST");
    assert_eq!(doc["Path"], "/v1.41/containers/create?name=web&x=1&x=2");
    assert_eq!(doc["PathPlain"], "/v1.41/containers/create");
    assert_eq!(doc["PathArr"], json!(["", "v1.41", "containers", "create"]));
    assert_eq!(doc["Query"]["name"], json!(["web"]));
    assert_eq!(doc["Headers"]["Content-Type"], "application/json");
    assert_eq!(doc["Headers"]["X-Multi"], "b");
    assert_eq!(doc["Body"], body);
    assert_eq!(doc["User"], "ada");
    assert_eq!(doc["AuthMethod"], "TLS");
    assert_eq!(doc["BindMounts"][0]["Source"], "/srv");
    assert_eq!(doc["BindMounts"][0]["ReadOnly"], true);
}

pub(super) fn write(dir: &Path, name: &str, text: &str) {
    // Replace by rename, as editors and ConfigMaps do.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

const ALLOW_ALL: &str = "package docker.authz\nimport rego.v1\ndefault allow := true\n";
const DENY_ALL: &str = "package docker.authz\nimport rego.v1\ndefault allow := false\n";

#[tokio::test]
async fn reload_keeps_last_good_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.rego", ALLOW_ALL);
    let p = load(dir.path());
    let who = identity("u", &[], &[]);
    let r = req("SystemPing", "GET", "/_ping");
    let first = decide(&p, &r, &who).await;
    assert!(first.allow);

    write(
        dir.path(),
        "p.rego",
        "package docker.authz\nimport rego.v1\nallow if {\n  input.x ==\n}\n",
    );
    let err = p.reload().unwrap_err().to_string();
    assert!(err.contains("p.rego:5:1"), "{err}");
    let status = p.status().unwrap_err();
    assert!(status.contains("p.rego:5"), "{status}");
    let still = decide(&p, &r, &who).await;
    assert!(still.allow, "last good set keeps serving");
    assert_eq!(still.revision, first.revision);

    write(dir.path(), "p.rego", DENY_ALL);
    p.reload().unwrap();
    assert!(p.status().is_ok());
    let now = decide(&p, &r, &who).await;
    assert!(!now.allow);
    assert_ne!(now.revision, first.revision);
}

#[tokio::test]
async fn watcher_applies_edits_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.rego", ALLOW_ALL);
    let p = Arc::new(load(dir.path()));
    let stop = tokio_util::sync::CancellationToken::new();
    let task = p.watch(stop.clone()).unwrap();
    let who = identity("u", &[], &[]);
    let r = req("SystemPing", "GET", "/_ping");
    assert!(decide(&p, &r, &who).await.allow);
    tokio::time::sleep(Duration::from_millis(100)).await;
    write(dir.path(), "p.rego", DENY_ALL);
    let mut denied = false;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !decide(&p, &r, &who).await.allow {
            denied = true;
            break;
        }
    }
    assert!(denied, "the edit did not take effect within 2 s");
    stop.cancel();
    task.await.unwrap();
}

#[test]
fn startup_without_valid_policy_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |d: &Path| config::Policy {
        dir: d.to_path_buf(),
    };
    let limits = config::Limits::default();
    assert!(matches!(
        Policy::load(&cfg(dir.path()), &limits),
        Err(PolicyError::NoPolicy)
    ));
    write(dir.path(), "p.rego", "package docker.authz\nallow if {\n");
    let e = Policy::load(&cfg(dir.path()), &limits)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("p.rego:"), "{e}");
    assert!(Policy::load(&cfg(&dir.path().join("missing")), &limits).is_err());
    write(
        dir.path(),
        "p.rego",
        "package other\nimport rego.v1\nallow := true\n",
    );
    assert!(
        Policy::load(&cfg(dir.path()), &limits).is_err(),
        "no docker.authz.allow"
    );
}

#[test]
fn deny_shapes() {
    use eval::{decide, Raw};
    use regorus::Value as R;
    let set_of = |msgs: &[&str]| R::from(json!(msgs));
    let d = decide(Raw::new(R::Bool(true), R::Undefined), "Op", "u", "r");
    assert!(d.allow);
    let d = decide(Raw::new(R::Bool(true), set_of(&["no"])), "Op", "u", "r");
    assert!(!d.allow);
    assert_eq!(d.reasons, vec!["no"]);
    let d = decide(Raw::new(R::Bool(true), R::Bool(true)), "Op", "u", "r");
    assert!(!d.allow);
    let d = decide(Raw::new(R::Bool(true), R::from(json!("x"))), "Op", "u", "r");
    assert!(!d.allow, "a deny of the wrong type denies");
    let d = decide(
        Raw::new(R::from(json!("yes")), R::Undefined),
        "Op",
        "u",
        "r",
    );
    assert!(!d.allow, "only true allows");
    assert_eq!(d.reasons, vec!["no policy rule allows Op for u"]);
    let d = decide(Raw::new(R::Undefined, R::Undefined), "Op", "u", "r");
    assert!(!d.allow);
}

/// The ownership outputs (issue 15) are read beside allow and deny, alike
/// in the gateway and under `moat policy test`, and fail closed: a
/// non-string `owner_scope` is ignored, a non-string `view_scope` denies.
#[tokio::test]
async fn ownership_outputs_are_read_and_fail_closed() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.rego",
        "package docker.authz\nimport rego.v1\nallow := true\n\
         owner_scope := input.o\nview_scope := input.v\n",
    );
    let p = load(dir.path());
    let mut i = testing::Interpreter::new(dir.path()).unwrap();
    let mut both = |doc: Value| {
        let gateway = p.decide_input(doc.clone(), "Op", "u");
        let tests = eval::decide(i.raw(doc).unwrap(), "Op", "u", &gateway.revision);
        assert_eq!(
            (gateway.allow, &gateway.owner_scope, &gateway.view_scope),
            (tests.allow, &tests.owner_scope, &tests.view_scope),
            "gateway and tests differ"
        );
        gateway
    };
    let d = both(json!({"o": "team:web", "v": "team:web"}));
    assert!(d.allow, "{:?}", d.reasons);
    assert_eq!(d.owner_scope.as_deref(), Some("team:web"));
    assert_eq!(d.view_scope.as_deref(), Some("team:web"));
    let d = both(json!({}));
    assert!(d.allow);
    assert_eq!((d.owner_scope, d.view_scope), (None, None));
    let d = both(json!({"o": 7, "v": null}));
    assert!(d.allow, "a bad owner_scope falls back to user:<name>");
    assert_eq!((d.owner_scope, d.view_scope), (None, None));
    for bad in [json!(true), json!(["team:web"]), json!("")] {
        let d = both(json!({"o": "team:web", "v": bad}));
        assert!(!d.allow, "view_scope {bad} must deny");
        assert!(d.reasons[0].contains("view_scope"), "{:?}", d.reasons);
    }
    // A pack without the outputs (the opa-docker-authz shape) still loads
    // and decides, never narrowed.
    let d = decide(
        &load(&testdata("opa-docker-authz")),
        &req("SystemPing", "GET", "/_ping"),
        &identity("u", &[], &[]),
    )
    .await;
    assert_eq!(d.view_scope, None);
}

#[test]
fn runaway_policy_times_out_as_deny() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.rego",
        "package docker.authz\nimport rego.v1\nallow if {\n  n := numbers.range(1, 5000)\n  count([1 | some x in n; some y in n; x * y == -1]) > 0\n}\n",
    );
    let limits = config::Limits {
        policy_eval_timeout: Duration::from_millis(50),
        ..config::Limits::default()
    };
    let p = Policy::load(
        &config::Policy {
            dir: dir.path().to_path_buf(),
        },
        &limits,
    )
    .unwrap();
    let d = p.decide_input(json!({}), "Op", "u");
    assert!(!d.allow);
    assert!(
        d.reasons[0].contains("exceeded its limit") || d.reasons[0].contains("failed"),
        "{:?}",
        d.reasons
    );
}

#[test]
fn shipped_rego_tests_pass() {
    let results = testing::run_tests(&shipped()).unwrap();
    assert!(results.len() > 20, "only {} tests", results.len());
    let failed: Vec<String> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{}: {:?}", r.name, r.detail))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn failing_rego_test_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "p.rego", ALLOW_ALL);
    write(
        dir.path(),
        "p_test.rego",
        "package docker.authz_test\nimport rego.v1\ntest_ok if data.docker.authz.allow\ntest_bad if not data.docker.authz.allow\n",
    );
    let results = testing::run_tests(dir.path()).unwrap();
    let by_name: Vec<(&str, bool)> = results
        .iter()
        .map(|r| (r.name.as_str(), r.passed))
        .collect();
    assert_eq!(
        by_name,
        vec![
            ("data.docker.authz_test.test_ok", true),
            ("data.docker.authz_test.test_bad", false)
        ]
    );
}

/// Every operation id the shipped data names is a real route of the daemon,
/// so a typo cannot silently drop a permission (or a restriction).
#[test]
fn shipped_data_names_real_operations() {
    let routes = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/classify/routes.tsv"),
    )
    .unwrap();
    let known: std::collections::HashSet<&str> = routes
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').nth(3))
        .chain(["Unknown"])
        .collect();
    let data: Value =
        serde_json::from_str(&std::fs::read_to_string(shipped().join("data.json")).unwrap())
            .unwrap();
    let m = &data["moat"];
    let mut named: Vec<&str> = Vec::new();
    for list in [
        "developer_operations",
        "viewer_excluded_operations",
        "ci_base_operations",
    ] {
        named.extend(
            m[list]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap()),
        );
    }
    for ops in m["ci_scopes"].as_object().unwrap().values() {
        named.extend(ops.as_array().unwrap().iter().map(|v| v.as_str().unwrap()));
    }
    let unknown: Vec<&&str> = named.iter().filter(|o| !known.contains(**o)).collect();
    assert!(
        unknown.is_empty(),
        "not operations of routes.tsv: {unknown:?}"
    );
}

/// The real classifier's operation for `docker run` decides as expected.
#[tokio::test]
async fn real_classifier_route_is_decided() {
    let p = load(&shipped());
    let method = Method::POST;
    let uri: Uri = "/v1.41/containers/create?name=web".parse().unwrap();
    let rt = crate::classify::classify(&method, &uri).unwrap();
    assert_eq!(rt.op.id.as_str(), "ContainerCreate");
    let headers = HeaderMap::new();
    let body = fixture("docker-cli-run-privileged.json");
    let who = identity("dana", &["developer"], &[]);
    let facts = Facts {
        method: &method,
        uri: &uri,
        headers: &headers,
        route: &rt,
        api_version: rt.api_version.as_deref(),
        body: Some(&body),
        identity: &who,
        client: "127.0.0.1:1".parse().unwrap(),
        resources: &[],
    };
    let d = p.decide(&facts).await;
    assert!(!d.allow);
    assert!(d
        .reasons
        .iter()
        .any(|r| r.contains("privileged containers")));
    let viewer = identity("vic", &["viewer"], &[]);
    let list = Uri::from_static("/v1.41/containers/json?all=1");
    let get = Method::GET;
    let rt = crate::classify::classify(&get, &list).unwrap();
    let facts = Facts {
        method: &get,
        uri: &list,
        headers: &headers,
        route: &rt,
        api_version: rt.api_version.as_deref(),
        body: None,
        identity: &viewer,
        client: "127.0.0.1:1".parse().unwrap(),
        resources: &[],
    };
    assert!(p.decide(&facts).await.allow);
}

/// Copies the shipped pack into a temporary directory and adds `extra`
/// files.
fn pack_with(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(shipped()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    for (name, text) in extra {
        write(dir.path(), name, text);
    }
    dir
}

fn failed_tests(dir: &Path) -> Vec<String> {
    testing::run_tests(dir)
        .unwrap()
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{}: {:?}", r.name, r.detail))
        .collect()
}

/// README's worked example, written with the `body` helper of sandbox.rego.
/// `ports.rego` sorts before `sandbox.rego`, so it refers to a rule of a
/// later file.
const PORTS_WITH_BODY_HELPER: &str = r#"package docker.authz

import rego.v1

deny contains msg if {
	restricted
	op == "ContainerCreate"
	bindings := body.HostConfig.PortBindings
	is_object(bindings)
	count(bindings) > 0
	msg := sprintf("%s policy: publishing ports is not allowed (HostConfig.PortBindings); ask an admin or drop -p", [label])
}
"#;

fn ports_test(package: &str) -> String {
    format!(
        r#"package {package}

import rego.v1

import data.docker.authz

create(groups, port_bindings) := {{
	"operation": {{"id": "ContainerCreate", "params": {{}}, "resource": "containers", "readonly": false}},
	"user": {{"name": "dana", "groups": groups, "scopes": [], "auth_method": "certificate"}},
	"request": {{"method": "POST", "path": "/containers/create", "query": {{}}, "headers": {{}},
	            "body": {{"Image": "alpine", "HostConfig": {{"PortBindings": port_bindings}}}}}},
	"BindMounts": [],
}}

published := {{"80/tcp": [{{"HostIp": "", "HostPort": "8080"}}]}}

test_developer_may_not_publish if {{
	some msg in authz.deny with input as create(["developer"], published)
	contains(msg, "publishing ports is not allowed")
}}

test_developer_without_ports if {{
	count(authz.deny) == 0 with input as create(["developer"], {{}})
	count(authz.deny) == 0 with input as create(["developer"], null)
}}

test_admin_may_publish if {{
	count(authz.deny) == 0 with input as create(["admin"], published)
}}
"#
    )
}

fn publish_request() -> Req {
    create_hc(json!({"PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}))
}

/// Bug: a second test package nested under `docker.authz` (the shipped
/// `sandbox_test` is one) made every test fail with "cyclic evaluation".
#[test]
fn nested_test_package_does_not_cycle() {
    let dir = pack_with(&[
        ("ports.rego", PORTS_WITH_BODY_HELPER),
        ("ports_test.rego", &ports_test("docker.authz.ports_test")),
    ]);
    let failed = failed_tests(dir.path());
    assert!(failed.is_empty(), "{failed:#?}");
    let results = testing::run_tests(dir.path()).unwrap();
    assert!(results
        .iter()
        .any(|r| r.name == "data.docker.authz.ports_test.test_developer_may_not_publish"));
}

/// Bug: a deny rule using the pack's `body` helper (defined in a later
/// file) denied in the gateway but never fired under `moat policy test`.
#[tokio::test]
async fn body_helper_deny_fires_in_tests_like_gateway() {
    let dir = pack_with(&[
        ("ports.rego", PORTS_WITH_BODY_HELPER),
        ("ports_test.rego", &ports_test("docker.authz_test")),
    ]);
    let failed = failed_tests(dir.path());
    assert!(failed.is_empty(), "{failed:#?}");
    let dev = identity("dana", &["developer"], &[]);
    let gateway = decide(&load(dir.path()), &publish_request(), &dev).await;
    assert!(!gateway.allow);
    let mut interp = testing::Interpreter::new(dir.path()).unwrap();
    let tests = interpret(&mut interp, &publish_request(), &dev);
    assert_eq!(tests.reasons, gateway.reasons);
}

/// Rules that use helpers defined further down, in the first file or a
/// later one, decide the same under `moat policy test` as in the gateway.
#[tokio::test]
async fn forward_references_decide_alike() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.rego",
        "package docker.authz\nimport rego.v1\nallow if later_allow\nlater_allow := input.ok\n",
    );
    write(dir.path(), "b.rego", "package docker.authz\nimport rego.v1\ndeny contains m if { m := sprintf(\"no %v\", [x]) }\nx := y\n");
    write(
        dir.path(),
        "c.rego",
        "package docker.authz\nimport rego.v1\ny := input.x\n",
    );
    let p = load(dir.path());
    let mut interp = testing::Interpreter::new(dir.path()).unwrap();
    for doc in [
        json!({"ok": true}),
        json!({"ok": true, "x": 1}),
        json!({"x": 2}),
    ] {
        let gateway = p.decide_input(doc.clone(), "Op", "u");
        let raw = interp.raw(doc.clone()).unwrap();
        let tests = eval::decide(raw, "Op", "u", &gateway.revision);
        assert_eq!(
            (tests.allow, &tests.reasons),
            (gateway.allow, &gateway.reasons),
            "{doc}"
        );
    }
    assert!(!p.decide_input(json!({"ok": true, "x": 1}), "Op", "u").allow);
}

/// `moat policy test` must decide every case of the table exactly as the
/// gateway's RVM does, for the shipped pack and for the pack with a rule
/// that refers to a helper of a later file.
#[tokio::test]
async fn interpreter_and_rvm_agree_on_every_case() {
    let who = people();
    let extended = pack_with(&[("ports.rego", PORTS_WITH_BODY_HELPER)]);
    for dir in [shipped(), extended.path().to_path_buf()] {
        let p = load(&dir);
        let mut interp = testing::Interpreter::new(&dir).unwrap();
        let mut cases = cases(&who);
        cases.push(("publish", publish_request(), &who.dev, false, ""));
        let mut mismatches = Vec::new();
        for (name, r, id, _, _) in &cases {
            let gateway = decide(&p, r, id).await;
            let mut tests = interpret(&mut interp, r, id);
            tests.revision = gateway.revision.clone();
            let (mut a, mut b) = (gateway.reasons.clone(), tests.reasons.clone());
            a.sort();
            b.sort();
            if gateway.allow != tests.allow || a != b {
                mismatches.push(format!(
                    "{name}: gateway allow={} {a:?}, policy test allow={} {b:?}",
                    gateway.allow, tests.allow
                ));
            }
        }
        assert!(mismatches.is_empty(), "{}: {mismatches:#?}", dir.display());
    }
}
