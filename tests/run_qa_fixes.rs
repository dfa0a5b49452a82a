//! Bugs a QA pass found in `corral run`, one test each: step groups'
//! sharedPaths, a Background step's duration, a missing pipeline file,
//! event timestamps, stage skip reasons, retried attempts, Ctrl-C on a
//! step that ignores SIGTERM, summary order of parallel steps, `timeout:
//! <+input>`, a matrix with maxConcurrency, the single-ID note.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod run_support;

use std::process::Stdio;

use run_support::{
    events, eventually, indent, pipeline, pipeline_of, retry_twice, row, run_step, setup, signal,
    stage, stderr, stdout, step, with_when,
};

/// The step_exited events of `step`.
fn exits_of(ev: &std::path::Path, step: &str) -> Vec<serde_json::Value> {
    events(ev, "step_exited")
        .into_iter()
        .filter(|e| e["step"] == step)
        .collect()
}

#[test]
fn step_group_shared_paths_reach_its_steps_only() {
    let Some(env) = setup("group_shared_paths", true) else {
        return;
    };
    let group = run_step("write", "echo cached > /grpcache/f")
        + &run_step("read", "cat /grpcache/f > /harness/seen");
    let yaml = pipeline(&format!(
        "- stepGroup:\n    name: g\n    identifier: g\n    sharedPaths:\n      - /grpcache\n    steps:\n{}{}",
        indent(&group, 6),
        run_step("outside", "test ! -e /grpcache/f && touch /harness/outside_clean")
    ));
    let file = env.write("p.yaml", &yaml);
    let out = env.run(&file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(env.ws("seen")).unwrap().trim(),
        "cached"
    );
    assert!(env.ws("outside_clean").exists());
}

#[test]
fn a_background_step_that_exits_early_ends_its_duration_there() {
    let Some(env) = setup("background_duration", false) else {
        return;
    };
    let steps =
        step("Background", "svc", None, "echo up; exit 3") + &step("Run", "work", None, "sleep 4");
    let file = env.write("p.yaml", &pipeline(&steps));
    let ev = env.dir.path().join("events.jsonl");
    let out = env.run(&file, &["--events", ev.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let svc = &exits_of(&ev, "svc")[0];
    let work = &exits_of(&ev, "work")[0];
    assert_eq!(svc["exit_code"], 3);
    // The service ran for a moment; the stage went on for the whole sleep.
    assert!(
        svc["duration_ms"].as_u64().unwrap() < work["duration_ms"].as_u64().unwrap(),
        "svc {svc} work {work}"
    );
}

#[test]
fn a_missing_pipeline_file_exits_1_with_a_clear_message() {
    let dir = common::tempdir();
    for args in [
        &["run", "nope.yaml"][..],
        &["run", "--dry-run", "nope.yaml"],
        &["validate", "nope.yaml"],
    ] {
        let out = common::corral(&dir.path().join("store"))
            .current_dir(dir.path())
            .args(args)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("failed to read pipeline file nope.yaml"),
            "{err}"
        );
        assert!(err.contains("No such file or directory"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn event_timestamps_always_have_three_millisecond_digits() {
    use corral::runner::events::format_ts;
    let whole = time::OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
    for (ms, text) in [(0, "000"), (120, "120"), (7, "007"), (999, "999")] {
        let t = whole + time::Duration::milliseconds(ms);
        let ts = format_ts(t);
        assert!(ts.ends_with(&format!(".{text}Z")), "{ts}");
        assert_eq!(ts.len(), "2026-11-18T08:26:40.000Z".len(), "{ts}");
    }
}

#[test]
fn a_stage_skipped_by_its_when_names_pipeline_status() {
    let Some(env) = setup("stage_skip_reason", false) else {
        return;
    };
    let stages = stage("breaks", &step("Run", "fail", None, "exit 4"))
        + &stage("after", &step("Run", "never", None, "true"))
        + &with_when(
            &stage("cleanup", &step("Run", "tidy", None, "true")),
            "      pipelineStatus: Failure\n",
        );
    let file = env.write("p.yaml", &pipeline_of(&stages));
    let ev = env.dir.path().join("events.jsonl");
    let out = env.run(&file, &["--events", ev.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4));
    let err = stderr(&out);
    assert!(
        err.contains(
            "note: stage after: skipped: an earlier stage failed (when.pipelineStatus: Success"
        ),
        "{err}"
    );
    assert_eq!(row(&out, "-")[0], "after", "{}", stdout(&out));
    let finished = events(&ev, "stage_finished");
    let after = finished.iter().find(|e| e["stage"] == "after").unwrap();
    assert_eq!(after["status"], "skipped");
    assert!(
        after["error"]
            .as_str()
            .unwrap()
            .contains("when.pipelineStatus: Success"),
        "{after}"
    );
    let cleanup = finished.iter().find(|e| e["stage"] == "cleanup").unwrap();
    assert_eq!(cleanup["status"], "success", "{cleanup}");

    // All went well: a Failure-only stage says so.
    let stages = stage("ok", &step("Run", "fine", None, "true"))
        + &with_when(
            &stage("on_failure", &step("Run", "tidy", None, "true")),
            "      pipelineStatus: Failure\n",
        );
    let file = env.write("q.yaml", &pipeline_of(&stages));
    let out = env.run(&file, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains(
            "note: stage on_failure: skipped: no earlier stage failed (when.pipelineStatus: Failure)"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn every_retried_attempt_has_its_step_exited() {
    let Some(env) = setup("retry_events", false) else {
        return;
    };
    let flaky = step(
        "Run",
        "flaky",
        None,
        "n=$(cat /harness/n 2>/dev/null || echo 0); echo $((n+1)) > /harness/n; exit $((5+n))",
    ) + &retry_twice("Ignore");
    let file = env.write("p.yaml", &pipeline(&flaky));
    let ev = env.dir.path().join("events.jsonl");
    let out = env.run(&file, &["--events", ev.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let exits = exits_of(&ev, "flaky");
    let seen: Vec<(u64, i64, &str)> = exits
        .iter()
        .map(|e| {
            (
                e["attempt"].as_u64().unwrap(),
                e["exit_code"].as_i64().unwrap(),
                e["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [(1, 5, "failed"), (2, 6, "failed"), (3, 7, "ignored")],
        "{exits:?}"
    );
    assert_eq!(row(&out, "flaky")[3], "Ignored (3 attempts)");
}

#[test]
fn ctrl_c_on_a_step_that_ignores_sigterm_reports_sigkill() {
    let Some(env) = setup("ctrl_c_sigkill", false) else {
        return;
    };
    let config = env.write("config.toml", "[run]\ngrace_period = \"1s\"\n");
    let file = env.write(
        "p.yaml",
        &pipeline(&step(
            "Run",
            "stubborn",
            None,
            "trap '' TERM INT; touch /harness/started; while true; do sleep 0.2; done",
        )),
    );
    let ev = env.dir.path().join("events.jsonl");
    let child = env
        .command(&file)
        .args(["--events", ev.to_str().unwrap()])
        .env("CORRAL_CONFIG", &config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(60, || env.ws("started").exists()), "started");
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let exit = &exits_of(&ev, "stubborn")[0];
    assert_eq!(exit["signal"], 9, "{exit}");
    assert_eq!(row(&out, "stubborn")[4], "sig 9");
    let teardown: Vec<_> = events(&ev, "teardown")
        .into_iter()
        .map(|e| e["signal"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(teardown, ["SIGTERM", "SIGKILL"]);
}

#[test]
fn summary_rows_of_parallel_steps_follow_the_yaml() {
    let Some(env) = setup("parallel_order", false) else {
        return;
    };
    // The group's second step starts long after `quick` has run.
    let group = step("Run", "first", None, "sleep 1") + &step("Run", "second", None, "true");
    let parallel = format!(
        "- stepGroup:\n    name: g\n    identifier: g\n    steps:\n{}{}",
        indent(&group, 6),
        step("Run", "quick", None, "true")
    );
    let file = env.write(
        "p.yaml",
        &pipeline(&format!("- parallel:\n{}", indent(&parallel, 4))),
    );
    let out = env.run(&file, &[]);
    assert_eq!(out.status.code(), Some(0));
    let order: Vec<String> = stdout(&out)
        .lines()
        .skip_while(|l| !l.starts_with("STAGE"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1).map(String::from))
        .collect();
    assert_eq!(order, ["g_first", "g_second", "quick"]);
}

#[test]
fn timeout_input_without_default_is_a_located_error() {
    let dir = common::tempdir();
    let yaml = pipeline(&(run_step("a", "true") + "    timeout: <+input>\n"));
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let line = yaml.lines().position(|l| l.contains("<+input>")).unwrap() + 1;
    for args in [&["validate"][..], &["run", "--dry-run"]] {
        let out = common::corral(&dir.path().join("store"))
            .args(args)
            .arg(&file)
            .output()
            .unwrap();
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert_eq!(out.status.code(), Some(1), "{text}");
        assert!(
            text.contains(&format!(
                "p.yaml:{line}:28: error: `timeout` is a runtime input (`<+input>`) without a default"
            )),
            "{text}"
        );
    }
    // With a default, the default is the timeout.
    std::fs::write(&file, yaml.replace("<+input>", "<+input>.default(7m)")).unwrap();
    let out = common::corral(&dir.path().join("store"))
        .args(["run", "--dry-run"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("timeout: 7m"), "{}", stdout(&out));
}

#[test]
fn a_matrix_with_max_concurrency_validates_without_warnings() {
    let dir = common::tempdir();
    let yaml = pipeline(
        &(run_step("a", "echo <+matrix.node>")
            + "    strategy:\n      matrix:\n        maxConcurrency: 2\n        node: [\"18\", \"20\"]\n"),
    );
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let out = common::corral(&dir.path().join("store"))
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("(0 warnings)"), "{text}");
    assert!(!text.contains("no axes"), "{text}");
}

#[test]
fn the_single_id_note_follows_only_id_mapping_failures() {
    let Some(env) = setup("single_id_note", false) else {
        return;
    };
    // With a subuid range there is no note to leave out: nothing to test.
    if !common::single_id_mapping(&env.store) {
        eprintln!("SKIP single_id_note: this user maps a whole ID range (the note is about single-ID sandboxes; corral-nosub runs it)");
        return;
    }
    let file = env.write(
        "p.yaml",
        &pipeline(&step("Run", "tests", None, "echo '2 tests failed'; exit 3")),
    );
    let out = env.run(&file, &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        !stderr(&out).contains("only one ID is mapped"),
        "{}",
        stderr(&out)
    );
}
