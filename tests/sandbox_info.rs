//! `corral info` tells the truth about this host.
#![allow(clippy::unwrap_used)]

mod common;

#[test]
fn info_json_reports_namespaces_overlay_and_the_id_mapping_of_this_user() {
    if !common::require_namespaces(
        "info_json_reports_namespaces_overlay_and_the_id_mapping_of_this_user",
    ) {
        return;
    }
    let tmp = common::tempdir();
    let out = common::corral(tmp.path())
        .args(["info", "--json"])
        .output()
        .unwrap();
    common::assert_success(&out, "corral info --json");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name}"))
    };
    assert_eq!(check("user namespaces")["ok"], true);
    // The overlay probe really mounts; on this kernel (≥ 5.11) it works.
    assert_eq!(check("overlay in a user namespace")["value"], "works");
    let mapping = report["modes"]["id_mapping"].as_str().unwrap();
    if common::is_root() {
        assert!(mapping.starts_with("identity"), "{mapping}");
    } else {
        assert!(
            mapping.starts_with("subuid range") || mapping.starts_with("single ID"),
            "{mapping}"
        );
    }
    let cgroup = check("cgroup v2 delegation");
    if cgroup["ok"] == false {
        assert!(cgroup["fix"].is_string());
        assert!(report["modes"]["limits"]
            .as_str()
            .unwrap()
            .starts_with("rlimits"));
    }
    let text = common::corral(tmp.path()).arg("info").output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("corral will use"));
    // The overlay probe's scratch dir (whose work/work the kernel leaves at
    // mode 000) is gone, also for an unprivileged user.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "corral info left {left:?} in its store");
}
