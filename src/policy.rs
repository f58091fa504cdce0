//! Policy: decides every classified request with Rego.
//!
//! The policy directory (`policy.dir`) is compiled once per load to a regorus
//! RVM program ([`set`]); each request builds its input document
//! ([`input`]) and runs the program on a VM kept per worker thread
//! ([`eval`]). A request is allowed when `data.docker.authz.allow` is true
//! and `data.docker.authz.deny` holds no message; undefined, an error or a
//! timeout deny.
//!
//! The set is swapped atomically on reload (file watcher or SIGHUP, see
//! [`watch`]); a reload that fails keeps the last good set and is reported by
//! [`Policy::status`] and the reload metric. A set that calls no builtin
//! whose result depends on anything but `input` and `data` remembers its
//! decisions, keyed on a hash of the whole input document ([`memo`]); a
//! reload starts a new, empty memo. `moat policy test` runs the
//! `*_test.rego` rules in the interpreter ([`testing`]), since the RVM has no
//! `with`.

pub mod eval;
pub mod explain;
pub mod input;
pub mod memo;
pub mod set;
pub mod testing;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{HeaderMap, Method, Uri};

use crate::classify::Route;
use crate::config;
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::owner::Resource;

pub use watch::WatchError;

/// Everything the policy input document is built from.
pub struct Facts<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub route: &'a Route,
    /// The API version the engine will apply (`input.request.api_version`):
    /// the path's prefix, or the engine's newest when there is none.
    pub api_version: Option<&'a str>,
    /// The parsed JSON body, when the operation's body is inspected and
    /// non-empty.
    pub body: Option<&'a serde_json::Value>,
    pub identity: &'a Identity,
    pub client: SocketAddr,
    /// The objects the request names, resolved through the engine
    /// (`input.resources`); empty for operations that name none.
    pub resources: &'a [Resource],
}

/// The outcome of one evaluation.
#[derive(Debug, Clone)]
pub struct Decision {
    pub allow: bool,
    /// Deny messages (or why evaluation failed).
    pub reasons: Vec<String>,
    /// Identifies the policy set that decided (a hash of its files).
    pub revision: String,
    /// The pack's `owner_scope`: the `io.moat.scope` label stamped on what
    /// the request creates (the `scope` stage); `None` when the pack gives
    /// none, or not a non-empty string: then `user:<name>`.
    pub owner_scope: Option<String>,
    /// The pack's `view_scope`: lists, events and prunes are narrowed to
    /// objects labelled `io.moat.scope=<view_scope>`; `None`: no narrowing.
    pub view_scope: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Load(String),
    #[error("cannot read {}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    /// A compile error as `file:line:col: message`.
    #[error("{0}")]
    Compile(String),
    #[error("policy data: {0}")]
    Data(String),
    #[error("no policy files: the policy directory holds no *.rego file other than *_test.rego")]
    NoPolicy,
}

/// The live policy: the last good compiled set plus what the last reload
/// said.
pub struct Policy {
    dir: PathBuf,
    timeout: Duration,
    current: ArcSwap<set::Compiled>,
    last_error: Mutex<Option<String>>,
    metrics: Option<Arc<Metrics>>,
}

impl Policy {
    /// Reads and compiles `cfg.dir`. Fails when there is no valid policy
    /// there: the gateway refuses to start without one.
    pub fn load(cfg: &config::Policy, limits: &config::Limits) -> Result<Self, PolicyError> {
        let sources = set::Sources::read(&cfg.dir)?;
        let compiled = set::Compiled::compile(&sources)?;
        if std::env::var_os("RUST_BACKTRACE").is_some_and(|v| v != "0")
            && std::env::var_os("RUST_LIB_BACKTRACE").is_none_or(|v| v != "0")
        {
            tracing::warn!(
                "RUST_BACKTRACE is set: policy errors capture backtraces and evaluation stops \
                 scaling across threads; set RUST_LIB_BACKTRACE=0"
            );
        }
        log_memo(&compiled);
        Ok(Policy {
            dir: cfg.dir.clone(),
            timeout: limits.policy_eval_timeout,
            current: ArcSwap::from_pointee(compiled),
            last_error: Mutex::new(None),
            metrics: None,
        })
    }

    /// Reports evaluation time and reload outcomes to `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The directory this policy is loaded from.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The revision (file hash) of the set that decides now.
    pub fn revision(&self) -> String {
        self.current.load().revision.clone()
    }

    /// The input document for `facts`, exactly as the policy sees it.
    pub fn input(&self, facts: &Facts<'_>) -> serde_json::Value {
        input::build(facts)
    }

    /// Decides one request. Never fails: anything but a clean allow is a
    /// deny with a reason. A deterministic set answers an input it has
    /// decided before from its memo ([`memo`]); `op` and `user`, the only
    /// other things a decision is made of, are fields of the input too.
    pub async fn decide(&self, facts: &Facts<'_>) -> Decision {
        let start = Instant::now();
        let set = self.current.load_full();
        let derived = input::Derived::new(facts);
        let doc = input::Input::new(facts, &derived);
        let (op, user) = (facts.route.op.id.as_str(), facts.identity.name.as_str());
        let memo = set
            .memo
            .as_ref()
            .and_then(|m| Some((m, memo::key(&set.revision, &doc)?)));
        let remembered = memo.as_ref().and_then(|(m, k)| m.get(k));
        if let (Some(metrics), Some(_)) = (&self.metrics, &memo) {
            metrics.policy_memo(remembered.is_some());
        }
        let decision = match remembered {
            Some(d) => d,
            None => {
                let (decision, clean) = self.evaluate(&set, input::value::to_value(&doc), op, user);
                if let (Some((m, k)), true) = (memo, clean) {
                    m.insert(k, decision.clone());
                }
                decision
            }
        };
        if let Some(m) = &self.metrics {
            m.policy_eval(start.elapsed());
        }
        decision
    }

    /// Decides a prepared input document (used by `moat policy eval` and the
    /// benchmark), always by evaluating it. `op` and `user` name the request
    /// in the fallback reason.
    pub fn decide_input(&self, doc: serde_json::Value, op: &str, user: &str) -> Decision {
        let set = self.current.load_full();
        self.evaluate(&set, regorus::Value::from(doc), op, user).0
    }

    /// The builtins that keep the current set from being memoized (empty
    /// when its decisions are memoized).
    pub fn impure_builtins(&self) -> Vec<String> {
        self.current.load().impure.clone()
    }

    /// Evaluates `doc` with `set`; the flag says whether the decision is the
    /// policy's own (not a timeout or an evaluation error), so that it may
    /// be remembered.
    fn evaluate(
        &self,
        set: &set::Compiled,
        doc: regorus::Value,
        op: &str,
        user: &str,
    ) -> (Decision, bool) {
        let decision = match eval::run(set, doc, self.timeout) {
            Ok(raw) => return (eval::decide(raw, op, user, &set.revision), true),
            Err(eval::EvalFailure::Timeout) => Decision {
                allow: false,
                reasons: vec![format!(
                    "policy evaluation for {op} exceeded its limit ({} ms, limits.policy_eval_timeout); \
                     ask an administrator to simplify the policy",
                    self.timeout.as_millis()
                )],
                revision: set.revision.clone(),
                owner_scope: None,
                view_scope: None,
            },
            Err(eval::EvalFailure::Error(e)) => {
                tracing::warn!(revision = %set.revision, op, error = %e, "policy evaluation failed");
                Decision {
                    allow: false,
                    reasons: vec![format!(
                        "policy evaluation failed for {op}; an administrator can find the error in moat's log"
                    )],
                    revision: set.revision.clone(),
                    owner_scope: None,
                    view_scope: None,
                }
            }
        };
        (decision, false)
    }

    /// Re-reads and recompiles the policy directory. On success the new set
    /// decides the next request; on failure the last good set stays and the
    /// error is kept for [`Policy::status`].
    pub fn reload(&self) -> Result<(), PolicyError> {
        let result = set::Sources::read(&self.dir).and_then(|s| {
            if s.revision == self.current.load().revision {
                return Ok(None);
            }
            set::Compiled::compile(&s).map(Some)
        });
        let ok = result.is_ok();
        if let Some(m) = &self.metrics {
            m.policy_reload(ok);
        }
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(Some(compiled)) => {
                tracing::info!(revision = %compiled.revision, dir = %self.dir.display(), "policy reloaded");
                log_memo(&compiled);
                self.current.store(Arc::new(compiled));
                *last = None;
                Ok(())
            }
            Ok(None) => {
                *last = None;
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    dir = %self.dir.display(),
                    error = %e,
                    revision = %self.current.load().revision,
                    "policy reload failed; still serving the last good policy"
                );
                *last = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// `Ok` when the last reload succeeded; otherwise its error
    /// (`file:line:col: message`) while the last good set keeps serving.
    pub fn status(&self) -> Result<(), String> {
        match &*self.last_error.lock().unwrap_or_else(|p| p.into_inner()) {
            None => Ok(()),
            Some(e) => Err(format!(
                "policy reload failed, serving revision {}: {e}",
                self.current.load().revision
            )),
        }
    }
}

/// Says whether `set`'s decisions are memoized, and if not, why.
fn log_memo(set: &set::Compiled) {
    if set.impure.is_empty() {
        tracing::info!(revision = %set.revision, "policy decisions are memoized (exact input match)");
    } else {
        tracing::info!(
            revision = %set.revision,
            builtins = %set.impure.join(", "),
            "policy decisions are not memoized: the policy calls builtins whose result is not a function of input and data"
        );
    }
}

#[cfg(test)]
mod tests;
