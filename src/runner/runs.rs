//! The store's run directories (`runs/<run-id>`: the logs, and the
//! workspaces unless `--workspace` was given), kept after their run for a
//! look afterwards. Each holds a `lock` flock'ed while its run goes on;
//! `corral prune --runs` removes the others.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::sandbox::{self, SandboxError};

#[derive(Debug, thiserror::Error)]
pub enum RunsError {
    #[error("failed to list the run directories in {path}")]
    List {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to remove finished runs")]
    Remove {
        #[source]
        source: SandboxError,
    },
}

/// Held while a run goes on.
pub struct RunLock {
    _file: File,
}

/// Marks `run_dir` (just made) as in use until the lock is dropped.
pub fn lock(run_dir: &Path) -> std::io::Result<RunLock> {
    let file = File::create(run_dir.join("lock"))?;
    // SAFETY: flock on an fd we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(RunLock { _file: file })
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PrunedRuns {
    pub removed: usize,
    /// Runs still going on (or just starting), left alone.
    pub running: usize,
}

/// Removes the directories of finished runs under `store_dir/runs`,
/// through `exe`'s user namespace where their files belong to IDs the
/// steps ran as.
pub fn prune(store_dir: &Path, exe: &Path) -> Result<PrunedRuns, RunsError> {
    let runs = store_dir.join("runs");
    let entries = match std::fs::read_dir(&runs) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(PrunedRuns::default()),
        Err(source) => return Err(RunsError::List { path: runs, source }),
    };
    let mut report = PrunedRuns::default();
    let mut finished = Vec::new();
    // Their locks stay held until they are gone.
    let mut held = Vec::new();
    for dir in entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()) {
        match File::open(dir.join("lock")) {
            // SAFETY: flock on an fd we own.
            Ok(lock)
                if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 =>
            {
                held.push(lock);
                finished.push(dir);
            }
            Ok(_) => report.running += 1,
            // No lock: a run of a corral before locks, or one just made.
            Err(_) if made_within(&dir, Duration::from_secs(60)) => report.running += 1,
            Err(_) => finished.push(dir),
        }
    }
    sandbox::remove_dirs(&finished, exe).map_err(|source| RunsError::Remove { source })?;
    report.removed = finished.len();
    Ok(report)
}

fn made_within(dir: &Path, age: Duration) -> bool {
    dir.metadata()
        .and_then(|m| m.modified())
        .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() < age)
        .unwrap_or(true)
}
