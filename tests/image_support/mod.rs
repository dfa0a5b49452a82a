//! Helpers of the image tests: a tiny in-process registry whose answers
//! each test scripts, small test images, and a test-only layer applier
//! (the real one lives in src/image/unpack.rs).
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};

use corral::image::applier::{ApplyError, LayerApplier};
use corral::image::unpack::AppliedLayer;
use corral::image::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common;

/// A request as the fake registry saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// What to answer.
pub enum Reply {
    /// Status, headers, body.
    Full(u16, Vec<(String, String)>, Vec<u8>),
    /// Sends headers announcing `announced` bytes, then only `body`, then
    /// closes the connection (a reset mid-transfer).
    Cut(u16, Vec<(String, String)>, Vec<u8>, u64),
    /// Like `Cut`, but keeps the connection open without sending more.
    Stall(u16, Vec<(String, String)>, Vec<u8>, u64),
}

pub fn ok(body: &[u8]) -> Reply {
    Reply::Full(200, vec![], body.to_vec())
}

pub fn status(code: u16) -> Reply {
    Reply::Full(code, vec![], Vec::new())
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A fake registry on 127.0.0.1:PORT, answering with `handler`.
pub struct FakeServer {
    pub addr: String,
    pub log: Arc<Mutex<Vec<Seen>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeServer {
    pub fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> FakeServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let log = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log2 = log.clone();
        runtime.spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (handler, log) = (handler.clone(), log2.clone());
                tokio::spawn(async move { serve(sock, handler, log).await });
            }
        });
        FakeServer {
            addr,
            log,
            runtime: Some(runtime),
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    pub fn count(&self, method: &str, path_part: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.path.contains(path_part))
            .count()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

async fn serve(mut sock: tokio::net::TcpStream, handler: Arc<Handler>, log: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let first: Vec<&str> = lines.next().unwrap_or("").split(' ').collect();
        let mut headers = HashMap::new();
        for line in lines {
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < length {
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..length).collect();
        let seen = Seen {
            method: first.first().unwrap_or(&"").to_string(),
            path: first.get(1).unwrap_or(&"").to_string(),
            headers,
            body,
        };
        log.lock().unwrap().push(seen.clone());
        let head_only = seen.method == "HEAD";
        match handler(&seen) {
            Reply::Full(code, hdrs, body) => {
                let mut out = format!("HTTP/1.1 {code} X\r\nContent-Length: {}\r\n", body.len());
                for (k, v) in hdrs {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                if !head_only {
                    bytes.extend_from_slice(&body);
                }
                if sock.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            reply @ (Reply::Cut(..) | Reply::Stall(..)) => {
                let stall = matches!(reply, Reply::Stall(..));
                let (Reply::Cut(code, hdrs, body, announced)
                | Reply::Stall(code, hdrs, body, announced)) = reply
                else {
                    return;
                };
                let mut out = format!("HTTP/1.1 {code} X\r\nContent-Length: {announced}\r\n");
                for (k, v) in hdrs {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(&body);
                let _ = sock.write_all(&bytes).await;
                let _ = sock.flush().await;
                if stall {
                    tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                }
                return;
            }
        }
    }
}

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

/// Test-only applier: extracts regular files and directories with the
/// `tar` crate and reports the diff_id. Enough to exercise the store;
/// the real applier is src/image/unpack.rs.
pub struct TestApplier;

struct HashingReader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
}

impl LayerApplier for TestApplier {
    fn apply(&self, root: &Path, layer: &mut dyn Read) -> Result<AppliedLayer, ApplyError> {
        let mut magic = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            let n = layer.read(&mut magic[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let chained = Read::chain(std::io::Cursor::new(magic[..got].to_vec()), layer);
        let decoded: Box<dyn Read> = match &magic[..got] {
            [0x1f, 0x8b, ..] => Box::new(flate2::read::MultiGzDecoder::new(chained)),
            [0x28, 0xb5, 0x2f, 0xfd] => Box::new(zstd::stream::read::Decoder::new(chained)?),
            _ => Box::new(chained),
        };
        let mut reader = HashingReader {
            inner: decoded,
            hasher: <sha2::Sha256 as sha2::Digest>::new(),
        };
        let mut entries = 0;
        // Read-only directories (0555) are made writable while filling them
        // (rootless has no CAP_DAC_OVERRIDE) and restored at the end.
        let mut restore = Vec::new();
        {
            let mut archive = tar::Archive::new(&mut reader);
            for entry in archive.entries()? {
                let mut entry = entry?;
                entries += 1;
                let kind = entry.header().entry_type();
                let path = entry.path()?.into_owned();
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                if name.starts_with(".wh.") {
                    continue;
                }
                if kind.is_dir() {
                    entry.unpack_in(root)?;
                    let mode = entry.header().mode()?;
                    let dir = root.join(&path);
                    std::fs::set_permissions(
                        &dir,
                        std::os::unix::fs::PermissionsExt::from_mode(0o755),
                    )?;
                    restore.push((dir, mode));
                } else if kind.is_file() {
                    if let Some(parent) = root.join(&path).parent() {
                        use std::os::unix::fs::PermissionsExt;
                        if let Ok(meta) = std::fs::metadata(parent) {
                            let mode = meta.permissions().mode();
                            if mode & 0o200 == 0 {
                                std::fs::set_permissions(parent, PermissionsExt::from_mode(0o755))?;
                                restore.push((parent.to_path_buf(), mode));
                            }
                        }
                    }
                    entry.unpack_in(root)?;
                }
            }
        }
        std::io::copy(&mut reader, &mut std::io::sink())?;
        for (dir, mode) in restore.into_iter().rev() {
            std::fs::set_permissions(
                &dir,
                std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
            )?;
        }
        let digest = hex::encode(sha2::Digest::finalize(reader.hasher));
        Ok(AppliedLayer {
            diff_id: format!("sha256:{digest}"),
            entries,
            uncompressed_bytes: 0,
        })
    }

    fn clone_tree(&self, parent: &Path, dest: &Path) -> Result<(), ApplyError> {
        // Hard links, like the real clone_tree: no need to read mode-000 files.
        let status = std::process::Command::new("cp")
            .arg("-al")
            .arg(parent)
            .arg(dest)
            .status()?;
        if !status.success() {
            return Err(format!("cp -a failed: {status}").into());
        }
        Ok(())
    }
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
    _dir: tempfile::TempDir,
}

impl AuthRegistry {
    pub fn start(user: &str, password: &str) -> Option<AuthRegistry> {
        let dir = tempfile::tempdir().unwrap();
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
