//! Safe layer applier: `tar` is only the parser; every path is resolved
//! inside the rootfs.
//!
//! API contract (the store codes against it):
//! - `apply_layer(root, reader, &opts)` applies one layer blob (gzip, zstd or
//!   plain tar, detected by magic bytes) onto the full rootfs tree at `root`
//!   and returns the uncompressed stream's digest (the diff_id) for checking;
//! - `clone_tree(parent, dest)` makes `dest` a copy of the chain directory
//!   `parent` that shares file inodes (hard links) but has its own
//!   directories, so applying the next layer never changes `parent`.
//!   Chain directories are full flattened rootfs trees keyed by chainID; a
//!   sandbox mounts the top one as its single overlay lower.

use std::io::Read;
use std::path::{Path, PathBuf};

/// How file owners from the tar headers are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// chown to the header's uid/gid (root, or inside a full-range user namespace).
    Keep,
    /// Leave files to the caller; record the original owner in the
    /// `user.containers.override_stat` xattr.
    SquashToCaller,
}

#[derive(Debug, Clone)]
pub struct UnpackOptions {
    pub ownership: Ownership,
    /// Create device nodes (needs CAP_MKNOD); otherwise skip them with one warning.
    pub allow_devices: bool,
    /// Abort when the uncompressed stream exceeds this many bytes.
    pub max_bytes: u64,
    /// Abort when the layer has more entries than this.
    pub max_entries: u64,
}

/// What applying a layer produced.
#[derive(Debug, Clone)]
pub struct AppliedLayer {
    /// `sha256:<hex>` of the uncompressed tar stream, read to EOF.
    pub diff_id: String,
    pub entries: u64,
    pub uncompressed_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer applier not built yet (applying onto {root})")]
    NotBuilt { root: PathBuf },
}

pub fn apply_layer(
    root: &Path,
    _layer: impl Read,
    _opts: &UnpackOptions,
) -> Result<AppliedLayer, UnpackError> {
    Err(UnpackError::NotBuilt {
        root: root.to_path_buf(),
    })
}

pub fn clone_tree(_parent: &Path, dest: &Path) -> Result<(), UnpackError> {
    Err(UnpackError::NotBuilt {
        root: dest.to_path_buf(),
    })
}
