//! Shared by the unpack test binaries: an in-memory layer builder (including
//! raw headers the `tar` builder refuses to write) and a temp dir holding a
//! rootfs next to host sentinels that must never change.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use corral::image::unpack::{self, AppliedLayer, Ownership, UnpackError, UnpackOptions};
use tar::{EntryType, Header};

pub const MTIME: u64 = 1_600_000_000;

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Builds a layer tar in memory.
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

fn header(kind: EntryType, mode: u32) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h.set_size(0);
    h
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Self {
        Layer {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn add(mut self, mut h: Header, path: &str, data: &[u8]) -> Self {
        h.set_size(data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.add(header(EntryType::Directory, mode), path, b"")
    }

    pub fn dir_mtime(self, path: &str, mode: u32, mtime: u64) -> Self {
        let mut h = header(EntryType::Directory, mode);
        h.set_mtime(mtime);
        self.add(h, path, b"")
    }

    pub fn file(self, path: &str, mode: u32, data: &[u8]) -> Self {
        self.add(header(EntryType::Regular, mode), path, data)
    }

    pub fn file_owned(self, path: &str, mode: u32, uid: u64, gid: u64, data: &[u8]) -> Self {
        let mut h = header(EntryType::Regular, mode);
        h.set_uid(uid);
        h.set_gid(gid);
        self.add(h, path, data)
    }

    pub fn file_mtime(self, path: &str, mtime: u64) -> Self {
        let mut h = header(EntryType::Regular, 0o644);
        h.set_mtime(mtime);
        self.add(h, path, b"t")
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(EntryType::Symlink, 0o777);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(EntryType::Link, 0o644);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn node(self, path: &str, kind: EntryType, major: u32, minor: u32) -> Self {
        let mut h = header(kind, 0o620);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.add(h, path, b"")
    }

    /// An entry whose name and link name bytes go into the header verbatim
    /// (`../x`, `.`, ...), which `append_data` would refuse or rewrite.
    pub fn raw(mut self, name: &[u8], kind: EntryType, link: &[u8], data: &[u8]) -> Self {
        let mut h = header(
            kind,
            if kind == EntryType::Directory {
                0o755
            } else {
                0o644
            },
        );
        h.set_size(data.len() as u64);
        h.as_old_mut().name = [0; 100];
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname = [0; 100];
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    /// A raw header the caller prepared (checksum is set here).
    pub fn header(mut self, mut h: Header, data: &[u8]) -> Self {
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    /// A PAX `x` header with these records; it describes the next entry.
    pub fn pax(self, records: &[(&str, &[u8])]) -> Self {
        let mut body = Vec::new();
        for (key, value) in records {
            let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            write!(body, "{len} {key}=").unwrap();
            body.extend_from_slice(value);
            body.push(b'\n');
        }
        let mut h = header(EntryType::XHeader, 0o644);
        h.set_path("PaxHeaders/x").unwrap();
        h.set_size(body.len() as u64);
        self.header(h, &body)
    }

    /// The finished tar stream.
    pub fn tar(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }

    /// This layer's entries, then `next`'s (one end-of-archive marker).
    pub fn tar_then(self, next: Layer) -> Vec<u8> {
        let mut tar = self.tar();
        tar.truncate(tar.len() - 1024);
        tar.extend(next.tar());
        tar
    }

    pub fn gz(self) -> Vec<u8> {
        gzip(&self.tar())
    }
}

/// A PAX 1.0 sparse entry named `name`: `map` (decimal lines) padded to
/// 512 bytes, then `data`.
pub fn pax_sparse_1_0(name: &str, real_size: &str, map: &str, data: &[u8]) -> Layer {
    let mut body = map.as_bytes().to_vec();
    body.resize(map.len().div_ceil(512).max(1) * 512, 0);
    body.extend_from_slice(data);
    Layer::new()
        .pax(&[
            ("GNU.sparse.major", b"1"),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", name.as_bytes()),
            ("GNU.sparse.realsize", real_size.as_bytes()),
        ])
        .file("GNUSparseFile.0/stored-name", 0o644, &body)
}

/// A layer of one old-GNU sparse entry `name` as the `tar` builder writes
/// it from a file of `size` bytes holding `writes` (offset, bytes).
pub fn old_gnu_sparse_layer(name: &str, size: u64, writes: &[(u64, &[u8])]) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let src = tempfile::tempdir().unwrap();
    let sparse = src.path().join("sparse");
    let f = std::fs::File::create(&sparse).unwrap();
    f.set_len(size).unwrap();
    for (offset, data) in writes {
        f.write_at(data, *offset).unwrap();
    }
    let mut b = tar::Builder::new(Vec::new());
    b.sparse(true);
    b.append_path_with_name(&sparse, name).unwrap();
    let layer = b.into_inner().unwrap();
    assert!(
        layer.len() < 1 << 20,
        "the builder wrote an old-GNU sparse entry"
    );
    layer
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

pub fn opts() -> UnpackOptions {
    UnpackOptions {
        max_bytes: 1 << 30,
        max_entries: 1_000_000,
        ..UnpackOptions::for_current_user()
    }
}

/// What we compare to prove the host was not touched.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Node {
    pub kind: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub size: u64,
    pub ino: u64,
    pub content: Vec<u8>,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

pub type Snapshot = BTreeMap<PathBuf, Node>;

/// Everything under `dir` (not following symlinks), minus `skip`.
pub fn snapshot(dir: &Path, skip: Option<&Path>) -> Snapshot {
    let mut out = Snapshot::new();
    walk(dir, dir, skip, &mut out);
    out
}

fn walk(base: &Path, dir: &Path, skip: Option<&Path>, out: &mut Snapshot) {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for path in names {
        if Some(path.as_path()) == skip {
            continue;
        }
        let md = std::fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let (kind, content) = if ft.is_symlink() {
            (
                "symlink",
                std::fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            )
        } else if ft.is_dir() {
            ("dir", Vec::new())
        } else if ft.is_file() {
            let readable = md.mode() & 0o400 != 0 || is_root();
            (
                "file",
                if readable {
                    std::fs::read(&path).unwrap()
                } else {
                    Vec::new()
                },
            )
        } else {
            ("special", Vec::new())
        };
        let mut xattrs = Vec::new();
        if !ft.is_symlink() {
            if let Ok(list) = xattr_list(&path) {
                xattrs = list;
            }
        }
        out.insert(
            path.strip_prefix(base).unwrap().to_path_buf(),
            Node {
                kind: kind.into(),
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                mtime: (md.mtime(), md.mtime_nsec()),
                size: md.size(),
                ino: md.ino(),
                content,
                xattrs,
            },
        );
        if ft.is_dir() && (md.mode() & 0o500 == 0o500 || is_root()) {
            walk(base, &path, skip, out);
        }
    }
}

fn xattr_list(path: &Path) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut names = vec![0u8; 8192];
    let n = rustix::fs::llistxattr(path, &mut names[..])?;
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 8192];
        if let Ok(len) = rustix::fs::lgetxattr(path, name, &mut value[..]) {
            out.push((
                String::from_utf8_lossy(name).into_owned(),
                value[..len].to_vec(),
            ));
        }
    }
    Ok(out)
}

/// A temp dir with `root/` (the rootfs) next to `host/` sentinels.
pub struct Scene {
    pub tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub host: PathBuf,
    before: Snapshot,
    tmp_mode: u32,
}

impl Default for Scene {
    fn default() -> Self {
        Self::new()
    }
}

impl Scene {
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let host = tmp.path().join("host");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir_all(host.join("dir")).unwrap();
        std::fs::create_dir_all(host.join("etc")).unwrap();
        for (rel, mode, data) in [
            ("secret", 0o640, "top secret\n"),
            ("dir/f", 0o644, "important\n"),
            ("dir/important", 0o600, "keep me\n"),
            ("etc/passwd", 0o644, "root:x:0:0::/root:/bin/sh\n"),
            ("etc/shadow", 0o600, "root:*:1::::::\n"),
        ] {
            let p = host.join(rel);
            std::fs::write(&p, data).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::fs::set_permissions(host.join("dir"), std::fs::Permissions::from_mode(0o750)).unwrap();
        let before = snapshot(tmp.path(), Some(&root));
        let tmp_mode = std::fs::metadata("/tmp").unwrap().mode();
        Scene {
            tmp,
            root,
            host,
            before,
            tmp_mode,
        }
    }

    pub fn apply(&self, layer: &[u8]) -> Result<AppliedLayer, UnpackError> {
        self.apply_with(layer, &opts())
    }

    pub fn apply_with(&self, layer: &[u8], o: &UnpackOptions) -> Result<AppliedLayer, UnpackError> {
        let res = unpack::apply_layer(&self.root, layer, o);
        self.check_host();
        res
    }

    /// The sentinels are byte- and metadata-identical and nothing new
    /// appeared beside the root.
    pub fn check_host(&self) {
        let now = snapshot(self.tmp.path(), Some(&self.root));
        assert_eq!(self.before, now, "host sentinels changed");
        assert_eq!(std::fs::metadata("/tmp").unwrap().mode(), self.tmp_mode);
        assert!(!Path::new("/pwn").exists() && !Path::new("/tmp/pwn").exists());
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `rel` inside the root as the host path of the sentinel dir (for
    /// symlinks and hard links that name the host path absolutely).
    pub fn host_str(&self) -> String {
        self.host.to_str().unwrap().to_string()
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        let _ = unpack::remove_tree(&self.root);
    }
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

pub fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

pub fn ino(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).unwrap().ino()
}

pub fn squashing() -> bool {
    opts().ownership == Ownership::SquashToCaller
}
