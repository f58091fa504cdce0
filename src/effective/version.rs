//! The API version stage: which Engine API version the engine will apply to
//! a request, and whether moat lets that version through.
//!
//! The daemon applies the version in the path prefix (`/v1.41/...`), or its
//! own newest version when there is none, and answers an error for a version
//! outside its range. Several handlers change what a body means with the
//! version (see [`super::container`]), so the policy must decide on the
//! version the engine will really use: that is `input.request.api_version`.
//!
//! Two bounds apply, the tighter first:
//! - `engine.min_api_version` in moat's config (default `1.24`, what current
//!   dockerd enforces by default): older versions carry the deprecated body
//!   positions this module family exists to close, so they are refused with
//!   a message naming the setting;
//! - the engine's own range, learnt from `GET /version` ([`EngineApi`]) the
//!   first time moat needs it, so that a version the engine does not serve
//!   gets moat's answer, not a half-forwarded request.

use std::time::Duration;

use http::Method;

use super::EffectiveError;
use crate::forward::{ForwardError, Upstream};

pub use crate::classify::{ApiVersion, DEFAULT_MIN_API_VERSION};

/// What moat knows about the engine behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineFacts {
    /// The oldest API version the engine serves (`MinAPIVersion`).
    pub min: ApiVersion,
    /// The newest, which it applies when a request has no version prefix
    /// (`ApiVersion`).
    pub max: ApiVersion,
    /// Whether the engine runs on cgroup v2 (`/info` `CgroupVersion`); some
    /// defaults for old API versions differ on cgroup v1.
    pub cgroup_v2: bool,
}

/// The engine's version range and cgroup version, learnt once from
/// `GET /version` and `GET /info` the first time a request needs them (the
/// first request after moat starts). A failed lookup is not remembered: the
/// request that needed it is refused, and the next one asks again.
#[derive(Debug, Default)]
pub struct EngineApi {
    known: tokio::sync::OnceCell<EngineFacts>,
}

/// How long a lookup may take, and how much of an answer moat reads.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
const LOOKUP_MAX_BYTES: usize = 1 << 20;

impl EngineApi {
    /// Facts given up front (tests, `moat policy eval`).
    pub fn known(facts: EngineFacts) -> Self {
        EngineApi {
            known: tokio::sync::OnceCell::new_with(Some(facts)),
        }
    }

    /// The engine's facts, asked for on first use.
    pub async fn facts(&self, upstream: &Upstream) -> Result<EngineFacts, EffectiveError> {
        self.known
            .get_or_try_init(|| async {
                let facts = tokio::time::timeout(LOOKUP_TIMEOUT, lookup(upstream))
                    .await
                    .unwrap_or_else(|_| Err(Lookup::Answer("no answer within 10s".into())));
                match facts {
                    Ok(f) => {
                        tracing::info!(min = %f.min, max = %f.max, cgroup_v2 = f.cgroup_v2, "engine API version range learnt");
                        Ok(f)
                    }
                    Err(Lookup::Unreachable) => {
                        Err(EffectiveError::EngineUnknown("the engine is not reachable"))
                    }
                    Err(Lookup::Answer(reason)) => {
                        tracing::warn!(%reason, "engine version lookup failed");
                        Err(EffectiveError::EngineUnknown(
                            "the engine did not say which API versions it serves",
                        ))
                    }
                }
            })
            .await
            .copied()
    }
}

/// Why a lookup failed.
enum Lookup {
    Unreachable,
    Answer(String),
}

async fn get_json(upstream: &Upstream, path: &str) -> Result<serde_json::Value, Lookup> {
    let reply = match upstream
        .call(Method::GET, path, None, LOOKUP_MAX_BYTES)
        .await
    {
        Ok(r) => r,
        Err(ForwardError::Unreachable) => return Err(Lookup::Unreachable),
        Err(e) => return Err(Lookup::Answer(format!("GET {path}: {e}"))),
    };
    if !reply.status.is_success() {
        return Err(Lookup::Answer(format!(
            "GET {path} answered {}",
            reply.status
        )));
    }
    reply
        .json()
        .map_err(|e| Lookup::Answer(format!("GET {path}: {e}")))
}

async fn lookup(upstream: &Upstream) -> Result<EngineFacts, Lookup> {
    let version = get_json(upstream, "/version").await?;
    let field = |name: &str| {
        version
            .get(name)
            .and_then(serde_json::Value::as_str)
            .and_then(ApiVersion::parse)
            .ok_or_else(|| Lookup::Answer(format!("GET /version has no usable `{name}`")))
    };
    let (min, max) = (field("MinAPIVersion")?, field("ApiVersion")?);
    let info = get_json(upstream, "/info").await?;
    let cgroup_v2 = info
        .get("CgroupVersion")
        .and_then(serde_json::Value::as_str)
        == Some("2");
    Ok(EngineFacts {
        min,
        max,
        cgroup_v2,
    })
}

/// The version the engine will apply to a request whose path carried
/// `requested` (None: no prefix, so the engine's newest), or why moat
/// refuses it.
pub fn resolve(
    requested: Option<&str>,
    config_min: ApiVersion,
    engine: &EngineFacts,
) -> Result<ApiVersion, EffectiveError> {
    let version = match requested {
        None => engine.max,
        Some(s) => ApiVersion::parse(s).ok_or_else(|| EffectiveError::NotServed {
            requested: s.to_string(),
            min: engine.min,
            max: engine.max,
        })?,
    };
    if version < config_min {
        return Err(EffectiveError::BelowMinimum {
            requested: version,
            min: config_min,
        });
    }
    if version < engine.min || version > engine.max {
        return Err(EffectiveError::NotServed {
            requested: version.to_string(),
            min: engine.min,
            max: engine.max,
        });
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENGINE: EngineFacts = EngineFacts {
        min: ApiVersion::new(1, 12),
        max: ApiVersion::new(1, 41),
        cgroup_v2: false,
    };

    #[test]
    fn parse_and_order() {
        assert_eq!(ApiVersion::parse("1.41"), Some(ApiVersion::new(1, 41)));
        assert!(ApiVersion::parse("1.9").unwrap() < ApiVersion::parse("1.12").unwrap());
        for bad in [
            "",
            "1",
            "1.",
            ".1",
            "1.2.3",
            "a.b",
            "1.-1",
            "1.+2",
            "1.9999999999",
        ] {
            assert_eq!(ApiVersion::parse(bad), None, "{bad}");
        }
        assert_eq!(ApiVersion::new(1, 24).to_string(), "1.24");
    }

    #[test]
    fn resolution() {
        let min = DEFAULT_MIN_API_VERSION;
        let ok = |r: Option<&str>| resolve(r, min, &ENGINE).map(|v| v.to_string());
        assert_eq!(ok(None).unwrap(), "1.41");
        assert_eq!(ok(Some("1.24")).unwrap(), "1.24");
        assert_eq!(ok(Some("1.41")).unwrap(), "1.41");
        for (req, want) in [
            ("1.12", "engine.min_api_version"),
            ("1.23", "engine.min_api_version"),
            ("1.9", "engine.min_api_version"),
            ("1.42", "serves API versions 1.12 to 1.41"),
            ("2.0", "serves API versions 1.12 to 1.41"),
        ] {
            let err = ok(Some(req)).unwrap_err();
            assert!(err.to_string().contains(want), "{req}: {err}");
        }
        // A lower configured minimum lets old versions through, within the
        // engine's range.
        let low = ApiVersion::new(1, 12);
        assert_eq!(
            resolve(Some("1.12"), low, &ENGINE).unwrap().to_string(),
            "1.12"
        );
        assert!(resolve(Some("1.11"), ApiVersion::new(1, 0), &ENGINE).is_err());
    }

    #[test]
    fn config_value_is_typed() {
        #[derive(serde::Deserialize, Debug)]
        struct C {
            v: ApiVersion,
        }
        let c: C = serde_saphyr::from_str("v: \"1.40\"\n").unwrap();
        assert_eq!(c.v, ApiVersion::new(1, 40));
        let err = serde_saphyr::from_str::<C>("v: 1.40\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("in quotes"), "{err}");
        let err = serde_saphyr::from_str::<C>("v: \"one\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an API version"), "{err}");
    }
}
