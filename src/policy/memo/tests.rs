//! The memo decides exactly as the policy does: a differential test over
//! the shipped corpus (the data-driven cases of `policy/tests.rs`, with the
//! docker CLI's real bodies), and the packs that must never be memoized.

use std::sync::Arc;

use futures_util::FutureExt;

use super::super::tests::{cases, identity, load, people, req, shipped, with_facts, write};
use super::super::{input, Decision, Policy};
use super::*;
use crate::metrics::Metrics;

/// Decides through `Policy::decide`, the gateway's path (memoized when the
/// set allows it). It never waits, so it is polled once.
fn decide(p: &Policy, f: &super::super::Facts<'_>) -> Decision {
    p.decide(f).now_or_never().expect("decide does not wait")
}

fn same(a: &Decision, b: &Decision) -> bool {
    a.allow == b.allow
        && a.reasons == b.reasons
        && a.revision == b.revision
        && a.owner_scope == b.owner_scope
        && a.view_scope == b.view_scope
}

/// `moat_policy_memo_total{result}` as scraped.
fn memo_count(m: &Metrics, result: &str) -> f64 {
    let series = format!("moat_policy_memo_total{{result=\"{result}\"}} ");
    m.encode()
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str())?.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn memoized_decisions_equal_evaluated_ones_over_the_shipped_corpus() {
    let metrics = Arc::new(Metrics::new());
    let p = load(&shipped()).with_metrics(metrics.clone());
    assert_eq!(p.impure_builtins(), Vec::<String>::new());
    assert!(
        p.current.load().memo.is_some(),
        "the shipped pack is memoized"
    );
    let who = people();
    let cases = cases(&who);
    // Two passes: the first evaluates and remembers, the second answers
    // from the memo; both must equal a plain evaluation.
    for pass in 0..2 {
        for (name, r, who, _, _) in &cases {
            let (memoized, evaluated) = with_facts(r, who, |f| {
                (
                    decide(&p, f),
                    p.decide_input(input::build(f), r.op, &who.name),
                )
            });
            assert!(
                same(&memoized, &evaluated),
                "pass {pass}, {name}: memoized {memoized:?} != evaluated {evaluated:?}"
            );
        }
    }
    let n = cases.len() as f64;
    let (hits, misses) = (memo_count(&metrics, "hit"), memo_count(&metrics, "miss"));
    assert_eq!(hits + misses, 2.0 * n);
    // Every case is evaluated once (some cases are the same request, which
    // hit on the first pass already) and answered from the memo after.
    assert!(hits >= n, "hits {hits}, misses {misses}");
    let remembered = p.current.load().memo.as_ref().map_or(0, Memo::len);
    assert_eq!(remembered as f64, misses);
}

#[test]
fn the_key_covers_the_whole_document_client_port_included() {
    let who = identity("u", &["admin"], &[]);
    let r = req("SystemPing", "GET", "/_ping");
    let doc = with_facts(&r, &who, input::build);
    let k = key("rev", &doc).unwrap();
    assert_eq!(key("rev", &doc), Some(k), "the same document, the same key");
    assert_ne!(key("other", &doc), Some(k), "another policy revision");
    let mut port = doc.clone();
    port["client"]["port"] = 5556.into();
    assert_ne!(key("rev", &port), Some(k), "another client port");
    let mut user = doc.clone();
    user["user"]["name"] = "v".into();
    assert_ne!(key("rev", &user), Some(k), "another user");
    let mut added = doc;
    added["resources"] = serde_json::json!({"container": {"owner": "u"}});
    assert_ne!(key("rev", &added), Some(k), "a field added later");
}

#[test]
fn a_reload_forgets_every_decision() {
    let dir = tempfile::tempdir().unwrap();
    let pack = "package docker.authz\nimport rego.v1\ndefault allow := false\n\
                allow if data.open\n";
    write(dir.path(), "p.rego", pack);
    write(dir.path(), "data.json", r#"{"open": true}"#);
    let p = load(dir.path());
    let who = identity("u", &[], &[]);
    let r = req("SystemPing", "GET", "/_ping");
    assert!(with_facts(&r, &who, |f| decide(&p, f)).allow);
    assert!(with_facts(&r, &who, |f| decide(&p, f)).allow, "remembered");
    // Only the data changes: the same input must now be denied.
    write(dir.path(), "data.json", r#"{"open": false}"#);
    p.reload().unwrap();
    assert!(p.current.load().memo.as_ref().is_some_and(Memo::is_empty));
    assert!(!with_facts(&r, &who, |f| decide(&p, f)).allow);
}

/// Packs calling a builtin whose result is not a function of `input` and
/// `data`, directly or through a function of another package: never
/// memoized.
#[test]
fn a_pack_using_time_now_ns_is_never_memoized() {
    const HEAD: &str = "package docker.authz\nimport rego.v1\ndefault allow := false\n";
    let packs: [(&[&str], &str); 4] = [
        (&["allow if time.now_ns() > 0\n"], "time.now_ns"),
        // Through a function of another package.
        (
            &[
                "allow if not data.lib.fresh(0)\n",
                "package lib\nimport rego.v1\nfresh(t) if time.now_ns() - t < 10\n",
            ],
            "time.now_ns",
        ),
        (&["allow if rand.intn(\"x\", 10) >= 0\n"], "rand.intn"),
        (&["allow if trace(input.user.name)\n"], "trace"),
    ];
    for (files, builtin) in packs {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "p.rego", &format!("{HEAD}{}", files[0]));
        if let Some(lib) = files.get(1) {
            write(dir.path(), "lib.rego", lib);
        }
        let metrics = Arc::new(Metrics::new());
        let p = load(dir.path()).with_metrics(metrics.clone());
        assert_eq!(p.impure_builtins(), vec![builtin.to_string()], "{files:?}");
        assert!(p.current.load().memo.is_none(), "{files:?}");
        let who = identity("u", &[], &[]);
        let r = req("SystemPing", "GET", "/_ping");
        for _ in 0..3 {
            assert!(with_facts(&r, &who, |f| decide(&p, f)).allow, "{files:?}");
        }
        assert_eq!(memo_count(&metrics, "hit"), 0.0, "{files:?}");
        assert_eq!(memo_count(&metrics, "miss"), 0.0, "{files:?}");
    }
}

#[test]
fn pure_builtins_of_impure_families_are_told_apart() {
    for name in [
        "time.now_ns",
        "rand.intn",
        "uuid.rfc4122",
        "http.send",
        "opa.runtime",
        "print",
        "trace",
    ] {
        assert!(is_impure(name), "{name}");
    }
    for name in [
        "time.parse_rfc3339_ns",
        "uuid.parse",
        "count",
        "startswith",
        "printf",
    ] {
        assert!(!is_impure(name), "{name}");
    }
}

#[test]
fn the_memo_stays_within_its_capacity() {
    let m = Memo::new(8);
    let d = Decision {
        allow: true,
        reasons: Vec::new(),
        revision: "r".into(),
        owner_scope: None,
        view_scope: None,
    };
    let k = |i: u8| [i; 32];
    for i in 0..20 {
        m.insert(k(i), d.clone());
        assert!(m.len() <= 8, "{} after {i}", m.len());
    }
    // The newest are kept; the oldest are gone.
    assert!(m.get(&k(19)).is_some());
    assert!(m.get(&k(0)).is_none());
    // A hit in the old generation survives the next turnover.
    let m = Memo::new(4);
    for i in 0..4 {
        m.insert(k(i), d.clone());
    }
    assert!(m.get(&k(0)).is_some());
    m.insert(k(4), d.clone());
    m.insert(k(5), d.clone());
    assert!(m.get(&k(0)).is_some());
}
