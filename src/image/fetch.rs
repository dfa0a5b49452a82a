//! Getting one layer blob into the store, telling the apply loop as soon as
//! it can start reading: at once for a stored blob, when the download starts
//! for a missing one (it then follows the partial file, see `live.rs`).

use std::sync::Arc;

use tokio::sync::oneshot;

use super::live::{AbandonGuard, LiveBlob};
use super::manifest::Descriptor;
use super::progress::Progress;
use super::reference::Reference;
use super::registry::{Client, Watcher};
use super::store::Store;
use super::ImageError;

/// Where the apply loop reads a layer from.
#[derive(Debug, Clone)]
pub(crate) enum LayerSource {
    /// The verified blob in the store.
    Stored,
    /// A download in progress.
    Live(Arc<LiveBlob>),
}

/// Sent once per layer: where to read it, or why it cannot be had.
pub(crate) type Ready = oneshot::Sender<Result<LayerSource, ImageError>>;

/// Ensures one layer blob is in the store, sending `ready` as soon as the
/// layer can be read. Returns the bytes downloaded, or `None` when the blob
/// was there already. A failure after `ready` went out is handed to the
/// reader's [`LiveBlob`] instead.
pub(crate) async fn fetch_layer(
    client: Option<&Client>,
    store: &Store,
    reference: &Reference,
    layer: &Descriptor,
    progress: &dyn Progress,
    ready: Ready,
) -> Option<u64> {
    let live = Arc::new(LiveBlob::new(
        store.partial_path(&layer.digest),
        store.blob_path(&layer.digest),
    ));
    let _abandon = AbandonGuard(&live);
    let mut ready = Some(ready);
    let result = fetch(client, store, reference, layer, progress, &live, &mut ready).await;
    match (result, ready.take()) {
        (Ok(fetched), None) => {
            live.committed();
            fetched
        }
        (Ok(fetched), Some(tx)) => {
            let _ = tx.send(Ok(LayerSource::Stored));
            fetched
        }
        (Err(e), Some(tx)) => {
            let _ = tx.send(Err(e));
            None
        }
        (Err(e), None) => {
            live.failed(Some(e));
            None
        }
    }
}

async fn fetch(
    client: Option<&Client>,
    store: &Store,
    reference: &Reference,
    layer: &Descriptor,
    progress: &dyn Progress,
    live: &Arc<LiveBlob>,
    ready: &mut Option<Ready>,
) -> Result<Option<u64>, ImageError> {
    let image = reference.to_string();
    let digest = &layer.digest;
    if store.has_blob(digest) {
        progress.layer_cached(&image, digest);
        return Ok(None);
    }
    let Some(client) = client else {
        return Err(ImageError::MissingBlob {
            image,
            digest: digest.to_string(),
        });
    };
    let lock_store = store.clone();
    let lock_name = format!("blob-{}", digest.hex());
    let _lock = tokio::task::spawn_blocking(move || lock_store.lock(&lock_name, true))
        .await
        .map_err(|_| ImageError::Cancelled {
            image: image.clone(),
        })?
        .map_err(|source| ImageError::Store {
            image: image.clone(),
            source,
        })?;
    // Another process may have finished it while we waited.
    if store.has_blob(digest) {
        progress.layer_cached(&image, digest);
        return Ok(None);
    }
    progress.layer_started(&image, digest, layer.size);
    if let Some(tx) = ready.take() {
        let _ = tx.send(Ok(LayerSource::Live(live.clone())));
    }
    let partial = store.partial_path(digest);
    let report = |done: u64| progress.layer_progress(digest, done);
    let before = std::fs::metadata(&partial).map_or(0, |m| m.len());
    let watcher: Watcher = Some(live.clone());
    client
        .fetch_blob(reference, digest, layer.size, &partial, &report, &watcher)
        .await
        .map_err(|source| ImageError::Registry {
            image: image.clone(),
            source: Box::new(source),
        })?;
    store
        .commit_blob(digest, &partial)
        .map_err(|source| ImageError::Store {
            image: image.clone(),
            source,
        })?;
    progress.layer_downloaded(digest);
    Ok(Some(layer.size.saturating_sub(before)))
}
