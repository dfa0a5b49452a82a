//! The hostile-input corpus (oci-images.md §6 cases 1–10, 15–24 and
//! sandboxing.md §B 7): every layer is applied to a root that sits next to
//! host sentinels, and `Scene::apply` asserts after each one that the
//! sentinels are unchanged and nothing appeared outside the root.

#![allow(clippy::unwrap_used)]

mod unpack_support;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use corral::image::unpack::{UnpackError, UnpackOptions};
use tar::EntryType;
use unpack_support::*;

fn refused(res: Result<corral::image::unpack::AppliedLayer, UnpackError>) -> String {
    match res {
        Ok(applied) => panic!("layer was accepted: {applied:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn case01_dotdot_names_are_refused_and_absolute_names_clamped() {
    for name in [
        &b"../../etc/x"[..],
        b"a/../../x",
        b"../host/secret",
        b"a/..",
    ] {
        let s = Scene::new();
        let err = refused(
            s.apply(
                &Layer::new()
                    .raw(name, EntryType::Regular, b"", b"pwned")
                    .tar(),
            ),
        );
        assert!(err.contains("`..`"), "{err}");
    }
    let s = Scene::new();
    let abs = format!("{}/secret", s.host_str());
    s.apply(
        &Layer::new()
            .raw(b"/abs/x", EntryType::Regular, b"", b"in")
            .raw(abs.as_bytes(), EntryType::Regular, b"", b"in root")
            .tar(),
    )
    .unwrap();
    assert_eq!(std::fs::read(s.path("abs/x")).unwrap(), b"in");
    assert_eq!(
        std::fs::read(s.root.join(abs.trim_start_matches('/'))).unwrap(),
        b"in root"
    );
}

#[test]
fn case02_writes_through_escaping_symlinks_stay_in_root() {
    let s = Scene::new();
    let host = s.host_str();
    let layer = Layer::new()
        .symlink("evil", "/")
        .file("evil/tmp/pwn", 0o644, b"x")
        .symlink("up", "../..")
        .file("up/pwn", 0o644, b"y")
        .symlink("h", &host)
        .file("h/secret", 0o644, b"overwritten?")
        .symlink("hd", &format!("{host}/dir"))
        .file("hd/f", 0o644, b"clobber");
    s.apply(&layer.tar()).unwrap();
    assert_eq!(std::fs::read(s.path("tmp/pwn")).unwrap(), b"x");
    assert_eq!(std::fs::read(s.path("pwn")).unwrap(), b"y");
    let in_root = s.root.join(host.trim_start_matches('/'));
    assert_eq!(
        std::fs::read(in_root.join("secret")).unwrap(),
        b"overwritten?"
    );
    assert_eq!(std::fs::read(in_root.join("dir/f")).unwrap(), b"clobber");
}

#[test]
fn case03_directory_over_escaping_symlink_replaces_the_link() {
    let s = Scene::new();
    let layer = Layer::new()
        .symlink("d", &format!("{}/dir", s.host_str()))
        .symlink("t", "/tmp")
        .dir("d", 0o777)
        .dir("t", 0o777);
    s.apply(&layer.tar()).unwrap();
    for d in ["d", "t"] {
        let md = std::fs::symlink_metadata(s.path(d)).unwrap();
        assert!(md.is_dir());
        assert_eq!(md.mode() & 0o7777, 0o777);
    }
}

#[test]
fn case04_file_below_absolute_dir_symlink_from_lower_layer() {
    let s = Scene::new();
    s.apply(
        &Layer::new()
            .dir("usr/lib64", 0o755)
            .symlink("lib64", "/usr/lib64")
            .tar(),
    )
    .unwrap();
    s.apply(&Layer::new().file("lib64/ld.so", 0o755, b"ELF").tar())
        .unwrap();
    assert_eq!(std::fs::read(s.path("usr/lib64/ld.so")).unwrap(), b"ELF");
    assert!(std::fs::symlink_metadata(s.path("lib64"))
        .unwrap()
        .is_symlink());
    // Implicit parents are 0755 whatever the umask.
    assert_eq!(mode(&s.path("usr")), 0o755);
}

#[test]
fn case05_hardlinks_to_host_paths_resolve_in_root_or_fail() {
    for target in ["/etc/shadow", "../../etc/shadow"] {
        let s = Scene::new();
        let err = refused(s.apply(&Layer::new().hardlink("stolen", target).tar()));
        assert!(err.contains("hard-link"), "{err}");
        assert!(!s.path("stolen").exists());
    }
    let s = Scene::new();
    let abs = format!("{}/secret", s.host_str());
    refused(s.apply(&Layer::new().hardlink("stolen", &abs).tar()));
    s.apply(
        &Layer::new()
            .file("etc/shadow", 0o600, b"in-root shadow")
            .tar(),
    )
    .unwrap();
    s.apply(
        &Layer::new()
            .hardlink("a", "/etc/shadow")
            .hardlink("b", "../../etc/shadow")
            .tar(),
    )
    .unwrap();
    assert_eq!(ino(&s.path("a")), ino(&s.path("etc/shadow")));
    assert_eq!(ino(&s.path("b")), ino(&s.path("etc/shadow")));
    assert_ne!(ino(&s.path("a")), ino(&s.host.join("etc/shadow")));
}

#[test]
fn case06_hardlink_to_symlink_links_the_symlink() {
    let s = Scene::new();
    let passwd = format!("{}/etc/passwd", s.host_str());
    s.apply(&Layer::new().symlink("s", &passwd).hardlink("l", "s").tar())
        .unwrap();
    let md = std::fs::symlink_metadata(s.path("l")).unwrap();
    assert!(md.is_symlink());
    assert_eq!(md.ino(), ino(&s.path("s")));
    assert_eq!(
        std::fs::read_link(s.path("l")).unwrap().to_str().unwrap(),
        passwd
    );
}

#[test]
fn case07_hardlink_to_lower_layer_file() {
    let s = Scene::new();
    s.apply(&Layer::new().file("bin/busybox", 0o755, b"bb").tar())
        .unwrap();
    s.apply(
        &Layer::new()
            .hardlink("bin/sh", "bin/busybox")
            .hardlink("bin/ash", "/bin/busybox")
            .tar(),
    )
    .unwrap();
    assert_eq!(ino(&s.path("bin/sh")), ino(&s.path("bin/busybox")));
    assert_eq!(ino(&s.path("bin/ash")), ino(&s.path("bin/busybox")));
}

#[test]
fn case08_root_entry_as_symlink_is_refused() {
    for name in [&b"."[..], b"/.", b"./", b"/"] {
        let s = Scene::new();
        let layer = Layer::new()
            .raw(name, EntryType::Symlink, s.host_str().as_bytes(), b"")
            .file("etc/passwd", 0o644, b"pwned");
        let err = refused(s.apply(&layer.tar()));
        assert!(err.contains("rootfs itself"), "{err}");
        assert!(!s.path("etc/passwd").exists());
        assert!(std::fs::symlink_metadata(&s.root).unwrap().is_dir());
    }
    // `./` as a directory is fine and sets the root's attributes.
    let s = Scene::new();
    s.apply(
        &Layer::new()
            .raw(b"./", EntryType::Directory, b"", b"")
            .tar(),
    )
    .unwrap();
}

#[test]
fn case09_invalid_whiteout_names_are_refused() {
    for name in [&b".wh."[..], b".wh..", b".wh...", b"a/.wh...."] {
        let s = Scene::new();
        let err = refused(s.apply(&Layer::new().raw(name, EntryType::Regular, b"", b"").tar()));
        assert!(err.contains("whiteout"), "{name:?}: {err}");
    }
}

#[test]
fn case10_whiteout_through_escaping_symlink_stays_in_root() {
    let s = Scene::new();
    let host = s.host_str();
    let mirror = format!("{}/dir/important", host.trim_start_matches('/'));
    s.apply(&Layer::new().file(&mirror, 0o644, b"in-root copy").tar())
        .unwrap();
    s.apply(
        &Layer::new()
            .symlink("link", &format!("{host}/dir"))
            .raw(b"link/.wh.important", EntryType::Regular, b"", b"")
            .raw(b"link/.wh.f", EntryType::Regular, b"", b"")
            .tar(),
    )
    .unwrap();
    assert!(!s.root.join(&mirror).exists());
    assert!(s.host.join("dir/important").exists());
}

#[test]
fn case15_devices_fifos_and_sockets() {
    let s = Scene::new();
    let layer = Layer::new()
        .node("dev/null", EntryType::Char, 1, 3)
        .node("dev/sda", EntryType::Block, 8, 0)
        .node("run/fifo", EntryType::Fifo, 0, 0)
        .raw(b"run/sock", EntryType::new(b'V'), b"", b"");
    s.apply(&layer.tar()).unwrap();
    let fifo = std::fs::symlink_metadata(s.path("run/fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o620);
    assert!(!s.path("run/sock").exists());
    if opts().allow_devices {
        let null = std::fs::symlink_metadata(s.path("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
        assert!(std::fs::symlink_metadata(s.path("dev/sda"))
            .unwrap()
            .file_type()
            .is_block_device());
    } else {
        assert!(!s.path("dev/null").exists() && !s.path("dev/sda").exists());
    }
    // Never data files, even as root when devices are not allowed.
    let s = Scene::new();
    let o = UnpackOptions {
        allow_devices: false,
        ..opts()
    };
    s.apply_with(
        &Layer::new().node("dev/null", EntryType::Char, 1, 3).tar(),
        &o,
    )
    .unwrap();
    assert!(!s.path("dev/null").exists());
}

/// Sparse entries expand with holes and their maps never reach the file;
/// tests/unpack_sparse.rs has the hostile maps.
#[test]
fn case17_sparse_files_expand_without_writing_the_map() {
    let layer = old_gnu_sparse_layer("big", 1 << 30, &[(1 << 29, &[7u8; 4096])]);
    let s = Scene::new();
    s.apply(&layer).unwrap();
    assert_eq!(std::fs::metadata(s.path("big")).unwrap().len(), 1 << 30);
    // PAX 1.0: the map at the start of the data is not file content.
    let s = Scene::new();
    let layer = pax_sparse_1_0("big", "4", "1\n0\n4\n", b"data");
    s.apply(&layer.tar()).unwrap();
    assert_eq!(std::fs::read(s.path("big")).unwrap(), b"data");
    assert!(!s.path("GNUSparseFile.0").exists());
}

#[test]
fn case21_expansion_cap_aborts_a_zero_bomb() {
    let zeros = vec![0u8; 24 << 20];
    let layer = Layer::new().file("bomb", 0o644, &zeros).gz();
    assert!(layer.len() < 1 << 20);
    let s = Scene::new();
    let o = UnpackOptions {
        max_bytes: 4 << 20,
        ..opts()
    };
    let err = s.apply_with(&layer, &o).unwrap_err();
    assert!(matches!(err, UnpackError::TooLarge { .. }), "{err}");
}

#[test]
fn case22_entry_cap_fires() {
    let mut layer = Layer::new();
    for i in 0..3000 {
        layer = layer.file(&format!("f/{i}"), 0o644, b"");
    }
    let s = Scene::new();
    let o = UnpackOptions {
        max_entries: 1000,
        ..opts()
    };
    let err = s.apply_with(&layer.tar(), &o).unwrap_err();
    assert!(
        matches!(err, UnpackError::TooManyEntries { limit: 1000 }),
        "{err}"
    );
}

#[test]
fn case23_trailing_garbage_is_refused_and_diff_id_covers_every_byte() {
    let tar = Layer::new().file("a", 0o644, b"a").tar();
    let s = Scene::new();
    let applied = s.apply(&gzip(&tar)).unwrap();
    assert_eq!(applied.diff_id, sha256(&tar));
    assert_eq!(applied.uncompressed_bytes, tar.len() as u64);
    // Extra zero padding is hashed but harmless.
    let mut padded = tar.clone();
    padded.extend_from_slice(&[0; 10240]);
    assert_eq!(
        Scene::new().apply(&padded).unwrap().diff_id,
        sha256(&padded)
    );
    let mut garbage = tar;
    garbage.extend_from_slice(b"GARBAGE after the end of the archive");
    let err = Scene::new().apply(&gzip(&garbage)).unwrap_err();
    assert!(matches!(err, UnpackError::TrailingData { .. }), "{err}");
    // A corrupt gzip stream fails cleanly.
    let mut corrupt = gzip(&Layer::new().file("a", 0o644, &[1; 100_000]).tar());
    let mid = corrupt.len() / 2;
    corrupt[mid] ^= 0xff;
    corrupt.truncate(mid + 10);
    assert!(Scene::new().apply(&corrupt).is_err());
}

#[test]
fn failure_mid_layer_leaves_host_untouched_and_staging_removable() {
    let s = Scene::new();
    let layer = Layer::new()
        .dir("ro", 0o555)
        .file("ro/f", 0o000, b"x")
        .symlink("esc", &s.host_str())
        .file("esc/new", 0o644, b"in root")
        .raw(b"../escape", EntryType::Regular, b"", b"no");
    refused(s.apply(&layer.tar()));
    assert!(!s.tmp.path().join("escape").exists());
    corral::image::unpack::remove_tree(&s.root).unwrap();
    assert!(!s.root.exists());
    s.check_host();
}

#[test]
fn b7_traversal_layer_host_untouched() {
    let s = Scene::new();
    s.apply(
        &Layer::new()
            .symlink("x", "/")
            .file("x/etc/evil", 0o644, b"evil")
            .tar(),
    )
    .unwrap();
    assert!(s.path("etc/evil").exists());
    assert!(!std::path::Path::new("/etc/evil").exists());
    refused(
        s.apply(
            &Layer::new()
                .raw(b"../../../../etc/evil2", EntryType::Regular, b"", b"")
                .tar(),
        ),
    );
    assert!(!std::path::Path::new("/etc/evil2").exists());
}
