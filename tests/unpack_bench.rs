//! Throughput of `apply_layer` against GNU `tar -xzf` on the same layer, in
//! one run, printed as MB/s and a ratio (no assertion on time). Run with
//!   tar -C / -czf /tmp/usr.tgz usr/lib/x86_64-linux-gnu
//!   cargo test --release --test unpack_bench -- --ignored --nocapture
//! (`CORRAL_BENCH_LAYER` picks another blob, e.g. a `.tar.zst`).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use corral::image::unpack::{apply_layer, clone_tree, remove_tree, UnpackOptions};

#[test]
#[ignore = "benchmark: needs a real layer blob, see the file header"]
fn bench_apply_layer_vs_gnu_tar() {
    let blob = std::env::var_os("CORRAL_BENCH_LAYER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/usr.tgz"));
    if !blob.exists() {
        eprintln!("SKIP bench: {} does not exist", blob.display());
        return;
    }
    let compressed = std::fs::metadata(&blob).unwrap().len();
    let tmp = tempfile::tempdir_in(blob.parent().unwrap()).unwrap();
    let opts = UnpackOptions::for_current_user();
    let runs: usize = std::env::var("CORRAL_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let mut ours = Vec::new();
    let mut gnu = Vec::new();
    let mut clones = Vec::new();
    let mut bytes = 0;
    for run in 0..runs {
        let dst = tmp.path().join(format!("ours{run}"));
        std::fs::create_dir(&dst).unwrap();
        let start = Instant::now();
        let file = std::fs::File::open(&blob).unwrap();
        let applied = apply_layer(&dst, file, &opts).unwrap();
        ours.push(start.elapsed().as_secs_f64());
        bytes = applied.uncompressed_bytes;

        let dst = tmp.path().join(format!("gnu{run}"));
        std::fs::create_dir(&dst).unwrap();
        let start = Instant::now();
        // `-xf` detects gzip or zstd from the file, like we do.
        let status = Command::new("tar")
            .arg("-xf")
            .arg(&blob)
            .arg("-C")
            .arg(&dst)
            .status()
            .unwrap();
        gnu.push(start.elapsed().as_secs_f64());
        assert!(status.success());

        let ours_dir = tmp.path().join(format!("ours{run}"));
        let clone_dir = tmp.path().join(format!("clone{run}"));
        let start = Instant::now();
        clone_tree(&ours_dir, &clone_dir).unwrap();
        clones.push(start.elapsed().as_secs_f64());
        remove_tree(&clone_dir).unwrap();
        remove_tree(&ours_dir).unwrap();
        remove_tree(&dst).unwrap();
    }
    // The ceiling: inflate + sha256 alone, one thread, output discarded.
    let start = Instant::now();
    let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&blob).unwrap());
    let mut dec: Box<dyn std::io::Read> = if blob.extension().is_some_and(|e| e == "zst") {
        Box::new(zstd::stream::read::Decoder::with_buffer(file).unwrap())
    } else {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    loop {
        let n = std::io::Read::read(&mut dec, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        sha2::Digest::update(&mut hasher, &buf[..n]);
    }
    let ceiling = start.elapsed().as_secs_f64();
    let best = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    let mb = bytes as f64 / 1e6;
    let (o, g) = (best(&ours), best(&gnu));
    println!(
        "layer {} ({:.0} MB compressed, {mb:.0} MB tar), best of {runs}:",
        blob.display(),
        compressed as f64 / 1e6
    );
    println!("  corral apply_layer: {o:.2} s  {:.0} MB/s", mb / o);
    println!("  GNU tar -xf:        {g:.2} s  {:.0} MB/s", mb / g);
    println!(
        "  inflate+sha256 only: {ceiling:.2} s  {:.0} MB/s",
        mb / ceiling
    );
    println!("  ratio (tar time / ours): {:.2}x", g / o);
    println!("  ours / inflate+hash ceiling: {:.2}", ceiling / o);
    println!("  clone_tree of the result: {:.2} s", best(&clones));
}
