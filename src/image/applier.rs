//! The seam between the store and the layer applier: which options unpack
//! uses and where it runs. The lead will route rootless unpacking through a
//! subuid-mapped user namespace here.

use std::io::Read;
use std::path::Path;

use super::unpack::{self, AppliedLayer, Ownership, UnpackOptions};

pub type ApplyError = Box<dyn std::error::Error + Send + Sync>;

/// Applies layers onto chain directories (see `unpack.rs` for the contract).
pub trait LayerApplier: Send + Sync {
    /// Applies one (possibly compressed) layer blob onto `root`.
    fn apply(&self, root: &Path, layer: &mut dyn Read) -> Result<AppliedLayer, ApplyError>;
    /// Makes `dest` (not existing yet) a copy of the chain dir `parent`.
    fn clone_tree(&self, parent: &Path, dest: &Path) -> Result<(), ApplyError>;
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

/// Largest uncompressed layer we accept (64 GiB) and most entries (10 M).
const MAX_LAYER_BYTES: u64 = 64 << 30;
const MAX_LAYER_ENTRIES: u64 = 10_000_000;

/// Decides how layers are unpacked on this host: owners kept as root,
/// squashed to the caller otherwise.
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
