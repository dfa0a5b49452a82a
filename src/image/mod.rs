//! OCI images: references, registry client, content-addressed store, safe
//! layer unpacking and offline import. Knows nothing of pipelines or steps.
//!
//! Entry points for the rest of corral:
//!
//! ```no_run
//! # use corral::image::{self, PullPolicy, RegistryOptions, NoProgress};
//! # fn main() -> Result<(), image::ImageError> {
//! let store = image::Store::open(&image::default_store_dir())?;
//! let img = image::ensure(&store, "alpine:3.20", PullPolicy::IfNotPresent,
//!                         &RegistryOptions::default(), &NoProgress)?;
//! println!("{} at {}", img.reference, img.rootfs.display());
//! # Ok(()) }
//! ```
//!
//! Async callers use [`Puller`] (one per process; pulls of several images
//! may run concurrently on it).

pub mod applier;
pub mod chain;
pub mod digest;
mod fetch;
pub mod import;
mod live;
pub mod manifest;
pub mod ops;
pub mod platform;
pub mod progress;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod store;
pub mod unpack;
pub mod userns;

use std::path::PathBuf;
use std::sync::Arc;

pub use self::applier::{
    default_applier, register_current_exe_as_unpack_helper, register_unpack_helper, store_applier,
    LayerApplier,
};
pub use self::digest::Digest;
pub use self::platform::Platform;
pub use self::progress::{NoProgress, Progress, PullSummary};
pub use self::reference::Reference;
pub use self::registry::{Credentials, Mirror, RegistryOptions};
pub use self::store::{default_store_dir, Store, StoreError};

/// When to contact the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Always resolve the reference again (layers already stored are reused).
    Always,
    /// Use the stored image if there is one.
    #[default]
    IfNotPresent,
    /// Only the store; fail if the image is missing.
    Never,
}

/// The run configuration of an image (from its config file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

/// An image ready to run.
#[derive(Debug, Clone)]
pub struct Image {
    /// Normalised reference (`docker.io/library/alpine:3.20`).
    pub reference: String,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub platform: Option<Platform>,
    /// The top chain dir: the flattened rootfs, read-only for consumers
    /// (mount it as the overlay lower).
    pub rootfs: PathBuf,
    pub config: ImageConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    ParseReference(#[from] reference::ReferenceError),
    #[error("cannot open the image store")]
    OpenStore(#[source] StoreError),
    #[error("cannot pull {image}")]
    Registry {
        image: String,
        #[source]
        source: Box<registry::RegistryError>,
    },
    #[error("store operation for {image} failed")]
    Store {
        image: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot unpack {image}")]
    Chain {
        image: String,
        #[source]
        source: Box<chain::ChainError>,
    },
    #[error("image {image} is not in the store and --offline forbids the network; pull or import it first")]
    Offline { image: String },
    #[error("image {image} is not in the store and the pull policy is Never")]
    NotPresent { image: String },
    #[error("image {image} has {layers} layers but its config lists {diff_ids} diff_ids")]
    DiffIdCount {
        image: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("image {image} has no layers")]
    NoLayers { image: String },
    #[error("layer {digest} of {image} is missing from the store")]
    MissingBlob { image: String, digest: String },
    #[error("the pull of {image} was interrupted")]
    Cancelled { image: String },
    #[error("invalid config of {image}")]
    Config {
        image: String,
        #[source]
        source: manifest::ManifestError,
    },
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("invalid registry options")]
    Options(#[source] Box<registry::RegistryError>),
    #[error("cannot import {path}")]
    Import {
        path: PathBuf,
        #[source]
        source: Box<import::ImportError>,
    },
    #[error("cannot {what} {path}")]
    Filesystem {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot remove {path} from the store")]
    RemoveTree {
        path: PathBuf,
        #[source]
        source: applier::ApplyError,
    },
    #[error("cannot unpack layer {layer} into {path}")]
    Unpack {
        layer: String,
        path: PathBuf,
        #[source]
        source: applier::ApplyError,
    },
}

impl From<StoreError> for ImageError {
    fn from(source: StoreError) -> Self {
        ImageError::OpenStore(source)
    }
}

impl Image {
    /// The stored image `reference` names, if any. The caller holds the
    /// store's shared "gc" lock, so prune cannot remove it meanwhile.
    pub fn stored(store: &Store, reference: &Reference) -> Result<Option<Image>, ImageError> {
        let key = reference.to_string();
        let entry = store
            .lookup(&key)
            .map_err(|source| ImageError::Store { image: key, source })?;
        entry
            .map(|entry| Image::from_entry(store, reference, &entry))
            .transpose()
    }

    /// Builds the image view of an index entry (reads the stored config
    /// when the entry has no copy of its run settings).
    pub fn from_entry(
        store: &Store,
        reference: &Reference,
        entry: &store::IndexEntry,
    ) -> Result<Image, ImageError> {
        let image = reference.to_string();
        let run = match &entry.run {
            Some(run) => run.clone(),
            None => read_stored_config(store, &image, &entry.config_digest)?
                .config
                .unwrap_or_default(),
        };
        let top = entry.top_chain().ok_or_else(|| ImageError::NoLayers {
            image: image.clone(),
        })?;
        Ok(Image {
            reference: image,
            manifest_digest: entry.manifest_digest.clone(),
            config_digest: entry.config_digest.clone(),
            platform: entry.platform.clone(),
            rootfs: store.chain_path(top),
            config: ImageConfig {
                env: run.env.unwrap_or_default(),
                entrypoint: run.entrypoint,
                cmd: run.cmd,
                working_dir: run.working_dir.filter(|w| !w.is_empty()),
                user: run.user.filter(|u| !u.is_empty()),
            },
        })
    }
}

/// The config blob of `image` from the store, checked against `digest`.
pub(crate) fn read_stored_config(
    store: &Store,
    image: &str,
    digest: &Digest,
) -> Result<manifest::ConfigFile, ImageError> {
    let bytes = store
        .read_blob(digest, manifest::MAX_DOCUMENT_BYTES)
        .map_err(|source| ImageError::Store {
            image: image.to_string(),
            source,
        })?;
    manifest::parse_config(digest, &bytes).map_err(|source| ImageError::Config {
        image: image.to_string(),
        source,
    })
}

/// Pulls images into one store. Cheap to share by reference; its
/// registry client (token cache, per-host limits) is shared by all pulls.
pub struct Puller {
    store: Store,
    client: registry::Client,
    applier: Arc<dyn LayerApplier>,
}

impl Puller {
    pub fn new(store: Store, options: RegistryOptions) -> Result<Self, ImageError> {
        Self::with_applier(store, options, store_applier())
    }

    /// With another layer applier (tests, or unpacking in a user namespace).
    pub fn with_applier(
        store: Store,
        options: RegistryOptions,
        applier: Arc<dyn LayerApplier>,
    ) -> Result<Self, ImageError> {
        let client =
            registry::Client::new(options).map_err(|e| ImageError::Options(Box::new(e)))?;
        Ok(Puller {
            store,
            client,
            applier,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Returns the image, pulling it according to `policy`. With
    /// `--offline`, a stored image is used and a missing one is an error.
    pub async fn ensure(
        &self,
        image: &str,
        policy: PullPolicy,
        progress: &dyn Progress,
    ) -> Result<Image, ImageError> {
        let reference = Reference::parse(image)?;
        let key = reference.to_string();
        let store = self.store.clone();
        // Shared: pulls run side by side; prune takes it exclusively.
        let _gc = tokio::task::spawn_blocking(move || store.lock("gc", false))
            .await
            .map_err(|_| ImageError::Cancelled { image: key.clone() })?
            .map_err(|source| ImageError::Store {
                image: key.clone(),
                source,
            })?;
        let offline = self.client.options.offline;
        if policy != PullPolicy::Always || offline {
            if let Some(image) = Image::stored(&self.store, &reference)? {
                return Ok(image);
            }
            if policy == PullPolicy::Never {
                return Err(ImageError::NotPresent { image: key });
            }
            if offline {
                return Err(ImageError::Offline { image: key });
            }
        }
        pull::pull(
            &self.client,
            &self.store,
            &self.applier,
            &reference,
            progress,
        )
        .await
    }

    /// Ensures several images concurrently; one result per image, in order.
    pub async fn ensure_all(
        &self,
        images: &[String],
        policy: PullPolicy,
        progress: &dyn Progress,
    ) -> Vec<Result<Image, ImageError>> {
        futures_util::future::join_all(images.iter().map(|i| self.ensure(i, policy, progress)))
            .await
    }
}

/// Blocking form of [`Puller::ensure`] for synchronous callers. Must not be
/// called from inside a tokio runtime.
pub fn ensure(
    store: &Store,
    image: &str,
    policy: PullPolicy,
    options: &RegistryOptions,
    progress: &dyn Progress,
) -> Result<Image, ImageError> {
    let puller = Puller::new(store.clone(), options.clone())?;
    runtime()?.block_on(puller.ensure(image, policy, progress))
}

/// Blocking form of [`Puller::ensure_all`].
pub fn ensure_all(
    store: &Store,
    images: &[String],
    policy: PullPolicy,
    options: &RegistryOptions,
    progress: &dyn Progress,
) -> Result<Vec<Result<Image, ImageError>>, ImageError> {
    let puller = Puller::new(store.clone(), options.clone())?;
    Ok(runtime()?.block_on(puller.ensure_all(images, policy, progress)))
}

/// A small runtime for the blocking entry points.
pub fn runtime() -> Result<tokio::runtime::Runtime, ImageError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ImageError::Runtime)
}
