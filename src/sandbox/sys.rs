//! The syscall seam of rootfs setup: a trait with the real Linux
//! implementation and a recording one for tests of the applier.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Mount flags we use, as the kernel's `MS_*` bits.
pub mod flags {
    pub const RDONLY: u64 = libc::MS_RDONLY;
    pub const NOSUID: u64 = libc::MS_NOSUID;
    pub const NODEV: u64 = libc::MS_NODEV;
    pub const NOEXEC: u64 = libc::MS_NOEXEC;
    pub const BIND: u64 = libc::MS_BIND;
    pub const REC: u64 = libc::MS_REC;
    pub const PRIVATE: u64 = libc::MS_PRIVATE;
}

/// The kernel calls rootfs setup needs. Paths are absolute host paths until
/// `pivot_root`.
pub trait Sys {
    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: u64,
        data: &str,
    ) -> io::Result<()>;
    /// Makes a mount (and with `recursive` its submounts) read-only without
    /// touching its other, possibly locked, flags (`mount_setattr(2)`).
    fn make_read_only(&mut self, target: &Path, recursive: bool) -> io::Result<()>;
    fn mkdir_all(&mut self, path: &Path, mode: u32) -> io::Result<()>;
    fn write_file(&mut self, path: &Path, contents: &str) -> io::Result<()>;
    /// Creates an empty file unless a file or directory exists at `path`;
    /// a symlink there is replaced when the filesystem allows.
    fn touch(&mut self, path: &Path) -> io::Result<()>;
    fn symlink(&mut self, target: &str, link: &Path) -> io::Result<()>;
    /// `stat` (or `lstat` unless `follow`), `None` when nothing is there.
    fn stat(&mut self, path: &Path, follow: bool) -> Option<Stat>;
    /// Sets the permission bits, and the owner when given.
    fn set_attrs(&mut self, path: &Path, mode: u32, owner: Option<(u32, u32)>) -> io::Result<()>;
    /// The entries of a directory (see [`read_entries`]).
    fn list_dir(&mut self, path: &Path) -> io::Result<Vec<DirEntry>>;
    /// Whether `path` lies on a tmpfs or ramfs (memory, never a disk).
    fn in_memory(&mut self, path: &Path) -> io::Result<bool>;
    /// `pivot_root(new_root, new_root)`, then detaches the old root.
    fn pivot_root(&mut self, new_root: &Path) -> io::Result<()>;
    fn set_hostname(&mut self, name: &str) -> io::Result<()>;
    /// Runs a host program to completion (fuse-overlayfs, cp) before pivot_root.
    fn run(&mut self, program: &str, args: &[String]) -> io::Result<()>;
    /// Runs a host program to completion, chrooted into `root`.
    fn run_in(&mut self, root: &Path, program: &str, args: &[String]) -> io::Result<()>;
}

/// What rootfs setup needs to know of an existing path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub is_dir: bool,
    /// Permission bits (with setuid, setgid and sticky).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One entry of a directory, for rebuilding it out of bind mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: std::ffi::OsString,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    /// Anything bind-mountable that is not a directory (files, sockets,
    /// devices, fifos).
    File,
    Symlink(PathBuf),
}

/// The entries of `path` in name order; one whose type cannot be read is
/// left out (it cannot be bound either).
pub fn read_entries(path: &Path) -> io::Result<Vec<DirEntry>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let kind = if kind.is_symlink() {
            match std::fs::read_link(entry.path()) {
                Ok(link) => EntryKind::Symlink(link),
                Err(_) => continue,
            }
        } else if kind.is_dir() {
            EntryKind::Dir
        } else {
            EntryKind::File
        };
        out.push(DirEntry {
            name: entry.file_name(),
            kind,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

pub(crate) fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// A stack for a child cloned with its own stack (`clone(2)`'s `stack`
/// argument): `size` bytes above one inaccessible guard page.
pub(crate) struct ChildStack {
    base: *mut libc::c_void,
    len: usize,
}

impl ChildStack {
    const GUARD: usize = 4096;

    pub(crate) fn map(size: usize) -> io::Result<Self> {
        let len = size + Self::GUARD;
        // SAFETY: an anonymous private mapping; its lowest page becomes the guard.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the lowest page of the mapping we just made.
        unsafe { libc::mprotect(base, Self::GUARD, libc::PROT_NONE) };
        Ok(ChildStack { base, len })
    }

    /// The initial stack pointer: the mapping's end (16-byte aligned).
    pub(crate) fn top(&self) -> *mut libc::c_void {
        // SAFETY: one past the end of the mapping.
        unsafe { self.base.cast::<u8>().add(self.len).cast() }
    }

    /// # Safety
    /// No child may still run on the stack.
    pub(crate) unsafe fn unmap(self) {
        // SAFETY: the caller's promise; the mapping is ours.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

pub(crate) fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// The real kernel.
pub struct LinuxSys;

impl Sys for LinuxSys {
    fn mount(
        &mut self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: u64,
        data: &str,
    ) -> io::Result<()> {
        let src = CString::new(source).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let fs = CString::new(fstype).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let dat = CString::new(data).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let tgt = cstr(target)?;
        // SAFETY: every pointer is a valid NUL-terminated string or null.
        let ret = unsafe {
            libc::mount(
                src.as_ptr(),
                tgt.as_ptr(),
                if fstype.is_empty() {
                    std::ptr::null()
                } else {
                    fs.as_ptr()
                },
                flags as libc::c_ulong,
                if data.is_empty() {
                    std::ptr::null()
                } else {
                    dat.as_ptr().cast()
                },
            )
        };
        check(ret)
    }

    fn make_read_only(&mut self, target: &Path, recursive: bool) -> io::Result<()> {
        let tgt = cstr(target)?;
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        let at_flags = if recursive { libc::AT_RECURSIVE } else { 0 };
        // SAFETY: valid path and a correctly sized mount_attr.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                tgt.as_ptr(),
                at_flags,
                &attr as *const MountAttr,
                std::mem::size_of::<MountAttr>(),
            )
        };
        check(ret as libc::c_int)
    }

    fn mkdir_all(&mut self, path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        // One mkdir in the common case (parent there, dir not yet).
        match std::fs::DirBuilder::new().mode(mode).create(path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(path),
            Err(err) => Err(err),
        }
    }

    fn write_file(&mut self, path: &Path, contents: &str) -> io::Result<()> {
        std::fs::write(path, contents)
    }

    fn touch(&mut self, path: &Path) -> io::Result<()> {
        // Fast path, one syscall: a new empty file where nothing exists yet
        // (mknod never follows a symlink and opens nothing).
        let name = cstr(path)?;
        // SAFETY: a valid NUL-terminated path.
        if unsafe { libc::mknod(name.as_ptr(), libc::S_IFREG | 0o666, 0) } == 0 {
            return Ok(());
        }
        match path.symlink_metadata() {
            // A symlink (Ubuntu's /etc/resolv.conf) would send the bind
            // mount elsewhere: replace it in the writable layer when we can.
            Ok(meta) if meta.file_type().is_symlink() => {
                if std::fs::remove_file(path).is_err() {
                    return Ok(());
                }
            }
            Ok(_) => return Ok(()),
            Err(_) => {}
        }
        if let Some(parent) = path.parent() {
            self.mkdir_all(parent, 0o755)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map(drop)
    }

    fn symlink(&mut self, target: &str, link: &Path) -> io::Result<()> {
        match std::os::unix::fs::symlink(target, link) {
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }

    fn stat(&mut self, path: &Path, follow: bool) -> Option<Stat> {
        use std::os::unix::fs::MetadataExt;
        let meta = if follow {
            path.metadata()
        } else {
            path.symlink_metadata()
        };
        meta.ok().map(|m| Stat {
            is_dir: m.is_dir(),
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
        })
    }

    fn set_attrs(&mut self, path: &Path, mode: u32, owner: Option<(u32, u32)>) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    fn list_dir(&mut self, path: &Path) -> io::Result<Vec<DirEntry>> {
        read_entries(path)
    }

    fn in_memory(&mut self, path: &Path) -> io::Result<bool> {
        // ramfs's magic number is not among libc's.
        const RAMFS_MAGIC: u64 = 0x8584_58f6;
        let st = rustix::fs::statfs(path)?;
        let memory = [libc::TMPFS_MAGIC as u64, RAMFS_MAGIC];
        Ok(memory.contains(&(st.f_type as u64)))
    }

    fn pivot_root(&mut self, new_root: &Path) -> io::Result<()> {
        let root = cstr(new_root)?;
        let dot = c".";
        // SAFETY: plain syscalls on valid strings; the old root is stacked
        // under the new one and detached, as in runc's pivot_root(".", ".").
        unsafe {
            check(libc::chdir(root.as_ptr()))?;
            check(libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) as libc::c_int)?;
            check(libc::umount2(dot.as_ptr(), libc::MNT_DETACH))?;
            check(libc::chdir(c"/".as_ptr()))
        }
    }

    fn set_hostname(&mut self, name: &str) -> io::Result<()> {
        // SAFETY: pointer and length describe `name`.
        check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
    }

    fn run(&mut self, program: &str, args: &[String]) -> io::Result<()> {
        run_to_end(program, std::process::Command::new(program).args(args))
    }

    fn run_in(&mut self, root: &Path, program: &str, args: &[String]) -> io::Result<()> {
        use std::os::unix::process::CommandExt;
        let root = cstr(root)?;
        let mut command = std::process::Command::new(program);
        command.args(args);
        // SAFETY: chroot and chdir are async-signal-safe; `root` outlives spawn.
        unsafe {
            command.pre_exec(move || {
                check(libc::chroot(root.as_ptr()))?;
                check(libc::chdir(c"/".as_ptr()))
            });
        }
        run_to_end(program, &mut command)
    }
}

/// Runs `command` (of `program`) and waits; a failed exit is an error.
fn run_to_end(program: &str, command: &mut std::process::Command) -> io::Result<()> {
    let status = command.status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("{program} failed with {status}")))
    }
}

mod recording;
pub use recording::{Call, RecordingSys};
