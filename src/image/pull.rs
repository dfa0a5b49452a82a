//! Pulling: resolve the manifest (and platform), fetch the config, download
//! missing layers concurrently and apply each as soon as its parent chain
//! exists.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;
use tokio::sync::oneshot;

use super::applier::LayerApplier;
use super::chain::{build_chain, keep_chain, ChainStep, LayerStep};
use super::digest::{chain_ids, Digest};
use super::fetch::{fetch_layer, LayerSource};
use super::live::Outcome;
use super::manifest::{
    parse_config, parse_document, ConfigFile, Descriptor, Document, MAX_DOCUMENT_BYTES,
};
use super::platform::{available_platforms, select_platform, Platform};
use super::progress::{Progress, PullSummary};
use super::registry::{Client, RegistryError};
use super::store::{IndexEntry, Store};
use super::{Image, ImageError};
use crate::image::reference::Reference;

const MAX_INDEX_DEPTH: usize = 8;

/// What a resolved image is made of.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub manifest_digest: Digest,
    pub index_digest: Option<Digest>,
    pub config_digest: Digest,
    pub config: ConfigFile,
    pub layers: Vec<Descriptor>,
    pub platform: Option<Platform>,
    /// Manifests, index and config, verified; written to the store only
    /// when the image is recorded, so a failed pull adds nothing.
    pub documents: Vec<(Digest, Vec<u8>)>,
}

/// Resolves `reference` to a single-platform manifest and its config,
/// storing the manifest(s) and config as blobs.
pub(crate) async fn resolve(
    client: &Client,
    store: &Store,
    reference: &Reference,
) -> Result<Resolved, ImageError> {
    let err = |source: RegistryError| ImageError::Registry {
        image: reference.to_string(),
        source: Box::new(source),
    };
    let want = client
        .options
        .platform
        .clone()
        .unwrap_or_else(Platform::host);
    let mut fetched = client.fetch_manifest(reference).await.map_err(err)?;
    let mut expected = fetched.media_type.clone();
    let mut index_digest = None;
    let mut platform = None;
    let mut documents = Vec::new();
    for depth in 0..=MAX_INDEX_DEPTH {
        let doc = parse_document(&fetched.digest, &fetched.bytes, expected.as_deref()).map_err(
            |source| {
                err(RegistryError::Manifest {
                    reference: reference.to_string(),
                    source,
                })
            },
        )?;
        documents.push((fetched.digest.clone(), fetched.bytes.clone()));
        match doc {
            Document::Index(entries) => {
                if depth == MAX_INDEX_DEPTH {
                    return Err(err(RegistryError::IndexTooDeep {
                        reference: reference.to_string(),
                        limit: MAX_INDEX_DEPTH,
                    }));
                }
                let chosen = select_platform(&entries, &want).ok_or_else(|| {
                    err(RegistryError::NoMatchingPlatform {
                        reference: reference.to_string(),
                        platform: want.to_string(),
                        available: available_platforms(&entries),
                    })
                })?;
                index_digest.get_or_insert(fetched.digest.clone());
                platform = chosen.platform.clone();
                expected = Some(chosen.media_type.clone()).filter(|m| !m.is_empty());
                fetched = client
                    .fetch_manifest_digest(reference, &chosen.digest)
                    .await
                    .map_err(err)?;
            }
            Document::Manifest { config, layers } => {
                let config_bytes = fetch_config(client, store, reference, &config).await?;
                documents.push((config.digest.clone(), config_bytes.clone()));
                let parsed = parse_config(&config.digest, &config_bytes).map_err(|source| {
                    err(RegistryError::Manifest {
                        reference: reference.to_string(),
                        source,
                    })
                })?;
                return Ok(Resolved {
                    manifest_digest: fetched.digest,
                    index_digest,
                    config_digest: config.digest,
                    platform: platform.or_else(|| platform_of(&parsed)),
                    config: parsed,
                    layers,
                    documents,
                });
            }
        }
    }
    Err(err(RegistryError::IndexTooDeep {
        reference: reference.to_string(),
        limit: MAX_INDEX_DEPTH,
    }))
}

async fn fetch_config(
    client: &Client,
    store: &Store,
    reference: &Reference,
    config: &Descriptor,
) -> Result<Vec<u8>, ImageError> {
    let store_err = |source| ImageError::Store {
        image: reference.to_string(),
        source,
    };
    if store.has_blob(&config.digest) {
        return store
            .read_blob(&config.digest, MAX_DOCUMENT_BYTES)
            .map_err(store_err);
    }
    let bytes = client
        .fetch_small_blob(reference, &config.digest, config.size)
        .await
        .map_err(|source| ImageError::Registry {
            image: reference.to_string(),
            source: Box::new(source),
        })?;
    Ok(bytes)
}

fn platform_of(config: &ConfigFile) -> Option<Platform> {
    (!config.os.is_empty() && !config.architecture.is_empty()).then(|| {
        Platform {
            os: config.os.clone(),
            architecture: config.architecture.clone(),
            variant: config.variant.clone(),
        }
        .normalized()
    })
}

/// Counters of one materialisation.
#[derive(Debug, Default)]
pub(crate) struct Materialized {
    pub downloaded: usize,
    pub bytes: u64,
    pub applied: usize,
}

/// Makes sure the image's top chain dir exists (and those of its large
/// layers, see `chain::keep_chain`): downloads missing blobs (bounded per
/// host) while applying layers in order, each as soon as its parent chain
/// exists and its download has started (it is read as it arrives, see
/// `live.rs`). Without a client, blobs must be present.
pub(crate) async fn materialize(
    client: Option<&Client>,
    store: &Store,
    applier: &Arc<dyn LayerApplier>,
    reference: &Reference,
    resolved: &Resolved,
    progress: &dyn Progress,
) -> Result<Materialized, ImageError> {
    let image = reference.to_string();
    let diff_ids = &resolved.config.rootfs.diff_ids;
    if diff_ids.len() != resolved.layers.len() {
        return Err(ImageError::DiffIdCount {
            image,
            layers: resolved.layers.len(),
            diff_ids: diff_ids.len(),
        });
    }
    if diff_ids.is_empty() {
        return Err(ImageError::NoLayers { image });
    }
    let chains = chain_ids(diff_ids);
    let n = chains.len();
    // A chain dir is complete, so everything below the highest one is done.
    let start = (0..n)
        .rev()
        .find(|&i| store.chain_path(&chains[i]).is_dir())
        .map_or(0, |i| i + 1);
    if start == n {
        return Ok(Materialized::default());
    }
    let (senders, receivers): (Vec<_>, Vec<_>) = (start..n).map(|_| oneshot::channel()).unzip();
    let downloads = join_all(
        resolved.layers[start..]
            .iter()
            .zip(senders)
            .map(|(layer, ready)| fetch_layer(client, store, reference, layer, progress, ready)),
    );
    let sizes: Vec<u64> = resolved.layers.iter().map(|l| l.size).collect();
    let applies = async {
        let mut applied_total = 0;
        let mut pending: Vec<LayerStep> = Vec::new();
        let mut base = start.checked_sub(1).map(|p| chains[p].clone());
        for (offset, rx) in receivers.into_iter().enumerate() {
            let i = start + offset;
            let source = rx.await.map_err(|_| ImageError::Cancelled {
                image: image.clone(),
            })??;
            pending.push(LayerStep {
                diff_id: diff_ids[i].clone(),
                blob: resolved.layers[i].digest.clone(),
                live: match source {
                    LayerSource::Stored => None,
                    LayerSource::Live(live) => Some(live),
                },
            });
            if !keep_chain(i, &sizes) {
                continue;
            }
            let step = ChainStep {
                parent: base.replace(chains[i].clone()),
                chain_id: chains[i].clone(),
                layers: std::mem::take(&mut pending),
            };
            let applied = step.layers.len();
            if build_step(store, applier, &image, step).await? {
                applied_total += applied;
            }
            for layer in &resolved.layers[i + 1 - applied..=i] {
                progress.layer_applied(&layer.digest);
            }
        }
        Ok::<_, ImageError>(applied_total)
    };
    // If applying fails, dropping `downloads` cancels the rest; partial
    // files stay in tmp/ for the next attempt.
    tokio::pin!(downloads);
    tokio::pin!(applies);
    let (applied, fetched) = tokio::select! {
        r = &mut applies => (r?, downloads.await),
        d = &mut downloads => (applies.await?, d),
    };
    let mut stats = Materialized {
        applied,
        ..Materialized::default()
    };
    for bytes in fetched.into_iter().flatten() {
        stats.downloaded += 1;
        stats.bytes += bytes;
    }
    Ok(stats)
}

/// Builds one chain dir on a blocking thread. When a layer read during its
/// download failed because the download failed, that error is returned;
/// when the download restarted from zero under the reader, the chain is
/// built again from the stored blob once it is verified.
async fn build_step(
    store: &Store,
    applier: &Arc<dyn LayerApplier>,
    image: &str,
    step: ChainStep,
) -> Result<bool, ImageError> {
    let cancelled = || ImageError::Cancelled {
        image: image.to_string(),
    };
    let (store2, applier2, step2) = (store.clone(), applier.clone(), step.clone());
    let built = tokio::task::spawn_blocking(move || build_chain(&store2, &*applier2, &step2))
        .await
        .map_err(|_| cancelled())?;
    let failure = match built {
        Ok(built) => return Ok(built),
        Err(source) => ImageError::Chain {
            image: image.to_string(),
            source: Box::new(source),
        },
    };
    let troubled: Vec<_> = step
        .layers
        .iter()
        .filter_map(|l| l.live.clone())
        .filter(|live| live.troubled())
        .collect();
    if troubled.is_empty() {
        return Err(failure);
    }
    for live in troubled {
        let outcome = tokio::task::spawn_blocking(move || live.outcome())
            .await
            .map_err(|_| cancelled())?;
        match outcome {
            Outcome::Committed { restarted: true } => {}
            Outcome::Committed { restarted: false } => return Err(failure),
            Outcome::Failed(error) => return Err(error.unwrap_or_else(cancelled)),
        }
    }
    tracing::debug!(chain = %step.chain_id, "a download restarted under the reader; applying the stored blob");
    let stored = ChainStep {
        layers: step
            .layers
            .into_iter()
            .map(|l| LayerStep { live: None, ..l })
            .collect(),
        ..step
    };
    let (store2, applier2) = (store.clone(), applier.clone());
    tokio::task::spawn_blocking(move || build_chain(&store2, &*applier2, &stored))
        .await
        .map_err(|_| cancelled())?
        .map_err(|source| ImageError::Chain {
            image: image.to_string(),
            source: Box::new(source),
        })
}

/// Pulls (or finds) an image and records it in the index.
pub(crate) async fn pull(
    client: &Client,
    store: &Store,
    applier: &Arc<dyn LayerApplier>,
    reference: &Reference,
    progress: &dyn Progress,
) -> Result<Image, ImageError> {
    let started = Instant::now();
    let image = reference.to_string();
    progress.image_started(&image);
    let resolved = resolve(client, store, reference).await?;
    let done = materialize(Some(client), store, applier, reference, &resolved, progress).await?;
    let entry = record(store, &image, &resolved)?;
    progress.image_done(&PullSummary {
        image: image.clone(),
        manifest_digest: resolved.manifest_digest.clone(),
        layers: resolved.layers.len(),
        layers_downloaded: done.downloaded,
        layers_applied: done.applied,
        bytes_downloaded: done.bytes,
        elapsed: started.elapsed(),
        up_to_date: done.downloaded == 0 && done.applied == 0,
    });
    Image::from_entry(store, reference, &entry)
}

/// Writes the index entry of a materialised image.
pub(crate) fn record(
    store: &Store,
    image: &str,
    resolved: &Resolved,
) -> Result<IndexEntry, ImageError> {
    let entry = IndexEntry {
        manifest_digest: resolved.manifest_digest.clone(),
        index_digest: resolved.index_digest.clone(),
        config_digest: resolved.config_digest.clone(),
        platform: resolved.platform.clone(),
        layers: resolved.layers.iter().map(|l| l.digest.clone()).collect(),
        chain_ids: chain_ids(&resolved.config.rootfs.diff_ids),
        size: resolved.layers.iter().map(|l| l.size).sum(),
        created: now_rfc3339(),
        run: Some(resolved.config.config.clone().unwrap_or_default()),
    };
    let stored = entry.clone();
    for (digest, bytes) in &resolved.documents {
        store
            .write_blob(digest, bytes)
            .map_err(|source| ImageError::Store {
                image: image.to_string(),
                source,
            })?;
    }
    store
        .update_index(|index| {
            index.images.insert(image.to_string(), stored);
        })
        .map_err(|source| ImageError::Store {
            image: image.to_string(),
            source,
        })?;
    Ok(entry)
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
