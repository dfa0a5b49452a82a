//! The content-addressed store:
//!
//! ```text
//! STORE/blobs/sha256/<hex>   verified blobs (manifests, configs, layers)
//! STORE/layers/<chain-hex>/  flattened rootfs of a layer chain
//! STORE/index.json           references -> manifest digest (+config, platform)
//! STORE/tmp/                 partial downloads (kept for resume), staging dirs
//! STORE/locks/               flock files: one per blob or chain being made,
//!                            the index, and `gc` (shared by pulls, exclusive for prune)
//! ```
//!
//! Everything becomes visible by `rename` only after it is verified, so a
//! failed or killed pull leaves the store as it was.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::manifest::RunConfig;
use super::platform::Platform;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create store directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse the store index {path}; remove it and pull again")]
    ParseIndex {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("blob {digest} in the store is corrupt (content does not match); run `corral prune` and pull again")]
    CorruptBlob { digest: String },
    #[error("blob {digest} does not match its digest; not stored")]
    BlobMismatch { digest: String },
    #[error("blob {digest} is larger than the {limit} bytes allowed")]
    BlobTooLarge { digest: String, limit: u64 },
    #[error("cannot remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A record of one image in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub manifest_digest: Digest,
    /// The index the manifest was picked from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<Digest>,
    pub config_digest: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Layer blob digests, bottom first.
    pub layers: Vec<Digest>,
    /// Chain IDs, bottom first; the last names the rootfs.
    pub chain_ids: Vec<Digest>,
    /// Compressed bytes of all layers.
    pub size: u64,
    /// RFC 3339 time of the pull or import.
    pub created: String,
    /// The config's run settings, copied when the image is recorded, so
    /// that starting a sandbox needs no config read, digest check and
    /// parse. Entries written before it have none: their config is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunConfig>,
}

impl IndexEntry {
    pub fn top_chain(&self) -> Option<&Digest> {
        self.chain_ids.last()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub images: BTreeMap<String, IndexEntry>,
}

/// An open store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A held `flock`; released on drop.
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
}

/// The default store directory: `$CORRAL_STORE`, else
/// `$XDG_DATA_HOME/corral`, `~/.local/share/corral`, or `/var/lib/corral`
/// for root. The config module will own this later.
pub fn default_store_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CORRAL_STORE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/corral");
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("corral");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/corral"),
        None => PathBuf::from("/var/lib/corral"),
    }
}

/// The store's directories ("" is the store itself, mode 0700).
const SUBDIRS: [&str; 6] = ["", "blobs/sha256", "blobs/sha512", "layers", "tmp", "locks"];

impl Store {
    /// Opens (creating, mode 0700) the store at `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        // A store made before (every run but the first): six stats instead
        // of a mkdir and a stat for each directory and a chmod.
        let made = SUBDIRS.iter().all(|sub| {
            fs::metadata(dir.join(sub)).is_ok_and(|m| {
                m.is_dir() && (!sub.is_empty() || m.permissions().mode() & 0o777 == 0o700)
            })
        });
        if made {
            return Ok(Store {
                root: dir.to_path_buf(),
            });
        }
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for sub in SUBDIRS {
            let path = dir.join(sub);
            builder
                .create(&path)
                .map_err(|source| StoreError::CreateDir { path, source })?;
        }
        // Rootless layer files belong to the caller: others must not reach
        // them (setuid-to-you binaries).
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
            StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            }
        })?;
        Ok(Store {
            root: dir.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root
            .join("blobs")
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Where a download of `digest` accumulates (kept across failures).
    pub fn partial_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("tmp").join(format!(
            "{}-{}.partial",
            digest.algorithm().name(),
            digest.hex()
        ))
    }

    pub fn chain_path(&self, chain_id: &Digest) -> PathBuf {
        self.root.join("layers").join(chain_id.hex())
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh, not yet existing path under `tmp/`.
    pub fn staging_path(&self, label: &str) -> PathBuf {
        self.tmp_dir().join(format!(
            "{label}-{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ))
    }

    /// Moves a verified download into place.
    pub fn commit_blob(&self, digest: &Digest, verified: &Path) -> Result<(), StoreError> {
        let dest = self.blob_path(digest);
        fs::rename(verified, &dest).map_err(|source| StoreError::Write { path: dest, source })
    }

    /// Stores a small blob after checking its digest.
    pub fn write_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<(), StoreError> {
        if !digest.verify(bytes) {
            return Err(StoreError::BlobMismatch {
                digest: digest.to_string(),
            });
        }
        if self.has_blob(digest) {
            return Ok(());
        }
        let tmp = self.staging_path("blob");
        write_file(&tmp, bytes)?;
        self.commit_blob(digest, &tmp)
    }

    /// Reads a small blob (manifest, config), verifying it.
    pub fn read_blob(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, StoreError> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|source| StoreError::Read {
            path: path.clone(),
            source,
        })?;
        // Sized from the file's length: through `take` alone, read_to_end
        // has no size hint and probes with reads of 32, 64, 128... bytes.
        let size = file.metadata().map_or(0, |m| m.len()).min(limit + 1);
        let mut bytes = Vec::with_capacity(size as usize + 1);
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| StoreError::Read { path, source })?;
        if bytes.len() as u64 > limit {
            return Err(StoreError::BlobTooLarge {
                digest: digest.to_string(),
                limit,
            });
        }
        if !digest.verify(&bytes) {
            return Err(StoreError::CorruptBlob {
                digest: digest.to_string(),
            });
        }
        Ok(bytes)
    }

    /// Takes a `flock` on `locks/<name>.lock` (blocking).
    pub fn lock(&self, name: &str, exclusive: bool) -> Result<LockGuard, StoreError> {
        let path = self.root.join("locks").join(format!("{name}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| StoreError::Lock {
                path: path.clone(),
                source,
            })?;
        let op = if exclusive {
            FlockOperation::LockExclusive
        } else {
            FlockOperation::LockShared
        };
        loop {
            match flock(&file, op) {
                Ok(()) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    return Err(StoreError::Lock {
                        path,
                        source: e.into(),
                    })
                }
            }
        }
        Ok(LockGuard { _file: file })
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    pub fn read_index(&self) -> Result<Index, StoreError> {
        let path = self.index_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StoreError::ParseIndex { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(source) => Err(StoreError::Read { path, source }),
        }
    }

    /// Read-modify-write of the index under its lock, replaced atomically.
    pub fn update_index<T>(&self, change: impl FnOnce(&mut Index) -> T) -> Result<T, StoreError> {
        let _lock = self.lock("index", true)?;
        let mut index = self.read_index()?;
        let out = change(&mut index);
        let bytes = serde_json::to_vec_pretty(&index).map_err(|source| StoreError::ParseIndex {
            path: self.index_path(),
            source,
        })?;
        let tmp = self.staging_path("index");
        write_file(&tmp, &bytes)?;
        let path = self.index_path();
        fs::rename(&tmp, &path).map_err(|source| StoreError::Write { path, source })?;
        Ok(out)
    }

    /// The image recorded under a normalised reference, if its rootfs exists.
    pub fn lookup(&self, reference: &str) -> Result<Option<IndexEntry>, StoreError> {
        let index = self.read_index()?;
        Ok(index.images.get(reference).cloned().filter(|e| {
            e.top_chain()
                .map(|c| self.chain_path(c).is_dir())
                .unwrap_or(false)
        }))
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut f = File::create(path).map_err(|source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_data())
        .map_err(|source| StoreError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// Removes a tree even when its directories are read-only (0555, 000),
/// which rootless layer trees often have.
pub fn remove_tree(path: &Path) -> Result<(), StoreError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StoreError::Remove {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    if meta.is_dir() {
        make_writable(path)?;
        if fs::remove_dir_all(path).is_ok() {
            return Ok(());
        }
        let entries = fs::read_dir(path).map_err(|source| StoreError::Remove {
            path: path.to_path_buf(),
            source,
        })?;
        for entry in entries.flatten() {
            remove_tree(&entry.path())?;
        }
        fs::remove_dir(path).map_err(|source| StoreError::Remove {
            path: path.to_path_buf(),
            source,
        })
    } else {
        fs::remove_file(path).map_err(|source| StoreError::Remove {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn make_writable(dir: &Path) -> Result<(), StoreError> {
    let meta = fs::symlink_metadata(dir).map_err(|source| StoreError::Remove {
        path: dir.to_path_buf(),
        source,
    })?;
    if meta.permissions().mode() & 0o700 != 0o700 {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    }
    Ok(())
}
