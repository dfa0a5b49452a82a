//! Members of an import source: files of a directory, or members of a tar
//! found by seeking (never extracted).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use super::ImportError;
use crate::image::manifest::MAX_DOCUMENT_BYTES;

/// Where members come from: a directory or a tar read in place.
pub(super) enum Source {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        members: HashMap<String, (u64, u64)>,
    },
}

impl Source {
    pub(super) fn open(path: &Path) -> Result<Source, ImportError> {
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

    pub(super) fn exists(&self, member: &str) -> bool {
        match self {
            Source::Dir(root) => safe_join(root, member).is_some_and(|p| p.is_file()),
            Source::Tar { members, .. } => members.contains_key(member),
        }
    }

    /// A reader of the member and its size.
    pub(super) fn reader(&self, member: &str) -> Result<(Box<dyn Read>, u64), ImportError> {
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

    pub(super) fn read_small(&self, member: &str) -> Result<Vec<u8>, ImportError> {
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

    pub(super) fn read_json<T: for<'de> Deserialize<'de>>(
        &self,
        member: &str,
    ) -> Result<T, ImportError> {
        let bytes = self.read_small(member)?;
        serde_json::from_slice(&bytes).map_err(|source| ImportError::ParseMember {
            member: member.to_string(),
            source,
        })
    }
}

/// `./a//b` → `a/b`; `None` for anything escaping with `..` or empty.
pub(super) fn normalize(path: &Path) -> Option<String> {
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

pub(super) fn safe_join(root: &Path, member: &str) -> Option<PathBuf> {
    let clean = normalize(Path::new(member))?;
    (clean == member.trim_start_matches("./")).then(|| root.join(clean))
}
