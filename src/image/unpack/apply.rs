//! The writer side: applies tar entries onto the rootfs through directory
//! fds. Non-directories are always unlinked and created anew, never opened
//! for writing, so inodes shared with the parent chain stay untouched.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{self as rfs, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use tar::EntryType;

use super::entry::{clean_entry_name, read_meta, Meta};
use super::fsops::{is_dir_at, open_child_dir, open_in_root, split_last, DIR_PATH, DIR_READ};
use super::sparse;
use super::sparse_write::{self, sparse_refused, Body};
use super::stream::{ChannelReader, CHUNK, HEADER_BUDGET};
use super::{Ownership, UnpackError, UnpackOptions};

/// The xattr that records the image's owner when files are squashed to the
/// caller (the containers-storage convention).
pub(super) const OVERRIDE_STAT: &[u8] = b"user.containers.override_stat";

/// Directory attributes set once the whole layer is written: the mtime
/// (children change it) and, rootless, a mode without u+rwx.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    pub mode: Option<u32>,
    pub mtime: Option<(i64, u32)>,
    /// Set (dev, ino) when recorded for a directory reached by resolving the
    /// path in-root (maybe through a symlink such as `lib64 -> usr/lib64`)
    /// rather than for the layer's own entry: it is reopened following
    /// links, in-root, and only touched if it is still that directory.
    pub inode: Option<(u64, u64)>,
}

#[derive(Debug, Default)]
pub(super) struct Warned {
    pub devices: bool,
    pub capability: bool,
    pub xattr_unsupported: bool,
    pub override_unsupported: bool,
    pub unknown_type: bool,
    pub unmapped_owner: bool,
}

pub(super) struct Applier<'a> {
    pub root: OwnedFd,
    pub opts: &'a UnpackOptions,
    pub privileged: bool,
    pub euid: u32,
    pub egid: u32,
    /// Paths written by this layer and all their ancestors: whiteouts spare
    /// them.
    pub touched: HashSet<Vec<u8>>,
    /// Directories this layer created, so they have no lower content to hide.
    pub fresh: HashSet<Vec<u8>>,
    pub opaque_done: HashSet<Vec<u8>>,
    pub deferred: HashMap<Vec<u8>, Deferred>,
    pub warned: Warned,
    /// The last parent directory resolved, by its in-root path: layers list
    /// a directory's files together, so most entries skip the `openat2`
    /// walk. Resolution of a path can only change when a name is removed,
    /// so every removal drops it ([`Self::forget_parent`]).
    pub parent_cache: Option<(Vec<u8>, Rc<OwnedFd>)>,
    /// The process umask, when /proc tells it (reading it with umask(2)
    /// would change it for every thread).
    umask: Option<u32>,
    /// What the layer's sparse files may still expand to, in bytes: all of
    /// them together stay within the layer's `max_bytes`.
    pub sparse_left: u64,
    buf: Vec<u8>,
}

/// The `Umask:` line of /proc/self/status (Linux 4.7+).
fn current_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let value = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(value.trim(), 8).ok()
}

/// Maps an errno from operation `op` on entry `path` to our error.
pub(super) fn fail<'p>(op: &'static str, path: &'p [u8]) -> impl FnOnce(Errno) -> UnpackError + 'p {
    move |errno| UnpackError::WriteEntry {
        op,
        path: String::from_utf8_lossy(path).into_owned(),
        source: errno.into(),
    }
}

fn invalid(path: &[u8], reason: &'static str) -> UnpackError {
    UnpackError::InvalidEntry {
        path: String::from_utf8_lossy(path).into_owned(),
        reason,
    }
}

pub(super) fn times(meta: &Meta) -> Timestamps {
    let ts = Timespec {
        tv_sec: meta.mtime,
        tv_nsec: meta.mtime_nsec.into(),
    };
    Timestamps {
        last_access: ts,
        last_modification: ts,
    }
}

/// Applies every entry of the tar stream, then the deferred directory
/// attributes, then checks that nothing but zeros follows the archive.
pub(super) fn write_layer(
    root: &Path,
    reader: ChannelReader,
    opts: &UnpackOptions,
) -> Result<u64, UnpackError> {
    let root_fd = rfs::open(root, DIR_PATH | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
        UnpackError::OpenRoot {
            root: root.to_path_buf(),
            source: e.into(),
        }
    })?;
    let mut applier = Applier::new(root_fd, opts);
    let meter = reader.meter();
    let mut archive = tar::Archive::new(reader);
    let mut count: u64 = 0;
    let mut entries = archive
        .entries()
        .map_err(|source| UnpackError::ParseEntry { index: 0, source })?;
    loop {
        // Only the headers count: the entry before was read to its end.
        meter.limit(HEADER_BUDGET);
        let next = entries.next();
        meter.lift();
        let Some(entry) = next else { break };
        let mut entry = entry.map_err(|source| UnpackError::ParseEntry {
            index: count,
            source,
        })?;
        count += 1;
        if count > opts.max_entries {
            return Err(UnpackError::TooManyEntries {
                limit: opts.max_entries,
            });
        }
        applier.apply(&mut entry, count - 1)?;
        // Data the applier skipped (whiteouts, sockets, ...), read here so
        // that the next header read is metered alone.
        io::copy(&mut entry, &mut io::sink()).map_err(|source| UnpackError::ReadEntryData {
            path: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
            source,
        })?;
    }
    applier.finish()?;
    let nonzero = archive
        .into_inner()
        .drain_count_nonzero()
        .map_err(|source| UnpackError::ReadLayer { source })?;
    if nonzero > 0 {
        return Err(UnpackError::TrailingData { nonzero });
    }
    Ok(count)
}

impl<'a> Applier<'a> {
    pub(super) fn new(root: OwnedFd, opts: &'a UnpackOptions) -> Self {
        let euid = rustix::process::geteuid();
        Applier {
            root,
            opts,
            privileged: euid.is_root(),
            euid: euid.as_raw(),
            egid: rustix::process::getegid().as_raw(),
            touched: HashSet::new(),
            fresh: HashSet::new(),
            opaque_done: HashSet::new(),
            deferred: HashMap::new(),
            warned: Warned::default(),
            parent_cache: None,
            umask: current_umask(),
            sparse_left: opts.max_bytes,
            buf: vec![0; CHUNK],
        }
    }

    fn apply<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        index: u64,
    ) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let meta = read_meta(entry).map_err(|source| UnpackError::ParseEntry { index, source })?;
        let pax_sparse = sparse::plan(&meta.sparse)
            .map_err(|reason| sparse_refused(meta.sparse.name().unwrap_or(&raw), reason))?;
        // Every check below applies to the real name, not GNUSparseFile.N/.
        let raw = match pax_sparse.as_ref().and_then(|s| s.name.clone()) {
            Some(real) => real,
            None => raw,
        };
        let real_size = match (&pax_sparse, kind.is_gnu_sparse()) {
            (Some(_), true) => {
                return Err(sparse_refused(
                    &raw,
                    "an old-GNU sparse entry with PAX sparse records".into(),
                ))
            }
            (Some(s), false) => Some(s.real_size),
            // The tar crate checked the map and made its end the size.
            (None, true) => Some(entry.size()),
            (None, false) => None,
        };
        if let Some(size) = real_size {
            self.charge_sparse(&raw, size)?;
        }
        let name = clean_entry_name(&raw).map_err(|reason| invalid(&raw, reason))?;
        let (parent, base) = split_last(&name);
        if base.starts_with(b".wh.") {
            return self.whiteout(parent, base);
        }
        // Old tars mark directories with a trailing slash only.
        let is_dir = kind.is_dir() || (kind == EntryType::Regular && raw.ends_with(b"/"));
        let is_file = matches!(
            kind,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse
        );
        if real_size.is_some() && (is_dir || !is_file) {
            return Err(sparse_refused(
                &raw,
                format!("a sparse map on a {kind:?} entry (only regular files are sparse)"),
            ));
        }
        if name.is_empty() {
            if !is_dir {
                // CVE-2021-29136: `.` as a symlink would redirect everything.
                return Err(invalid(&raw, "the rootfs itself can only be a directory"));
            }
            return self.directory(&name, &meta);
        }
        match kind {
            _ if is_dir => self.directory(&name, &meta)?,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let body = self.body(&name, kind, pax_sparse, entry)?;
                self.file(&name, &meta, entry, body)?
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| invalid(&raw, "the symlink has no target"))?
                    .into_owned();
                self.symlink(&name, &target, &meta)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| invalid(&raw, "the hard link has no target"))?
                    .into_owned();
                self.hardlink(&name, &target)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                if !self.special(&name, kind, &meta, entry.header())? {
                    return Ok(());
                }
            }
            other => {
                if !self.warned.unknown_type {
                    self.warned.unknown_type = true;
                    tracing::warn!(
                        path = %String::from_utf8_lossy(&raw),
                        kind = ?other,
                        "skipping tar entries of unsupported types (sockets, volume labels, ...)"
                    );
                }
                return Ok(());
            }
        }
        self.touch(&name);
        Ok(())
    }

    /// Records `name` and its ancestors as written by this layer.
    fn touch(&mut self, name: &[u8]) {
        let mut cur = name;
        while !cur.is_empty() && self.touched.insert(cur.to_vec()) {
            cur = split_last(cur).0;
        }
    }

    /// Runs `op` in the parent directory of `name` (created as needed).
    /// EEXIST: the existing entry is removed and `op` retried, unless
    /// `keep_dir` and it is a directory (then `None`). EACCES (rootless, a
    /// lower directory with mode 0555 or 000): the parent chain gets u+rwx,
    /// restored when the layer is done, and `op` is retried.
    pub(super) fn create<T>(
        &mut self,
        name: &[u8],
        what: &'static str,
        keep_dir: bool,
        mut op: impl FnMut(BorrowedFd, &[u8]) -> Result<T, Errno>,
    ) -> Result<(Rc<OwnedFd>, Option<T>), UnpackError> {
        let (parent_rel, base) = split_last(name);
        let mut parent = self
            .parent_dir(parent_rel)
            .map_err(fail("create the parent directory of", name))?;
        let (mut removed, mut granted) = (false, false);
        loop {
            let errno = match op(parent.as_fd(), base) {
                Ok(v) => return Ok((parent, Some(v))),
                Err(e) => e,
            };
            match errno {
                Errno::EXIST if !removed => {
                    let existing_dir = is_dir_at(parent.as_fd(), base).map_err(fail(what, name))?;
                    if keep_dir && existing_dir == Some(true) {
                        return Ok((parent, None));
                    }
                    self.remove_entry(parent.as_fd(), parent_rel, base)
                        .map_err(fail("replace", name))?;
                    removed = true;
                }
                Errno::ACCESS if !granted => {
                    parent = Rc::new(self.grant_chain(parent_rel).map_err(fail(what, name))?);
                    granted = true;
                }
                e => return Err(fail(what, name)(e)),
            }
        }
    }

    fn file<R: Read>(
        &mut self,
        name: &[u8],
        meta: &Meta,
        entry: &mut tar::Entry<'_, R>,
        body: Body,
    ) -> Result<(), UnpackError> {
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // Most files can be created with their final mode, saving an fchmod:
        // no setuid/setgid/sticky bit (chown would clear them), nothing the
        // umask masks, and no xattr to write (that needs u+w, rootless).
        let final_at_create = self.umask.is_some_and(|umask| meta.mode & umask == 0)
            && meta.mode & 0o7000 == 0
            && meta.xattrs.is_empty()
            && (self.opts.ownership == Ownership::Keep || (meta.uid, meta.gid) == (0, 0));
        let create_mode = if final_at_create { meta.mode } else { 0o600 };
        let (_, fd) = self.create(name, "create file", false, |dir, base| {
            rfs::openat(dir, base, flags, Mode::from_raw_mode(create_mode))
        })?;
        let Some(fd) = fd else {
            return Err(fail("create file", name)(Errno::EXIST));
        };
        let mut file = std::fs::File::from(fd);
        body.write(&mut file, entry, &mut self.buf)
            .map_err(sparse_write::fault(name))?;
        self.set_owner_fd(file.as_fd(), name, meta)?;
        // Before the mode: rootless, user xattrs need write access (0444 files).
        self.set_xattrs(file.as_fd(), name, meta)?;
        if !final_at_create {
            rfs::fchmod(&file, Mode::from_raw_mode(meta.mode))
                .map_err(fail("set the mode of", name))?;
        }
        rfs::futimens(&file, &times(meta)).map_err(fail("set the times of", name))
    }

    fn directory(&mut self, name: &[u8], meta: &Meta) -> Result<(), UnpackError> {
        let fd = if name.is_empty() {
            open_in_root(self.root.as_fd(), b"", DIR_READ).map_err(fail("open", b"."))?
        } else {
            let (parent, made) = self.create(name, "create directory", true, |dir, base| {
                rfs::mkdirat(dir, base, Mode::from_raw_mode(0o700))
            })?;
            if made.is_some() {
                self.fresh.insert(name.to_vec());
            }
            let (_, base) = split_last(name);
            open_child_dir(parent.as_fd(), base)
                .map_err(fail("open directory", name))?
                .0
        };
        self.set_owner_fd(fd.as_fd(), name, meta)?;
        self.set_xattrs(fd.as_fd(), name, meta)?;
        // Rootless, we need u+rwx to fill the directory; the real mode comes last.
        let now = if self.privileged {
            meta.mode
        } else {
            meta.mode | 0o700
        };
        rfs::fchmod(&fd, Mode::from_raw_mode(now)).map_err(fail("set the mode of", name))?;
        self.deferred.insert(
            name.to_vec(),
            Deferred {
                mode: (now != meta.mode).then_some(meta.mode),
                mtime: Some((meta.mtime, meta.mtime_nsec)),
                inode: None,
            },
        );
        Ok(())
    }
}
