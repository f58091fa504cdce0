//! Replay's reading and comparing, on hand-made records; the recorded real
//! session is in tests/it/replay.rs.

use std::io::Write;

use super::*;
use serde_json::json;

fn line(
    id: &str,
    stage: &str,
    user: &str,
    op: &str,
    decision: serde_json::Value,
    input: Option<serde_json::Value>,
) -> String {
    let mut v = json!({
        "ts": "2026-11-24T04:48:32.123456Z",
        "id": id,
        "stage": stage,
        "user": {"name": user, "groups": [], "auth_method": "certificate", "cert_serial": null, "token_id": null},
        "client": "127.0.0.1:1",
        "request": {"method": "POST", "uri": "/x", "operation": op, "params": {}},
        "decision": decision,
        "response": null,
        "prev": "0"
    });
    if let Some(i) = input {
        v["input"] = i;
    }
    v.to_string()
}

fn write(lines: &[String]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    f
}

#[test]
fn one_request_per_id_and_the_decision_record_carries_the_input() {
    let allow = json!({"allow": true, "reasons": [], "policy_revision": "r1"});
    let f = write(&[
        line(
            "a",
            "decision",
            "alice",
            "ContainerCreate",
            allow.clone(),
            Some(json!({"k": 1})),
        ),
        line(
            "a",
            "complete",
            "alice",
            "ContainerCreate",
            allow.clone(),
            None,
        ),
        line("b", "complete", "bob", "ContainerList", allow.clone(), None),
        line(
            "c",
            "complete",
            "eve",
            "Unclassified",
            json!({"allow": false, "reasons": ["401"], "policy_revision": ""}),
            None,
        ),
    ]);
    let rec = Recording::read(&[f.path().to_path_buf()], &Filter::default()).unwrap();
    assert_eq!(rec.requests.len(), 3);
    assert_eq!(rec.requests[0].input, Some(json!({"k": 1})));
    assert!(rec.requests[1].input.is_none());
    assert!(
        rec.requests[2].decision.is_none(),
        "a refusal before the policy is not a decision"
    );
    assert_eq!(rec.find("b").unwrap().user.as_deref(), Some("bob"));
    assert!(matches!(rec.find("zz"), Err(ReplayError::NoSuchId(_))));
}

#[test]
fn filters_by_user_and_time() {
    let allow = json!({"allow": true, "reasons": [], "policy_revision": "r1"});
    let f = write(&[
        line("a", "complete", "alice", "SystemPing", allow.clone(), None),
        line("b", "complete", "bob", "SystemPing", allow.clone(), None),
    ]);
    let files = [f.path().to_path_buf()];
    let only_bob = Filter {
        user: Some("bob".into()),
        ..Filter::default()
    };
    assert_eq!(
        Recording::read(&files, &only_bob).unwrap().requests.len(),
        1
    );
    let later = Filter {
        since: Some(Filter::parse_time("2026-11-25T00:00:00Z").unwrap()),
        ..Filter::default()
    };
    assert_eq!(Recording::read(&files, &later).unwrap().requests.len(), 0);
    let earlier = Filter {
        until: Some(Filter::parse_time("2026-11-25T00:00:00Z").unwrap()),
        ..Filter::default()
    };
    assert_eq!(Recording::read(&files, &earlier).unwrap().requests.len(), 2);
    assert!(Filter::parse_time("7d").is_ok());
    assert!(matches!(
        Filter::parse_time("last tuesday"),
        Err(ReplayError::BadTime(_))
    ));
}

#[test]
fn a_line_that_is_not_a_record_is_named() {
    let f = write(&["{\"ts\": 1}".to_owned()]);
    let err = Recording::read(&[f.path().to_path_buf()], &Filter::default()).unwrap_err();
    assert!(err.to_string().contains(":1: not an audit record"), "{err}");
}

#[test]
fn changes_are_grouped_by_kind_user_and_operation() {
    let mut report = Report::default();
    let rec = |id: &str, user: &str, op: &str| Recorded {
        id: id.into(),
        ts: OffsetDateTime::UNIX_EPOCH,
        user: Some(user.into()),
        operation: op.into(),
        method: "POST".into(),
        uri: "/x".into(),
        decision: None,
        policy_revision: String::new(),
        input: None,
    };
    let allow = Verdict {
        allow: true,
        reasons: vec![],
    };
    let deny = |m: &str| Verdict {
        allow: false,
        reasons: vec![m.into()],
    };
    report.add(&rec("1", "alice", "ContainerCreate"), &allow, &deny("no"));
    report.add(&rec("2", "alice", "ContainerCreate"), &allow, &deny("no"));
    report.add(&rec("3", "bob", "ContainerCreate"), &deny("no"), &allow);
    report.add(&rec("4", "bob", "ImageBuild"), &deny("old"), &deny("new"));
    report.add(&rec("5", "bob", "ImageBuild"), &deny("same"), &deny("same"));
    report.add(&rec("6", "bob", "ImageBuild"), &allow, &allow);
    assert_eq!(report.replayed, 6);
    assert_eq!(report.unchanged, 2);
    assert_eq!(report.changed(), 4);
    let groups: Vec<_> = report
        .changes()
        .map(|c| {
            (
                c.kind,
                c.user.as_str(),
                c.operation.as_str(),
                c.count,
                c.example_id.as_str(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        vec![
            (ChangeKind::NewlyDenied, "alice", "ContainerCreate", 2, "1"),
            (ChangeKind::NewlyAllowed, "bob", "ContainerCreate", 1, "3"),
            (
                ChangeKind::DifferentDenyMessages,
                "bob",
                "ImageBuild",
                1,
                "4"
            ),
        ]
    );
    let text = report.text();
    assert!(text.starts_with("replayed 6 requests: 2 newly denied, 1 newly allowed, 1 with different deny messages, 2 unchanged"), "{text}");
    assert_eq!(report.json()["newly_denied"], 2);
}

/// A construct on which regorus 0.14.1's two evaluators disagree: the
/// compiled one leaves `advice` undefined for "zz" (an `else` branch fails
/// inside `some … in`), so its `deny` never fires and the gateway allows,
/// while the interpreter `moat policy test` runs denies "no: c".
const EVALUATORS_DISAGREE: &str = r#"package docker.authz
import rego.v1
default allow := true
deny contains msg if { some f in input.fs; msg := sprintf("no: %s", [advice(f)]) }
advice(p) := "a" if { p == "x" } else := "b" if { some part in ["D.", "E."]; contains(p, part) } else := "c"
"#;

#[test]
fn replay_names_the_requests_on_which_the_two_evaluators_disagree() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.rego"), EVALUATORS_DISAGREE).unwrap();
    let policy = Policy::load(
        &crate::config::Policy {
            dir: dir.path().to_path_buf(),
        },
        &crate::config::Limits::default(),
    )
    .unwrap();
    let mut interp = Interpreter::new(dir.path()).unwrap();
    let allow = json!({"allow": true, "reasons": [], "policy_revision": "r1"});
    let f = write(&[
        line(
            "a",
            "decision",
            "alice",
            "ContainerCreate",
            allow.clone(),
            Some(json!({"fs": ["zz"]})),
        ),
        line(
            "b",
            "decision",
            "alice",
            "ContainerCreate",
            allow.clone(),
            Some(json!({"fs": ["x"]})),
        ),
    ]);
    let rec = Recording::read(&[f.path().to_path_buf()], &Filter::default()).unwrap();
    let report = rec.replay(&policy, Some(&mut interp));
    assert_eq!(
        report.count(ChangeKind::EvaluatorsDisagree),
        1,
        "{}",
        report.text()
    );
    let c = report
        .changes()
        .find(|c| c.kind == ChangeKind::EvaluatorsDisagree)
        .unwrap();
    assert_eq!(c.example_id, "a");
    // The gateway's evaluator allows; the tests' denies.
    assert!(c.now.allow);
    assert_eq!(c.recorded.reasons, ["no: c"]);
    assert!(
        report.text().contains("two evaluators"),
        "{}",
        report.text()
    );
    // "b" is denied by both ("no: a"): a plain change against the record.
    assert_eq!(report.count(ChangeKind::NewlyDenied), 1);
    // Without the interpreter nothing is compared.
    let report = rec.replay(&policy, None);
    assert_eq!(report.count(ChangeKind::EvaluatorsDisagree), 0);
    assert_eq!(report.changed(), 1, "{}", report.text());
}
