//! Streaming blob downloads: written to a partial file while hashed on a
//! blocking thread, capped at the descriptor's size, resumed with `Range`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;

use super::fetch_manifest::{blob_url, check_status};
use super::{Client, Endpoint, RegistryError};
use crate::image::digest::{Digest, Hasher};
use crate::image::reference::Reference;

/// Reports bytes of a blob present so far (absolute, resumed bytes included).
pub type BlobProgress<'a> = &'a (dyn Fn(u64) + Send + Sync);

/// Told what the partial file holds, from the thread that writes it (so the
/// bytes are in the file when it hears of them): lets a reader apply the
/// layer while it downloads.
pub trait PartialWatcher: Send + Sync {
    /// The partial file now holds `len` bytes of the blob.
    fn extended(&self, len: u64);
    /// The partial file was emptied: what was read of it is void.
    fn restarted(&self);
}

/// Who watches a download, if anyone.
pub type Watcher = Option<Arc<dyn PartialWatcher>>;

impl Client {
    /// Downloads blob `digest` of `size` bytes into `partial`, resuming from
    /// what `partial` already holds. On success `partial` holds exactly the
    /// verified blob; on a digest or size error it is removed.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        partial: &Path,
        progress: BlobProgress<'_>,
        watcher: &Watcher,
    ) -> Result<(), RegistryError> {
        let what = format!("blob {digest}");
        let _slot = self.download_slot(reference.api_host()).await;
        self.with_endpoints(reference, &what, |ep| async move {
            let observers = Observers { progress, watcher };
            self.fetch_blob_from(&ep, reference, digest, size, partial, observers)
                .await
        })
        .await
    }

    async fn fetch_blob_from(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        partial: &Path,
        Observers { progress, watcher }: Observers<'_>,
    ) -> Result<(), RegistryError> {
        let what = format!("blob {digest} of {reference}");
        let url = blob_url(ep, reference, digest);
        let attempts = self.options.max_attempts.max(1);
        let mut state: Option<(Hasher, u64)> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (mut hasher, mut offset) = match state.take() {
                Some(s) => s,
                None => rehash_partial(partial, size, digest, watcher).await?,
            };
            progress(offset);
            if let Some(w) = watcher {
                w.extended(offset);
            }
            if offset < size {
                let range = (offset > 0).then(|| format!("bytes={offset}-"));
                let resp = self
                    .send(ep, reference.repository(), &what, |http| {
                        let req = http.get(&url);
                        match &range {
                            Some(r) => req.header(RANGE, r),
                            None => req,
                        }
                    })
                    .await?;
                let resp = check_status(resp, ep, reference, &format!("blob {digest}"))?;
                let resumed = resp.status() == StatusCode::PARTIAL_CONTENT
                    && resp
                        .headers()
                        .get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(range_start)
                        == Some(offset);
                if offset > 0 && !resumed {
                    // A 200 (or a range we did not ask for) restarts the blob.
                    tracing::debug!("{what}: registry ignored the range, restarting");
                    if let Some(w) = watcher {
                        w.restarted();
                    }
                    truncate(partial).await?;
                    hasher = Hasher::new(digest.algorithm());
                    offset = 0;
                    if resp.status() == StatusCode::PARTIAL_CONTENT {
                        state = Some((hasher, offset));
                        continue;
                    }
                }
                let remaining = size - offset;
                if resp.content_length().is_some_and(|n| n > remaining) {
                    return Err(too_large(ep, &what, size, partial).await);
                }
                let outcome = stream_to_file(
                    resp,
                    partial,
                    (hasher, offset),
                    remaining,
                    progress,
                    watcher.clone(),
                )
                .await?;
                hasher = outcome.hasher;
                offset += outcome.written;
                if outcome.overflow {
                    return Err(too_large(ep, &what, size, partial).await);
                }
                if offset < size {
                    if attempt >= attempts {
                        return Err(match outcome.error {
                            Some(source) => RegistryError::Request {
                                registry: ep.host.clone(),
                                what,
                                source,
                            },
                            None => RegistryError::Truncated {
                                registry: ep.host.clone(),
                                what,
                                got: offset,
                                expected: size,
                            },
                        });
                    }
                    tracing::debug!("{what}: interrupted at {offset} of {size} bytes; resuming");
                    state = Some((hasher, offset));
                    tokio::time::sleep(self.backoff(attempt, None)).await;
                    continue;
                }
            }
            let actual = hasher.finish();
            if actual != *digest {
                let _ = tokio::fs::remove_file(partial).await;
                return Err(RegistryError::DigestMismatch {
                    registry: ep.host.clone(),
                    what,
                    actual: actual.to_string(),
                });
            }
            return Ok(());
        }
    }
}

/// Who hears of a download's progress.
struct Observers<'a> {
    progress: BlobProgress<'a>,
    watcher: &'a Watcher,
}

struct StreamOutcome {
    hasher: Hasher,
    written: u64,
    overflow: bool,
    error: Option<reqwest::Error>,
}

/// Streams a response body into `partial` (appending) on a blocking thread
/// that also hashes. Stops after `limit` bytes.
async fn stream_to_file(
    resp: reqwest::Response,
    partial: &Path,
    (hasher, offset): (Hasher, u64),
    limit: u64,
    progress: BlobProgress<'_>,
    watcher: Watcher,
) -> Result<StreamOutcome, RegistryError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let path = partial.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || -> (Hasher, u64, std::io::Result<()>) {
        let mut hasher = hasher;
        let mut written = 0u64;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path);
        // Unbuffered: what arrived is on disk, so a killed pull can resume it.
        let mut file = match file {
            Ok(f) => f,
            Err(e) => return (hasher, 0, Err(e)),
        };
        while let Some(chunk) = rx.blocking_recv() {
            if let Err(e) = file.write_all(&chunk) {
                return (hasher, written, Err(e));
            }
            written += chunk.len() as u64;
            if let Some(w) = &watcher {
                w.extended(offset + written);
            }
            hasher.update(&chunk);
        }
        let flushed = file.flush();
        (hasher, written, flushed)
    });
    let mut received = 0u64;
    let mut overflow = false;
    let mut error = None;
    let mut stream = resp.bytes_stream();
    while let Some(item) = stream.next().await {
        match item {
            Ok(chunk) => {
                if received + chunk.len() as u64 > limit {
                    overflow = true;
                    break;
                }
                received += chunk.len() as u64;
                if tx.send(chunk).await.is_err() {
                    break;
                }
                progress(offset + received);
            }
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let (hasher, written, result) = writer.await.unwrap_or_else(|join| {
        (
            Hasher::new(crate::image::digest::Algorithm::Sha256),
            0,
            Err(std::io::Error::other(join.to_string())),
        )
    });
    result.map_err(|source| RegistryError::WriteBlob {
        path: partial.to_path_buf(),
        source,
    })?;
    Ok(StreamOutcome {
        hasher,
        written,
        overflow,
        error,
    })
}

/// Hashes what a partial download already holds (dropping it if it is
/// longer than the blob), so the download can resume.
async fn rehash_partial(
    partial: &Path,
    size: u64,
    digest: &Digest,
    watcher: &Watcher,
) -> Result<(Hasher, u64), RegistryError> {
    let path = partial.to_path_buf();
    let watcher = watcher.clone();
    let algorithm = digest.algorithm();
    let result = tokio::task::spawn_blocking(move || -> std::io::Result<(Hasher, u64)> {
        let mut hasher = Hasher::new(algorithm);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((hasher, 0)),
            Err(e) => return Err(e),
        };
        if file.metadata()?.len() > size {
            if let Some(w) = &watcher {
                w.restarted();
            }
            drop(file);
            std::fs::File::create(&path)?;
            return Ok((hasher, 0));
        }
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            total += n as u64;
        }
        Ok((hasher, total))
    })
    .await
    .unwrap_or_else(|join| Err(std::io::Error::other(join.to_string())));
    result.map_err(|source| RegistryError::WriteBlob {
        path: partial.to_path_buf(),
        source,
    })
}

async fn truncate(partial: &Path) -> Result<(), RegistryError> {
    tokio::fs::File::create(partial)
        .await
        .map(drop)
        .map_err(|source| RegistryError::WriteBlob {
            path: PathBuf::from(partial),
            source,
        })
}

async fn too_large(ep: &Endpoint, what: &str, size: u64, partial: &Path) -> RegistryError {
    let _ = tokio::fs::remove_file(partial).await;
    RegistryError::TooLarge {
        registry: ep.host.clone(),
        what: what.to_string(),
        limit: size,
    }
}

/// The first byte of `bytes START-END/TOTAL`.
fn range_start(value: &str) -> Option<u64> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, _total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    start.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn content_range_start() {
        assert_eq!(super::range_start("bytes 100-199/200"), Some(100));
        assert_eq!(super::range_start("bytes */200"), None);
        assert_eq!(super::range_start("items 1-2/3"), None);
    }
}
