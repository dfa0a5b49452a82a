//! The `corral` binary: parses the command line, sets up logging, calls the
//! library and maps results to exit codes. The only home of `anyhow`.

mod arena;
mod cmd;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;
use corral::cli::{Cli, ColorChoice, Command, ImageCommand};

/// See arena.rs: the first MiB of allocations without system calls.
#[global_allocator]
static ALLOCATOR: arena::Arena<{ arena::ARENA_BYTES }> = arena::Arena::new();

fn main() -> ExitCode {
    // Re-executed sandbox processes must stay single-threaded and quiet, and
    // start fast: hand them over before clap or anything else is set up.
    let argv: Vec<OsString> = std::env::args_os().collect();
    if let Some(args) = internal_sandbox_args(&argv) {
        return cmd::sandbox_internal(&args);
    }
    // The image unpack helper runs in a fresh user namespace: single-threaded.
    if argv.get(1).map(OsString::as_os_str) == Some(corral::image::userns::HELPER_ARG.as_ref()) {
        return cmd::image_unpack_internal();
    }
    // `corral exec`, which runs once per sandbox, without building clap's
    // parser; clap for everything else (see cmd/exec_argv.rs).
    let cli = cmd::exec_argv::parse(&argv, |name| std::env::var_os(name))
        .unwrap_or_else(|| Cli::parse_from(&argv));
    if let Command::Sandbox(args) = &cli.command {
        return cmd::sandbox_internal(&args.args);
    }
    if prints_a_listing(&cli.command) {
        // `corral images | head`: end quietly at a closed pipe as `ls` does,
        // not with println!'s panic. Only for commands that talk to no
        // socket or child, where SIGPIPE could strike elsewhere.
        // SAFETY: single-threaded here; restores the default disposition.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    init_tracing(&cli);
    corral::image::register_current_exe_as_unpack_helper();
    let result = match cli.command {
        Command::Validate(args) => cmd::validate::run(&cli.global, args),
        Command::Run(args) => cmd::run::run(&cli.global, args),
        Command::Pull(args) => cmd::image::pull(&cli.global, args),
        Command::Images(args) => cmd::image::images(&cli.global, args),
        Command::Image(ImageCommand::Inspect(args)) => cmd::image::inspect(&cli.global, args),
        Command::Image(ImageCommand::Unpack(args)) => cmd::image::unpack(&cli.global, args),
        Command::Rmi(args) => cmd::image::rmi(&cli.global, args),
        Command::Prune(args) => cmd::image::prune(&cli.global, args),
        Command::Import(args) => cmd::image::import(&cli.global, args),
        Command::Exec(args) => cmd::exec::run(&cli.global, args),
        Command::Info(args) => cmd::info::run(&cli.global, args),
        Command::Completions(args) => cmd::completions(args),
        Command::Sandbox(_) => unreachable_internal(),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            cmd::print_error(&err);
            ExitCode::from(cmd::RUNNER_ERROR)
        }
    }
}

/// Commands whose output is a listing someone may pipe into `head`.
fn prints_a_listing(command: &Command) -> bool {
    matches!(
        command,
        Command::Validate(_)
            | Command::Images(_)
            | Command::Image(ImageCommand::Inspect(_))
            | Command::Info(_)
            | Command::Completions(_)
    )
}

/// `corral __sandbox ROLE…` exactly as the launcher spawns it (argv[1]).
fn internal_sandbox_args(argv: &[OsString]) -> Option<Vec<String>> {
    let mut args = argv.iter().skip(1);
    if args.next()? != "__sandbox" {
        return None;
    }
    args.map(|a| a.to_str().map(str::to_owned)).collect()
}

fn unreachable_internal() -> anyhow::Result<ExitCode> {
    Err(anyhow::anyhow!(
        "internal sandbox command reached the wrong dispatcher"
    ))
}

fn init_tracing(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let level = match (cli.global.verbose, cli.global.quiet) {
        (_, q) if q > 0 => "error",
        (0, _) => "warn",
        (1, _) => "info,corral=debug",
        _ => "trace",
    };
    let ansi = match cli.global.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let fmt = tracing_subscriber::fmt()
        .with_writer(cmd::logmask::MaskedStderr::new)
        .with_ansi(ansi)
        .with_target(false)
        .without_time();
    // A plain level needs no directive parser (a measurable part of a
    // `corral exec` start).
    let plain = match level {
        "error" => Some(tracing::Level::ERROR),
        "warn" => Some(tracing::Level::WARN),
        _ => None,
    };
    match plain.filter(|_| std::env::var_os("CORRAL_LOG").is_none()) {
        Some(level) => fmt.with_max_level(level).init(),
        None => fmt
            .with_env_filter(
                EnvFilter::try_from_env("CORRAL_LOG").unwrap_or_else(|_| EnvFilter::new(level)),
            )
            .init(),
    }
}
