//! Prometheus metrics: what moat counts, and the cheap calls the request path
//! makes to count it. The plain-HTTP endpoint that exposes them (`/metrics`,
//! `/healthz`, `/readyz`) lives in [`mod@serve`].
//!
//! Why `prometheus-client` (≥ 0.25.2) and not the tikv `prometheus` crate:
//! `prometheus-client` is maintained by the Prometheus organisation itself,
//! implements the OpenMetrics text format natively and is kept released; the
//! tikv crate has had no release since March 2025 and pulls in protobuf by
//! default. Versions before 0.25.2 did not escape label values, hence the
//! floor.
//!
//! Naming: `prometheus-client` appends `_total` to counters and `_info` to
//! info metrics, so they are registered without those suffixes.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

mod serve;

pub use serve::serve;

/// Distinct operation names (or auth-failure reasons) kept as their own
/// label value. The callers pass names from fixed tables, so this is never
/// reached in practice; it bounds memory if a caller ever passes free text.
const MAX_LABEL_VALUES: usize = 512;
/// The label value used once [`MAX_LABEL_VALUES`] is reached.
const OVERFLOW_LABEL: &str = "other";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    decision: &'static str,
    code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevokedLabels {
    position: &'static str,
    at: &'static str,
}

/// `moat_revoked_certificates_total{position, at}`: a client chain refused
/// or cut off because a CRL revokes one of its certificates. `position` is
/// `leaf` or `intermediate` (which certificate of the chain is revoked),
/// `at` is `handshake` (a new connection refused) or `open_connection` (an
/// open connection closed on a CRL reload). A handle the TLS verifier and
/// the reload sweep hold.
#[derive(Clone, Debug, Default)]
pub struct RevokedCounter(Family<RevokedLabels, Counter>);

impl RevokedCounter {
    pub fn inc(&self, position: &'static str, at: &'static str) {
        self.0.get_or_create(&RevokedLabels { position, at }).inc();
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// Counter handles for `moat_requests_total`, keyed by operation, then by
/// (decision, code). Looking up by `&str` through `String: Borrow<str>` means
/// a label set that already exists costs two hash lookups and no allocation.
type RequestCache = HashMap<String, HashMap<(&'static str, u16), Counter>>;

/// Every metric moat exports, registered once at start-up.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_cache: RwLock<RequestCache>,
    request_duration: Histogram,
    overhead: Histogram,
    policy_eval: Histogram,
    memo_hit: Counter,
    memo_miss: Counter,
    reload_ok: Counter,
    reload_error: Counter,
    auth_failures: Family<ReasonLabels, Counter>,
    auth_cache: RwLock<HashMap<String, Counter>>,
    tls_handshake_failures: Counter,
    revoked: RevokedCounter,
    connections_active: Gauge,
    connections_parked: Gauge,
    hijacked_active: Gauge,
    audit_records: Counter,
    audit_write_errors: Counter,
    audit_fsyncs: Counter,
    engine_up: Gauge,
    unauthenticated_open: Gauge,
    unauthenticated_evictions: Counter,
    limit_rejections: Family<LimitLabels, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// End-to-end request times: from sub-millisecond pings to long pulls.
const DURATION_BUCKETS: [f64; 17] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];
/// moat's own time and policy evaluation: tens of microseconds upwards.
const OVERHEAD_BUCKETS: [f64; 14] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0,
];

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();

        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "moat_requests",
            "Requests answered, by Engine API operation, decision (allow, deny, error) and HTTP status",
            requests.clone(),
        );
        let request_duration = Histogram::new(DURATION_BUCKETS);
        registry.register(
            "moat_request_duration_seconds",
            "End-to-end request time, engine time included",
            request_duration.clone(),
        );
        let overhead = Histogram::new(OVERHEAD_BUCKETS);
        registry.register(
            "moat_overhead_seconds",
            "Time moat itself spent on a request, engine time excluded",
            overhead.clone(),
        );
        let policy_eval = Histogram::new(OVERHEAD_BUCKETS);
        registry.register(
            "moat_policy_eval_seconds",
            "Time spent evaluating the policy for one request",
            policy_eval.clone(),
        );
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "moat_policy_reloads",
            "Policy reloads, by result (ok, error)",
            reloads.clone(),
        );
        let memo = Family::<ResultLabels, Counter>::default();
        registry.register(
            "moat_policy_memo",
            "Decisions of a memoized policy, by result (hit: remembered, miss: evaluated)",
            memo.clone(),
        );
        let memo_hit = memo.get_or_create_owned(&ResultLabels { result: "hit" });
        let memo_miss = memo.get_or_create_owned(&ResultLabels { result: "miss" });
        let reload_ok = reloads.get_or_create_owned(&ResultLabels { result: "ok" });
        let reload_error = reloads.get_or_create_owned(&ResultLabels { result: "error" });
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "moat_auth_failures",
            "Requests refused because the client could not be authenticated, by reason",
            auth_failures.clone(),
        );
        let tls_handshake_failures = Counter::default();
        registry.register(
            "moat_tls_handshake_failures",
            "TLS handshakes that failed",
            tls_handshake_failures.clone(),
        );
        let connections_active = Gauge::default();
        registry.register(
            "moat_connections_active",
            "Client connections currently open",
            connections_active.clone(),
        );
        let connections_parked = Gauge::default();
        registry.register(
            "moat_connections_parked",
            "Idle keep-alive connections parked without HTTP buffers",
            connections_parked.clone(),
        );
        let hijacked_active = Gauge::default();
        registry.register(
            "moat_hijacked_sessions_active",
            "Hijacked (attach, exec, upgrade) sessions currently open",
            hijacked_active.clone(),
        );
        let audit_records = Counter::default();
        registry.register(
            "moat_audit_records",
            "Audit records written",
            audit_records.clone(),
        );
        let audit_write_errors = Counter::default();
        registry.register(
            "moat_audit_write_errors",
            "Audit records that could not be written",
            audit_write_errors.clone(),
        );
        let audit_fsyncs = Counter::default();
        registry.register(
            "moat_audit_fsyncs",
            "fsyncs of the audit log (one covers every line written before it)",
            audit_fsyncs.clone(),
        );
        let revoked = RevokedCounter::default();
        registry.register(
            "moat_revoked_certificates",
            "Client chains refused at the handshake or closed on a CRL reload because a CRL revokes one of their certificates, by position (leaf, intermediate) and when (handshake, open_connection)",
            revoked.0.clone(),
        );
        let engine_up = Gauge::default();
        registry.register(
            "moat_engine_up",
            "1 when the Docker engine answered its last check, else 0",
            engine_up.clone(),
        );
        let unauthenticated_open = Gauge::default();
        registry.register(
            "moat_unauthenticated_connections",
            "Client connections open that have not proven an identity yet (handshake, or no valid token yet)",
            unauthenticated_open.clone(),
        );
        let unauthenticated_evictions = Counter::default();
        registry.register(
            "moat_unauthenticated_evictions",
            "Unauthenticated connections closed to admit a new connection (limits.unauthenticated)",
            unauthenticated_evictions.clone(),
        );
        let limit_rejections = Family::<LimitLabels, Counter>::default();
        registry.register(
            "moat_limit_rejections",
            "Connections and requests refused over a per-identity limit, by limit (connections, requests_in_flight, streams, rate)",
            limit_rejections.clone(),
        );
        registry.register(
            "moat_build",
            "moat build information",
            Info::new(VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );

        Metrics {
            registry,
            requests,
            request_cache: RwLock::new(HashMap::new()),
            request_duration,
            overhead,
            policy_eval,
            memo_hit,
            memo_miss,
            reload_ok,
            reload_error,
            auth_failures,
            auth_cache: RwLock::new(HashMap::new()),
            tls_handshake_failures,
            revoked,
            connections_active,
            connections_parked,
            hijacked_active,
            audit_records,
            audit_write_errors,
            audit_fsyncs,
            engine_up,
            unauthenticated_open,
            unauthenticated_evictions,
            limit_rejections,
        }
    }

    /// One finished request: its operation id, how it ended, status,
    /// end-to-end time and moat's own share of it.
    ///
    /// Hot path: when this (operation, decision, code) was seen before, this
    /// takes a read lock and allocates nothing.
    pub fn request_done(
        &self,
        op: &str,
        outcome: Outcome,
        code: u16,
        total: Duration,
        overhead: Duration,
    ) {
        self.request_counter(op, outcome.label(), code).inc();
        self.request_duration.observe(total.as_secs_f64());
        self.overhead.observe(overhead.as_secs_f64());
    }

    fn request_counter(&self, op: &str, decision: &'static str, code: u16) -> Counter {
        if let Ok(cache) = self.request_cache.read() {
            if let Some(c) = cache.get(op).and_then(|m| m.get(&(decision, code))) {
                return c.clone();
            }
        }
        // First time for this label set: create it in the family and cache
        // the handle. A poisoned lock only means another thread panicked
        // while inserting; the map itself is still usable.
        let mut cache = match self.request_cache.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let operation = if cache.contains_key(op) || cache.len() < MAX_LABEL_VALUES {
            op
        } else {
            OVERFLOW_LABEL
        };
        let counter = self.requests.get_or_create_owned(&RequestLabels {
            operation: operation.to_owned(),
            decision,
            code,
        });
        cache
            .entry(operation.to_owned())
            .or_default()
            .insert((decision, code), counter.clone());
        counter
    }

    pub fn policy_eval(&self, d: Duration) {
        self.policy_eval.observe(d.as_secs_f64());
    }

    /// A decision of a memoized policy: remembered (`hit`) or evaluated.
    pub fn policy_memo(&self, hit: bool) {
        if hit { &self.memo_hit } else { &self.memo_miss }.inc();
    }

    /// A client that could not be authenticated; `reason` is a short fixed
    /// word such as `no_certificate`, `revoked`, `token_expired`.
    pub fn auth_failure(&self, reason: &str) {
        if let Ok(cache) = self.auth_cache.read() {
            if let Some(c) = cache.get(reason) {
                c.inc();
                return;
            }
        }
        let mut cache = match self.auth_cache.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let reason = if cache.contains_key(reason) || cache.len() < MAX_LABEL_VALUES {
            reason
        } else {
            OVERFLOW_LABEL
        };
        let counter = self.auth_failures.get_or_create_owned(&ReasonLabels {
            reason: reason.to_owned(),
        });
        counter.inc();
        cache.insert(reason.to_owned(), counter);
    }

    /// The revocation counter, for the TLS verifier and the reload sweep.
    pub fn revoked(&self) -> RevokedCounter {
        self.revoked.clone()
    }

    pub fn tls_handshake_failure(&self) {
        self.tls_handshake_failures.inc();
    }
    pub fn connection_opened(&self) {
        self.connections_active.inc();
    }
    pub fn connection_closed(&self) {
        self.connections_active.dec();
    }
    /// A connection was parked (`true`) or resumed or closed while parked.
    pub fn connection_parked(&self, parked: bool) {
        if parked {
            self.connections_parked.inc();
        } else {
            self.connections_parked.dec();
        }
    }
    pub fn hijack_started(&self) {
        self.hijacked_active.inc();
    }
    pub fn hijack_ended(&self) {
        self.hijacked_active.dec();
    }
    /// How many connections are unauthenticated now.
    pub fn unauthenticated_open(&self, n: usize) {
        self.unauthenticated_open
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    pub fn unauthenticated_eviction(&self) {
        self.unauthenticated_evictions.inc();
    }
    /// A connection or request refused over a per-identity limit; `limit`
    /// is a fixed word (never a user name: the label set stays bounded).
    pub fn limit_rejected(&self, limit: &'static str) {
        self.limit_rejections
            .get_or_create(&LimitLabels { limit })
            .inc();
    }
    pub fn engine_up(&self, up: bool) {
        self.engine_up.set(i64::from(up));
    }
    pub fn policy_reload(&self, ok: bool) {
        if ok {
            self.reload_ok.inc();
        } else {
            self.reload_error.inc();
        }
    }
    pub fn audit_record(&self) {
        self.audit_records.inc();
    }
    pub fn audit_write_error(&self) {
        self.audit_write_errors.inc();
    }
    pub fn audit_fsync(&self) {
        self.audit_fsyncs.inc();
    }

    /// The whole registry in the OpenMetrics text format, `# EOF` included.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing into a String cannot fail; an error here would be a bug in
        // an encoder, and a partial scrape is still better than none.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("encoding the metrics failed; the scrape is incomplete");
        }
        out
    }
}

/// How a request ended, as `moat_requests_total{decision}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The policy allowed it (whatever the engine answered).
    Allow,
    /// The policy denied it.
    Deny,
    /// Refused before a decision, or failed at the audit log or the engine.
    Error,
}

impl Outcome {
    /// The label value: `allow`, `deny` or `error`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Error => "error",
        }
    }
}

/// What `/readyz` asks the server: each component's name and whether it is
/// ready, with the reason when it is not.
pub type ReadyCheck = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Vec<(&'static str, Result<(), String>)>> + Send>,
        > + Send
        + Sync,
>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of one sample line, found by its exact name-and-labels prefix.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.split(' ').next()?.parse().ok())
    }

    #[test]
    fn scrape_lists_every_metric_issue_5_names() {
        let m = Metrics::new();
        m.request_done(
            "ContainerList",
            Outcome::Allow,
            200,
            Duration::from_millis(3),
            Duration::from_micros(90),
        );
        m.auth_failure("no_certificate");
        m.limit_rejected("rate");
        let text = m.encode();
        for name in [
            "moat_requests_total{",
            "moat_request_duration_seconds_bucket{",
            "moat_request_duration_seconds_count",
            "moat_overhead_seconds_bucket{",
            "moat_policy_eval_seconds_count",
            "moat_policy_reloads_total{result=\"ok\"}",
            "moat_policy_reloads_total{result=\"error\"}",
            "moat_policy_memo_total{result=\"hit\"}",
            "moat_auth_failures_total{reason=\"no_certificate\"}",
            "moat_tls_handshake_failures_total",
            "moat_connections_active",
            "moat_connections_parked",
            "moat_hijacked_sessions_active",
            "moat_audit_records_total",
            "moat_audit_write_errors_total",
            "moat_audit_fsyncs_total",
            "moat_engine_up",
            "moat_unauthenticated_connections",
            "moat_unauthenticated_evictions_total",
            "moat_limit_rejections_total{limit=\"rate\"}",
            "moat_build_info{version=\"",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} missing in:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn counters_and_gauges_follow_the_calls() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.request_done(
                "ContainerCreate",
                Outcome::Deny,
                403,
                Duration::ZERO,
                Duration::ZERO,
            );
        }
        m.request_done(
            "ContainerCreate",
            Outcome::Allow,
            201,
            Duration::ZERO,
            Duration::ZERO,
        );
        m.request_done("Ping", Outcome::Error, 200, Duration::ZERO, Duration::ZERO);
        m.policy_reload(true);
        m.policy_reload(false);
        m.policy_reload(false);
        m.auth_failure("revoked");
        m.auth_failure("revoked");
        m.tls_handshake_failure();
        m.connection_opened();
        m.connection_opened();
        m.connection_closed();
        m.hijack_started();
        m.engine_up(true);
        m.audit_record();
        m.audit_write_error();
        m.audit_fsync();
        m.policy_eval(Duration::from_micros(70));
        m.policy_memo(true);
        m.policy_memo(true);
        m.policy_memo(false);
        let t = m.encode();
        let cases: &[(&str, f64)] = &[
            (
                r#"moat_requests_total{operation="ContainerCreate",decision="deny",code="403"}"#,
                3.0,
            ),
            (
                r#"moat_requests_total{operation="ContainerCreate",decision="allow",code="201"}"#,
                1.0,
            ),
            (
                r#"moat_requests_total{operation="Ping",decision="error",code="200"}"#,
                1.0,
            ),
            ("moat_request_duration_seconds_count", 5.0),
            ("moat_overhead_seconds_count", 5.0),
            ("moat_policy_eval_seconds_count", 1.0),
            (r#"moat_policy_reloads_total{result="ok"}"#, 1.0),
            (r#"moat_policy_reloads_total{result="error"}"#, 2.0),
            (r#"moat_policy_memo_total{result="hit"}"#, 2.0),
            (r#"moat_policy_memo_total{result="miss"}"#, 1.0),
            (r#"moat_auth_failures_total{reason="revoked"}"#, 2.0),
            ("moat_tls_handshake_failures_total", 1.0),
            ("moat_connections_active", 1.0),
            ("moat_hijacked_sessions_active", 1.0),
            ("moat_engine_up", 1.0),
            ("moat_audit_records_total", 1.0),
            ("moat_audit_write_errors_total", 1.0),
            ("moat_audit_fsyncs_total", 1.0),
        ];
        for (series, want) in cases {
            assert_eq!(sample(&t, series), Some(*want), "{series} in:\n{t}");
        }
        m.engine_up(false);
        assert_eq!(sample(&m.encode(), "moat_engine_up"), Some(0.0));
    }

    #[test]
    fn free_text_operations_cannot_grow_the_label_set_without_bound() {
        let m = Metrics::new();
        for i in 0..(MAX_LABEL_VALUES + 10) {
            m.request_done(
                &format!("op{i}"),
                Outcome::Allow,
                200,
                Duration::ZERO,
                Duration::ZERO,
            );
        }
        let t = m.encode();
        let series = t
            .lines()
            .filter(|l| l.starts_with("moat_requests_total{"))
            .count();
        assert_eq!(series, MAX_LABEL_VALUES + 1);
        assert_eq!(
            sample(
                &t,
                r#"moat_requests_total{operation="other",decision="allow",code="200"}"#
            ),
            Some(10.0)
        );
    }
}
