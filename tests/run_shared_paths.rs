//! `sharedPaths` in imageless steps, which run on the host's root kept
//! read-only: a shared path below an existing host directory (`/var/cache`,
//! `/root`) gets its mount point without touching the host, and one that
//! cannot be mounted is an error naming the path and why.

#![allow(clippy::unwrap_used)]

mod common;
mod run_support;

use std::path::Path;

use run_support::{pipeline_of, setup, stdout, step};

/// A one-stage pipeline sharing `paths` between its host-root `steps`.
fn with_shared_paths(paths: &[&str], steps: &str) -> String {
    let list: String = paths.iter().map(|p| format!("    - {p}\n")).collect();
    let stage = run_support::stage("s", steps).replacen(
        "    spec:\n      cloneCodebase: false\n",
        &format!(
            "    spec:\n      cloneCodebase: false\n      sharedPaths:\n{}",
            run_support::indent(&list, 2)
        ),
        1,
    );
    pipeline_of(&stage)
}

#[test]
fn host_root_steps_share_paths_below_existing_host_dirs() {
    let Some(env) = setup("host_root_shared_paths", false) else {
        return;
    };
    let name = format!("corral-test-{}", std::process::id());
    let cache = format!("/var/cache/{name}");
    // Its parent does not exist either.
    let deep = format!("/var/cache/{name}-parent/a/b");
    let m2 = "/root/.m2";
    let file = env.write(
        "p.yaml",
        &with_shared_paths(
            &[&cache, &deep, m2],
            &(step(
                "Run",
                "write",
                None,
                &format!("echo cached > {cache}/f; echo deep > {deep}/g; echo m2 > {m2}/{name}; ls /var/cache >/dev/null; ls /usr/bin/env"),
            ) + &step(
                "Run",
                "read",
                None,
                &format!("cat {cache}/f {deep}/g {m2}/{name}; if echo x > /var/cache/{name}-other; then echo host writable; fi"),
            )),
        ),
    );
    let out = env.run(&file, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for want in [
        "read  | cached",
        "read  | deep",
        "read  | m2",
        "write | /usr/bin/env",
    ] {
        assert!(text.contains(want), "missing {want:?}");
    }
    // The rest of the host directory stays read-only, and the host is untouched.
    assert!(!text.contains("host writable"));
    for path in [cache, deep, format!("{m2}/{name}")] {
        assert!(!Path::new(&path).exists(), "{path} was created on the host");
    }
}

#[test]
fn a_shared_path_that_cannot_be_mounted_names_the_path_and_why() {
    let Some(env) = setup("host_root_shared_path_error", false) else {
        return;
    };
    let file = env.write(
        "p.yaml",
        &with_shared_paths(&["/etc/passwd/x"], &step("Run", "r", None, "echo ran")),
    );
    let out = env.run(&file, &[]);
    let text = stdout(&out);
    assert_ne!(out.status.code(), Some(0));
    assert!(!text.contains("r | ran"));
    assert!(
        text.contains("r | failed to start: sandbox setup failed: cannot mount at /etc/passwd/x in the sandbox: a part of the path is a file"),
        "{text}"
    );
    let file = env.write(
        "proc.yaml",
        &with_shared_paths(&["/proc/corral-x"], &step("Run", "r", None, "echo ran")),
    );
    let out = env.run(&file, &[]);
    let text = stdout(&out);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text.contains(
            "cannot mount at /proc/corral-x in the sandbox: its directory takes no new entries"
        ),
        "{text}"
    );
}
