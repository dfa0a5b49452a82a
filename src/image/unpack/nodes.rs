//! Symlinks, hard links, device nodes and FIFOs: created by name in their
//! parent directory; metadata set with `AT_SYMLINK_NOFOLLOW` calls.

use std::os::fd::AsFd;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode};
use rustix::io::Errno;
use tar::EntryType;

use super::apply::{fail, times, Applier};
use super::entry::{clean_link_target, Meta};
use super::fsops::{chmod_nofollow, open_in_root, split_last, DIR_PATH};
use super::UnpackError;

impl Applier<'_> {
    pub(super) fn symlink(
        &mut self,
        name: &[u8],
        target: &[u8],
        meta: &Meta,
    ) -> Result<(), UnpackError> {
        // Stored verbatim, absolute targets included; we only ever interpret
        // them in-root (as parents of later entries).
        let (parent, _) = self.create(name, "create symlink", false, |dir, base| {
            rfs::symlinkat(target, dir, base)
        })?;
        let (_, base) = split_last(name);
        self.set_owner_at(parent.as_fd(), base, name, meta)?;
        rfs::utimensat(&parent, base, &times(meta), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(fail("set the times of", name))
    }

    pub(super) fn hardlink(&mut self, name: &[u8], raw_target: &[u8]) -> Result<(), UnpackError> {
        let target = clean_link_target(raw_target);
        let link_err = |source: Errno| UnpackError::LinkTarget {
            path: String::from_utf8_lossy(name).into_owned(),
            target: String::from_utf8_lossy(raw_target).into_owned(),
            source: source.into(),
        };
        if target.is_empty() {
            return Err(link_err(Errno::ISDIR));
        }
        if target == name {
            // A self-link is legal and changes nothing.
            return Ok(());
        }
        let (tparent_rel, tbase) = split_last(&target);
        let mut tparent = open_in_root(self.root.as_fd(), tparent_rel, DIR_PATH);
        let mut tstat = tparent
            .as_ref()
            .map_err(|e| *e)
            .and_then(|dir| rfs::statat(dir, tbase, AtFlags::SYMLINK_NOFOLLOW));
        if matches!(tstat, Err(Errno::ACCESS)) {
            // Rootless, behind a 000 directory of a lower layer.
            tparent = self.grant_chain(tparent_rel);
            tstat = tparent
                .as_ref()
                .map_err(|e| *e)
                .and_then(|dir| rfs::statat(dir, tbase, AtFlags::SYMLINK_NOFOLLOW));
        }
        let tparent = tparent.map_err(link_err)?;
        let tstat = tstat.map_err(link_err)?;
        if FileType::from_raw_mode(tstat.st_mode) == FileType::Directory {
            return Err(link_err(Errno::ISDIR));
        }
        // Already the same inode under another spelling (e.g. through an
        // in-root symlink): unlinking it first would lose the target.
        let (parent_rel, base) = split_last(name);
        if let Ok(parent) = open_in_root(self.root.as_fd(), parent_rel, DIR_PATH) {
            if let Ok(st) = rfs::statat(&parent, base, AtFlags::SYMLINK_NOFOLLOW) {
                if (st.st_dev, st.st_ino) == (tstat.st_dev, tstat.st_ino) {
                    return Ok(());
                }
            }
        }
        // Flags 0: a link to a symlink links the symlink itself.
        self.create(name, "create hard link", false, |dir, base| {
            rfs::linkat(&tparent, tbase, dir, base, AtFlags::empty())
        })?;
        Ok(())
    }

    /// Device nodes and FIFOs. Returns false when the entry was skipped.
    pub(super) fn special(
        &mut self,
        name: &[u8],
        kind: EntryType,
        meta: &Meta,
        header: &tar::Header,
    ) -> Result<bool, UnpackError> {
        let file_type = match kind {
            EntryType::Char => FileType::CharacterDevice,
            EntryType::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        let mut dev = 0;
        if file_type != FileType::Fifo {
            if !self.opts.allow_devices {
                self.skip_device(name);
                return Ok(false);
            }
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            dev = rfs::makedev(major, minor);
        }
        let created = self.create(name, "create special file", false, |dir, base| {
            rfs::mknodat(dir, base, file_type, Mode::from_raw_mode(0o600), dev)
        });
        let parent = match created {
            Ok((parent, _)) => parent,
            // allow_devices but no CAP_MKNOD after all (e.g. a user namespace).
            Err(UnpackError::WriteEntry { source, .. })
                if file_type != FileType::Fifo && source.raw_os_error() == Some(libc::EPERM) =>
            {
                self.skip_device(name);
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let (_, base) = split_last(name);
        self.set_owner_at(parent.as_fd(), base, name, meta)?;
        chmod_nofollow(parent.as_fd(), base, meta.mode).map_err(fail("set the mode of", name))?;
        rfs::utimensat(&parent, base, &times(meta), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(fail("set the times of", name))?;
        Ok(true)
    }

    fn skip_device(&mut self, name: &[u8]) {
        if !self.warned.devices {
            self.warned.devices = true;
            tracing::warn!(
                path = %String::from_utf8_lossy(name),
                "skipping device nodes in the image: creating them needs CAP_MKNOD \
                 (the sandbox provides its own /dev)"
            );
        }
    }
}
