//! `moat policy check|test|eval|explain`: the policy author's tools. They
//! compile and evaluate exactly as the gateway does.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config;
use crate::policy::{explain, testing, Policy};
use crate::replay::{Filter, Recording};

#[derive(Debug, clap::Subcommand)]
pub(super) enum Command {
    /// Compile a policy directory; errors print as file:line:col: message.
    Check {
        /// The policy directory (default: ./policies).
        dir: Option<PathBuf>,
    },
    /// Run the `test_*` rules of every `*_test.rego`, like `opa test`.
    Test {
        /// The policy directory (default: ./policies).
        dir: Option<PathBuf>,
        /// Print passing tests too.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Decide one input document and print the decision and its messages.
    Eval {
        /// A JSON file holding the input document (see docs/policy-input.md).
        #[arg(long)]
        input: PathBuf,
        /// The policy directory (default: ./policies).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Why one recorded request was decided as it was: its recorded input
    /// and decision, and, under a policy directory, the deny messages and
    /// the `allow` rules that hold for that input. The request id is the
    /// `X-Moat-Request-Id` the client received.
    Explain {
        /// Audit log files to look in (repeat for rotated files).
        #[arg(long = "audit", required = true, value_name = "FILE")]
        audit: Vec<PathBuf>,
        /// The request id.
        #[arg(long, value_name = "REQUEST_ID")]
        id: String,
        /// The policy directory to decide it under (default: ./policies).
        #[arg(long, value_name = "DIR")]
        policy: Option<PathBuf>,
    },
}

fn dir_or_default(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| config::Policy::default().dir)
}

pub(super) fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Check { dir } => {
            let dir = dir_or_default(dir);
            let r = testing::check(&dir)?;
            println!(
                "{}: ok ({} policy files, {} test files, revision {}{})",
                dir.display(),
                r.policy_files,
                r.test_files,
                r.revision,
                if r.has_deny { "" } else { ", no deny rule" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Test { dir, verbose } => {
            let dir = dir_or_default(dir);
            let results = testing::run_tests(&dir)?;
            if results.is_empty() {
                anyhow::bail!(
                    "no test_* rules found in *_test.rego files under {}",
                    dir.display()
                );
            }
            let failed = results.iter().filter(|r| !r.passed).count();
            for r in &results {
                if r.passed && !verbose {
                    continue;
                }
                let status = if r.passed { "PASS" } else { "FAIL" };
                print!("{}: {} {status} ({:?})", r.file, r.name, r.duration);
                match &r.detail {
                    Some(d) => println!(": {d}"),
                    None => println!(),
                }
            }
            println!("{}", "-".repeat(80));
            println!("PASS: {}/{}", results.len() - failed, results.len());
            if failed > 0 {
                println!("FAIL: {failed}/{}", results.len());
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { audit, id, policy } => explain(&audit, &id, policy),
        Command::Eval { input, dir } => {
            let dir = dir_or_default(dir);
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("cannot read {}", input.display()))?;
            let doc: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not valid JSON", input.display()))?;
            let policy = Policy::load(
                &config::Policy { dir: dir.clone() },
                &config::Limits::default(),
            )?;
            let op = doc
                .pointer("/operation/id")
                .and_then(|v| v.as_str())
                .unwrap_or("Unknown")
                .to_string();
            let user = doc
                .pointer("/user/name")
                .and_then(|v| v.as_str())
                .unwrap_or("anonymous")
                .to_string();
            let d = policy.decide_input(doc, &op, &user);
            println!(
                "{} {op} for {user} (revision {})",
                if d.allow { "ALLOW" } else { "DENY" },
                d.revision
            );
            for r in &d.reasons {
                println!("  {r}");
            }
            for (output, value) in [
                ("owner_scope", &d.owner_scope),
                ("view_scope", &d.view_scope),
            ] {
                if let Some(v) = value {
                    println!("  {output}: {v}");
                }
            }
            Ok(if d.allow {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
    }
}

fn explain(files: &[PathBuf], id: &str, dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let recording = Recording::read(files, &Filter::default())?;
    let rec = recording.find(id)?;
    println!(
        "request {} at {}: {} {} ({}) by {}",
        rec.id,
        rec.ts,
        rec.method,
        rec.uri,
        rec.operation,
        rec.user.as_deref().unwrap_or("(not authenticated)")
    );
    match &rec.decision {
        Some(d) => {
            println!(
                "recorded: {} (policy revision {})",
                if d.allow { "ALLOW" } else { "DENY" },
                rec.policy_revision
            );
            for r in &d.reasons {
                println!("  {r}");
            }
        }
        None => {
            println!("recorded: refused before the policy was asked");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let Some(input) = &rec.input else {
        anyhow::bail!(
            "request {id} was recorded without its policy input (audit.level: metadata): set audit.level: request to explain decisions"
        );
    };
    println!("input:");
    println!("{}", serde_json::to_string_pretty(input)?);
    let dir = dir_or_default(dir);
    let policy = Policy::load(
        &config::Policy { dir: dir.clone() },
        &config::Limits::default(),
    )?;
    let user = rec.user.as_deref().unwrap_or("anonymous");
    let now = policy.decide_input(input.clone(), &rec.operation, user);
    println!(
        "under {} (revision {}): {}",
        dir.display(),
        now.revision,
        if now.allow { "ALLOW" } else { "DENY" }
    );
    if !now.reasons.is_empty() {
        println!("  deny messages:");
        for r in &now.reasons {
            println!("    {r}");
        }
    }
    let rules = explain::allow_rules(&dir, input)?;
    let holding: Vec<_> = rules.iter().filter(|r| r.holds).collect();
    if holding.is_empty() {
        println!(
            "  no allow rule holds for this input ({} checked)",
            rules.len()
        );
    } else {
        println!("  allow rules that hold:");
        for r in holding {
            println!("    {}:{}: {}", r.file, r.line, r.head);
        }
    }
    Ok(ExitCode::SUCCESS)
}
