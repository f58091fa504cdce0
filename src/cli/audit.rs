//! `moat audit verify FILE...`: checks the audit log's hash chain and names
//! the first broken line, for operators and scripts (exit code 1 on a break).
//! `moat audit replay --policy DIR FILE...`: what a candidate policy would
//! have decided for the recorded requests (exit code 1 when anything
//! changes, 2 on error), so that CI can gate a policy change.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::audit;
use crate::config;
use crate::policy::testing::Interpreter;
use crate::policy::Policy;
use crate::replay::{Filter, Recording};

#[derive(Debug, clap::Subcommand)]
pub(super) enum Command {
    /// Verify the hash chain of audit log files, oldest first
    /// (e.g. `audit.log.2 audit.log.1 audit.log`).
    ///
    /// Prints `ok: N records` and exits 0, or prints the first untrustworthy
    /// line as `FILE:LINE: why` and exits 1.
    Verify(VerifyArgs),
    /// Decide recorded requests again under a candidate policy directory,
    /// without sending anything anywhere, and list what would change:
    /// newly denied, newly allowed, different deny messages, grouped by
    /// user and operation with a count and an example request id.
    ///
    /// Needs records written at `audit.level: request` (they carry the
    /// policy input). Exits 0 when nothing changes, 1 when something does,
    /// 2 on error.
    Replay(ReplayArgs),
}

#[derive(Debug, clap::Args)]
pub(super) struct ReplayArgs {
    /// The candidate policy directory.
    #[arg(long, value_name = "DIR")]
    policy: PathBuf,
    /// Only requests recorded at or after this time: RFC 3339
    /// (2026-11-24T04:48:32Z) or a duration ago (24h, 7d).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only requests recorded at or before this time (same forms).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only this user's requests.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// `text` (default) or `json`.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Audit log files (any order; rotated files too).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub(super) struct VerifyArgs {
    /// Audit log files in chain order, oldest first.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Require the first record to start the chain (prev = 64 zeros), so
    /// that records removed from the front are detected too. Leave off when
    /// older rotated files were deleted (audit.keep).
    #[arg(long)]
    genesis: bool,
}

pub(super) fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Verify(args) => verify(args),
        Command::Replay(args) => replay(args),
    }
}

/// Exit status 2 on error, as the command's help promises (1 means "the
/// decisions change").
fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    match replay_or_error(args) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("moat: {}", format!("{e:#}").replace('\n', " "));
            Ok(ExitCode::from(2))
        }
    }
}

fn replay_or_error(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let filter = Filter {
        since: args.since.as_deref().map(Filter::parse_time).transpose()?,
        until: args.until.as_deref().map(Filter::parse_time).transpose()?,
        user: args.user,
    };
    let recording = Recording::read(&args.files, &filter)?;
    if recording.requests.is_empty() {
        anyhow::bail!("no recorded request matches (check the files, --since, --until and --user)");
    }
    let policy = Policy::load(
        &config::Policy {
            dir: args.policy.clone(),
        },
        &config::Limits::default(),
    )?;
    // The interpreter `moat policy test` runs, to find the requests on
    // which it and the gateway's compiled evaluator disagree.
    let mut interpreter = match Interpreter::new(&args.policy) {
        Ok(i) => Some(i),
        Err(e) => {
            eprintln!("moat: the evaluators are not compared: the interpreter cannot load the policy ({e})");
            None
        }
    };
    let report = recording.replay(&policy, interpreter.as_mut());
    if report.replayed == 0 {
        anyhow::bail!(
            "none of the {} recorded requests carries its policy input: replay needs records written at audit.level: request",
            recording.requests.len()
        );
    }
    match args.format {
        Format::Text => print!("{}", report.text()),
        Format::Json => println!("{}", report.json()),
    }
    Ok(if report.changed() == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    match audit::verify_report(&args.files) {
        Err(e) => {
            println!("{e}");
            Ok(ExitCode::FAILURE)
        }
        Ok(v) => {
            if args.genesis && !v.from_genesis {
                println!(
                    "{}:1: the chain does not start here (prev is not the genesis value): records before it are missing",
                    args.files[0].display()
                );
                return Ok(ExitCode::FAILURE);
            }
            println!("ok: {} records", v.records);
            println!("head: {}", v.head);
            Ok(ExitCode::SUCCESS)
        }
    }
}
