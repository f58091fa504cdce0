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
        Ok(())
    }
}
