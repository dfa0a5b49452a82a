//! Helpers of tests/image_differential.rs: runs the odd-image generator,
//! drives corral, and snapshots unpacked trees (types, modes, owners as each
//! tool records them rootless, link targets, contents, xattrs, mtimes,
//! hard-link groups) for comparison.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use corral::image::Digest;

use crate::common;

const GENERATOR: &str = include_str!("../../scripts/fixtures/img_odd.py");
const LAYOUT_LIB: &str = include_str!("../../scripts/fixtures/img_build.py");

/// (kind, mode, owner, link target or content digest, user xattrs, mtime).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub owner: (u32, u32),
    pub data: String,
    pub xattrs: Vec<(String, Vec<u8>)>,
    pub mtime: (i64, i64),
    pub ino: u64,
}

/// The xattrs each tool uses to record the image's owner when rootless:
/// corral `user.containers.override_stat` = "uid:gid:0mode", umoci
/// `user.rootlesscontainers` = a protobuf (uid = field 1, gid = field 2;
/// absent or 0xffffffff means 0, the caller).
const CORRAL_OWNER: &str = "user.containers.override_stat";
const UMOCI_OWNER: &str = "user.rootlesscontainers";

fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut names = vec![0u8; 16384];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names[..]) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 16384];
        let len = rustix::fs::lgetxattr(path, name, &mut value[..]).unwrap();
        out.push((
            String::from_utf8_lossy(name).into_owned(),
            value[..len].to_vec(),
        ));
    }
    out.sort();
    out
}

fn varint(bytes: &mut impl Iterator<Item = u8>) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    for b in bytes.by_ref() {
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    v
}

/// The image owner a rootless tree records for one entry.
fn recorded_owner(attrs: &[(String, Vec<u8>)]) -> (u32, u32) {
    for (k, v) in attrs {
        if k == CORRAL_OWNER {
            let text = String::from_utf8_lossy(v);
            let mut it = text.split(':');
            let uid = it.next().unwrap().parse().unwrap();
            let gid = it.next().unwrap().parse().unwrap();
            return (uid, gid);
        }
        if k == UMOCI_OWNER {
            let (mut uid, mut gid) = (0u32, 0u32);
            let mut it = v.iter().copied();
            while let Some(key) = it.next() {
                let value = varint(&mut it) as u32;
                let value = if value == u32::MAX { 0 } else { value };
                match key >> 3 {
                    1 => uid = value,
                    2 => gid = value,
                    _ => panic!("unexpected field in {UMOCI_OWNER}: {v:?}"),
                }
            }
            return (uid, gid);
        }
    }
    (0, 0)
}

/// Every entry under `root` by relative path. Rootless, unreadable
/// directories and files (modes 000, 0555) are opened up while read and
/// restored; owners are the recorded image owners and the real owner must
/// be the caller.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
        let meta = std::fs::symlink_metadata(dir).unwrap();
        let opened = !common::is_root() && meta.mode() & 0o700 != 0o700;
        if opened {
            std::fs::set_permissions(dir, PermissionsExt::from_mode(0o700)).unwrap();
        }
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let md = std::fs::symlink_metadata(&path).unwrap();
            let ft = md.file_type();
            let mut attrs = xattrs(&path);
            let owner = if common::is_root() {
                (md.uid(), md.gid())
            } else {
                assert_eq!(md.uid(), rustix::process::geteuid().as_raw(), "{rel}");
                recorded_owner(&attrs)
            };
            attrs.retain(|(k, _)| k != CORRAL_OWNER && k != UMOCI_OWNER);
            let (kind, data) = if ft.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                ("symlink", target.display().to_string())
            } else if ft.is_dir() {
                ("dir", String::new())
            } else if ft.is_file() {
                ("file", Digest::sha256_of(&read_forced(&path)).to_string())
            } else if ft.is_fifo() {
                ("fifo", String::new())
            } else {
                ("special", format!("{:x}", md.rdev()))
            };
            let node = Node {
                kind,
                mode: if ft.is_symlink() {
                    0
                } else {
                    md.mode() & 0o7777
                },
                owner,
                data,
                xattrs: attrs,
                mtime: (md.mtime(), md.mtime_nsec()),
                ino: md.ino(),
            };
            out.insert(rel, node);
            if ft.is_dir() {
                walk(root, &path, out);
            }
        }
        if opened {
            std::fs::set_permissions(dir, PermissionsExt::from_mode(meta.mode() & 0o7777)).unwrap();
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn read_forced(path: &Path) -> Vec<u8> {
    if let Ok(data) = std::fs::read(path) {
        return data;
    }
    let mode = std::fs::symlink_metadata(path).unwrap().mode() & 0o7777;
    std::fs::set_permissions(path, PermissionsExt::from_mode(0o600)).unwrap();
    let data = std::fs::read(path).unwrap();
    std::fs::set_permissions(path, PermissionsExt::from_mode(mode)).unwrap();
    data
}

/// Hard-link groups (paths sharing an inode, symlinks included), sorted.
pub fn link_groups(tree: &BTreeMap<String, Node>) -> Vec<Vec<String>> {
    let mut by_ino: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (path, node) in tree.iter().filter(|(_, n)| n.kind != "dir") {
        by_ino.entry(node.ino).or_default().push(path.clone());
    }
    let mut groups: Vec<_> = by_ino.into_values().filter(|g| g.len() > 1).collect();
    groups.sort();
    groups
}

/// Lines naming every difference between two trees (left: ours), inode
/// numbers aside. `relax(path, left, right)` sees each path first (either
/// side may be missing): it may align what the caller does not compare,
/// and passes the path over by returning false.
pub fn differences_with(
    ours: &BTreeMap<String, Node>,
    theirs: &BTreeMap<String, Node>,
    mut relax: impl FnMut(&str, Option<&mut Node>, Option<&mut Node>) -> bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for path in ours
        .keys()
        .chain(theirs.keys().filter(|p| !ours.contains_key(*p)))
    {
        let (mut a, mut b) = (ours.get(path).cloned(), theirs.get(path).cloned());
        if let (Some(a), Some(b)) = (&mut a, &mut b) {
            (a.ino, b.ino) = (0, 0);
        }
        if !relax(path, a.as_mut(), b.as_mut()) {
            continue;
        }
        match (a, b) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => out.push(format!("{path}:\n  left  {a:?}\n  right {b:?}")),
            (a, b) => out.push(format!("{path}: left {a:?}, right {b:?}")),
        }
    }
    out
}

/// Whole seconds now: a directory created after this has mtime >= it.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Runs the generator into `dir`; returns its layouts dir.
pub fn generate(dir: &Path) -> PathBuf {
    let gen = dir.join("gen");
    std::fs::create_dir_all(&gen).unwrap();
    std::fs::write(gen.join("img_odd.py"), GENERATOR).unwrap();
    std::fs::write(gen.join("img_build.py"), LAYOUT_LIB).unwrap();
    let out = dir.join("layouts");
    let status = Command::new("python3")
        .arg(gen.join("img_odd.py"))
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "img_odd.py failed");
    out
}

pub fn corral(store: &Path, args: &[&str]) -> std::process::Output {
    let out = common::corral(store).args(args).output().unwrap();
    common::assert_success(&out, &format!("corral {args:?}"));
    out
}

/// `corral import` of an OCI layout under the name `image`.
pub fn import_as(store: &Path, layout: &Path, image: &str) {
    corral(
        store,
        &["-q", "import", layout.to_str().unwrap(), "--name", image],
    );
}

/// `corral image unpack` of an image already in `store`.
pub fn corral_unpack(store: &Path, image: &str, dest: &Path) -> BTreeMap<String, Node> {
    corral(store, &["image", "unpack", image, dest.to_str().unwrap()]);
    snapshot(dest)
}

/// Lets the temp dirs go although the trees hold 0555 and 000 directories.
pub fn open_up(dir: &Path) {
    let _ = Command::new("chmod")
        .args(["-R", "u+rwX"])
        .arg(dir)
        .status();
}

/// Empties a store through corral: with a subuid range its layer dirs
/// belong to subordinate ids only corral's helper can remove.
pub fn clear_store(store: &Path) {
    let out = corral(store, &["images", "--json"]);
    let images: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for image in images.as_array().unwrap() {
        let name = image["reference"].as_str().unwrap();
        corral(store, &["rmi", name]);
    }
    corral(store, &["prune"]);
    std::fs::remove_dir_all(store).unwrap();
}

pub fn tools_present(test: &str) -> bool {
    for tool in ["umoci", "skopeo", "python3", "zstd"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            common::skip(
                test,
                &format!("{tool} is not installed (scripts/setup-host.sh installs it)"),
            );
            return false;
        }
    }
    true
}
