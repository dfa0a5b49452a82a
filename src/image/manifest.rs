//! Manifest, index and config documents (OCI and Docker v2), parsed
//! defensively: size cap, no type confusion, no schema1.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::platform::Platform;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Everything we send in `Accept`.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";
/// Cap for manifests and configs (containerd's MaxManifestSize).
pub const MAX_DOCUMENT_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {digest} is larger than the 4 MiB limit")]
    TooLarge { digest: String },
    #[error("cannot parse manifest {digest}")]
    Parse {
        digest: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest {digest} uses docker schema 1, which corral does not support; re-push the image with a current docker, podman or skopeo")]
    Schema1 { digest: String },
    #[error("manifest {digest} has both `manifests` and `layers`; refusing an ambiguous document")]
    Ambiguous { digest: String },
    #[error("manifest {digest} has media type {found} but was referenced as {expected}")]
    MediaTypeMismatch {
        digest: String,
        expected: String,
        found: String,
    },
    #[error("manifest {digest} is neither an image index nor an image manifest (media type {media_type:?})")]
    UnknownKind {
        digest: String,
        media_type: Option<String>,
    },
    #[error("image manifest {digest} has no config descriptor")]
    MissingConfig { digest: String },
    #[error("cannot parse image config {digest}")]
    ParseConfig {
        digest: String,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType", default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RawDocument {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default, rename = "fsLayers")]
    fs_layers: Option<serde_json::Value>,
}

/// A parsed manifest document.
#[derive(Debug, Clone)]
pub enum Document {
    Index(Vec<Descriptor>),
    Manifest {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

/// Parses a manifest or index. `expected` is the media type it was
/// referenced with (descriptor or `Content-Type`), if any.
pub fn parse_document(
    digest: &Digest,
    bytes: &[u8],
    expected: Option<&str>,
) -> Result<Document, ManifestError> {
    let d = || digest.to_string();
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(ManifestError::TooLarge { digest: d() });
    }
    let raw: RawDocument =
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Parse {
            digest: d(),
            source,
        })?;
    let declared = raw.media_type.as_deref().filter(|m| !m.is_empty());
    let schema1 = raw.schema_version == Some(1)
        || raw.fs_layers.is_some()
        || declared.is_some_and(|m| m.contains("distribution.manifest.v1"))
        || expected
            .is_some_and(|m| m.contains("distribution.manifest.v1") || m.contains("prettyjws"));
    if schema1 {
        return Err(ManifestError::Schema1 { digest: d() });
    }
    if raw.manifests.is_some() && (raw.layers.is_some() || raw.config.is_some()) {
        return Err(ManifestError::Ambiguous { digest: d() });
    }
    if let (Some(declared), Some(expected)) = (declared, expected.filter(|e| is_known(e))) {
        if is_index(declared) != is_index(expected) {
            return Err(ManifestError::MediaTypeMismatch {
                digest: d(),
                expected: expected.to_string(),
                found: declared.to_string(),
            });
        }
    }
    // The declared type wins; then the one we were told; then the structure.
    let kind = declared.or(expected.filter(|e| is_known(e)));
    let index = match kind {
        Some(m) if is_index(m) => true,
        Some(m) if is_manifest(m) => false,
        Some(other) if declared.is_some() => {
            return Err(ManifestError::UnknownKind {
                digest: d(),
                media_type: Some(other.to_string()),
            })
        }
        _ => {
            if raw.manifests.is_some() {
                true
            } else if raw.layers.is_some() {
                false
            } else {
                return Err(ManifestError::UnknownKind {
                    digest: d(),
                    media_type: None,
                });
            }
        }
    };
    if index {
        Ok(Document::Index(raw.manifests.unwrap_or_default()))
    } else {
        let config = raw
            .config
            .ok_or_else(|| ManifestError::MissingConfig { digest: d() })?;
        Ok(Document::Manifest {
            config,
            layers: raw.layers.unwrap_or_default(),
        })
    }
}

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

fn is_known(media_type: &str) -> bool {
    is_index(media_type) || is_manifest(media_type)
}

/// The parts of an image config file we use.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct RunConfig {
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

pub fn parse_config(digest: &Digest, bytes: &[u8]) -> Result<ConfigFile, ManifestError> {
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(ManifestError::TooLarge {
            digest: digest.to_string(),
        });
    }
    serde_json::from_slice(bytes).map_err(|source| ManifestError::ParseConfig {
        digest: digest.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(bytes: &[u8]) -> Digest {
        Digest::sha256_of(bytes)
    }

    const DESC: &str = r#"{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","size":3}"#;

    #[test]
    fn parses_index_and_manifest() {
        let idx =
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{DESC}]}}"#);
        assert!(matches!(
            parse_document(&d(b""), idx.as_bytes(), None).unwrap(),
            Document::Index(v) if v.len() == 1
        ));
        let man = format!(r#"{{"schemaVersion":2,"config":{DESC},"layers":[{DESC},{DESC}]}}"#);
        match parse_document(&d(b""), man.as_bytes(), Some(DOCKER_MANIFEST)).unwrap() {
            Document::Manifest { layers, .. } => assert_eq!(layers.len(), 2),
            other => panic!("{other:?}"),
        }
        // No mediaType and no hint: decided by structure.
        let bare = r#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(
            parse_document(&d(b""), bare.as_bytes(), Some("application/json")).unwrap(),
            Document::Index(_)
        ));
    }

    #[test]
    fn rejects_dangerous_documents() {
        let both = format!(r#"{{"schemaVersion":2,"manifests":[{DESC}],"layers":[{DESC}]}}"#);
        assert!(matches!(
            parse_document(&d(b""), both.as_bytes(), None),
            Err(ManifestError::Ambiguous { .. })
        ));
        let s1 = r#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert!(matches!(
            parse_document(&d(b""), s1.as_bytes(), None),
            Err(ManifestError::Schema1 { .. })
        ));
        let confused = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert!(matches!(
            parse_document(&d(b""), confused.as_bytes(), Some(OCI_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        let huge = vec![b' '; (MAX_DOCUMENT_BYTES + 1) as usize];
        assert!(matches!(
            parse_document(&d(b""), &huge, None),
            Err(ManifestError::TooLarge { .. })
        ));
        let bad_digest = r#"{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:../../x","size":1}]}"#;
        assert!(parse_document(&d(b""), bad_digest.as_bytes(), None).is_err());
    }

    #[test]
    fn parses_config() {
        let cfg = br#"{"architecture":"amd64","os":"linux","config":{"Env":["A=1"],"Cmd":["sh"],"WorkingDir":"/w"},"rootfs":{"type":"layers","diff_ids":["sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"]}}"#;
        let c = parse_config(&d(cfg), cfg).unwrap();
        assert_eq!(c.rootfs.diff_ids.len(), 1);
        assert_eq!(c.config.unwrap().cmd.unwrap(), vec!["sh".to_string()]);
    }
}
