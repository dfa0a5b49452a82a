//! Pulls before a stage: Ctrl-C / SIGTERM during a stalled pull stops it
//! at once with the summary and 130/143, and a later run resumes the pull
//! from the same store; progress reaches `--events` and stderr.

#![allow(clippy::unwrap_used)]

mod common;
mod image_support;
mod run_support;

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use image_support::{ranged, FakeServer, Reply, TestImage};
use run_support::{
    events, eventually, pipeline, setup, signal_and_wait, stderr, stdout, step, Env,
};

/// A gzip layer holding one executable owned by root.
fn executable_layer(path: &str, data: &[u8]) -> (Vec<u8>, corral::image::Digest) {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_uid(0);
    dir.set_gid(0);
    dir.set_mtime(1_700_000_000);
    dir.set_size(0);
    builder.append_data(&mut dir, "bin/", &[][..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(data.len() as u64);
    builder.append_data(&mut h, path, data).unwrap();
    let raw = builder.into_inner().unwrap();
    let diff_id = corral::image::Digest::sha256_of(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// An image whose only layer holds a static busybox as `/bin/sh`.
fn busybox_image() -> TestImage {
    let busybox = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    let (blob, diff_id) = executable_layer("bin/sh", &busybox);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
    }))
    .unwrap();
    let config_digest = corral::image::Digest::sha256_of(&config);
    let layer_digest = corral::image::Digest::sha256_of(&blob);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest.to_string(), "size": blob.len()}],
    }))
    .unwrap();
    TestImage {
        manifest_digest: corral::image::Digest::sha256_of(&manifest),
        manifest,
        config,
        config_digest,
        layers: vec![(layer_digest, blob)],
    }
}

/// A registry serving `image`; while `stall` is set, its layer stops after
/// the first 64 KiB and the connection hangs.
fn serve(image: TestImage, stall: Arc<AtomicBool>) -> FakeServer {
    FakeServer::start(move |req| {
        let (digest, blob) = &image.layers[0];
        if req.path.ends_with(&format!("/blobs/{digest}")) {
            if stall.load(Ordering::SeqCst) {
                let part = blob[..64 << 10].to_vec();
                return Reply::Stall(200, vec![], part, blob.len() as u64);
            }
            return ranged(req, blob);
        }
        image
            .answer(req)
            .unwrap_or_else(|| image_support::status(404))
    })
}

fn step_pipeline(env: &Env) -> std::path::PathBuf {
    env.write(
        "p.yaml",
        &pipeline(&step(
            "Run",
            "hello",
            Some("corral-test/bb:1"),
            "echo hello from the pulled image",
        )),
    )
}

fn interrupt_mid_pull(test: &str, sig: i32, code: i32) {
    let Some(env) = setup(test, false) else {
        return;
    };
    let stall = Arc::new(AtomicBool::new(true));
    let server = serve(busybox_image(), stall.clone());
    let mirror = format!("docker.io=http://{}", server.addr);
    let file = step_pipeline(&env);
    let ev = env.dir.path().join("events.jsonl");
    let mut child = env
        .command(&file)
        .args(["--registry-mirror", &mirror, "--events"])
        .arg(&ev)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let downloading = || {
        std::fs::read_to_string(&ev).is_ok_and(|t| {
            t.lines()
                .any(|l| l.contains("pull_progress") && l.contains("\"downloading\""))
        })
    };
    assert!(eventually(60, downloading), "the layer download began");
    let stopped = signal_and_wait(&mut child, sig);
    let out = child.wait_with_output().unwrap();
    assert!(stopped, "corral stopped the stalled pull on signal {sig}");
    eprintln!("{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(code));
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("s ") && l.contains("Skipped")),
        "summary printed: {text}"
    );
    assert!(
        stderr(&out).contains(&format!(
            "error: stage s: interrupted by signal {sig} while pulling images"
        )),
        "the reason follows the summary"
    );
    let stages = events(&ev, "stage_finished");
    assert_eq!(stages.len(), 1);
    assert!(stages[0]["error"]
        .as_str()
        .unwrap()
        .contains("while pulling images"));
    assert_eq!(events(&ev, "run_finished")[0]["exit_code"], code);
    assert!(events(&ev, "step_started").is_empty(), "no step started");

    // The store is consistent: the next run pulls (resuming) and runs.
    stall.store(false, Ordering::SeqCst);
    let out = env.run(&file, &["--registry-mirror", &mirror]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("hello from the pulled image"));
}

#[test]
fn sigint_during_a_pull_stops_it_and_a_rerun_succeeds() {
    interrupt_mid_pull("sigint_mid_pull", libc::SIGINT, 130);
}

#[test]
fn sigterm_during_a_pull_stops_it_and_a_rerun_succeeds() {
    interrupt_mid_pull("sigterm_mid_pull", libc::SIGTERM, 143);
}

#[test]
fn pull_progress_reaches_events_and_stderr_lines() {
    let Some(env) = setup("pull_progress", false) else {
        return;
    };
    let image = busybox_image();
    let (layer_digest, blob) = image.layers[0].clone();
    let server = serve(image, Arc::new(AtomicBool::new(false)));
    let mirror = format!("docker.io=http://{}", server.addr);
    let file = step_pipeline(&env);
    let ev = env.dir.path().join("events.jsonl");
    let out = env.run(
        &file,
        &[
            "--registry-mirror",
            &mirror,
            "--events",
            ev.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let progress = events(&ev, "pull_progress");
    let phases: Vec<&str> = progress
        .iter()
        .map(|e| e["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases.first(), Some(&"resolving"), "{phases:?}");
    assert_eq!(phases.last(), Some(&"done"), "{phases:?}");
    let layer = layer_digest.to_string();
    let of_layer: Vec<&serde_json::Value> = progress
        .iter()
        .filter(|e| e["digest"] == layer.as_str())
        .collect();
    let total = blob.len() as u64;
    assert!(of_layer
        .iter()
        .all(|e| e["image"] == "docker.io/corral-test/bb:1"));
    let downloads: Vec<u64> = of_layer
        .iter()
        .filter(|e| e["phase"] == "downloading")
        .map(|e| {
            assert_eq!(e["total_bytes"], total);
            e["done_bytes"].as_u64().unwrap()
        })
        .collect();
    // From 0 to the whole layer, in order, a handful of lines, not one per
    // chunk.
    assert_eq!(downloads.first(), Some(&0));
    assert_eq!(downloads.last(), Some(&total));
    assert!(downloads.windows(2).all(|w| w[0] <= w[1]), "{downloads:?}");
    assert!(downloads.len() <= 13, "{downloads:?}");
    assert!(of_layer.iter().any(|e| e["phase"] == "extracting"));
    // stderr is not a terminal here: plain lines, no bar drawing.
    let err = stderr(&out);
    assert!(err.contains("pulling docker.io/corral-test/bb:1"), "{err}");
    assert!(err.contains(&format!("{}: downloaded", layer_digest.short())));
    assert!(!err.contains('\r') && !err.contains("\x1b["), "{err}");

    // -q (a fresh store, so it pulls again): no pull lines, still events.
    let ev2 = env.dir.path().join("events2.jsonl");
    let out = common::corral(&env.dir.path().join("store2"))
        .args(["-q", "--color", "never", "run"])
        .arg(&file)
        .arg("--workspace")
        .arg(&env.workspace)
        .args(["--registry-mirror", &mirror, "--events"])
        .arg(&ev2)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("pulling"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("downloaded"), "{}", stderr(&out));
    assert!(!events(&ev2, "pull_progress").is_empty());
}

#[test]
fn a_terminal_gets_a_bar_per_layer() {
    use std::io::Read;
    let Some(env) = setup("pull_bars", false) else {
        return;
    };
    let image = busybox_image();
    let short = image.layers[0].0.short().to_string();
    let server = serve(image, Arc::new(AtomicBool::new(true)));
    let mirror = format!("docker.io=http://{}", server.addr);
    let file = step_pipeline(&env);
    let (master, slave) = common::openpty();
    let mut child = env
        .command(&file)
        .args(["--registry-mirror", &mirror])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut reader = std::fs::File::from(master);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // The layer stalls after 64 KiB: its bar shows while it waits.
    let bar = format!("{short} [");
    let mut seen = String::new();
    let drawn = eventually(60, || {
        while let Ok(chunk) = rx.try_recv() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        seen.contains(&bar) && seen.contains("KiB/")
    });
    let stopped = signal_and_wait(&mut child, libc::SIGINT);
    let status = child.wait().unwrap();
    assert!(drawn, "a bar for layer {short} on the terminal:\n{seen}");
    assert!(
        seen.contains("pulling docker.io/corral-test/bb:1"),
        "{seen}"
    );
    assert!(stopped && status.code() == Some(130), "{status:?}");
}

#[test]
fn an_image_named_by_a_secret_is_masked_in_pull_progress() {
    let Some(env) = setup("pull_secret_image", false) else {
        return;
    };
    let server = serve(busybox_image(), Arc::new(AtomicBool::new(false)));
    let mirror = format!("docker.io=http://{}", server.addr);
    let file = env.write(
        "p.yaml",
        &pipeline(&step(
            "Run",
            "hello",
            Some(r#"<+secrets.getValue("ns")>/bb:1"#),
            "echo hello from the pulled image",
        )),
    );
    let ev = env.dir.path().join("events.jsonl");
    let out = env
        .command(&file)
        .env("PULL_NS", "corral-test")
        .args(["--secret", "ns=env:PULL_NS", "--registry-mirror", &mirror])
        .arg("--events")
        .arg(&ev)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(stdout(&out).contains("hello from the pulled image"));
    assert!(err.contains("pulling docker.io/"), "{err}");
    assert!(!err.contains("corral-test"), "{err}");
    let progress = events(&ev, "pull_progress");
    assert!(!progress.is_empty());
    assert!(progress
        .iter()
        .all(|e| !e["image"].as_str().unwrap().contains("corral-test")));
}
