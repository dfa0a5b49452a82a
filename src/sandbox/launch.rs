//! Starting stages and steps from the (possibly multi-threaded) corral
//! process: only `std::process::Command` re-executions of our own binary,
//! never a bare fork.
//!
//! All children are spawned from one long-lived thread: PR_SET_PDEATHSIG
//! fires when the *thread* that forked a child exits, so spawning from a
//! short-lived worker (tokio's spawn_blocking) would kill sandboxes early.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::init::{self, SPEC_FD, STATUS_FD};
use super::spec::{HolderRequest, IdMapping, NetworkMode, SandboxSpec, StageSpec, StepRequest};
use super::step::{pidfd_open, pidfd_signal, wait_all, StepProcess};
pub use super::step::{Step, StepExit, StepStdio};
use super::{idmap, net, SandboxError};

type Job = Box<dyn FnOnce() + Send>;

fn spawner() -> &'static Mutex<mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("corral-spawner".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .map(drop)
            .unwrap_or_default();
        Mutex::new(tx)
    })
}

/// Runs `f` on the spawner thread and returns its result.
/// The main thread lives as long as the process, so it spawns directly
/// (two thread hand-offs fewer for `corral exec`).
pub(crate) fn on_spawner<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    if rustix::thread::gettid() == rustix::process::getpid() {
        return Ok(f());
    }
    let (tx, rx) = mpsc::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    let sent = spawner()
        .lock()
        .map(|s| s.send(job).is_ok())
        .unwrap_or(false);
    if !sent {
        return Err(std::io::Error::other("the spawner thread is gone"));
    }
    rx.recv()
        .map_err(|_| std::io::Error::other("the spawner thread is gone"))
}

/// A holder process and the pipes to talk to it.
struct Holder {
    child: Child,
    control: ChildStdin,
    replies: BufReader<ChildStdout>,
}

impl Holder {
    fn start(
        exe: &Path,
        network: NetworkMode,
        ports: Vec<super::PortForward>,
        mapping: IdMapping,
    ) -> Result<Holder, SandboxError> {
        let exe = exe.to_path_buf();
        let exe_for_err = exe.clone();
        let child = on_spawner(move || {
            Command::new(&exe)
                .args(["__sandbox", "holder"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                // A terminal's ^C is corral's to handle (orderly teardown).
                .process_group(0)
                .spawn()
        })
        .and_then(|r| r)
        .map_err(|source| SandboxError::SpawnHolder {
            exe: exe_for_err,
            source,
        })?;
        let mut holder = Holder::wrap(child)?;
        let req = HolderRequest {
            network,
            ports,
            parent_pid: std::process::id() as i32,
        };
        let json = serde_json::to_string(&req).map_err(|e| SandboxError::HolderProtocol {
            message: e.to_string(),
        })?;
        holder.send(&json)?;
        holder.expect("unshared")?;
        idmap::write_maps(holder.pid(), mapping)
            .map_err(|source| SandboxError::WriteIdMaps { source })?;
        holder.send("mapped")?;
        holder.expect("ready")?;
        Ok(holder)
    }

    fn wrap(mut child: Child) -> Result<Holder, SandboxError> {
        let (Some(control), Some(out)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(SandboxError::HolderProtocol {
                message: "holder pipes missing".into(),
            });
        };
        Ok(Holder {
            child,
            control,
            replies: BufReader::new(out),
        })
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn send(&mut self, line: &str) -> Result<(), SandboxError> {
        writeln!(self.control, "{line}").map_err(|_| self.died())
    }

    fn expect(&mut self, want: &str) -> Result<(), SandboxError> {
        let mut line = String::new();
        match self.replies.read_line(&mut line) {
            Ok(n) if n > 0 => {}
            _ => return Err(self.died()),
        }
        let line = line.trim_end();
        if line == want {
            Ok(())
        } else if let Some(msg) = line.strip_prefix("error ") {
            Err(SandboxError::Holder {
                message: msg.to_string(),
            })
        } else {
            Err(SandboxError::HolderProtocol {
                message: format!("expected `{want}`, got `{line}`"),
            })
        }
    }

    fn died(&mut self) -> SandboxError {
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
        SandboxError::HolderDied { status }
    }

    fn remove(&mut self, path: &Path) -> Result<(), SandboxError> {
        self.send(&format!("rm {}", path.display()))?;
        self.expect("ok")
    }

    fn finish(mut self) {
        drop(self.control);
        let _ = self.child.wait();
    }
}

/// Live steps of a stage, by id, as pidfds (race-free signals).
pub(crate) type LiveSteps = Arc<Mutex<HashMap<u64, OwnedFd>>>;

/// A running stage: its holder and the steps spawned into it.
pub struct Stage {
    spec: StageSpec,
    mapping: IdMapping,
    /// `None` once torn down.
    holder: Option<Holder>,
    live: LiveSteps,
    next_step: AtomicU64,
    /// Stops a slirp4netns helper when the stage goes.
    _egress: Option<net::EgressGuard>,
    /// flock on `run_dir/lock`, held while the stage lives.
    _lock: File,
}

impl Stage {
    /// Creates the run dir, spawns the holder with the stage's user and
    /// network namespaces and binds the published ports (a busy port is an
    /// error here, before anything runs).
    pub fn start(spec: StageSpec) -> Result<Stage, SandboxError> {
        let lock = super::state::create_locked(&spec.run_dir)?;
        let mapping = idmap::choose();
        let holder = match Holder::start(&spec.exe, spec.network, spec.ports.clone(), mapping) {
            Ok(h) => h,
            Err(err) => {
                let _ = std::fs::remove_dir_all(&spec.run_dir);
                return Err(err);
            }
        };
        let mut egress = None;
        if spec.network == NetworkMode::Private {
            match net::start_egress(holder.pid()) {
                Ok(guard) => egress = Some(guard),
                Err(msg) => tracing::warn!("{msg}"),
            }
        }
        Ok(Stage {
            spec,
            mapping,
            holder: Some(holder),
            live: Arc::default(),
            next_step: AtomicU64::new(0),
            _egress: egress,
            _lock: lock,
        })
    }

    /// PID of the holder (its `/proc/PID/ns/{user,net}` are the stage's).
    pub fn holder_pid(&self) -> u32 {
        self.holder.as_ref().map(|h| h.child.id()).unwrap_or(0)
    }

    /// How IDs are mapped in this stage.
    pub fn mapping(&self) -> IdMapping {
        self.mapping
    }

    /// Starts a sandbox in the stage; returns once the command has been
    /// exec'd (a command that cannot be exec'd exits 126/127 with a reason
    /// on its stderr). Setup failures are errors.
    pub fn spawn(&self, spec: &SandboxSpec, stdio: StepStdio) -> Result<Step, SandboxError> {
        let holder_pid = match &self.holder {
            Some(holder) => holder.pid(),
            None => {
                return Err(SandboxError::HolderDied {
                    status: "stage already shut down".into(),
                })
            }
        };
        let req = StepRequest {
            spec: spec.clone(),
            holder_pid,
            network: self.spec.network,
            ports: Vec::new(),
            parent_pid: std::process::id() as i32,
            step_dir: self.spec.run_dir.join("mnt"),
            mapping: self.mapping,
        };
        let id = self.next_step.fetch_add(1, Ordering::Relaxed);
        let step = spawn_step(&self.spec.exe, &req, stdio, id, self.live.clone())?;
        if let Ok(dup) = step.pidfd.try_clone() {
            if let Ok(mut live) = self.live.lock() {
                live.insert(id, dup);
            }
        }
        Ok(step)
    }

    /// SIGTERM to every live step, `grace` to exit, then SIGKILL; the holder
    /// removes the run dir and exits.
    pub fn shutdown(mut self, grace: Duration) -> Result<(), SandboxError> {
        self.teardown(grace)
    }

    fn teardown(&mut self, grace: Duration) -> Result<(), SandboxError> {
        let Some(mut holder) = self.holder.take() else {
            return Ok(());
        };
        let fds: Vec<OwnedFd> = match self.live.lock() {
            Ok(mut live) => live.drain().map(|(_, fd)| fd).collect(),
            Err(_) => Vec::new(),
        };
        for fd in &fds {
            pidfd_signal(fd.as_raw_fd(), libc::SIGTERM);
        }
        if !wait_all(&fds, grace) {
            for fd in &fds {
                pidfd_signal(fd.as_raw_fd(), libc::SIGKILL);
            }
            wait_all(&fds, Duration::from_secs(5));
        }
        // Sandboxes keep their writes on private tmpfs mounts, so the run dir
        // holds only our own files; the holder (root of the stage's user
        // namespace) is the fallback for anything else.
        let removed = match std::fs::remove_dir_all(&self.spec.run_dir) {
            Ok(()) => Ok(()),
            Err(_) => holder.remove(&self.spec.run_dir),
        };
        holder.finish();
        removed
    }
}

/// A stage dropped without [`Stage::shutdown`] is torn down at once: its
/// steps are killed, the holder exits, the run dir is removed.
impl Drop for Stage {
    fn drop(&mut self) {
        let _ = self.teardown(Duration::ZERO);
    }
}

/// A one-sandbox stage without a holder: the sandbox's own process creates
/// the user and network namespaces and forwards `stage.ports` (one process
/// and several round trips fewer; what `corral exec` uses).
///
/// A one-off sandbox writes nothing to disk: `stage.run_dir` only serves as
/// the mount point of its private scratch tmpfs, is created when missing,
/// may be shared by any number of concurrent sandboxes and is left in place
/// (name it with a leading `.` under the store's `run/`, where
/// [`crate::sandbox::remove_stale`] skips it).
///
/// From a single-threaded caller with [`StepStdio::Inherit`] the step
/// process is forked rather than re-executed, and [`Step::wait`] returns as
/// soon as the command has exited and every other process of the sandbox
/// was SIGKILLed: the kernel's teardown of the namespaces (mounts, netns)
/// then finishes after we return and the step process stays a zombie until
/// the caller exits (meant for a process that runs one sandbox). This
/// function then returns while the sandbox is still being set up; a setup
/// failure comes from [`Step::wait`] as [`SandboxError::Setup`].
pub fn run_once(
    stage: StageSpec,
    spec: &SandboxSpec,
    stdio: StepStdio,
) -> Result<Step, SandboxError> {
    if !stage.run_dir.is_dir() {
        if let Err(source) = std::fs::create_dir_all(&stage.run_dir) {
            if !stage.run_dir.is_dir() {
                return Err(SandboxError::CreateStateDir {
                    path: stage.run_dir,
                    source,
                });
            }
        }
    }
    let req = StepRequest {
        spec: spec.clone(),
        holder_pid: 0,
        network: stage.network,
        ports: stage.ports.clone(),
        parent_pid: std::process::id() as i32,
        step_dir: stage.run_dir.clone(),
        mapping: idmap::choose(),
    };
    spawn_step(&stage.exe, &req, stdio, 0, LiveSteps::default())
}

fn spawn_step(
    exe: &Path,
    req: &StepRequest,
    stdio: StepStdio,
    id: u64,
    live: LiveSteps,
) -> Result<Step, SandboxError> {
    let spawn_err = |source| SandboxError::SpawnStep {
        exe: exe.to_path_buf(),
        source,
    };
    // A one-off sandbox of a single-threaded launcher (`corral exec`) is
    // forked rather than re-executed: one exec, dynamic link and runtime
    // start of our big binary fewer on every `corral exec`.
    let fork = req.holder_pid == 0 && stdio == StepStdio::Inherit && single_threaded();
    // A re-executed child dup2s its pipes onto 3 and 4; a forked one keeps
    // them where they are, off the stdio it hands on.
    let pipe = || if fork { pipe_from(3) } else { high_pipe() };
    let (spec_r, spec_w) = pipe()?;
    let (status_r, status_w) = pipe()?;
    // Init cloned straight into its namespaces: its user namespace exists
    // when clone returns, so we write the maps without a round trip.
    let cloned = fork && req.ports.is_empty();
    let mut early = None;
    let child = if fork {
        let (early_r, early_w) = pipe()?;
        let parent_ends = [
            spec_w.as_raw_fd(),
            status_r.as_raw_fd(),
            early_r.as_raw_fd(),
        ];
        let child = if cloned {
            clone_init(req, spec_r, status_w, early_w, parent_ends)
        } else {
            fork_step(req, spec_r, status_w, early_w, parent_ends)
        };
        let child = child.map_err(spawn_err)?;
        early = Some(File::from(early_r));
        child
    } else {
        // A stage's steps leave corral's process group: a terminal's ^C
        // reaches corral alone, which stops services in order (SIGTERM,
        // grace). A one-off sandbox with the caller's stdio stays in it:
        // its command is the terminal's foreground job (reads the tty, gets
        // ^C as `docker run` does).
        let own_group = req.holder_pid != 0 || stdio == StepStdio::Piped;
        reexec_step(exe, stdio, spec_r, status_w, own_group).map_err(spawn_err)?
    };
    let pidfd = match pidfd_open(child.id()) {
        Ok(fd) => fd,
        Err(err) => {
            let mut child = child;
            kill_and_reap(&mut child);
            return Err(spawn_err(err));
        }
    };
    let mut step = Step {
        id,
        child,
        pidfd,
        early,
        live,
        exit: None,
        egress: None,
        setup_status: None,
    };
    let mut spec_w = File::from(spec_w);
    if !fork {
        let mut json = serde_json::to_vec(req).map_err(|e| SandboxError::HolderProtocol {
            message: e.to_string(),
        })?;
        json.push(b'\n');
        let _ = spec_w.write_all(&json);
    }
    let mut status = BufReader::new(File::from(status_r));
    let mut message = String::new();
    if req.holder_pid == 0 {
        if !cloned {
            let _ = status.read_line(&mut message);
        }
        if cloned || message == "unshared\n" {
            message.clear();
            let mapped = idmap::write_maps(step.pid() as i32, req.mapping);
            if let Err(err) = mapped {
                drop(step);
                return Err(SandboxError::WriteIdMaps { source: err });
            }
            // Before `mapped`, so the command never runs without its route out.
            if req.network == NetworkMode::Private {
                match net::start_egress(step.pid() as i32) {
                    Ok(guard) => step.egress = Some(guard),
                    Err(msg) => tracing::warn!("{msg}"),
                }
            }
            let _ = spec_w.write_all(b"mapped\n");
        }
    }
    drop(spec_w);
    if step.early.is_some() && message.is_empty() && status.buffer().is_empty() {
        // Setup runs on while we return: waiting here for the command's
        // exec would cost a wake-up per sandbox. A setup failure is on this
        // pipe once init's exit report comes, and `Step::wait` returns it.
        step.setup_status = Some(status.into_inner());
        return Ok(step);
    }
    let _ = status.read_to_string(&mut message);
    if !message.is_empty() {
        let _ = step.wait();
        return Err(SandboxError::Setup { message });
    }
    Ok(step)
}

fn kill_and_reap(child: &mut StepProcess) {
    // SAFETY: signalling our own, not yet reaped child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
    let _ = child.wait();
}

/// `corral __sandbox step` with the spec and status pipes on fds 3 and 4,
/// in a process group of its own when `own_group`.
fn reexec_step(
    exe: &Path,
    stdio: StepStdio,
    spec_r: OwnedFd,
    status_w: OwnedFd,
    own_group: bool,
) -> std::io::Result<StepProcess> {
    let exe_owned = exe.to_path_buf();
    let (child_r, child_w) = (spec_r.as_raw_fd(), status_w.as_raw_fd());
    let spawned = on_spawner(move || {
        let mut cmd = Command::new(&exe_owned);
        cmd.args(["__sandbox", "step"]);
        if own_group {
            cmd.process_group(0);
        }
        match stdio {
            StepStdio::Inherit => cmd
                .stdin(Stdio::inherit())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit()),
            StepStdio::Piped => cmd
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        };
        // SAFETY: dup2 is async-signal-safe; the sources are high
        // close-on-exec fds distinct from 3 and 4.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(child_r, SPEC_FD) < 0 || libc::dup2(child_w, STATUS_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn();
        drop(spec_r);
        drop(status_w);
        child
    });
    Ok(StepProcess::Spawned(spawned??))
}

/// Forks the step process; the child runs [`init::run_step`] on `req` as it
/// is in memory. Only sound while this process has one thread (no lock can
/// be held by a thread that does not exist in the child).
fn fork_step(
    req: &StepRequest,
    spec_r: OwnedFd,
    status_w: OwnedFd,
    early_w: OwnedFd,
    parent_ends: [i32; 3],
) -> std::io::Result<StepProcess> {
    // SAFETY: single-threaded (checked by the caller); the child leaves
    // through _exit without running our destructors (`in_child`).
    let pid = unsafe { libc::fork() };
    in_child(pid.into(), parent_ends, || {
        init::run_step(
            req,
            BufReader::new(File::from(spec_r)),
            File::from(status_w),
            Some(File::from(early_w)),
        )
    })
}

/// Clones the sandbox's PID 1 straight into new user, network (unless the
/// host's), mount, pid, uts and ipc namespaces: one process fewer than a
/// step process that unshares and forks init. Same soundness condition as
/// [`fork_step`]; published ports need the step process (their listeners
/// and forwarder live outside the pid namespace).
fn clone_init(
    req: &StepRequest,
    spec_r: OwnedFd,
    status_w: OwnedFd,
    early_w: OwnedFd,
    parent_ends: [i32; 3],
) -> std::io::Result<StepProcess> {
    let mut flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC;
    // The egress helper we start for a private network attaches to the
    // child's network namespace, which must exist first; without one, init
    // makes it beside its rootfs setup (`netns`).
    if req.network == NetworkMode::Private {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: a fork-like clone (no CLONE_VM, no new stack) of a
    // single-threaded process; the child leaves through _exit.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    in_child(pid, parent_ends, || {
        init::direct_init(
            req,
            BufReader::new(File::from(spec_r)),
            File::from(status_w),
            File::from(early_w),
        )
    })
}

/// After a fork-like `pid` (fork or clone's return): the child closes the
/// launcher's ends of the pipes, runs `body` and leaves with its code; the
/// parent gets the step process.
fn in_child(
    pid: libc::c_long,
    parent_ends: [i32; 3],
    body: impl FnOnce() -> i32,
) -> std::io::Result<StepProcess> {
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        for fd in parent_ends {
            // SAFETY: the launcher's ends of the pipes, not ours to keep.
            unsafe { libc::close(fd) };
        }
        let code = body();
        // SAFETY: leaving the child without unwinding into the launcher.
        unsafe { libc::_exit(code) };
    }
    Ok(StepProcess::Forked(pid as u32))
}

/// Whether this process has a single thread: procfs counts a task dir's
/// links as 2 plus its threads (one statx, not an open and reads).
fn single_threaded() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/task").is_ok_and(|m| m.nlink() == 3)
}

/// A close-on-exec pipe whose fds are ≥ 10, so the child's dup2 onto 3 and 4
/// can never clobber one with the other.
fn high_pipe() -> Result<(OwnedFd, OwnedFd), SandboxError> {
    pipe_from(10)
}

/// A close-on-exec pipe whose fds are ≥ `lowest`: moved up only when the
/// kernel gave a lower one (a closed stdio slot, for a pipe meant to stay
/// off stdio).
fn pipe_from(lowest: i32) -> Result<(OwnedFd, OwnedFd), SandboxError> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| SandboxError::Pipe { source: e.into() })?;
    Ok((move_up(r, lowest)?, move_up(w, lowest)?))
}

fn move_up(fd: OwnedFd, lowest: i32) -> Result<OwnedFd, SandboxError> {
    if fd.as_raw_fd() >= lowest {
        return Ok(fd);
    }
    // rustix's raw fcntl: libc's may add an F_SETFD for old kernels.
    rustix::io::fcntl_dupfd_cloexec(&fd, lowest)
        .map_err(|e| SandboxError::Pipe { source: e.into() })
}

/// A throwaway holder (no network) that removes `dirs` from inside a user
/// namespace mapped like our stages, where their files can be deleted.
pub(crate) fn remove_as_namespace_root(exe: &Path, dirs: &[PathBuf]) -> Result<(), SandboxError> {
    let mut holder = Holder::start(exe, NetworkMode::Host, Vec::new(), idmap::choose())?;
    let mut result = Ok(());
    for dir in dirs {
        if let Err(err) = holder.remove(dir) {
            result = Err(err);
        }
    }
    holder.finish();
    result
}
