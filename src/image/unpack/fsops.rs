//! Directory-fd primitives. Every call names at most one path component
//! relative to a directory fd, or resolves a multi-component path with
//! `openat2(RESOLVE_IN_ROOT)` so that `..` and absolute symlinks are clamped
//! to the rootfs, never the host.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Chroot-style resolution: absolute and `..` symlinks stay in the root,
/// `/proc` magic links and mount crossings are refused.
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// Flags for a directory handle that is only used as an `*at` anchor.
pub(super) const DIR_PATH: OFlags = OFlags::PATH.union(OFlags::DIRECTORY);
/// Flags for a directory we read or set metadata on.
pub(super) const DIR_READ: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW);

/// Opens `rel` (slash-separated, no leading slash; empty = the root itself)
/// with every component resolved inside `root`.
pub(super) fn open_in_root(root: BorrowedFd, rel: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    let path: &[u8] = if rel.is_empty() { b"." } else { rel };
    let mut tries = 0;
    loop {
        // EAGAIN means a concurrent rename raced the lookup; retry a little.
        match rfs::openat2(root, path, flags | OFlags::CLOEXEC, Mode::empty(), RESOLVE) {
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            other => return other,
        }
    }
}

/// Opens the directory `name` in `parent` for reading, without following a
/// symlink; a directory we may not read (rootless, mode 0111/000) gets u+rwx
/// first and `Some(old_mode)` is returned so the caller can restore it.
pub(super) fn open_child_dir(
    parent: BorrowedFd,
    name: &[u8],
) -> Result<(OwnedFd, Option<u32>), Errno> {
    let flags = DIR_READ | OFlags::CLOEXEC;
    match rfs::openat(parent, name, flags, Mode::empty()) {
        Err(Errno::ACCESS) => {
            let old = rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?.st_mode & 0o7777;
            chmod_nofollow(parent, name, old | 0o700)?;
            let fd = rfs::openat(parent, name, flags, Mode::empty())?;
            Ok((fd, Some(old)))
        }
        other => other.map(|fd| (fd, None)),
    }
}

/// `fchmodat2(dir, name, mode, AT_SYMLINK_NOFOLLOW)` (Linux 6.6): changes a
/// mode by name without ever following a symlink.
pub(super) fn chmod_nofollow(dir: BorrowedFd, name: &[u8], mode: u32) -> Result<(), Errno> {
    let name = CString::new(name).map_err(|_| Errno::INVAL)?;
    fchmodat2(dir, &name, mode, libc::AT_SYMLINK_NOFOLLOW)
}

/// Changes the mode of the inode behind any fd, `O_PATH` ones included.
pub(super) fn chmod_fd(fd: BorrowedFd, mode: u32) -> Result<(), Errno> {
    fchmodat2(fd, c"", mode, libc::AT_EMPTY_PATH)
}

fn fchmodat2(dir: BorrowedFd, name: &std::ffi::CStr, mode: u32, flags: i32) -> Result<(), Errno> {
    // SAFETY: plain syscall on a live fd and a NUL-terminated string; no
    // memory is retained by the kernel.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            dir.as_raw_fd(),
            name.as_ptr(),
            mode as libc::c_uint,
            flags,
        )
    };
    if ret == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ))
    }
}

/// The names in a directory (without `.` and `..`) and their d_type.
pub(super) fn list_dir(dir: BorrowedFd) -> Result<Vec<(Vec<u8>, FileType)>, Errno> {
    let mut out = Vec::new();
    let mut stream = Dir::read_from(dir)?;
    while let Some(entry) = stream.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push((name.to_vec(), entry.file_type()));
    }
    Ok(out)
}

/// Removes `name` from `parent`, recursively for a directory. Missing is
/// fine. Directories that block us (rootless) get u+rwx on the way down.
/// The caller needs write access to `parent` itself.
pub(super) fn remove_any(parent: BorrowedFd, name: &[u8]) -> Result<(), Errno> {
    match rfs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) => remove_dir_tree(parent, name),
        Err(e) => Err(e),
    }
}

fn remove_dir_tree(parent: BorrowedFd, name: &[u8]) -> Result<(), Errno> {
    let (dir, _) = match open_child_dir(parent, name) {
        Ok(opened) => opened,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut granted = false;
    for (child, kind) in list_dir(dir.as_fd())? {
        loop {
            let res = if kind == FileType::Directory {
                remove_dir_tree(dir.as_fd(), &child)
            } else {
                remove_any(dir.as_fd(), &child)
            };
            match res {
                Err(Errno::ACCESS | Errno::PERM) if !granted => {
                    rfs::fchmod(&dir, Mode::from_raw_mode(0o700))?;
                    granted = true;
                }
                other => break other?,
            }
        }
    }
    match rfs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// True when `name` in `dir` is a directory (not following symlinks).
pub(super) fn is_dir_at(dir: BorrowedFd, name: &[u8]) -> Result<Option<bool>, Errno> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(
            FileType::from_raw_mode(st.st_mode) == FileType::Directory,
        )),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Splits `a/b/c` into (`a/b`, `c`); a single component has an empty parent.
pub(super) fn split_last(rel: &[u8]) -> (&[u8], &[u8]) {
    match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => (&[], rel),
    }
}

pub(super) fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parent.len() + 1 + name.len());
    out.extend_from_slice(parent);
    if !parent.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}
