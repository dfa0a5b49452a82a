//! Applies a setup plan through the [`Sys`] seam, with the fallbacks each op
//! allows (kept here so `plan.rs` stays pure and `init.rs` stays short).

use std::io;
use std::path::{Path, PathBuf};

use super::plan::SetupOp;
use super::rootfs;
use super::sys::flags::{BIND, NODEV, NOEXEC, NOSUID, PRIVATE, RDONLY, REC};
use super::sys::Sys;

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "failed to mount the rootfs over {lower} (overlay, fuse-overlayfs and copy all failed)"
    )]
    MountRootfs {
        lower: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to {op} {path}")]
    Op {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bind mount source {path} does not exist")]
    MissingBindSource { path: PathBuf },
    #[error("cannot mount at {target} in the sandbox: {why}")]
    MountPoint {
        target: String,
        why: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to mount {host} at {target} in the sandbox")]
    Volume {
        host: PathBuf,
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("refusing to write {path} in the sandbox: {dir} is not a tmpfs (a volume mounted there?), and its contents must not reach a disk")]
    InlineNotInMemory { path: String, dir: PathBuf },
    #[error("the image's /etc ({path}) is not a directory: corral writes hosts, hostname and resolv.conf there")]
    EtcNotADirectory { path: PathBuf },
}

pub(crate) fn at<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> ApplyError + 'a {
    move |source| ApplyError::Op {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn is_missing(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ENOENT)
}

/// Applies `ops` in order; stops at the first failure.
pub fn apply(sys: &mut dyn Sys, ops: &[SetupOp]) -> Result<(), ApplyError> {
    let mut masks = Masks::default();
    for op in ops {
        apply_one(sys, op, &mut masks)?;
    }
    Ok(())
}

fn apply_one(sys: &mut dyn Sys, op: &SetupOp, masks: &mut Masks) -> Result<(), ApplyError> {
    match op {
        SetupOp::MakeMountsPrivate => sys
            .mount("", Path::new("/"), "", REC | PRIVATE, "")
            .map_err(at("make mounts private at", Path::new("/"))),
        SetupOp::MountOverlay {
            lower,
            upper,
            work,
            target,
        } => {
            let first = rootfs::forced_method().unwrap_or(rootfs::RootfsMethod::Overlay);
            rootfs::mount_overlay(sys, lower, upper, work, target, first)
        }
        SetupOp::SeedUpper {
            lower,
            upper,
            dirs,
            etc,
        } => rootfs::seed_upper(sys, lower, upper, dirs, etc),
        SetupOp::Bind {
            source,
            target,
            recursive,
            read_only,
        } => bind(sys, source, target, *recursive, *read_only),
        SetupOp::BindUser {
            source,
            root,
            target,
            read_only,
        } => {
            if source.symlink_metadata().is_err() {
                return Err(ApplyError::MissingBindSource {
                    path: source.clone(),
                });
            }
            let inside = target;
            let target = &resolve_in_root(root, target, |p| std::fs::read_link(p).ok());
            let made = if source.is_dir() {
                sys.mkdir_all(target, 0o755)
            } else {
                sys.touch(target)
            };
            made.map_err(|err| ApplyError::MountPoint {
                target: inside.clone(),
                why: mount_point_hint(&err).to_string(),
                source: err,
            })?;
            bind(sys, source, target, true, *read_only).map_err(|err| ApplyError::Volume {
                host: source.clone(),
                target: inside.clone(),
                source: err.into_io(),
            })
        }
        SetupOp::Shadow {
            source,
            target,
            list,
            mount,
        } => shadow(sys, source, target, *list, mount, masks),
        SetupOp::WriteInline {
            root,
            path,
            contents,
            owner,
        } => write_inline(sys, root, path, contents, *owner),
        SetupOp::WriteFile { path, contents } => {
            sys.write_file(path, contents).map_err(at("write", path))
        }
        SetupOp::Mkdir { path, mode } => sys
            .mkdir_all(path, *mode)
            .map_err(at("create directory", path)),
        SetupOp::Touch { path } => sys.touch(path).map_err(at("create file", path)),
        SetupOp::Symlink { target, link } => sys
            .symlink(target, link)
            .map_err(at("create symlink", link)),
        SetupOp::MountProc { target } => {
            let fresh = sys.mount("proc", target, "proc", NOSUID | NODEV | NOEXEC, "");
            // Refused when /proc is partly masked (nested in a container).
            fresh
                .or_else(|_| {
                    bind(sys, Path::new("/proc"), target, true, false)
                        .map(drop)
                        .map_err(|e| e.into_io())
                })
                .map_err(at("mount proc at", target))
        }
        SetupOp::MountSys { target } => {
            let fresh = sys.mount(
                "sysfs",
                target,
                "sysfs",
                RDONLY | NOSUID | NODEV | NOEXEC,
                "",
            );
            fresh
                .or_else(|_| {
                    bind(sys, Path::new("/sys"), target, true, true).map_err(|e| e.into_io())
                })
                .map_err(at("mount sysfs at", target))
        }
        SetupOp::MountTmpfs {
            target,
            mode,
            flags,
        } => sys
            .mount("tmpfs", target, "tmpfs", *flags, &format!("mode={mode:o}"))
            .map_err(at("mount tmpfs at", target)),
        SetupOp::ScratchDir { dir, mode, target } => {
            sys.mkdir_all(dir, *mode)
                .map_err(at("create directory", dir))?;
            // The umask took its share of `mode` (a sticky 1777 /tmp).
            sys.set_attrs(dir, *mode, None)
                .map_err(at("set the mode of", dir))?;
            bind(sys, dir, target, false, false)
        }
        SetupOp::MountDevpts { target } => sys
            .mount(
                "devpts",
                target,
                "devpts",
                NOSUID | NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620",
            )
            .map_err(at("mount devpts at", target)),
        SetupOp::Mask { path, dir } => masks.mask(sys, path, *dir),
        SetupOp::ReadOnly { path } => match bind(sys, path, path, true, true) {
            Err(ApplyError::Op { source, .. }) if is_missing(&source) => Ok(()),
            other => other,
        },
        SetupOp::RootReadOnly { root } => sys
            .make_read_only(root, false)
            .map_err(at("make read-only", root)),
        SetupOp::PivotRoot { new_root } => sys
            .pivot_root(new_root)
            .map_err(at("pivot_root into", new_root)),
        SetupOp::SetHostname { name } => sys
            .set_hostname(name)
            .map_err(at("set hostname", Path::new(name))),
    }
}

impl ApplyError {
    fn into_io(self) -> io::Error {
        match self {
            ApplyError::Op { source, .. } | ApplyError::MountRootfs { source, .. } => source,
            ApplyError::MountPoint { source, .. } | ApplyError::Volume { source, .. } => source,
            ApplyError::MissingBindSource { .. }
            | ApplyError::EtcNotADirectory { .. }
            | ApplyError::InlineNotInMemory { .. } => io::Error::from_raw_os_error(libc::ENOENT),
        }
    }
}

fn bind(
    sys: &mut dyn Sys,
    source: &Path,
    target: &Path,
    recursive: bool,
    read_only: bool,
) -> Result<(), ApplyError> {
    let rec = if recursive { REC } else { 0 };
    sys.mount(&source.to_string_lossy(), target, "", BIND | rec, "")
        .map_err(at("bind mount onto", target))?;
    if read_only {
        sys.make_read_only(target, recursive)
            .map_err(at("make read-only", target))?;
    }
    Ok(())
}

/// Why a mount point could not be made, and what to do.
fn mount_point_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EROFS) => {
            "its directory is read-only here; use a path under /tmp, /run or /harness, or one that exists"
        }
        Some(libc::ENOTDIR) | Some(libc::EEXIST) => {
            "a part of the path is a file; use a path whose parents are directories"
        }
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "a directory on the way may not be written; use a path under /tmp, /run or /harness"
        }
        Some(libc::ENOENT) => {
            "its directory takes no new entries (as in /proc); use a path under /tmp, /run or /harness"
        }
        _ => "the mount point cannot be created",
    }
}

/// See [`SetupOp::Shadow`].
fn shadow(
    sys: &mut dyn Sys,
    source: &Path,
    target: &Path,
    list: bool,
    mount: &str,
    masks: &mut Masks,
) -> Result<(), ApplyError> {
    let entries = if list {
        sys.list_dir(source).map_err(|err| ApplyError::MountPoint {
            target: mount.to_string(),
            why: format!(
                "{} is read-only here and cannot be listed to rebuild it around the mount point; \
                     use a path under /tmp, /run or /harness, or one that exists",
                source.display()
            ),
            source: err,
        })?
    } else {
        Vec::new()
    };
    let stat = sys.stat(source, true);
    let mode = stat.map_or(0o755, |s| s.mode);
    sys.mount(
        "tmpfs",
        target,
        "tmpfs",
        NOSUID | NODEV,
        &format!("mode={mode:o}"),
    )
    .map_err(at("mount tmpfs at", target))?;
    if let Some(st) = stat {
        // Refused for an owner this user namespace does not map (the host's
        // root seen from a rootless sandbox): the tmpfs then stays ours.
        let _ = sys.set_attrs(target, mode, Some((st.uid, st.gid)));
    }
    for entry in &entries {
        for op in super::hostroot::entry_ops(source, target, entry) {
            apply_one(sys, &op, masks)?;
        }
    }
    Ok(())
}

/// See [`SetupOp::WriteInline`].
fn write_inline(
    sys: &mut dyn Sys,
    root: &Path,
    inside: &str,
    contents: &str,
    owner: Option<(u32, u32)>,
) -> Result<(), ApplyError> {
    let path = resolve_in_root(root, inside, |p| std::fs::read_link(p).ok());
    let dir = path.parent().unwrap_or(root);
    sys.mkdir_all(dir, 0o755)
        .map_err(at("create directory", dir))?;
    if !sys
        .in_memory(dir)
        .map_err(at("check the filesystem of", dir))?
    {
        return Err(ApplyError::InlineNotInMemory {
            path: inside.to_string(),
            dir: dir.to_path_buf(),
        });
    }
    sys.write_file(&path, contents)
        .map_err(at("write", &path))?;
    // An owner the user namespace lacks fails the command's user switch
    // anyway, with its own error; the file is then left root's.
    if sys.set_attrs(&path, 0o400, owner).is_err() {
        sys.set_attrs(&path, 0o400, None)
            .map_err(at("set the mode of", &path))?;
    }
    Ok(())
}

/// Masks paths, all directories with one empty read-only tmpfs: the first
/// gets it, the others a bind of it (read-only as its source), sparing a
/// superblock per directory.
#[derive(Default)]
struct Masks {
    empty_dir: Option<PathBuf>,
}

impl Masks {
    /// Mounts as if `path` were what `dir` says, without a stat (a path
    /// lookup in procfs or sysfs costs as much as the mount): a missing path
    /// fails with ENOENT, the other kind with ENOTDIR, which goes the slow
    /// way.
    fn mask(&mut self, sys: &mut dyn Sys, path: &Path, dir: bool) -> Result<(), ApplyError> {
        match self.mount_over(sys, path, dir) {
            Ok(()) => Ok(()),
            Err(err) if is_missing(&err) => Ok(()),
            Err(err) if err.raw_os_error() == Some(libc::ENOTDIR) => self.mask_found(sys, path),
            Err(err) => Err(at("mask", path)(err)),
        }
    }

    fn mount_over(&mut self, sys: &mut dyn Sys, path: &Path, dir: bool) -> io::Result<()> {
        let result = match (&self.empty_dir, dir) {
            (Some(empty), true) => sys.mount(&empty.to_string_lossy(), path, "", BIND, ""),
            (None, true) => sys.mount(
                "tmpfs",
                path,
                "tmpfs",
                RDONLY | NOSUID | NODEV | NOEXEC,
                "size=0",
            ),
            (_, false) => sys.mount("/dev/null", path, "", BIND, ""),
        };
        if result.is_ok() && dir && self.empty_dir.is_none() {
            self.empty_dir = Some(path.to_path_buf());
        }
        result
    }

    fn mask_found(&mut self, sys: &mut dyn Sys, path: &Path) -> Result<(), ApplyError> {
        let Some(found) = sys.stat(path, true) else {
            return Ok(());
        };
        match self.mount_over(sys, path, found.is_dir) {
            Err(err) if is_missing(&err) => Ok(()),
            other => other.map_err(at("mask", path)),
        }
    }
}

/// `inside` (a sandbox path) under `root`, following symlinks as if `root`
/// were `/`: `..` and absolute links never leave it (like securejoin).
pub fn resolve_in_root(
    root: &Path,
    inside: &str,
    mut read_link: impl FnMut(&Path) -> Option<PathBuf>,
) -> PathBuf {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    use std::path::Component;
    let mut pending: VecDeque<OsString> = Path::new(inside)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved
            .iter()
            .fold(root.to_path_buf(), |p, c| p.join(c))
            .join(&name);
        match read_link(&candidate) {
            Some(link) if links < 40 => {
                links += 1;
                if link.is_absolute() {
                    resolved.clear();
                }
                for comp in link.components().rev() {
                    match comp {
                        Component::Normal(n) => pending.push_front(n.to_os_string()),
                        Component::ParentDir => pending.push_front("..".into()),
                        _ => {}
                    }
                }
            }
            _ => resolved.push(name),
        }
    }
    resolved.iter().fold(root.to_path_buf(), |p, c| p.join(c))
}

#[cfg(test)]
mod tests;
