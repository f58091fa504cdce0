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
    fake.add(Kind::Container, "web", &[("owner", "alice")]);
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
    assert!(fake
        .requests()
        .contains(&"GET /v1.41/containers/web/json".to_string()));
    let resp = get("/v1.41/containers/nope/json");
    assert_eq!(raw::status(&resp), 404, "{resp}");
    assert!(resp.contains("No such container: nope"), "{resp}");
}
