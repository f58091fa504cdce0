//! `moat policy check|test|eval`: the policy author's tools. They compile
//! and evaluate exactly as the gateway does.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config;
use crate::policy::{testing, Policy};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
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
}

fn dir_or_default(dir: Option<PathBuf>) -> PathBuf {
    dir.unwrap_or_else(|| config::Policy::default().dir)
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
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
            Ok(if d.allow {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            })
        }
    }
}
