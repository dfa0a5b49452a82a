//! Run-state directories: each stage's dir holds a `lock` file flock'ed by
//! the owning corral process; dirs whose lock is free belong to a corral that
//! died and are removed by the next one.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::SandboxError;

/// The run dir's mount point of one-off sandboxes (`corral exec`): only a
/// mount point, never stale.
pub const EXEC_MOUNT_POINT: &str = ".exec";

/// Creates `run_dir` (which must not exist) and locks it.
pub fn create_locked(run_dir: &Path) -> Result<File, SandboxError> {
    if let Some(parent) = run_dir.parent() {
        std::fs::create_dir_all(parent).map_err(|source| SandboxError::CreateStateDir {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::create_dir(run_dir).map_err(|source| SandboxError::CreateStateDir {
        path: run_dir.to_path_buf(),
        source,
    })?;
    let mnt = run_dir.join("mnt");
    std::fs::create_dir(&mnt).map_err(|source| SandboxError::CreateStateDir {
        path: mnt.clone(),
        source,
    })?;
    // Locked under another name first: a concurrent `stale_dirs` that found
    // `lock` unlocked for a moment would remove this dir as stale.
    let new_path = run_dir.join("lock.new");
    let lock_path = run_dir.join("lock");
    let file = File::create(&new_path).map_err(|source| SandboxError::CreateStateDir {
        path: new_path.clone(),
        source,
    })?;
    if !try_lock(&file) {
        return Err(SandboxError::CreateStateDir {
            path: new_path,
            source: std::io::Error::last_os_error(),
        });
    }
    std::fs::rename(&new_path, &lock_path).map_err(|source| SandboxError::CreateStateDir {
        path: lock_path.clone(),
        source,
    })?;
    Ok(file)
}

fn try_lock(file: &File) -> bool {
    // SAFETY: flock on an fd we own.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Dirs under `run_root` left by dead corral processes (dot-dirs are shared
/// mount points of one-off sandboxes and never stale).
pub fn stale_dirs(run_root: &Path) -> Vec<PathBuf> {
    if holds_no_stage_dirs(run_root) {
        return Vec::new();
    }
    unlocked_dirs(run_root)
        .map(|(free, _)| free)
        .unwrap_or_default()
}

/// The subdirectories of `root` (dot-dirs aside) whose `lock` nobody
/// holds, and how many are held. A dir without a lock counts as held for
/// its first minute: it may be being made.
pub fn unlocked_dirs(root: &Path) -> std::io::Result<(Vec<PathBuf>, usize)> {
    let mut free = Vec::new();
    let mut held = 0;
    let dirs = std::fs::read_dir(root)?
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|dir| dir.is_dir());
    for dir in dirs {
        let unlocked = match File::open(dir.join("lock")) {
            Ok(lock) => try_lock(&lock),
            Err(_) => older_than(&dir, Duration::from_secs(60)),
        };
        if unlocked {
            free.push(dir);
        } else {
            held += 1;
        }
    }
    Ok((free, held))
}

/// Locks `dir` (just made, and ours alone) as in use, until the file
/// returned is closed.
pub fn lock_dir(dir: &Path) -> std::io::Result<File> {
    let file = File::create(dir.join("lock"))?;
    if !try_lock(&file) {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Whether `run_root`'s link count shows no subdirectory but
/// [`EXEC_MOUNT_POINT`]: a stat or two on every `corral exec`
/// instead of reading the directory. Filesystems that do not count
/// subdirectories in it (btrfs says 1) go the long way.
fn holds_no_stage_dirs(run_root: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(run_root).map(|m| m.nlink()) {
        Err(_) | Ok(2) => true,
        Ok(3) => run_root.join(EXEC_MOUNT_POINT).is_dir(),
        Ok(_) => false,
    }
}

fn older_than(path: &Path, age: Duration) -> bool {
    path.metadata()
        .and_then(|m| m.modified())
        .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() > age)
        .unwrap_or(false)
}

/// Removes stale run dirs, from inside a user namespace when their files
/// belong to mapped IDs. Returns how many were removed.
pub fn remove_stale(run_root: &Path, exe: &Path) -> Result<usize, SandboxError> {
    let stale = stale_dirs(run_root);
    remove_dirs(&stale, exe)?;
    Ok(stale.len())
}

/// Removes `dirs` whole: directly where we may, else from inside a user
/// namespace mapped like our stages, where files of mapped IDs (written by
/// a sandbox running as another user) and directories without write
/// permission are ours to delete.
pub fn remove_dirs(dirs: &[PathBuf], exe: &Path) -> Result<(), SandboxError> {
    let stubborn: Vec<PathBuf> = dirs
        .iter()
        .filter(|dir| std::fs::remove_dir_all(dir).is_err())
        .cloned()
        .collect();
    if !stubborn.is_empty() {
        super::launch::remove_as_namespace_root(exe, &stubborn)?;
    }
    Ok(())
}

/// A fresh, unique stage dir name under `run_root`.
pub fn new_run_dir(run_root: &Path, prefix: &str) -> PathBuf {
    run_root.join(format!(
        "{prefix}-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_dirs_are_not_stale_and_released_ones_are() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("s1");
        let lock = create_locked(&dir).unwrap();
        // flock locks belong to the open file description: a second open
        // in this process conflicts like another process would.
        assert!(stale_dirs(tmp.path()).is_empty());
        drop(lock);
        assert_eq!(stale_dirs(tmp.path()), vec![dir]);
    }

    #[test]
    fn the_exec_mount_point_is_never_stale_and_hides_no_stale_dir() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join(EXEC_MOUNT_POINT)).unwrap();
        assert!(stale_dirs(tmp.path()).is_empty());
        let dir = tmp.path().join("s1");
        drop(create_locked(&dir).unwrap());
        assert_eq!(stale_dirs(tmp.path()), vec![dir]);
        assert!(stale_dirs(&tmp.path().join("missing")).is_empty());
    }
}
