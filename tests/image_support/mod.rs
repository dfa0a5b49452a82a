//! Helpers of the image tests: a tiny in-process registry whose answers
//! each test scripts (server.rs), small test images, and a test-only layer
//! applier (applier.rs; the real one lives in src/image/unpack.rs).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use corral::image::Digest;

use crate::common;

mod applier;
mod server;
pub use applier::*;
pub use server::*;

/// A one-image repository: manifest, config and layers, served by digest.
#[derive(Clone)]
pub struct TestImage {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub config: Vec<u8>,
    pub config_digest: Digest,
    /// (digest, compressed bytes)
    pub layers: Vec<(Digest, Vec<u8>)>,
}

/// A gzip layer with the given (path, contents) files.
pub fn layer(files: &[(&str, &[u8])]) -> (Vec<u8>, Digest) {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut h, path, *data).unwrap();
    }
    let raw = builder.into_inner().unwrap();
    let diff_id = Digest::sha256_of(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &raw).unwrap();
    (gz.finish().unwrap(), diff_id)
}

impl TestImage {
    /// An image of `n` layers, layer i holding `file-i` of `size` bytes.
    pub fn new(n: usize, size: usize) -> TestImage {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for i in 0..n {
            let content: Vec<u8> = (0..size).map(|j| ((i * 7 + j * 13) % 251) as u8).collect();
            let (blob, diff_id) = layer(&[(&format!("file-{i}"), &content)]);
            layers.push((Digest::sha256_of(&blob), blob));
            diff_ids.push(diff_id.to_string());
        }
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": ["A=1"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let config_digest = Digest::sha256_of(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest.to_string(), "size": config.len()},
            "layers": layers.iter().map(|(d, b)| serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": d.to_string(), "size": b.len()})).collect::<Vec<_>>(),
        }))
        .unwrap();
        TestImage {
            manifest_digest: Digest::sha256_of(&manifest),
            manifest,
            config,
            config_digest,
            layers,
        }
    }

    /// Answers a registry request for this image (any repository), or None.
    pub fn answer(&self, req: &Seen) -> Option<Reply> {
        let path = req.path.split('?').next().unwrap_or("");
        if path == "/v2/" {
            return Some(ok(b"{}"));
        }
        if path.contains("/manifests/") {
            let headers = vec![
                (
                    "Content-Type".to_string(),
                    "application/vnd.oci.image.manifest.v1+json".to_string(),
                ),
                (
                    "Docker-Content-Digest".to_string(),
                    self.manifest_digest.to_string(),
                ),
            ];
            return Some(Reply::Full(200, headers, self.manifest.clone()));
        }
        let (_, digest) = path.split_once("/blobs/")?;
        if digest == self.config_digest.to_string() {
            return Some(ok(&self.config));
        }
        let blob = self.layers.iter().find(|(d, _)| d.to_string() == digest)?;
        Some(ranged(req, &blob.1))
    }

    pub fn blob_path(&self, i: usize) -> String {
        format!("/blobs/{}", self.layers[i].0)
    }
}

/// 200 with the body, or 206 for `Range: bytes=N-`.
pub fn ranged(req: &Seen, body: &[u8]) -> Reply {
    if let Some(start) = req
        .header("range")
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok())
    {
        let headers = vec![(
            "Content-Range".to_string(),
            format!("bytes {start}-{}/{}", body.len() - 1, body.len()),
        )];
        return Reply::Full(206, headers, body[start..].to_vec());
    }
    ok(body)
}

/// Registry options for tests: fast retries.
pub fn fast_options() -> corral::image::RegistryOptions {
    corral::image::RegistryOptions {
        retry_base_delay: std::time::Duration::from_millis(20),
        max_retry_delay: std::time::Duration::from_secs(2),
        read_timeout: std::time::Duration::from_secs(20),
        credential_sources: corral::image::registry::CredentialSources {
            docker_config_dir: Some("/nonexistent".into()),
            podman_auth_file: Some("/nonexistent/auth.json".into()),
        },
        ..Default::default()
    }
}

/// A puller with the test applier over a fresh store in `dir`.
pub fn puller(dir: &Path, options: corral::image::RegistryOptions) -> corral::image::Puller {
    let store = corral::image::Store::open(dir).unwrap();
    corral::image::Puller::with_applier(store, options, Arc::new(TestApplier)).unwrap()
}

/// A runtime for the puller's futures.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Pulls `image` (policy Always) into a fresh store in `dir`.
pub fn pull(
    dir: &Path,
    image: &str,
    options: corral::image::RegistryOptions,
) -> Result<corral::image::Image, corral::image::ImageError> {
    let p = puller(dir, options);
    rt().block_on(p.ensure(
        image,
        corral::image::PullPolicy::Always,
        &corral::image::NoProgress,
    ))
}

/// Files of the store a failed pull must not have created.
pub fn committed_blobs(store: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(store.join("blobs/sha256"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// One line per tree entry: path, type, mode, link target or content hash
/// (and owner when `owners`), sorted, for comparing unpacked trees.
pub fn describe_tree(root: &Path, owners: bool) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    fn walk(root: &Path, dir: &Path, owners: bool, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let ft = meta.file_type();
            let what = if ft.is_symlink() {
                format!("link -> {}", std::fs::read_link(&path).unwrap().display())
            } else if ft.is_dir() {
                "dir".to_string()
            } else if ft.is_file() {
                // Read as owner even when the mode is 000.
                let data = read_forced(&path, meta.mode());
                format!("file {}", Digest::sha256_of(&data))
            } else {
                format!("special {:o}", meta.mode() & 0o170000)
            };
            let owner = if owners {
                format!(" {}:{}", meta.uid(), meta.gid())
            } else {
                String::new()
            };
            let mode = if ft.is_symlink() {
                0
            } else {
                meta.mode() & 0o7777
            };
            out.push(format!("{rel} {what} {mode:o}{owner}"));
            if ft.is_dir() {
                let restore = meta.mode() & 0o7777;
                if restore & 0o500 != 0o500 {
                    std::fs::set_permissions(
                        &path,
                        std::os::unix::fs::PermissionsExt::from_mode(0o700),
                    )
                    .unwrap();
                }
                walk(root, &path, owners, out);
                if restore & 0o500 != 0o500 {
                    std::fs::set_permissions(
                        &path,
                        std::os::unix::fs::PermissionsExt::from_mode(restore),
                    )
                    .unwrap();
                }
            }
        }
    }
    fn read_forced(path: &Path, mode: u32) -> Vec<u8> {
        if let Ok(data) = std::fs::read(path) {
            return data;
        }
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let data = std::fs::read(path).unwrap();
        std::fs::set_permissions(
            path,
            std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
        )
        .unwrap();
        data
    }
    let mut out = Vec::new();
    walk(root, root, owners, &mut out);
    out
}

/// A private docker-registry (Debian's) with htpasswd auth; killed on drop.
pub struct AuthRegistry {
    pub addr: String,
    child: std::process::Child,
    _dir: common::TestDir,
}

impl AuthRegistry {
    pub fn start(user: &str, password: &str) -> Option<AuthRegistry> {
        let dir = common::tempdir();
        let htpasswd = std::process::Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .ok()?;
        if !htpasswd.status.success() {
            return None;
        }
        std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: corral-test\n    path: {d}/htpasswd\n",
            d = dir.path().display()
        );
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let addr = format!("127.0.0.1:{port}");
        let reg = AuthRegistry {
            addr: addr.clone(),
            child,
            _dir: dir,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Some(reg);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies an image with skopeo (layouts, archives, registries).
pub fn skopeo_copy(args: &[&str]) {
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet"])
        .args(args)
        .output()
        .unwrap();
    common::assert_success(&out, &format!("skopeo copy {args:?}"));
}

impl TestImage {
    /// The same layers with another config (e.g. a wrong diff_id list).
    pub fn with_config(&self, config: serde_json::Value) -> TestImage {
        let config = serde_json::to_vec(&config).unwrap();
        let config_digest = Digest::sha256_of(&config);
        let mut manifest: serde_json::Value = serde_json::from_slice(&self.manifest).unwrap();
        manifest["config"]["digest"] = config_digest.to_string().into();
        manifest["config"]["size"] = config.len().into();
        let manifest = serde_json::to_vec(&manifest).unwrap();
        TestImage {
            manifest_digest: Digest::sha256_of(&manifest),
            manifest,
            config,
            config_digest,
            layers: self.layers.clone(),
        }
    }

    /// Writes an OCI layout of this image to `dir`, tagged `tag`.
    pub fn write_layout(&self, dir: &Path, tag: Option<&str>) {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        let put = |d: &Digest, b: &[u8]| std::fs::write(blobs.join(d.hex()), b).unwrap();
        put(&self.manifest_digest, &self.manifest);
        put(&self.config_digest, &self.config);
        for (d, b) in &self.layers {
            put(d, b);
        }
        let mut desc = serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": self.manifest_digest.to_string(),
            "size": self.manifest.len(),
        });
        if let Some(tag) = tag {
            desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
        }
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [desc]});
        std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    }
}

/// umoci's rootfs of a layout (in `dest/rootfs`); panics when umoci fails.
pub fn umoci_rootfs(layout: &Path, tag: &str, dest: &Path) {
    let out = umoci_unpack(layout, tag, dest);
    common::assert_success(&out, "umoci");
}

/// Runs `umoci unpack` (`--rootless` when not root) on a layout. Debian's
/// umoci cannot read zstd layers, so the layout is first recompressed to
/// gzip by skopeo (same diff_ids).
pub fn umoci_unpack(layout: &Path, tag: &str, dest: &Path) -> std::process::Output {
    let gzipped = dest.with_extension("gzip-layout");
    skopeo_copy(&[
        "--dest-compress",
        "--dest-compress-format",
        "gzip",
        &format!("oci:{}:{tag}", layout.display()),
        &format!("oci:{}:{tag}", gzipped.display()),
    ]);
    let layout = gzipped.as_path();
    let mut cmd = std::process::Command::new("umoci");
    cmd.arg("unpack");
    if !rustix::process::geteuid().is_root() {
        cmd.arg("--rootless");
    }
    cmd.arg("--image")
        .arg(format!("{}:{tag}", layout.display()))
        .arg(dest)
        .output()
        .unwrap()
}
