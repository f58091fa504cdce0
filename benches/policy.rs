//! Reports how long the shipped policy pack takes to decide a ContainerCreate
//! (the docker CLI's real body) and an admin's `GET /_ping` through the real
//! `Policy`: median and p99 on one thread, then the same on every core at
//! once. Each is measured twice: evaluated (every request from a new client
//! port, so the memo of `policy/memo.rs` misses, as for the first request
//! of every connection) and remembered (the same request again, a memo
//! hit). It reports; it never asserts (no timing thresholds in tests).
//! Run: `cargo bench --bench policy`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Method, Uri};
use moat::classify::{BodyKind, OpId, Operation, Route};
use moat::config;
use moat::identity::{AuthMethod, Identity};
use moat::policy::{Facts, Policy};
use serde_json::json;

const ITERATIONS: usize = 20_000;
const WARMUP: usize = 500;

fn input() -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let body: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("src/policy/testdata/docker-cli-run-plain.json"))
            .unwrap(),
    )
    .unwrap();
    json!({
        "request": {"method": "POST", "path": "/containers/create", "api_version": "1.41",
                    "query": {}, "headers": {"content-type": "application/json",
                    "user-agent": "Docker-Client/28.2.2 (linux)"}, "body": body,
                    "uri": "/v1.41/containers/create"},
        "operation": {"id": "ContainerCreate", "params": {}, "resource": "containers", "readonly": false},
        "user": {"name": "dana", "groups": ["developer"], "auth_method": "certificate",
                 "scopes": [], "claims": null, "certificate": null},
        "client": {"address": "127.0.0.1", "port": 40000},
        "Method": "POST", "Path": "/v1.41/containers/create", "PathPlain": "/v1.41/containers/create",
        "PathArr": ["", "v1.41", "containers", "create"], "Query": {},
        "Headers": {"Content-Type": "application/json"}, "Body": body,
        "User": "dana", "AuthMethod": "TLS", "BindMounts": []
    })
}

static PING: Operation = Operation {
    id: OpId::SystemPing,
    resource: "system",
    readonly: true,
    hijack: false,
    body: BodyKind::Stream,
};

static CREATE: Operation = Operation {
    id: OpId::ContainerCreate,
    resource: "containers",
    readonly: false,
    hijack: false,
    body: BodyKind::Inspect,
};

/// Which memo outcome a measurement sees.
#[derive(Clone, Copy)]
enum Memo {
    /// A new client port for every request: a miss, the pack evaluated.
    Miss,
    /// The same request every time: a hit after the first.
    Hit,
}

impl Memo {
    fn client(self, i: usize) -> std::net::SocketAddr {
        let port = match self {
            Memo::Miss => 1024 + (i % 60_000) as u16,
            Memo::Hit => 40000,
        };
        std::net::SocketAddr::from(([127, 0, 0, 1], port))
    }
}

/// Decides through `Policy::decide`, exactly as the gateway does: input
/// built from the request facts, body converted once, one VM run (or a
/// memo hit).
fn measure(policy: &Policy, doc: &serde_json::Value, n: usize, memo: Memo) -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let route = Route {
        op: &CREATE,
        params: Vec::new(),
        api_version: Some("1.41".into()),
        path: "/containers/create".into(),
        query: Vec::new(),
        upstream: "/v1.41/containers/create".into(),
    };
    let method = Method::POST;
    let uri: Uri = "/v1.41/containers/create".parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert(
        "user-agent",
        HeaderValue::from_static("Docker-Client/28.2.2 (linux)"),
    );
    let identity = Identity {
        name: "dana".into(),
        groups: vec!["developer".into()],
        auth_method: AuthMethod::Certificate,
        scopes: Vec::new(),
        claims: serde_json::Value::Null,
        certificate: None,
        token_id: None,
        local: None,
    };
    let body = doc["Body"].clone();
    let mut facts = Facts {
        method: &method,
        uri: &uri,
        headers: &headers,
        route: &route,
        api_version: route.api_version.as_deref(),
        body: Some(&body),
        identity: &identity,
        client: memo.client(0),
        resources: &[],
    };
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        facts.client = memo.client(i);
        let start = Instant::now();
        let decision = rt.block_on(policy.decide(&facts));
        times.push(start.elapsed());
        assert!(decision.allow, "{:?}", decision.reasons);
    }
    times
}

/// `GET /_ping` by an admin with a client certificate, as the gateway
/// bench sends it: no body, the whole pack still runs.
fn measure_ping(policy: &Policy, n: usize, memo: Memo) -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let route = Route {
        op: &PING,
        params: Vec::new(),
        api_version: None,
        path: "/_ping".into(),
        query: Vec::new(),
        upstream: "/_ping".into(),
    };
    let method = Method::GET;
    let uri: Uri = "/_ping".parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("localhost"));
    let identity = Identity {
        name: "bench".into(),
        groups: vec!["admin".into()],
        auth_method: AuthMethod::Certificate,
        scopes: Vec::new(),
        claims: serde_json::Value::Null,
        certificate: Some(std::sync::Arc::new(moat::identity::CertInfo {
            subject: "CN=bench,O=admin".into(),
            serial: "1f2e3d4c5b6a".into(),
            fingerprint_sha256: "ab".repeat(32),
            not_after: "2027-01-01T00:00:00Z".into(),
            names: Ok(moat::identity::CertNames {
                user: moat::identity::name::UserName::parse("bench").expect("a valid name"),
                groups: Vec::new(),
            }),
            chain: Vec::new(),
        })),
        token_id: None,
        local: None,
    };
    let mut facts = Facts {
        method: &method,
        uri: &uri,
        headers: &headers,
        route: &route,
        api_version: route.api_version.as_deref(),
        body: None,
        identity: &identity,
        client: memo.client(0),
        resources: &[],
    };
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        facts.client = memo.client(i);
        let start = Instant::now();
        let decision = rt.block_on(policy.decide(&facts));
        times.push(start.elapsed());
        assert!(decision.allow, "{:?}", decision.reasons);
    }
    times
}

fn report(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)];
    println!(
        "{label}: n={} median={:?} p99={:?} max={:?}",
        times.len(),
        pct(0.5),
        pct(0.99),
        times[times.len() - 1]
    );
}

fn main() {
    // MOAT_BENCH_POLICY_DIR benches another pack (it must allow the request).
    let dir = std::env::var_os("MOAT_BENCH_POLICY_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"));
    let policy = Policy::load(&config::Policy { dir }, &config::Limits::default()).unwrap();
    let doc = input();
    println!(
        "shipped pack, ContainerCreate (docker CLI body, {} bytes of input JSON); RUST_BACKTRACE={:?}",
        doc.to_string().len(),
        std::env::var("RUST_BACKTRACE").ok()
    );
    // MOAT_BENCH_PING_ONLY=1: only the /_ping case, 10× longer (for a profiler).
    if std::env::var_os("MOAT_BENCH_PING_ONLY").is_some() {
        report(
            "GET /_ping (admin), evaluated",
            measure_ping(&policy, ITERATIONS * 10, Memo::Miss),
        );
        return;
    }
    println!(
        "memoized: {} (builtins that prevent it: {:?})",
        policy.impure_builtins().is_empty(),
        policy.impure_builtins()
    );
    measure(&policy, &doc, WARMUP, Memo::Miss);
    report(
        "ContainerCreate, 1 thread, evaluated (memo miss)",
        measure(&policy, &doc, ITERATIONS, Memo::Miss),
    );
    report(
        "ContainerCreate, 1 thread, remembered (memo hit)",
        measure(&policy, &doc, ITERATIONS, Memo::Hit),
    );
    measure_ping(&policy, WARMUP, Memo::Miss);
    report(
        "GET /_ping (admin), evaluated (memo miss)",
        measure_ping(&policy, ITERATIONS, Memo::Miss),
    );
    report(
        "GET /_ping (admin), remembered (memo hit)",
        measure_ping(&policy, ITERATIONS, Memo::Hit),
    );

    // Where the time goes: the memo key (SHA-256 of the serialized input),
    // converting the input to regorus' value type, and a trivial policy (VM
    // overhead) on the same input.
    let mut keys = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let start = Instant::now();
        let k = moat::policy::memo::key("0123456789abcdef", &doc);
        keys.push(start.elapsed());
        std::hint::black_box(k);
    }
    report("memo key of the ContainerCreate input", keys);
    let mut conv = Vec::with_capacity(ITERATIONS);
    for _ in 0..ITERATIONS {
        let d = doc.clone();
        let start = Instant::now();
        let v = regorus::Value::from(d);
        conv.push(start.elapsed());
        std::hint::black_box(v);
    }
    report("input conversion only", conv);
    let trivial = tempfile::tempdir().unwrap();
    std::fs::write(
        trivial.path().join("p.rego"),
        "package docker.authz\nimport rego.v1\ndefault allow := true\n",
    )
    .unwrap();
    let baseline = Policy::load(
        &config::Policy {
            dir: trivial.path().to_path_buf(),
        },
        &config::Limits::default(),
    )
    .unwrap();
    measure(&baseline, &doc, WARMUP, Memo::Miss);
    report(
        "trivial policy, evaluated (memo miss)",
        measure(&baseline, &doc, ITERATIONS, Memo::Miss),
    );

    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    for memo in [Memo::Miss, Memo::Hit] {
        let all = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        measure(&policy, &doc, WARMUP, memo);
                        measure(&policy, &doc, ITERATIONS / threads, memo)
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        let what = match memo {
            Memo::Miss => "evaluated",
            Memo::Hit => "remembered",
        };
        report(&format!("ContainerCreate, {threads} threads, {what}"), all);
    }
}
