//! Resolution (issue 15, part 2), end to end against the real engine: the
//! objects a request names are looked up before the decision, the policy
//! sees them with their owners and host access (`input.resources`), and the
//! engine receives the canonical ids the policy saw, in the path and in the
//! body. The rename race and a failing engine are in `tests/fake.rs` (the
//! fake engine can swap names between two requests, and fail on demand).

use serde_json::Value;

use crate::support::{self, engine, image, pki, raw, unique, Docker, Moat, MoatOptions};

/// Allows everything except touching an object owned by someone else, or
/// reaching the host through another object: the two rules ownership needs,
/// in a few lines, reading only `input.resources`.
const OWNER_POLICY: &str = r#"package docker.authz

import rego.v1

default allow := true

deny contains msg if {
	some r in input.resources
	r.owner.user != input.user.name
	msg := sprintf("test policy: %s %s (%s) is owned by %s", [r.kind, r.ref, r.position, r.owner.user])
}

# The engine's default cgroup namespace is the host's on cgroup v1 (the
# engine under test may run there): not held against a reference here.
deny contains msg if {
	some r in input.resources
	r.position != "path"
	some access in r.host_access
	access != "cgroupns=host"
	msg := sprintf("test policy: %s %s (%s) reaches the host: %s", [r.kind, r.ref, r.position, access])
}
"#;

fn owner_moat() -> Moat {
    let policy = support::tempdir("moat-resolve-policy-");
    std::fs::write(policy.join("owner.rego"), OWNER_POLICY).unwrap();
    Moat::start_with(MoatOptions {
        policy_dir: Some(policy),
        audit_yaml: Some("  file: audit/audit.log\n  level: request\n".into()),
        ..Default::default()
    })
}

/// A container made directly on the engine (setup, not under test), with
/// moat's owner labels for `owner`; returns its id.
fn direct_container(name: &str, owner: &str, host_config: Value) -> String {
    let body = serde_json::json!({
        "Image": image(), "Cmd": ["sleep", "300"],
        "Labels": {"io.moat.owner": owner, "io.moat.scope": format!("user:{owner}")},
        "HostConfig": host_config,
    });
    let (status, created) = engine().api(
        "POST",
        &format!("/containers/create?name={name}"),
        Some(&body),
    );
    assert_eq!(status, 201, "{created}");
    let (status, started) = engine().api("POST", &format!("/containers/{name}/start"), None);
    assert_eq!(status, 204, "{started}");
    created["Id"].as_str().unwrap().to_string()
}

fn inspect(path: &str) -> Value {
    let (status, v) = engine().api("GET", path, None);
    assert_eq!(status, 200, "{path}: {v}");
    v
}

/// The policy input recorded for each decided `op`, in order.
fn inputs(moat: &Moat, op: &str) -> Vec<Value> {
    moat.audit_records()
        .into_iter()
        .filter(|r| r["stage"] == "decision" && r["request"]["operation"] == op)
        .map(|r| r["input"].clone())
        .collect()
}

#[test]
fn a_name_an_id_prefix_and_a_full_id_all_forward_the_canonical_id() {
    let moat = owner_moat();
    let d = Docker::new(&moat, &pki().client("ada", "admin"));
    let name = unique("resolve-ref");
    let id = direct_container(&name, "ada", serde_json::json!({}));
    let given = [name.as_str(), &id[..12], id.as_str()];
    for (shares, reference) in [512, 640, 768].iter().zip(given) {
        d.ok(&["update", "--cpu-shares", &shares.to_string(), reference]);
        assert_eq!(
            inspect(&format!("/containers/{id}/json"))["HostConfig"]["CpuShares"],
            *shares
        );
    }
    let seen = inputs(&moat, "ContainerUpdate");
    assert_eq!(seen.len(), 3, "{seen:#?}");
    for (input, reference) in seen.iter().zip(given) {
        // The policy saw the id in the path it decided on, and the
        // reference as given in the resource.
        assert_eq!(input["operation"]["params"]["name"], id.as_str());
        assert_eq!(input["request"]["path"], format!("/containers/{id}/update"));
        let r = &input["resources"][0];
        assert_eq!(r["ref"], reference);
        assert_eq!(r["id"], id.as_str());
        assert_eq!(r["name"], name.as_str());
        assert_eq!(r["kind"], "container");
        assert_eq!(r["position"], "path");
        assert_eq!(r["owner"]["user"], "ada");
        assert_eq!(r["owner"]["scope"], "user:ada");
        let access: Vec<&Value> = r["host_access"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| *a != "cgroupns=host")
            .collect();
        assert!(access.is_empty(), "{r}");
    }
    engine().remove(&[&name], &[], &[]);
}

#[test]
fn an_unknown_object_gets_the_engine_s_own_404() {
    let moat = owner_moat();
    let admin = pki().client("ada", "admin");
    let ghost = unique("ghost");
    let (engine_status, engine_body) =
        engine().api("POST", &format!("/v1.41/containers/{ghost}/stop"), None);
    let resp = raw::exchange(
        moat.addr,
        &admin,
        format!(
            "POST /v1.41/containers/{ghost}/stop HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(engine_status, 404);
    assert_eq!(raw::status(&resp), engine_status, "{resp}");
    let body: Value = serde_json::from_str(resp.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["message"], engine_body["message"], "{resp}");

    // The docker CLI prints the engine's words; a volume and a network too.
    let d = Docker::new(&moat, &admin);
    let stderr = d.fails(&["volume", "rm", &ghost]);
    assert!(stderr.contains("no such volume"), "{stderr}");
    let stderr = d.fails(&["network", "rm", &ghost]);
    assert!(
        stderr.contains(&format!("network {ghost} not found")),
        "{stderr}"
    );
    // Nothing was decided, so nothing was forwarded.
    assert!(inputs(&moat, "ContainerStop").is_empty());
    assert!(inputs(&moat, "VolumeDelete").is_empty());
}

#[test]
fn body_references_are_forwarded_as_ids_and_the_containers_work() {
    let moat = owner_moat();
    let d = Docker::new(&moat, &pki().client("ada", "admin"));
    let (vol, net, a, b, c) = (
        unique("resolve-vol"),
        unique("resolve-net"),
        unique("resolve-a"),
        unique("resolve-b"),
        unique("resolve-c"),
    );
    d.ok(&["volume", "create", &vol]);
    let net_id = d.ok(&["network", "create", &net]).trim().to_string();
    let a_id = d
        .ok(&[
            "run",
            "-d",
            "--name",
            &a,
            "--ipc",
            "shareable",
            "-v",
            &format!("{vol}:/data"),
            "--network",
            &net,
            image(),
            "sleep",
            "300",
        ])
        .trim()
        .to_string();
    d.ok(&[
        "run",
        "-d",
        "--name",
        &b,
        "--network",
        &net,
        image(),
        "sleep",
        "300",
    ]);

    // PID and IPC namespaces and volumes of A, by name; A's sleep is seen.
    let out = d.ok(&[
        "run",
        "--rm",
        "--pid",
        &format!("container:{a}"),
        "--ipc",
        &format!("container:{a}"),
        "--volumes-from",
        &format!("{a}:ro"),
        image(),
        "sh",
        "-c",
        "test -d /data && ps | grep -c '[s]leep 300$'",
    ]);
    assert_eq!(out.trim(), "1", "{out}");
    // The network namespace of A.
    d.ok(&[
        "run",
        "--rm",
        "--network",
        &format!("container:{a}"),
        image(),
        "true",
    ]);
    // A user network by name, with a link (an alias on that network).
    d.ok(&[
        "create",
        "--name",
        &c,
        "--network",
        &net,
        "--link",
        &b,
        image(),
        "true",
    ]);

    let creates = inputs(&moat, "ContainerCreate");
    assert_eq!(creates.len(), 5, "{creates:#?}");
    let hc = &creates[2]["request"]["body"]["HostConfig"];
    assert_eq!(hc["PidMode"], format!("container:{a_id}"));
    assert_eq!(hc["IpcMode"], format!("container:{a_id}"));
    assert_eq!(hc["VolumesFrom"], serde_json::json!([format!("{a_id}:ro")]));
    let positions: Vec<&str> = creates[2]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["position"].as_str().unwrap())
        .collect();
    assert_eq!(
        positions,
        [
            "HostConfig.PidMode",
            "HostConfig.IpcMode",
            "HostConfig.VolumesFrom[0]"
        ]
    );
    assert_eq!(
        creates[3]["request"]["body"]["HostConfig"]["NetworkMode"],
        format!("container:{a_id}")
    );
    // The named volume of A's create, and its network.
    let a_resources = creates[0]["resources"].as_array().unwrap();
    assert!(
        a_resources
            .iter()
            .any(|r| r["kind"] == "volume" && r["id"] == vol.as_str() && r["exists"] == true),
        "{a_resources:#?}"
    );
    let body = &creates[4]["request"]["body"];
    assert_eq!(body["HostConfig"]["NetworkMode"], net_id.as_str());
    let endpoints = body["NetworkingConfig"]["EndpointsConfig"]
        .as_object()
        .unwrap();
    assert_eq!(endpoints.keys().collect::<Vec<_>>(), [&net_id]);
    let b_id = inspect(&format!("/containers/{b}/json"))["Id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        endpoints[&net_id]["Links"],
        serde_json::json!([format!("{b_id}:{b}")])
    );
    // The engine keeps the network under its name, as with a name.
    let networks = inspect(&format!("/containers/{c}/json"))["NetworkSettings"]["Networks"].clone();
    assert!(networks.get(&net).is_some(), "{networks}");
    engine().remove(&[&a, &b, &c], &[&vol], &[&net]);
}

#[test]
fn the_policy_sees_owners_and_host_access_of_what_a_request_names() {
    let moat = owner_moat();
    let admin = pki().client("ada", "admin");
    let d = Docker::new(&moat, &admin);
    let (bobs, hostnet) = (unique("resolve-bob"), unique("resolve-hostnet"));
    let bobs_id = direct_container(&bobs, "bob", serde_json::json!({}));
    direct_container(&hostnet, "ada", serde_json::json!({"NetworkMode": "host"}));

    let stderr = d.fails(&["stop", &bobs]);
    assert!(
        stderr.contains(&format!(
            "test policy: container {bobs} (path) is owned by bob"
        )),
        "{stderr}"
    );
    let stderr = d.fails(&["run", "--rm", "--volumes-from", &bobs, image(), "true"]);
    assert!(
        stderr.contains(&format!(
            "container {bobs} (HostConfig.VolumesFrom[0]) is owned by bob"
        )),
        "{stderr}"
    );
    // A commit names its container in the query.
    let img = unique("resolve-commit");
    let stderr = d.fails(&["commit", &bobs, &img]);
    assert!(
        stderr.contains(&format!(
            "test policy: container {bobs} (query.container) is owned by bob"
        )),
        "{stderr}"
    );
    assert_eq!(
        engine().api("GET", &format!("/images/{img}/json"), None).0,
        404
    );
    // ada's own host-network container: hers, but it reaches the host.
    let stderr = d.fails(&[
        "run",
        "--rm",
        "--network",
        &format!("container:{hostnet}"),
        image(),
        "true",
    ]);
    assert!(
        stderr.contains(&format!(
            "container {hostnet} (HostConfig.NetworkMode) reaches the host: network=host"
        )),
        "{stderr}"
    );
    // An exec in bob's container: its owner is the container's.
    let (status, exec) = engine().api(
        "POST",
        &format!("/containers/{bobs}/exec"),
        Some(&serde_json::json!({"Cmd": ["true"]})),
    );
    assert_eq!(status, 201, "{exec}");
    let exec_id = exec["Id"].as_str().unwrap();
    let body = r#"{"Detach":true}"#;
    let resp = raw::exchange(
        moat.addr,
        &admin,
        format!(
            "POST /v1.41/exec/{exec_id}/start HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(raw::status(&resp), 403, "{resp}");
    assert!(
        resp.contains(&format!(
            "test policy: exec {exec_id} (path) is owned by bob"
        )),
        "{resp}"
    );
    let starts = inputs(&moat, "ExecStart");
    assert_eq!(
        starts[0]["resources"][0]["exec"]["container_id"],
        bobs_id.as_str()
    );

    // Nothing was changed: bob's container still runs.
    assert_eq!(
        inspect(&format!("/containers/{bobs}/json"))["State"]["Running"],
        true
    );
    engine().remove(&[&bobs, &hostnet], &[], &[]);
}

#[test]
fn a_named_volume_a_create_will_make_is_created_labelled_for_its_creator() {
    let moat = Moat::start();
    let dev = Docker::new(&moat, &pki().client("dora", "developer"));
    let vol = unique("resolve-new-vol");
    dev.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{vol}:/data"),
        image(),
        "touch",
        "/data/x",
    ]);
    let labels = inspect(&format!("/volumes/{vol}"))["Labels"].clone();
    assert_eq!(labels["io.moat.owner"], "dora", "{labels}");
    assert_eq!(labels["io.moat.scope"], "user:dora", "{labels}");
    // Hers from now on: she mounts it again; another developer may not.
    dev.ok(&[
        "run",
        "--rm",
        "-v",
        &format!("{vol}:/data"),
        image(),
        "test",
        "-f",
        "/data/x",
    ]);
    let other = Docker::new(&moat, &pki().client("otto", "developer"));
    let stderr = other.fails(&[
        "run",
        "--rm",
        "-v",
        &format!("{vol}:/data"),
        image(),
        "true",
    ]);
    assert!(stderr.contains(&format!("volume {vol}")), "{stderr}");
    assert!(stderr.contains("dora"), "{stderr}");
    engine().remove(&[], &[&vol], &[]);
}
