//! Pulling a stage's images before it starts: all at once, with a line per
//! image on stderr and `pull_progress` events.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::events::{Event, EventWriter, PullPhase};
use crate::config::Config;
use crate::image::{self, Digest, Image, Mirror, Progress, PullSummary, RegistryOptions, Store};
use crate::pipeline::model::PullPolicy as ModelPolicy;
use crate::pipeline::secret::SecretStore;

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
}

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
) -> Result<BTreeMap<String, Image>, PullError> {
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
    let results = runtime.block_on(futures_util::future::join_all(
        wanted
            .iter()
            .zip(&pullers)
            .map(|(w, p)| p.ensure(&w.image, policy(w.policy), reporter)),
    ));
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

/// Reports pulls on stderr (one line when an image starts and when it is
/// ready) and as events.
pub struct Reporter {
    pub quiet: bool,
    pub events: Option<Arc<EventWriter>>,
}

impl Reporter {
    fn emit(&self, image: &str, phase: PullPhase, digest: Option<&Digest>, done: u64) {
        if let Some(events) = &self.events {
            let _ = events.emit(&Event::PullProgress {
                image: image.to_string(),
                phase,
                digest: digest.map(|d| d.to_string()),
                done_bytes: done,
                total_bytes: None,
            });
        }
    }
}

impl Progress for Reporter {
    fn image_started(&self, image: &str) {
        if !self.quiet {
            eprintln!("pulling {image}");
        }
        self.emit(image, PullPhase::Resolving, None, 0);
    }

    fn layer_started(&self, image: &str, layer: &Digest, _size: u64) {
        self.emit(image, PullPhase::Downloading, Some(layer), 0);
    }

    fn image_done(&self, summary: &PullSummary) {
        if !self.quiet {
            eprintln!(
                "pulled {} ({} layers, {} downloaded, {:.1}s)",
                summary.image,
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
        );
    }
}
