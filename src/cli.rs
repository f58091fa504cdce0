//! The command line: `moat serve`, `moat up`, `moat config check`,
//! `moat certs …`, `moat token …`, `moat policy …` and `moat audit verify`.
//!
//! This is the CLI edge, the one place where errors become `anyhow` and then
//! a one-line reason on stderr with a non-zero exit code. Each subcommand
//! lives in its own file under `cli/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod audit;
mod certs;
mod config;
mod policy;
mod serve;
mod token;
mod up;

#[derive(Debug, Parser)]
#[command(
    name = "moat",
    version,
    about = "A mutual-TLS, policy-enforcing gateway for the Docker Engine API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gateway with a config file.
    Serve(serve::Args),
    /// Generate what is missing under a directory, start a bundled engine and serve.
    ///
    /// A repeated flag overrides the earlier one, so that arguments given
    /// to `docker run IMAGE --listen ADDR` override the image's entrypoint.
    #[command(args_override_self = true)]
    Up(up::Args),
    /// Check a config file.
    #[command(subcommand)]
    Config(config::Command),
    /// Manage moat's certificate authority and client bundles.
    #[command(subcommand)]
    Certs(certs::Command),
    /// Issue and inspect bearer tokens.
    #[command(subcommand)]
    Token(token::Command),
    /// Check, test and evaluate policies.
    #[command(subcommand)]
    Policy(policy::Command),
    /// Verify the audit log.
    #[command(subcommand)]
    Audit(audit::Command),
}

/// Parses the command line, runs the command and maps failure to a one-line
/// reason and exit code 1 (clap's own usage errors exit 2).
pub fn main() -> ExitCode {
    // regorus captures a backtrace for every internal error when
    // RUST_BACKTRACE is set, which serializes evaluation across threads.
    // Library backtraces are off unless asked for explicitly; this runs
    // before any thread exists.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(a) => serve::run(a),
        Command::Up(a) => up::run(a),
        Command::Config(c) => config::run(c),
        Command::Certs(c) => certs::run(c),
        Command::Token(c) => token::run(c),
        Command::Policy(c) => policy::run(c),
        Command::Audit(c) => audit::run(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // One line: the chain of causes joined, as the issue asks.
            eprintln!("moat: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_flags_given_twice_take_the_last_value() {
        let cli = Cli::try_parse_from([
            "moat",
            "up",
            "--dir",
            "/a",
            "--listen",
            "0.0.0.0:2376",
            "--listen",
            "127.0.0.1:1",
            "--dir",
            "/b",
        ])
        .unwrap();
        let Command::Up(a) = cli.command else {
            panic!("not up")
        };
        assert_eq!(a.dir, std::path::Path::new("/b"));
        assert_eq!(a.listen, Some("127.0.0.1:1".parse().unwrap()));
    }
}
