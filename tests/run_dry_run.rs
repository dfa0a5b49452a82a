//! `corral run --dry-run`: the resolved plan of the seed pipelines and of a
//! pipeline with step groups, parallel blocks, a matrix, output-variable
//! references and runtime inputs; missing secrets and inputs as errors
//! before anything runs; no secret value in any output.
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SAUCE_KEY: &str = "sauce-Key-7f3e9a1c";
const DEPLOY_TOKEN: &str = "deploy-Token-0b5d2e88";

fn pipelines() -> PathBuf {
    common::testdata().join("pipelines")
}

fn dry_run(file: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let store = common::tempdir();
    let mut cmd = common::corral(store.path());
    cmd.arg("run").arg(file).arg("--dry-run").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run corral")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The secret must not appear in either stream, in any form we print.
fn assert_no_leak(out: &Output, secret: &str) {
    let (stdout, stderr) = text(out);
    for (name, s) in [("stdout", &stdout), ("stderr", &stderr)] {
        assert!(!s.contains(secret), "secret in {name}:\n{s}");
        let escaped = format!("{secret:?}");
        assert!(
            !s.contains(&escaped[1..escaped.len() - 1]),
            "escaped secret in {name}:\n{s}"
        );
    }
}

/// The value of the first `NAME=value` line of the plan.
fn env_value<'a>(plan: &'a str, name: &str) -> &'a str {
    plan.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in\n{plan}"))
}

fn sauce(file: &str) -> Output {
    dry_run(
        &pipelines().join(file),
        &["--secret", "Sauce_Access_Key"],
        &[("Sauce_Access_Key", SAUCE_KEY)],
    )
}

#[test]
fn seed_cloud_plan() {
    let out = sauce("seed-cloud.yaml");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for want in [
        "1. Background Sauce_Connect \"Sauce Connect\"",
        "image: docker.io/saucelabs/sauce-connect:latest (pull: Always)",
        "argv: (the image's entrypoint and cmd)",
        "SAUCE_USERNAME=YOUR_SAUCE_LABS_USERNAME",
        "SAUCE_ACCESS_KEY=**************",
        "ports: 8032->8032",
        "2. Run Wait_for_SC \"Wait for SC\"",
        "image: host",
        "argv: bash -c \"set -e; . /run/corral/step.sh\"",
        "script /run/corral/step.sh: \"until [ \\\"$(curl -s -o /dev/null -w ''%{http_code}'' localhost:8032/readiness)\\\" == \\\"200\\\" ]\\ndo\\n  sleep 2\\ndone\\necho \\\"SC ready\\\"\"",
        "timeout: 2h",
        "hosts: Sauce_Connect, Wait_for_SC -> 127.0.0.1",
        "HARNESS_WORKSPACE=/harness",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    let execution_id = env_value(&stdout, "HARNESS_EXECUTION_ID");
    let output =
        format!("DRONE_OUTPUT=/harness/.corral/outputs/{execution_id}/build/Wait_for_SC.env");
    assert!(stdout.contains(&output), "missing {output:?} in\n{stdout}");
    assert_no_leak(&out, SAUCE_KEY);
}

#[test]
fn seed_k8s_plan() {
    let out = sauce("seed-k8s.yaml");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for want in [
        "image: docker.io/saucelabs/sauce-connect:latest (pull: Always)",
        "SAUCE_USERNAME=YOUR_SAUCE_LABS_USERNAME",
        "SAUCE_ACCESS_KEY=**************",
        "image: docker.io/curlimages/curl:7.83.1 (pull: IfNotPresent)",
        "argv: sh -c \"set -e; . /run/corral/step.sh\"",
        "script /run/corral/step.sh: \"until [",
        "infrastructure: KubernetesDirect",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    // Kubernetes pods share localhost: the seed binds no ports.
    assert!(!stdout.contains("ports:"), "{stdout}");
    assert_no_leak(&out, SAUCE_KEY);
}

#[test]
fn missing_secret_is_an_error_before_anything_runs() {
    for (file, line) in [("seed-cloud.yaml", 27), ("seed-k8s.yaml", 29)] {
        let out = dry_run(
            &pipelines().join(file),
            &[],
            &[("Sauce_Access_Key", SAUCE_KEY)],
        );
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(stdout.is_empty(), "nothing may be planned:\n{stdout}");
        assert!(
            stderr.contains(&format!(
                "{file}:{line}: secret `Sauce_Access_Key` used by step `Sauce_Connect`"
            )),
            "{stderr}"
        );
        assert!(stderr.contains("--secret"), "{stderr}");
        assert_no_leak(&out, SAUCE_KEY);
    }
    // Named but unset in the environment.
    let out = dry_run(
        &pipelines().join("seed-cloud.yaml"),
        &["--secret", "Sauce_Access_Key"],
        &[],
    );
    let (_, stderr) = text(&out);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("environment variable `Sauce_Access_Key` is not set"),
        "{stderr}"
    );
}

fn demo() -> PathBuf {
    pipelines().join("run/groups-matrix-outputs.yaml")
}

fn demo_run(args: &[&str]) -> Output {
    let mut all = vec!["--secret", "deploy_token=env:DEPLOY_TOKEN_TEST"];
    all.extend(args);
    dry_run(&demo(), &all, &[("DEPLOY_TOKEN_TEST", DEPLOY_TOKEN)])
}

#[test]
fn groups_parallel_matrix_outputs_and_inputs() {
    let out = demo_run(&["--var", "region=eu-west"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for want in [
        "hosts: cleanup, db, deploy_cleanup, deploy_never, deploy_ship, never, produce, ship, test_0, test_1 -> 127.0.0.1",
        "outputs: VERSION (read from /harness/.corral/outputs/",
        "/build/produce.env)",
        "2. parallel (2 branches)",
        "2.1. parallel (2 branches, at most 1 at once)",
        "2.1.1. Run test_0 \"test\"",
        "iteration: 2 of 2 (matrix os=mac, py=3.11)",
        "image: docker.io/library/python:3.11",
        "script /run/corral/step.py: \"print(\\\"mac\\\")\"",
        "2.2. Background db \"db\"",
        "argv: docker-entrypoint.sh -p 5433",
        "POSTGRES_PASSWORD=**************",
        "3. group deploy \"deploy group\"",
        "3.1. Run deploy_ship \"ship\"",
        // An output of an earlier step stays visible until the step ran.
        "script /run/corral/step.sh: \"echo ship <+steps.produce.output.outputVariables.VERSION> to $target\"",
        "VERSION=\"<+execution.steps.produce.output.outputVariables.VERSION>\"",
        // Stage variable over pipeline variable; group variable from it.
        "region=stage-eu-west",
        "target=stage-eu-west-edge",
        "greeting=hello-eu-west",
        "flavour=vanilla",
        "when: runs (unless something fails before it) (stageStatus: Success",
        "when: decided at run time: runs only if an earlier step failed (stageStatus: Failure)",
        "when: skipped: the condition is false (stageStatus: All",
        "HARNESS_PIPELINE_ID=resolve_demo",
        "HARNESS_NODE_INDEX=1",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in\n{stdout}");
    }
    assert_no_leak(&out, DEPLOY_TOKEN);

    let out = demo_run(&["--var", "region=eu-west", "--var", "flavour=chocolate"]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("3.1. Run deploy_ship"), "{stdout}");
    assert!(
        stdout.contains("when: skipped: the condition is false (stageStatus: Success"),
        "{stdout}"
    );
    assert!(stdout.contains("when: runs (stageStatus: All"), "{stdout}");
}

#[test]
fn runtime_input_without_value_names_the_variable() {
    let out = demo_run(&[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("groups-matrix-outputs.yaml:7: variable `region` is a runtime input"),
        "{stderr}"
    );
    assert!(stderr.contains("--var region=VALUE"), "{stderr}");
    let out = demo_run(&["--var", "regoin=x"]);
    let (_, stderr) = text(&out);
    assert!(stderr.contains("did you mean `region`?"), "{stderr}");
    assert_no_leak(&out, DEPLOY_TOKEN);
}

#[test]
fn secrets_stay_out_of_error_paths() {
    let dir = common::tempdir();
    let file = dir.path().join("leak.yaml");
    // The secret ends up in an image reference that fails to parse, so
    // the error message would quote it.
    std::fs::write(
        &file,
        "stages:\n  - stage:\n      name: s\n      identifier: s\n      type: CI\n      spec:\n        execution:\n          steps:\n            - step:\n                type: Run\n                name: a\n                identifier: a\n                spec:\n                  image: <+secrets.getValue('img')>\n                  command: echo\n",
    )
    .expect("write pipeline");
    let secrets = dir.path().join("secrets.env");
    let value = "Not An Image Ref 9d8c7b";
    std::fs::write(&secrets, format!("img={value}\n")).expect("write secrets");
    let out = dry_run(
        &file,
        &["--secrets-file", secrets.to_str().expect("utf-8 path")],
        &[],
    );
    let (_, stderr) = text(&out);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("leak.yaml:14: invalid image of step `a`"),
        "{stderr}"
    );
    assert!(stderr.contains("**************"), "{stderr}");
    assert_no_leak(&out, value);
}

#[test]
fn run_without_dry_run_names_a_missing_secret_before_anything_runs() {
    let store = common::tempdir();
    let out = common::corral(store.path())
        .arg("run")
        .arg(pipelines().join("seed-cloud.yaml"))
        .env_remove("Sauce_Access_Key")
        .output()
        .expect("run corral");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Sauce_Access_Key"), "{stderr}");
    assert!(!stdout.contains("Sauce_Connect |"), "nothing ran: {stdout}");
}

#[test]
fn codebase_variables_come_from_the_git_checkout() {
    let dir = common::tempdir();
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir.path())
            .args([
                "-c",
                "user.name=Test User",
                "-c",
                "user.email=test@example.com",
            ])
            .args(args)
            .output()
    };
    match git(&["init", "-q", "-b", "feature-x"]) {
        Ok(o) if o.status.success() => {}
        _ => {
            common::skip(
                "codebase_variables_come_from_the_git_checkout",
                "git is not usable here",
            );
            return;
        }
    }
    let file = dir.path().join("p.yaml");
    std::fs::copy(pipelines().join("seed-k8s.yaml"), &file).expect("copy pipeline");
    git(&[
        "remote",
        "add",
        "origin",
        "https://user:tok3n-in-url@git.example.com/acme/widgets.git",
    ])
    .expect("git remote");
    git(&["add", "p.yaml"]).expect("git add");
    let commit = git(&["commit", "-q", "-m", "first commit"]).expect("git commit");
    common::assert_success(&commit, "git commit");
    let sha =
        String::from_utf8(git(&["rev-parse", "HEAD"]).expect("rev-parse").stdout).expect("utf-8");
    let out = dry_run(
        &file,
        &["--secret", "Sauce_Access_Key"],
        &[("Sauce_Access_Key", SAUCE_KEY)],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for want in [
        "DRONE_BRANCH=feature-x".to_string(),
        format!("DRONE_COMMIT_SHA={}", sha.trim()),
        "DRONE_REPO=acme/widgets".to_string(),
        "DRONE_BUILD_EVENT=push".to_string(),
        "DRONE_REMOTE_URL=https://git.example.com/acme/widgets.git".to_string(),
        "DRONE_COMMIT_MESSAGE=\"first commit\"".to_string(),
    ] {
        assert!(stdout.contains(&want), "missing {want:?} in\n{stdout}");
    }
    assert!(!stdout.contains("tok3n-in-url"), "{stdout}");
}

#[test]
fn invalid_pipelines_print_diagnostics_and_exit_1() {
    let out = dry_run(&pipelines().join("bad/bad-identifier.yaml"), &[], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("bad-identifier.yaml:"), "{stderr}");
    assert!(stderr.contains(": error: "), "{stderr}");
    // Warnings are printed and the plan follows.
    let out = dry_run(&pipelines().join("warn-unknown-field.yaml"), &[], &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: unknown field `imagePulPolicy`"),
        "{stderr}"
    );
    assert!(stdout.contains("stage build"), "{stdout}");
}

#[test]
fn the_plan_shows_how_many_stage_copies_run_at_once() {
    let dir = common::tempdir();
    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        "pipeline:\n  name: t\n  identifier: t\n  stages:\n    - stage:\n        name: s\n        identifier: s\n        type: CI\n        strategy:\n          repeat:\n            items: [a, b]\n          maxConcurrency: 1\n        spec:\n          execution:\n            steps:\n              - step: {type: Run, name: r, identifier: r, spec: {command: echo <+repeat.item>}}\n",
    )
    .unwrap();
    let out = dry_run(&file, &[], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("iteration: 2 of 2 (repeat item b) (copies run at most 1 at once)"),
        "{stdout}"
    );
}
