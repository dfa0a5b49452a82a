//! Building chain directories: clone the parent chain into staging, apply
//! one or more layers, check their diff_ids, rename into `layers/<chainid>`.
//!
//! A clone costs one new inode per directory of the parent (and a hard link
//! per file), whatever the size of the layer on top, so small intermediate
//! layers are not given chain dirs of their own: they are applied onto the
//! same staging dir as the layers above them (see [`keep_chain`]).

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use super::applier::{ApplyError, LayerApplier};
use super::digest::Digest;
use super::live::LiveBlob;
use super::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("cannot lock layer chain {chain}")]
    Lock {
        chain: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot open layer blob {path}")]
    OpenBlob {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read layer {layer} while it downloads")]
    ReadDownload {
        layer: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create staging directory {path}")]
    CreateStaging {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot copy layer chain {parent} to build the next layer")]
    CloneParent {
        parent: String,
        #[source]
        source: ApplyError,
    },
    #[error("cannot apply layer {layer}")]
    ApplyLayer {
        layer: String,
        #[source]
        source: ApplyError,
    },
    #[error("layer {layer} unpacks to {actual}, but the image config says {expected}; the image is corrupt")]
    DiffIdMismatch {
        layer: String,
        expected: String,
        actual: String,
    },
    #[error("cannot move the unpacked layer into {path}")]
    Commit {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Compressed size from which a middle layer gets its own chain dir:
/// re-applying a smaller layer for another image costs less than cloning
/// the tree below it for every pull.
pub const KEEP_CHAIN_BYTES: u64 = 8 << 20;

/// Whether chain `index` of `sizes.len()` layers (compressed sizes) is
/// materialised: always the base (the layer images most often share) and
/// the top, in between only large layers.
pub fn keep_chain(index: usize, sizes: &[u64]) -> bool {
    index == 0
        || index + 1 == sizes.len()
        || sizes.get(index).is_some_and(|&s| s >= KEEP_CHAIN_BYTES)
}

/// One layer of a chain step.
#[derive(Debug, Clone)]
pub struct LayerStep {
    pub diff_id: Digest,
    pub blob: Digest,
    /// Read while it downloads instead of from the store (see `live.rs`).
    pub live: Option<Arc<LiveBlob>>,
}

/// Layers to apply, in order, onto a clone of `parent` (or an empty dir),
/// giving the chain dir `chain_id` (the chain id after the last layer).
#[derive(Debug, Clone)]
pub struct ChainStep {
    pub parent: Option<Digest>,
    pub chain_id: Digest,
    pub layers: Vec<LayerStep>,
}

/// Builds `layers/<chain_id>` unless another process already did.
/// Returns whether this call built it.
pub fn build_chain(
    store: &Store,
    applier: &dyn LayerApplier,
    step: &ChainStep,
) -> Result<bool, ChainError> {
    let _lock = store
        .lock(&format!("chain-{}", step.chain_id.hex()), true)
        .map_err(|source| ChainError::Lock {
            chain: step.chain_id.to_string(),
            source,
        })?;
    let dest = store.chain_path(&step.chain_id);
    if dest.is_dir() {
        return Ok(false);
    }
    let staging = store.staging_path(&format!("chain-{}", step.chain_id.short()));
    let result = build_into(store, applier, step, &staging).and_then(|()| {
        std::fs::rename(&staging, &dest).map_err(|source| ChainError::Commit {
            path: dest.clone(),
            source,
        })
    });
    if result.is_err() {
        if let Err(e) = applier.remove_tree(&staging) {
            tracing::warn!("cannot clean up {}: {e}", staging.display());
        }
    }
    result.map(|()| true)
}

fn build_into(
    store: &Store,
    applier: &dyn LayerApplier,
    step: &ChainStep,
    staging: &std::path::Path,
) -> Result<(), ChainError> {
    let started = std::time::Instant::now();
    match &step.parent {
        Some(parent) => applier
            .clone_tree(&store.chain_path(parent), staging)
            .map_err(|source| ChainError::CloneParent {
                parent: parent.to_string(),
                source,
            })?,
        None => std::fs::create_dir(staging).map_err(|source| ChainError::CreateStaging {
            path: staging.to_path_buf(),
            source,
        })?,
    }
    let cloned = started.elapsed();
    for layer in &step.layers {
        apply_one(store, applier, layer, staging)?;
    }
    tracing::debug!(
        chain = %step.chain_id,
        layers = step.layers.len(),
        clone_ms = cloned.as_millis(),
        apply_ms = (started.elapsed() - cloned).as_millis(),
        "chain dir built"
    );
    Ok(())
}

fn apply_one(
    store: &Store,
    applier: &dyn LayerApplier,
    layer: &LayerStep,
    staging: &std::path::Path,
) -> Result<(), ChainError> {
    let apply_err = |source| ChainError::ApplyLayer {
        layer: layer.blob.to_string(),
        source,
    };
    let applied = match &layer.live {
        Some(live) => {
            let mut reader = live.reader();
            let applied = applier.apply(staging, &mut reader).map_err(apply_err)?;
            // End of stream means verified: the digest checked, the blob stored.
            reader.finish().map_err(|source| ChainError::ReadDownload {
                layer: layer.blob.to_string(),
                source,
            })?;
            applied
        }
        None => {
            let blob_path = store.blob_path(&layer.blob);
            let mut blob = File::open(&blob_path).map_err(|source| ChainError::OpenBlob {
                path: blob_path,
                source,
            })?;
            applier.apply(staging, &mut blob).map_err(apply_err)?
        }
    };
    if applied.diff_id != layer.diff_id.to_string() {
        return Err(ChainError::DiffIdMismatch {
            layer: layer.blob.to_string(),
            expected: layer.diff_id.to_string(),
            actual: applied.diff_id,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_top_and_large_layers_get_chain_dirs() {
        let sizes = [100, 10_000, 9 << 20, 500, 300];
        let kept: Vec<usize> = (0..sizes.len())
            .filter(|&i| keep_chain(i, &sizes))
            .collect();
        assert_eq!(kept, [0, 2, 4]);
        assert!(keep_chain(0, &[10]));
        assert!(!keep_chain(1, &[10, 10, 10]));
    }
}
