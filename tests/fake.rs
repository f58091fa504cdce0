//! Tests that need neither root nor a real dockerd: moat in-process in front
//! of the fake engine of `tests/support/fake_engine.rs`. Logic that asks the
//! engine about objects (resolving names, reading owners) is tested here;
//! `scripts/check.sh` runs these.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/mod.rs"]
mod support;

use serde_json::json;
use support::{pki, raw, FakeEngine, Kind, Moat, MoatOptions};

#[test]
fn the_fake_engine_resolves_references_as_the_daemon_does() {
    let fake = FakeEngine::start();
    let web = fake.add(Kind::Container, "web", &[("owner", "alice")]);
    let db = fake.add(Kind::Container, "db", &[("owner", "bob")]);
    let image = fake.add(Kind::Image, "busybox", &[]);
    fake.add(Kind::Volume, "data", &[("owner", "alice")]);
    let net = fake.add(Kind::Network, "backend", &[]);
    let exec = fake.add_exec(&web);

    // By name, by full id, by unique id prefix, with a version prefix.
    for reference in ["web", &web, &web[..12]] {
        let (status, body) = fake.get(&format!("/v1.41/containers/{reference}/json"));
        assert_eq!(status, 200, "{reference}");
        assert_eq!(body["Id"], web.as_str());
        assert_eq!(body["Config"]["Labels"], json!({"owner": "alice"}));
    }
    // Missing and ambiguous references are 404s with the daemon's words.
    let (status, body) = fake.get("/containers/nope/json");
    assert_eq!(status, 404);
    assert_eq!(body["message"], "No such container: nope");
    let common: String = web
        .chars()
        .zip(db.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a)
        .collect();
    if !common.is_empty() {
        let (status, body) = fake.get(&format!("/containers/{common}/json"));
        assert_eq!(status, 404);
        assert!(body["message"].as_str().unwrap().contains("multiple IDs"));
    }
    // Images by tag (`latest` implied) or id; volumes by name; networks by
    // name or id; execs by id.
    assert_eq!(fake.get("/images/busybox/json").1["Id"], image.as_str());
    assert_eq!(
        fake.get("/images/busybox:latest/json").1["Id"],
        image.as_str()
    );
    assert_eq!(fake.get(&format!("/images/{image}/json")).0, 200);
    assert_eq!(fake.get("/volumes/data").1["Labels"]["owner"], "alice");
    assert_eq!(fake.get("/volumes/nope").0, 404);
    assert_eq!(fake.get("/networks/backend").1["Id"], net.as_str());
    assert_eq!(
        fake.get(&format!("/exec/{exec}/json")).1["ContainerID"],
        web.as_str()
    );

    // Lists filter by label, in both of the daemon's filter forms.
    let (_, list) =
        fake.get("/containers/json?filters=%7B%22label%22%3A%5B%22owner%3Dalice%22%5D%7D");
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["Names"], json!(["/web"]));
    let (_, list) =
        fake.get("/containers/json?filters=%7B%22label%22%3A%7B%22owner%22%3Atrue%7D%7D");
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (_, vols) = fake.get("/volumes");
    assert_eq!(vols["Volumes"][0]["Name"], "data");

    // Unknown routes are 404; a failing engine fails everything but /_ping.
    assert_eq!(fake.get("/nonsense").0, 404);
    fake.fail(Some((500, "boom")));
    assert_eq!(
        fake.get("/containers/web/json"),
        (500, json!({"message": "boom"}))
    );
    assert_eq!(fake.get("/_ping").0, 200);
    fake.fail(None);
    assert_eq!(fake.get("/containers/web/json").0, 200);
    assert!(fake
        .requests()
        .contains(&"GET /v1.41/containers/web/json".to_string()));
}

#[test]
fn moat_forwards_to_the_fake_engine_and_answers_its_errors() {
    let fake = FakeEngine::start();
    let web = fake.add(Kind::Container, "web", &[("owner", "alice")]);
    let moat = Moat::start_with(MoatOptions {
        engine_socket: Some(fake.socket.clone()),
        ..Default::default()
    });
    let admin = pki().client("alice", "admin");
    let get = |target: &str| {
        raw::exchange(
            moat.addr,
            &admin,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap()
    };
    let resp = get("/v1.41/containers/web/json");
    assert_eq!(raw::status(&resp), 200, "{resp}");
    assert!(resp.contains(r#""owner":"alice""#), "{resp}");
    // An inspect is its own lookup: the request itself, once, and not
    // again by id.
    assert!(fake
        .requests()
        .contains(&"GET /v1.41/containers/web/json".to_string()));
    assert!(!fake
        .requests()
        .contains(&format!("GET /v1.41/containers/{web}/json")));
    let resp = get("/v1.41/containers/nope/json");
    assert_eq!(raw::status(&resp), 404, "{resp}");
    assert!(resp.contains("No such container: nope"), "{resp}");
}

// ------------------------------------------------------------ resolution

/// moat in front of `fake`, and a request sender as an admin (the shipped
/// pack lets admins do anything, so what is tested is resolution).
fn admin_moat(fake: &FakeEngine, limits: Option<&str>) -> (Moat, impl Fn(&str, &str) -> String) {
    let moat = Moat::start_with(MoatOptions {
        engine_socket: Some(fake.socket.clone()),
        limits_yaml: limits.map(String::from),
        ..Default::default()
    });
    let admin = pki().client("ada", "admin");
    let addr = moat.addr;
    let send = move |method: &str, target: &str| {
        raw::exchange(
            addr,
            &admin,
            format!(
                "{method} {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap()
    };
    (moat, send)
}

/// What moat forwarded (or asked) to the fake engine under `prefix`.
fn sent(fake: &FakeEngine, needle: &str) -> Vec<String> {
    fake.requests()
        .into_iter()
        .filter(|r| r.contains(needle))
        .collect()
}

#[test]
fn a_rename_between_check_and_use_cannot_switch_the_target() {
    let fake = FakeEngine::start();
    let web = fake.add(Kind::Container, "web", &[]);
    let other = fake.add(Kind::Container, "other", &[]);
    // Right after moat's lookup of `web`, `web` and `other` trade names.
    fake.swap_names_after("GET /containers/web/json", &web, &other);
    let (_moat, send) = admin_moat(&fake, None);
    let _ = send("POST", "/v1.41/containers/web/stop");

    // The swap did happen: `web` now names the other container.
    assert_eq!(fake.get("/containers/web/json").1["Id"], other.as_str());
    // And moat forwarded the container it looked up, by id.
    assert_eq!(
        sent(&fake, "/stop"),
        [format!("POST /v1.41/containers/{web}/stop")]
    );
}

#[test]
fn names_and_id_prefixes_are_forwarded_as_the_full_id() {
    let fake = FakeEngine::start();
    let web = fake.add(Kind::Container, "web", &[]);
    let exec = fake.add_exec(&web);
    let (_moat, send) = admin_moat(&fake, None);
    for reference in ["web", &web[..10], &web] {
        let resp = send(
            "POST",
            &format!("/v1.41/containers/{reference}/kill?signal=HUP"),
        );
        assert_ne!(raw::status(&resp), 503, "{resp}");
    }
    assert_eq!(
        sent(&fake, "/kill"),
        vec![format!("POST /v1.41/containers/{web}/kill?signal=HUP"); 3]
    );
    // An exec is resolved too (then its container), by its prefix.
    let _ = send(
        "POST",
        &format!("/v1.41/exec/{}/resize?h=1&w=1", &exec[..12]),
    );
    assert_eq!(
        sent(&fake, "/resize"),
        [format!("POST /v1.41/exec/{exec}/resize?h=1&w=1")]
    );
    assert_eq!(
        sent(&fake, "GET /exec/"),
        [format!("GET /exec/{}/json", &exec[..12])]
    );
    // Its container: once for the kill by full id, once for the exec.
    assert_eq!(sent(&fake, &format!("GET /containers/{web}/json")).len(), 2);
}

#[test]
fn an_inspect_is_its_own_lookup_and_costs_the_engine_one_request() {
    let fake = FakeEngine::start();
    let web = fake.add(Kind::Container, "web", &[]);
    let (moat, send) = admin_moat(&fake, None);
    let resp = send("GET", "/v1.41/containers/web/json?size=1");
    assert_eq!(raw::status(&resp), 200, "{resp}");
    assert!(resp.contains(&web), "{resp}");
    // moat asked the engine once, with the request itself, and forwarded
    // nothing more.
    assert_eq!(
        sent(&fake, "/containers/"),
        ["GET /v1.41/containers/web/json?size=1"]
    );
    // The same for the other kinds' inspects.
    fake.add(Kind::Volume, "data", &[]);
    let _ = send("GET", "/v1.41/volumes/data");
    assert_eq!(sent(&fake, "/volumes/"), ["GET /v1.41/volumes/data"]);
    // A viewer's inspect of a container that is not theirs is refused: the
    // engine's answer, already in moat's hands, is not given.
    let secret = fake.add(
        Kind::Container,
        "secret",
        &[("io.moat.owner", "bob"), ("io.moat.scope", "user:bob")],
    );
    let viewer = pki().client("vera", "viewer");
    let resp = raw::exchange(
        moat.addr,
        &viewer,
        b"GET /v1.41/containers/secret/json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(raw::status(&resp), 403, "{resp}");
    assert!(!resp.contains(&secret), "{resp}");
}

#[test]
fn an_unknown_object_gets_the_engine_s_own_404_and_nothing_is_forwarded() {
    let fake = FakeEngine::start();
    let (_moat, send) = admin_moat(&fake, None);
    let resp = send("POST", "/v1.41/containers/ghost/start");
    assert_eq!(raw::status(&resp), 404, "{resp}");
    assert!(
        resp.contains(r#"{"message":"No such container: ghost"}"#),
        "{resp}"
    );
    let resp = send("DELETE", "/v1.41/volumes/ghost");
    assert_eq!(raw::status(&resp), 404, "{resp}");
    assert!(resp.contains("get ghost: no such volume"), "{resp}");
    assert!(sent(&fake, "/start").is_empty());
    assert!(sent(&fake, "DELETE").is_empty());
}

#[test]
fn an_engine_that_fails_lookups_gives_503_and_nothing_is_forwarded() {
    let fake = FakeEngine::start();
    let web = fake.add(Kind::Container, "web", &[]);
    let (_moat, send) = admin_moat(&fake, Some("  shutdown_grace: 2s\n  resolve_timeout: 1s\n"));
    // moat learns the engine's API versions first (a request that works).
    assert_eq!(raw::status(&send("GET", "/v1.41/containers/web/json")), 200);

    fake.fail(Some((500, "internal detail: /var/lib/docker is on fire")));
    let resp = send("POST", "/v1.41/containers/web/stop");
    assert_eq!(raw::status(&resp), 503, "{resp}");
    assert!(
        resp.contains("moat could not look up container `web` in the engine"),
        "{resp}"
    );
    assert!(!resp.contains("on fire"), "engine internals leaked: {resp}");

    // An engine that does not answer: 503 after limits.resolve_timeout.
    fake.fail(None);
    fake.stall(true);
    let resp = send("POST", "/v1.41/containers/web/stop");
    assert_eq!(raw::status(&resp), 503, "{resp}");
    assert!(resp.contains("limits.resolve_timeout"), "{resp}");
    fake.stall(false);

    assert!(sent(&fake, "/stop").iter().all(|r| !r.starts_with("POST")));
    assert!(!sent(&fake, &web).iter().any(|r| r.contains("/stop")));
}

#[test]
fn a_request_naming_too_many_objects_is_refused_naming_the_limit() {
    let fake = FakeEngine::start();
    for i in 0..3 {
        fake.add(Kind::Container, &format!("c{i}"), &[]);
    }
    let (moat, _) = admin_moat(
        &fake,
        Some("  shutdown_grace: 2s\n  max_resolved_objects: 2\n"),
    );
    let body =
        json!({"Image": "busybox", "HostConfig": {"VolumesFrom": ["c0", "c1", "c2"]}}).to_string();
    let resp = raw::exchange(
        moat.addr,
        &pki().client("ada", "admin"),
        format!(
            "POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(raw::status(&resp), 400, "{resp}");
    assert!(resp.contains("limits.max_resolved_objects"), "{resp}");
    assert!(sent(&fake, "/containers/c").is_empty(), "nothing looked up");
    assert!(sent(&fake, "/create").is_empty());
}

// ------------------------------------------------------------ ownership

/// A ContainerCreate as developer `alice` mounting volume `name` (`-v`).
fn create_mounting(moat: &Moat, name: &str) -> String {
    let body =
        json!({"Image": "busybox", "HostConfig": {"Binds": [format!("{name}:/data")]}}).to_string();
    raw::exchange(
        moat.addr,
        &pki().client("alice", "developer"),
        format!(
            "POST /v1.41/containers/create HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap()
}

/// A named volume a create mounts and that does not exist is created by
/// moat, labelled as the caller's; if one of that name appears between the
/// lookup and moat's create and is not the caller's, the container create
/// is refused (409) and never forwarded.
#[test]
fn a_volume_that_appears_between_lookup_and_create_is_not_taken_over() {
    let fake = FakeEngine::start();
    let moat = Moat::start_with(MoatOptions {
        engine_socket: Some(fake.socket.clone()),
        ..Default::default()
    });

    // No race: moat creates `fresh` with alice's labels, then forwards.
    let _ = create_mounting(&moat, "fresh");
    let (status, volume) = fake.get("/volumes/fresh");
    assert_eq!(status, 200, "{volume}");
    assert_eq!(volume["Labels"]["io.moat.owner"], "alice", "{volume}");
    assert_eq!(volume["Labels"]["io.moat.scope"], "user:alice", "{volume}");
    assert_eq!(sent(&fake, "POST /v1.41/containers/create").len(), 1);

    // bob's `data` appears right after moat looked it up.
    fake.add_after(
        "GET /volumes/data",
        Kind::Volume,
        "data",
        &[("io.moat.owner", "bob"), ("io.moat.scope", "user:bob")],
    );
    let resp = create_mounting(&moat, "data");
    assert_eq!(raw::status(&resp), 409, "{resp}");
    assert!(
        resp.contains("volume `data` was created meanwhile by someone else (owner: bob)"),
        "{resp}"
    );
    assert_eq!(
        sent(&fake, "POST /v1.41/containers/create").len(),
        1,
        "forwarded"
    );
    assert_eq!(
        fake.get("/volumes/data").1["Labels"]["io.moat.owner"],
        "bob"
    );
}
