//! Helpers of the `run_*` tests: a private store and workspace, pipelines
//! written from their steps, corral run through the test registry.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};

use crate::common;

pub struct Env {
    pub dir: common::TestDir,
    pub store: PathBuf,
    pub workspace: PathBuf,
    pub registry: Option<String>,
}

/// A test environment; `None` (after a SKIP line) when the host lacks
/// namespaces, or images are needed and there is no registry.
pub fn setup(test: &str, images: bool) -> Option<Env> {
    if !common::require_namespaces(test) {
        return None;
    }
    let registry = if images {
        common::require_fixtures(test)?;
        Some(common::require_registry(test)?)
    } else {
        None
    };
    let dir = common::tempdir();
    let store = dir.path().join("store");
    let workspace = dir.path().join("ws");
    std::fs::create_dir_all(&workspace).unwrap();
    Some(Env {
        dir,
        store,
        workspace,
        registry,
    })
}

/// A one-stage pipeline (stage `s`) around `steps` (a YAML list of
/// `- step:` items written at column 0).
pub fn pipeline(steps: &str) -> String {
    pipeline_of(&stage("s", steps))
}

/// A pipeline `t` around `stages` (a YAML list written at column 0).
pub fn pipeline_of(stages: &str) -> String {
    format!(
        "pipeline:\n  name: t\n  identifier: t\n  stages:\n{}",
        indent(stages, 4)
    )
}

/// A `- stage:` item (column 0) of type CI, without codebase, running `steps`.
pub fn stage(id: &str, steps: &str) -> String {
    format!(
        "- stage:\n    name: {id}\n    identifier: {id}\n    type: CI\n    spec:\n      cloneCodebase: false\n      execution:\n        steps:\n{}",
        indent(steps, 10)
    )
}

/// A busybox `Run` step `id` running `command` in Sh.
pub fn run_step(id: &str, command: &str) -> String {
    step("Run", id, Some("busybox"), command)
}

/// A command that marks `me` started, then waits up to 10 s for `other`
/// to start and marks that it saw it: only overlapping steps see both.
pub fn meet(me: &str, other: &str) -> String {
    format!(
        "touch /harness/{me}.started; for i in $(seq 200); do if [ -e /harness/{other}.started ]; then touch /harness/{me}.saw; break; fi; sleep 0.05; done"
    )
}

/// A `- step:` item (column 0) of `kind` named and identified `id`, with
/// `image` (`None`: on the host, in Bash) and `command` (none when empty; a
/// block scalar when multi-line). Its last lines are in `spec:`, so further
/// spec keys (6 spaces) or step keys (4 spaces) can be appended.
pub fn step(kind: &str, id: &str, image: Option<&str>, command: &str) -> String {
    let mut yaml =
        format!("- step:\n    type: {kind}\n    name: {id}\n    identifier: {id}\n    spec:\n");
    let shell = match image {
        Some(image) => {
            yaml.push_str(&format!("      image: {image}\n"));
            "Sh"
        }
        None => "Bash",
    };
    if command.contains('\n') {
        yaml.push_str(&format!("      shell: {shell}\n      command: |\n"));
        for line in command.lines() {
            yaml.push_str(&format!("        {line}\n"));
        }
    } else if !command.is_empty() {
        yaml.push_str(&format!("      shell: {shell}\n      command: {command}\n"));
    }
    yaml
}

/// A host step (Bash) with `extra` appended: further spec keys (6 spaces)
/// or step keys (4 spaces); a 30 s timeout keeps a stuck one from hanging
/// the test.
pub fn host_step(id: &str, command: &str, extra: &str) -> String {
    step("Run", id, None, command) + extra + "    timeout: 30s\n"
}

/// Step keys (4 spaces) that ignore any failure of the step.
pub const IGNORE: &str = "    failureStrategies:\n      - onFailure:\n          errors: [AllErrors]\n          action:\n            type: Ignore\n";

/// Step keys (4 spaces): on any failure retry twice, 1 s apart, then take
/// action `then` (`MarkAsFailure`, `Ignore`, ...).
pub fn retry_twice(then: &str) -> String {
    format!(
        "    failureStrategies:\n      - onFailure:\n          errors: [AllErrors]\n          action:\n            type: Retry\n            spec:\n              retryCount: 2\n              retryIntervals: [1s]\n              onRetryFailure:\n                action:\n                  type: {then}\n"
    )
}

/// `stage_yaml` (from `stage`) with further stage keys (4 spaces).
pub fn with_stage_keys(stage_yaml: &str, keys: &str) -> String {
    stage_yaml.replacen("    type: CI\n", &format!("    type: CI\n{keys}"), 1)
}

/// `stage_yaml` (from `stage`) with a `when:` of these lines (6 spaces).
pub fn with_when(stage_yaml: &str, when: &str) -> String {
    with_stage_keys(stage_yaml, &format!("    when:\n{when}"))
}

/// `text` with every line indented by `spaces` (for steps nested in
/// `parallel:` or a step group).
pub fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

impl Env {
    pub fn write(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// `corral run FILE` with the mirror, the workspace and `--color never`.
    pub fn command(&self, file: &Path) -> Command {
        let mut cmd = self.command_own_workspace(file);
        cmd.arg("--workspace").arg(&self.workspace);
        cmd
    }

    /// As `command`, but corral makes the workspace in its run directory.
    pub fn command_own_workspace(&self, file: &Path) -> Command {
        let mut cmd = common::corral(&self.store);
        cmd.args(["--color", "never", "run"]).arg(file);
        if let Some(mirror) = self.mirror() {
            cmd.arg("--registry-mirror").arg(mirror);
        }
        cmd
    }

    /// `docker.io=http://REGISTRY` when the test has the registry.
    pub fn mirror(&self) -> Option<String> {
        let reg = self.registry.as_ref()?;
        Some(format!("docker.io=http://{reg}"))
    }

    /// `corral pull IMAGE` from the test registry into the store.
    pub fn pull(&self, image: &str) {
        let mirror = self.mirror().expect("the test has a registry");
        let out = common::corral(&self.store)
            .args(["pull", "--registry-mirror", &mirror, image])
            .output()
            .unwrap();
        common::assert_success(&out, &format!("corral pull {image}"));
    }

    /// `command` with `args`, its output printed (the test shows it when
    /// it fails).
    pub fn run(&self, file: &Path, args: &[&str]) -> Output {
        shown(self.command(file).args(args))
    }

    /// As `run`, but corral makes the workspace in its run directory.
    pub fn run_own(&self, file: &Path, args: &[&str]) -> Output {
        shown(self.command_own_workspace(file).args(args))
    }

    pub fn ws(&self, name: &str) -> PathBuf {
        self.workspace.join(name)
    }
}

fn shown(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    eprintln!(
        "--- stdout\n{}--- stderr\n{}---",
        stdout(&out),
        stderr(&out)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The run's log directory, from the `logs:` line corral prints.
pub fn log_dir(out: &Output) -> PathBuf {
    let err = stderr(out);
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("logs:"))
        .expect("corral names the log directory");
    PathBuf::from(line.trim())
}

/// The summary row of a step: its columns.
pub fn row(out: &Output, step: &str) -> Vec<String> {
    let text = stdout(out);
    let line = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(step))
        .unwrap_or_else(|| panic!("no summary row for {step}"));
    line.split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Events of `kind` in an events file.
pub fn events(path: &Path, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["type"] == kind)
        .collect()
}

/// Processes that still carry this store in their environment (every
/// process corral starts inherits `CORRAL_STORE`).
pub fn leftover_processes(store: &Path) -> Vec<String> {
    let needle = format!("CORRAL_STORE={}", store.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == needle.as_bytes())
        {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push(format!(
                "{pid}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

/// Waits up to `secs` for `f` to hold.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    f()
}

/// Sends signal `sig` to `child`.
pub fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// Sends `sig` to `child` and waits up to 30 s for it to exit, killing it
/// if it does not: whether it stopped by itself.
pub fn signal_and_wait(child: &mut Child, sig: i32) -> bool {
    signal(child, sig);
    let stopped = eventually(30, || child.try_wait().unwrap().is_some());
    if !stopped {
        let _ = child.kill();
    }
    stopped
}
