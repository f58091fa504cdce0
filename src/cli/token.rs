//! `moat token`: placeholder until its module lands.

use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Not available in this build.
    Unavailable,
}

pub fn run(_cmd: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`moat token` is not available in this build")
}
