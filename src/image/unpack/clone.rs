//! `clone_tree`: new directories, hard links for everything else; and
//! `remove_tree` for trees with 0555/000 directories.
//!
//! The clone is all metadata syscalls and sits between two layers on the
//! critical path of a pull, with nothing else to run beside it: the top two
//! directory levels are copied first, then their subtrees are shared out
//! among a few threads.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, XattrFlags};
use rustix::io::Errno;

use super::fsops::{chmod_nofollow, list_dir, open_child_dir, remove_any, DIR_READ};
use super::UnpackError;

struct Cloner {
    euid: u32,
    egid: u32,
    privileged: bool,
}

pub(super) fn clone_tree(parent: &Path, dest: &Path) -> Result<(), UnpackError> {
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |e: Errno| UnpackError::Clone {
            path,
            source: e.into(),
        }
    };
    let src = rfs::open(parent, DIR_READ | OFlags::CLOEXEC, Mode::empty()).map_err(err(parent))?;
    match rfs::mkdir(dest, Mode::from_raw_mode(0o700)) {
        Ok(()) => {}
        Err(Errno::EXIST) => {
            // A staging dir the caller made is fine if it is empty.
            let fd =
                rfs::open(dest, DIR_READ | OFlags::CLOEXEC, Mode::empty()).map_err(err(dest))?;
            if !list_dir(fd.as_fd()).map_err(err(dest))?.is_empty() {
                return Err(err(dest)(Errno::NOTEMPTY));
            }
        }
        Err(e) => return Err(err(dest)(e)),
    }
    let dst = rfs::open(dest, DIR_READ | OFlags::CLOEXEC, Mode::empty()).map_err(err(dest))?;
    let euid = rustix::process::geteuid();
    let cloner = Cloner {
        euid: euid.as_raw(),
        egid: rustix::process::getegid().as_raw(),
        privileged: euid.is_root(),
    };
    let fail = |(rel, e): (PathBuf, Errno)| UnpackError::Clone {
        path: parent.join(rel),
        source: e.into(),
    };
    // Breadth first for two levels (usr, usr/lib, ...), then in parallel.
    let mut level = vec![Subtree {
        src,
        dst,
        rel: PathBuf::new(),
        granted_from: None,
    }];
    for _ in 0..2 {
        let mut next = Vec::new();
        for dir in level {
            let mut rel = dir.rel.clone();
            cloner
                .copy_children(dir.src.as_fd(), dir.dst.as_fd(), &mut rel, Some(&mut next))
                .map_err(|e| fail((rel, e)))?;
            cloner.finish_dir(&dir).map_err(fail)?;
        }
        level = next;
    }
    cloner.copy_subtrees(level).map_err(fail)
}

/// A directory whose copy exists, still to be filled.
struct Subtree {
    src: OwnedFd,
    dst: OwnedFd,
    rel: PathBuf,
    /// The source's real mode when we had to grant ourselves u+rwx on it.
    granted_from: Option<u32>,
}

impl Drop for Subtree {
    /// Puts the source's mode back however the clone ended: a failed or
    /// abandoned subtree must not leave a store layer's directory u+rwx.
    fn drop(&mut self) {
        if let Some(old) = self.granted_from {
            if let Err(err) = rfs::fchmod(&self.src, Mode::from_raw_mode(old)) {
                tracing::warn!(
                    "could not restore the mode {old:o} of {}: {err}",
                    self.rel.display()
                );
            }
        }
    }
}

impl Cloner {
    /// The copy's attributes, through the fds: the parents may be 000
    /// again by now. (Dropping `dir` puts the source's own mode back.)
    fn finish_dir(&self, dir: &Subtree) -> Result<(), (PathBuf, Errno)> {
        self.copy_dir_attrs(dir.src.as_fd(), dir.dst.as_fd(), dir.granted_from)
            .map_err(|e| (dir.rel.clone(), e))
    }

    /// Copies whole subtrees on up to four threads; the first error wins.
    fn copy_subtrees(&self, subtrees: Vec<Subtree>) -> Result<(), (PathBuf, Errno)> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 4)
            .min(subtrees.len());
        let next = AtomicUsize::new(0);
        let failed: Mutex<Option<(PathBuf, Errno)>> = Mutex::new(None);
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(dir) = subtrees.get(i) else { return };
            let mut rel = dir.rel.clone();
            let done = self
                .copy_children(dir.src.as_fd(), dir.dst.as_fd(), &mut rel, None)
                .map_err(|e| (rel, e))
                .and_then(|()| self.finish_dir(dir));
            if let Err(e) = done {
                let mut slot = failed.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert(e);
                // Stop the others early too.
                next.store(subtrees.len(), Ordering::Relaxed);
                return;
            }
        };
        std::thread::scope(|scope| {
            for _ in 1..threads {
                scope.spawn(work);
            }
            work();
        });
        match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Links the files of `src` into `dst` and copies its subdirectories:
    /// whole, or with `subdirs` only made and returned there (open) to be
    /// filled later. `rel` tracks where we are, for the error message.
    fn copy_children(
        &self,
        src: BorrowedFd,
        dst: BorrowedFd,
        rel: &mut PathBuf,
        mut subdirs: Option<&mut Vec<Subtree>>,
    ) -> Result<(), Errno> {
        for (name, kind) in list_dir(src)? {
            rel.push(std::ffi::OsStr::from_bytes(&name));
            let kind = if kind == FileType::Unknown {
                FileType::from_raw_mode(
                    rfs::statat(src, name.as_slice(), AtFlags::SYMLINK_NOFOLLOW)?.st_mode,
                )
            } else {
                kind
            };
            if kind != FileType::Directory {
                // Symlinks too: linkat with flags 0 links the link itself.
                rfs::linkat(src, name.as_slice(), dst, name.as_slice(), AtFlags::empty())?;
            } else if let Some(subdirs) = subdirs.as_deref_mut() {
                let (sub_src, sub_dst, granted_from) = make_dir_copy(src, dst, &name)?;
                subdirs.push(Subtree {
                    src: sub_src,
                    dst: sub_dst,
                    rel: rel.clone(),
                    granted_from,
                });
            } else {
                self.copy_dir(src, dst, &name, rel)?;
            }
            rel.pop();
        }
        Ok(())
    }

    fn copy_dir(
        &self,
        src: BorrowedFd,
        dst: BorrowedFd,
        name: &[u8],
        rel: &mut PathBuf,
    ) -> Result<(), Errno> {
        let (sub_src, sub_dst, old) = make_dir_copy(src, dst, name)?;
        let result = self
            .copy_children(sub_src.as_fd(), sub_dst.as_fd(), rel, None)
            .and_then(|()| self.copy_dir_attrs(sub_src.as_fd(), sub_dst.as_fd(), old));
        if let Some(old) = old {
            chmod_nofollow(src, name, old)?;
        }
        result
    }

    /// Owner, xattrs, mode, then times (after the children were linked).
    /// `granted_from`: the source's real mode when we had to grant u+rwx.
    fn copy_dir_attrs(
        &self,
        src: BorrowedFd,
        dst: BorrowedFd,
        granted_from: Option<u32>,
    ) -> Result<(), Errno> {
        let st = rfs::fstat(src)?;
        if self.privileged || (st.st_uid, st.st_gid) != (self.euid, self.egid) {
            rfs::fchown(
                dst,
                Some(rfs::Uid::from_raw(st.st_uid)),
                Some(rfs::Gid::from_raw(st.st_gid)),
            )?;
        }
        copy_xattrs(src, dst)?;
        let mode = granted_from.unwrap_or(st.st_mode & 0o7777);
        rfs::fchmod(dst, Mode::from_raw_mode(mode))?;
        let times = rfs::Timestamps {
            last_access: rfs::Timespec {
                tv_sec: st.st_atime,
                tv_nsec: st.st_atime_nsec as _,
            },
            last_modification: rfs::Timespec {
                tv_sec: st.st_mtime,
                tv_nsec: st.st_mtime_nsec as _,
            },
        };
        rfs::futimens(dst, &times)
    }
}

/// Makes the copy of directory `name` (0700 until its attributes are
/// copied) and opens it, then the source. Rootless, a 0111/000 source must
/// be opened for reading: it gets u+rwx, and its real mode, returned, must
/// be put back by the caller (nothing here fails after the grant).
fn make_dir_copy(
    src: BorrowedFd,
    dst: BorrowedFd,
    name: &[u8],
) -> Result<(OwnedFd, OwnedFd, Option<u32>), Errno> {
    rfs::mkdirat(dst, name, Mode::from_raw_mode(0o700))?;
    let sub_dst = rfs::openat(dst, name, DIR_READ | OFlags::CLOEXEC, Mode::empty())?;
    let (sub_src, granted_from) = open_child_dir(src, name)?;
    Ok((sub_src, sub_dst, granted_from))
}

fn copy_xattrs(src: BorrowedFd, dst: BorrowedFd) -> Result<(), Errno> {
    let mut names = vec![0u8; 4096];
    let len = loop {
        match rfs::flistxattr(src, &mut names[..]) {
            Ok(n) => break n,
            Err(Errno::RANGE) => names.resize(names.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(()),
            Err(e) => return Err(e),
        }
    };
    let mut value = vec![0u8; 4096];
    for key in names[..len].split(|b| *b == 0).filter(|k| !k.is_empty()) {
        let n = loop {
            match rfs::fgetxattr(src, key, &mut value[..]) {
                Ok(n) => break Some(n),
                Err(Errno::RANGE) => value.resize(value.len() * 4, 0),
                Err(Errno::NODATA) => break None,
                Err(e) => return Err(e),
            }
        };
        if let Some(n) = n {
            // security.* may be refused when unprivileged; it was on the source.
            match rfs::fsetxattr(dst, key, &value[..n], XattrFlags::empty()) {
                Ok(()) | Err(Errno::PERM | Errno::NOTSUP | Errno::ACCESS) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Removes a tree that may hold directories we cannot write (0555/000
/// images, rootless). Missing is fine.
pub(super) fn remove_tree(path: &Path) -> Result<(), UnpackError> {
    let err = |e: Errno| UnpackError::RemoveTree {
        path: path.to_path_buf(),
        source: e.into(),
    };
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(name) = path.file_name() else {
        return Err(err(Errno::INVAL));
    };
    let dir = rfs::open(
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(err)?;
    remove_any(dir.as_fd(), name.as_bytes()).map_err(err)
}
