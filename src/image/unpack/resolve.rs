//! Parent directories: resolved in-root, created on demand (a non-directory
//! in the way is replaced, umoci's mkdirAll), and made writable when a lower
//! layer left them 0555/000 and we are not root.

use std::cmp::Reverse;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::apply::{fail, Applier, Deferred};
use super::entry::clean_link_target;
use super::fsops::{chmod_fd, chmod_nofollow, join, open_in_root, remove_any, DIR_PATH, DIR_READ};
use super::UnpackError;

/// Symlinks followed while creating missing parents (as the kernel's 40).
const MAX_LINK_HOPS: u32 = 40;

impl Applier<'_> {
    /// An `O_PATH` handle on directory `rel`, creating what is missing, its
    /// mtime kept ([`Applier::keep_mtime`]): an entry is about to change it.
    /// A cache hit was kept when it was cached (a removal drops the cache).
    pub(super) fn parent_dir(&mut self, rel: &[u8]) -> Result<Rc<OwnedFd>, Errno> {
        if let Some((cached, fd)) = &self.parent_cache {
            if cached.as_slice() == rel {
                return Ok(fd.clone());
            }
        }
        let fd = Rc::new(match open_in_root(self.root.as_fd(), rel, DIR_PATH) {
            Err(Errno::NOENT | Errno::NOTDIR | Errno::ACCESS) => self.mkdir_all(rel, 0),
            other => other,
        }?);
        self.keep_mtime(fd.as_fd(), rel);
        self.parent_cache = Some((rel.to_vec(), fd.clone()));
        Ok(fd)
    }

    /// Drops the cached parent: called before anything is removed, since a
    /// removal can change what a path resolves to.
    pub(super) fn forget_parent(&mut self) {
        self.parent_cache = None;
    }

    fn mkdir_all(&mut self, rel: &[u8], hops: u32) -> Result<OwnedFd, Errno> {
        if hops > MAX_LINK_HOPS {
            return Err(Errno::LOOP);
        }
        let mut cur = open_in_root(self.root.as_fd(), b"", DIR_PATH)?;
        let mut prefix: Vec<u8> = Vec::with_capacity(rel.len());
        for comp in rel.split(|b| *b == b'/').filter(|c| !c.is_empty()) {
            let parent_len = prefix.len();
            if !prefix.is_empty() {
                prefix.push(b'/');
            }
            prefix.extend_from_slice(comp);
            let mut attempts = 0;
            cur = loop {
                attempts += 1;
                if attempts > 4 {
                    return Err(Errno::LOOP);
                }
                match open_in_root(self.root.as_fd(), &prefix, DIR_PATH) {
                    Ok(fd) => break fd,
                    Err(Errno::ACCESS) => {
                        // `cur` is not searchable (rootless, mode 000 or 0444).
                        let cur_rel = prefix[..parent_len].to_vec();
                        self.grant_fd(cur.as_fd(), &cur_rel)?;
                    }
                    Err(Errno::NOENT) => {
                        match rfs::statat(&cur, comp, AtFlags::SYMLINK_NOFOLLOW) {
                            Err(Errno::NOENT) => {
                                self.mkdir_in(cur.as_fd(), comp, &prefix, parent_len)?
                            }
                            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                                // A dangling symlink (e.g. var/run -> /run before
                                // /run exists): create its target, in-root.
                                let target = rfs::readlinkat(&cur, comp, Vec::new())?;
                                let target = target.to_bytes();
                                let dest = if target.starts_with(b"/") {
                                    clean_link_target(target)
                                } else {
                                    clean_link_target(&join(&prefix[..parent_len], target))
                                };
                                self.mkdir_all(&dest, hops + 1)?;
                            }
                            Ok(_) => {
                                self.remove_entry(cur.as_fd(), &prefix[..parent_len], comp)?;
                                self.mkdir_in(cur.as_fd(), comp, &prefix, parent_len)?;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    Err(Errno::NOTDIR) => {
                        // A file (or a link to one) where a directory must be.
                        self.remove_entry(cur.as_fd(), &prefix[..parent_len], comp)?;
                        self.mkdir_in(cur.as_fd(), comp, &prefix, parent_len)?;
                    }
                    Err(e) => return Err(e),
                }
            };
        }
        Ok(cur)
    }

    fn mkdir_in(
        &mut self,
        dir: BorrowedFd,
        comp: &[u8],
        prefix: &[u8],
        parent_len: usize,
    ) -> Result<(), Errno> {
        self.keep_mtime(dir, &prefix[..parent_len]);
        let mode = Mode::from_raw_mode(0o755);
        let res = match rfs::mkdirat(dir, comp, mode) {
            Err(Errno::ACCESS) => {
                self.grant_fd(dir, &prefix[..parent_len])?;
                rfs::mkdirat(dir, comp, mode)
            }
            other => other,
        };
        match res {
            Ok(()) => {
                // Not the umask's choice: implicit parents are always 0755.
                chmod_nofollow(dir, comp, 0o755)?;
                self.fresh.insert(prefix.to_vec());
                Ok(())
            }
            Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Removes `name` (a directory with all it holds) from directory `dir`,
    /// in-root path `rel`: its mtime is kept and the parent cache dropped
    /// first. Refused (rootless, a 0555 lower directory), `dir` gets u+rwx
    /// until the layer is done and the removal is tried once more.
    pub(super) fn remove_entry(
        &mut self,
        dir: BorrowedFd,
        rel: &[u8],
        name: &[u8],
    ) -> Result<(), Errno> {
        self.keep_mtime(dir, rel);
        self.forget_parent();
        match remove_any(dir, name) {
            Err(Errno::ACCESS | Errno::PERM) => {
                self.grant_fd(dir, rel)?;
                remove_any(dir, name)
            }
            other => other,
        }
    }

    /// Before this layer adds or removes an entry of directory `rel`: its
    /// current mtime is restored at the end unless the layer sets one, so a
    /// lower directory keeps the time its own header gave (as umoci does)
    /// instead of the time of the unpack.
    pub(super) fn keep_mtime(&mut self, fd: BorrowedFd, rel: &[u8]) {
        if self.deferred.get(rel).is_some_and(|d| d.mtime.is_some()) {
            return;
        }
        if let Ok(st) = rfs::fstat(fd) {
            let deferred = self
                .deferred
                .entry(rel.to_vec())
                .or_insert_with(|| Deferred {
                    inode: Some((st.st_dev, st.st_ino)),
                    ..Deferred::default()
                });
            deferred.mtime = Some((st.st_mtime, st.st_mtime_nsec as u32));
        }
    }

    /// Gives the caller u+rwx on every directory from the root down to `rel`
    /// and returns an `O_PATH` handle on `rel`.
    pub(super) fn grant_chain(&mut self, rel: &[u8]) -> Result<OwnedFd, Errno> {
        let mut fd = open_in_root(self.root.as_fd(), b"", DIR_PATH)?;
        self.grant_fd(fd.as_fd(), b"")?;
        let mut end = 0;
        while end < rel.len() {
            end = rel[end + 1..]
                .iter()
                .position(|b| *b == b'/')
                .map_or(rel.len(), |i| end + 1 + i);
            fd = open_in_root(self.root.as_fd(), &rel[..end], DIR_PATH)?;
            self.grant_fd(fd.as_fd(), &rel[..end])?;
        }
        Ok(fd)
    }

    /// u+rwx on one directory; its mode is restored when the layer is done.
    pub(super) fn grant_fd(&mut self, fd: BorrowedFd, rel: &[u8]) -> Result<(), Errno> {
        let st = rfs::fstat(fd)?;
        let mode = st.st_mode & 0o7777;
        if mode & 0o700 == 0o700 {
            return Ok(());
        }
        chmod_fd(fd, mode | 0o700)?;
        self.deferred
            .entry(rel.to_vec())
            .or_insert_with(|| Deferred {
                inode: Some((st.st_dev, st.st_ino)),
                ..Deferred::default()
            })
            .mode
            .get_or_insert(mode);
        Ok(())
    }

    /// Sets the deferred directory modes and mtimes, deepest first so that
    /// restoring a 000 parent never blocks a child.
    pub(super) fn finish(&mut self) -> Result<(), UnpackError> {
        let mut dirs: Vec<(Vec<u8>, Deferred)> = self.deferred.drain().collect();
        dirs.sort_by_key(|(rel, _)| {
            Reverse(rel.iter().filter(|b| **b == b'/').count() + usize::from(!rel.is_empty()))
        });
        for (rel, deferred) in dirs {
            let flags = if deferred.inode.is_some() {
                DIR_READ.difference(OFlags::NOFOLLOW)
            } else {
                DIR_READ
            };
            let fd = match open_in_root(self.root.as_fd(), &rel, flags) {
                Ok(fd) => fd,
                // Replaced or removed later in the layer.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                // Reached through a symlink into a directory whose mode was
                // restored first (the order is by path depth): leave it.
                Err(Errno::ACCESS) if deferred.inode.is_some() => continue,
                Err(e) => return Err(fail("open directory", &rel)(e)),
            };
            if let Some(inode) = deferred.inode {
                // The path now leads elsewhere (replaced by a symlink or a
                // new directory later in the layer): not ours to restore.
                match rfs::fstat(&fd) {
                    Ok(st) if (st.st_dev, st.st_ino) == inode => {}
                    _ => continue,
                }
            }
            if let Some(mode) = deferred.mode {
                rfs::fchmod(&fd, Mode::from_raw_mode(mode))
                    .map_err(fail("set the mode of", &rel))?;
            }
            if let Some((secs, nsecs)) = deferred.mtime {
                let ts = rfs::Timespec {
                    tv_sec: secs,
                    tv_nsec: nsecs.into(),
                };
                let times = rfs::Timestamps {
                    last_access: ts,
                    last_modification: ts,
                };
                rfs::futimens(&fd, &times).map_err(fail("set the times of", &rel))?;
            }
        }
        Ok(())
    }
}
