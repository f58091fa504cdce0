//! Issue 14: the policy decides what the engine will actually do.
//!
//! The differential test is the mechanism that finds the class of bugs
//! (a body position or API version under which the daemon applies something
//! the policy did not see). It generates every case of the corpus in
//! `effective_corpus.json` (kept as data: fields × positions × API versions
//! for ContainerCreate, then ContainerStart with and without a body, exec
//! create, update and volume create), sends each through moat with a policy
//! that allows everything and an audit log at `level: request` (the body the
//! policy decided on), then inspects what the engine really made. It fails
//! when a security-relevant field the engine applied differs from what the
//! policy saw, unless moat refused the request (and then nothing may have
//! reached the engine). It also fails when moat refuses what it must pass
//! (the canonical positions), so refusing everything cannot make it green.
//!
//! The second half replays the attacks as a developer with the shipped
//! pack: refused at every version prefix, framed by length or chunked, and
//! nothing reaches the engine.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::support::{self, engine, image, pki, raw, unique, Moat, MoatOptions};

const LABEL: &str = "moat-differential";

fn corpus() -> Value {
    let text = std::fs::read_to_string(support::repo().join("tests/it/effective_corpus.json"))
        .expect("corpus");
    serde_json::from_str(&text).expect("corpus is JSON")
}

/// The engine's newest API version, from its own `GET /version`.
fn engine_newest() -> String {
    let (status, v) = engine().api("GET", "/version", None);
    assert_eq!(status, 200, "{v}");
    v["ApiVersion"].as_str().expect("ApiVersion").to_string()
}

/// The corpus' versions as path prefixes (`""` for none), without repeats.
fn prefixes(corpus: &Value) -> Vec<(String, String)> {
    let newest = engine_newest();
    let mut out: Vec<(String, String)> = Vec::new();
    for v in corpus["versions"].as_array().unwrap() {
        let v = v.as_str().unwrap();
        let (label, prefix) = match v {
            "none" => ("none".to_string(), String::new()),
            "newest" => (format!("newest ({newest})"), format!("/v{newest}")),
            v => (v.to_string(), format!("/v{v}")),
        };
        if !out.iter().any(|(_, p)| *p == prefix) {
            out.push((label, prefix));
        }
    }
    out
}

/// A raw request through moat; chunked or with a Content-Length.
fn request(method: &str, target: &str, body: Option<&str>, chunked: bool) -> Vec<u8> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n");
    match body {
        None => head.push_str("Content-Length: 0\r\n\r\n"),
        Some(b) if chunked => {
            head.push_str("Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
            // Two chunks, split mid-body.
            let mid = b.len() / 2;
            let (a, c) = b.split_at(mid);
            for part in [a, c] {
                if !part.is_empty() {
                    head.push_str(&format!("{:x}\r\n{part}\r\n", part.len()));
                }
            }
            head.push_str("0\r\n\r\n");
        }
        Some(b) => head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
    }
    head.into_bytes()
}

struct Answer {
    status: u16,
    id: String,
    body: Value,
    raw: String,
}

fn send(moat: &Moat, bundle: &support::Bundle, req: &[u8]) -> Answer {
    let raw = raw::exchange(moat.addr, bundle, req).unwrap_or_default();
    let id = raw
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-moat-request-id:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    let body = raw
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    Answer {
        status: raw::status(&raw),
        id,
        body,
        raw,
    }
}

/// Unset the way the daemon treats a zero value: null, missing, false, 0,
/// "", [] and {}.
fn unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// `want` (what the policy saw) is contained in `got` (what the engine
/// reports, which may add defaults such as `DeviceIDs: null`).
fn contained(want: &Value, got: &Value) -> bool {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => w
            .iter()
            .all(|(k, wv)| contained(wv, g.get(k).unwrap_or(&Value::Null))),
        (Value::Array(w), Value::Array(g)) => {
            w.len() == g.len() && w.iter().zip(g).all(|(a, b)| contained(a, b))
        }
        (w, g) => w == g || (unset(w) && unset(g)),
    }
}

fn normalize(kind: &str, v: &Value) -> Value {
    match (kind, v) {
        ("caps", Value::Array(caps)) => {
            let mut out: Vec<String> = caps
                .iter()
                .filter_map(Value::as_str)
                .map(|c| {
                    c.to_ascii_uppercase()
                        .trim_start_matches("CAP_")
                        .to_string()
                })
                .collect();
            out.sort();
            json!(out)
        }
        _ => v.clone(),
    }
}

/// Compares one field: what the policy saw against what the engine applied
/// (or, when the policy saw nothing, against what the engine gives a
/// container created without it at the same version).
fn field_differs(kind: &str, policy: &Value, engine: &Value, baseline: &Value) -> Option<String> {
    let (p, e, b) = (
        normalize(kind, policy),
        normalize(kind, engine),
        normalize(kind, baseline),
    );
    if !unset(&p) {
        (!contained(&p, &e)).then(|| format!("policy saw {p}, engine applied {e}"))
    } else {
        (!(unset(&e) || contained(&e, &b) && contained(&b, &e)))
            .then(|| format!("policy saw nothing, engine applied {e} (default: {b})"))
    }
}

/// The body the policy decided on, by request id, from the audit log.
fn audited_bodies(moat: &Moat) -> HashMap<String, Value> {
    moat.audit_records()
        .into_iter()
        .filter(|r| r["stage"] == "decision")
        .map(|r| {
            (
                r["id"].as_str().unwrap_or("").to_string(),
                r["request"]["body"].clone(),
            )
        })
        .collect()
}

/// Builds a create body with `field: value` at `position`.
fn create_body(position: &str, field: &str, value: &Value) -> Option<Value> {
    let mut body = json!({"Image": image(), "Cmd": ["true"], "Labels": {LABEL: "1"}});
    let o = body.as_object_mut().unwrap();
    match position {
        "canonical" => {
            o.insert("HostConfig".into(), json!({ field: value }));
        }
        "top_level" => {
            o.insert(field.into(), value.clone());
        }
        "host_config_null" => {
            o.insert("HostConfig".into(), Value::Null);
            o.insert(field.into(), value.clone());
        }
        "host_config_empty" => {
            o.insert("HostConfig".into(), json!({}));
            o.insert(field.into(), value.clone());
        }
        "lower_case_field" => {
            o.insert(
                "HostConfig".into(),
                json!({ field.to_ascii_lowercase(): value }),
            );
        }
        "lower_case_host_config" => {
            o.insert("hostconfig".into(), json!({ field: value }));
        }
        "upper_case_top_level" => {
            o.insert(field.to_ascii_uppercase(), value.clone());
        }
        _ => return None,
    }
    Some(body)
}

/// Positions at which moat must let a create through (the others may be
/// refused, and then nothing may reach the engine).
fn must_pass(position: &str) -> bool {
    matches!(
        position,
        "canonical" | "lower_case_field" | "lower_case_host_config"
    )
}

fn differential_moat() -> Moat {
    let policy = support::tempdir("moat-allow-all-");
    std::fs::write(
        policy.join("allow.rego"),
        "package docker.authz\n\ndefault allow := true\n",
    )
    .unwrap();
    Moat::start_with(MoatOptions {
        policy_dir: Some(policy),
        audit_yaml: Some("  file: audit/audit.log\n  level: request\n".into()),
        // Let the oldest versions through, so that their deprecated
        // positions are exercised, not merely refused by version.
        engine_yaml: Some("  min_api_version: \"1.12\"\n".into()),
        ..Default::default()
    })
}

/// A container made directly on the engine (setup, not under test).
fn direct_container(name: &str, cmd: &[&str], start: bool) {
    let (status, body) = engine().api(
        "POST",
        &format!("/containers/create?name={name}"),
        Some(&json!({"Image": image(), "Cmd": cmd, "Labels": {LABEL: "1"}, "HostConfig": {}})),
    );
    assert_eq!(status, 201, "{body}");
    if start {
        let (status, body) = engine().api("POST", &format!("/containers/{name}/start"), None);
        assert_eq!(status, 204, "{body}");
    }
}

fn inspect(name: &str) -> Value {
    let (status, v) = engine().api("GET", &format!("/containers/{name}/json"), None);
    assert_eq!(status, 200, "inspect {name}: {v}");
    v
}

fn cleanup() {
    let filters = format!("%7B%22label%22%3A%5B%22{LABEL}%22%5D%7D");
    for c in engine()
        .api(
            "GET",
            &format!("/containers/json?all=1&filters={filters}"),
            None,
        )
        .1
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let id = c["Id"].as_str().unwrap_or("");
        engine().api("DELETE", &format!("/containers/{id}?force=1&v=1"), None);
    }
    engine().api("POST", &format!("/volumes/prune?filters={filters}"), None);
}

/// What one case expects, checked once the audit log is complete.
enum Check {
    /// A created container: compare every corpus field.
    Created {
        name: String,
        prefix: String,
    },
    /// A started container: compare against its create's view.
    Started {
        name: String,
        prefix: String,
        create_id: String,
    },
    Exec {
        exec_id: String,
    },
    Updated {
        name: String,
        before: Value,
    },
    Volume {
        name: String,
    },
}

struct Case {
    what: String,
    answer: Answer,
    check: Check,
}

#[test]
fn differential_the_engine_applies_only_what_the_policy_saw() {
    image();
    cleanup();
    let corpus = corpus();
    let moat = differential_moat();
    let admin = pki().client("alice", "admin");
    let prefixes = prefixes(&corpus);
    let fields = corpus["create"].as_array().unwrap().clone();
    direct_container("moat-differential-donor", &["true"], false);

    // What the engine gives a container created without a HostConfig and
    // with an empty one, per version: the defaults a field the policy did
    // not see falls to (they differ: `Runtime` is filled in only when the
    // body has a HostConfig).
    let mut baseline: HashMap<(String, bool), Value> = HashMap::new();
    for (_, prefix) in &prefixes {
        for with_host_config in [false, true] {
            let name = unique("moat-diff-base");
            let mut body = json!({"Image": image(), "Cmd": ["true"], "Labels": {LABEL: "1"}});
            if with_host_config {
                body["HostConfig"] = json!({});
            }
            let (status, answer) = engine().api(
                "POST",
                &format!("{prefix}/containers/create?name={name}"),
                Some(&body),
            );
            assert_eq!(status, 201, "{answer}");
            baseline.insert(
                (prefix.clone(), with_host_config),
                inspect(&name)["HostConfig"].clone(),
            );
        }
    }

    let mut cases: Vec<Case> = Vec::new();
    let chunked_fields: Vec<&str> = corpus["chunked_fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();

    // ContainerCreate: every field at every position and version.
    for f in &fields {
        let field = f["field"].as_str().unwrap();
        for position in corpus["positions"].as_array().unwrap() {
            let position = position.as_str().unwrap();
            for (label, prefix) in &prefixes {
                let framings: &[bool] = if chunked_fields.contains(&field) {
                    &[false, true]
                } else {
                    &[false]
                };
                for &chunked in framings {
                    let body = create_body(position, field, &f["value"]).expect("position");
                    let name = unique("moat-diff");
                    let answer = send(
                        &moat,
                        &admin,
                        &request(
                            "POST",
                            &format!("{prefix}/containers/create?name={name}"),
                            Some(&body.to_string()),
                            chunked,
                        ),
                    );
                    let what = format!(
                        "create {field} at {position}, version {label}{}",
                        if chunked { ", chunked" } else { "" }
                    );
                    if must_pass(position) {
                        assert_eq!(answer.status, 201, "{what}: {}", answer.raw);
                    }
                    cases.push(Case {
                        what,
                        answer,
                        check: Check::Created {
                            name,
                            prefix: prefix.clone(),
                        },
                    });
                }
            }
        }
    }

    // ContainerStart, with and without a body, after a create through moat.
    for (label, prefix) in &prefixes {
        for sb in corpus["start_bodies"].as_array().unwrap() {
            let name = unique("moat-diff-start");
            let create = send(
                &moat,
                &admin,
                &request(
                    "POST",
                    &format!("{prefix}/containers/create?name={name}"),
                    Some(
                        &json!({"Image": image(), "Cmd": ["true"], "Labels": {LABEL: "1"}, "HostConfig": {"Privileged": false}})
                            .to_string(),
                    ),
                    false,
                ),
            );
            assert_eq!(create.status, 201, "{}", create.raw);
            let body = match &sb["body"] {
                Value::Null => None,
                b => Some(b.to_string()),
            };
            let answer = send(
                &moat,
                &admin,
                &request(
                    "POST",
                    &format!("{prefix}/containers/{name}/start"),
                    body.as_deref(),
                    sb["framing"] == "chunked",
                ),
            );
            let empty = sb["body"].is_null() || sb["body"] == json!({});
            let what = format!("start with body {} at version {label}", sb["body"]);
            if empty {
                assert_eq!(answer.status, 204, "{what}: {}", answer.raw);
            } else {
                assert_eq!(answer.status, 400, "{what}: {}", answer.raw);
                let started = inspect(&name)["State"]["StartedAt"].clone();
                assert_eq!(
                    started, "0001-01-01T00:00:00Z",
                    "{what}: the container was started"
                );
            }
            cases.push(Case {
                what,
                answer,
                check: Check::Started {
                    name,
                    prefix: prefix.clone(),
                    create_id: create.id,
                },
            });
        }
    }

    // Exec create, in a running container per version.
    for (label, prefix) in &prefixes {
        let name = unique("moat-diff-exec");
        direct_container(&name, &["sleep", "600"], true);
        for e in corpus["exec"].as_array().unwrap() {
            let answer = send(
                &moat,
                &admin,
                &request(
                    "POST",
                    &format!("{prefix}/containers/{name}/exec"),
                    Some(&e["body"].to_string()),
                    false,
                ),
            );
            let what = format!("exec {} at version {label}", e["body"]);
            assert_eq!(answer.status, 201, "{what}: {}", answer.raw);
            let exec_id = answer.body["Id"].as_str().unwrap_or("").to_string();
            cases.push(Case {
                what,
                answer,
                check: Check::Exec { exec_id },
            });
        }
    }

    // Update, each on a fresh container.
    for (label, prefix) in &prefixes {
        for u in corpus["update"].as_array().unwrap() {
            let name = unique("moat-diff-update");
            direct_container(&name, &["true"], false);
            let before = inspect(&name)["HostConfig"].clone();
            let answer = send(
                &moat,
                &admin,
                &request(
                    "POST",
                    &format!("{prefix}/containers/{name}/update"),
                    Some(&u["body"].to_string()),
                    false,
                ),
            );
            let what = format!("update {} at version {label}", u["body"]);
            assert_eq!(answer.status, 200, "{what}: {}", answer.raw);
            cases.push(Case {
                what,
                answer,
                check: Check::Updated { name, before },
            });
        }
    }

    // Volume create.
    for (label, prefix) in &prefixes {
        for v in corpus["volume"].as_array().unwrap() {
            let name = unique("moat-diff-vol");
            let mut body = v["body"].clone();
            let o = body.as_object_mut().unwrap();
            let name_key = if o.contains_key("driver") {
                "name"
            } else {
                "Name"
            };
            o.insert(name_key.into(), json!(name));
            o.insert("Labels".into(), json!({LABEL: "1"}));
            let answer = send(
                &moat,
                &admin,
                &request(
                    "POST",
                    &format!("{prefix}/volumes/create"),
                    Some(&body.to_string()),
                    false,
                ),
            );
            let what = format!("volume {} at version {label}", v["body"]);
            assert_eq!(answer.status, 201, "{what}: {}", answer.raw);
            cases.push(Case {
                what,
                answer,
                check: Check::Volume { name },
            });
        }
    }

    // Now compare what each policy decision saw with what the engine did.
    let seen = audited_bodies(&moat);
    let mut failures: Vec<String> = Vec::new();
    let (mut passed, mut refused) = (0, 0);
    for case in &cases {
        let refused_here = !(200..300).contains(&case.answer.status);
        if refused_here && !matches!(case.check, Check::Started { .. }) {
            assert!(
                (400..500).contains(&case.answer.status),
                "{}: {}",
                case.what,
                case.answer.raw
            );
            refused += 1;
            if let Check::Created { name, .. } = &case.check {
                let (status, _) = engine().api("GET", &format!("/containers/{name}/json"), None);
                if status != 404 {
                    failures.push(format!(
                        "{}: refused ({}) but the container exists",
                        case.what, case.answer.status
                    ));
                }
            }
            continue;
        }
        passed += 1;
        let policy = seen.get(&case.answer.id).cloned().unwrap_or(Value::Null);
        match &case.check {
            Check::Created { name, prefix } | Check::Started { name, prefix, .. } => {
                let policy = match &case.check {
                    Check::Started { create_id, .. } => {
                        seen.get(create_id).cloned().unwrap_or(Value::Null)
                    }
                    _ => policy,
                };
                let applied = inspect(name)["HostConfig"].clone();
                let base = &baseline[&(prefix.clone(), policy["HostConfig"].is_object())];
                for f in &fields {
                    let field = f["field"].as_str().unwrap();
                    let kind = f["compare"].as_str().unwrap_or("value");
                    let saw = policy["HostConfig"]
                        .get(field)
                        .cloned()
                        .unwrap_or(Value::Null);
                    let got = applied.get(field).cloned().unwrap_or(Value::Null);
                    let default = base.get(field).cloned().unwrap_or(Value::Null);
                    if let Some(d) = field_differs(kind, &saw, &got, &default) {
                        failures.push(format!("{}: HostConfig.{field}: {d}", case.what));
                    }
                }
            }
            Check::Exec { exec_id } => {
                let (status, applied) = engine().api("GET", &format!("/exec/{exec_id}/json"), None);
                assert_eq!(status, 200, "{}: {applied}", case.what);
                for f in corpus["exec_fields"].as_array().unwrap() {
                    let field = f["field"].as_str().unwrap();
                    let saw = policy.get(field).cloned().unwrap_or(Value::Null);
                    let got = applied["ProcessConfig"][f["engine"].as_str().unwrap()].clone();
                    if let Some(d) = field_differs("value", &saw, &got, &f["default"]) {
                        failures.push(format!("{}: {field}: {d}", case.what));
                    }
                }
            }
            Check::Updated { name, before } => {
                let applied = inspect(name)["HostConfig"].clone();
                for field in corpus["update_fields"].as_array().unwrap() {
                    let field = field.as_str().unwrap();
                    let saw = policy.get(field).cloned().unwrap_or(Value::Null);
                    let got = applied.get(field).cloned().unwrap_or(Value::Null);
                    let was = before.get(field).cloned().unwrap_or(Value::Null);
                    if let Some(d) = field_differs("value", &saw, &got, &was) {
                        failures.push(format!("{}: {field}: {d}", case.what));
                    }
                }
            }
            Check::Volume { name } => {
                let (status, applied) = engine().api("GET", &format!("/volumes/{name}"), None);
                assert_eq!(status, 200, "{}: {applied}", case.what);
                let saw = policy.get("DriverOpts").cloned().unwrap_or(Value::Null);
                if let Some(d) = field_differs("value", &saw, &applied["Options"], &Value::Null) {
                    failures.push(format!("{}: DriverOpts: {d}", case.what));
                }
            }
        }
    }
    cleanup();
    assert!(
        failures.is_empty(),
        "{} of {} cases: the engine applied what the policy did not see:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Both halves were exercised.
    assert!(
        passed > 0 && refused > 0,
        "passed {passed}, refused {refused}"
    );
}

/// The attacks of issue 14 as a developer with the shipped pack: every body
/// position, every version prefix, framed by length and chunked.
#[test]
fn developer_attacks_are_refused_at_every_version_and_framing() {
    image();
    let corpus = corpus();
    let moat = Moat::start();
    let dev = pki().client("dave", "developer");
    let attacks = [
        json!({"Image": image(), "Cmd": ["sh"], "Privileged": true, "Binds": ["/:/host"]}),
        json!({"Image": image(), "Cmd": ["sh"], "HostConfig": null, "Privileged": true}),
        json!({"Image": image(), "Cmd": ["sh"], "HostConfig": {}, "Binds": ["/:/host"]}),
        json!({"Image": image(), "Cmd": ["sh"], "HostConfig": {"Privileged": true}}),
        json!({"Image": image(), "Cmd": ["sh"], "hostconfig": {"privileged": true}}),
        json!({"Image": image(), "Cmd": ["sh"], "HostConfig": {"binds": ["/:/host"]}}),
        json!({"Image": image(), "Cmd": ["sh"], "HostConfig": {"PidMode": "host"}}),
    ];
    let mut versions = prefixes(&corpus);
    versions.push(("1.99".into(), "/v1.99".into()));
    versions.push(("1.0".into(), "/v1.0".into()));
    for (label, prefix) in &versions {
        for attack in &attacks {
            for chunked in [false, true] {
                let name = unique("moat-attack");
                let answer = send(
                    &moat,
                    &dev,
                    &request(
                        "POST",
                        &format!("{prefix}/containers/create?name={name}"),
                        Some(&attack.to_string()),
                        chunked,
                    ),
                );
                let what = format!("{attack} at version {label}, chunked {chunked}");
                assert!(matches!(answer.status, 400 | 403), "{what}: {}", answer.raw);
                let (status, _) = engine().api("GET", &format!("/containers/{name}/json"), None);
                assert_eq!(status, 404, "{what}: reached the engine");
            }
        }
        // A start body carrying a HostConfig, on a container the developer
        // may create: refused, and the container stays unprivileged.
        let name = unique("moat-attack-start");
        let create = send(
            &moat,
            &dev,
            &request(
                "POST",
                &format!("/containers/create?name={name}"),
                Some(&json!({"Image": image(), "Cmd": ["true"]}).to_string()),
                false,
            ),
        );
        assert_eq!(create.status, 201, "{}", create.raw);
        for chunked in [false, true] {
            let answer = send(
                &moat,
                &dev,
                &request(
                    "POST",
                    &format!("{prefix}/containers/{name}/start"),
                    Some(r#"{"Privileged":true,"Binds":["/:/host"]}"#),
                    chunked,
                ),
            );
            assert_eq!(answer.status, 400, "start body at {label}: {}", answer.raw);
        }
        let hc = inspect(&name)["HostConfig"].clone();
        assert_eq!(hc["Privileged"], false, "{label}");
        assert!(unset(&hc["Binds"]), "{label}: {hc}");
        engine().api("DELETE", &format!("/containers/{name}?force=1"), None);
    }
}

/// docker-py through moat, as an admin and as a developer: create, start,
/// and an exec created with `detachKeys` from its config file (docker-py
/// sends the key in that spelling; the daemon matches it case-insensitively,
/// moat rewrites it to `DetachKeys`). This is docker-py's own
/// `ExecTest::test_detach_with_config_file` scenario.
#[test]
fn docker_py_exec_with_detach_keys_from_its_config_file() {
    image();
    let moat = Moat::start_with(MoatOptions {
        audit_yaml: Some("  file: audit/audit.log\n  level: request\n".into()),
        ..Default::default()
    });
    for (user, group) in [("alice", "admin"), ("dave", "developer")] {
        let bundle = pki().client(user, group);
        let config_dir = support::tempdir("moat-dockerpy-");
        std::fs::write(
            config_dir.join("config.json"),
            r#"{"detachKeys": "ctrl-p"}"#,
        )
        .unwrap();
        let name = unique("moat-dockerpy");
        let script = format!(
            r#"
import docker
tls = docker.tls.TLSConfig(client_cert=("{d}/cert.pem", "{d}/key.pem"), ca_cert="{d}/ca.pem", verify=True)
c = docker.APIClient(base_url="https://127.0.0.1:{port}", tls=tls, version="auto")
ctr = c.create_container("{image}", "sleep 60", name="{name}")
c.start(ctr)
e = c.exec_create(ctr, ["echo", "exec-ok"])
print(c.exec_start(e).decode().strip())
c.remove_container(ctr, force=True)
"#,
            d = bundle.dir.display(),
            port = moat.addr.port(),
            image = image(),
        );
        let mut cmd = std::process::Command::new("python3");
        cmd.arg("-c").arg(script).env("DOCKER_CONFIG", &config_dir);
        // requests lets these override the CA docker-py was given.
        for var in ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"] {
            cmd.env_remove(var);
        }
        let out = support::run_with_deadline(cmd, None, std::time::Duration::from_secs(120));
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "exec-ok",
            "{user}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // The policy saw the canonical key.
        let exec = moat
            .audit_records()
            .into_iter()
            .find(|r| {
                r["request"]["operation"] == "ContainerExec"
                    && r["stage"] == "decision"
                    && r["user"]["name"] == user
            })
            .expect("exec create audited");
        assert_eq!(exec["request"]["body"]["DetachKeys"], "ctrl-p", "{exec}");
        assert!(exec["request"]["body"].get("detachKeys").is_none());
    }
}
