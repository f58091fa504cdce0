//! Per-identity limits: what one user name may hold at once (connections,
//! requests in flight, streaming sessions) and how fast it may send
//! requests (a token bucket), with the values resolved per request from
//! `limits.identity` and the overrides of the identity's groups.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{IdentityLimits, IdentityOverride, Limits};

/// A limit an identity can reach. Its label is the metric's `limit` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Connections,
    RequestsInFlight,
    Streams,
    Rate,
}

impl Limit {
    /// The `limit` label of `moat_limit_rejections_total`.
    pub fn label(self) -> &'static str {
        match self {
            Limit::Connections => "connections",
            Limit::RequestsInFlight => "requests_in_flight",
            Limit::Streams => "streams",
            Limit::Rate => "rate",
        }
    }
}

/// What a request or connection would hold; see [`Identities::begin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An ordinary request: counted in flight and against the rate.
    Request,
    /// A long-lived stream or hijacked session: counted as a stream only.
    Stream,
}

/// An identity over one of its limits.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.message())]
pub struct Over {
    pub limit: Limit,
    pub identity: String,
    /// The limit in force, as configured (`64`, `20 requests/s with bursts of 40`).
    pub value: String,
    /// When trying again may succeed (the `Retry-After` header).
    pub retry_after: Duration,
}

impl Over {
    fn message(&self) -> String {
        let (what, key) = match self.limit {
            Limit::Connections => ("too many open connections", "max_connections"),
            Limit::RequestsInFlight => ("too many requests in flight", "max_requests_in_flight"),
            Limit::Streams => (
                "too many streaming sessions (attach, exec, logs -f, events, stats, wait)",
                "max_streams",
            ),
            Limit::Rate => ("request rate limit exceeded", "rate and burst"),
        };
        format!(
            "{what} for {}: the limit is {} (limits.identity.{key}); retry in {}s, or ask an admin to raise it for one of your groups under limits.groups",
            self.identity,
            self.value,
            self.retry_after.as_secs().max(1),
        )
    }
}

/// The limits in force for one identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub max_connections: Option<usize>,
    pub max_requests_in_flight: Option<usize>,
    pub max_streams: Option<usize>,
    /// Requests per second and burst, when rate-limited.
    pub rate: Option<(f64, u32)>,
}

/// `limits.identity` with its group overrides.
#[derive(Debug, Clone)]
pub struct Table {
    default: IdentityLimits,
    default_connections: usize,
    groups: Vec<(String, IdentityOverride)>,
}

impl Table {
    pub fn from_config(limits: &Limits) -> Table {
        Table {
            default: limits.identity.clone(),
            default_connections: (limits.max_connections / 2).max(1),
            groups: limits
                .groups
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// Each limit from the identity's groups that set it (the largest value
    /// when several do), else from `limits.identity`.
    pub fn resolve(&self, groups: &[String]) -> Resolved {
        let set: Vec<&IdentityOverride> = self
            .groups
            .iter()
            .filter(|(name, _)| groups.iter().any(|g| g == name))
            .map(|(_, o)| o)
            .collect();
        fn most<T: PartialOrd + Copy>(vals: impl Iterator<Item = T>) -> Option<T> {
            vals.fold(None, |m, v| match m {
                Some(m) if m >= v => Some(m),
                _ => Some(v),
            })
        }
        let max_connections = most(set.iter().filter_map(|o| o.max_connections))
            .or(self.default.max_connections)
            .or(Some(self.default_connections));
        let max_requests_in_flight = most(set.iter().filter_map(|o| o.max_requests_in_flight))
            .or(self.default.max_requests_in_flight);
        let max_streams =
            most(set.iter().filter_map(|o| o.max_streams)).or(self.default.max_streams);
        let rate = most(set.iter().filter_map(|o| o.rate)).or(self.default.rate);
        let burst = most(set.iter().filter_map(|o| o.burst)).or(self.default.burst);
        Resolved {
            max_connections,
            max_requests_in_flight,
            max_streams,
            rate: rate.map(|r| (r, burst.unwrap_or_else(|| (2.0 * r).ceil().max(1.0) as u32))),
        }
    }
}

/// What one identity holds now.
struct Usage {
    connections: usize,
    in_flight: usize,
    streams: usize,
    /// The token bucket, as of `refilled`.
    tokens: f64,
    refilled: Instant,
    /// The rate the bucket was last filled at (to know when it is full).
    rate: Option<(f64, u32)>,
}

impl Usage {
    fn new(rate: Option<(f64, u32)>) -> Usage {
        Usage {
            connections: 0,
            in_flight: 0,
            streams: 0,
            tokens: rate.map_or(0.0, |(_, b)| f64::from(b)),
            refilled: Instant::now(),
            rate,
        }
    }

    fn refill(&mut self, rate: Option<(f64, u32)>, now: Instant) {
        if let Some((r, burst)) = rate {
            if self.rate.is_none() {
                self.tokens = f64::from(burst);
            }
            let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
            self.tokens = (self.tokens + dt * r).min(f64::from(burst));
        }
        self.refilled = now;
        self.rate = rate;
    }

    /// Nothing held and the bucket full: forgetting it changes nothing.
    fn idle(&mut self, now: Instant) -> bool {
        self.refill(self.rate, now);
        self.connections == 0
            && self.in_flight == 0
            && self.streams == 0
            && self.rate.is_none_or(|(_, b)| self.tokens >= f64::from(b))
    }
}

/// Identities with something held or a bucket not yet full.
pub struct Identities {
    table: Table,
    usage: Mutex<HashMap<String, Usage>>,
}

/// Past this many identities tracked, idle ones are forgotten.
const SWEEP_ABOVE: usize = 1024;

/// What an identity holds (a connection, a request, a stream) until
/// dropped.
pub struct Held {
    ids: Arc<Identities>,
    name: String,
    what: Counted,
}

#[derive(Clone, Copy)]
enum Counted {
    Connection,
    Request,
    Stream,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut usage = self.ids.lock();
        if let Some(u) = usage.get_mut(&self.name) {
            let n = match self.what {
                Counted::Connection => &mut u.connections,
                Counted::Request => &mut u.in_flight,
                Counted::Stream => &mut u.streams,
            };
            *n = n.saturating_sub(1);
        }
    }
}

impl Identities {
    pub fn new(table: Table) -> Identities {
        Identities {
            table,
            usage: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Usage>> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The limits in force for an identity in these groups.
    pub fn resolve(&self, groups: &[String]) -> Resolved {
        self.table.resolve(groups)
    }

    /// Counts a connection for `name`, or says which limit it is over.
    pub fn connect(self: &Arc<Self>, name: &str, groups: &[String]) -> Result<Held, Over> {
        let limits = self.table.resolve(groups);
        self.with_usage(name, limits.rate, |u| {
            if let Some(max) = limits.max_connections {
                if u.connections >= max {
                    return Err(over(Limit::Connections, name, max.to_string(), 1.0));
                }
            }
            u.connections += 1;
            Ok(Counted::Connection)
        })
    }

    /// Counts a request or stream for `name`, or says which limit it is
    /// over. A request takes a token from the bucket; a stream does not.
    pub fn begin(
        self: &Arc<Self>,
        name: &str,
        groups: &[String],
        kind: Kind,
    ) -> Result<Held, Over> {
        let limits = self.table.resolve(groups);
        self.with_usage(name, limits.rate, |u| match kind {
            Kind::Stream => {
                if let Some(max) = limits.max_streams {
                    if u.streams >= max {
                        return Err(over(Limit::Streams, name, max.to_string(), 1.0));
                    }
                }
                u.streams += 1;
                Ok(Counted::Stream)
            }
            Kind::Request => {
                if let Some(max) = limits.max_requests_in_flight {
                    if u.in_flight >= max {
                        return Err(over(Limit::RequestsInFlight, name, max.to_string(), 1.0));
                    }
                }
                if let Some((rate, burst)) = limits.rate {
                    if u.tokens < 1.0 {
                        let wait = (1.0 - u.tokens) / rate;
                        let value = format!("{rate} requests/s with bursts of {burst}");
                        return Err(over(Limit::Rate, name, value, wait));
                    }
                    u.tokens -= 1.0;
                }
                u.in_flight += 1;
                Ok(Counted::Request)
            }
        })
    }

    fn with_usage(
        self: &Arc<Self>,
        name: &str,
        rate: Option<(f64, u32)>,
        f: impl FnOnce(&mut Usage) -> Result<Counted, Over>,
    ) -> Result<Held, Over> {
        let now = Instant::now();
        let mut usage = self.lock();
        if usage.len() > SWEEP_ABOVE {
            usage.retain(|_, u| !u.idle(now));
        }
        let u = match usage.get_mut(name) {
            Some(u) => u,
            None => usage.entry(name.to_string()).or_insert(Usage::new(rate)),
        };
        u.refill(rate, now);
        let what = f(u)?;
        Ok(Held {
            ids: self.clone(),
            name: name.to_string(),
            what,
        })
    }

    /// How many identities are tracked (for tests).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

fn over(limit: Limit, identity: &str, value: String, retry_secs: f64) -> Over {
    Over {
        limit,
        identity: identity.to_string(),
        value,
        retry_after: Duration::from_secs_f64(retry_secs.ceil().clamp(1.0, 3600.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(yaml: &str) -> Table {
        let text = format!(
            "tls:\n  cert: s.pem\n  key: k.pem\n  client_ca: ca.pem\nlimits:\n  max_connections: 100\n{yaml}"
        );
        let c = crate::config::Config::parse(&text, std::path::Path::new("/m.yaml")).unwrap();
        Table::from_config(&c.limits)
    }

    fn ids(yaml: &str) -> Arc<Identities> {
        Arc::new(Identities::new(table(yaml)))
    }

    #[test]
    fn defaults_and_the_most_generous_group_override() {
        let t = table(
            "  identity:\n    max_streams: 4\n  groups:\n    ci:\n      rate: 5\n      max_streams: 2\n    ops:\n      max_streams: 8\n",
        );
        let none = t.resolve(&[]);
        assert_eq!(none.max_connections, Some(50), "half of max_connections");
        assert_eq!(none.max_requests_in_flight, Some(256));
        assert_eq!(none.max_streams, Some(4));
        assert_eq!(none.rate, None);
        let ci = t.resolve(&["ci".into()]);
        assert_eq!(ci.max_streams, Some(2), "a group may lower a limit");
        assert_eq!(ci.rate, Some((5.0, 10)), "burst defaults to twice the rate");
        let both = t.resolve(&["ci".into(), "ops".into()]);
        assert_eq!(both.max_streams, Some(8));
        assert_eq!(both.rate, Some((5.0, 10)));
    }

    #[test]
    fn connections_are_counted_per_identity_and_given_back() {
        let i = ids("  identity:\n    max_connections: 2\n");
        let a1 = i.connect("alice", &[]).unwrap();
        let _a2 = i.connect("alice", &[]).unwrap();
        let e = i.connect("alice", &[]).err().unwrap();
        assert_eq!(e.limit, Limit::Connections);
        assert!(
            e.to_string().contains("limits.identity.max_connections"),
            "{e}"
        );
        // Another identity is not affected.
        let _b = i.connect("bob", &[]).unwrap();
        drop(a1);
        let _a3 = i.connect("alice", &[]).unwrap();
    }

    #[test]
    fn requests_in_flight_and_streams_are_separate() {
        let i = ids("  identity:\n    max_requests_in_flight: 1\n    max_streams: 1\n");
        let r = i.begin("alice", &[], Kind::Request).unwrap();
        let e = i.begin("alice", &[], Kind::Request).err().unwrap();
        assert_eq!(e.limit, Limit::RequestsInFlight);
        let _s = i.begin("alice", &[], Kind::Stream).unwrap();
        assert_eq!(
            i.begin("alice", &[], Kind::Stream).err().unwrap().limit,
            Limit::Streams
        );
        drop(r);
        let _r = i.begin("alice", &[], Kind::Request).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_gets_exactly_burst_requests_then_the_rate() {
        let i = ids("  identity:\n    rate: 2\n    burst: 5\n");
        let mut ok = 0;
        let mut refused = 0;
        for _ in 0..12 {
            match i.begin("ci", &[], Kind::Request) {
                Ok(_held) => ok += 1,
                Err(e) => {
                    assert_eq!(e.limit, Limit::Rate);
                    assert_eq!(e.retry_after, Duration::from_secs(1));
                    refused += 1;
                }
            }
        }
        assert_eq!((ok, refused), (5, 7));
        // Streams do not count against the rate.
        let _s = i.begin("ci", &[], Kind::Stream).unwrap();
        tokio::time::advance(Duration::from_millis(1000)).await;
        assert!(i.begin("ci", &[], Kind::Request).is_ok());
        assert!(i.begin("ci", &[], Kind::Request).is_ok());
        assert!(i.begin("ci", &[], Kind::Request).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_identities_are_forgotten_past_the_sweep_size() {
        let i = ids("  identity:\n    rate: 1000\n");
        for n in 0..(SWEEP_ABOVE + 10) {
            drop(i.begin(&format!("u{n}"), &[], Kind::Request).unwrap());
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(i.begin("last", &[], Kind::Request).unwrap());
        assert!(i.tracked() <= 2, "{}", i.tracked());
    }
}
