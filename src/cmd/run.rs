use std::process::ExitCode;

use corral::cli::{GlobalArgs, RunArgs};

pub fn run(_global: &GlobalArgs, _args: RunArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("run")
}
