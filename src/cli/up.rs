//! `moat up`: placeholder until the bundled engine lands.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`moat up` is not available in this build")
}
