//! A running sandbox as its launcher sees it: the step process (whose exit
//! mirrors the command's), its pidfd, stdio pipes and exit status.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStderr, ChildStdout};
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

/// One sandbox running in a stage.
pub struct Step {
    pub(crate) id: u64,
    pub(crate) child: Child,
    pub(crate) pidfd: OwnedFd,
    pub(crate) live: LiveSteps,
    pub(crate) exit: Option<StepExit>,
    /// The egress helper of a one-off sandbox; stops after the step.
    pub(crate) egress: Option<super::net::EgressGuard>,
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
        self.child.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// A pidfd of the step process (readable once it ends), for poll loops.
    pub fn pidfd(&self) -> RawFd {
        self.pidfd.as_raw_fd()
    }

    pub fn wait(&mut self) -> Result<StepExit, SandboxError> {
        if let Some(exit) = self.exit {
            return Ok(exit);
        }
        let status = self
            .child
            .wait()
            .map_err(|source| SandboxError::WaitStep { source })?;
        Ok(self.record(status))
    }

    pub fn try_wait(&mut self) -> Result<Option<StepExit>, SandboxError> {
        if let Some(exit) = self.exit {
            return Ok(Some(exit));
        }
        let status = self
            .child
            .try_wait()
            .map_err(|source| SandboxError::WaitStep { source })?;
        Ok(status.map(|s| self.record(s)))
    }

    fn record(&mut self, status: std::process::ExitStatus) -> StepExit {
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
