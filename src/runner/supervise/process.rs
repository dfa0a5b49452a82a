//! Waiting for step processes and stopping them: at a step's timeout, and
//! for services at teardown (SIGTERM, a grace period, then SIGKILL).

use std::io;
use std::time::{Duration, Instant};

use super::StepOutcome;
use crate::runner::events::TeardownSignal;

/// Grace between SIGTERM and SIGKILL when stopping a service at teardown.
pub const TEARDOWN_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    #[error("failed to wait for process {pid}")]
    Wait {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("failed to signal process {pid}")]
    Signal {
        pid: u32,
        #[source]
        source: io::Error,
    },
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// A running process corral can wait for and stop. For a sandbox, stopping
/// its init stops everything in its pid namespace.
pub trait Supervised {
    fn pid(&self) -> u32;
    fn try_wait(&mut self) -> io::Result<Option<Exit>>;
    /// Asks the process to stop (SIGTERM).
    fn terminate(&mut self) -> io::Result<()>;
    /// Stops it for good (SIGKILL).
    fn kill(&mut self) -> io::Result<()>;
}

impl Supervised for std::process::Child {
    fn pid(&self) -> u32 {
        self.id()
    }

    fn try_wait(&mut self) -> io::Result<Option<Exit>> {
        use std::os::unix::process::ExitStatusExt;
        Ok(
            std::process::Child::try_wait(self)?.map(|status| match status.code() {
                Some(code) => Exit::Code(code),
                None => Exit::Signal(status.signal().unwrap_or(0)),
            }),
        )
    }

    fn terminate(&mut self) -> io::Result<()> {
        send(self.id(), rustix::process::Signal::TERM, false)
    }

    fn kill(&mut self) -> io::Result<()> {
        std::process::Child::kill(self)
    }
}

/// A child spawned as the leader of its own process group
/// (`CommandExt::process_group(0)`). Signals go to the whole group, so the
/// grandchildren that hold the step's pipes open stop with it. (A sandbox
/// gets the same from its pid namespace.)
pub struct GroupChild(pub std::process::Child);

impl Supervised for GroupChild {
    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn try_wait(&mut self) -> io::Result<Option<Exit>> {
        Supervised::try_wait(&mut self.0)
    }

    fn terminate(&mut self) -> io::Result<()> {
        send(self.0.id(), rustix::process::Signal::TERM, true)
    }

    fn kill(&mut self) -> io::Result<()> {
        send(self.0.id(), rustix::process::Signal::KILL, true)
    }
}

fn send(pid: u32, signal: rustix::process::Signal, group: bool) -> io::Result<()> {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let sent = if group {
        rustix::process::kill_process_group(pid, signal)
    } else {
        rustix::process::kill_process(pid, signal)
    };
    match sent {
        // Already gone: nothing left to stop.
        Err(rustix::io::Errno::SRCH) => Ok(()),
        other => other.map_err(io::Error::from),
    }
}

/// Waits up to `limit` for `child` to exit; `None` when it is still running.
fn wait_until(
    child: &mut impl Supervised,
    limit: Option<Instant>,
) -> Result<Option<Exit>, SuperviseError> {
    let pid = child.pid();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(exit) = child
            .try_wait()
            .map_err(|source| SuperviseError::Wait { pid, source })?
        {
            return Ok(Some(exit));
        }
        let now = Instant::now();
        if limit.is_some_and(|l| now >= l) {
            return Ok(None);
        }
        let sleep = limit.map_or(pause, |l| pause.min(l - now));
        std::thread::sleep(sleep);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Runs a step to its end: waits for it, and at `timeout` stops it (SIGTERM,
/// then SIGKILL after `grace`) and reports `TimedOut`. `on_signal` hears of
/// each signal sent, for events.
pub fn wait_with_timeout(
    child: &mut impl Supervised,
    timeout: Option<Duration>,
    grace: Duration,
    on_signal: &mut dyn FnMut(TeardownSignal),
) -> Result<StepOutcome, SuperviseError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    match wait_until(child, deadline)? {
        Some(Exit::Code(code)) => Ok(StepOutcome::Exited(code)),
        Some(Exit::Signal(sig)) => Ok(StepOutcome::Signaled(sig)),
        None => {
            stop(child, grace, on_signal)?;
            Ok(StepOutcome::TimedOut)
        }
    }
}

/// Stops a process: SIGTERM, up to `grace` to exit, then SIGKILL. Calls
/// `on_signal` before sending each signal; returns how the process ended.
pub fn stop(
    child: &mut impl Supervised,
    grace: Duration,
    on_signal: &mut dyn FnMut(TeardownSignal),
) -> Result<Exit, SuperviseError> {
    let pid = child.pid();
    // It may have ended on its own already: then there is nothing to signal.
    if let Some(exit) = wait_until(child, Some(Instant::now()))? {
        return Ok(exit);
    }
    on_signal(TeardownSignal::Sigterm);
    child
        .terminate()
        .map_err(|source| SuperviseError::Signal { pid, source })?;
    if let Some(exit) = wait_until(child, Some(Instant::now() + grace))? {
        return Ok(exit);
    }
    on_signal(TeardownSignal::Sigkill);
    child
        .kill()
        .map_err(|source| SuperviseError::Signal { pid, source })?;
    Ok(wait_until(child, None)?.unwrap_or(Exit::Signal(9)))
}
