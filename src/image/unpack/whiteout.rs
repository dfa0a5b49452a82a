//! Whiteouts: `.wh.X` removes X from lower layers, `.wh..wh..opq` hides all
//! lower children of its directory. Both spare what this layer wrote, which
//! makes the opaque marker's position within the layer irrelevant.

use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::FileType;
use rustix::io::Errno;

use super::apply::{fail, Applier};
use super::fsops::{join, list_dir, open_child_dir, open_in_root, DIR_PATH, DIR_READ};
use super::UnpackError;

const OPAQUE: &[u8] = b".wh..wh..opq";
const AUFS_META: &[u8] = b".wh..wh.";

impl Applier<'_> {
    pub(super) fn whiteout(&mut self, parent_rel: &[u8], base: &[u8]) -> Result<(), UnpackError> {
        // Whiteouts remove names, which can change what paths resolve to.
        self.forget_parent();
        if base == OPAQUE {
            return self.opaque(parent_rel);
        }
        if base.starts_with(AUFS_META) {
            // Other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): meaningless here.
            return Ok(());
        }
        let target = &base[4..];
        let full = join(parent_rel, target);
        if target.is_empty() || target.iter().all(|b| *b == b'.') {
            return Err(UnpackError::InvalidEntry {
                path: String::from_utf8_lossy(&join(parent_rel, base)).into_owned(),
                reason: "a whiteout must name a file (`.wh.`, `.wh..` and `.wh...` are invalid)",
            });
        }
        if self.touched.contains(&full) {
            // Written by this same layer: whiteouts only hide lower layers.
            return Ok(());
        }
        let parent = match open_in_root(self.root.as_fd(), parent_rel, DIR_PATH) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(()),
            Err(Errno::ACCESS) => self
                .grant_chain(parent_rel)
                .map_err(fail("apply whiteout", &full))?,
            Err(e) => return Err(fail("apply whiteout", &full)(e)),
        };
        self.remove_entry(parent.as_fd(), parent_rel, target)
            .map_err(fail("apply whiteout", &full))
    }

    fn opaque(&mut self, dir_rel: &[u8]) -> Result<(), UnpackError> {
        if self.fresh.contains(dir_rel) || !self.opaque_done.insert(dir_rel.to_vec()) {
            return Ok(());
        }
        let err = fail("apply opaque whiteout in", dir_rel);
        let dir = match open_in_root(self.root.as_fd(), dir_rel, DIR_READ) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(()),
            Err(Errno::ACCESS) => {
                self.grant_chain(dir_rel).map_err(err)?;
                open_in_root(self.root.as_fd(), dir_rel, DIR_READ)
                    .map_err(fail("apply opaque whiteout in", dir_rel))?
            }
            Err(e) => return Err(err(e)),
        };
        self.clear_lower(dir, dir_rel.to_vec())
    }

    /// Removes every child of `dir` this layer did not write; recurses into
    /// written directories that existed before (their lower content goes too).
    fn clear_lower(&mut self, dir: OwnedFd, rel: Vec<u8>) -> Result<(), UnpackError> {
        let children = list_dir(dir.as_fd()).map_err(fail("list directory", &rel))?;
        for (name, kind) in children {
            let child = join(&rel, &name);
            if self.touched.contains(&child) {
                if kind == FileType::Directory && !self.fresh.contains(&child) {
                    let (sub, old) = open_child_dir(dir.as_fd(), &name)
                        .map_err(fail("open directory", &child))?;
                    if let Some(old) = old {
                        self.deferred
                            .entry(child.clone())
                            .or_default()
                            .mode
                            .get_or_insert(old);
                    }
                    self.clear_lower(sub, child)?;
                }
                continue;
            }
            self.remove_entry(dir.as_fd(), &rel, &name)
                .map_err(fail("remove", &child))?;
        }
        Ok(())
    }
}
