use std::process::ExitCode;

use corral::cli::{GlobalArgs, InfoArgs};

pub fn run(_global: &GlobalArgs, _args: InfoArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("info")
}
