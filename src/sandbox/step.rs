//! A running sandbox as its launcher sees it: the step process (whose exit
//! mirrors the command's), its pidfd, stdio pipes and exit status.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStderr, ChildStdout, ExitStatus};
use std::time::{Duration, Instant};

use super::launch::LiveSteps;
use super::SandboxError;

/// Standard streams of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStdio {
    /// The caller's stdin, stdout and stderr.
    Inherit,
    /// stdin from /dev/null; stdout and stderr as pipes ([`Step::take_stdout`]).
    Piped,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepExit {
    Exited(i32),
    Signaled(i32),
}

impl StepExit {
    /// The shell convention: the code, or 128+N after signal N.
    pub fn code(&self) -> i32 {
        match self {
            StepExit::Exited(code) => *code,
            StepExit::Signaled(sig) => 128 + sig,
        }
    }
}

/// The step process: spawned by `std::process::Command` (a re-execution of
/// corral), or forked straight from a single-threaded launcher.
pub(crate) enum StepProcess {
    Spawned(Child),
    Forked(u32),
}

impl StepProcess {
    pub(crate) fn id(&self) -> u32 {
        match self {
            StepProcess::Spawned(child) => child.id(),
            StepProcess::Forked(pid) => *pid,
        }
    }

    pub(crate) fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match self {
            StepProcess::Spawned(child) => child.wait(),
            StepProcess::Forked(pid) => loop {
                match waitpid(*pid, 0)? {
                    Some(status) => return Ok(status),
                    None => continue,
                }
            },
        }
    }

    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        match self {
            StepProcess::Spawned(child) => child.try_wait(),
            StepProcess::Forked(pid) => waitpid(*pid, libc::WNOHANG),
        }
    }
}

/// `waitpid` of our own child; `None` when it is still running (WNOHANG).
/// A forked step is reaped at most once: `Step` remembers its exit.
fn waitpid(pid: u32, flags: i32) -> std::io::Result<Option<ExitStatus>> {
    loop {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        let ret = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, flags) };
        if ret > 0 {
            return Ok(Some(ExitStatus::from_raw(status)));
        }
        if ret == 0 {
            return Ok(None);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// One sandbox running in a stage.
pub struct Step {
    pub(crate) id: u64,
    pub(crate) child: StepProcess,
    pub(crate) pidfd: OwnedFd,
    /// A forked step's early exit report: init writes the command's wait
    /// status here before the sandbox's namespaces are torn down.
    pub(crate) early: Option<File>,
    pub(crate) live: LiveSteps,
    pub(crate) exit: Option<StepExit>,
    /// The egress helper of a one-off sandbox; stops after the step.
    pub(crate) egress: Option<super::net::EgressGuard>,
    /// The status pipe of a sandbox whose setup was not awaited at spawn:
    /// read once the step ended (all its writers are gone by then).
    pub(crate) setup_status: Option<File>,
}

pub(crate) fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub(crate) fn pidfd_signal(fd: RawFd, sig: i32) -> bool {
    // SAFETY: plain syscall on a pidfd.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd,
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        ) == 0
    }
}

/// Whether `fd` is readable (or at EOF) right now.
pub(crate) fn readable(fd: RawFd) -> bool {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut poll, 1, 0) > 0 }
}

/// Waits until every pidfd reports its process ended, or `timeout` passes.
pub(crate) fn wait_all(fds: &[OwnedFd], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut polls: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        polls.retain(|p| p.revents & libc::POLLIN == 0);
        if polls.is_empty() {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        // SAFETY: a valid pollfd array.
        unsafe {
            libc::poll(
                polls.as_mut_ptr(),
                polls.len() as libc::nfds_t,
                left.as_millis().max(1) as i32,
            )
        };
    }
}

impl Step {
    /// PID (in corral's namespace) of the step process, whose exit mirrors the command's.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        match &mut self.child {
            StepProcess::Spawned(child) => child.stdout.take(),
            StepProcess::Forked(_) => None,
        }
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        match &mut self.child {
            StepProcess::Spawned(child) => child.stderr.take(),
            StepProcess::Forked(_) => None,
        }
    }

    /// A pidfd of the step process (readable once it ends), for poll loops.
    pub fn pidfd(&self) -> RawFd {
        self.pidfd.as_raw_fd()
    }

    /// An fd that becomes readable once the command's exit is known (maybe
    /// before the step process has finished tearing down its namespaces);
    /// [`Step::wait`] then returns at once.
    pub fn exit_fd(&self) -> RawFd {
        self.early
            .as_ref()
            .map_or(self.pidfd.as_raw_fd(), |f| f.as_raw_fd())
    }

    /// The command's wait status from the early report, if init sent one.
    /// The step process then exits on its own (a zombie until we exit).
    /// The pipe stays open: init tears the sandbox down once it closes (at
    /// our drop), not while we are still busy with its report.
    fn early_exit(&mut self) -> Option<StepExit> {
        let early = self.early.as_mut()?;
        let mut raw = [0u8; 4];
        if early.read_exact(&mut raw).is_err() {
            self.early = None;
            return None;
        }
        Some(self.record(ExitStatus::from_raw(i32::from_ne_bytes(raw))))
    }

    /// How the command ended; [`SandboxError::Setup`] when the sandbox
    /// could not be set up and its command never ran.
    pub fn wait(&mut self) -> Result<StepExit, SandboxError> {
        if let Some(exit) = self.exit {
            return Ok(exit);
        }
        if let Some(exit) = self.early_exit() {
            return self.setup_checked(exit);
        }
        let status = self
            .child
            .wait()
            .map_err(|source| SandboxError::WaitStep { source })?;
        let exit = self.record(status);
        self.setup_checked(exit)
    }

    pub fn try_wait(&mut self) -> Result<Option<StepExit>, SandboxError> {
        if let Some(exit) = self.exit {
            return Ok(Some(exit));
        }
        if self.early.as_ref().is_some_and(|f| readable(f.as_raw_fd())) {
            if let Some(exit) = self.early_exit() {
                return self.setup_checked(exit).map(Some);
            }
        }
        let status = self
            .child
            .try_wait()
            .map_err(|source| SandboxError::WaitStep { source })?;
        match status {
            Some(status) => {
                let exit = self.record(status);
                self.setup_checked(exit).map(Some)
            }
            None => Ok(None),
        }
    }

    /// `exit`, unless the status pipe (when still unread) holds a setup failure.
    fn setup_checked(&mut self, exit: StepExit) -> Result<StepExit, SandboxError> {
        let Some(mut status) = self.setup_status.take() else {
            return Ok(exit);
        };
        let mut message = String::new();
        let _ = status.read_to_string(&mut message);
        if message.is_empty() {
            Ok(exit)
        } else {
            Err(SandboxError::Setup { message })
        }
    }

    fn record(&mut self, status: ExitStatus) -> StepExit {
        let exit = match (status.code(), status.signal()) {
            (Some(code), _) => StepExit::Exited(code),
            (None, Some(sig)) => StepExit::Signaled(sig),
            (None, None) => StepExit::Exited(125),
        };
        self.exit = Some(exit);
        self.egress = None;
        if let Ok(mut live) = self.live.lock() {
            live.remove(&self.id);
        }
        exit
    }

    /// Sends `sig` to the step; it reaches the command through init.
    pub fn signal(&self, sig: i32) -> Result<(), SandboxError> {
        if self.exit.is_some() || pidfd_signal(self.pidfd.as_raw_fd(), sig) {
            Ok(())
        } else {
            Err(SandboxError::Signal {
                sig,
                source: std::io::Error::last_os_error(),
            })
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if self.exit.is_none() {
            pidfd_signal(self.pidfd.as_raw_fd(), libc::SIGKILL);
            let _ = self.child.wait();
            if let Ok(mut live) = self.live.lock() {
                live.remove(&self.id);
            }
        }
    }
}
