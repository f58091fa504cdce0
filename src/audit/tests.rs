//! Tests of the audit log as the pipeline uses it: records in, lines out,
//! the chain through rotation, restarts, failures, tampering and load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::config::{Audit, AuditLevel, AuditSync};
use crate::identity::AuthMethod;

fn cfg(file: &Path) -> Audit {
    Audit {
        file: file.to_owned(),
        ..Audit::default()
    }
}

fn rec(id: &str, stage: Stage) -> Record {
    Record {
        id: id.to_owned(),
        stage,
        user: Some(UserRecord {
            name: "alice".into(),
            groups: vec!["dev".into()],
            auth_method: AuthMethod::Certificate,
            cert_serial: Some("1f".into()),
            token_id: None,
            uid: None,
            pid: None,
        }),
        client: "10.0.0.7:51234".into(),
        request: RequestRecord {
            method: "POST".into(),
            uri: "/v1.47/containers/create?name=web".into(),
            operation: "ContainerCreate".into(),
            params: BTreeMap::from([("name".to_owned(), "web".to_owned())]),
            body: Some(json!({"Image": "nginx", "Env": ["DB_PASSWORD=hunter2"]})),
        },
        decision: Some(DecisionRecord {
            allow: true,
            reasons: vec![],
            policy_revision: "sha256:ab12".into(),
            owner_scope: None,
            view_scope: None,
        }),
        response: (stage == Stage::Complete).then_some(ResponseRecord {
            status: 201,
            bytes_in: 120,
            bytes_out: 88,
            duration_ms: 12.5,
            hijacked: false,
        }),
        input: None,
    }
}

async fn write_n(a: &Auditor, prefix: &str, n: usize) {
    for i in 0..n {
        a.record(rec(&format!("{prefix}{i:03}"), Stage::Decision))
            .await
            .unwrap();
    }
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn put(p: &Path, lines: &[String]) {
    std::fs::write(
        p,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

fn scrape(m: &Metrics, series: &str) -> f64 {
    m.encode()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap()
}

#[tokio::test]
async fn lines_have_the_documented_shape_and_chain_from_genesis() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sub/audit.log");
    let metrics = Arc::new(Metrics::new());
    let a = Auditor::open(&cfg(&file), metrics.clone()).await.unwrap();
    a.record(rec("r1", Stage::Decision)).await.unwrap();
    a.record(rec("r1", Stage::Complete)).await.unwrap();
    a.close().await;

    let got = lines(&file);
    assert_eq!(got.len(), 2);
    let mut prev = GENESIS.to_owned();
    for l in &got {
        let v: Value = serde_json::from_str(l).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["ts", "id", "stage", "user", "client", "request", "decision", "response", "prev"]
        );
        assert_eq!(v["prev"], prev.as_str());
        // Default level is metadata: no body.
        assert!(v["request"].get("body").is_none());
        assert_eq!(v["user"]["auth_method"], "certificate");
        prev = chain::hash(l.as_bytes());
    }
    let v: Value = serde_json::from_str(&got[1]).unwrap();
    assert_eq!(v["stage"], "complete");
    assert_eq!(v["response"]["status"], 201);
    let first: Value = serde_json::from_str(&got[0]).unwrap();
    assert_eq!(first["response"], Value::Null);
    assert_eq!(scrape(&metrics, "moat_audit_records_total"), 2.0);
    assert_eq!(
        verify_report(&[file]).unwrap(),
        Verified {
            records: 2,
            from_genesis: true,
            head: prev
        }
    );
}

#[tokio::test]
async fn request_level_records_the_redacted_body() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    let mut c = cfg(&file);
    c.level = AuditLevel::Request;
    let a = Auditor::open(&c, Arc::new(Metrics::new())).await.unwrap();
    let mut r = rec("r1", Stage::Decision);
    r.request
        .params
        .insert("X-Registry-Auth".into(), "c2VjcmV0".into());
    a.record(r).await.unwrap();
    a.close().await;
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains("hunter2") && !text.contains("c2VjcmV0"),
        "{text}"
    );
    let v: Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(
        v["request"]["body"],
        json!({"Image": "nginx", "Env": ["DB_PASSWORD=<redacted>"]})
    );
    assert_eq!(v["request"]["params"], json!({"name": "web"}));
}

#[tokio::test]
async fn restart_continues_the_chain_and_drops_an_incomplete_tail() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    let a = Auditor::open(&cfg(&file), Arc::new(Metrics::new()))
        .await
        .unwrap();
    write_n(&a, "a", 3).await;
    a.close().await;
    // A crash in the middle of a line.
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(b"{\"ts\":\"2026-");
    std::fs::write(&file, bytes).unwrap();

    let a = Auditor::open(&cfg(&file), Arc::new(Metrics::new()))
        .await
        .unwrap();
    write_n(&a, "b", 2).await;
    a.close().await;
    assert_eq!(lines(&file).len(), 5);
    let v = verify_report(&[file]).unwrap();
    assert_eq!((v.records, v.from_genesis), (5, true));
}

#[tokio::test]
async fn rotation_carries_the_chain_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    let mut c = cfg(&file);
    let one_line = lines_len_of_one_record().await;
    c.max_bytes = one_line * 3; // three records per file
    c.keep = 3;
    let a = Auditor::open(&c, Arc::new(Metrics::new())).await.unwrap();
    write_n(&a, "r", 14).await;
    a.close().await;

    let rot = |n: usize| writer::rotated(&file, n);
    assert!(rot(3).exists() && !rot(4).exists());
    let files = vec![rot(3), rot(2), rot(1), file.clone()];
    for f in &files {
        assert!(lines(f).len() <= 3, "{}", f.display());
    }
    let v = verify_report(&files).unwrap();
    // 14 records, 3 per file: the oldest file with records 1-3 was dropped.
    assert_eq!((v.records, v.from_genesis), (11, false));

    // Restarting right after a rotation (empty audit.log) continues from
    // audit.log.1.
    std::fs::rename(&file, rot(1)).unwrap();
    std::fs::File::create(&file).unwrap();
    let a = Auditor::open(&c, Arc::new(Metrics::new())).await.unwrap();
    write_n(&a, "s", 1).await;
    a.close().await;
    assert_eq!(
        verify(&[rot(1), file.clone()]).unwrap(),
        lines(&rot(1)).len() + 1
    );
}

/// The length in bytes of one test record's line, to size rotation.
async fn lines_len_of_one_record() -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    let a = Auditor::open(&cfg(&file), Arc::new(Metrics::new()))
        .await
        .unwrap();
    write_n(&a, "r", 1).await;
    a.close().await;
    std::fs::metadata(&file).unwrap().len()
}

/// A six-record log to tamper with.
async fn six_lines() -> (tempfile::TempDir, PathBuf, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    let a = Auditor::open(&cfg(&file), Arc::new(Metrics::new()))
        .await
        .unwrap();
    write_n(&a, "r", 6).await;
    a.close().await;
    let l = lines(&file);
    (dir, file, l)
}

#[tokio::test]
async fn verify_names_the_tampered_line() {
    let (_dir, file, orig) = six_lines().await;
    assert_eq!(verify(std::slice::from_ref(&file)).unwrap(), 6);

    // A record that chains correctly to line 2, as a forger would write it.
    let forged = {
        let mut v: Value = serde_json::from_str(&orig[1]).unwrap();
        v["id"] = json!("forged");
        v["prev"] = json!(chain::hash(orig[1].as_bytes()));
        v.to_string()
    };
    type Tamper = fn(&mut Vec<String>, &str);
    let cases: &[(&str, Tamper, usize, &str)] = &[
        (
            "edit line 3",
            |l, _| l[2] = l[2].replace("\"allow\":true", "\"allow\":false"),
            3,
            "edited",
        ),
        (
            "edit line 1",
            |l, _| l[0] = l[0].replace("alice", "mallory"),
            1,
            "edited",
        ),
        ("delete line 3", |l, _| drop(l.remove(2)), 2, "deleted"),
        ("delete line 5", |l, _| drop(l.remove(4)), 4, "deleted"),
        ("swap lines 3 and 4", |l, _| l.swap(2, 3), 3, "out of order"),
        (
            "move line 5 to 2",
            |l, _| {
                let x = l.remove(4);
                l.insert(1, x)
            },
            2,
            "",
        ),
        (
            "insert a correctly chained line at 3",
            |l, f| l.insert(2, f.to_owned()),
            3,
            "inserted",
        ),
        (
            "insert a copy of line 5 at 3",
            |l, _| {
                let x = l[4].clone();
                l.insert(2, x)
            },
            3,
            "inserted",
        ),
        (
            "garbage line 4",
            |l, _| l[3] = "hello".into(),
            4,
            "not a JSON record",
        ),
        (
            "prev removed on line 2",
            |l, _| l[1] = l[1].replace("\"prev\"", "\"nope\""),
            2,
            "no \"prev\"",
        ),
    ];
    for (name, tamper, line, why) in cases {
        let mut l = orig.clone();
        tamper(&mut l, &forged);
        put(&file, &l);
        let e = verify(std::slice::from_ref(&file)).unwrap_err();
        assert_eq!(e.line, *line, "{name}: {e}");
        assert!(e.reason.contains(why), "{name}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("{}:{line}: ", file.display())),
            "{name}: {e}"
        );
    }

    // An incomplete last line.
    let mut text = orig.iter().map(|l| format!("{l}\n")).collect::<String>();
    text.pop();
    std::fs::write(&file, text).unwrap();
    let e = verify(std::slice::from_ref(&file)).unwrap_err();
    assert_eq!((e.line, e.reason.contains("incomplete")), (6, true), "{e}");

    // Deleting the first line is only visible from the missing genesis.
    put(&file, &orig[1..]);
    let v = verify_report(std::slice::from_ref(&file)).unwrap();
    assert_eq!((v.records, v.from_genesis), (5, false));
}

#[tokio::test]
async fn verify_across_files_names_the_file() {
    let (dir, file, orig) = six_lines().await;
    let older = dir.path().join("audit.log.1");
    put(&older, &orig[..3]);
    put(&file, &orig[3..]);
    assert_eq!(verify(&[older.clone(), file.clone()]).unwrap(), 6);
    // Wrong order of files: the break is at the boundary.
    let e = verify(&[file.clone(), older.clone()]).unwrap_err();
    assert_eq!(e.file, file);
    // Last line of the older file edited: reported there.
    let mut o = orig[..3].to_vec();
    o[2] = o[2].replace("r002", "r00X");
    put(&older, &o);
    let e = verify(&[older.clone(), file.clone()]).unwrap_err();
    assert_eq!((e.file, e.line), (older, 3));
    let e = verify(&[dir.path().join("missing")]).unwrap_err();
    assert_eq!(e.line, 0);
}

#[tokio::test]
async fn unwritable_directory_fails_records_then_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let file = logs.join("audit.log");
    let metrics = Arc::new(Metrics::new());
    let a = Auditor::open(&cfg(&file), metrics.clone()).await.unwrap();
    write_n(&a, "a", 2).await;
    assert_eq!(a.writable(), Ok(()));

    // Root ignores permissions: replace the directory with a plain file.
    let old = dir.path().join("logs.old");
    std::fs::rename(&logs, &old).unwrap();
    std::fs::write(&logs, b"not a directory").unwrap();

    let e = a.record(rec("lost", Stage::Decision)).await.unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("audit log cannot be written: "), "{msg}");
    assert!(
        msg.ends_with("; refusing state-changing requests (audit.on_failure: deny)"),
        "{msg}"
    );
    // The path stays out of what may reach clients, not out of /readyz.
    assert!(!msg.contains(dir.path().to_str().unwrap()), "{msg}");
    assert!(a.writable().unwrap_err().contains("logs"));
    assert!(a.record(rec("lost2", Stage::Decision)).await.is_err());
    assert_eq!(scrape(&metrics, "moat_audit_write_errors_total"), 2.0);

    // Writable again: the next record succeeds without a restart, in a new
    // file whose first line chains to the last line written before.
    std::fs::remove_file(&logs).unwrap();
    assert_eq!(a.writable(), Ok(()));
    write_n(&a, "b", 2).await;
    a.close().await;
    let old_file = old.join("audit.log");
    assert_eq!(verify(&[old_file.clone(), file.clone()]).unwrap(), 4);
    let all = [lines(&old_file), lines(&file)].concat();
    assert!(all.iter().all(|l| !l.contains("\"lost")));
    assert_eq!(scrape(&metrics, "moat_audit_records_total"), 4.0);
}

#[tokio::test]
async fn a_deleted_log_is_recreated_and_the_chain_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    let a = Auditor::open(&cfg(&file), Arc::new(Metrics::new()))
        .await
        .unwrap();
    write_n(&a, "a", 2).await;
    let saved = dir.path().join("saved.log");
    std::fs::rename(&file, &saved).unwrap();
    write_n(&a, "b", 2).await;
    a.close().await;
    assert_eq!(lines(&file).len(), 2);
    assert_eq!(verify(&[saved, file]).unwrap(), 4);
}

#[tokio::test]
async fn a_full_disk_is_reported_as_such() {
    let metrics = Arc::new(Metrics::new());
    let a = Auditor::open(&cfg(Path::new("/dev/full")), metrics.clone())
        .await
        .unwrap();
    let e = a.record(rec("r", Stage::Decision)).await.unwrap_err();
    assert!(e.to_string().contains("No space left on device"), "{e}");
    assert_eq!(scrape(&metrics, "moat_audit_write_errors_total"), 1.0);
}

#[tokio::test]
async fn open_refuses_an_unusable_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let e = Auditor::open(&cfg(&blocker.join("audit.log")), Arc::new(Metrics::new()))
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("audit.file"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_record_is_lost_with_200_concurrent_producers() {
    for sync in [AuditSync::Always, AuditSync::Batch] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("audit.log");
        let mut c = cfg(&file);
        c.queue = 16; // far fewer slots than producers: they must wait
        c.sync = sync;
        c.batch_interval = Duration::from_millis(5);
        let a = Arc::new(Auditor::open(&c, Arc::new(Metrics::new())).await.unwrap());
        let tasks: Vec<_> = (0..200)
            .map(|p| {
                let a = a.clone();
                tokio::spawn(async move {
                    for i in 0..10 {
                        a.record(rec(&format!("p{p}-{i}"), Stage::Decision))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // Every record is in the file once record() has returned.
        let got = lines(&file);
        assert_eq!(got.len(), 2000, "{sync:?}");
        let mut ids: Vec<String> = got
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 2000);
        assert_eq!(verify(&[file]).unwrap(), 2000);
        Arc::try_unwrap(a).ok().unwrap().close().await;
    }
}

#[tokio::test]
async fn a_foreign_file_without_final_newline_is_not_glued_to() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    let a = Auditor::open(&cfg(&file), Arc::new(Metrics::new()))
        .await
        .unwrap();
    write_n(&a, "a", 1).await;
    std::fs::remove_file(&file).unwrap();
    std::fs::write(&file, b"someone else's line").unwrap();
    write_n(&a, "b", 1).await;
    a.close().await;
    let got = lines(&file);
    assert_eq!(got[0], "someone else's line");
    assert!(got[1].starts_with("{\"ts\":"), "{got:?}");
    assert_eq!(verify(&[file]).unwrap_err().line, 1);
}

/// Waits (bounded) until `p` holds `n` lines.
async fn until_lines(p: &Path, n: usize) {
    for _ in 0..500 {
        if p.exists() && lines(p).len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} never reached {n} lines", p.display());
}

/// An auditor with `sync: always` and `batch_interval`, on a fresh log.
async fn open_always(
    batch_interval: Duration,
) -> (tempfile::TempDir, PathBuf, Arc<Metrics>, Auditor) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    let metrics = Arc::new(Metrics::new());
    let c = Audit {
        sync: AuditSync::Always,
        batch_interval,
        ..cfg(&file)
    };
    let a = Auditor::open(&c, metrics.clone()).await.unwrap();
    (dir, file, metrics, a)
}

#[tokio::test]
async fn completion_records_ride_the_next_decision_fsync() {
    // Each completion record is its own write round (the test waits for its
    // line before sending the next), which used to cost one fsync each.
    let (_dir, file, metrics, a) = open_always(Duration::from_secs(3600)).await;
    for i in 0..20 {
        assert!(a
            .submit(rec(&format!("c{i:02}"), Stage::Complete))
            .unwrap()
            .is_none());
        until_lines(&file, i + 1).await;
    }
    assert_eq!(
        scrape(&metrics, "moat_audit_fsyncs_total"),
        0.0,
        "completion records were fsynced one by one"
    );
    // A decision record is acknowledged only after its fsync, which also
    // covers the twenty lines before it.
    a.record(rec("d00", Stage::Decision)).await.unwrap();
    assert_eq!(scrape(&metrics, "moat_audit_fsyncs_total"), 1.0);
    assert_eq!(lines(&file).len(), 21);
    assert_eq!(verify(std::slice::from_ref(&file)).unwrap(), 21);
    a.close().await;
}

#[tokio::test]
async fn a_lone_completion_record_is_fsynced_within_the_interval() {
    let (_dir, file, metrics, a) = open_always(Duration::from_millis(100)).await;
    a.submit(rec("c00", Stage::Complete)).unwrap();
    until_lines(&file, 1).await;
    let mut synced = false;
    for _ in 0..500 {
        if scrape(&metrics, "moat_audit_fsyncs_total") >= 1.0 {
            synced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(synced, "the completion record was never fsynced");
    a.close().await;
}

/// Regression: records nobody waits for (a completion, a refused
/// connection) could still be queued when moat stopped, and the writer
/// thread is not waited for by the process. `flush` returns once they are
/// on disk; it writes no line of its own and is not counted as a record.
#[tokio::test]
async fn records_queued_at_shutdown_were_lost() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    let metrics = Arc::new(Metrics::new());
    let a = Auditor::open(&cfg(&file), metrics.clone()).await.unwrap();
    for i in 0..50 {
        if let Some(wait) = a.submit(rec(&format!("r{i}"), Stage::Complete)).unwrap() {
            wait.await;
        }
    }
    a.flush().await.unwrap();
    // The writer is still running: without the flush, nothing says the
    // lines are there yet.
    assert_eq!(lines(&file).len(), 50);
    assert_eq!(scrape(&metrics, "moat_audit_records_total"), 50.0);
    a.record(rec("after", Stage::Decision)).await.unwrap();
    a.close().await;
    assert_eq!(verify_report(&[file]).unwrap().records, 51);
}
