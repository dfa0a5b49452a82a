//! `corral run FILE`: the `--dry-run` plan here; running it is in `run_exec`.

use std::process::ExitCode;

use corral::cli::{GlobalArgs, RunArgs};
use corral::config::Config;
use corral::pipeline::secret::{Masker, SecretStore};
use corral::pipeline::{self, Diagnostic, LoadError};
use corral::runner::plan;
use corral::runner::resolve::{RunContext, RunOptions};

pub fn run(global: &GlobalArgs, args: RunArgs) -> anyhow::Result<ExitCode> {
    if !args.dry_run {
        return super::run_exec::run(global, &args);
    }
    dry_run(global, &args)
}

/// Loads and validates the pipeline (printing its diagnostics), reads the
/// config (with the command line's registry flags) and secrets, and builds
/// the run context; the config comes back for the run. `Ok(None)`: the
/// pipeline or its inputs (secrets, `--var`, `--stage`) have errors,
/// already printed (masked); exit 1. `Err`: corral itself failed.
pub fn prepare(
    global: &GlobalArgs,
    args: &RunArgs,
) -> anyhow::Result<Option<(RunContext, Config)>> {
    let (pipeline, warnings) = match pipeline::load(&args.file) {
        Ok(loaded) => loaded,
        Err(LoadError::Invalid { diagnostics, .. }) => {
            print_diagnostics(&diagnostics);
            let errors = diagnostics.iter().filter(|d| d.is_error()).count();
            eprintln!("{}: invalid: {errors} error(s)", args.file.display());
            return Ok(None);
        }
        // A wrong path is bad input, not a failure of corral: exit 1.
        Err(err @ LoadError::Read { .. }) => {
            super::print_error(&anyhow::Error::new(err));
            eprintln!(
                "  hint: check the path of the pipeline file (relative to the current directory)"
            );
            return Ok(None);
        }
    };
    print_diagnostics(&warnings);
    let mut config = Config::load(global.config.as_deref())?;
    config.apply_registry_args(
        &args.source.registry_mirrors,
        &args.source.insecure_registries,
    )?;
    let secrets =
        match SecretStore::load(&args.secrets, args.secrets_file.as_deref(), &config.secrets) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: failed to load the secrets of the run");
                eprintln!("  caused by: {e}");
                return Ok(None);
            }
        };
    let masker = secrets.masker();
    // Every log line from here on, library warnings included.
    super::logmask::mask_logs_with(&masker);
    let vars = match RunOptions::parse_vars(&args.vars) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(None);
        }
    };
    let options = RunOptions {
        vars,
        stages: args.stages.clone(),
        ..RunOptions::default()
    };
    match RunContext::new(&pipeline, secrets, &config, options) {
        Ok(ctx) => Ok(Some((ctx, config))),
        // Mask here: the store (and its masker) is gone with the error.
        Err(e) => {
            eprintln!("error: {}", masked_chain(&e, &masker));
            Ok(None)
        }
    }
}

fn print_diagnostics(diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        eprintln!("{d}");
    }
}

/// An error and its causes on one line each, masked.
pub fn masked_chain(err: &dyn std::error::Error, masker: &Masker) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    masker.mask(&text).into_owned()
}

/// Prints the plan of every selected stage.
pub fn print_plan(ctx: &RunContext) -> Result<(), String> {
    let masker = ctx.masker();
    for stage in ctx.stages() {
        let text = ctx
            .stage(stage)
            .and_then(|sc| plan::stage_plan(&sc, &masker))
            .map_err(|e| masked_chain(&e, &masker))?;
        println!("{text}");
    }
    Ok(())
}

fn dry_run(global: &GlobalArgs, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let Some((ctx, _)) = prepare(global, args)? else {
        return Ok(ExitCode::from(1));
    };
    match print_plan(&ctx) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(text) => {
            eprintln!("error: {text}");
            Ok(ExitCode::from(1))
        }
    }
}
