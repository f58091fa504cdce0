//! Evaluation: runs a compiled policy set on one input with a RegoVM kept per
//! thread, and turns the two results into a [`Decision`].
//!
//! Each worker thread keeps one VM, rebuilt only when the policy set changes
//! (keyed by the set's id), so a request costs `set_input` plus one run of
//! moat's wrapper rule (both results at once). Time is bounded by regorus' cooperative execution timer
//! (checked every few instructions), plus an instruction cap; either limit
//! turns into a deny.

use std::cell::RefCell;
use std::num::NonZeroU32;
use std::time::Duration;

use regorus::rvm::vm::VmError;
use regorus::rvm::RegoVM;
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::Value;

use super::set::{Compiled, DECISION, DENY};
use super::Decision;

/// Most VM instructions one evaluation may run. The default of regorus
/// (25 000) is too low for a real pack on a large ContainerCreate body; the
/// wall-clock timer is the real bound.
const MAX_INSTRUCTIONS: usize = 50_000_000;
/// Instructions between two clock reads.
const TIMER_CHECK_INTERVAL: u32 = 256;

thread_local! {
    static VM: RefCell<Option<(u64, Duration, RegoVM)>> = const { RefCell::new(None) };
}

/// Why an evaluation produced no usable result.
#[derive(Debug)]
pub enum EvalFailure {
    Timeout,
    Error(String),
}

/// The raw values of `allow`, `deny` and the ownership outputs (Undefined
/// or null when not defined).
pub struct Raw {
    pub allow: Value,
    pub deny: Value,
    /// `owner_scope`: the scope stamped on what the request creates.
    pub owner_scope: Value,
    /// `view_scope`: the scope lists, events and prunes are narrowed to.
    pub view_scope: Value,
}

impl Raw {
    /// `allow` and `deny` alone, no ownership outputs (a pack without them).
    pub fn new(allow: Value, deny: Value) -> Raw {
        Raw {
            allow,
            deny,
            owner_scope: Value::Undefined,
            view_scope: Value::Undefined,
        }
    }
}

/// Runs `set` on `input` on this thread's VM.
pub fn run(set: &Compiled, input: Value, timeout: Duration) -> Result<Raw, EvalFailure> {
    VM.with(|cell| {
        let mut slot = cell.borrow_mut();
        let fresh = !matches!(&*slot, Some((id, t, _)) if *id == set.id && *t == timeout);
        if fresh {
            *slot = Some((set.id, timeout, new_vm(set, timeout)?));
        }
        let Some((_, _, vm)) = slot.as_mut() else {
            return Err(EvalFailure::Error("no VM".into()));
        };
        vm.set_input(input);
        let result = vm.execute_entry_point_by_name(DECISION).map_err(classify)?;
        let field = |k: &str| match &result {
            Value::Object(o) => o.get(&Value::from(k)).cloned().unwrap_or(Value::Undefined),
            _ => Value::Undefined,
        };
        Ok(Raw {
            allow: field("allow"),
            deny: field("deny"),
            owner_scope: field("owner_scope"),
            view_scope: field("view_scope"),
        })
    })
}

fn new_vm(set: &Compiled, timeout: Duration) -> Result<RegoVM, EvalFailure> {
    let mut vm = RegoVM::new();
    vm.load_program(set.program.clone());
    vm.set_data(set.data.clone())
        .map_err(|e| EvalFailure::Error(format!("data conflicts with the policy: {e}")))?;
    vm.set_max_instructions(MAX_INSTRUCTIONS);
    vm.set_execution_timer_config(Some(ExecutionTimerConfig {
        limit: timeout,
        check_interval: NonZeroU32::new(TIMER_CHECK_INTERVAL).unwrap_or(NonZeroU32::MIN),
    }));
    Ok(vm)
}

fn classify(e: VmError) -> EvalFailure {
    match e {
        VmError::TimeLimitExceeded { .. } | VmError::InstructionLimitExceeded { .. } => {
            EvalFailure::Timeout
        }
        other => EvalFailure::Error(other.to_string()),
    }
}

/// Applies the decision rule: allowed iff `allow` is exactly `true` and
/// `deny` holds no message. `deny` may be a set or array of messages, or a
/// boolean (opa-docker-authz examples write `deny if …`); anything else
/// denies.
///
/// The ownership outputs fail closed: an `owner_scope` that is not a
/// non-empty string is ignored (the scope stage stamps `user:<name>`), and
/// a `view_scope` that is neither undefined/null nor a non-empty string
/// denies (a caller meant to be narrowed is never shown everything).
pub fn decide(raw: Raw, op: &str, user: &str, revision: &str) -> Decision {
    let mut reasons = Vec::new();
    match &raw.deny {
        Value::Undefined | Value::Null | Value::Bool(false) => {}
        Value::Bool(true) => {
            reasons.push(format!("denied by policy rule {DENY} for {op} by {user}"))
        }
        Value::Set(s) => reasons.extend(s.iter().map(message)),
        Value::Array(a) => reasons.extend(a.iter().map(message)),
        other => reasons.push(format!(
            "policy error: {DENY} must be a set of messages, not {}",
            kind(other)
        )),
    }
    let owner_scope = match &raw.owner_scope {
        Value::String(s) if !s.is_empty() => Some(s.to_string()),
        _ => None,
    };
    let view_scope = match &raw.view_scope {
        Value::Undefined | Value::Null => None,
        Value::String(s) if !s.is_empty() => Some(s.to_string()),
        other => {
            reasons.push(format!(
                "policy error: view_scope must be a non-empty string, not {}; ask an administrator to fix the policy",
                if matches!(other, Value::String(_)) { "an empty string" } else { kind(other) }
            ));
            None
        }
    };
    let allowed = matches!(raw.allow, Value::Bool(true));
    if !allowed && reasons.is_empty() {
        reasons.push(format!("no policy rule allows {op} for {user}"));
    }
    Decision {
        allow: allowed && reasons.is_empty(),
        reasons,
        revision: revision.to_string(),
        owner_scope,
        view_scope,
    }
}

fn message(v: &Value) -> String {
    match v {
        Value::String(s) => s.to_string(),
        other => other.to_json_str().unwrap_or_else(|_| "denied".into()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Set(_) => "a set",
        Value::Object(_) => "an object",
        Value::Undefined => "undefined",
        #[allow(unreachable_patterns)]
        _ => "an unknown value",
    }
}
