//! One step as a sandbox: its `SandboxSpec`, one attempt of a Run step
//! (timeout and interruption), a Background step's watcher, and the sinks
//! that keep its last lines for reports.

use crate::error_chain;
use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::cancel::Cancel;
use super::events::TeardownSignal;
use super::logs::{LineSink, LogLine, StepLog, Stream};
use super::resolve::{ResolvedStep, WORKSPACE};
use super::supervise::{self, Exit, StepOutcome, Supervised};
use crate::image::Image;
use crate::pipeline::model::StepGroup;
use crate::sandbox::{
    self, BindMount, IdMapping, InlineFile, Limits, Rootfs, SandboxSpec, StepExit, StepStdio,
};

impl Supervised for sandbox::Step {
    fn pid(&self) -> u32 {
        sandbox::Step::pid(self)
    }

    fn try_wait(&mut self) -> io::Result<Option<Exit>> {
        sandbox::Step::try_wait(self)
            .map(|exit| exit.map(exit_of))
            .map_err(io::Error::other)
    }

    fn terminate(&mut self) -> io::Result<()> {
        self.signal(libc::SIGTERM).map_err(io::Error::other)
    }

    fn kill(&mut self) -> io::Result<()> {
        self.signal(libc::SIGKILL).map_err(io::Error::other)
    }
}

fn exit_of(exit: StepExit) -> Exit {
    match exit {
        StepExit::Exited(code) => Exit::Code(code),
        StepExit::Signaled(sig) => Exit::Signal(sig),
    }
}

/// What every step of a stage shares in its sandbox.
#[derive(Debug, Clone)]
pub struct StepMounts {
    /// The workspace, bind-mounted read-write at `/harness`.
    pub workspace: PathBuf,
    /// `sharedPaths`: (host dir, path in the sandbox).
    pub shared: Vec<(PathBuf, String)>,
    /// `/etc/hosts` entries: every step id on 127.0.0.1.
    pub hosts: Vec<(String, String)>,
    /// Step groups' `sharedPaths`: (group key, host dir, path in the
    /// sandbox); see [`StepMounts::for_groups`].
    pub group_shared: Vec<(String, PathBuf, String)>,
}

impl StepMounts {
    /// The mounts of a step inside `groups` (outermost first): the stage's,
    /// plus the sharedPaths of each group around it. A path the stage (or
    /// an outer group) shares already keeps that directory.
    pub fn for_groups(&self, groups: &[&StepGroup]) -> StepMounts {
        let mut mounts = self.clone();
        for depth in 1..=groups.len() {
            let key = group_key(&groups[..depth]);
            for (k, dir, target) in &self.group_shared {
                if *k == key && !mounts.shared.iter().any(|(_, t)| t == target) {
                    mounts.shared.push((dir.clone(), target.clone()));
                }
            }
        }
        mounts
    }
}

/// The key of the innermost of `groups` (outermost first): their ids
/// joined with `_`, as step labels are.
pub fn group_key(groups: &[&StepGroup]) -> String {
    let ids: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
    ids.join("_")
}

/// The sandbox of a resolved step: its image's rootfs (or the host's root
/// for imageless steps), argv (the image's Entrypoint + Cmd when the step
/// has none), image Env under the step's, the workspace as cwd.
pub fn sandbox_spec(
    step: &ResolvedStep,
    image: Option<&Image>,
    mounts: &StepMounts,
    mapping: IdMapping,
) -> Result<SandboxSpec, String> {
    let rootfs = match image {
        Some(image) => Rootfs::Image {
            lower: image.rootfs.clone(),
        },
        None => Rootfs::HostRoot,
    };
    let argv = match &step.argv {
        Some(argv) => argv.clone(),
        None => {
            let config = image.map(|i| i.config.clone()).unwrap_or_default();
            let mut argv = config.entrypoint.unwrap_or_default();
            argv.extend(config.cmd.unwrap_or_default());
            argv
        }
    };
    if argv.is_empty() {
        return Err(format!(
            "step {} has no command and its image has no Entrypoint or Cmd",
            step.id
        ));
    }
    let mut spec = SandboxSpec::new(rootfs, argv);
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: &str| {
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value.to_string()));
    };
    set("PATH", sandbox::spec::DEFAULT_PATH);
    if image.is_none() {
        // The host's own PATH finds the host's tools (bash, curl …).
        if let Ok(path) = std::env::var("PATH") {
            set("PATH", &path);
        }
    }
    let user = step_user(step, image, &spec.rootfs, mapping)?;
    let home = user.as_ref().and_then(|u| u.home.as_deref());
    set("HOME", home.unwrap_or("/root"));
    if let Some(image) = image {
        for kv in &image.config.env {
            if let Some((k, v)) = kv.split_once('=') {
                set(k, v);
            }
        }
    }
    set("HOSTNAME", &step.id);
    for (k, v) in &step.env {
        set(k, v);
    }
    spec.env = env;
    spec.cwd = WORKSPACE.to_string();
    spec.user = user.map(|u| u.user);
    spec.hostname = step.id.to_ascii_lowercase().replace('_', "-");
    spec.extra_hosts = mounts.hosts.clone();
    spec.mounts.push(BindMount {
        source: mounts.workspace.clone(),
        target: WORKSPACE.to_string(),
        read_only: false,
    });
    for (source, target) in &mounts.shared {
        spec.mounts.push(BindMount {
            source: source.clone(),
            target: target.clone(),
            read_only: false,
        });
    }
    if let Some(script) = &step.script {
        spec.files.push(InlineFile {
            path: script.path.clone(),
            contents: script.text.clone(),
        });
    }
    spec.privileged = step.privileged;
    spec.limits = Limits {
        memory_bytes: step.memory_bytes,
        cpus: step.cpu_millis.map(|m| m as f64 / 1000.0),
    };
    for warning in sandbox::rlimits::warnings(&spec.limits) {
        tracing::warn!("step {}: {warning}", step.id);
    }
    Ok(spec)
}

/// `runAsUser`, else the image's `User` (see [`sandbox::user::choose`]);
/// `None` runs as root of the stage's user namespace (the workspace owner).
/// A `runAsUser` the stage's ID mapping cannot hold fails the step before
/// it starts, saying why.
fn step_user(
    step: &ResolvedStep,
    image: Option<&Image>,
    rootfs: &Rootfs,
    mapping: IdMapping,
) -> Result<Option<sandbox::user::ExecUser>, String> {
    let requested = step.run_as_user.map(|uid| uid.to_string());
    let image_user = image.and_then(|i| i.config.user.as_deref());
    let label = match &step.image {
        Some(name) => format!("image {name}"),
        None => "the host".to_string(),
    };
    let (found, warning) = sandbox::user::choose(
        requested.as_deref(),
        image_user,
        &sandbox::user::etc_root(rootfs),
        &label,
        mapping,
    )
    .map_err(|e| format!("step {}: {}", step.id, error_chain(&e)))?;
    if let Some(warning) = warning {
        tracing::warn!("step {}: {warning}", step.id);
    }
    Ok(found)
}

/// Keeps the last lines of a step, for the report of a crashed service.
pub struct TailSink {
    lines: Mutex<VecDeque<String>>,
    keep: usize,
}

impl TailSink {
    pub fn new(keep: usize) -> Self {
        TailSink {
            lines: Mutex::new(VecDeque::new()),
            keep,
        }
    }

    pub fn lines(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        lines.iter().cloned().collect()
    }
}

impl LineSink for TailSink {
    fn line(&self, line: &LogLine<'_>) -> io::Result<()> {
        let mut lines = self.lines.lock().unwrap_or_else(PoisonError::into_inner);
        if lines.len() == self.keep {
            lines.pop_front();
        }
        lines.push_back(line.text.to_string());
        Ok(())
    }
}

/// Starts the step's sandbox with its output pumped into `log`.
pub fn spawn(
    stage: &sandbox::Stage,
    spec: &SandboxSpec,
    log: &StepLog,
) -> Result<(sandbox::Step, Vec<std::thread::JoinHandle<()>>), String> {
    let mut child = stage
        .spawn(spec, StepStdio::Piped)
        .map_err(|e| error_chain(&e))?;
    let mut pumps = Vec::new();
    if let Some(out) = child.take_stdout() {
        pumps.push(pump(log, Stream::Stdout, out));
    }
    if let Some(err) = child.take_stderr() {
        pumps.push(pump(log, Stream::Stderr, err));
    }
    Ok((child, pumps.into_iter().flatten().collect()))
}

fn pump(
    log: &StepLog,
    stream: Stream,
    reader: impl io::Read + Send + 'static,
) -> Option<std::thread::JoinHandle<()>> {
    match log.spawn_pump(stream, reader) {
        Ok(handle) => Some(std::thread::spawn(move || {
            if let Ok(Err(err)) = handle.join() {
                tracing::warn!("{}", error_chain(&err));
            }
        })),
        Err(err) => {
            tracing::warn!("{}", error_chain(&err));
            None
        }
    }
}

/// Waits for a Run step: past `timeout` it is stopped (SIGTERM, `grace`,
/// SIGKILL) and `TimedOut`; when the run is interrupted it is stopped the
/// same way and reported as it ended (the signal that killed it, or its
/// exit code).
pub fn wait_run(
    child: &mut sandbox::Step,
    timeout: Duration,
    grace: Duration,
    cancel: &Cancel,
    on_signal: &mut dyn FnMut(TeardownSignal),
) -> Result<StepOutcome, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match Supervised::try_wait(child) {
            Ok(Some(Exit::Code(code))) => return Ok(StepOutcome::Exited(code)),
            Ok(Some(Exit::Signal(sig))) => return Ok(StepOutcome::Signaled(sig)),
            Ok(None) => {}
            Err(err) => return Err(format!("failed to wait for the step: {err}")),
        }
        if cancel.signal().is_some() {
            // What really ended it: our SIGTERM, the SIGKILL after the
            // grace period, or its own exit code.
            let exit = supervise::stop(child, grace, on_signal).map_err(|e| error_chain(&e))?;
            return Ok(match exit {
                Exit::Code(code) => StepOutcome::Exited(code),
                Exit::Signal(sig) => StepOutcome::Signaled(sig),
            });
        }
        if Instant::now() >= deadline {
            supervise::stop(child, grace, on_signal).map_err(|e| error_chain(&e))?;
            return Ok(StepOutcome::TimedOut);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How a Background step ended.
#[derive(Debug, Clone, Copy)]
pub enum ServiceEnd {
    /// It exited on its own before the stage ended.
    Exited(Exit),
    /// It was still running at teardown (and was stopped).
    Stopped,
}

/// Watches a Background step until it exits or `teardown` is set; calls
/// `on_exit` the moment it exits on its own.
pub fn watch_service(
    mut child: sandbox::Step,
    pumps: Vec<std::thread::JoinHandle<()>>,
    teardown: Arc<AtomicBool>,
    grace: Duration,
    on_exit: Box<dyn FnOnce(Exit) + Send>,
    mut on_signal: Box<dyn FnMut(TeardownSignal) + Send>,
) -> ServiceEnd {
    loop {
        match Supervised::try_wait(&mut child) {
            Ok(Some(exit)) => {
                // Its last lines first, so the report can show them.
                for pump in pumps {
                    let _ = pump.join();
                }
                on_exit(exit);
                return ServiceEnd::Exited(exit);
            }
            Ok(None) => {}
            Err(err) => tracing::warn!("failed to wait for a service: {err}"),
        }
        if teardown.load(Ordering::SeqCst) {
            let end = supervise::stop(&mut child, grace, &mut *on_signal);
            for pump in pumps {
                let _ = pump.join();
            }
            return match end {
                Ok(_) => ServiceEnd::Stopped,
                Err(err) => {
                    tracing::warn!("{}", error_chain(&err));
                    ServiceEnd::Stopped
                }
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
