//! Subcommand implementations of the binary. Each returns the process exit
//! code or an error that `main` prints once, as a chain.

pub mod exec;
pub mod image;
pub mod info;
pub mod run;
pub mod run_exec;
pub mod validate;

use std::process::ExitCode;

use clap::CommandFactory;
use corral::cli::{Cli, CompletionsArgs};

/// Exit code for a failure of corral itself (as docker and podman use it).
pub const RUNNER_ERROR: u8 = 125;

/// Prints an error and its causes once: `error: …` then `  caused by: …`.
pub fn print_error(err: &anyhow::Error) {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "corral", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// Entry of re-executed sandbox processes (`corral __sandbox …`).
/// These run before tracing or tokio exist and must stay single-threaded
/// until they have made their namespaces.
pub fn sandbox_internal(args: &[String]) -> ExitCode {
    let code = corral::sandbox::internal_main(args);
    ExitCode::from(u8::try_from(code).unwrap_or(RUNNER_ERROR))
}

#[allow(dead_code)]
/// The error of a subcommand whose area has not landed yet.
pub fn not_yet(what: &str) -> anyhow::Result<ExitCode> {
    Err(anyhow::anyhow!(
        "`corral {what}` is not available in this build yet"
    ))
}
