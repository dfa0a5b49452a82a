//! Sparse layers against umoci and GNU tar. image-spec layer.md: "Sparse
//! files SHOULD NOT be used because they lack consistent support across tar
//! implementations", but GNU tar writes them and umoci (Go's archive/tar)
//! expands the PAX formats. scripts/fixtures/img_odd.py writes the layers
//! with GNU tar itself (`odd-pax-sparse*`, `odd-sparse`).
#![allow(clippy::unwrap_used)]

mod common;
mod differential_support;
mod image_support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use differential_support::*;
use image_support::umoci_rootfs;

/// The PAX 0.0, 0.1 and 1.0 layers must give umoci's tree. umoci 0.4.7
/// refuses old-GNU 'S' entries; there GNU tar's own extraction is the
/// reference. Files with holes must keep them on disk where the filesystem
/// can.
#[test]
fn sparse_layers_expand_like_umoci_and_gnu_tar() {
    let test = "sparse_layers_expand_like_umoci_and_gnu_tar";
    if !tools_present(test) {
        return;
    }
    let work = common::tempdir();
    let layouts = generate(work.path());
    let holes = common::keeps_holes(work.path());
    if !holes {
        eprintln!("{test}: this filesystem does not keep holes; st_blocks not checked");
    }
    let mut failures = Vec::new();
    for name in ["odd-pax-sparse", "odd-pax-sparse-0.0", "odd-pax-sparse-0.1"] {
        let layout = layouts.join(name);
        let store = work.path().join(format!("{name}-store"));
        let image = format!("local/{name}:v1");
        import_as(&store, &layout, &image);
        let dest = work.path().join(format!("{name}-corral"));
        let ours = corral_unpack(&store, &image, &dest);
        let bundle = work.path().join(format!("{name}-umoci"));
        umoci_rootfs(&layout, "v1", &bundle);
        let theirs = snapshot(&bundle.join("rootfs"));
        assert_eq!(ours.len(), 4, "{name}: {:?}", ours.keys());
        // No documented deviation from umoci for these images.
        for diff in differences_with(&ours, &theirs, |_, _, _| true) {
            failures.push(format!("{name}: {diff}"));
        }
        let compared = same_files(&dest, &bundle.join("rootfs"), &mut failures, name);
        assert_eq!(compared, 3, "{name}");
        let expect = [
            ("sparse", 2 << 20),
            ("dir/mixed", 5 << 20),
            ("dir/holes", 1 << 20),
        ];
        check_sparse(&dest, &expect, holes, name);
        clear_store(&store);
    }

    // Old-GNU: GNU tar's extraction of the layer blob is the reference.
    let layout = layouts.join("odd-sparse");
    let store = work.path().join("odd-sparse-store");
    let image = "local/odd-sparse:v1";
    import_as(&store, &layout, image);
    let dest = work.path().join("odd-sparse-corral");
    corral_unpack(&store, image, &dest);
    let by_tar = work.path().join("odd-sparse-tar");
    std::fs::create_dir(&by_tar).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-xf")
        .arg(layer_blob(&layout))
        .arg("-C")
        .arg(&by_tar)
        .output()
        .unwrap();
    common::assert_success(&out, "tar -xf");
    assert_eq!(same_files(&dest, &by_tar, &mut failures, "odd-sparse"), 2);
    check_sparse(
        &dest,
        &[("sparse", (3 << 20) + 3), ("hole-only", 64 << 10)],
        holes,
        "odd-sparse",
    );
    let data = std::fs::read(dest.join("sparse")).unwrap();
    assert_eq!(
        &data[1 << 20..(1 << 20) + 600],
        "middle".repeat(100).as_bytes()
    );
    assert_eq!(&data[3 << 20..], b"end");
    clear_store(&store);
    let umoci = image_support::umoci_unpack(&layout, "v1", &work.path().join("odd-sparse-umoci"));
    assert!(
        !umoci.status.success(),
        "umoci now accepts old-GNU sparse entries: compare with its tree instead"
    );
    open_up(work.path());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The regular files of two trees: the same names, sizes and contents
/// (pushes each difference); returns how many were compared.
fn same_files(ours: &Path, theirs: &Path, failures: &mut Vec<String>, image: &str) -> usize {
    let files = |root: &Path| {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let md = std::fs::symlink_metadata(&path).unwrap();
                if md.is_dir() {
                    stack.push(path);
                } else if md.is_file() {
                    let rel = path.strip_prefix(root).unwrap().display().to_string();
                    out.insert(rel, (md.len(), std::fs::read(&path).unwrap()));
                }
            }
        }
        out
    };
    let (a, b) = (files(ours), files(theirs));
    if a.keys().ne(b.keys()) {
        failures.push(format!("{image}: files {:?} vs {:?}", a.keys(), b.keys()));
    }
    for (path, (size, data)) in &a {
        match b.get(path) {
            Some((s, d)) if s == size && d == data => {}
            Some((s, _)) => {
                failures.push(format!("{image}: {path}: size {size} vs {s}, or contents"))
            }
            None => {}
        }
    }
    a.len()
}

/// Sizes as the image says, and (where the filesystem keeps holes) less
/// than half of each file allocated: the holes were not written.
fn check_sparse(root: &Path, files: &[(&str, u64)], holes: bool, image: &str) {
    for (path, size) in files {
        let md = std::fs::metadata(root.join(path)).unwrap();
        assert_eq!(md.len(), *size, "{image}: {path}");
        if holes {
            assert!(
                md.blocks() * 512 < size / 2,
                "{image}: {path}: {} blocks allocated for {size} bytes",
                md.blocks()
            );
        }
    }
}

/// The first layer blob of a layout's only image.
fn layer_blob(layout: &Path) -> std::path::PathBuf {
    let json = |path: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let blob = |digest: &serde_json::Value| {
        let hex = digest.as_str().unwrap().strip_prefix("sha256:").unwrap();
        layout.join("blobs/sha256").join(hex)
    };
    let index = json(layout.join("index.json"));
    let manifest = json(blob(&index["manifests"][0]["digest"]));
    blob(&manifest["layers"][0]["digest"])
}
