//! `moat audit verify FILE...`: checks the audit log's hash chain and names
//! the first broken line, for operators and scripts (exit code 1 on a break).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::audit;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Verify the hash chain of audit log files, oldest first
    /// (e.g. `audit.log.2 audit.log.1 audit.log`).
    ///
    /// Prints `ok: N records` and exits 0, or prints the first untrustworthy
    /// line as `FILE:LINE: why` and exits 1.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Audit log files in chain order, oldest first.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Require the first record to start the chain (prev = 64 zeros), so
    /// that records removed from the front are detected too. Leave off when
    /// older rotated files were deleted (audit.keep).
    #[arg(long)]
    genesis: bool,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    let Command::Verify(args) = cmd;
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
