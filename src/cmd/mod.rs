//! Subcommand implementations of the binary. Each returns the process exit
//! code or an error that `main` prints once, as a chain.

pub mod exec;
pub mod exec_argv;
pub mod image;
pub mod info;
pub mod logmask;
pub mod run;
pub mod run_exec;
pub mod validate;

use std::process::ExitCode;

use clap::CommandFactory;
use corral::cli::{Cli, CompletionsArgs};

/// Exit code for a failure of corral itself (as docker and podman use it).
pub const RUNNER_ERROR: u8 = 125;

/// The store directory: `--store`/CORRAL_STORE, else the config file's
/// `store`, else the per-user default (see `Config::store_dir`).
pub fn store_dir(global: &corral::cli::GlobalArgs) -> anyhow::Result<std::path::PathBuf> {
    let config = corral::config::Config::load(global.config.as_deref())?;
    Ok(config.store_dir(global.store.as_deref()))
}

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

/// Entry of the re-executed image unpack helper (`corral __image-unpack
/// OP PATH…`), which applies layers in a subuid-mapped user namespace.
pub fn image_unpack_internal() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(2).collect();
    let code = corral::image::userns::helper_main(&args);
    ExitCode::from(u8::try_from(code).unwrap_or(RUNNER_ERROR))
}
