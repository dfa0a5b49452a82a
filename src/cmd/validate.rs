//! `corral validate FILE`: report every problem with its location.

use std::process::ExitCode;

use corral::cli::{GlobalArgs, ValidateArgs};
use corral::pipeline::{self, Diagnostic, LoadError, Pipeline};

pub fn run(_global: &GlobalArgs, args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let file = args.file.display();
    match pipeline::load(&args.file) {
        Ok((pipeline, warnings)) => {
            print_all(&warnings);
            println!(
                "{file}: valid: {} ({})",
                counts(&pipeline),
                plural(warnings.len(), "warning")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(LoadError::Invalid { diagnostics, .. }) => {
            print_all(&diagnostics);
            let errors = diagnostics.iter().filter(|d| d.is_error()).count();
            println!(
                "{file}: invalid: {}, {}",
                plural(errors, "error"),
                plural(diagnostics.len() - errors, "warning")
            );
            Ok(ExitCode::from(1))
        }
        Err(err @ LoadError::Read { .. }) => {
            super::print_error(&anyhow::Error::new(err));
            eprintln!(
                "  hint: check the path of the pipeline file (relative to the current directory)"
            );
            Ok(ExitCode::from(1))
        }
    }
}

fn print_all(diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        println!("{d}");
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn counts(p: &Pipeline) -> String {
    let steps: usize = p.stages.iter().map(|s| s.steps().len()).sum();
    format!(
        "{}, {}",
        plural(p.stages.len(), "stage"),
        plural(steps, "step")
    )
}
