//! Pull progress events. The binary draws bars or prints lines; the
//! library only reports.

use std::time::Duration;

use super::digest::Digest;

/// Receives progress of pulls and imports. Every method has a no-op default.
pub trait Progress: Send + Sync {
    /// An image is being resolved.
    fn image_started(&self, _image: &str) {}
    /// A layer must be downloaded (`size` compressed bytes).
    fn layer_started(&self, _image: &str, _layer: &Digest, _size: u64) {}
    /// `done` of the layer's bytes are on disk (resumed bytes included).
    fn layer_progress(&self, _layer: &Digest, _done: u64) {}
    /// The layer's blob is downloaded and verified.
    fn layer_downloaded(&self, _layer: &Digest) {}
    /// The layer's blob was already in the store.
    fn layer_cached(&self, _image: &str, _layer: &Digest) {}
    /// The layer has been applied (its chain dir exists).
    fn layer_applied(&self, _layer: &Digest) {}
    /// The image is ready.
    fn image_done(&self, _summary: &PullSummary) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSummary {
    pub image: String,
    pub manifest_digest: Digest,
    pub layers: usize,
    /// Layers fetched from the network in this pull.
    pub layers_downloaded: usize,
    /// Layers applied in this pull (the rest were reused chain dirs).
    pub layers_applied: usize,
    pub bytes_downloaded: u64,
    pub elapsed: Duration,
    /// Already present: nothing was fetched or applied.
    pub up_to_date: bool,
}
