//! `clone_tree`: new directories, hard links for everything else; and
//! `remove_tree` for trees with 0555/000 directories.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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
    let mut rel = PathBuf::new();
    cloner
        .copy_children(src.as_fd(), dst.as_fd(), &mut rel)
        .and_then(|()| cloner.copy_dir_attrs(src.as_fd(), dst.as_fd(), None))
        .map_err(|e| UnpackError::Clone {
            path: parent.join(&rel),
            source: e.into(),
        })
}

impl Cloner {
    /// `rel` tracks where we are, for the error message.
    fn copy_children(
        &self,
        src: BorrowedFd,
        dst: BorrowedFd,
        rel: &mut PathBuf,
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
            if kind == FileType::Directory {
                self.copy_dir(src, dst, &name, rel)?;
            } else {
                // Symlinks too: linkat with flags 0 links the link itself.
                rfs::linkat(src, name.as_slice(), dst, name.as_slice(), AtFlags::empty())?;
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
        rfs::mkdirat(dst, name, Mode::from_raw_mode(0o700))?;
        // Rootless, a 0111/000 source directory must be opened for reading:
        // grant u+rwx for the walk and put the mode back right after.
        let (sub_src, old) = open_child_dir(src, name)?;
        let result = (|| {
            let sub_dst: OwnedFd =
                rfs::openat(dst, name, DIR_READ | OFlags::CLOEXEC, Mode::empty())?;
            self.copy_children(sub_src.as_fd(), sub_dst.as_fd(), rel)?;
            self.copy_dir_attrs(sub_src.as_fd(), sub_dst.as_fd(), old)
        })();
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
