//! `corral [GLOBAL…] exec …` read without clap, for the command that runs
//! once per sandbox. Building clap's parser, even for the exec subcommand
//! alone, took about 0.3 ms of a 4.6 ms `corral exec IMAGE true` (mostly
//! first touches of its code and allocations). This reader accepts the
//! plain spellings only and answers `None` for anything else (`--help`, a
//! short option with its value attached, a repeated single option, a
//! conflict, an unknown option), so that clap parses it and gives its own
//! answer or error. The tests hold it to clap's result on every command
//! line it accepts.

use std::ffi::OsString;
use std::path::PathBuf;

use corral::cli::{Cli, ColorChoice, Command, ExecArgs, GlobalArgs, NetworkMode};

/// Parses `argv` (with the program name first) as clap would, or `None`.
/// `env` reads an environment variable, as clap does for `--config` and
/// `--store`.
pub fn parse(argv: &[OsString], env: impl Fn(&str) -> Option<OsString>) -> Option<Cli> {
    let args: Vec<&str> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_str())
        .collect::<Option<_>>()?;
    let mut global = Globals::default();
    let mut rest = args.iter().copied();
    loop {
        let arg = rest.next()?;
        if arg == "exec" {
            break;
        }
        match arg {
            "-v" | "--verbose" => global.verbose = global.verbose.checked_add(1)?,
            "-q" | "--quiet" => global.quiet = global.quiet.checked_add(1)?,
            _ if is_repeated_short(arg, 'v') => global.verbose = count(global.verbose, arg)?,
            _ if is_repeated_short(arg, 'q') => global.quiet = count(global.quiet, arg)?,
            _ => global.option(arg, &mut rest)?,
        }
    }
    let mut exec = Exec::default();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            exec.args.command = rest.by_ref().map(str::to_owned).collect();
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            set_once(&mut exec.args.image, arg)?;
            continue;
        }
        if global.option(arg, &mut rest).is_some() {
            continue;
        }
        exec.option(arg, &mut rest)?;
    }
    exec.finish(global.finish(env)?)
}

/// `-vv`, `-qqq`: a short flag repeated in one word (counted by clap).
fn is_repeated_short(arg: &str, flag: char) -> bool {
    arg.len() > 2 && arg.starts_with('-') && arg[1..].chars().all(|c| c == flag)
}

fn count(so_far: u8, arg: &str) -> Option<u8> {
    so_far.checked_add(u8::try_from(arg.len() - 1).ok()?)
}

/// `--name VALUE` or `--name=VALUE` (or `-x VALUE` when `short`): the value,
/// when `arg` is that option. A missing value, or one that looks like an
/// option, is for clap to judge.
fn value<'a>(
    arg: &'a str,
    long: &str,
    short: Option<&str>,
    rest: &mut impl Iterator<Item = &'a str>,
) -> Option<Option<&'a str>> {
    let attached = arg
        .strip_prefix("--")
        .and_then(|a| a.strip_prefix(long))
        .and_then(|a| a.strip_prefix('='));
    if let Some(value) = attached {
        return Some(Some(value));
    }
    let spelled = arg.strip_prefix("--") == Some(long) || short.is_some_and(|s| arg == s);
    if !spelled {
        return None;
    }
    Some(rest.next().filter(|v| !v.starts_with('-')))
}

/// Sets a single-valued option; `None` when it was already given (clap
/// refuses that).
fn set_once<T>(slot: &mut Option<T>, value: impl Into<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value.into());
    Some(())
}

fn set_flag(flag: &mut bool) -> Option<()> {
    if *flag {
        return None;
    }
    *flag = true;
    Some(())
}

/// A value of one of clap's value enums, named as clap names them (exactly:
/// the enums do not ignore case).
fn choice<T: clap::ValueEnum>(value: &str) -> Option<T> {
    T::from_str(value, false).ok()
}

/// A path value: clap refuses an empty one.
fn path(value: &str) -> Option<PathBuf> {
    (!value.is_empty()).then(|| PathBuf::from(value))
}

#[derive(Default)]
struct Globals {
    config: Option<PathBuf>,
    store: Option<PathBuf>,
    color: Option<ColorChoice>,
    verbose: u8,
    quiet: u8,
}

impl Globals {
    /// Takes `arg` (and its value from `rest`) when it is a global option
    /// with a value; `None` otherwise.
    fn option<'a>(&mut self, arg: &'a str, rest: &mut impl Iterator<Item = &'a str>) -> Option<()> {
        if let Some(v) = value(arg, "config", None, rest) {
            return set_once(&mut self.config, path(v?)?);
        }
        if let Some(v) = value(arg, "store", None, rest) {
            return set_once(&mut self.store, path(v?)?);
        }
        if let Some(v) = value(arg, "color", None, rest) {
            return set_once(&mut self.color, choice::<ColorChoice>(v?)?);
        }
        None
    }

    fn finish(self, env: impl Fn(&str) -> Option<OsString>) -> Option<GlobalArgs> {
        // An option given wins over its variable; an empty variable is an
        // error for clap.
        let from_env = |name: &str| match env(name) {
            None => Some(None),
            Some(v) if v.is_empty() => None,
            Some(v) => Some(Some(PathBuf::from(v))),
        };
        let config = match self.config {
            Some(config) => Some(config),
            None => from_env("CORRAL_CONFIG")?,
        };
        let store = match self.store {
            Some(store) => Some(store),
            None => from_env("CORRAL_STORE")?,
        };
        Some(GlobalArgs {
            config,
            store,
            verbose: self.verbose,
            quiet: self.quiet,
            color: self.color.unwrap_or(ColorChoice::Auto),
        })
    }
}

#[derive(Default)]
struct Exec {
    args: ExecArgs,
    /// Apart from `args.network`, which has a default: given twice is an error.
    network: Option<NetworkMode>,
}

impl Exec {
    fn option<'a>(&mut self, arg: &'a str, rest: &mut impl Iterator<Item = &'a str>) -> Option<()> {
        let a = &mut self.args;
        let source = &mut a.registry.source;
        match arg {
            "--read-only" => return set_flag(&mut a.read_only),
            "--host-root" => return set_flag(&mut a.host_root),
            "--privileged" => return set_flag(&mut a.privileged),
            "--offline" => return set_flag(&mut source.offline),
            _ => {}
        }
        let repeatable: [(&str, Option<&str>, &mut Vec<String>); 5] = [
            ("env", Some("-e"), &mut a.env),
            ("volume", Some("-v"), &mut a.volumes),
            ("publish", Some("-p"), &mut a.publish),
            ("registry-mirror", None, &mut source.registry_mirrors),
            ("insecure-registry", None, &mut source.insecure_registries),
        ];
        for (long, short, values) in repeatable {
            if let Some(v) = value(arg, long, short, rest) {
                values.push(v?.to_owned());
                return Some(());
            }
        }
        if let Some(v) = value(arg, "env-file", None, rest) {
            a.env_file.push(path(v?)?);
            return Some(());
        }
        let single: [(&str, Option<&str>, &mut Option<String>); 7] = [
            ("workdir", Some("-w"), &mut a.workdir),
            ("user", Some("-u"), &mut a.user),
            ("entrypoint", None, &mut a.entrypoint),
            ("hostname", None, &mut a.hostname),
            ("memory", None, &mut a.memory),
            ("cpus", None, &mut a.cpus),
            ("platform", None, &mut a.registry.platform),
        ];
        for (long, short, slot) in single {
            if let Some(v) = value(arg, long, short, rest) {
                return set_once(slot, v?);
            }
        }
        if let Some(v) = value(arg, "rootfs", None, rest) {
            return set_once(&mut a.rootfs, path(v?)?);
        }
        if let Some(v) = value(arg, "network", None, rest) {
            return set_once(&mut self.network, choice::<NetworkMode>(v?)?);
        }
        None
    }

    /// The parsed command, unless its arguments conflict (clap's to report).
    fn finish(self, global: GlobalArgs) -> Option<Cli> {
        let mut args = self.args;
        let (image, rootfs) = (args.image.is_some(), args.rootfs.is_some());
        let conflict = (args.host_root && (image || rootfs)) || (image && rootfs);
        if conflict || !(image || rootfs || args.host_root) {
            return None;
        }
        args.network = self.network.unwrap_or_default();
        Some(Cli {
            global,
            command: Command::Exec(args),
        })
    }
}

#[cfg(test)]
mod tests;
