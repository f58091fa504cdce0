//! `moat audit replay`: what a candidate policy would have decided for the
//! requests the audit log recorded, without sending anything anywhere.
//!
//! At `audit.level: request` every decided request's record carries the
//! policy input it was decided on ([`crate::audit::Record::input`], secrets
//! redacted). Replay decides each such input again under the candidate
//! policy, compares with the recorded decision, and groups the differences
//! by kind, user and operation ([`report`]). Records without an input
//! (`audit.level: metadata`, or requests refused before the policy was
//! asked: 401, 400, 413) cannot be replayed; they are counted, never
//! guessed at.

pub mod report;

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::policy::testing::Interpreter;
use crate::policy::{eval, Policy};

pub use report::{Change, ChangeKind, Report};

/// Why a replay could not run (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}:{line}: not an audit record ({err}); pass moat's audit log files")]
    NotARecord {
        path: PathBuf,
        line: usize,
        err: serde_json::Error,
    },
    #[error("{path}:{line}: the record's ts `{ts}` is not RFC 3339")]
    BadTimestamp {
        path: PathBuf,
        line: usize,
        ts: String,
    },
    #[error(
        "`{0}` is neither an RFC 3339 time (2026-11-24T04:48:32Z) nor a duration ago (24h, 7d)"
    )]
    BadTime(String),
    #[error("no request id {0} in the given audit files")]
    NoSuchId(String),
}

/// Which records to replay.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub user: Option<String>,
}

impl Filter {
    /// `--since`/`--until`: an RFC 3339 time, or a duration meaning that
    /// long before now (`24h`, `7d`).
    pub fn parse_time(s: &str) -> Result<OffsetDateTime, ReplayError> {
        if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
            return Ok(t);
        }
        let ago = humantime::parse_duration(s).map_err(|_| ReplayError::BadTime(s.to_owned()))?;
        let ago = time::Duration::try_from(ago).map_err(|_| ReplayError::BadTime(s.to_owned()))?;
        OffsetDateTime::now_utc()
            .checked_sub(ago)
            .ok_or_else(|| ReplayError::BadTime(s.to_owned()))
    }

    fn admits(&self, rec: &Recorded) -> bool {
        if let Some(since) = self.since {
            if rec.ts < since {
                return false;
            }
        }
        if let Some(until) = self.until {
            if rec.ts > until {
                return false;
            }
        }
        match &self.user {
            Some(u) => rec.user.as_deref() == Some(u.as_str()),
            None => true,
        }
    }
}

/// A recorded decision.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Verdict {
    pub allow: bool,
    pub reasons: Vec<String>,
}

/// One request as the audit log recorded it (its `decision` record, or its
/// `complete` record when no decision record was written).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub id: String,
    pub ts: OffsetDateTime,
    pub user: Option<String>,
    pub operation: String,
    pub method: String,
    pub uri: String,
    /// The policy's decision; `None` when the request was refused before
    /// the policy was asked.
    pub decision: Option<Verdict>,
    pub policy_revision: String,
    /// The input document, when it was recorded.
    pub input: Option<serde_json::Value>,
}

/// What the files hold, one entry per request id, in log order.
#[derive(Debug, Default)]
pub struct Recording {
    pub requests: Vec<Recorded>,
}

/// The fields of an audit line that replay reads.
#[derive(Deserialize)]
struct RawLine {
    ts: String,
    id: String,
    user: Option<RawUser>,
    request: RawRequest,
    decision: Option<RawDecision>,
    #[serde(default)]
    input: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawUser {
    name: String,
}

#[derive(Deserialize)]
struct RawRequest {
    method: String,
    uri: String,
    operation: String,
}

#[derive(Deserialize)]
struct RawDecision {
    allow: bool,
    reasons: Vec<String>,
    policy_revision: String,
}

impl Recording {
    /// Reads audit log files (in any order; records are merged by request
    /// id) and keeps the requests `filter` admits.
    pub fn read(files: &[PathBuf], filter: &Filter) -> Result<Recording, ReplayError> {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut requests: Vec<Recorded> = Vec::new();
        for path in files {
            for line in read_lines(path)? {
                let rec = line?;
                if !filter.admits(&rec) {
                    continue;
                }
                match index.get(&rec.id) {
                    // A second record of the same request: the one that
                    // carries the input wins (the decision record).
                    Some(&i) => {
                        if requests[i].input.is_none() && rec.input.is_some() {
                            requests[i] = rec;
                        }
                    }
                    None => {
                        index.insert(rec.id.clone(), requests.len());
                        requests.push(rec);
                    }
                }
            }
        }
        Ok(Recording { requests })
    }

    /// The request with this id.
    pub fn find(&self, id: &str) -> Result<&Recorded, ReplayError> {
        self.requests
            .iter()
            .find(|r| r.id == id)
            .ok_or_else(|| ReplayError::NoSuchId(id.to_owned()))
    }

    /// Decides every recorded input again under `policy`.
    /// Decides every recorded input again with `policy` (as the gateway
    /// would) and, when given, with `interpreter`, the evaluator `moat
    /// policy test` runs: where the two disagree on a request, the report
    /// says so ([`ChangeKind::EvaluatorsDisagree`]), since a policy's tests
    /// then do not show what the gateway does.
    pub fn replay(&self, policy: &Policy, mut interpreter: Option<&mut Interpreter>) -> Report {
        let mut report = Report::default();
        for rec in &self.requests {
            let (Some(recorded), Some(input)) = (&rec.decision, &rec.input) else {
                if rec.decision.is_none() {
                    report.not_decided += 1;
                } else {
                    report.no_input += 1;
                }
                continue;
            };
            let user = rec.user.as_deref().unwrap_or("anonymous");
            let now = policy.decide_input(input.clone(), &rec.operation, user);
            let now = Verdict {
                allow: now.allow,
                reasons: now.reasons,
            };
            report.add(rec, recorded, &now);
            if let Some(interp) = interpreter.as_deref_mut() {
                let tests = match interp.raw(input.clone()) {
                    Ok(raw) => {
                        let d = eval::decide(raw, &rec.operation, user, "");
                        Verdict {
                            allow: d.allow,
                            reasons: d.reasons,
                        }
                    }
                    Err(e) => Verdict {
                        allow: false,
                        reasons: vec![format!("the interpreter failed: {e}")],
                    },
                };
                report.compare_evaluators(rec, &now, &tests);
            }
        }
        report
    }
}

/// The parsed lines of one file.
fn read_lines(path: &Path) -> Result<Vec<Result<Recorded, ReplayError>>, ReplayError> {
    let file = std::fs::File::open(path).map_err(|err| ReplayError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    let mut out = Vec::new();
    for (n, text) in std::io::BufReader::new(file).lines().enumerate() {
        let text = text.map_err(|err| ReplayError::Io {
            path: path.to_path_buf(),
            err,
        })?;
        if text.trim().is_empty() {
            continue;
        }
        out.push(parse_line(path, n + 1, &text));
    }
    Ok(out)
}

fn parse_line(path: &Path, line: usize, text: &str) -> Result<Recorded, ReplayError> {
    let raw: RawLine = serde_json::from_str(text).map_err(|err| ReplayError::NotARecord {
        path: path.to_path_buf(),
        line,
        err,
    })?;
    let ts = OffsetDateTime::parse(&raw.ts, &Rfc3339).map_err(|_| ReplayError::BadTimestamp {
        path: path.to_path_buf(),
        line,
        ts: raw.ts.clone(),
    })?;
    let user = raw.user.map(|u| u.name);
    // A refusal before the policy was asked records its reason as a
    // decision without a policy revision.
    let (decision, policy_revision) = match raw.decision {
        Some(d) if !d.policy_revision.is_empty() => (
            Some(Verdict {
                allow: d.allow,
                reasons: d.reasons,
            }),
            d.policy_revision,
        ),
        _ => (None, String::new()),
    };
    Ok(Recorded {
        id: raw.id,
        ts,
        user,
        operation: raw.request.operation,
        method: raw.request.method,
        uri: raw.request.uri,
        decision,
        policy_revision,
        input: raw.input,
    })
}

#[cfg(test)]
mod tests;
