//! Sparse tar entries through the applier: the PAX formats 0.0, 0.1 and 1.0
//! and old-GNU 'S' entries expand with holes kept, and hostile maps (absurd
//! counts and sizes, overlaps, extents out of range, truncated maps, endless
//! old-GNU extension blocks) are clean errors that name the entry, without
//! huge allocations. tests/image_differential.rs compares GNU tar's own
//! layers with umoci and GNU tar.
#![allow(clippy::unwrap_used)]

mod common;
mod unpack_support;

use std::os::unix::fs::{FileExt, MetadataExt};

use corral::image::unpack::{AppliedLayer, UnpackError, UnpackOptions};
use tar::{EntryType, GnuExtSparseHeader, Header};
use unpack_support::*;

const GIB: u64 = 1 << 30;

fn refused(res: Result<AppliedLayer, UnpackError>) -> (String, String) {
    match res {
        Ok(applied) => panic!("layer was accepted: {applied:?}"),
        Err(UnpackError::ReadSparseMap { path, reason }) => (path, reason),
        Err(other) => (String::new(), format!("{other}: {:?}", other)),
    }
}

/// Whether the filesystem of the scene keeps holes.
fn keeps_holes(s: &Scene) -> bool {
    common::keeps_holes(s.tmp.path())
}

fn read_at(path: &std::path::Path, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, offset)
        .unwrap();
    buf
}

/// Size as asked; where holes are kept, under 1 MiB allocated.
fn assert_sparse(s: &Scene, rel: &str, size: u64) {
    let md = std::fs::metadata(s.path(rel)).unwrap();
    assert_eq!(md.len(), size, "{rel}");
    if keeps_holes(s) {
        assert!(md.blocks() * 512 < 1 << 20, "{rel}: {} blocks", md.blocks());
    }
}

#[test]
fn pax_1_0_expands_under_the_real_name_with_holes() {
    let s = Scene::new();
    let layer = pax_sparse_1_0(
        "dir/big",
        &GIB.to_string(),
        "2\n0\n3\n536870912\n4\n",
        b"abcWXYZ",
    );
    s.apply(&layer.dir("dir", 0o755).tar()).unwrap();
    assert!(!s.path("GNUSparseFile.0").exists());
    assert_sparse(&s, "dir/big", GIB);
    assert_eq!(read_at(&s.path("dir/big"), 0, 5), b"abc\0\0");
    assert_eq!(read_at(&s.path("dir/big"), 536_870_910, 8), b"\0\0WXYZ\0\0");
    assert_eq!(mode(&s.path("dir/big")), 0o644);
}

#[test]
fn pax_0_0_and_0_1_expand_from_their_records() {
    let s = Scene::new();
    let layer = Layer::new()
        .pax(&[
            ("GNU.sparse.size", b"10000"),
            ("GNU.sparse.numblocks", b"2"),
            ("GNU.sparse.offset", b"2"),
            ("GNU.sparse.numbytes", b"3"),
            ("GNU.sparse.offset", b"9998"),
            ("GNU.sparse.numbytes", b"2"),
        ])
        .file("v00", 0o600, b"abcYZ")
        .pax(&[
            ("GNU.sparse.size", b"8192"),
            ("GNU.sparse.numblocks", b"1"),
            ("GNU.sparse.name", b"v01"),
            ("GNU.sparse.map", b"4096,2"),
        ])
        .file("GNUSparseFile.7/v01", 0o640, b"hi");
    s.apply(&layer.tar()).unwrap();
    let mut want = vec![0u8; 10000];
    want[2..5].copy_from_slice(b"abc");
    want[9998..].copy_from_slice(b"YZ");
    assert_eq!(std::fs::read(s.path("v00")).unwrap(), want);
    let mut want = vec![0u8; 8192];
    want[4096..4098].copy_from_slice(b"hi");
    assert_eq!(std::fs::read(s.path("v01")).unwrap(), want);
    assert!(!s.path("GNUSparseFile.7").exists());
}

#[test]
fn old_gnu_entries_expand_without_writing_holes() {
    let layer = old_gnu_sparse_layer("big", GIB, &[(1 << 29, &[7u8; 4096]), (GIB - 3, b"end")]);
    let s = Scene::new();
    s.apply(&layer).unwrap();
    assert_sparse(&s, "big", GIB);
    assert_eq!(read_at(&s.path("big"), (1 << 29) - 1, 4098), {
        let mut v = vec![7u8; 4098];
        (v[0], v[4097]) = (0, 0);
        v
    });
    assert_eq!(read_at(&s.path("big"), GIB - 4, 4), b"\0end");
}

#[test]
fn hostile_pax_maps_are_refused_naming_the_entry() {
    let big = (1u64 << 63).to_string();
    for (layer, want) in [
        (
            pax_sparse_1_0("big", "4096", "1000000000\n", b""),
            "at most",
        ),
        (
            pax_sparse_1_0("big", &big, "0\n", b""),
            "past the largest file offset",
        ),
        (
            pax_sparse_1_0("big", &(1u64 << 62).to_string(), "0\n", b""),
            "expansion limit",
        ),
        (
            pax_sparse_1_0("big", "100", "2\n0\n10\n5\n10\n", &[1; 20]),
            "overlaps",
        ),
        (
            pax_sparse_1_0("big", "100", "2\n50\n10\n0\n10\n", &[1; 20]),
            "overlaps",
        ),
        (
            pax_sparse_1_0("big", "100", "1\n95\n10\n", &[1; 10]),
            "past the real size",
        ),
        (
            pax_sparse_1_0("big", "100", "1\n18446744073709551615\n2\n", &[1; 2]),
            "past the real size",
        ),
        (
            pax_sparse_1_0("big", "8192", "1\n0\n4096\n", &[1; 100]),
            "stores 100",
        ),
        (
            pax_sparse_1_0("big", "100", "1\n0\nx\n", b""),
            "other than decimal",
        ),
        (
            pax_sparse_1_0("big", "100", "1\n", b""),
            "other than decimal",
        ),
        (pax_sparse_1_0("big", "4096", "", b""), "other than decimal"),
        (
            Layer::new()
                .pax(&[
                    ("GNU.sparse.major", b"1"),
                    ("GNU.sparse.minor", b"0"),
                    ("GNU.sparse.name", b"big"),
                    ("GNU.sparse.realsize", b"4096"),
                ])
                .file("GNUSparseFile.0/big", 0o644, b"1\n0\n4096\n"),
            "ends inside",
        ),
        (
            Layer::new()
                .pax(&[
                    ("GNU.sparse.size", b"10"),
                    ("GNU.sparse.numblocks", b"1000000000"),
                    ("GNU.sparse.offset", b"0"),
                    ("GNU.sparse.numbytes", b"1"),
                ])
                .file("big", 0o644, b"x"),
            "at most",
        ),
        (
            Layer::new()
                .pax(&[
                    ("GNU.sparse.size", b"10"),
                    ("GNU.sparse.numblocks", b"2"),
                    ("GNU.sparse.name", b"big"),
                    ("GNU.sparse.map", b"0,1,0,1"),
                ])
                .file("GNUSparseFile.0/big", 0o644, b"xy"),
            "overlaps",
        ),
        (
            Layer::new()
                .pax(&[
                    ("GNU.sparse.major", b"3"),
                    ("GNU.sparse.minor", b"0"),
                    ("GNU.sparse.name", b"big"),
                ])
                .file("GNUSparseFile.0/big", 0o644, b"1\n0\n1\n"),
            "unknown GNU sparse format version 3.0",
        ),
    ] {
        let s = Scene::new();
        let (path, reason) = refused(s.apply(&layer.tar()));
        assert!(reason.contains(want), "want {want:?}: {reason}");
        assert_eq!(path, "big", "{reason}");
        assert!(!s.path("big").exists() || std::fs::metadata(s.path("big")).unwrap().len() == 0);
        assert!(!s.path("GNUSparseFile.0").exists());
    }
}

#[test]
fn sparse_files_together_stay_within_the_layer_limit() {
    let half = (600u64 << 20).to_string();
    let layer =
        pax_sparse_1_0("a", &half, "0\n", b"").tar_then(pax_sparse_1_0("b", &half, "0\n", b""));
    let s = Scene::new();
    let (path, reason) = refused(s.apply(&layer));
    assert_eq!(path, "b");
    assert!(reason.contains("expansion limit"), "{reason}");
    let o = UnpackOptions {
        max_bytes: 2 * GIB,
        ..opts()
    };
    let s = Scene::new();
    s.apply_with(&layer, &o).unwrap();
    assert_sparse(&s, "a", 600 << 20);
    assert_sparse(&s, "b", 600 << 20);
}

/// An old-GNU header (`S`) with the first sparse slots and `isextended`.
fn old_gnu(name: &str, real_size: u64, slots: &[(u64, u64)], extended: bool) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::GNUSparse);
    h.set_path(name).unwrap();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(MTIME);
    h.set_size(slots.iter().map(|s| s.1).sum());
    let gnu = h.as_gnu_mut().unwrap();
    gnu.set_real_size(real_size);
    gnu.set_is_extended(extended);
    for (slot, (offset, len)) in gnu.sparse.iter_mut().zip(slots) {
        slot.set_offset(*offset);
        slot.set_length(*len);
    }
    h.set_cksum();
    h
}

fn finish(mut tar: Vec<u8>) -> Vec<u8> {
    tar.resize(tar.len().div_ceil(512) * 512 + 1024, 0);
    tar
}

#[test]
fn old_gnu_real_sizes_count_against_the_limit_before_expanding() {
    // 2^62 bytes of zeros the tar crate would hand over, never read.
    let h = old_gnu("big", 1 << 62, &[(0, 512), ((1 << 62) - 1, 1)], false);
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(&[b'a'; 513]);
    let s = Scene::new();
    let (path, reason) = refused(s.apply(&finish(tar)));
    assert_eq!(path, "big", "{reason}");
    assert!(reason.contains("expansion limit"), "{reason}");
    assert!(!s.path("big").exists());
}

#[test]
fn endless_old_gnu_extension_blocks_are_refused() {
    // 20 000 extension blocks of 21 extents (10 MiB of map) before the
    // data: over the 8 MiB the parser may read for one entry's headers.
    let h = old_gnu("big", 1 << 40, &[(0, 0), (1, 0), (2, 0), (3, 0)], true);
    let mut tar = h.as_bytes().to_vec();
    let mut next = 4u64;
    for block in 0..20_000 {
        let mut ext = GnuExtSparseHeader::new();
        for slot in ext.sparse.iter_mut() {
            slot.set_offset(next);
            slot.set_length(0);
            next += 1;
        }
        ext.isextended[0] = u8::from(block < 19_999);
        tar.extend_from_slice(ext.as_bytes());
    }
    let s = Scene::new();
    match s.apply(&finish(tar)) {
        Err(e @ UnpackError::ParseEntry { index: 0, .. }) => {
            let chain = format!("{e}: {}", std::error::Error::source(&e).unwrap());
            assert!(chain.contains("take more than 8388608 bytes"), "{chain}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_real_name_gets_every_check() {
    // `..` in GNU.sparse.name is refused like in a header name.
    let s = Scene::new();
    let err = s
        .apply(&pax_sparse_1_0("../escape", "10", "0\n", b"").tar())
        .unwrap_err()
        .to_string();
    assert!(err.contains("`..`") && err.contains("../escape"), "{err}");
    // A real name through a symlink that leaves the root stays inside.
    let s = Scene::new();
    let layer = Layer::new()
        .symlink("out", &s.host_str())
        .tar_then(pax_sparse_1_0("out/pwn", "10", "1\n0\n2\n", b"hi"));
    s.apply(&layer).unwrap();
    assert!(s
        .root
        .join(s.host_str().trim_start_matches('/'))
        .join("pwn")
        .exists());
    // A sparse whiteout name removes the lower file; a hard link finds the
    // sparse file by its real name.
    let s = Scene::new();
    s.apply(&Layer::new().file("gone", 0o644, b"x").tar())
        .unwrap();
    let layer = pax_sparse_1_0(".wh.gone", "10", "0\n", b"")
        .tar_then(pax_sparse_1_0("big", "8192", "1\n4096\n2\n", b"hi").hardlink("link", "big"));
    s.apply(&layer).unwrap();
    assert!(!s.path("gone").exists());
    assert_eq!(ino(&s.path("link")), ino(&s.path("big")));
    // Sparse records on a non-file entry.
    let s = Scene::new();
    let layer = Layer::new()
        .pax(&[("GNU.sparse.size", b"10"), ("GNU.sparse.numblocks", b"0")])
        .symlink("big", "target");
    let (path, reason) = refused(s.apply(&layer.tar()));
    assert_eq!(path, "big");
    assert!(reason.contains("only regular files"), "{reason}");
}
