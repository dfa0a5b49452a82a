//! Chain directories: `clone_tree` plus `apply_layer` must never change the
//! parent chain (sandboxing.md §B 4 and the store's invariant).
#![allow(clippy::unwrap_used)]

mod unpack_support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use corral::image::unpack::{apply_layer, clone_tree, remove_tree};
use tar::EntryType;
use unpack_support::*;

fn rich_lower() -> Vec<u8> {
    Layer::new()
        .dir("etc", 0o755)
        .file("etc/conf", 0o644, b"v1")
        .file("etc/gshadow", 0o000, b"hash")
        .dir("ro", 0o555)
        .file("ro/keep", 0o644, b"keep")
        .dir("xonly", 0o111)
        .file("xonly/inner", 0o644, b"inner")
        .file("bin/tool", 0o644, b"not yet executable")
        .file("bin/busybox", 0o4755, b"bb")
        .hardlink("bin/sh", "bin/busybox")
        .symlink("lib64", "/usr/lib64")
        .dir("usr/lib64", 0o755)
        .file("usr/lib64/ld.so", 0o755, b"ld")
        .dir("opq", 0o755)
        .file("opq/lower", 0o644, b"lower")
        .node("run/fifo", EntryType::Fifo, 0, 0)
        .pax(&[("SCHILY.xattr.user.tag", b"v1")])
        .file("tagged", 0o644, b"t")
        .tar()
}

fn modifying_upper() -> Vec<u8> {
    let wh = |l: Layer, p: &str| l.raw(p.as_bytes(), EntryType::Regular, b"", b"");
    let l = Layer::new()
        .file("etc/conf", 0o600, b"v2")
        .file("bin/tool", 0o755, b"now executable")
        .file("bin/busybox", 0o755, b"new bb")
        .hardlink("bin/sh", "etc/conf")
        .file("ro/new", 0o644, b"n")
        .file("xonly/more", 0o644, b"m")
        .dir("etc", 0o700)
        .file("lib64/ld.so", 0o755, b"ld2")
        .file("opq/upper", 0o644, b"u")
        .dir("tagged", 0o755)
        .symlink("run/fifo", "/dev/null");
    let l = wh(l, "etc/.wh.gshadow");
    let l = wh(l, "ro/.wh.keep");
    wh(l, "opq/.wh..wh..opq").tar()
}

/// Snapshots that also see into 000/0111 dirs when not root: compare the
/// whole tree by granting ourselves nothing, but walking each layer of the
/// hierarchy with what we can read; the restrictive dirs are checked below.
fn snap(root: &Path) -> Snapshot {
    snapshot(root, None)
}

#[test]
fn applying_onto_a_clone_leaves_the_parent_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let chain1 = tmp.path().join("chain1");
    let chain2 = tmp.path().join("chain2");
    std::fs::create_dir(&chain1).unwrap();
    apply_layer(&chain1, &gzip(&rich_lower())[..], &opts()).unwrap();
    let before = snap(&chain1);
    let gshadow_ino = std::fs::symlink_metadata(chain1.join("etc/gshadow"))
        .unwrap()
        .ino();

    clone_tree(&chain1, &chain2).unwrap();
    let cloned = snap(&chain2);
    assert_eq!(
        cloned.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>()
    );
    for (path, node) in &before {
        let copy = &cloned[path];
        if node.kind == "dir" {
            assert_ne!(copy.ino, node.ino, "{path:?} must be a new directory");
            assert_eq!(
                Node {
                    ino: node.ino,
                    ..copy.clone()
                },
                *node,
                "{path:?}"
            );
        } else {
            assert_eq!(copy, node, "{path:?} must be the same inode");
        }
    }
    assert_eq!(mode(&chain2.join("xonly")), 0o111);

    apply_layer(&chain2, &modifying_upper()[..], &opts()).unwrap();
    assert_eq!(snap(&chain1), before, "the parent chain changed");
    assert_eq!(
        std::fs::symlink_metadata(chain1.join("etc/gshadow"))
            .unwrap()
            .ino(),
        gshadow_ino
    );
    assert_eq!(mode(&chain1.join("xonly")), 0o111);
    assert_eq!(mode(&chain1.join("ro")), 0o555);

    // §B 4: chmod +x in the upper layer shows; the lower copy is unchanged.
    assert_eq!(mode(&chain2.join("bin/tool")), 0o755);
    assert_eq!(mode(&chain1.join("bin/tool")), 0o644);
    assert_eq!(std::fs::read(chain1.join("etc/conf")).unwrap(), b"v1");
    assert_eq!(std::fs::read(chain2.join("bin/sh")).unwrap(), b"v2");
    assert_eq!(
        std::fs::read(chain2.join("usr/lib64/ld.so")).unwrap(),
        b"ld2"
    );
    assert_eq!(
        std::fs::read(chain1.join("usr/lib64/ld.so")).unwrap(),
        b"ld"
    );
    assert!(
        !chain2.join("etc/gshadow").exists() || !is_root() && mode(&chain2.join("etc")) == 0o700
    );
    assert!(!chain2.join("opq/lower").exists());
    assert!(chain1.join("opq/lower").exists());
    assert_eq!(mode(&chain2.join("ro")), 0o555);
    assert!(!chain2.join("ro/keep").exists());

    remove_tree(&chain2).unwrap();
    remove_tree(&chain1).unwrap();
    assert!(!chain1.exists() && !chain2.exists());
}

#[test]
fn clone_into_existing_empty_dir_and_refuse_non_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    apply_layer(
        &src,
        &Layer::new().file("a", 0o644, b"a").tar()[..],
        &opts(),
    )
    .unwrap();
    let dest = tmp.path().join("dest");
    std::fs::create_dir(&dest).unwrap();
    clone_tree(&src, &dest).unwrap();
    assert_eq!(std::fs::read(dest.join("a")).unwrap(), b"a");
    assert!(clone_tree(&src, &dest).is_err());
}
