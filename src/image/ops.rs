//! Store operations behind `images`, `image inspect`, `rmi`, `prune` and
//! `image unpack`.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde::Serialize;

use super::applier::LayerApplier;
use super::digest::Digest;
use super::manifest::{self, MAX_DOCUMENT_BYTES};
use super::reference::Reference;
use super::store::{remove_tree, IndexEntry, Store};
use super::ImageError;

/// All images in the store, by normalised reference.
pub fn list(store: &Store) -> Result<Vec<(String, IndexEntry)>, ImageError> {
    let index = store.read_index()?;
    Ok(index.images.into_iter().collect())
}

/// Finds a stored image by reference (normalised) or by manifest digest
/// (full or a unique hex prefix of at least 12 digits).
pub fn find(store: &Store, image: &str) -> Result<(String, IndexEntry), ImageError> {
    let index = store.read_index()?;
    if let Ok(reference) = Reference::parse(image) {
        if let Some(entry) = index.images.get(&reference.to_string()) {
            return Ok((reference.to_string(), entry.clone()));
        }
    }
    let hex = image.strip_prefix("sha256:").unwrap_or(image);
    if hex.len() >= 12 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        let matches: Vec<_> = index
            .images
            .iter()
            .filter(|(_, e)| e.manifest_digest.hex().starts_with(hex))
            .collect();
        if let [(name, entry)] = matches.as_slice() {
            return Ok(((*name).clone(), (*entry).clone()));
        }
    }
    let shown = Reference::parse(image).map_or(image.to_string(), |r| r.to_string());
    Err(ImageError::NotPresent { image: shown })
}

#[derive(Debug, Serialize)]
pub struct Inspection {
    pub reference: String,
    #[serde(flatten)]
    pub entry: IndexEntry,
    pub rootfs: String,
    pub manifest: serde_json::Value,
    pub config: serde_json::Value,
}

pub fn inspect(store: &Store, image: &str) -> Result<Inspection, ImageError> {
    let (name, entry) = find(store, image)?;
    let read = |d: &Digest| -> Result<serde_json::Value, ImageError> {
        let bytes = store
            .read_blob(d, MAX_DOCUMENT_BYTES)
            .map_err(|source| ImageError::Store {
                image: name.clone(),
                source,
            })?;
        serde_json::from_slice(&bytes).map_err(|source| ImageError::Config {
            image: name.clone(),
            source: manifest::ManifestError::ParseConfig {
                digest: d.to_string(),
                source,
            },
        })
    };
    let rootfs = entry
        .top_chain()
        .map(|c| store.chain_path(c).display().to_string())
        .unwrap_or_default();
    Ok(Inspection {
        manifest: read(&entry.manifest_digest)?,
        config: read(&entry.config_digest)?,
        reference: name,
        entry,
        rootfs,
    })
}

/// Removes images from the index (blobs and layers go with `prune`).
pub fn remove(store: &Store, image: &str) -> Result<String, ImageError> {
    let (name, _) = find(store, image)?;
    store.update_index(|index| index.images.remove(&name))?;
    Ok(name)
}

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct PruneReport {
    pub blobs: usize,
    pub chains: usize,
    pub tmp_entries: usize,
}

/// Deletes blobs and chain dirs no image references, and leftovers in
/// `tmp/`. Waits for running pulls to finish and blocks new ones meanwhile.
/// Chain and staging dirs are removed by `applier` (the one that made them:
/// in a user namespace, they may hold inodes we cannot chmod outside it).
pub fn prune(store: &Store, applier: &dyn LayerApplier) -> Result<PruneReport, ImageError> {
    let _gc = store.lock("gc", true)?;
    let index = store.read_index()?;
    let mut blobs: BTreeSet<String> = BTreeSet::new();
    let mut chains: BTreeSet<String> = BTreeSet::new();
    for entry in index.images.values() {
        blobs.insert(entry.manifest_digest.hex().to_string());
        blobs.insert(entry.config_digest.hex().to_string());
        if let Some(d) = &entry.index_digest {
            blobs.insert(d.hex().to_string());
        }
        blobs.extend(entry.layers.iter().map(|d| d.hex().to_string()));
        chains.extend(entry.chain_ids.iter().map(|d| d.hex().to_string()));
    }
    let mut report = PruneReport::default();
    for alg in ["sha256", "sha512"] {
        report.blobs += remove_unlisted(&store.root().join("blobs").join(alg), &blobs, None)?;
    }
    report.chains = remove_unlisted(&store.root().join("layers"), &chains, Some(applier))?;
    report.tmp_entries = remove_unlisted(&store.tmp_dir(), &BTreeSet::new(), Some(applier))?;
    Ok(report)
}

fn remove_unlisted(
    dir: &Path,
    keep: &BTreeSet<String>,
    applier: Option<&dyn LayerApplier>,
) -> Result<usize, ImageError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(ImageError::Filesystem {
                what: "list",
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if keep.contains(&name) {
            continue;
        }
        let path = entry.path();
        match applier {
            Some(applier) => applier
                .remove_tree(&path)
                .map_err(|source| ImageError::RemoveTree { path, source })?,
            None => remove_tree(&path)?,
        }
        removed += 1;
    }
    Ok(removed)
}

/// Writes the flattened rootfs of a stored image into the new directory
/// `dir` by applying its layers afresh (verifying each diff_id).
pub fn unpack_to(
    store: &Store,
    applier: &dyn LayerApplier,
    image: &str,
    dir: &Path,
) -> Result<(), ImageError> {
    let (name, entry) = find(store, image)?;
    let config = super::read_stored_config(store, &name, &entry.config_digest)?;
    fs::create_dir(dir).map_err(|source| ImageError::Filesystem {
        what: "create directory",
        path: dir.to_path_buf(),
        source,
    })?;
    let result = apply_all(store, applier, &entry, &config.rootfs.diff_ids, dir);
    if result.is_err() {
        let _ = remove_tree(dir);
    }
    result
}

fn apply_all(
    store: &Store,
    applier: &dyn LayerApplier,
    entry: &IndexEntry,
    diff_ids: &[Digest],
    dir: &Path,
) -> Result<(), ImageError> {
    for (layer, diff_id) in entry.layers.iter().zip(diff_ids) {
        let path = store.blob_path(layer);
        let mut file = fs::File::open(&path).map_err(|source| ImageError::Filesystem {
            what: "open layer blob",
            path: path.clone(),
            source,
        })?;
        let applied = applier
            .apply(dir, &mut file)
            .map_err(|source| ImageError::Unpack {
                layer: layer.to_string(),
                path: dir.to_path_buf(),
                source,
            })?;
        if applied.diff_id != diff_id.to_string() {
            return Err(ImageError::Chain {
                image: layer.to_string(),
                source: Box::new(super::chain::ChainError::DiffIdMismatch {
                    layer: layer.to_string(),
                    expected: diff_id.to_string(),
                    actual: applied.diff_id,
                }),
            });
        }
    }
    Ok(())
}
