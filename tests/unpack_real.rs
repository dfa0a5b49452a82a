//! Differential test on a real archive: GNU tar packs a copy of
//! /usr/share/zoneinfo (hundreds of symlinks) with added hard links, odd
//! modes, a FIFO and long names; our applier and `tar -x` must produce the
//! same tree, hard-link groups included.
#![allow(clippy::unwrap_used)]

mod unpack_support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use unpack_support::*;

fn sh(script: &str, dir: &Path) {
    let status = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
}

/// (path, kind, mode, mtime, content or link target) of one entry.
type Row = (PathBuf, String, u32, i64, Vec<u8>);

/// Every entry plus the hard-link groups by path.
fn describe(root: &Path) -> (Vec<Row>, Vec<Vec<PathBuf>>) {
    let snap = snapshot(root, None);
    let mut groups: BTreeMap<u64, Vec<PathBuf>> = BTreeMap::new();
    let mut rows = Vec::new();
    for (path, node) in snap {
        if node.kind == "file" {
            groups.entry(node.ino).or_default().push(path.clone());
        }
        let mtime = if node.kind == "symlink" {
            0
        } else {
            node.mtime.0
        };
        rows.push((path, node.kind, node.mode, mtime, node.content));
    }
    let mut links: Vec<Vec<PathBuf>> = groups.into_values().filter(|g| g.len() > 1).collect();
    links.sort();
    (rows, links)
}

#[test]
fn real_gnu_tar_archive_matches_gnu_tar_extraction() {
    let zoneinfo = Path::new("/usr/share/zoneinfo");
    if !zoneinfo.is_dir() {
        // tzdata is part of every Debian base system; say why if not.
        panic!("/usr/share/zoneinfo is missing: install tzdata");
    }
    let tmp = tempfile::tempdir().unwrap();
    sh(
        "cp -R /usr/share/zoneinfo src
         printf 'data' > src/own
         ln src/own src/hardlink-to-own
         mkdir -p src/deep/$(printf 'd%.0s' $(seq 120))
         ln src/own src/deep/$(printf 'd%.0s' $(seq 120))/long-hardlink
         ln src/UTC src/link-to-a-symlink
         ln -s ../../UTC src/deep/rel-link
         mkfifo src/fifo
         chmod 4755 src/own
         chmod 0555 src/Europe
         touch -d @0 src/Etc
         tar -cf layer.tar src",
        tmp.path(),
    );
    let layer = std::fs::read(tmp.path().join("layer.tar")).unwrap();
    let gnu = tmp.path().join("gnu");
    std::fs::create_dir(&gnu).unwrap();
    sh(
        &format!("tar -xpf layer.tar -C {}", gnu.display()),
        tmp.path(),
    );

    let s = Scene::new();
    let applied = s.apply(&gzip(&layer)).unwrap();
    assert_eq!(applied.diff_id, sha256(&layer));
    let (ours, our_links) = describe(&s.root);
    let (theirs, their_links) = describe(&gnu);
    assert!(ours.len() > 500, "{} entries", ours.len());
    assert_eq!(ours.len(), theirs.len());
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a, b);
    }
    assert_eq!(our_links, their_links);
    assert_eq!(our_links.len(), 1);
    assert_eq!(our_links[0].len(), 3);

    // Let the temp dir go even though src/Europe is 0555.
    for dir in [tmp.path().join("src/Europe"), gnu.join("src/Europe")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}
