//! What a replay found: the changes grouped by kind, user and operation,
//! each with a count and an example request id, and the summary counts;
//! printed as text for people and as JSON for tooling.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{Recorded, Verdict};

/// How a decision changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Allowed when recorded, denied now.
    NewlyDenied,
    /// Denied when recorded, allowed now.
    NewlyAllowed,
    /// Denied both times, with other messages.
    DifferentDenyMessages,
    /// Not a change of the candidate against the record: the candidate's
    /// two evaluators decide this input differently, the compiled one (the
    /// gateway's, `now`) and the interpreter `moat policy test` runs
    /// (`recorded` holds the interpreter's verdict).
    EvaluatorsDisagree,
}

impl ChangeKind {
    fn heading(self) -> &'static str {
        match self {
            ChangeKind::NewlyDenied => "newly denied",
            ChangeKind::NewlyAllowed => "newly allowed",
            ChangeKind::DifferentDenyMessages => "different deny messages",
            ChangeKind::EvaluatorsDisagree => {
                "the policy's two evaluators disagree (the gateway decides with the compiled one; moat policy test runs the interpreter, so its tests do not show what the gateway does here)"
            }
        }
    }

    fn of(recorded: &Verdict, now: &Verdict) -> Option<ChangeKind> {
        match (recorded.allow, now.allow) {
            (true, false) => Some(ChangeKind::NewlyDenied),
            (false, true) => Some(ChangeKind::NewlyAllowed),
            (false, false) if recorded.reasons != now.reasons => {
                Some(ChangeKind::DifferentDenyMessages)
            }
            _ => None,
        }
    }
}

/// One group of changes: same kind, user and operation.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub user: String,
    pub operation: String,
    pub count: usize,
    /// The first request of the group, for `moat policy explain --id`.
    pub example_id: String,
    pub example_request: String,
    pub recorded: Verdict,
    pub now: Verdict,
}

/// The outcome of a replay.
#[derive(Debug, Default)]
pub struct Report {
    /// Requests decided again.
    pub replayed: usize,
    /// Of those, decided as recorded.
    pub unchanged: usize,
    /// Requests whose record carries no input (`audit.level: metadata`).
    pub no_input: usize,
    /// Requests refused before the policy was asked (401, 400, 413, …).
    pub not_decided: usize,
    /// The changes, by kind, then user, then operation.
    groups: BTreeMap<(ChangeKind, String, String), Change>,
}

impl Report {
    pub(super) fn add(&mut self, rec: &Recorded, recorded: &Verdict, now: &Verdict) {
        self.replayed += 1;
        let Some(kind) = ChangeKind::of(recorded, now) else {
            self.unchanged += 1;
            return;
        };
        self.group(kind, rec, recorded, now);
    }

    /// Notes a request that the compiled evaluator (`gateway`) and the
    /// interpreter (`tests`) decide differently.
    pub(super) fn compare_evaluators(
        &mut self,
        rec: &Recorded,
        gateway: &Verdict,
        tests: &Verdict,
    ) {
        let mut a = gateway.reasons.clone();
        let mut b = tests.reasons.clone();
        a.sort();
        b.sort();
        if gateway.allow != tests.allow || a != b {
            self.group(ChangeKind::EvaluatorsDisagree, rec, tests, gateway);
        }
    }

    fn group(&mut self, kind: ChangeKind, rec: &Recorded, recorded: &Verdict, now: &Verdict) {
        let user = rec.user.clone().unwrap_or_else(|| "anonymous".into());
        self.groups
            .entry((kind, user.clone(), rec.operation.clone()))
            .and_modify(|c| c.count += 1)
            .or_insert_with(|| Change {
                kind,
                user,
                operation: rec.operation.clone(),
                count: 1,
                example_id: rec.id.clone(),
                example_request: format!("{} {}", rec.method, rec.uri),
                recorded: recorded.clone(),
                now: now.clone(),
            });
    }

    /// The groups of changes, by kind, then user, then operation.
    pub fn changes(&self) -> impl Iterator<Item = &Change> {
        self.groups.values()
    }

    /// Requests whose decision changed.
    pub fn changed(&self) -> usize {
        self.changes().map(|c| c.count).sum()
    }

    /// Requests of one kind of change.
    pub fn count(&self, kind: ChangeKind) -> usize {
        self.changes()
            .filter(|c| c.kind == kind)
            .map(|c| c.count)
            .sum()
    }

    /// The report for tooling (`--format json`).
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "replayed": self.replayed,
            "unchanged": self.unchanged,
            "newly_denied": self.count(ChangeKind::NewlyDenied),
            "newly_allowed": self.count(ChangeKind::NewlyAllowed),
            "different_deny_messages": self.count(ChangeKind::DifferentDenyMessages),
            "evaluators_disagree": self.count(ChangeKind::EvaluatorsDisagree),
            "not_replayed": {"no_input": self.no_input, "not_decided": self.not_decided},
            "changes": self.changes().collect::<Vec<_>>(),
        })
    }

    /// The report for people: a summary line, then each kind's groups.
    pub fn text(&self) -> String {
        let mut out = format!(
            "replayed {} requests: {} newly denied, {} newly allowed, {} with different deny messages, {} unchanged\n",
            self.replayed,
            self.count(ChangeKind::NewlyDenied),
            self.count(ChangeKind::NewlyAllowed),
            self.count(ChangeKind::DifferentDenyMessages),
            self.unchanged,
        );
        let disagree = self.count(ChangeKind::EvaluatorsDisagree);
        if disagree > 0 {
            let _ = writeln!(
                out,
                "warning: on {disagree} requests the candidate's two evaluators decide differently (listed below): its tests do not show what the gateway does there"
            );
        }
        if self.no_input > 0 {
            let _ = writeln!(
                out,
                "not replayed: {} requests recorded without their policy input (audit.level: metadata; set audit.level: request to record it)",
                self.no_input
            );
        }
        if self.not_decided > 0 {
            let _ = writeln!(
                out,
                "not replayed: {} requests refused before the policy was asked (authentication, malformed or oversized requests)",
                self.not_decided
            );
        }
        let mut heading = None;
        for c in self.changes() {
            if heading != Some(c.kind) {
                heading = Some(c.kind);
                let _ = writeln!(out, "\n{}:", c.kind.heading());
            }
            let _ = writeln!(
                out,
                "  {} {} x{}  e.g. {} ({})",
                c.user, c.operation, c.count, c.example_id, c.example_request
            );
            match c.kind {
                ChangeKind::NewlyDenied => {
                    let _ = writeln!(out, "    now: {}", reasons(&c.now));
                }
                ChangeKind::NewlyAllowed => {
                    let _ = writeln!(out, "    was: {}", reasons(&c.recorded));
                }
                ChangeKind::DifferentDenyMessages => {
                    let _ = writeln!(out, "    was: {}", reasons(&c.recorded));
                    let _ = writeln!(out, "    now: {}", reasons(&c.now));
                }
                ChangeKind::EvaluatorsDisagree => {
                    let _ = writeln!(out, "    gateway: {}", verdict(&c.now));
                    let _ = writeln!(out, "    tests:   {}", verdict(&c.recorded));
                }
            }
        }
        out
    }
}

fn verdict(v: &Verdict) -> String {
    if v.allow {
        "allowed".into()
    } else {
        format!("denied: {}", reasons(v))
    }
}

fn reasons(v: &Verdict) -> String {
    if v.reasons.is_empty() {
        "(no message)".into()
    } else {
        v.reasons.join("; ")
    }
}
