//! The `moat` binary: everything lives in the library; this only hands the
//! command line to [`moat::cli::main`] and turns its result into an exit code.

fn main() -> std::process::ExitCode {
    moat::cli::main()
}
