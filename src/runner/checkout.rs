//! `cloneCodebase`: the local git checkout copied into a stage's workspace,
//! as Harness clones the repository into `/harness`.
//!
//! What a step sees is the working tree as it is (uncommitted edits
//! included, as act does), limited to tracked files, with a `.git` that
//! works: `git clone --no-checkout --no-hardlinks` of the checkout gives
//! the history, HEAD and branches without the user's `.git/config` (which
//! may hold credentials or hooks) and without sharing object files a step
//! could change; `read-tree HEAD` fills the index, then the tracked files
//! are copied from the working tree (symlinks as symlinks, modes kept), so
//! `git status` inside shows the same edits as outside.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("`git {args}` failed in {dir}: {message}")]
    Git {
        args: String,
        dir: PathBuf,
        message: String,
    },
    #[error("failed to run git")]
    RunGit(#[source] std::io::Error),
    #[error("failed to copy {path} into the workspace")]
    Copy {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs git in `dir`, never prompting and taking no optional locks (a
/// user's git may run in the same checkout); its stdout on success.
pub(super) fn git<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Result<Vec<u8>, CheckoutError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(Stdio::null())
        .output()
        .map_err(CheckoutError::RunGit)?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(CheckoutError::Git {
        args: args
            .iter()
            .map(|a| a.as_ref().to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        dir: dir.to_path_buf(),
        message: stderr.trim().lines().last().unwrap_or("").to_string(),
    })
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// Copies the checkout at `top` into the empty directory `dest`.
/// `origin` becomes the clone's `remote.origin.url` (the checkout's, with
/// credentials removed); without one the clone has no remote.
pub fn copy_checkout(top: &Path, dest: &Path, origin: Option<&str>) -> Result<(), CheckoutError> {
    git(
        top,
        &[
            os("clone"),
            os("--quiet"),
            os("--no-checkout"),
            os("--no-hardlinks"),
            os("--"),
            top.as_os_str(),
            dest.as_os_str(),
        ],
    )?;
    // The clone's origin is the host path, which means nothing inside.
    match origin {
        Some(url) => git(dest, &[os("remote"), os("set-url"), os("origin"), os(url)])?,
        None => git(dest, &[os("remote"), os("remove"), os("origin")])?,
    };
    git(dest, &[os("read-tree"), os("HEAD")])?;
    let listing = git(top, &[os("ls-files"), os("-z"), os("--stage")])?;
    let mut last: Option<&[u8]> = None;
    for entry in listing.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        // `MODE SHA STAGE\tPATH`; a conflicted path has several entries.
        let Some(tab) = entry.iter().position(|b| *b == b'\t') else {
            continue;
        };
        let (meta, path) = (&entry[..tab], &entry[tab + 1..]);
        if last == Some(path) {
            continue;
        }
        last = Some(path);
        let rel = Path::new(OsStr::from_bytes(path));
        copy_entry(top, dest, rel, meta.starts_with(b"160000"))?;
    }
    // Refreshes the index's stat data: `git status` in a step need not
    // hash every file. It exits 1 when files differ from HEAD; that is the
    // state being copied, not an error.
    let _ = git(
        dest,
        &[os("update-index"), os("-q"), os("--refresh"), os("--")],
    );
    // corral's own files in the workspace are not the project's.
    let exclude = dest.join(".git/info/exclude");
    if let Some(dir) = exclude.parent() {
        std::fs::create_dir_all(dir).map_err(|source| CheckoutError::Copy {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let mut text = std::fs::read_to_string(&exclude).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("/.corral/\n");
    std::fs::write(&exclude, text).map_err(|source| CheckoutError::Copy {
        path: exclude,
        source,
    })
}

/// One tracked path as it is in the working tree: a file with its mode, a
/// symlink as a symlink, a submodule as an empty directory (as a clone
/// without `--recurse-submodules` leaves it). A deleted file stays
/// deleted.
fn copy_entry(top: &Path, dest: &Path, rel: &Path, gitlink: bool) -> Result<(), CheckoutError> {
    let from = top.join(rel);
    let to = dest.join(rel);
    let err = |source| CheckoutError::Copy {
        path: from.clone(),
        source,
    };
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    if gitlink {
        return std::fs::create_dir_all(&to).map_err(err);
    }
    let meta = match std::fs::symlink_metadata(&from) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&from).map_err(err)?;
        std::os::unix::fs::symlink(target, &to).map_err(err)
    } else if meta.is_file() {
        // `fs::copy` keeps the permission bits.
        std::fs::copy(&from, &to).map(|_| ()).map_err(err)
    } else {
        // A tracked file replaced by a directory: not tracked content.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sh(dir: &Path, script: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn copies_the_working_tree_with_a_working_git() {
        if Command::new("git").arg("--version").output().is_err() {
            eprintln!("SKIP copies_the_working_tree_with_a_working_git: no git");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("repo");
        std::fs::create_dir(&repo).unwrap();
        sh(
            &repo,
            "git init -q -b main . && echo one > a.txt && mkdir d && echo '#!/bin/sh' > d/run.sh \
             && chmod 755 d/run.sh && ln -s d/run.sh link && echo gone > gone.txt \
             && git add -A && git commit -qm first && git remote add origin https://user:tok@example.com/o/r.git \
             && echo edited > a.txt && rm gone.txt && echo untracked > new.txt",
        );
        let dest = tmp.path().join("ws");
        std::fs::create_dir(&dest).unwrap();
        copy_checkout(&repo, &dest, Some("https://example.com/o/r.git")).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("a.txt")).unwrap(),
            "edited\n"
        );
        assert!(!dest.join("gone.txt").exists());
        assert!(!dest.join("new.txt").exists(), "untracked files stay out");
        let mode = std::fs::metadata(dest.join("d/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            std::fs::read_link(dest.join("link")).unwrap(),
            Path::new("d/run.sh")
        );
        std::fs::create_dir_all(dest.join(".corral/outputs")).unwrap();
        let status = sh(&dest, "git status --porcelain");
        assert_eq!(status, " M a.txt\n D gone.txt\n", "{status}");
        assert_eq!(sh(&dest, "git log -1 --format=%s"), "first\n");
        assert_eq!(sh(&dest, "git branch --show-current"), "main\n");
        assert_eq!(
            sh(&dest, "git remote get-url origin"),
            "https://example.com/o/r.git\n"
        );
    }
}
