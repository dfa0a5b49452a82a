//! `corral run FILE` (without `--dry-run`): runs the pipeline, prints the
//! summary and where the logs and workspace are, exits with its code.

use std::process::ExitCode;
use std::sync::Arc;

use corral::cli::{GlobalArgs, NetworkMode as CliNetwork, RunArgs};
use corral::runner::{self, report, Cancel, RunOptions};
use corral::sandbox::{idmap, NetworkMode};

pub fn run(global: &GlobalArgs, args: &RunArgs) -> anyhow::Result<ExitCode> {
    // Before any thread exists: the signals are blocked in every thread.
    let cancel = Cancel::new();
    runner::install_signal_handlers(cancel.clone())?;
    let Some((ctx, config)) = super::run::prepare(global, args)? else {
        return Ok(ExitCode::from(1));
    };
    let masker = ctx.masker();
    let color = runner::logs::stdout_color(global.color);
    // Pull progress: bars on a terminal, lines otherwise, nothing with -q.
    let progress = Arc::new(super::image::Reporter::new(global.quiet > 0));
    let options = RunOptions {
        resolve: ctx.options().clone(),
        store: global.store.clone(),
        workspace: args.workspace.clone(),
        network: Some(match args.network {
            CliNetwork::Private => NetworkMode::Private,
            CliNetwork::None => NetworkMode::None,
            CliNetwork::Host => NetworkMode::Host,
        }),
        offline: args.source.offline,
        events: args.events.clone(),
        color,
        quiet: global.quiet > 0,
        cancel,
        progress: Some(progress.clone()),
        ..RunOptions::default()
    };
    let outcome = runner::execute(ctx, config, &options);
    progress.finish();
    let report = match outcome {
        Ok(report) => report,
        Err(err) => {
            eprintln!("error: {}", super::run::masked_chain(&err, &masker));
            return Ok(ExitCode::from(1));
        }
    };
    // The summary goes with the step output: on stdout, unless --events -
    // owns stdout.
    let table = report::render_table(&report.stages, &masker, color);
    if args.events.as_deref() == Some(std::path::Path::new("-")) {
        eprint!("{table}");
    } else {
        print!("{table}");
    }
    for stage in &report.stages {
        if let Some(error) = &stage.error {
            eprintln!("error: stage {}: {}", stage.stage, masker.mask(error));
        }
    }
    eprintln!("logs:      {}", report.run_dir.join("logs").display());
    if report.per_stage_workspace {
        eprintln!(
            "workspace: {}/<stage-id> (one per stage)",
            report.workspace.display()
        );
    } else {
        eprintln!("workspace: {}", report.workspace.display());
    }
    let codes = report
        .stages
        .iter()
        .flat_map(|s| &s.steps)
        .filter_map(|s| s.exit_code);
    if let Some(note) = idmap::note_after_failure(codes) {
        eprintln!("note: {note}");
    }
    if let Some(sig) = report.interrupted {
        eprintln!("interrupted by signal {sig}");
    }
    Ok(ExitCode::from(report.exit_code))
}
