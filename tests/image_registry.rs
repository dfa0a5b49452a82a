//! Pulls from the real test registry (Debian's docker-registry), imports,
//! store consistency under concurrency and kill -9, and the image commands.
#![allow(clippy::unwrap_used)]

mod common;
mod image_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use corral::image::{self, Credentials, NoProgress, Platform, Store};
use image_support::*;

fn import(
    store: &Path,
    path: &Path,
    name: Option<&str>,
) -> Result<Vec<image::Image>, image::ImageError> {
    let s = Store::open(store).unwrap();
    let applier: Arc<dyn image::LayerApplier> = Arc::new(TestApplier);
    image::import::import_path(&s, &applier, path, name, &NoProgress)
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn pulls_fixture_images() {
    let Some(reg) = common::require_registry("pulls_fixture_images") else {
        return;
    };
    let store = common::tempdir();
    let basic = pull(
        store.path(),
        &format!("{reg}/corral-test/basic:v1"),
        fast_options(),
    )
    .unwrap();
    assert_eq!(basic.reference, format!("{reg}/corral-test/basic:v1"));
    assert_eq!(read(basic.rootfs.join("etc/motd")), "replaced in layer 3\n");
    assert_eq!(basic.config.cmd, Some(vec!["/bin/sh".to_string()]));
    assert_eq!(basic.config.working_dir.as_deref(), Some("/"));

    let zstd = pull(
        store.path(),
        &format!("{reg}/corral-test/zstd:v1"),
        fast_options(),
    )
    .unwrap();
    assert_eq!(
        read(zstd.rootfs.join("zstd/data")),
        "compressed with zstd\n".repeat(100)
    );
    // Same base layer bytes as `basic`: its chain dir is shared. Small
    // middle layers get no chain dir of their own (chain::keep_chain).
    let chains: Vec<_> = std::fs::read_dir(store.path().join("layers"))
        .unwrap()
        .collect();
    assert_eq!(
        chains.len(),
        2 + 1,
        "basic has base + top, zstd adds its top"
    );
}

#[test]
fn multi_arch_selects_platform() {
    let Some(reg) = common::require_registry("multi_arch_selects_platform") else {
        return;
    };
    let image = format!("{reg}/corral-test/multiarch:v1");
    let store = common::tempdir();
    let mut options = fast_options();
    options.platform = Some(Platform::parse("linux/amd64").unwrap());
    let amd = pull(store.path(), &image, options).unwrap();
    assert_eq!(read(amd.rootfs.join("etc/arch")), "amd64\n");
    assert_eq!(amd.platform.unwrap().to_string(), "linux/amd64");

    let store = common::tempdir();
    let mut options = fast_options();
    options.platform = Some(Platform::parse("linux/aarch64").unwrap());
    let arm = pull(store.path(), &image, options).unwrap();
    assert_eq!(read(arm.rootfs.join("etc/arch")), "arm64\n");
    assert_ne!(arm.manifest_digest, amd.manifest_digest);

    let mut options = fast_options();
    options.platform = Some(Platform::parse("linux/s390x").unwrap());
    let err = pull(store.path(), &image, options).unwrap_err();
    let text = format!("{:?}", err);
    assert!(
        text.contains("linux/amd64") && text.contains("linux/arm64"),
        "{text}"
    );
}

#[test]
fn concurrent_pulls_share_the_store_safely() {
    let Some(reg) = common::require_registry("concurrent_pulls_share_the_store_safely") else {
        return;
    };
    let store = common::tempdir();
    let images = ["basic", "zstd", "basic", "zstd"];
    let handles: Vec<_> = images
        .iter()
        .map(|name| {
            let (dir, image) = (
                store.path().to_path_buf(),
                format!("{reg}/corral-test/{name}:v1"),
            );
            // Separate pullers: separate lock file descriptions, like separate processes.
            std::thread::spawn(move || pull(&dir, &image, fast_options()).map(|i| i.rootfs))
        })
        .collect();
    let roots: Vec<PathBuf> = handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert_eq!(roots[0], roots[2]);
    assert_eq!(roots[1], roots[3]);
    // The shared base chain and each image's top chain.
    assert_eq!(
        std::fs::read_dir(store.path().join("layers"))
            .unwrap()
            .count(),
        3
    );
    let leftovers: Vec<_> = std::fs::read_dir(store.path().join("tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let index: serde_json::Value =
        serde_json::from_str(&read(store.path().join("index.json"))).unwrap();
    assert_eq!(index["images"].as_object().unwrap().len(), 2);
}

#[test]
fn imports_layout_oci_archive_and_docker_save() {
    let Some(reg) = common::require_registry("imports_layout_oci_archive_and_docker_save") else {
        return;
    };
    let Some(fx) = common::require_fixtures("imports_layout_oci_archive_and_docker_save") else {
        return;
    };
    let layout = fx.join("layouts/img-basic");
    let store = common::tempdir();
    let pulled = pull(
        store.path(),
        &format!("{reg}/corral-test/basic:v1"),
        fast_options(),
    )
    .unwrap();
    let want = describe_tree(&pulled.rootfs, false);

    // OCI layout directory, under a new name: same manifest, same chain dir.
    let s2 = common::tempdir();
    let from_dir = import(s2.path(), &layout, Some("example.com/imported/basic:dir")).unwrap();
    assert_eq!(from_dir.len(), 1);
    // registry.sh pushes with --preserve-digests, so the bytes are the same.
    assert_eq!(from_dir[0].manifest_digest, pulled.manifest_digest);
    assert_eq!(from_dir[0].rootfs.file_name(), pulled.rootfs.file_name());
    assert_eq!(describe_tree(&from_dir[0].rootfs, false), want);

    // oci-archive: the same layout as a tar, read in place.
    let work = common::tempdir();
    let archive = work.path().join("basic-oci.tar");
    let tar = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&archive)
        .arg("-C")
        .arg(&layout)
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    let from_tar = import(s2.path(), &archive, Some("example.com/imported/basic:tar")).unwrap();
    assert_eq!(from_tar[0].manifest_digest, pulled.manifest_digest);
    assert_eq!(from_tar[0].rootfs, from_dir[0].rootfs);

    // docker-save tar (written by skopeo): a different manifest, same rootfs.
    let docker = work.path().join("basic-docker.tar");
    skopeo_copy(&[
        &format!("oci:{}", layout.display()),
        &format!(
            "docker-archive:{}:corral-test/basic:saved",
            docker.display()
        ),
    ]);
    let s3 = common::tempdir();
    let from_docker = import(s3.path(), &docker, None).unwrap();
    assert_eq!(
        from_docker[0].reference,
        "docker.io/corral-test/basic:saved"
    );
    assert_eq!(
        from_docker[0].rootfs.file_name(),
        pulled.rootfs.file_name(),
        "same chain ID"
    );
    assert_eq!(describe_tree(&from_docker[0].rootfs, false), want);
}

#[test]
fn corrupt_layout_is_rejected_and_nothing_committed() {
    let Some(fx) = common::require_fixtures("corrupt_layout_is_rejected_and_nothing_committed")
    else {
        return;
    };
    let work = common::tempdir();
    let layout = work.path().join("layout");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(fx.join("layouts/img-zstd"))
        .arg(&layout)
        .status()
        .unwrap();
    assert!(cp.success());
    // Corrupt the largest blob (a layer).
    let blobs = layout.join("blobs/sha256");
    let biggest = std::fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .path();
    let mut data = std::fs::read(&biggest).unwrap();
    data[100] ^= 0x55;
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&biggest).unwrap().permissions(),
        0o644,
    );
    std::fs::set_permissions(
        &biggest,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(&biggest, data).unwrap();
    let store = common::tempdir();
    let err = import(store.path(), &layout, Some("x.io/y:z")).unwrap_err();
    let text = format!("{err}: {:?}", err);
    let hex = biggest.file_name().unwrap().to_string_lossy().to_string();
    assert!(text.contains(&hex), "{text}");
    assert!(!committed_blobs(store.path()).contains(&hex));
    assert!(!store.path().join("index.json").exists());
}

#[test]
fn image_commands_list_inspect_remove_prune() {
    let Some(reg) = common::require_registry("image_commands_list_inspect_remove_prune") else {
        return;
    };
    let store = common::tempdir();
    let image = format!("{reg}/corral-test/basic:v1");
    let pulled = pull(store.path(), &image, fast_options()).unwrap();
    pull(
        store.path(),
        &format!("{reg}/corral-test/zstd:v1"),
        fast_options(),
    )
    .unwrap();

    let out = common::corral(store.path())
        .args(["images", "--json"])
        .output()
        .unwrap();
    common::assert_success(&out, "corral images --json");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [image.as_str(), &format!("{reg}/corral-test/zstd:v1")]
    );

    let out = common::corral(store.path())
        .args(["image", "inspect", &image])
        .output()
        .unwrap();
    common::assert_success(&out, "corral image inspect");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["manifest_digest"], pulled.manifest_digest.to_string());
    assert_eq!(info["config"]["config"]["Cmd"][0], "/bin/sh");
    assert_eq!(info["layers"].as_array().unwrap().len(), 4);

    let out = common::corral(store.path())
        .args(["rmi", &image])
        .output()
        .unwrap();
    common::assert_success(&out, "corral rmi");
    let out = common::corral(store.path())
        .args(["rmi", &image])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("corral-test/basic:v1"));

    let out = common::corral(store.path()).arg("prune").output().unwrap();
    common::assert_success(&out, "corral prune");
    // basic's own chains go; the base chain shared with zstd stays.
    assert_eq!(
        std::fs::read_dir(store.path().join("layers"))
            .unwrap()
            .count(),
        2
    );
    assert!(!pulled.rootfs.exists());
    let out = common::corral(store.path())
        .args(["image", "inspect", &format!("{reg}/corral-test/zstd:v1")])
        .output()
        .unwrap();
    assert!(out.status.success(), "zstd survives prune");
}

#[test]
fn basic_auth_against_htpasswd_registry() {
    let Some(fx) = common::require_fixtures("basic_auth_against_htpasswd_registry") else {
        return;
    };
    let Some(reg) = AuthRegistry::start("tester", "s3cret") else {
        common::skip(
            "basic_auth_against_htpasswd_registry",
            "cannot start docker-registry with htpasswd",
        );
        return;
    };
    skopeo_copy(&[
        "--dest-tls-verify=false",
        "--dest-creds",
        "tester:s3cret",
        &format!("oci:{}", fx.join("layouts/img-zstd").display()),
        &format!("docker://{}/private/zstd:v1", reg.addr),
    ]);
    let image = format!("{}/private/zstd:v1", reg.addr);

    // Without credentials: a clear refusal naming registry and repository.
    let store = common::tempdir();
    let err = pull(store.path(), &image, fast_options()).unwrap_err();
    let text = format!("{:?}", err);
    assert!(
        text.contains("Unauthorized") && text.contains("private/zstd"),
        "{text}"
    );

    // From a docker config.json (base64 `auth`).
    let cfg = common::tempdir();
    std::fs::write(
        cfg.path().join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"auth":"dGVzdGVyOnMzY3JldA=="}}}}}}"#,
            reg.addr
        ),
    )
    .unwrap();
    let mut options = fast_options();
    options.credential_sources.docker_config_dir = Some(cfg.path().to_path_buf());
    let pulled = pull(store.path(), &image, options).unwrap();
    assert!(pulled.rootfs.join("zstd/data").is_file());

    // From a connector.
    let store = common::tempdir();
    let mut options = fast_options();
    options.connector = Some(Credentials {
        username: "tester".into(),
        password: "s3cret".into(),
    });
    pull(store.path(), &image, options).unwrap();
}

#[test]
fn kill_during_pull_then_pull_again() {
    // A registry that stalls layer 0 halfway and serves layer 1 at once
    // (layer 0 first: nothing can be applied before it is complete).
    let img = TestImage::new(2, 300_000);
    let stall = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (i2, s2) = (img.clone(), stall.clone());
    let stalled = img.blob_path(0);
    let server = FakeServer::start(move |req| {
        if req.path.ends_with(&stalled) && s2.load(std::sync::atomic::Ordering::SeqCst) {
            let body = &i2.layers[0].1;
            return Reply::Stall(
                200,
                vec![],
                body[..body.len() / 2].to_vec(),
                body.len() as u64,
            );
        }
        i2.answer(req).unwrap_or(status(404))
    });
    let store = common::tempdir();
    let image = format!("{}/t/killed:1", server.addr);
    let log = store.path().join("pull.log");
    let mut child = common::corral(store.path())
        .args(["-v", "pull", &image])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let partial = store
        .path()
        .join(format!("tmp/sha256-{}.partial", img.layers[0].0.hex()));
    let half = (img.layers[0].1.len() / 2) as u64;
    let done_blob = store
        .path()
        .join(format!("blobs/sha256/{}", img.layers[1].0.hex()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !(done_blob.exists() && partial.metadata().map(|m| m.len() == half).unwrap_or(false)) {
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!(
                "pull never reached the stall (partial {:?} bytes of {half}):\n{}",
                partial.metadata().map(|m| m.len()).ok(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    child.wait().unwrap();

    // Consistent: no half blob visible, no image recorded, no chain dirs.
    assert!(!committed_blobs(store.path()).contains(&img.layers[0].0.hex().to_string()));
    assert!(!store.path().join("index.json").exists());
    assert_eq!(
        std::fs::read_dir(store.path().join("layers"))
            .unwrap()
            .count(),
        0
    );

    stall.store(false, std::sync::atomic::Ordering::SeqCst);
    let pulled = pull(store.path(), &image, fast_options()).unwrap();
    assert!(pulled.rootfs.join("file-1").is_file());
    // Layer 1 was not downloaded twice; layer 0 resumed where it stopped.
    assert_eq!(server.count("GET", &img.blob_path(1)), 1);
    let gets: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&img.blob_path(0)))
        .collect();
    assert_eq!(
        gets.last().unwrap().header("range"),
        Some(format!("bytes={half}-").as_str())
    );
}

#[test]
fn import_checks_diff_ids_and_names() {
    let img = TestImage::new(2, 500);
    let work = common::tempdir();

    // Fewer diff_ids than layers.
    let config: serde_json::Value = serde_json::from_slice(&img.config).unwrap();
    let mut short = config.clone();
    short["rootfs"]["diff_ids"].as_array_mut().unwrap().pop();
    let bad = work.path().join("bad");
    img.with_config(short)
        .write_layout(&bad, Some("example.com/x/y:z"));
    let store = common::tempdir();
    let err = import(store.path(), &bad, None).unwrap_err();
    assert!(
        err.to_string()
            .contains("2 layers but its config lists 1 diff_ids"),
        "{err}"
    );
    assert!(!store.path().join("index.json").exists());

    // A wrong diff_id: the layer unpacks to something else.
    let mut wrong = config.clone();
    wrong["rootfs"]["diff_ids"][1] = image::Digest::sha256_of(b"nope").to_string().into();
    let bad = work.path().join("wrong");
    img.with_config(wrong)
        .write_layout(&bad, Some("example.com/x/y:z"));
    let err = import(store.path(), &bad, None).unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("DiffIdMismatch"), "{text}");
    assert!(!store.path().join("index.json").exists());
    assert_eq!(
        std::fs::read_dir(store.path().join("layers"))
            .unwrap()
            .count(),
        1,
        "only the good lower chain"
    );

    // A bare tag annotation is not a name: --name is required.
    let good = work.path().join("good");
    img.write_layout(&good, Some("v1"));
    let err = import(store.path(), &good, None).unwrap_err();
    assert!(format!("{err:?}").contains("NoName"), "{err:?}");
    let imported = import(store.path(), &good, Some("example.com/x/y:good")).unwrap();
    assert_eq!(imported[0].reference, "example.com/x/y:good");
    assert_eq!(imported[0].manifest_digest, img.manifest_digest);
    // A layout annotated with a full reference names itself.
    let named = work.path().join("named");
    img.write_layout(&named, Some("example.com/x/y:named"));
    assert_eq!(
        import(store.path(), &named, None).unwrap()[0].reference,
        "example.com/x/y:named"
    );
}
