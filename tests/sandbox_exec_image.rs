//! `corral exec IMAGE`: the image is pulled through a mirror when missing,
//! its config applies, and writes inside never reach the stored image.
#![allow(clippy::unwrap_used)]
mod common;

use std::process::Output;

fn exec(store: &std::path::Path, registry: &str, args: &[&str]) -> Output {
    common::corral(store)
        .args(["-q", "exec", "--network", "none", "--registry-mirror"])
        .arg(format!("docker.io=http://{registry}"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn exec_pulls_a_missing_image_and_never_writes_into_it() {
    let test = "exec_pulls_a_missing_image_and_never_writes_into_it";
    if !common::require_namespaces(test) {
        return;
    }
    let Some(registry) = common::require_registry(test) else {
        return;
    };
    let store = common::tempdir();
    let out = exec(
        store.path(),
        &registry,
        &[
            "busybox",
            "--",
            "sh",
            "-c",
            "echo marker > /bin/written; cat /bin/written; echo $PATH",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    common::assert_success(&out, "exec failed");
    assert!(stdout.starts_with("marker\n"), "{stdout}");
    // The image's Env (PATH) applies.
    assert!(stdout.contains("/bin"), "{stdout}");

    // A second sandbox on the same stored image does not see the write, and
    // nothing in the store has that file.
    let out = exec(
        store.path(),
        &registry,
        &["busybox", "--", "sh", "-c", "test ! -e /bin/written"],
    );
    common::assert_success(&out, "write leaked into the image");
    let leaked = walk_for(store.path(), "written");
    assert!(leaked.is_empty(), "write reached the store: {leaked:?}");
}

#[test]
fn exec_offline_names_the_missing_image() {
    let store = common::tempdir();
    let out = common::corral(store.path())
        .args([
            "exec",
            "--offline",
            "docker.io/library/not-here:1",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("not-here"), "{stderr}");
}

fn walk_for(dir: &std::path::Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if entry.file_name() == name {
            found.push(path.clone());
        }
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            found.extend(walk_for(&path, name));
        }
    }
    found
}
