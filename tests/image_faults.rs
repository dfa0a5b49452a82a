//! Registry client against a scripted in-process server: retries, resume,
//! size and digest checks, auth flows, redirects, mirrors.
#![allow(clippy::unwrap_used)]

mod common;
mod image_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use corral::image::{Credentials, Mirror, NoProgress, PullPolicy};
use image_support::*;

use corral::error_chain;

/// A registry serving `img`, except that a request for the blob of layer
/// `layer` gets `blob(request, the blob)` where that gives a reply.
fn serve_with_blob(
    img: &TestImage,
    layer: usize,
    blob: impl Fn(&Seen, &[u8]) -> Option<Reply> + Send + Sync + 'static,
) -> FakeServer {
    let img = img.clone();
    let path = img.blob_path(layer);
    FakeServer::start(move |req| {
        if req.path.ends_with(&path) {
            if let Some(reply) = blob(req, &img.layers[layer].1) {
                return reply;
            }
        }
        img.answer(req).unwrap_or(status(404))
    })
}

/// Pulls the test image `t/img:1` from `server` into `store`.
fn pull_from(
    store: &std::path::Path,
    server: &FakeServer,
    options: corral::image::RegistryOptions,
) -> Result<corral::image::Image, corral::image::ImageError> {
    pull(store, &format!("{}/t/img:1", server.addr), options)
}

#[test]
fn server_error_then_success() {
    let img = TestImage::new(2, 5000);
    let failures = AtomicUsize::new(0);
    let server = serve_with_blob(&img, 0, move |_, _| {
        (failures.fetch_add(1, Ordering::SeqCst) == 0).then(|| status(500))
    });
    let store = common::tempdir();
    let image = pull_from(store.path(), &server, fast_options()).unwrap();
    assert_eq!(image.manifest_digest, img.manifest_digest);
    assert_eq!(server.count("GET", &img.blob_path(0)), 2);
    assert!(image.rootfs.join("file-0").is_file());
    assert!(image.rootfs.join("file-1").is_file());
    assert_eq!(image.config.env, vec!["A=1".to_string()]);
}

/// Answers the first manifest request with 429 and `Retry-After: hint()`:
/// the pull must wait for the hint (about a second) rather than the 20 ms
/// base delay, then succeed.
fn pull_waits_for_retry_after(hint: impl Fn() -> String + Send + Sync + 'static) {
    let img = TestImage::new(1, 100);
    let hits = Arc::new(AtomicUsize::new(0));
    let (i2, h2) = (img.clone(), hits.clone());
    let server = FakeServer::start(move |req| {
        if req.path.contains("/manifests/") && h2.fetch_add(1, Ordering::SeqCst) == 0 {
            return Reply::Full(429, vec![("Retry-After".into(), hint())], Vec::new());
        }
        i2.answer(req).unwrap_or(status(404))
    });
    let store = common::tempdir();
    let started = std::time::Instant::now();
    pull_from(store.path(), &server, fast_options()).unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    assert!(server.count("HEAD", "/manifests/") >= 2);
}

#[test]
fn too_many_requests_honours_retry_after() {
    pull_waits_for_retry_after(|| "1".into());
}

/// `Retry-After` may also be an HTTP-date; the retry waits until then.
#[test]
fn too_many_requests_honours_retry_after_as_http_date() {
    pull_waits_for_retry_after(|| {
        // Two seconds ahead, truncated to the second: a 1-2 s wait.
        let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
        at.format(time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ))
        .unwrap()
    });
}

#[test]
fn reset_mid_blob_resumes_with_range() {
    let img = TestImage::new(1, 200_000);
    let size = img.layers[0].1.len();
    let cut = AtomicUsize::new(0);
    let server = serve_with_blob(&img, 0, move |_, blob| {
        (cut.fetch_add(1, Ordering::SeqCst) == 0)
            .then(|| Reply::Cut(200, vec![], blob[..size / 2].to_vec(), size as u64))
    });
    let store = common::tempdir();
    pull_from(store.path(), &server, fast_options()).unwrap();
    let gets: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&img.blob_path(0)))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].header("range"), None);
    assert_eq!(
        gets[1].header("range"),
        Some(format!("bytes={}-", size / 2).as_str())
    );
    assert!(committed_blobs(store.path()).contains(&img.layers[0].0.hex().to_string()));
}

#[test]
fn range_ignored_restarts_from_zero() {
    let img = TestImage::new(1, 50_000);
    let size = img.layers[0].1.len();
    let cut = AtomicUsize::new(0);
    let server = serve_with_blob(&img, 0, move |_, blob| {
        if cut.fetch_add(1, Ordering::SeqCst) == 0 {
            return Some(Reply::Cut(
                200,
                vec![],
                blob[..size / 3].to_vec(),
                size as u64,
            ));
        }
        // A server without range support: always the whole blob.
        Some(ok(blob))
    });
    let store = common::tempdir();
    pull_from(store.path(), &server, fast_options()).unwrap();
    assert_eq!(server.count("GET", &img.blob_path(0)), 2);
}

#[test]
fn truncated_blob_fails_and_commits_nothing() {
    let img = TestImage::new(1, 20_000);
    let size = img.layers[0].1.len();
    let server = serve_with_blob(&img, 0, move |_, blob| {
        Some(Reply::Cut(
            200,
            vec![],
            blob[..size - 10].to_vec(),
            size as u64,
        ))
    });
    let store = common::tempdir();
    let mut options = fast_options();
    options.max_attempts = 2;
    let err = pull_from(store.path(), &server, options).unwrap_err();
    let text = error_chain(&err);
    assert!(text.contains(&server.addr), "{text}");
    assert!(text.contains("t/img"), "{text}");
    // Not even the manifest or config: they are stored with the image.
    assert!(
        committed_blobs(store.path()).is_empty(),
        "{:?}",
        committed_blobs(store.path())
    );
    assert!(!store.path().join("index.json").exists());
    assert_eq!(
        std::fs::read_dir(store.path().join("layers"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn wrong_digest_commits_nothing() {
    let img = TestImage::new(2, 3000);
    let server = serve_with_blob(&img, 1, |_, blob| {
        let mut bad = blob.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        Some(ok(&bad))
    });
    let store = common::tempdir();
    let err = pull_from(store.path(), &server, fast_options()).unwrap_err();
    let text = error_chain(&err);
    assert!(text.contains("does not match its digest"), "{text}");
    let blobs = committed_blobs(store.path());
    assert!(!blobs.contains(&img.layers[1].0.hex().to_string()));
    assert!(!store.path().join("index.json").exists());
    // The bad download is gone, not kept for "resume".
    let tmp: Vec<_> = std::fs::read_dir(store.path().join("tmp"))
        .unwrap()
        .flatten()
        .collect();
    assert!(tmp.iter().all(|e| !e
        .file_name()
        .to_string_lossy()
        .contains(img.layers[1].0.hex())));
}

/// The layer is applied while it downloads: a blob that unpacks to the
/// right diff_id but fails its own digest (here: another gzip header mtime,
/// same length) must still leave no chain dir, staging dir or blob behind.
#[test]
fn valid_layer_with_wrong_blob_digest_commits_nothing() {
    let img = TestImage::new(1, 400_000);
    let server = serve_with_blob(&img, 0, |_, blob| {
        let mut other = blob.to_vec();
        other[4] ^= 0x01;
        Some(ok(&other))
    });
    let store = common::tempdir();
    let err = pull_from(store.path(), &server, fast_options()).unwrap_err();
    let text = error_chain(&err);
    assert!(text.contains("does not match its digest"), "{text}");
    assert!(committed_blobs(store.path()).is_empty());
    assert!(!store.path().join("index.json").exists());
    let dir_names = |sub: &str| -> Vec<String> {
        std::fs::read_dir(store.path().join(sub))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect()
    };
    assert_eq!(dir_names("layers"), Vec::<String>::new());
    let tmp = dir_names("tmp");
    assert!(tmp.iter().all(|n| !n.starts_with("chain-")), "{tmp:?}");
}

#[test]
fn oversized_blob_is_refused() {
    let img = TestImage::new(1, 3000);
    let server = serve_with_blob(&img, 0, |_, blob| {
        let mut big = blob.to_vec();
        big.extend_from_slice(&[0u8; 100]);
        Some(ok(&big))
    });
    let store = common::tempdir();
    let err = pull_from(store.path(), &server, fast_options()).unwrap_err();
    assert!(
        error_chain(&err).contains("more than the"),
        "{}",
        error_chain(&err)
    );
    assert!(committed_blobs(store.path())
        .iter()
        .all(|b| b != img.layers[0].0.hex()));
}

#[test]
fn basic_auth_is_not_forwarded_on_cross_origin_redirect() {
    let img = TestImage::new(1, 4000);
    let i_cdn = img.clone();
    let cdn = FakeServer::start(move |req| i_cdn.answer(req).unwrap_or(status(404)));
    let cdn_addr = cdn.addr.clone();
    let i2 = img.clone();
    let blob = img.blob_path(0);
    let server = FakeServer::start(move |req| {
        // "u:p" in base64.
        if req.header("authorization") != Some("Basic dTpw") {
            return Reply::Full(
                401,
                vec![("WWW-Authenticate".into(), "Basic realm=\"r\"".into())],
                Vec::new(),
            );
        }
        if req.path.ends_with(&blob) {
            let to = format!("http://{cdn_addr}{}", req.path);
            return Reply::Full(307, vec![("Location".into(), to)], Vec::new());
        }
        i2.answer(req).unwrap_or(status(404))
    });
    let store = common::tempdir();
    let mut options = fast_options();
    options.connector = Some(Credentials {
        username: "u".into(),
        password: "p".into(),
    });
    pull_from(store.path(), &server, options).unwrap();
    let cdn_reqs = cdn.requests();
    assert_eq!(cdn_reqs.len(), 1, "{cdn_reqs:?}");
    assert_eq!(cdn_reqs[0].header("authorization"), None);
    assert!(server
        .requests()
        .iter()
        .any(|r| r.header("authorization") == Some("Basic dTpw")));
}

#[test]
fn missing_credentials_name_registry_and_repository() {
    let server = FakeServer::start(|_| {
        Reply::Full(
            401,
            vec![("WWW-Authenticate".into(), "Basic realm=\"r\"".into())],
            Vec::new(),
        )
    });
    let store = common::tempdir();
    let err = pull(
        store.path(),
        &format!("{}/team/app:2", server.addr),
        fast_options(),
    )
    .unwrap_err();
    let text = error_chain(&err);
    assert!(
        text.contains(&server.addr) && text.contains("team/app"),
        "{text}"
    );
}

/// A registry behind a bearer token service that needs credentials, whose
/// tokens are single-use after `valid_uses` requests (to force re-auth).
fn token_registry(
    img: &TestImage,
    valid_uses: usize,
    anonymous: bool,
) -> (FakeServer, Arc<AtomicUsize>) {
    let issued = Arc::new(AtomicUsize::new(0));
    let uses = Arc::new(AtomicUsize::new(0));
    let (i2, issued2) = (img.clone(), issued.clone());
    let server_addr = Arc::new(std::sync::Mutex::new(String::new()));
    let addr2 = server_addr.clone();
    let server = FakeServer::start(move |req| {
        let addr = addr2.lock().unwrap().clone();
        if req.path.starts_with("/token?") {
            if !anonymous && req.header("authorization") != Some("Basic dTpw") {
                return status(401);
            }
            assert!(
                req.path.contains("scope=repository%3At%2Fimg%3Apull"),
                "{}",
                req.path
            );
            assert!(req.path.contains("service=test-registry"), "{}", req.path);
            let n = issued2.fetch_add(1, Ordering::SeqCst);
            uses.store(0, Ordering::SeqCst);
            return ok(format!("{{\"access_token\":\"tok{n}\",\"expires_in\":300}}").as_bytes());
        }
        let current = format!(
            "Bearer tok{}",
            issued2.load(Ordering::SeqCst).saturating_sub(1)
        );
        let fresh = uses.fetch_add(1, Ordering::SeqCst) < valid_uses;
        if req.header("authorization") != Some(current.as_str()) || !fresh {
            let challenge = format!(
                "Bearer realm=\"http://{addr}/token\",service=\"test-registry\",scope=\"repository:t/img:pull\""
            );
            return Reply::Full(
                401,
                vec![("WWW-Authenticate".into(), challenge)],
                Vec::new(),
            );
        }
        i2.answer(req).unwrap_or(status(404))
    });
    *server_addr.lock().unwrap() = server.addr.clone();
    (server, issued)
}

#[test]
fn bearer_token_with_credentials_is_cached() {
    let img = TestImage::new(3, 1000);
    let (server, issued) = token_registry(&img, usize::MAX, false);
    let store = common::tempdir();
    let mut options = fast_options();
    options.connector = Some(Credentials {
        username: "u".into(),
        password: "p".into(),
    });
    pull_from(store.path(), &server, options).unwrap();
    // One token for the ping-discovered realm served every request.
    assert_eq!(issued.load(Ordering::SeqCst), 1);
    assert_eq!(server.count("GET", "/token?"), 1);
}

#[test]
fn anonymous_bearer_token_and_reauth_on_401() {
    let img = TestImage::new(2, 1000);
    let (server, issued) = token_registry(&img, 2, true);
    let store = common::tempdir();
    pull_from(store.path(), &server, fast_options()).unwrap();
    assert!(
        issued.load(Ordering::SeqCst) >= 2,
        "re-authenticated after the token was refused"
    );
    assert!(server
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/token?"))
        .all(|r| r.header("authorization").is_none()));
}

#[test]
fn bearer_with_wrong_credentials_fails_clearly() {
    let img = TestImage::new(1, 100);
    let (server, _) = token_registry(&img, usize::MAX, false);
    let store = common::tempdir();
    let mut options = fast_options();
    options.connector = Some(Credentials {
        username: "u".into(),
        password: "wrong".into(),
    });
    let err = pull_from(store.path(), &server, options).unwrap_err();
    let text = error_chain(&err);
    assert!(
        text.contains("token service") && text.contains("401"),
        "{text}"
    );
    assert!(!text.contains("wrong"), "secret leaked: {text}");
}

#[test]
fn mirror_first_then_upstream() {
    let img = TestImage::new(1, 1000);
    let i2 = img.clone();
    let upstream = FakeServer::start(move |req| i2.answer(req).unwrap_or(status(404)));
    let broken_mirror = FakeServer::start(|req| {
        if req.path == "/v2/" {
            ok(b"{}")
        } else {
            status(404)
        }
    });
    let i3 = img.clone();
    let good_mirror = FakeServer::start(move |req| i3.answer(req).unwrap_or(status(404)));
    let reference = format!("{}/t/img:1", upstream.addr);

    // A failing mirror falls through to the upstream.
    let store = common::tempdir();
    let mut options = fast_options();
    options.mirrors =
        vec![Mirror::parse(&format!("{}=http://{}", upstream.addr, broken_mirror.addr)).unwrap()];
    pull(store.path(), &reference, options).unwrap();
    assert!(broken_mirror.count("HEAD", "/manifests/") >= 1);
    assert!(upstream.count("GET", "/blobs/") >= 1);

    // A working mirror serves everything; the upstream sees nothing new.
    let before = upstream.requests().len();
    let store = common::tempdir();
    let mut options = fast_options();
    options.mirrors =
        vec![Mirror::parse(&format!("{}=http://{}", upstream.addr, good_mirror.addr)).unwrap()];
    pull(store.path(), &reference, options).unwrap();
    assert_eq!(upstream.requests().len(), before);
    assert!(good_mirror.count("GET", "/blobs/") >= 2);
}

#[test]
fn offline_names_the_missing_image_and_sends_nothing() {
    let server = FakeServer::start(|_| status(500));
    let store = common::tempdir();
    let mut options = fast_options();
    options.offline = true;
    let image = format!("{}/t/missing:3", server.addr);
    let err = pull(store.path(), &image, options).unwrap_err();
    assert!(err.to_string().contains(&image), "{err}");
    assert!(err.to_string().contains("offline"), "{err}");
    assert!(server.requests().is_empty());
}

#[test]
fn schema1_and_huge_manifests_are_refused() {
    let s1 = FakeServer::start(|req| {
        if req.path == "/v2/" {
            return ok(b"{}");
        }
        Reply::Full(
            200,
            vec![(
                "Content-Type".into(),
                "application/vnd.docker.distribution.manifest.v1+prettyjws".into(),
            )],
            br#"{"schemaVersion":1,"fsLayers":[]}"#.to_vec(),
        )
    });
    let store = common::tempdir();
    let err = pull(
        store.path(),
        &format!("{}/t/old:1", s1.addr),
        fast_options(),
    )
    .unwrap_err();
    assert!(
        error_chain(&err).contains("schema 1"),
        "{}",
        error_chain(&err)
    );

    let huge = FakeServer::start(|req| {
        if req.path == "/v2/" {
            return ok(b"{}");
        }
        ok(&vec![b' '; 5 << 20])
    });
    let err = pull(
        store.path(),
        &format!("{}/t/huge:1", huge.addr),
        fast_options(),
    )
    .unwrap_err();
    assert!(
        error_chain(&err).contains("more than the"),
        "{}",
        error_chain(&err)
    );
}

#[test]
fn second_image_on_same_base_reuses_chains() {
    let base = TestImage::new(2, 2000);
    let mut top = TestImage::new(3, 2000);
    // Same first two layers as `base`: TestImage is deterministic per index.
    assert_eq!(base.layers[0].0, top.layers[0].0);
    let (b2, t2) = (base.clone(), top.clone());
    let server = FakeServer::start(move |req| {
        let img = if req.path.contains("/top/") { &t2 } else { &b2 };
        img.answer(req).unwrap_or(status(404))
    });
    let store = common::tempdir();
    let p = puller(store.path(), fast_options());
    let rt = rt();
    rt.block_on(p.ensure(
        &format!("{}/t/base:1", server.addr),
        PullPolicy::Always,
        &NoProgress,
    ))
    .unwrap();
    let before = server.count("GET", "/blobs/sha256");
    let image = rt
        .block_on(p.ensure(
            &format!("{}/t/top:1", server.addr),
            PullPolicy::Always,
            &NoProgress,
        ))
        .unwrap();
    // Only the new layer and config were fetched.
    assert_eq!(server.count("GET", "/blobs/sha256") - before, 2);
    assert!(image.rootfs.join("file-2").is_file());
    top.layers.truncate(0);
    // IfNotPresent does not contact the registry again.
    let n = server.requests().len();
    rt.block_on(p.ensure(
        &format!("{}/t/top:1", server.addr),
        PullPolicy::IfNotPresent,
        &NoProgress,
    ))
    .unwrap();
    assert_eq!(server.requests().len(), n);
}

#[test]
fn manifest_not_matching_its_digest_is_refused() {
    let img = TestImage::new(1, 100);
    let i2 = img.clone();
    let lie = corral::image::Digest::sha256_of(b"something else");
    let server = FakeServer::start(move |req| {
        if req.method == "HEAD" && req.path.contains("/manifests/") {
            let headers = vec![("Docker-Content-Digest".to_string(), lie.to_string())];
            return Reply::Full(200, headers, Vec::new());
        }
        i2.answer(req).unwrap_or(status(404))
    });
    let store = common::tempdir();
    let err = pull_from(store.path(), &server, fast_options()).unwrap_err();
    let text = error_chain(&err);
    assert!(text.contains("does not match its digest"), "{text}");
    assert!(committed_blobs(store.path()).is_empty(), "nothing stored");
}

#[test]
fn identity_token_from_docker_config_is_exchanged() {
    let img = TestImage::new(1, 500);
    let i2 = img.clone();
    let addr = Arc::new(std::sync::Mutex::new(String::new()));
    let a2 = addr.clone();
    let server = FakeServer::start(move |req| {
        let addr = a2.lock().unwrap().clone();
        if req.path.starts_with("/token") {
            let form = String::from_utf8_lossy(&req.body).to_string();
            let ok_grant = req.method == "POST"
                && form.contains("grant_type=refresh_token")
                && form.contains("refresh_token=refresh-me")
                && form.contains("scope=repository%3At%2Fimg%3Apull");
            return if ok_grant {
                ok(br#"{"access_token":"exchanged"}"#)
            } else {
                status(401)
            };
        }
        if req.header("authorization") != Some("Bearer exchanged") {
            let challenge = format!("Bearer realm=\"http://{addr}/token\",service=\"svc\"");
            return Reply::Full(
                401,
                vec![("WWW-Authenticate".into(), challenge)],
                Vec::new(),
            );
        }
        i2.answer(req).unwrap_or(status(404))
    });
    *addr.lock().unwrap() = server.addr.clone();
    let cfg = common::tempdir();
    std::fs::write(
        cfg.path().join("config.json"),
        format!(
            r#"{{"auths":{{"{}":{{"identitytoken":"refresh-me"}}}}}}"#,
            server.addr
        ),
    )
    .unwrap();
    let store = common::tempdir();
    let mut options = fast_options();
    options.credential_sources.docker_config_dir = Some(cfg.path().to_path_buf());
    pull_from(store.path(), &server, options).unwrap();
    assert_eq!(server.count("POST", "/token"), 1);
}
