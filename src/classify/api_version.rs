//! The Engine API version type, `major.minor`: what a request's `/v1.41/`
//! prefix names, what `engine.min_api_version` sets, and what the engine
//! reports it serves. Below both the config and the effective request,
//! which use it.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// An Engine API version, `major.minor`, compared numerically as the daemon
/// compares them (`1.9 < 1.12`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

impl ApiVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        ApiVersion { major, minor }
    }

    /// Parses `major.minor` (decimal digits only, as the classifier accepts
    /// version prefixes).
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (major, minor) = s.split_once('.')?;
        let num = |n: &str| {
            if n.is_empty() || n.len() > 9 || !n.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                n.parse().ok()
            }
        };
        Some(ApiVersion::new(num(major)?, num(minor)?))
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The default `engine.min_api_version`.
pub const DEFAULT_MIN_API_VERSION: ApiVersion = ApiVersion::new(1, 24);

impl<'de> Deserialize<'de> for ApiVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ApiVersion;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an API version in quotes, such as \"1.24\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ApiVersion, E> {
                ApiVersion::parse(s).ok_or_else(|| {
                    E::custom(format!(
                        "`{s}` is not an API version: write major.minor in quotes, such as \"1.24\""
                    ))
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ApiVersion, E> {
                Err(E::custom(format!(
                    "{v} is a number, and numbers lose trailing zeros (1.40 would be 1.4): write the version in quotes, such as \"1.24\""
                )))
            }
        }
        d.deserialize_any(V)
    }
}
