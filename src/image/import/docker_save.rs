//! docker-save archives: `manifest.json` with `Config`, `RepoTags` and
//! `Layers`; a synthetic Docker v2 manifest makes the image look pulled.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;

use super::source::Source;
use super::{hash_into_tmp, ImportError};
use crate::image::digest::{Algorithm, Digest};
use crate::image::manifest::{self, parse_config, Descriptor};
use crate::image::platform::Platform;
use crate::image::progress::Progress;
use crate::image::pull::Resolved;
use crate::image::store::Store;

#[derive(Deserialize)]
struct DockerSaveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

pub(super) fn docker_images(
    source: &Source,
    store: &Store,
    progress: &dyn Progress,
) -> Result<Vec<(Option<String>, Resolved)>, ImportError> {
    let entries: Vec<DockerSaveEntry> = source.read_json("manifest.json")?;
    let mut out = Vec::new();
    for entry in entries {
        let config_bytes = source.read_small(&entry.config)?;
        let config_digest = Digest::sha256_of(&config_bytes);
        // Older docker names the config by its hex; check it when it does.
        let stem = Path::new(&entry.config)
            .file_name()
            .map(|f| f.to_string_lossy().trim_end_matches(".json").to_string())
            .unwrap_or_default();
        if stem.len() == 64
            && stem.bytes().all(|b| b.is_ascii_hexdigit())
            && stem != config_digest.hex()
        {
            return Err(ImportError::DigestMismatch {
                member: entry.config.clone(),
                expected: format!("sha256:{stem}"),
                actual: config_digest.to_string(),
            });
        }
        let config = parse_config(&config_digest, &config_bytes).map_err(|source| {
            ImportError::Manifest {
                member: entry.config.clone(),
                source,
            }
        })?;
        let mut layers = Vec::new();
        for member in &entry.layers {
            let (reader, size) = source.reader(member)?;
            let (digest, tmp) = hash_into_tmp(reader, store, Algorithm::Sha256, member)?;
            if store.has_blob(&digest) {
                let _ = std::fs::remove_file(&tmp);
            } else {
                progress.layer_started("", &digest, size);
                store
                    .commit_blob(&digest, &tmp)
                    .map_err(|e| ImportError::WriteBlob {
                        path: tmp.clone(),
                        source: std::io::Error::other(e.to_string()),
                    })?;
                progress.layer_downloaded(&digest);
            }
            let media_type = sniff_layer_type(&store.blob_path(&digest));
            layers.push(Descriptor {
                media_type: media_type.to_string(),
                digest,
                size,
                platform: None,
                annotations: Default::default(),
                urls: Vec::new(),
            });
        }
        // A synthetic Docker v2 manifest makes the image look pulled.
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest::DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": config_digest.to_string(),
                "size": config_bytes.len(),
            },
            "layers": layers,
        });
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|source| ImportError::ParseMember {
                member: "manifest.json".to_string(),
                source,
            })?;
        let manifest_digest = Digest::sha256_of(&manifest_bytes);
        let name = entry.repo_tags.and_then(|t| t.into_iter().next());
        out.push((
            name,
            Resolved {
                manifest_digest: manifest_digest.clone(),
                index_digest: None,
                config_digest: config_digest.clone(),
                platform: Some(Platform {
                    os: config.os.clone(),
                    architecture: config.architecture.clone(),
                    variant: config.variant.clone(),
                })
                .filter(|p| !p.os.is_empty()),
                config,
                layers,
                documents: vec![
                    (config_digest.clone(), config_bytes),
                    (manifest_digest.clone(), manifest_bytes),
                ],
            },
        ));
    }
    Ok(out)
}

fn sniff_layer_type(path: &Path) -> &'static str {
    let mut magic = [0u8; 4];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .unwrap_or(0);
    match &magic[..n] {
        [0x1f, 0x8b, ..] => "application/vnd.docker.image.rootfs.diff.tar.gzip",
        [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    }
}
