//! The index keeps a copy of each image's run settings (Env, Entrypoint,
//! Cmd, WorkingDir, User), so that a sandbox starts without reading and
//! checking the config blob; entries written without it still read the blob.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use corral::image::{Image, Reference, Store};
use serde_json::Value;

const NAME: &str = "localhost/run-config:v1";

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn stored(store: &Path) -> Result<Image, corral::image::ImageError> {
    let store = Store::open(store).unwrap();
    let reference = Reference::parse(NAME).unwrap();
    Image::stored(&store, &reference).map(|found| found.expect("image in the index"))
}

#[test]
fn run_settings_come_from_the_index_copy_or_else_from_the_checked_config() {
    let test = "run_settings_come_from_the_index_copy_or_else_from_the_checked_config";
    let Some(fixtures) = common::require_fixtures(test) else {
        return;
    };
    let layout = fixtures.join("layouts/rt-busybox-user");
    let dir = common::tempdir();
    let out = common::corral(dir.path())
        .args(["-q", "import", "--name", NAME])
        .arg(&layout)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The copy holds what the config blob says.
    let index_path = dir.path().join("index.json");
    let mut index = read_json(&index_path);
    let entry = &index["images"][NAME];
    let digest = entry["config_digest"].as_str().unwrap().to_string();
    let blob = dir
        .path()
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap());
    let config = read_json(&blob);
    for key in ["Env", "Entrypoint", "Cmd", "WorkingDir", "User"] {
        let want = config["config"].get(key).cloned().unwrap_or(Value::Null);
        assert_eq!(entry["run"][key], want, "{key}");
    }
    let image = stored(dir.path()).unwrap();
    assert_eq!(image.config.user.as_deref(), Some("app"));
    assert_eq!(image.config.cmd, Some(vec!["sh".to_string()]));

    // With the copy, the blob is not read at all.
    let aside = dir.path().join("config.aside");
    std::fs::rename(&blob, &aside).unwrap();
    assert_eq!(stored(dir.path()).unwrap().config, image.config);
    std::fs::rename(&aside, &blob).unwrap();

    // An entry without a copy (an older corral's) reads the config...
    index["images"][NAME].as_object_mut().unwrap().remove("run");
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    assert_eq!(stored(dir.path()).unwrap().config, image.config);
    // ...and checks it against its digest.
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes.push(b' ');
    std::fs::write(&blob, bytes).unwrap();
    let err = stored(dir.path()).unwrap_err();
    assert!(
        corral::error_chain(&err).contains(&digest),
        "{}",
        corral::error_chain(&err)
    );
}
