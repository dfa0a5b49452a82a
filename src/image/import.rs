//! Offline import of an OCI layout directory, an oci-archive tar or a
//! docker-save tar. Tars are read in place (members found by seeking,
//! never extracted); every blob is verified before it enters the store.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::applier::LayerApplier;
use super::digest::{Digest, Hasher};
use super::manifest::{
    self, parse_config, parse_document, Descriptor, Document, MAX_DOCUMENT_BYTES,
};
use super::platform::Platform;
use super::progress::Progress;
use super::pull::{materialize, record, select_platform, Resolved};
use super::reference::Reference;
use super::store::Store;
use super::{Image, ImageError};

const MAX_INDEX_DEPTH: usize = 8;

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

/// Where members come from: a directory or a tar read in place.
enum Source {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        members: HashMap<String, (u64, u64)>,
    },
}

impl Source {
    fn open(path: &Path) -> Result<Source, ImportError> {
        let meta = std::fs::metadata(path).map_err(|source| ImportError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        if meta.is_dir() {
            return Ok(Source::Dir(path.to_path_buf()));
        }
        let scan_err = |source| ImportError::ScanTar {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(|source| ImportError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        let mut links = Vec::new();
        for entry in archive.entries_with_seek().map_err(scan_err)? {
            let entry = entry.map_err(scan_err)?;
            let name = normalize(&entry.path().map_err(scan_err)?);
            let Some(name) = name else { continue };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    members.insert(name, (entry.raw_file_position(), entry.size()));
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Ok(Some(target)) = entry.link_name() {
                        links.push((name, entry.header().entry_type(), target.into_owned()));
                    }
                }
                _ => {}
            }
        }
        // docker-save dedupes layers with links; resolve them one level deep.
        for (name, kind, target) in links {
            let resolved = if kind == tar::EntryType::Symlink {
                let base = Path::new(&name).parent().unwrap_or(Path::new(""));
                normalize(&base.join(&target))
            } else {
                normalize(&target)
            };
            if let Some(found) = resolved.and_then(|t| members.get(&t).copied()) {
                members.insert(name, found);
            }
        }
        Ok(Source::Tar {
            path: path.to_path_buf(),
            members,
        })
    }

    fn exists(&self, member: &str) -> bool {
        match self {
            Source::Dir(root) => safe_join(root, member).is_some_and(|p| p.is_file()),
            Source::Tar { members, .. } => members.contains_key(member),
        }
    }

    /// A reader of the member and its size.
    fn reader(&self, member: &str) -> Result<(Box<dyn Read>, u64), ImportError> {
        let missing = || ImportError::MissingMember {
            member: member.to_string(),
        };
        let read_err = |source| ImportError::ReadMember {
            member: member.to_string(),
            source,
        };
        match self {
            Source::Dir(root) => {
                let path = safe_join(root, member).ok_or_else(missing)?;
                let file = File::open(&path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => missing(),
                    _ => read_err(e),
                })?;
                let size = file.metadata().map_err(read_err)?.len();
                Ok((Box::new(file), size))
            }
            Source::Tar { path, members } => {
                let (offset, size) = *members.get(member).ok_or_else(missing)?;
                let mut file = File::open(path).map_err(read_err)?;
                file.seek(SeekFrom::Start(offset)).map_err(read_err)?;
                Ok((Box::new(file.take(size)), size))
            }
        }
    }

    fn read_small(&self, member: &str) -> Result<Vec<u8>, ImportError> {
        let (reader, size) = self.reader(member)?;
        if size > MAX_DOCUMENT_BYTES {
            return Err(ImportError::TooLarge {
                member: member.to_string(),
            });
        }
        let mut out = Vec::with_capacity(size as usize);
        reader
            .take(MAX_DOCUMENT_BYTES)
            .read_to_end(&mut out)
            .map_err(|source| ImportError::ReadMember {
                member: member.to_string(),
                source,
            })?;
        Ok(out)
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, member: &str) -> Result<T, ImportError> {
        let bytes = self.read_small(member)?;
        serde_json::from_slice(&bytes).map_err(|source| ImportError::ParseMember {
            member: member.to_string(),
            source,
        })
    }
}

/// `./a//b` → `a/b`; `None` for anything escaping with `..` or empty.
fn normalize(path: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::Prefix(_) => return None,
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn safe_join(root: &Path, member: &str) -> Option<PathBuf> {
    let clean = normalize(Path::new(member))?;
    (clean == member.trim_start_matches("./")).then(|| root.join(clean))
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
        oci_images(&source, store).map_err(wrap)?
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

fn oci_images(
    source: &Source,
    store: &Store,
) -> Result<Vec<(Option<String>, Resolved)>, ImportError> {
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
        out.push((name, resolve_oci(source, store, top, &want)?));
    }
    Ok(out)
}

fn resolve_oci(
    source: &Source,
    store: &Store,
    top: &Descriptor,
    want: &Platform,
) -> Result<Resolved, ImportError> {
    let mut desc = top.clone();
    let mut index_digest = None;
    for _ in 0..=MAX_INDEX_DEPTH {
        let member = blob_member(&desc.digest);
        let bytes = read_verified(source, &desc)?;
        store_small(store, &desc.digest, &bytes, &member)?;
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
                store_small(store, &config.digest, &config_bytes, &config_member)?;
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

fn store_small(
    store: &Store,
    digest: &Digest,
    bytes: &[u8],
    member: &str,
) -> Result<(), ImportError> {
    store
        .write_blob(digest, bytes)
        .map_err(|e| ImportError::WriteBlob {
            path: PathBuf::from(member),
            source: std::io::Error::other(e.to_string()),
        })
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

fn hash_into_tmp(
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

#[derive(Deserialize)]
struct DockerSaveEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn docker_images(
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
        store_small(store, &config_digest, &config_bytes, &entry.config)?;
        let config = parse_config(&config_digest, &config_bytes).map_err(|source| {
            ImportError::Manifest {
                member: entry.config.clone(),
                source,
            }
        })?;
        let mut layers = Vec::new();
        for member in &entry.layers {
            let (reader, size) = source.reader(member)?;
            let (digest, tmp) =
                hash_into_tmp(reader, store, super::digest::Algorithm::Sha256, member)?;
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
        store_small(store, &manifest_digest, &manifest_bytes, "manifest.json")?;
        let name = entry.repo_tags.and_then(|t| t.into_iter().next());
        out.push((
            name,
            Resolved {
                manifest_digest,
                index_digest: None,
                config_digest,
                platform: Some(Platform {
                    os: config.os.clone(),
                    architecture: config.architecture.clone(),
                    variant: config.variant.clone(),
                })
                .filter(|p| !p.os.is_empty()),
                config,
                layers,
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

#[cfg(test)]
mod tests {
    use super::*;

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
