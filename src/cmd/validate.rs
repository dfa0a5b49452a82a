use std::process::ExitCode;

use corral::cli::{GlobalArgs, ValidateArgs};

pub fn run(_global: &GlobalArgs, _args: ValidateArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("validate")
}
