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
//! - `remove_tree(path)` deletes a staging or chain dir even when the image
//!   left directories at 0555/000 and we are not root.
//!
//! **Invariant: an existing non-directory inode is never modified.** Files,
//! symlinks, links and nodes are always unlinked and created anew; only
//! directories (which `clone_tree` makes fresh) get attribute updates. So a
//! hard-linked clone can be written without touching the parent chain.
//!
//! Path safety: the root is opened once; parents are resolved with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`, so
//! absolute and `..` symlinks are clamped to the root; the last component is
//! created with `*at` calls and `O_EXCL`/`O_NOFOLLOW`; metadata is set
//! through fds (`fchown`, `fchmod`, `fsetxattr`, `futimens`) or
//! `AT_SYMLINK_NOFOLLOW` calls. Names: leading `/` is dropped (`/abs/x` →
//! `root/abs/x`); a `..` component in an entry name is rejected; hard-link
//! targets are root-relative with `..` clamped at the root; an entry naming
//! the root itself must be a directory (CVE-2021-29136).
//!
//! Semantics follow the image spec and umoci/containerd: whiteouts hide lower
//! layers only; the opaque marker acts as if it came first in the layer;
//! non-directory parents are replaced by directories; mtimes are clamped to
//! 1970..=9999 (negative → 0, 2^40 → 9999-12-31), directory mtimes set after
//! the layer; a lower directory the layer changes without an entry for it
//! keeps its mtime; device nodes only with `allow_devices`, otherwise
//! skipped with one warning; sockets and other entry types skipped; an
//! empty PAX value deletes its record (POSIX, Go's tar).
//! Sparse files (sparse.rs, sparse_write.rs) are expanded as GNU tar and
//! Go's archive/tar do: PAX formats 0.0, 0.1 and 1.0 under their
//! `GNU.sparse.name`, and old-GNU 'S' entries; every map is validated
//! first, holes stay holes, and the real sizes of a layer's sparse files
//! together count against `max_bytes`. The tar parser may read at most
//! 8 MiB of headers for one entry (PAX records, long names, old-GNU map
//! blocks), which bounds what it holds in memory.
//! Owners: `Keep` chowns (before chmod, which keeps setuid); an owner outside
//! the user namespace's map (EINVAL) and every non-root owner under
//! `SquashToCaller` is recorded as `uid:gid:0mode` in
//! `user.containers.override_stat` (the image's own copy is ignored).
//! Xattrs: `user.*` kept, `security.capability` only when root, the rest
//! skipped. Non-zero bytes after the end of the archive are an error.
//! Rootless, directories get u+rwx while the layer is written and their real
//! mode at the end. The stream is inflated on the calling thread, hashed on
//! a second and applied on a third (bounded channels of 1 MiB chunks).
//! Nothing is fsynced (as umoci and containers-storage do): a chain dir is
//! a cache that `corral prune` and a new pull can rebuild.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

mod apply;
mod attrs;
mod clone;
mod entry;
mod fsops;
mod igzip;
mod nodes;
mod resolve;
mod sparse;
mod sparse_write;
mod stream;
mod whiteout;

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
    /// Abort when the uncompressed stream exceeds this many bytes, or the
    /// real sizes of the layer's sparse files together do.
    pub max_bytes: u64,
    /// Abort when the layer has more entries than this.
    pub max_entries: u64,
}

impl UnpackOptions {
    /// Options for the current process: root keeps owners (owners outside
    /// a user namespace's map are recorded in the xattr), only real root
    /// creates devices, anyone else squashes to themselves. Caps: 64 GiB,
    /// 4 M entries.
    pub fn for_current_user() -> Self {
        let root = rustix::process::geteuid().is_root();
        UnpackOptions {
            ownership: if root {
                Ownership::Keep
            } else {
                Ownership::SquashToCaller
            },
            allow_devices: root && in_initial_user_namespace(),
            max_bytes: 64 << 30,
            max_entries: 4_000_000,
        }
    }
}

/// True unless /proc/self/uid_map shows a partial map (we are in a user
/// namespace, where mknod of devices is refused).
fn in_initial_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .map(|map| map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
        .unwrap_or(false)
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
    #[error("failed to open rootfs directory {root}")]
    OpenRoot {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read or decompress the layer stream")]
    ReadLayer {
        #[source]
        source: io::Error,
    },
    #[error("unsupported layer compression (first bytes {magic}); only gzip, zstd and plain tar are supported")]
    UnsupportedCompression { magic: String },
    #[error("layer expands to more than {limit} bytes; aborted (raise the limit only for trusted images)")]
    TooLarge { limit: u64 },
    #[error(
        "layer has more than {limit} entries; aborted (raise the limit only for trusted images)"
    )]
    TooManyEntries { limit: u64 },
    #[error("failed to parse tar entry #{index} of the layer")]
    ParseEntry {
        index: u64,
        #[source]
        source: io::Error,
    },
    #[error("failed to read the data of layer entry {path:?}")]
    ReadEntryData {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("refusing layer entry {path:?}: {reason}")]
    InvalidEntry { path: String, reason: &'static str },
    #[error("refusing sparse layer entry {path:?}: {reason}")]
    ReadSparseMap { path: String, reason: String },
    #[error("layer has {nonzero} non-zero bytes after the end of the tar archive")]
    TrailingData { nonzero: u64 },
    #[error("failed to {op} {path:?} in the rootfs")]
    WriteEntry {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to hard-link {path:?} to {target:?}: the target must be an existing non-directory in the rootfs")]
    LinkTarget {
        path: String,
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("failed to clone {path} into the new chain directory")]
    Clone {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to remove {path}")]
    RemoveTree {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("a layer unpack thread (hasher or writer) panicked")]
    WriterPanicked,
}

/// Applies one layer blob onto the rootfs at `root` (see the module doc).
/// On error the tree is left half-written: the caller discards its staging
/// dir (with [`remove_tree`]).
pub fn apply_layer(
    root: &Path,
    layer: impl Read,
    opts: &UnpackOptions,
) -> Result<AppliedLayer, UnpackError> {
    let mut source = stream::decoder(layer)?;
    let (tx, hash_rx) = mpsc::sync_channel(4);
    let (hash_tx, rx) = mpsc::sync_channel(4);
    let (recycle_tx, recycle_rx) = mpsc::channel();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            apply::write_layer(root, stream::ChannelReader::new(rx, recycle_tx), opts)
        });
        let hasher = scope.spawn(move || stream::hash_and_forward(hash_rx, hash_tx));
        let pumped = stream::pump(&mut *source, tx, recycle_rx, opts.max_bytes);
        let written = writer.join().map_err(|_| UnpackError::WriterPanicked);
        let digest = hasher.join().map_err(|_| UnpackError::WriterPanicked);
        // The reader's failure explains the writer's (it saw an abort).
        match pumped? {
            stream::PumpEnd::WriterGone => {
                Err(written?.err().unwrap_or(UnpackError::WriterPanicked))
            }
            stream::PumpEnd::Eof { bytes } => Ok(AppliedLayer {
                entries: written??,
                diff_id: digest?,
                uncompressed_bytes: bytes,
            }),
        }
    })
}

/// Makes `dest` (absent, or an empty directory) a copy of `parent` with new
/// directories and hard links to every other inode.
pub fn clone_tree(parent: &Path, dest: &Path) -> Result<(), UnpackError> {
    clone::clone_tree(parent, dest)
}

/// Removes `path` recursively, granting ourselves access to directories the
/// image left at 0555/000. A missing path is not an error.
pub fn remove_tree(path: &Path) -> Result<(), UnpackError> {
    clone::remove_tree(path)
}
