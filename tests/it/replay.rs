//! `moat audit replay` and `moat policy explain` over a recorded real
//! session: the docker CLI as an admin, a developer and a viewer, with
//! allows and denies, through moat at `audit.level: request`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::support::{self, image, pki, unique, Docker, Moat, MoatOptions};

fn moat_cli(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_moat"));
    cmd.args(args).current_dir(support::repo());
    support::run_with_deadline(cmd, None, Duration::from_secs(120))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The ids of the requests the policy decided (refusals before the policy
/// carry an empty revision).
fn decided_ids(records: &[Value]) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| {
            r["decision"]["policy_revision"]
                .as_str()
                .is_some_and(|s| !s.is_empty())
        })
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The id of the first request of `user` for `op` whose decision was
/// `allow`.
fn id_of(records: &[Value], user: &str, op: &str, allow: bool) -> String {
    records
        .iter()
        .find(|r| {
            r["user"]["name"] == user
                && r["request"]["operation"] == op
                && r["decision"]["allow"] == allow
        })
        .and_then(|r| r["id"].as_str())
        .unwrap_or_else(|| panic!("no {op} by {user} with allow={allow}"))
        .to_owned()
}

#[test]
fn replay_of_a_recorded_session_shows_exactly_what_a_policy_change_does() {
    let moat = Moat::start_with(MoatOptions {
        audit_yaml: Some("  file: audit/audit.log\n  level: request\n".into()),
        ..MoatOptions::default()
    });
    let admin = Docker::new(&moat, &pki().client("alice", "admin"));
    let dev = Docker::new(&moat, &pki().client("dave", "developer"));
    let viewer = Docker::new(&moat, &pki().client("vera", "viewer"));
    let (c1, c2, v1, v2) = (
        unique("replay-admin"),
        unique("replay-dev"),
        unique("replay-vol"),
        unique("replay-vol-viewer"),
    );

    admin.ok(&["ps", "-a"]);
    admin.ok(&["create", "--privileged", "--name", &c1, image(), "true"]);
    admin.ok(&["volume", "create", &v1]);
    dev.ok(&["ps"]);
    dev.ok(&[
        "create",
        "-e",
        "DB_PASSWORD=hunter2",
        "--name",
        &c2,
        image(),
        "true",
    ]);
    dev.ok(&["run", "--rm", image(), "true"]);
    dev.fails(&["run", "--rm", "--privileged", image(), "true"]);
    viewer.ok(&["ps"]);
    viewer.fails(&["volume", "create", &v2]);
    viewer.fails(&["export", &c1]);
    admin.ok(&["rm", "-f", &c1, &c2]);
    admin.ok(&["volume", "rm", &v1]);

    let audit = moat.audit_file.clone();
    let records = moat.audit_records();
    moat.stop();
    let log = std::fs::read_to_string(&audit).unwrap();
    assert!(
        !log.contains("hunter2"),
        "a secret reached the audit log at level request"
    );
    let decided = decided_ids(&records);
    assert!(decided.len() >= 12, "{decided:?}");
    let audit_arg = audit.display().to_string();

    // The unchanged policy decides every recorded request as the live run
    // did, although secrets were redacted from what was recorded.
    let out = moat_cli(&[
        "audit", "replay", "--policy", "policies", "--format", "json", &audit_arg,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["replayed"], decided.len(), "{report}");
    assert_eq!(report["unchanged"], decided.len(), "{report}");
    assert_eq!(report["changes"], serde_json::json!([]));
    assert_eq!(report["not_replayed"]["no_input"], 0, "{report}");

    // A candidate that takes ContainerCreate from developers and lets
    // viewers create volumes.
    let candidate = support::tempdir("replay-policy");
    copy_dir(&support::repo().join("policies"), &candidate);
    let data_path = candidate.join("data.json");
    let mut data: Value =
        serde_json::from_str(&std::fs::read_to_string(&data_path).unwrap()).unwrap();
    let ops = data["moat"]["developer_operations"].as_array_mut().unwrap();
    ops.retain(|o| o != "ContainerCreate");
    std::fs::write(&data_path, data.to_string()).unwrap();
    std::fs::write(
        candidate.join("viewer_volumes.rego"),
        "package docker.authz\n\nimport rego.v1\n\nallow if {\n\t\"viewer\" in roles\n\top == \"VolumeCreate\"\n}\n",
    )
    .unwrap();
    let candidate_arg = candidate.display().to_string();

    let out = moat_cli(&[
        "audit",
        "replay",
        "--policy",
        &candidate_arg,
        "--format",
        "json",
        &audit_arg,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes: Vec<(String, String, String, u64)> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_owned(),
                c["user"].as_str().unwrap().to_owned(),
                c["operation"].as_str().unwrap().to_owned(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect();
    // dave's two allowed creates (create, and run's create) are now denied;
    // his privileged create was denied and still is, with the same message.
    assert_eq!(
        changes,
        vec![
            (
                "newly_denied".into(),
                "dave".into(),
                "ContainerCreate".into(),
                2
            ),
            (
                "newly_allowed".into(),
                "vera".into(),
                "VolumeCreate".into(),
                1
            ),
        ],
        "{report}"
    );
    let example = report["changes"][0]["example_id"].as_str().unwrap();
    assert!(decided.contains(example));

    // The text form: a summary, then the groups.
    let out = moat_cli(&["audit", "replay", "--policy", &candidate_arg, &audit_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    // Shown with --nocapture: a real replay summary.
    println!("{shown}");
    assert!(
        shown.starts_with(&format!(
            "replayed {} requests: 2 newly denied, 1 newly allowed, 0 with different deny messages",
            decided.len()
        )),
        "{shown}"
    );
    assert!(
        shown.contains("newly denied:\n  dave ContainerCreate x2"),
        "{shown}"
    );
    assert!(
        shown.contains("newly allowed:\n  vera VolumeCreate x1"),
        "{shown}"
    );

    // --user narrows it.
    let out = moat_cli(&[
        "audit",
        "replay",
        "--policy",
        &candidate_arg,
        "--user",
        "alice",
        &audit_arg,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // explain: the developer's refused privileged create, and why the
    // admin's was allowed.
    let denied = id_of(&records, "dave", "ContainerCreate", false);
    let out = moat_cli(&["policy", "explain", "--audit", &audit_arg, "--id", &denied]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("recorded: DENY"), "{shown}");
    assert!(shown.contains("privileged"), "{shown}");
    assert!(shown.contains("\"Privileged\": true"), "{shown}");
    // Allowed by the developer rule, denied by the sandbox's deny.
    assert!(shown.contains("allow rules that hold:"), "{shown}");
    assert!(shown.contains("authz.rego:41: allow if {"), "{shown}");
    let allowed = id_of(&records, "alice", "ContainerCreate", true);
    let out = moat_cli(&["policy", "explain", "--audit", &audit_arg, "--id", &allowed]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("recorded: ALLOW"), "{shown}");
    assert!(shown.contains("allow if \"admin\" in roles"), "{shown}");
    let out = moat_cli(&["policy", "explain", "--audit", &audit_arg, "--id", "nope"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no request id nope"), "{}", text(&out));

    // Records without their input (audit.level: metadata) cannot be
    // replayed: an error (exit 2) that says how to record them.
    let stripped = support::tempdir("replay-metadata").join("audit.log");
    let lines: Vec<String> = records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.as_object_mut().unwrap().remove("input");
            r.to_string()
        })
        .collect();
    std::fs::write(&stripped, lines.join("\n")).unwrap();
    let out = moat_cli(&[
        "audit",
        "replay",
        "--policy",
        "policies",
        &stripped.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("audit.level: request"),
        "{}",
        text(&out)
    );
}
