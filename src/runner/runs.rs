//! The store's run directories (`runs/<run-id>`: the logs, and the
//! workspaces unless `--workspace` was given), kept after their run for a
//! look afterwards. Each holds a `lock` flock'ed while its run goes on
//! (as the sandbox's stage dirs do); `corral prune --runs` removes the others.

use std::fs::File;
use std::path::{Path, PathBuf};

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
    sandbox::lock_dir(run_dir).map(|file| RunLock { _file: file })
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
    let (finished, running) = match sandbox::unlocked_dirs(&runs) {
        Ok(found) => found,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(PrunedRuns::default()),
        Err(source) => return Err(RunsError::List { path: runs, source }),
    };
    sandbox::remove_dirs(&finished, exe).map_err(|source| RunsError::Remove { source })?;
    Ok(PrunedRuns {
        removed: finished.len(),
        running,
    })
}
