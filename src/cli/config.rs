//! `moat config check FILE`: parse and check a config file without binding
//! anything, so an admin can validate an edit before reloading.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub(super) enum Command {
    /// Parse and check a config file; prints `ok` or the first error.
    Check {
        /// The config file.
        file: PathBuf,
    },
}

pub(super) fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Check { file } => {
            crate::config::Config::load(&file)?;
            println!("{}: ok", file.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
