//! Policy: decides every classified request with Rego.
//!
//! PLACEHOLDER until the policy engine lands: allows everything.

use std::net::SocketAddr;

use http::{HeaderMap, Method, Uri};

use crate::classify::Route;
use crate::config;
use crate::identity::Identity;

/// Everything the policy input document is built from.
pub struct Facts<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub route: &'a Route,
    /// The parsed JSON body, when the operation's body is inspected and
    /// non-empty.
    pub body: Option<&'a serde_json::Value>,
    pub identity: &'a Identity,
    pub client: SocketAddr,
}

/// The outcome of one evaluation.
#[derive(Debug, Clone)]
pub struct Decision {
    pub allow: bool,
    /// Deny messages (or why evaluation failed).
    pub reasons: Vec<String>,
    /// Identifies the policy set that decided (a hash of its files).
    pub revision: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Load(String),
}

pub struct Policy;

impl Policy {
    pub fn load(_cfg: &config::Policy, _limits: &config::Limits) -> Result<Self, PolicyError> {
        Ok(Policy)
    }

    pub fn status(&self) -> Result<(), String> {
        Ok(())
    }

    pub async fn decide(&self, _facts: &Facts<'_>) -> Decision {
        Decision {
            allow: true,
            reasons: Vec::new(),
            revision: "placeholder".into(),
        }
    }
}
