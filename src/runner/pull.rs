//! Pulling a stage's images before it starts: all at once, stopped by
//! Ctrl-C or a timeout, with progress (the caller's bars or a line per
//! image on stderr) and `pull_progress` events.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::cancel::{Cancel, Deadline};
use super::events::{Event, EventWriter, PullPhase};
use crate::config::Config;
use crate::image::{self, Digest, Image, Mirror, Progress, PullSummary, RegistryOptions, Store};
use crate::pipeline::model::PullPolicy as ModelPolicy;
use crate::pipeline::secret::{Masker, SecretStore};

/// One image a stage needs, and the first step that needs it.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub image: String,
    pub step: String,
    pub policy: ModelPolicy,
    pub connector: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("step {step}: failed to pull image {image}")]
    Pull {
        step: String,
        image: String,
        #[source]
        source: Box<image::ImageError>,
    },
    #[error("failed to set up image pulls")]
    Setup {
        #[source]
        source: Box<image::ImageError>,
    },
    #[error("step {step}: connector {connector} of image {image} names secret {secret}, which was not given (pass --secret {secret})")]
    ConnectorSecret {
        step: String,
        image: String,
        connector: String,
        secret: String,
    },
    #[error("interrupted by signal {signal} while pulling images")]
    Interrupted { signal: i32 },
    #[error("{what} was reached while pulling images")]
    TimedOut { what: String },
}

/// What stops the pulls early: Ctrl-C / SIGTERM, or a timeout.
pub struct Stop<'a> {
    pub cancel: &'a Cancel,
    pub deadline: Option<&'a Deadline>,
}

impl Stop<'_> {
    fn check(&self) -> Option<PullError> {
        if let Some(signal) = self.cancel.signal() {
            return Some(PullError::Interrupted { signal });
        }
        self.deadline
            .filter(|d| d.passed())
            .map(|d| PullError::TimedOut {
                what: d.what.clone(),
            })
    }
}

/// How often a pull checks whether it must stop.
const STOP_POLL: Duration = Duration::from_millis(50);
/// How long an interrupted pull waits for a layer being applied (a blocking
/// task) before leaving it; the store's staging dirs make that safe.
const APPLY_GRACE: Duration = Duration::from_secs(2);

/// Registry options from the config (its registries already merged with
/// `--registry-mirror` / `--insecure-registry`).
pub fn registry_options(config: &Config, offline: bool) -> RegistryOptions {
    let mut options = RegistryOptions {
        offline,
        ..RegistryOptions::default()
    };
    for registry in &config.registries {
        for url in &registry.mirrors {
            options.mirrors.push(Mirror {
                registry: registry.prefix.clone(),
                url: url.clone(),
            });
        }
        if registry.insecure {
            options.insecure.push(registry.prefix.clone());
        }
    }
    options
}

fn policy(p: ModelPolicy) -> image::PullPolicy {
    match p {
        ModelPolicy::Always => image::PullPolicy::Always,
        ModelPolicy::IfNotPresent => image::PullPolicy::IfNotPresent,
        ModelPolicy::Never => image::PullPolicy::Never,
    }
}

/// Pulls every wanted image concurrently; the images by reference.
pub fn pull_all(
    store: &Store,
    base: &RegistryOptions,
    config: &Config,
    secrets: &SecretStore,
    wanted: &[Wanted],
    reporter: &Reporter,
    stop: &Stop<'_>,
) -> Result<BTreeMap<String, Image>, PullError> {
    if let Some(stopped) = stop.check() {
        return Err(stopped);
    }
    let mut pullers = Vec::new();
    for w in wanted {
        let mut options = base.clone();
        if let Some(id) = &w.connector {
            if let Some(conn) = config.connector(id) {
                options.connector = connector_credentials(w, id, conn, secrets)?;
            }
        }
        let puller =
            image::Puller::new(store.clone(), options).map_err(|source| PullError::Setup {
                source: Box::new(source),
            })?;
        pullers.push(puller);
    }
    let runtime = image::runtime().map_err(|source| PullError::Setup {
        source: Box::new(source),
    })?;
    let all = futures_util::future::join_all(
        wanted
            .iter()
            .zip(&pullers)
            .map(|(w, p)| p.ensure(&w.image, policy(w.policy), reporter)),
    );
    let stopped = async {
        loop {
            if let Some(stopped) = stop.check() {
                return stopped;
            }
            tokio::time::sleep(STOP_POLL).await;
        }
    };
    // Dropping the pulls aborts their downloads; partial blobs stay in the
    // store's tmp/ for the next pull to resume.
    let outcome = runtime.block_on(async {
        tokio::select! {
            results = all => Ok(results),
            stopped = stopped => Err(stopped),
        }
    });
    let results = match outcome {
        Ok(results) => results,
        Err(stopped) => {
            runtime.shutdown_timeout(APPLY_GRACE);
            return Err(stopped);
        }
    };
    let mut images = BTreeMap::new();
    for (w, result) in wanted.iter().zip(results) {
        let image = result.map_err(|source| PullError::Pull {
            step: w.step.clone(),
            image: w.image.clone(),
            source: Box::new(source),
        })?;
        images.insert(w.image.clone(), image);
    }
    Ok(images)
}

fn connector_credentials(
    w: &Wanted,
    id: &str,
    conn: &crate::config::ConnectorConfig,
    secrets: &SecretStore,
) -> Result<Option<image::Credentials>, PullError> {
    let (Some(username), Some(secret)) = (&conn.username, &conn.password_secret) else {
        return Ok(None);
    };
    let value = secrets
        .get(crate::pipeline::expr::SecretScope::Project, secret)
        .ok_or_else(|| PullError::ConnectorSecret {
            step: w.step.clone(),
            image: w.image.clone(),
            connector: id.to_string(),
            secret: secret.clone(),
        })?;
    Ok(Some(image::Credentials {
        username: username.clone(),
        password: value.expose().to_string(),
    }))
}

/// Reports pulls: to `forward` (the terminal's bars or lines) when given,
/// else one line per image on stderr; and as `pull_progress` events.
/// Image names are masked: a reference may be built from a secret.
pub struct Reporter {
    pub quiet: bool,
    pub events: Option<Arc<EventWriter>>,
    pub forward: Option<Arc<dyn Progress>>,
    masker: Masker,
    layers: Mutex<HashMap<Digest, LayerSeen>>,
}

/// What the events know of a layer being pulled.
struct LayerSeen {
    image: String,
    size: Option<u64>,
    /// Bytes at the last `downloading` event.
    reported: u64,
}

/// A layer's `downloading` events come every tenth of it (at least this
/// many bytes apart), so a large pull writes a few dozen lines, not
/// thousands.
const EVENT_STEP_MIN: u64 = 64 << 10;

impl Reporter {
    pub fn new(
        quiet: bool,
        events: Option<Arc<EventWriter>>,
        forward: Option<Arc<dyn Progress>>,
        masker: Masker,
    ) -> Self {
        Reporter {
            quiet,
            events,
            forward,
            masker,
            layers: Mutex::new(HashMap::new()),
        }
    }

    fn emit(
        &self,
        image: &str,
        phase: PullPhase,
        digest: Option<&Digest>,
        done: u64,
        total: Option<u64>,
    ) {
        if let Some(events) = &self.events {
            let _ = events.emit(&Event::PullProgress {
                image: image.to_string(),
                phase,
                digest: digest.map(|d| d.to_string()),
                done_bytes: done,
                total_bytes: total,
            });
        }
    }

    fn lines(&self) -> bool {
        !self.quiet && self.forward.is_none()
    }

    fn layers(&self) -> std::sync::MutexGuard<'_, HashMap<Digest, LayerSeen>> {
        self.layers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Progress for Reporter {
    fn image_started(&self, image: &str) {
        let shown = self.masker.mask(image);
        if let Some(f) = &self.forward {
            f.image_started(&shown);
        } else if self.lines() {
            eprintln!("pulling {shown}");
        }
        self.emit(image, PullPhase::Resolving, None, 0, None);
    }

    fn layer_started(&self, image: &str, layer: &Digest, size: u64) {
        if let Some(f) = &self.forward {
            f.layer_started(&self.masker.mask(image), layer, size);
        }
        self.layers().insert(
            layer.clone(),
            LayerSeen {
                image: image.to_string(),
                size: Some(size),
                reported: 0,
            },
        );
        self.emit(image, PullPhase::Downloading, Some(layer), 0, Some(size));
    }

    fn layer_progress(&self, layer: &Digest, done: u64) {
        if let Some(f) = &self.forward {
            f.layer_progress(layer, done);
        }
        let due = {
            let mut layers = self.layers();
            let Some(seen) = layers.get_mut(layer) else {
                return;
            };
            let step = (seen.size.unwrap_or(0) / 10).max(EVENT_STEP_MIN);
            if done < seen.reported.saturating_add(step) {
                return;
            }
            seen.reported = done;
            (seen.image.clone(), seen.size)
        };
        self.emit(&due.0, PullPhase::Downloading, Some(layer), done, due.1);
    }

    fn layer_downloaded(&self, layer: &Digest) {
        if let Some(f) = &self.forward {
            f.layer_downloaded(layer);
        }
        let seen = self.layers().get(layer).map(|s| (s.image.clone(), s.size));
        if let Some((image, size)) = seen {
            let done = size.unwrap_or(0);
            self.emit(&image, PullPhase::Downloading, Some(layer), done, size);
        }
    }

    fn layer_cached(&self, image: &str, layer: &Digest) {
        if let Some(f) = &self.forward {
            f.layer_cached(&self.masker.mask(image), layer);
        }
        self.layers().insert(
            layer.clone(),
            LayerSeen {
                image: image.to_string(),
                size: None,
                reported: 0,
            },
        );
        self.emit(image, PullPhase::Cached, Some(layer), 0, None);
    }

    fn layer_applied(&self, layer: &Digest) {
        if let Some(f) = &self.forward {
            f.layer_applied(layer);
        }
        let seen = self.layers().remove(layer);
        if let Some(seen) = seen {
            let done = seen.size.unwrap_or(0);
            self.emit(
                &seen.image,
                PullPhase::Extracting,
                Some(layer),
                done,
                seen.size,
            );
        }
    }

    fn image_done(&self, summary: &PullSummary) {
        let shown = PullSummary {
            image: self.masker.mask(&summary.image).into_owned(),
            ..summary.clone()
        };
        if let Some(f) = &self.forward {
            f.image_done(&shown);
        } else if self.lines() {
            eprintln!(
                "pulled {} ({} layers, {} downloaded, {:.1}s)",
                shown.image,
                summary.layers,
                summary.layers_downloaded,
                summary.elapsed.as_secs_f64()
            );
        }
        self.emit(
            &summary.image,
            PullPhase::Done,
            None,
            summary.bytes_downloaded,
            None,
        );
    }
}
