//! Differences from umoci that tests/image_differential.rs found, pinned
//! here on the applier alone (no umoci, no registry needed).
#![allow(clippy::unwrap_used)]

mod common;
mod unpack_support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::xattr;
use unpack_support::*;

fn mtime(p: &Path) -> i64 {
    std::fs::symlink_metadata(p).unwrap().mtime()
}

#[test]
fn an_empty_pax_value_deletes_the_record() {
    // POSIX pax: "If the value field is zero length, it shall delete any
    // header block field, previously entered extended header value, or
    // global extended header value of the same name."
    let s = Scene::new();
    let layer = Layer::new()
        .pax(&[
            ("SCHILY.xattr.user.kept", b"yes"),
            ("SCHILY.xattr.user.empty", b""),
            ("SCHILY.xattr.user.undone", b"x"),
            ("SCHILY.xattr.user.undone", b""),
            ("mtime", b""),
        ])
        .file("f", 0o644, b"data");
    s.apply(&layer.tar()).unwrap();
    let f = s.path("f");
    assert_eq!(xattr(&f, "user.kept").as_deref(), Some(&b"yes"[..]));
    assert_eq!(xattr(&f, "user.empty"), None);
    assert_eq!(xattr(&f, "user.undone"), None);
    // The header's mtime, not 0 from the empty record.
    assert_eq!(mtime(&f), MTIME as i64);
}

#[test]
fn lower_directories_keep_their_mtime_when_a_layer_changes_them() {
    let s = Scene::new();
    let l1 = Layer::new()
        .dir_mtime("a", 0o755, 1000)
        .file("a/old", 0o644, b"o")
        .dir_mtime("b", 0o755, 2000)
        .file("b/gone", 0o644, b"g")
        .dir_mtime("c", 0o755, 3000)
        .file("c/x", 0o644, b"x")
        .dir_mtime("usr", 0o755, 4000)
        .dir_mtime("usr/lib64", 0o555, 5000)
        .symlink("lib64", "/usr/lib64")
        .dir_mtime("set", 0o755, 6000);
    s.apply(&l1.tar()).unwrap();
    let l2 = Layer::new()
        // A new child, no entry for the directory.
        .file("a/new", 0o644, b"n")
        // A whiteout and an opaque marker, no entry for the directory.
        .raw(b"b/.wh.gone", tar::EntryType::Regular, b"", b"")
        .raw(b"c/.wh..wh..opq", tar::EntryType::Regular, b"", b"")
        // Through an absolute symlink into a 0555 directory.
        .file("lib64/ld.so", 0o755, b"ld")
        // A child of a directory the layer also describes: its time wins.
        .file("set/child", 0o644, b"c")
        .dir_mtime("set", 0o755, 7000);
    s.apply(&l2.tar()).unwrap();
    assert_eq!(mtime(&s.path("a")), 1000);
    assert_eq!(mtime(&s.path("b")), 2000);
    assert_eq!(mtime(&s.path("c")), 3000);
    assert_eq!(mtime(&s.path("usr/lib64")), 5000);
    assert_eq!(mode(&s.path("usr/lib64")), 0o555);
    assert_eq!(mtime(&s.path("set")), 7000);
    assert!(s.path("usr/lib64/ld.so").is_file());
    assert!(!s.path("b/gone").exists() && !s.path("c/x").exists());
    s.check_host();
}

#[test]
fn a_kept_time_or_mode_never_lands_on_another_directory() {
    // `a` is changed (and, rootless, made writable), then replaced by a
    // symlink to `b` in the same layer: what was kept for `a` is dropped.
    let s = Scene::new();
    let l1 = Layer::new()
        .dir_mtime("a", 0o555, 1000)
        .file("a/old", 0o644, b"o")
        .dir_mtime("b", 0o755, 2000);
    s.apply(&l1.tar()).unwrap();
    let l2 = Layer::new().file("a/new", 0o644, b"n").symlink("a", "b");
    s.apply(&l2.tar()).unwrap();
    assert_eq!(mtime(&s.path("b")), 2000);
    assert_eq!(mode(&s.path("b")), 0o755);
    assert_eq!(std::fs::read_link(s.path("a")).unwrap(), Path::new("b"));
}
