//! What an attacker controls, bounded: the `limits` section.

use std::time::Duration;

use serde::Deserialize;

use super::Invalid;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Time a client has to finish the TLS handshake.
    #[serde(default = "d10s", with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Time a client has to send a complete request head, from its first
    /// byte; also how long a new connection may wait before its first.
    #[serde(default = "d30s", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this.
    #[serde(default = "d120s", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest request head (request line plus headers), in bytes.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most header fields in one request.
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Most client connections open at once; further ones wait in the
    /// kernel's accept queue.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest JSON body moat reads whole to inspect; larger ones get 413.
    #[serde(default = "default_max_inspect_body_bytes")]
    pub max_inspect_body_bytes: usize,
    /// Longest a single policy evaluation may run before it counts as deny.
    #[serde(default = "d1s", with = "humantime_serde")]
    pub policy_eval_timeout: Duration,
    /// On SIGTERM/SIGINT, in-flight requests get this long to finish before
    /// hijacked sessions and remaining connections are closed.
    #[serde(default = "d10s", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Time a client has to send a whole inspected (JSON) request body,
    /// from the end of its head; a slower one gets 408. Also how long the
    /// unread rest of a body moat answered without is drained
    /// (`body::unread`).
    #[serde(default = "d30s", with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// A response (or hijacked stream) the client does not read for this
    /// long closes the connection.
    #[serde(default = "d60s", with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Most objects one request may name (path and body references) that
    /// moat resolves through the engine before the decision; more is 400.
    #[serde(default = "default_max_resolved_objects")]
    pub max_resolved_objects: usize,
    /// Time the engine has to answer all of one request's object lookups;
    /// slower is 503 (never an allow).
    #[serde(default = "d10s", with = "humantime_serde")]
    pub resolve_timeout: Duration,
    /// The budget of connections that have not proven an identity yet.
    #[serde(default)]
    pub unauthenticated: Unauthenticated,
    /// Per-identity limits, the same for every identity unless a group
    /// overrides them.
    #[serde(default)]
    pub identity: IdentityLimits,
    /// Per-group overrides of `limits.identity`, by group name.
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, IdentityOverride>,
}

/// Connections still in the TLS handshake, or (with `tls.client_cert:
/// optional`) without a request carrying a valid token yet.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Unauthenticated {
    /// Most unauthenticated connections at once; when full, a new connection
    /// evicts the oldest one. Default: half of `limits.max_connections`.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Most unauthenticated connections from one source address; a new one
    /// beyond it evicts that address's oldest. Default: no cap.
    #[serde(default)]
    pub max_per_source: Option<usize>,
    /// How long an unauthenticated connection is safe from eviction. Default
    /// 250ms; the accept loop waits rather than evict a younger one.
    #[serde(default, with = "humantime_serde")]
    pub grace: Option<Duration>,
}

impl Unauthenticated {
    /// The budget in force for `max_connections` total connections.
    pub fn budget(&self, max_connections: usize) -> usize {
        self.max_connections
            .unwrap_or(max_connections / 2)
            .clamp(1, max_connections.max(1))
    }

    pub fn grace(&self) -> Duration {
        self.grace.unwrap_or(Duration::from_millis(250))
    }
}

/// What one identity (a user name) may hold at once. `null` lifts a limit.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityLimits {
    /// Open connections. Default: half of `limits.max_connections`.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Requests in flight at once (streams excluded).
    #[serde(default = "default_identity_in_flight")]
    pub max_requests_in_flight: Option<usize>,
    /// Streaming and hijacked sessions open at once: attach, exec, logs -f,
    /// events, stats, wait.
    #[serde(default = "default_identity_streams")]
    pub max_streams: Option<usize>,
    /// Sustained requests per second (a token bucket; streams excluded).
    /// Default: no rate limit.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Requests allowed in a burst above `rate`. Default: twice the rate.
    #[serde(default)]
    pub burst: Option<u32>,
}

impl Default for IdentityLimits {
    fn default() -> Self {
        Self {
            max_connections: None,
            max_requests_in_flight: default_identity_in_flight(),
            max_streams: default_identity_streams(),
            rate: None,
            burst: None,
        }
    }
}

fn default_identity_in_flight() -> Option<usize> {
    Some(256)
}
fn default_identity_streams() -> Option<usize> {
    Some(64)
}

/// A group's override of [`IdentityLimits`]: only the keys it names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityOverride {
    #[serde(default)]
    pub max_connections: Option<usize>,
    #[serde(default)]
    pub max_requests_in_flight: Option<usize>,
    #[serde(default)]
    pub max_streams: Option<usize>,
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default)]
    pub burst: Option<u32>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: d10s(),
            header_read_timeout: d30s(),
            idle_timeout: d120s(),
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            max_connections: default_max_connections(),
            max_inspect_body_bytes: default_max_inspect_body_bytes(),
            policy_eval_timeout: d1s(),
            shutdown_grace: d10s(),
            body_read_timeout: d30s(),
            write_timeout: d60s(),
            max_resolved_objects: default_max_resolved_objects(),
            resolve_timeout: d10s(),
            unauthenticated: Unauthenticated::default(),
            identity: IdentityLimits::default(),
            groups: Default::default(),
        }
    }
}

fn d1s() -> Duration {
    Duration::from_secs(1)
}
fn d10s() -> Duration {
    Duration::from_secs(10)
}
fn d30s() -> Duration {
    Duration::from_secs(30)
}
fn d60s() -> Duration {
    Duration::from_secs(60)
}
fn d120s() -> Duration {
    Duration::from_secs(120)
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_max_headers() -> usize {
    100
}
fn default_max_connections() -> usize {
    1024
}
fn default_max_resolved_objects() -> usize {
    32
}
fn default_max_inspect_body_bytes() -> usize {
    4 * 1024 * 1024
}

impl Limits {
    pub(super) fn check(&self) -> Result<(), Invalid> {
        if self.max_header_bytes < 8192 {
            return Err((
                "limits.max_header_bytes",
                format!("{} is too small; use at least 8192", self.max_header_bytes),
            ));
        }
        if self.max_connections == 0 {
            return Err(("limits.max_connections", "must be at least 1".into()));
        }
        if self.max_resolved_objects == 0 {
            return Err((
                "limits.max_resolved_objects",
                "must be at least 1 (a request naming a container must be resolved)".into(),
            ));
        }
        if self.resolve_timeout.is_zero() {
            return Err(("limits.resolve_timeout", "must be more than 0s".into()));
        }
        self.check_admission()
    }

    /// The pre-authentication budget and per-identity limits make sense.
    fn check_admission(&self) -> Result<(), Invalid> {
        let u = &self.unauthenticated;
        if u.max_connections == Some(0) || u.max_per_source == Some(0) {
            return Err((
                "limits.unauthenticated",
                "max_connections and max_per_source must be at least 1".into(),
            ));
        }
        if let Some(n) = u.max_connections.filter(|n| *n > self.max_connections) {
            return Err((
                "limits.unauthenticated.max_connections",
                format!(
                    "{n} exceeds limits.max_connections ({}); unauthenticated connections count among them",
                    self.max_connections
                ),
            ));
        }
        let i = &self.identity;
        let own = IdentityOverride {
            max_connections: i.max_connections,
            max_requests_in_flight: i.max_requests_in_flight,
            max_streams: i.max_streams,
            rate: i.rate,
            burst: i.burst,
        };
        own.check("limits.identity")
            .map_err(|m| ("limits.identity", m))?;
        for (name, o) in &self.groups {
            o.check(&format!("limits.groups.{name}"))
                .map_err(|m| ("limits.groups", m))?;
        }
        Ok(())
    }
}

impl IdentityOverride {
    fn check(&self, what: &str) -> Result<(), String> {
        let counts = [
            self.max_connections,
            self.max_requests_in_flight,
            self.max_streams,
        ];
        if counts.contains(&Some(0)) {
            return Err(format!(
                "{what}: max_connections, max_requests_in_flight and max_streams must be at least 1 (leave a key out for the default)"
            ));
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            return Err(format!(
                "{what}.rate must be a positive number of requests per second"
            ));
        }
        if self.burst == Some(0) {
            return Err(format!("{what}.burst must be at least 1"));
        }
        Ok(())
    }
}
