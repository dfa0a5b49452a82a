use std::process::ExitCode;

use corral::cli::{ExecArgs, GlobalArgs};

pub fn run(_global: &GlobalArgs, _args: ExecArgs) -> anyhow::Result<ExitCode> {
    super::not_yet("exec")
}
