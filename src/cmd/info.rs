//! `corral info`: what this host allows and what corral will do here.

use std::process::ExitCode;

use corral::cli::{GlobalArgs, InfoArgs};
use corral::sandbox::{self, probe};

pub fn run(global: &GlobalArgs, args: InfoArgs) -> anyhow::Result<ExitCode> {
    let store = super::exec::store_dir(global)?;
    let report = probe::probe(&sandbox::default_exe(), &store);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = report
        .checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0);
    println!("host");
    for check in &report.checks {
        let mark = if check.ok { "ok " } else { "!! " };
        println!("  {mark}{:width$}  {}", check.name, check.value);
        if let Some(fix) = &check.fix {
            println!("     {:width$}  fix: {fix}", "");
        }
    }
    println!("corral will use");
    println!("  id mapping  {}", report.modes.id_mapping);
    println!("  rootfs      {}", report.modes.rootfs);
    println!("  network     {}", report.modes.network);
    println!("  limits      {}", report.modes.limits);
    Ok(ExitCode::SUCCESS)
}
