//! The engine moat forwards to: the `engine` section, and the checks on
//! the dockerd flags of a bundled engine.

use std::path::PathBuf;

use serde::Deserialize;

use super::Invalid;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Engine {
    /// The engine's unix socket. moat forwards every allowed request here.
    #[serde(default = "default_engine_socket")]
    pub socket: PathBuf,
    /// When present, moat starts and supervises its own dockerd listening
    /// only on `socket`.
    #[serde(default)]
    pub bundled: Option<Bundled>,
    /// The oldest Engine API version moat lets through (`"1.24"`, quoted).
    /// Older versions carry deprecated body positions (a HostConfig in the
    /// start body below 1.24); requests for them get a 400 naming this key.
    #[serde(default = "default_min_api_version")]
    pub min_api_version: crate::classify::ApiVersion,
}

impl Default for Engine {
    fn default() -> Self {
        Self {
            socket: default_engine_socket(),
            bundled: None,
            min_api_version: default_min_api_version(),
        }
    }
}

fn default_min_api_version() -> crate::classify::ApiVersion {
    crate::classify::DEFAULT_MIN_API_VERSION
}

fn default_engine_socket() -> PathBuf {
    PathBuf::from("/var/run/docker.sock")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundled {
    /// Path of the dockerd binary.
    #[serde(default = "default_dockerd")]
    pub dockerd: PathBuf,
    /// The engine's data directory (`--data-root`); its exec root and pid
    /// file live beside the socket.
    pub root: PathBuf,
    /// Extra dockerd arguments. Any `-H`/`--host` is refused: the engine
    /// listens on `engine.socket` only.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

fn default_dockerd() -> PathBuf {
    PathBuf::from("dockerd")
}

impl Engine {
    pub(super) fn resolve_paths(&mut self, r: &impl Fn(&mut PathBuf)) {
        r(&mut self.socket);
        if let Some(b) = &mut self.bundled {
            r(&mut b.root);
            // `dockerd` is looked up on PATH when it is a bare name.
            if b.dockerd.components().count() > 1 {
                r(&mut b.dockerd);
            }
        }
    }

    pub(super) fn check(&self) -> Result<(), Invalid> {
        if let Some(b) = &self.bundled {
            if let Some(bad) = b.extra_args.iter().find(|a| is_host_flag(a)) {
                return Err((
                    "engine.bundled.extra_args",
                    format!(
                        "`{bad}` would open another engine listener; the bundled engine listens only on engine.socket. Remove it"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// True for dockerd flags that add an API listener (`-H`, `--host`, in any
/// of their spellings).
fn is_host_flag(arg: &str) -> bool {
    arg == "-H"
        || arg.starts_with("-H")
        || arg == "--host"
        || arg.starts_with("--host=")
        || arg == "-host"
        || arg.starts_with("-host=")
}
