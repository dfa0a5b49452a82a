//! Basic CLI behaviour: help, version, completions.
mod common;

#[test]
fn help_lists_every_command() {
    let dir = common::tempdir();
    let out = common::corral(dir.path()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for cmd in [
        "validate",
        "run",
        "pull",
        "images",
        "image",
        "rmi",
        "prune",
        "import",
        "exec",
        "info",
        "completions",
    ] {
        assert!(text.contains(cmd), "help lacks {cmd}: {text}");
    }
    assert!(
        !text.contains("__sandbox"),
        "internal command leaked into help"
    );
}

#[test]
fn completions_for_bash_mention_subcommands() {
    let dir = common::tempdir();
    let out = common::corral(dir.path())
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("validate") && text.contains("exec"));
}
