//! Layer semantics (oci-images.md §6 cases 11–14, 18–20, 22, 24 and
//! sandboxing.md §B 3–6), chain building with `clone_tree`, and the
//! invariant that applying onto a clone never changes the parent chain.
#![allow(clippy::unwrap_used)]

mod common;
mod unpack_support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::xattr;
use corral::image::unpack::{self, Ownership, UnpackOptions};
use tar::{EntryType, Header};
use unpack_support::*;

fn whiteout(path: &str) -> (Vec<u8>, EntryType) {
    (path.as_bytes().to_vec(), EntryType::Regular)
}

fn wh(layer: Layer, path: &str) -> Layer {
    let (name, kind) = whiteout(path);
    layer.raw(&name, kind, b"", b"")
}

#[test]
fn case11_opaque_whiteout_applies_before_the_layers_own_entries() {
    let s = Scene::new();
    s.apply(
        &Layer::new()
            .file("a/b/c/bar", 0o644, b"")
            .file("a/b/old", 0o644, b"")
            .file("a/x", 0o644, b"")
            .tar(),
    )
    .unwrap();
    let l2 = wh(
        Layer::new().file("a/b/c/foo", 0o644, b"foo"),
        "a/.wh..wh..opq",
    );
    s.apply(&l2.tar()).unwrap();
    let left: Vec<_> = snapshot(&s.path("a"), None).into_keys().collect();
    assert_eq!(left, ["b", "b/c", "b/c/foo"].map(std::path::PathBuf::from));
    assert!(!s.path("a/.wh..wh..opq").exists());
}

#[test]
fn case12_whiteout_spares_same_layer_files() {
    let s = Scene::new();
    s.apply(
        &Layer::new()
            .file("x", 0o644, b"lower")
            .file("y", 0o644, b"lower")
            .tar(),
    )
    .unwrap();
    let l2 = wh(
        wh(Layer::new().file("x", 0o644, b"upper"), ".wh.x"),
        ".wh.y",
    );
    s.apply(&l2.tar()).unwrap();
    assert_eq!(read(&s.path("x")), b"upper");
    assert!(!s.path("y").exists());
    assert!(!s.path(".wh.x").exists());
    // Other AUFS metadata is ignored, never materialised.
    s.apply(&wh(Layer::new(), ".wh..wh.plnk").tar()).unwrap();
    assert!(!s.path(".wh..wh.plnk").exists());
}

#[test]
fn case13_and_b6_type_replacements_and_recreation() {
    let s = Scene::new();
    s.apply(
        &Layer::new()
            .file("d/child", 0o644, b"c")
            .dir("d/sub", 0o555)
            .file("d/sub/deep", 0o000, b"")
            .file("f", 0o644, b"file")
            .symlink("s", "f")
            .dir("ds", 0o755)
            .file("ds/x", 0o644, b"")
            .file("gone", 0o644, b"")
            .tar(),
    )
    .unwrap();
    s.apply(
        &Layer::new()
            .file("d", 0o600, b"now a file")
            .dir("f", 0o750)
            .dir("s", 0o700)
            .symlink("ds", "/elsewhere")
            .tar(),
    )
    .unwrap();
    assert_eq!(read(&s.path("d")), b"now a file");
    assert!(std::fs::symlink_metadata(s.path("f")).unwrap().is_dir());
    assert_eq!(mode(&s.path("f")), 0o750);
    assert!(std::fs::symlink_metadata(s.path("s")).unwrap().is_dir());
    assert_eq!(
        std::fs::read_link(s.path("ds")).unwrap(),
        Path::new("/elsewhere")
    );
    // Delete, then recreate in the next layer.
    s.apply(&wh(Layer::new(), ".wh.gone").tar()).unwrap();
    assert!(!s.path("gone").exists());
    s.apply(&Layer::new().file("gone", 0o644, b"back").tar())
        .unwrap();
    assert_eq!(read(&s.path("gone")), b"back");
}

#[test]
fn case14_and_b3_restrictive_modes() {
    let s = Scene::new();
    s.apply(
        &Layer::new()
            .dir("ro", 0o555)
            .dir("none", 0o000)
            .dir("xonly", 0o111)
            .file("xonly/inner", 0o644, b"")
            .file("etc/gshadow", 0o000, b"secret")
            .file("hidden/f", 0o644, b"behind 000")
            .dir("hidden", 0o000)
            .tar(),
    )
    .unwrap();
    assert_eq!(mode(&s.path("ro")), 0o555);
    assert_eq!(mode(&s.path("none")), 0o000);
    assert_eq!(mode(&s.path("etc/gshadow")), 0o000);
    s.apply(
        &Layer::new()
            .file("ro/f", 0o644, b"f")
            .file("none/g", 0o644, b"g")
            .file("xonly/h", 0o644, b"h")
            .hardlink("linked", "hidden/f")
            .tar(),
    )
    .unwrap();
    assert_eq!(read(&s.path("linked")), b"behind 000");
    for (dir, m) in [
        ("ro", 0o555),
        ("none", 0o000),
        ("xonly", 0o111),
        ("hidden", 0),
    ] {
        assert_eq!(mode(&s.path(dir)), m, "{dir}");
    }
    if !is_root() {
        std::fs::set_permissions(
            s.path("none"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
    }
    assert_eq!(read(&s.path("none/g")), b"g");
    // Whiteouts inside restrictive dirs work too, and the tree can be removed.
    let s2 = Scene::new();
    s2.apply(&Layer::new().dir("ro", 0o555).file("ro/a", 0o644, b"").tar())
        .unwrap();
    s2.apply(&wh(Layer::new(), "ro/.wh.a").tar()).unwrap();
    assert_eq!(mode(&s2.path("ro")), 0o555);
    unpack::remove_tree(&s2.root).unwrap();
    unpack::remove_tree(&s.root).unwrap();
    assert!(!s.root.exists());
}

#[test]
fn case18_xattrs() {
    // VFS_CAP_REVISION_2 | effective, permitted = CAP_NET_BIND_SERVICE.
    let mut cap = Vec::new();
    for word in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    let s = Scene::new();
    let layer = Layer::new()
        .pax(&[
            ("SCHILY.xattr.user.foo", b"bar"),
            (
                "SCHILY.xattr.security.selinux",
                b"system_u:object_r:bin_t:s0",
            ),
            ("SCHILY.xattr.security.capability", &cap),
            ("SCHILY.xattr.user.containers.override_stat", b"0:0:04755"),
        ])
        .file("bin/ping", 0o755, b"ELF")
        .pax(&[("SCHILY.xattr.user.dir", b"d")])
        .dir("etc", 0o755)
        // Rootless, user xattrs need write access: set before the mode.
        .pax(&[("SCHILY.xattr.user.ro", b"r")])
        .file("etc/readonly", 0o444, b"x");
    s.apply(&layer.tar()).unwrap();
    assert_eq!(
        xattr(&s.path("etc/readonly"), "user.ro").as_deref(),
        Some(&b"r"[..])
    );
    let ping = s.path("bin/ping");
    assert_eq!(xattr(&ping, "user.foo").as_deref(), Some(&b"bar"[..]));
    assert_eq!(
        xattr(&s.path("etc"), "user.dir").as_deref(),
        Some(&b"d"[..])
    );
    assert_eq!(xattr(&ping, "security.selinux"), None);
    assert_eq!(
        xattr(&ping, "user.containers.override_stat"),
        None,
        "forged by the image"
    );
    assert_eq!(xattr(&ping, "security.capability").is_some(), is_root());
}

#[test]
fn case19_setuid_survives_ownership() {
    let s = Scene::new();
    let l = Layer::new()
        .file("bin/su", 0o4755, b"su")
        .file_owned("bin/sg", 0o2755, 1000, 1000, b"sg");
    s.apply(&l.tar()).unwrap();
    assert_eq!(mode(&s.path("bin/su")), 0o4755);
    assert_eq!(mode(&s.path("bin/sg")), 0o2755);
    if !squashing() && uid_mapped(1000) {
        assert_eq!(std::fs::metadata(s.path("bin/sg")).unwrap().uid(), 1000);
    }
}

#[test]
fn b8_owners_are_kept_or_recorded() {
    let s = Scene::new();
    let l = Layer::new()
        .file_owned("home/u/f", 0o640, 70000, 70001, b"")
        .file_owned("root-owned", 0o644, 0, 0, b"")
        .tar();
    let squash = UnpackOptions {
        ownership: Ownership::SquashToCaller,
        ..opts()
    };
    s.apply_with(&l, &squash).unwrap();
    let f = s.path("home/u/f");
    assert_eq!(
        std::fs::metadata(&f).unwrap().uid(),
        rustix::process::geteuid().as_raw()
    );
    assert_eq!(
        xattr(&f, "user.containers.override_stat").as_deref(),
        Some(&b"70000:70001:0640"[..])
    );
    assert_eq!(
        xattr(&s.path("root-owned"), "user.containers.override_stat"),
        None
    );
    if is_root() {
        let s = Scene::new();
        let keep = UnpackOptions {
            ownership: Ownership::Keep,
            ..opts()
        };
        s.apply_with(&l, &keep).unwrap();
        // Real root chowns; root in a user namespace whose map lacks 70000
        // (e.g. `unshare -Ur`) records the owner instead.
        let md = std::fs::metadata(s.path("home/u/f")).unwrap();
        if uid_mapped(70000) {
            assert_eq!((md.uid(), md.gid()), (70000, 70001));
        } else {
            assert_eq!(md.uid(), 0);
            let recorded = xattr(&s.path("home/u/f"), "user.containers.override_stat");
            assert_eq!(recorded.as_deref(), Some(&b"70000:70001:0640"[..]));
        }
    }
}

fn uid_mapped(uid: u64) -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .unwrap()
        .lines()
        .any(|line| {
            let f: Vec<u64> = line
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            uid >= f[0] && uid < f[0] + f[2]
        })
}

#[test]
fn case20_mtimes_are_clamped_and_dirs_set_last() {
    let s = Scene::new();
    let mut negative = Header::new_gnu();
    negative.set_path("neg256").unwrap();
    negative.set_mode(0o644);
    negative.set_size(0);
    negative.set_uid(0);
    negative.set_gid(0);
    negative.as_old_mut().mtime = [0xff; 12];
    // 2^40 in the base-256 encoding (0x80 marker, big-endian).
    let mut huge = negative.clone();
    huge.set_path("huge").unwrap();
    huge.as_old_mut().mtime = [0x80, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0];
    let l = Layer::new()
        .file_mtime("zero", 0)
        .header(huge, b"")
        .pax(&[("mtime", b"1099511627776.5")])
        .file("hugepax", 0o644, b"")
        .pax(&[("mtime", b"-5")])
        .file("negpax", 0o644, b"")
        .header(negative, b"")
        .dir_mtime("d", 0o755, 1000)
        .file("d/child", 0o644, b"")
        .dir_mtime("ro", 0o555, 2000)
        .file("ro/child", 0o644, b"");
    s.apply(&l.tar()).unwrap();
    let mtime = |p: &str| std::fs::symlink_metadata(s.path(p)).unwrap().mtime();
    assert_eq!(mtime("zero"), 0);
    // We clamp to 9999-12-31; the filesystem may clamp further (ext4: 2446).
    let reference = s.tmp.path().join("reference");
    std::fs::write(&reference, b"").unwrap();
    let max = std::time::UNIX_EPOCH + std::time::Duration::from_secs(253_402_300_799);
    std::fs::File::options()
        .write(true)
        .open(&reference)
        .unwrap()
        .set_modified(max)
        .unwrap();
    let fs_max = std::fs::metadata(&reference).unwrap().mtime();
    std::fs::remove_file(&reference).unwrap();
    assert_eq!(mtime("huge"), fs_max);
    assert_eq!(mtime("hugepax"), fs_max);
    assert_eq!(mtime("negpax"), 0);
    assert_eq!(mtime("neg256"), 0);
    assert_eq!(mtime("d"), 1000);
    assert_eq!(mtime("ro"), 2000);
}

#[test]
fn case24_multi_member_gzip_and_multi_frame_zstd() {
    let mut layer = Layer::new();
    for i in 0..20 {
        layer = layer.file(
            &format!("f{i}"),
            0o644,
            format!("{i}").repeat(1000).as_bytes(),
        );
    }
    let tar = layer.tar();
    let cut = 512 * 20;
    let mut gz = gzip(&tar[..cut]);
    gz.extend(gzip(&tar[cut..]));
    let mut zst = Vec::new();
    zst.extend_from_slice(&0x184D_2A50u32.to_le_bytes());
    zst.extend_from_slice(&4u32.to_le_bytes());
    zst.extend_from_slice(b"skip");
    zst.extend(zstd::encode_all(&tar[..cut], 3).unwrap());
    zst.extend_from_slice(&0x184D_2A5Fu32.to_le_bytes());
    zst.extend_from_slice(&2u32.to_le_bytes());
    zst.extend_from_slice(b"ok");
    zst.extend(zstd::encode_all(&tar[cut..], 3).unwrap());
    for blob in [gz, zst, tar.clone()] {
        let s = Scene::new();
        let applied = s.apply(&blob).unwrap();
        assert_eq!(applied.diff_id, sha256(&tar));
        assert_eq!(applied.entries, 20);
        assert_eq!(read(&s.path("f19")), "19".repeat(1000).as_bytes());
    }
    let err = Scene::new().apply(b"\xfd7zXZ\0rest").unwrap_err();
    assert!(err.to_string().contains("compression"), "{err}");
}

#[test]
fn b5_hardlinks_within_and_across_layers() {
    let s = Scene::new();
    s.apply(
        &Layer::new()
            .file("a/.gitignore", 0o644, b"*.o")
            .hardlink("b/.gitignore", "a/.gitignore")
            .hardlink("c", "/a/.gitignore")
            .file("old", 0o644, b"old")
            .tar(),
    )
    .unwrap();
    // A link replaces an existing destination.
    s.apply(
        &Layer::new()
            .hardlink("old", "a/.gitignore")
            .hardlink("c", "c")
            .tar(),
    )
    .unwrap();
    let i = ino(&s.path("a/.gitignore"));
    for p in ["b/.gitignore", "c", "old"] {
        assert_eq!(ino(&s.path(p)), i, "{p}");
    }
}

#[test]
fn case22_many_opaque_whiteouts_each_scan_one_directory() {
    // 2,000 lower dirs with content, then one opaque marker per dir plus a
    // new file: one directory scan per marker (GHSA-rp3h-jf77-q9p4), and the
    // result is exact.
    let n = 2000;
    let mut lower = Layer::new();
    for i in 0..n {
        lower =
            lower
                .file(&format!("d{i}/old"), 0o644, b"")
                .file(&format!("d{i}/sub/old"), 0o644, b"");
    }
    let mut upper = Layer::new();
    for i in 0..n {
        upper = wh(upper, &format!("d{i}/.wh..wh..opq")).file(&format!("d{i}/new"), 0o644, b"");
    }
    let s = Scene::new();
    s.apply(&lower.tar()).unwrap();
    let applied = s.apply(&upper.tar()).unwrap();
    assert_eq!(applied.entries, 2 * n);
    for i in [0, n / 2, n - 1] {
        let left: Vec<_> = snapshot(&s.path(&format!("d{i}")), None)
            .into_keys()
            .collect();
        assert_eq!(left, [std::path::PathBuf::from("new")]);
    }
}
