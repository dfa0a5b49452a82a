//! Offline import of an OCI layout directory, an oci-archive tar or a
//! docker-save tar. Tars are read in place (members found by seeking,
//! never extracted); every blob is verified before it enters the store.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::applier::LayerApplier;
use super::digest::{Digest, Hasher};
use super::manifest::{self, parse_config, parse_document, Descriptor, Document};
use super::platform::select_platform;
use super::platform::Platform;
use super::progress::Progress;
use super::pull::{materialize, record, Resolved};
use super::reference::Reference;
use super::store::Store;
use super::{Image, ImageError};

const MAX_INDEX_DEPTH: usize = 8;

mod docker_save;
mod source;

use self::docker_save::docker_images;
use self::source::Source;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the tar members of {path}")]
    ScanTar {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is neither an OCI layout (oci-layout + index.json) nor a docker-save archive (manifest.json)")]
    UnknownFormat { path: PathBuf },
    #[error("{member} is missing from the archive")]
    MissingMember { member: String },
    #[error("cannot read {member}")]
    ReadMember {
        member: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{member} is larger than the 4 MiB limit")]
    TooLarge { member: String },
    #[error("cannot parse {member}")]
    ParseMember {
        member: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{member} does not match its digest {expected} (got {actual})")]
    DigestMismatch {
        member: String,
        expected: String,
        actual: String,
    },
    #[error("{member} has {actual} bytes but its descriptor says {expected}")]
    SizeMismatch {
        member: String,
        expected: u64,
        actual: u64,
    },
    #[error("invalid manifest {member}")]
    Manifest {
        member: String,
        #[source]
        source: manifest::ManifestError,
    },
    #[error("the archive holds no image")]
    Empty,
    #[error("image {index} in the archive has no name; pass --name REPO:TAG")]
    NoName { index: usize },
    #[error("--name can only name one image, but the archive holds {count}")]
    NameForMany { count: usize },
    #[error("no platform {platform} in the archive's index (available: {available})")]
    NoMatchingPlatform { platform: String, available: String },
    #[error("image index nesting is deeper than {MAX_INDEX_DEPTH}")]
    IndexTooDeep,
    #[error("cannot write {path}")]
    WriteBlob {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn blob_member(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().name(), digest.hex())
}

/// Imports every image of the archive or layout at `path`. `name` names a
/// single image (needed when the archive carries no usable name).
pub fn import_path(
    store: &Store,
    applier: &Arc<dyn LayerApplier>,
    path: &Path,
    name: Option<&str>,
    progress: &dyn Progress,
) -> Result<Vec<Image>, ImageError> {
    let wrap = |source| ImageError::Import {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let source = Source::open(path).map_err(wrap)?;
    let _gc = store.lock("gc", false)?;
    let images = if source.exists("oci-layout") && source.exists("index.json") {
        oci_images(&source).map_err(wrap)?
    } else if source.exists("manifest.json") {
        docker_images(&source, store, progress).map_err(wrap)?
    } else {
        return Err(wrap(ImportError::UnknownFormat {
            path: path.to_path_buf(),
        }));
    };
    if images.is_empty() {
        return Err(wrap(ImportError::Empty));
    }
    if name.is_some() && images.len() > 1 {
        return Err(wrap(ImportError::NameForMany {
            count: images.len(),
        }));
    }
    let runtime = super::runtime()?;
    let mut out = Vec::new();
    for (i, (found_name, resolved)) in images.into_iter().enumerate() {
        let chosen = name
            .map(str::to_string)
            .or(found_name)
            .ok_or_else(|| wrap(ImportError::NoName { index: i }))?;
        let reference = Reference::parse(&chosen)?;
        progress.image_started(&reference.to_string());
        for layer in &resolved.layers {
            copy_blob(&source, store, &layer.digest, Some(layer.size), progress).map_err(wrap)?;
        }
        runtime.block_on(materialize(
            None, store, applier, &reference, &resolved, progress,
        ))?;
        let entry = record(store, &reference.to_string(), &resolved)?;
        out.push(Image::from_entry(store, &reference, &entry)?);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

fn oci_images(source: &Source) -> Result<Vec<(Option<String>, Resolved)>, ImportError> {
    let index: OciIndex = source.read_json("index.json")?;
    let want = Platform::host();
    let mut out = Vec::new();
    for top in &index.manifests {
        let name = top
            .annotations
            .get("io.containerd.image.name")
            .or_else(|| top.annotations.get("org.opencontainers.image.ref.name"))
            .filter(|n| Reference::parse(n).is_ok() && (n.contains('/') || n.contains(':')))
            .cloned();
        out.push((name, resolve_oci(source, top, &want)?));
    }
    Ok(out)
}

fn resolve_oci(
    source: &Source,
    top: &Descriptor,
    want: &Platform,
) -> Result<Resolved, ImportError> {
    let mut desc = top.clone();
    let mut index_digest = None;
    let mut documents = Vec::new();
    for _ in 0..=MAX_INDEX_DEPTH {
        let member = blob_member(&desc.digest);
        let bytes = read_verified(source, &desc)?;
        documents.push((desc.digest.clone(), bytes.clone()));
        let media = Some(desc.media_type.as_str()).filter(|m| !m.is_empty());
        let doc = parse_document(&desc.digest, &bytes, media).map_err(|source| {
            ImportError::Manifest {
                member: member.clone(),
                source,
            }
        })?;
        match doc {
            Document::Index(entries) => {
                index_digest.get_or_insert(desc.digest.clone());
                desc = select_platform(&entries, want)
                    .ok_or_else(|| ImportError::NoMatchingPlatform {
                        platform: want.to_string(),
                        available: entries
                            .iter()
                            .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?
                    .clone();
            }
            Document::Manifest { config, layers } => {
                let config_bytes = read_verified(source, &config)?;
                let config_member = blob_member(&config.digest);
                documents.push((config.digest.clone(), config_bytes.clone()));
                let parsed = parse_config(&config.digest, &config_bytes).map_err(|source| {
                    ImportError::Manifest {
                        member: config_member,
                        source,
                    }
                })?;
                return Ok(Resolved {
                    manifest_digest: desc.digest.clone(),
                    index_digest,
                    config_digest: config.digest,
                    platform: desc.platform.clone().or_else(|| {
                        Some(Platform {
                            os: parsed.os.clone(),
                            architecture: parsed.architecture.clone(),
                            variant: parsed.variant.clone(),
                        })
                        .filter(|p| !p.os.is_empty())
                    }),
                    config: parsed,
                    layers,
                    documents,
                });
            }
        }
    }
    Err(ImportError::IndexTooDeep)
}

fn read_verified(source: &Source, desc: &Descriptor) -> Result<Vec<u8>, ImportError> {
    let member = blob_member(&desc.digest);
    let bytes = source.read_small(&member)?;
    if bytes.len() as u64 != desc.size {
        return Err(ImportError::SizeMismatch {
            member,
            expected: desc.size,
            actual: bytes.len() as u64,
        });
    }
    if !desc.digest.verify(&bytes) {
        return Err(ImportError::DigestMismatch {
            member,
            expected: desc.digest.to_string(),
            actual: Digest::sha256_of(&bytes).to_string(),
        });
    }
    Ok(bytes)
}

/// Copies a blob member into the store, hashing as it goes. `expected_size`
/// is enforced when known.
fn copy_blob(
    source: &Source,
    store: &Store,
    digest: &Digest,
    expected_size: Option<u64>,
    progress: &dyn Progress,
) -> Result<(), ImportError> {
    if store.has_blob(digest) {
        return Ok(());
    }
    let member = blob_member(digest);
    let (reader, size) = source.reader(&member)?;
    if let Some(expected) = expected_size.filter(|e| *e != size) {
        return Err(ImportError::SizeMismatch {
            member,
            expected,
            actual: size,
        });
    }
    progress.layer_started("", digest, size);
    let (actual, tmp) = hash_into_tmp(reader, store, digest.algorithm(), &member)?;
    if actual != *digest {
        let _ = std::fs::remove_file(&tmp);
        return Err(ImportError::DigestMismatch {
            member,
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    store
        .commit_blob(digest, &tmp)
        .map_err(|e| ImportError::WriteBlob {
            path: tmp.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    progress.layer_downloaded(digest);
    Ok(())
}

pub(super) fn hash_into_tmp(
    mut reader: Box<dyn Read>,
    store: &Store,
    algorithm: super::digest::Algorithm,
    member: &str,
) -> Result<(Digest, PathBuf), ImportError> {
    let tmp = store.staging_path("import");
    let write_err = |source| ImportError::WriteBlob {
        path: tmp.clone(),
        source,
    };
    let mut out =
        std::io::BufWriter::with_capacity(1 << 20, File::create(&tmp).map_err(write_err)?);
    let mut hasher = Hasher::new(algorithm);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|source| ImportError::ReadMember {
                member: member.to_string(),
                source,
            })?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(write_err)?;
    }
    out.flush().map_err(write_err)?;
    Ok((hasher.finish(), tmp))
}

#[cfg(test)]
mod tests {
    use super::source::{normalize, safe_join};
    use std::path::{Path, PathBuf};

    #[test]
    fn normalize_member_names() {
        assert_eq!(normalize(Path::new("./a//b")), Some("a/b".into()));
        assert_eq!(normalize(Path::new("a/../b")), Some("b".into()));
        assert_eq!(normalize(Path::new("../x")), None);
        assert_eq!(normalize(Path::new("./")), None);
        assert!(safe_join(Path::new("/r"), "../etc/passwd").is_none());
        assert!(safe_join(Path::new("/r"), "a/../../x").is_none());
        assert_eq!(
            safe_join(Path::new("/r"), "blobs/x"),
            Some(PathBuf::from("/r/blobs/x"))
        );
    }
}
