//! The seed pipelines (Harness docs' Sauce Connect example, both tabs)
//! verbatim, through the test registry as a docker.io mirror.

#![allow(clippy::unwrap_used)]

mod common;
mod run_support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use run_support::{setup, stderr, stdout, Env};

const SECRET: &str = "sauce-key-4711";

fn seed(name: &str) -> std::path::PathBuf {
    common::testdata().join("pipelines").join(name)
}

fn seed_command(env: &Env, name: &str) -> std::process::Command {
    let mut cmd = env.command(&seed(name));
    cmd.args(["--secret", "Sauce_Access_Key"])
        .env("Sauce_Access_Key", SECRET);
    cmd
}

fn assert_sc_ready(out: &std::process::Output) {
    let text = stdout(out);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", stderr(out));
    assert!(text.contains("Wait_for_SC   | SC ready"), "{text}");
    assert!(!text.contains(SECRET) && !stderr(out).contains(SECRET));
}

#[test]
fn seed_k8s_tab_runs_and_two_copies_do_not_collide_on_8032() {
    let Some(env) = setup("seed_k8s", true) else {
        return;
    };
    let Some(other) = setup("seed_k8s", true) else {
        return;
    };
    // Both at once: each stage has its own network namespace.
    let spawn = |env: &Env| {
        seed_command(env, "seed-k8s.yaml")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(&env), spawn(&other));
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    assert_sc_ready(&first);
    assert_sc_ready(&second);
    let rerun = seed_command(&env, "seed-k8s.yaml").output().unwrap();
    assert_sc_ready(&rerun);
}

#[test]
fn seed_cloud_tab_runs_on_the_host_root_and_a_second_run_finds_8032_busy() {
    let Some(env) = setup("seed_cloud", true) else {
        return;
    };
    let Some(other) = setup("seed_cloud", true) else {
        return;
    };
    // The second run must reach its port check while the first still
    // holds 8032: with the image already in its store it does not spend
    // the service's few seconds on a download (a loaded host took 7 s).
    other.pull("saucelabs/sauce-connect:latest");
    let mut first = seed_command(&env, "seed-cloud.yaml")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once the service prints, its stage holds 8032 on the host.
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("Sauce_Connect") {
            break;
        }
    }
    let busy = seed_command(&other, "seed-cloud.yaml").output().unwrap();
    for line in lines {
        seen.push_str(&line.unwrap());
        seen.push('\n');
    }
    let status = first.wait().unwrap();
    assert!(status.success(), "{seen}");
    assert!(seen.contains("Wait_for_SC   | SC ready"), "{seen}");
    assert!(!seen.contains(SECRET));
    let err = stderr(&busy);
    assert_eq!(busy.status.code(), Some(1), "{err}");
    assert!(err.contains("8032"), "the busy port is named: {err}");
    assert!(
        !stdout(&busy).contains("Sauce_Connect |"),
        "nothing started"
    );
}
