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
            // A stage its `when` skipped did not fail: it says why.
            let label =
                if stage.status == report::StageStatus::Skipped && error.starts_with("skipped: ") {
                    "note"
                } else {
                    "error"
                };
            eprintln!("{label}: stage {}: {}", stage.stage, masker.mask(error));
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
    let codes = id_failures(&report);
    if let Some(note) = idmap::note_after_failure(codes) {
        eprintln!("note: {note}");
    }
    if let Some(sig) = report.interrupted {
        eprintln!("interrupted by signal {sig}");
    }
    Ok(ExitCode::from(report.exit_code))
}

/// What a program prints when it switches users or changes owners in a
/// sandbox that maps a single ID (chown to an unmapped ID is EINVAL).
const ID_MAPPING_SIGNS: [&str; 10] = [
    "chown",
    "chgrp",
    "setgroups",
    "setgid",
    "setuid",
    "seteuid",
    "setegid",
    "setresuid",
    "Invalid argument",
    "Operation not permitted",
];

/// Exit codes of the failed steps whose log shows an ID-mapping failure:
/// the single-ID note is noise after, say, a failing test.
fn id_failures(report: &runner::RunReport) -> Vec<i32> {
    let logs = report.run_dir.join("logs");
    let mut codes = Vec::new();
    for stage in &report.stages {
        for step in &stage.steps {
            let Some(code) = step.exit_code.filter(|c| *c != 0) else {
                continue;
            };
            let file = logs
                .join(&stage.stage)
                .join(runner::logs::log_file_name(&step.step));
            let text = log_tail(&file);
            if ID_MAPPING_SIGNS.iter().any(|sign| text.contains(sign)) {
                codes.push(code);
            }
        }
    }
    codes
}

/// The last 256 KiB of a step log (the failure is at its end), or nothing.
fn log_tail(file: &std::path::Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    const TAIL: u64 = 256 * 1024;
    let Ok(mut f) = std::fs::File::open(file) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(len.saturating_sub(TAIL))).is_err()
        || f.read_to_end(&mut bytes).is_err()
    {
        return String::new();
    }
    String::from_utf8_lossy(&bytes).into_owned()
}
