//! Interrupting a run: SIGINT/SIGTERM to corral set a flag every wait loop
//! checks; running steps are then stopped and the stage torn down.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

/// Set once, by the first interrupting signal (or by an embedding program).
#[derive(Debug, Default)]
pub struct Cancel {
    signal: AtomicI32,
}

impl Cancel {
    pub fn new() -> Arc<Cancel> {
        Arc::new(Cancel::default())
    }

    /// Interrupts the run as signal `sig` would (the exit code is 128+sig).
    pub fn cancel(&self, sig: i32) {
        let _ = self
            .signal
            .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The signal that interrupted the run, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            sig => Some(sig),
        }
    }

    /// Sleeps up to `duration`, returning early when interrupted.
    pub fn sleep(&self, duration: std::time::Duration) {
        let end = std::time::Instant::now() + duration;
        while self.signal().is_none() {
            let now = std::time::Instant::now();
            if now >= end {
                return;
            }
            std::thread::sleep((end - now).min(std::time::Duration::from_millis(50)));
        }
    }
}

/// Routes SIGINT and SIGTERM to `cancel`. Call it on the main thread before
/// any other thread exists: the signals are blocked here (and so in every
/// thread started later) and taken by one thread with `sigwait`. Sandboxes
/// start with a clean mask (`std::process::Command` resets it).
pub fn install_signal_handlers(cancel: Arc<Cancel>) -> std::io::Result<()> {
    // SAFETY: sigset manipulation on a local set; pthread_sigmask on it.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        set
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let mut sig: libc::c_int = 0;
            // SAFETY: waits on the set blocked above.
            let rc = unsafe { libc::sigwait(&set, &mut sig) };
            if rc == 0 {
                if cancel.signal().is_some() {
                    // A second Ctrl-C: the user insists.
                    eprintln!("corral: interrupted again, stopping now");
                    std::process::exit(128 + sig);
                }
                eprintln!("corral: interrupted, stopping the stage (Ctrl-C again to quit at once)");
                cancel.cancel(sig);
            }
        })?;
    Ok(())
}

/// A point after which nothing of a stage may run (the pipeline's or the
/// stage's `timeout`), and how to name it in messages.
#[derive(Debug, Clone)]
pub struct Deadline {
    pub at: std::time::Instant,
    /// "the pipeline's timeout of 10s".
    pub what: String,
}

impl Deadline {
    pub fn after(start: std::time::Instant, timeout: std::time::Duration, whose: &str) -> Self {
        Deadline {
            at: start + timeout,
            what: format!(
                "the {whose}'s timeout of {}",
                humantime::format_duration(timeout)
            ),
        }
    }

    pub fn passed(&self) -> bool {
        std::time::Instant::now() >= self.at
    }

    pub fn remaining(&self) -> std::time::Duration {
        self.at.saturating_duration_since(std::time::Instant::now())
    }

    /// The earlier of two optional deadlines.
    pub fn earliest(a: Option<Deadline>, b: Option<Deadline>) -> Option<Deadline> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.at < a.at { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}
