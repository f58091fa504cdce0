//! Reports how long the shipped policy pack takes to decide a ContainerCreate
//! (the docker CLI's real body) through the real `Policy`: median and p99 on
//! one thread, then the same on every core at once. It reports; it never
//! asserts (no timing thresholds in tests). Run: `cargo bench --bench policy`.

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

/// Decides through `Policy::decide`, exactly as the gateway does: input
/// built from the request facts, body converted once, one VM run.
fn measure(policy: &Policy, doc: &serde_json::Value, n: usize) -> Vec<Duration> {
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
    let facts = Facts {
        method: &method,
        uri: &uri,
        headers: &headers,
        route: &route,
        api_version: route.api_version.as_deref(),
        body: Some(&body),
        identity: &identity,
        client: "127.0.0.1:40000".parse().unwrap(),
        resources: &[],
    };
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let decision = rt.block_on(policy.decide(&facts));
        times.push(start.elapsed());
        assert!(decision.allow, "{:?}", decision.reasons);
    }
    times
}

/// `GET /_ping` by an admin with a client certificate, as the gateway
/// bench sends it: no body, the whole pack still runs.
fn measure_ping(policy: &Policy, n: usize) -> Vec<Duration> {
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
    let facts = Facts {
        method: &method,
        uri: &uri,
        headers: &headers,
        route: &route,
        api_version: route.api_version.as_deref(),
        body: None,
        identity: &identity,
        client: "127.0.0.1:40000".parse().unwrap(),
        resources: &[],
    };
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
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
        report("GET /_ping (admin)", measure_ping(&policy, ITERATIONS * 10));
        return;
    }
    measure(&policy, &doc, WARMUP);
    report("1 thread ", measure(&policy, &doc, ITERATIONS));
    measure_ping(&policy, WARMUP);
    report("GET /_ping (admin)", measure_ping(&policy, ITERATIONS));

    // Where the time goes: converting the input to regorus' value type, and
    // a trivial policy (VM overhead) on the same input.
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
    measure(&baseline, &doc, WARMUP);
    report("trivial policy", measure(&baseline, &doc, ITERATIONS));

    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let all = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    measure(&policy, &doc, WARMUP);
                    measure(&policy, &doc, ITERATIONS / threads)
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    report(&format!("{threads} threads"), all);
}
