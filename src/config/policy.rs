//! Where the Rego policy lives: the `policy` section.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Directory of `*.rego` files plus optional `data.json`/`data.yaml`.
    #[serde(default = "default_policy_dir")]
    pub dir: PathBuf,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            dir: default_policy_dir(),
        }
    }
}

fn default_policy_dir() -> PathBuf {
    PathBuf::from("policies")
}
