//! Owners and xattrs, always set through an fd.

use std::os::fd::BorrowedFd;

use rustix::fs::{self as rfs, XattrFlags};
use rustix::io::Errno;

use super::apply::{fail, Applier, OVERRIDE_STAT};
use super::entry::Meta;
use super::{Ownership, UnpackError};

impl Applier<'_> {
    /// `Keep`: chown to the header's owner (before any chmod: chown clears
    /// setuid). `SquashToCaller`: the caller stays owner and a non-root image
    /// owner is recorded as `uid:gid:0mode` in `user.containers.override_stat`
    /// (root needs no record: the caller is root inside the sandbox).
    pub(super) fn set_owner_fd(
        &mut self,
        fd: BorrowedFd,
        name: &[u8],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        match self.opts.ownership {
            Ownership::Keep => {
                if (meta.uid, meta.gid) == (self.euid, self.egid) {
                    return Ok(());
                }
                match rfs::fchown(
                    fd,
                    Some(rfs::Uid::from_raw(meta.uid)),
                    Some(rfs::Gid::from_raw(meta.gid)),
                ) {
                    Ok(()) => return Ok(()),
                    // EINVAL: the owner is outside our user namespace's map;
                    // record it like SquashToCaller does.
                    Err(Errno::INVAL) => self.unmapped_owner(name),
                    Err(e) => return Err(fail("set the owner of", name)(e)),
                }
            }
            Ownership::SquashToCaller => {}
        }
        if (meta.uid, meta.gid) == (0, 0) || self.warned.override_unsupported {
            return Ok(());
        }
        let value = format!("{}:{}:0{:o}", meta.uid, meta.gid, meta.mode);
        match rfs::fsetxattr(fd, OVERRIDE_STAT, value.as_bytes(), XattrFlags::empty()) {
            Ok(()) => {}
            Err(Errno::NOTSUP | Errno::PERM) => {
                self.warned.override_unsupported = true;
                tracing::warn!(
                    path = %String::from_utf8_lossy(name),
                    "the store's filesystem does not take user xattrs; original file \
                     owners are not recorded"
                );
            }
            Err(e) => return Err(fail("record the owner of", name)(e)),
        }
        Ok(())
    }

    /// The owner of a node that cannot be opened (symlink, device, FIFO),
    /// set by name without following it. Only `Keep` changes anything:
    /// user xattrs cannot be set on such nodes, so nothing is recorded.
    pub(super) fn set_owner_at(
        &mut self,
        parent: BorrowedFd,
        base: &[u8],
        name: &[u8],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        if self.opts.ownership != Ownership::Keep || (meta.uid, meta.gid) == (self.euid, self.egid)
        {
            return Ok(());
        }
        match rfs::chownat(
            parent,
            base,
            Some(rfs::Uid::from_raw(meta.uid)),
            Some(rfs::Gid::from_raw(meta.gid)),
            rfs::AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(()) => Ok(()),
            Err(Errno::INVAL) => {
                self.unmapped_owner(name);
                Ok(())
            }
            Err(e) => Err(fail("set the owner of", name)(e)),
        }
    }

    fn unmapped_owner(&mut self, name: &[u8]) {
        if !self.warned.unmapped_owner {
            self.warned.unmapped_owner = true;
            tracing::warn!(
                path = %String::from_utf8_lossy(name),
                "image owners outside the user namespace's ID map are recorded in \
                 user.containers.override_stat instead"
            );
        }
    }

    /// `user.*` xattrs are applied; `security.capability` only when
    /// privileged; `security.selinux`, `trusted.*` and the rest are skipped
    /// (they describe the build host, or would confuse overlayfs).
    pub(super) fn set_xattrs(
        &mut self,
        fd: BorrowedFd,
        name: &[u8],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        for (key, value) in &meta.xattrs {
            if key.starts_with(b"user.") {
                if key.as_slice() == OVERRIDE_STAT {
                    // Ours to write; an image must not forge it.
                    continue;
                }
                match rfs::fsetxattr(fd, key.as_slice(), value, XattrFlags::empty()) {
                    Ok(()) | Err(Errno::PERM) => {}
                    Err(Errno::NOTSUP) => {
                        if !self.warned.xattr_unsupported {
                            self.warned.xattr_unsupported = true;
                            tracing::warn!(
                                path = %String::from_utf8_lossy(name),
                                "the store's filesystem does not take user xattrs; skipping them"
                            );
                        }
                    }
                    Err(e) => return Err(fail("set an xattr of", name)(e)),
                }
            } else if key.as_slice() == b"security.capability" {
                let set = self.privileged
                    && rfs::fsetxattr(fd, key.as_slice(), value, XattrFlags::empty()).is_ok();
                if !set && !self.warned.capability {
                    self.warned.capability = true;
                    tracing::warn!(
                        path = %String::from_utf8_lossy(name),
                        "skipping file capabilities (security.capability needs CAP_SETFCAP); \
                         binaries relying on them may fail"
                    );
                }
            } else {
                tracing::debug!(
                    path = %String::from_utf8_lossy(name),
                    xattr = %String::from_utf8_lossy(key),
                    "skipping xattr"
                );
            }
        }
        Ok(())
    }
}
