//! Differential test against umoci on odd but valid images that
//! scripts/fixtures/img_odd.py writes (PAX and GNU long names, replacements
//! and whiteouts across layers, hard links, odd modes, owners, mtimes,
//! xattrs, multi-member gzip, zstd, empty layers). Each image is imported
//! into corral and unpacked with `corral image unpack`, unpacked with
//! `umoci unpack` (`--rootless` when not root), and the two trees must agree
//! on names, types, modes, owners, link targets, hard-link groups, contents,
//! user xattrs and mtimes, except for the deviations listed in `DEVIATIONS`.
//! The same image pulled from the registry and imported from a docker-save
//! tar must give the tree the layout import gives. The sparse images are
//! compared in tests/image_differential_sparse.rs.
#![allow(clippy::unwrap_used)]

mod common;
mod differential_support;
mod image_support;

use std::collections::BTreeMap;
use std::path::Path;

use corral::image::Digest;
use differential_support::*;
use image_support::{skopeo_copy, umoci_rootfs};

/// Images both tools must unpack to the same tree.
const SAME: &[&str] = &["odd-names", "odd-layers"];

/// Where corral deliberately differs from umoci 0.4.7 (Debian's): (image,
/// path, reason). Only the mtime of these entries differs; the test checks
/// corral's documented value instead (`check_deviations`).
const DEVIATIONS: &[(&str, &str, &str)] = &[
    (
        "odd-names",
        "mtime/neg-gnu",
        "negative mtimes: corral clamps them to the epoch as containerd's boundTime \
         does (src/image/unpack.rs); umoci sets the pre-1970 time",
    ),
    (
        "odd-names",
        "mtime/neg-pax",
        "as mtime/neg-gnu, from a PAX `mtime` record",
    ),
    (
        "odd-names",
        "mtime/huge",
        "2^40 s: corral clamps to 9999-12-31 and the kernel then to the filesystem's \
         limit (ext4: 2446); umoci's utimes overflows to 1901-12-13",
    ),
    (
        "odd-layers",
        "usr",
        "a layer that changes a lower directory without an entry for it leaves the \
         directory's mtime as the lower layer set it: corral restores it for every \
         directory it adds to or removes from; umoci only for an entry's existing \
         parent, so usr/share, created through `rel -> usr` for rel/share/doc, gives \
         usr the time of the unpack",
    ),
];

/// Device nodes need CAP_MKNOD. Rootless, umoci writes an empty regular file
/// in their place; corral skips them with one warning (issue 3: "device nodes
/// skipped rootless with one warning"), so a sandbox never mistakes a
/// placeholder for a device.
const DEVICES: &[&str] = &["special/null", "special/blk"];

/// Lines naming every difference between two trees (corral's first, then
/// umoci's or another corral one's). A directory created implicitly (no
/// header gave its time) has "now" as mtime in both: those times are not
/// compared.
/// `against_umoci`: the image's name when `theirs` is umoci's tree, whose
/// documented deviations are then not differences; `None` between two
/// trees of corral's, which must agree on those entries too.
fn differences(
    ours: &BTreeMap<String, Node>,
    theirs: &BTreeMap<String, Node>,
    since: i64,
    against_umoci: Option<&str>,
) -> Vec<String> {
    let mut out = differences_with(ours, theirs, |path, a, b| {
        if !common::is_root() && DEVICES.contains(&path) {
            let placeholder = b.as_ref().map_or(true, |n| n.kind == "file");
            if a.is_none() && placeholder {
                return false;
            }
        }
        if let (Some(a), Some(b)) = (a, b) {
            if a.kind == "dir" && a.mtime.0 >= since && b.mtime.0 >= since {
                b.mtime = a.mtime;
            }
            if against_umoci
                .is_some_and(|image| DEVIATIONS.iter().any(|(i, p, _)| *i == image && *p == path))
            {
                b.mtime = a.mtime;
            }
        }
        true
    });
    let (ga, gb) = (link_groups(ours), link_groups(theirs));
    if ga != gb {
        out.push(format!("hard links: left {ga:?}, right {gb:?}"));
    }
    out
}

#[test]
fn odd_images_unpack_like_umoci() {
    if !tools_present("odd_images_unpack_like_umoci") {
        return;
    }
    let work = common::tempdir();
    let layouts = generate(work.path());
    let store_dir = common::tempdir();
    let store = store_dir.path();
    let since = now_secs();
    let mut failures = Vec::new();
    for name in SAME {
        let layout = layouts.join(name);
        let image = format!("local/{name}:v1");
        import_as(store, &layout, &image);
        let ours = corral_unpack(store, &image, &work.path().join(format!("{name}-corral")));
        let bundle = work.path().join(format!("{name}-umoci"));
        umoci_rootfs(&layout, "v1", &bundle);
        let theirs = snapshot(&bundle.join("rootfs"));
        assert!(ours.len() > 20, "{name}: only {} entries", ours.len());
        for diff in differences(&ours, &theirs, since, Some(name)) {
            failures.push(format!("{name}: {diff}"));
        }
        check_deviations(name, &ours);
        check_known(name, &ours);
    }
    clear_store(store);
    open_up(work.path());
    assert!(
        failures.is_empty(),
        "corral (left) and umoci (right) differ:\n{}",
        failures.join("\n")
    );
}

/// A few facts of corral's tree, so that two trees agreeing on nothing
/// (no owners recorded, no hard links made) cannot pass unnoticed.
fn check_known(image: &str, ours: &BTreeMap<String, Node>) {
    let groups = link_groups(ours);
    if image == "odd-names" {
        assert_eq!(ours["owners/big"].owner, (70000, 80000));
        assert_eq!(ours["owners/dir"].owner, (1234, 5678));
        assert_eq!(ours["perm/suid"].mode, 0o4755);
        assert_eq!(
            ours["xattr/f"].xattrs,
            vec![("user.foo".to_string(), b"bar".to_vec())]
        );
        assert_eq!(groups.len(), 2, "{groups:?}");
        let names: Vec<&str> = ours["xattr/cap"]
            .xattrs
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        let want: &[&str] = if common::is_root() {
            &["security.capability"]
        } else {
            &[]
        };
        assert_eq!(
            names, want,
            "capabilities as root only, never SELinux labels"
        );
    } else {
        assert!(groups.contains(&vec!["hl/second".to_string(), "hl/target".to_string()]));
        let sha = |data: &[u8]| Digest::sha256_of(data).to_string();
        for (path, data) in [
            ("repl-link", &b"R1"[..]),
            ("repl", b"R2"),
            ("bin/sh", b"BB"),
            ("bin/box", b"BB2"),
            ("sl2", b"old"),
            ("sl", b"new"),
            ("wlink", b"W"),
            ("usr/share/doc", b"through a relative symlink"),
        ] {
            assert_eq!(ours[path].data, sha(data), "{path}");
        }
        for group in [["hl-to-sym", "sym-to-file"], ["zero-link", "zero-mode"]] {
            assert!(
                groups.contains(&group.map(String::from).to_vec()),
                "{groups:?}"
            );
        }
        assert!(ours.contains_key("real/new") && !ours.contains_key("real/a"));
        assert_eq!(ours["linkdir"].kind, "symlink");
        assert_eq!(ours["f2d"].kind, "symlink");
        assert_eq!(ours["d2s"].kind, "dir");
        // Written through `lib64 -> /usr/lib64`, whited out by its real path.
        assert!(!ours.contains_key("usr/lib64/ld.so") && ours.contains_key("usr/lib64"));
    }
}

/// What corral writes where it deliberately differs from umoci.
fn check_deviations(image: &str, ours: &BTreeMap<String, Node>) {
    for (_, path, _) in DEVIATIONS.iter().filter(|(i, _, _)| *i == image) {
        let mtime = ours[*path].mtime.0;
        match *path {
            "mtime/huge" => assert!(mtime > i64::from(i32::MAX), "{path}: {mtime}"),
            "usr" => assert_eq!(mtime, 1_700_000_000, "{path}"),
            _ => assert_eq!(mtime, 0, "{path}"),
        }
    }
}

/// The odd images through the registry (`corral pull`), as an OCI layout
/// (`corral import DIR`) and as a docker-save tar (`corral import TAR`): the
/// same tree every time, including the store's chain dir when it is ours to
/// read.
#[test]
fn odd_images_same_from_registry_layout_and_docker_save() {
    let test = "odd_images_same_from_registry_layout_and_docker_save";
    if !tools_present(test) {
        return;
    }
    let Some(reg) = common::require_registry(test) else {
        return;
    };
    let work = common::tempdir();
    let layouts = generate(work.path());
    let tag = std::process::id();
    // No credentials: not the user's, nor a missing $XDG_RUNTIME_DIR's.
    let auth = work.path().join("auth.json");
    std::fs::write(&auth, r#"{"auths":{}}"#).unwrap();
    let since = now_secs();
    for name in SAME {
        let layout = layouts.join(name);
        let remote = format!("{reg}/corral-test/{name}:{tag}");
        skopeo_copy(&[
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--authfile",
            auth.to_str().unwrap(),
            &format!("oci:{}:v1", layout.display()),
            &format!("docker://{remote}"),
        ]);
        let stores = common::tempdir();
        let s1 = stores.path().join("s1");
        corral(&s1, &["-q", "pull", &remote]);
        let pulled = corral_unpack(&s1, &remote, &work.path().join(format!("{name}-pulled")));

        let s2 = stores.path().join("s2");
        let local = format!("local/{name}:v1");
        import_as(&s2, &layout, &local);
        let imported = corral_unpack(&s2, &local, &work.path().join(format!("{name}-layout")));

        // Docker archives have no zstd: recompress to gzip first (same diff_ids).
        let gzipped = work.path().join(format!("{name}-gzip"));
        skopeo_copy(&[
            "--dest-compress",
            "--dest-compress-format",
            "gzip",
            &format!("oci:{}:v1", layout.display()),
            &format!("oci:{}:v1", gzipped.display()),
        ]);
        let tar = work.path().join(format!("{name}.tar"));
        skopeo_copy(&[
            &format!("oci:{}:v1", gzipped.display()),
            &format!("docker-archive:{}:corral-test/{name}:saved", tar.display()),
        ]);
        let s3 = stores.path().join("s3");
        corral(&s3, &["-q", "import", tar.to_str().unwrap()]);
        let saved = corral_unpack(
            &s3,
            &format!("corral-test/{name}:saved"),
            &work.path().join(format!("{name}-docker")),
        );

        assert_eq!(
            differences(&pulled, &imported, since, None),
            Vec::<String>::new(),
            "{name}: pulled vs layout"
        );
        assert_eq!(
            differences(&saved, &imported, since, None),
            Vec::<String>::new(),
            "{name}: docker-save vs layout"
        );

        // The chain dir is unpacked in a subuid-mapped namespace when the
        // user has a range: then its owners are subordinate ids we cannot
        // read as (tests/image_ownership.rs covers that case).
        if common::is_root() || corral::image::userns::caller_sub_ids().is_none() {
            let info = corral(&s1, &["image", "inspect", &remote]);
            let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
            let chain = snapshot(Path::new(info["rootfs"].as_str().unwrap()));
            assert_eq!(
                differences(&chain, &imported, since, None),
                Vec::<String>::new(),
                "{name}: chain dir vs layout"
            );
        }
        for store in [&s1, &s2, &s3] {
            clear_store(store);
        }
    }
    open_up(work.path());
}

/// L1 has the file `fparent`, L2 `fparent/child` with no entry for the
/// directory. umoci 0.4.7 fails ("mkdir parent: not a directory"); corral
/// replaces the file with a directory, as newer umoci's mkdirAll and
/// containerd do: the layer's own entry asks for a path whose parent must be
/// a directory, and the image-spec lets each entry replace what lower layers
/// had at its path.
#[test]
fn a_file_in_a_parent_path_is_replaced_where_umoci_refuses() {
    let test = "a_file_in_a_parent_path_is_replaced_where_umoci_refuses";
    if !tools_present(test) {
        return;
    }
    let work = common::tempdir();
    let layout = generate(work.path()).join("odd-file-parent");
    let store = work.path().join("store");
    let image = "local/file-parent:v1";
    import_as(&store, &layout, image);
    let ours = corral_unpack(&store, image, &work.path().join("corral"));
    assert_eq!(ours["fparent"].kind, "dir");
    assert_eq!(
        ours["fparent/child"].data,
        Digest::sha256_of(b"under a former file").to_string()
    );
    let umoci = image_support::umoci_unpack(&layout, "v1", &work.path().join("umoci"));
    assert!(
        !umoci.status.success(),
        "umoci now accepts this image: compare the trees instead"
    );
    clear_store(&store);
    open_up(work.path());
}
