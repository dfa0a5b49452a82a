//! Building chain directories: clone the parent chain into staging, apply
//! the layer, check its diff_id, rename into `layers/<chainid>`.

use std::fs::File;
use std::path::PathBuf;

use super::applier::{ApplyError, LayerApplier};
use super::digest::Digest;
use super::store::{remove_tree, Store, StoreError};

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

/// One layer to turn into a chain dir.
#[derive(Debug, Clone)]
pub struct ChainStep {
    pub parent: Option<Digest>,
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub blob: Digest,
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
        if let Err(e) = remove_tree(&staging) {
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
    let blob_path = store.blob_path(&step.blob);
    let mut blob = File::open(&blob_path).map_err(|source| ChainError::OpenBlob {
        path: blob_path,
        source,
    })?;
    let applied = applier
        .apply(staging, &mut blob)
        .map_err(|source| ChainError::ApplyLayer {
            layer: step.blob.to_string(),
            source,
        })?;
    if applied.diff_id != step.diff_id.to_string() {
        return Err(ChainError::DiffIdMismatch {
            layer: step.blob.to_string(),
            expected: step.diff_id.to_string(),
            actual: applied.diff_id,
        });
    }
    Ok(())
}
