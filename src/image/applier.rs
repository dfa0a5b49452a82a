//! The seam between the store and the layer applier: which options unpack
//! uses and where it runs. Root keeps owners in-process; a user with a
//! subuid range keeps them too, by unpacking in a mapped user namespace
//! (`userns.rs`); anyone else gets files squashed to themselves with the
//! image's owner recorded in `user.containers.override_stat`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use super::unpack::{self, AppliedLayer, Ownership, UnpackOptions};
use super::userns::{self, SubIds};

pub type ApplyError = Box<dyn std::error::Error + Send + Sync>;

/// Applies layers onto chain directories (see `unpack.rs` for the contract).
pub trait LayerApplier: Send + Sync {
    /// Applies one (possibly compressed) layer blob onto `root`.
    fn apply(&self, root: &Path, layer: &mut dyn Read) -> Result<AppliedLayer, ApplyError>;
    /// Makes `dest` (not existing yet) a copy of the chain dir `parent`.
    fn clone_tree(&self, parent: &Path, dest: &Path) -> Result<(), ApplyError>;
    /// Deletes a chain or staging dir this applier made.
    fn remove_tree(&self, path: &Path) -> Result<(), ApplyError> {
        Ok(unpack::remove_tree(path)?)
    }
}

/// The real applier (`unpack::apply_layer`) run in this process.
pub struct UnpackApplier {
    pub options: UnpackOptions,
}

impl LayerApplier for UnpackApplier {
    fn apply(&self, root: &Path, layer: &mut dyn Read) -> Result<AppliedLayer, ApplyError> {
        Ok(unpack::apply_layer(root, layer, &self.options)?)
    }
    fn clone_tree(&self, parent: &Path, dest: &Path) -> Result<(), ApplyError> {
        Ok(unpack::clone_tree(parent, dest)?)
    }
}

/// The real applier run by a re-executed corral in a user namespace that
/// maps the caller to 0 and its subordinate range above (owners kept).
pub struct UsernsApplier {
    /// The corral binary (it handles `__image-unpack`).
    pub helper: PathBuf,
    pub ids: SubIds,
}

impl LayerApplier for UsernsApplier {
    fn apply(&self, root: &Path, layer: &mut dyn Read) -> Result<AppliedLayer, ApplyError> {
        Ok(userns::apply(&self.helper, &self.ids, root, layer)?)
    }
    fn clone_tree(&self, parent: &Path, dest: &Path) -> Result<(), ApplyError> {
        userns::run_helper(&self.helper, &self.ids, "clone", &[parent, dest], None)?;
        Ok(())
    }
    fn remove_tree(&self, path: &Path) -> Result<(), ApplyError> {
        if std::fs::symlink_metadata(path).is_err() {
            return Ok(());
        }
        userns::run_helper(&self.helper, &self.ids, "remove", &[path], None)?;
        Ok(())
    }
}

/// Largest uncompressed layer we accept (64 GiB) and most entries (10 M).
pub(super) const MAX_LAYER_BYTES: u64 = 64 << 30;
pub(super) const MAX_LAYER_ENTRIES: u64 = 10_000_000;

/// Which binary runs `__image-unpack`; the first registration wins.
enum Helper {
    Path(PathBuf),
    /// This process's own binary, resolved only when a layer needs it:
    /// no readlink for commands that pull nothing, such as a warm exec.
    CurrentExe,
}

static HELPER: OnceLock<Helper> = OnceLock::new();

/// Declares the corral binary that can run `__image-unpack` (library users
/// such as tests may). Without it, store layers are unpacked in-process.
pub fn register_unpack_helper(exe: PathBuf) {
    let _ = HELPER.set(Helper::Path(exe));
}

/// Declares this process's own binary the unpack helper (the corral binary
/// does at start).
pub fn register_current_exe_as_unpack_helper() {
    let _ = HELPER.set(Helper::CurrentExe);
}

fn unpack_helper() -> Option<PathBuf> {
    match HELPER.get()? {
        Helper::Path(path) => Some(path.clone()),
        Helper::CurrentExe => std::env::current_exe().ok(),
    }
}

/// In-process unpacking for this host: owners kept as root, squashed to the
/// caller otherwise. `corral image unpack` uses it (like `umoci unpack
/// --rootless`: the tree must be the user's own).
pub fn default_applier() -> UnpackApplier {
    let root = rustix::process::geteuid().is_root();
    UnpackApplier {
        options: UnpackOptions {
            ownership: if root {
                Ownership::Keep
            } else {
                Ownership::SquashToCaller
            },
            allow_devices: root,
            max_bytes: MAX_LAYER_BYTES,
            max_entries: MAX_LAYER_ENTRIES,
        },
    }
}

/// The applier for store chain dirs: in a subuid-mapped user namespace when
/// the caller has a range and a helper binary is registered, else
/// [`default_applier`].
pub fn store_applier() -> Arc<dyn LayerApplier> {
    // The helper's path only when there is a range to use it with.
    let userns = userns::caller_sub_ids().and_then(|ids| Some((unpack_helper()?, ids)));
    match userns {
        Some((helper, ids)) => {
            tracing::debug!(?ids, "unpacking layers in a subuid-mapped user namespace");
            Arc::new(UsernsApplier { helper, ids })
        }
        None => Arc::new(default_applier()),
    }
}
