//! The edges of a run: a stage that cannot start (busy `portBindings`
//! port, image missing with `--offline` or from its registry, a holder
//! that cannot start) still ends
//! with the summary and `run_finished`; pipeline and stage timeouts stop
//! running steps and skip the rest.

#![allow(clippy::unwrap_used)]

mod common;
mod image_support;
mod run_support;

use run_support::{events, pipeline, row, setup, stderr, stdout, step};

/// The single `stage_finished` and `run_finished` events of a run.
fn finished(path: &std::path::Path) -> (serde_json::Value, serde_json::Value) {
    let stages = events(path, "stage_finished");
    let runs = events(path, "run_finished");
    assert_eq!(runs.len(), 1, "one run_finished");
    assert_eq!(stages.len(), 1, "one stage_finished: {stages:?}");
    (stages[0].clone(), runs[0].clone())
}

/// The summary's stage row (`STAGE - Stage STATUS`) and the reason
/// printed after the table (on stderr).
fn stage_row_and_reason(out: &std::process::Output, stage: &str) -> (Vec<String>, String) {
    let cells = row(out, "-");
    assert_eq!(cells[0], stage, "{}", stdout(out));
    (cells, reason(out, stage))
}

fn reason(out: &std::process::Output, stage: &str) -> String {
    let err = stderr(out);
    err.lines()
        .find_map(|l| l.strip_prefix(&format!("error: stage {stage}: ")))
        .unwrap_or_else(|| panic!("no reason after the summary:\n{err}"))
        .to_string()
}

#[test]
fn a_busy_port_fails_the_stage_naming_its_port_bindings() {
    let Some(env) = setup("busy_port", false) else {
        return;
    };
    let busy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let yaml = pipeline(&format!(
        r#"- step:
    type: Background
    name: svc
    identifier: svc
    spec:
      shell: Sh
      command: sleep 100
      portBindings:
        "{port}": "8080"
- step:
    type: Run
    name: after
    identifier: after
    spec:
      shell: Sh
      command: touch /harness/ran"#
    ));
    let file = env.write("p.yaml", &yaml);
    let ev = env.dir.path().join("events.jsonl");
    let out = env.run(&file, &["--events", ev.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let (cells, reason) = stage_row_and_reason(&out, "s");
    assert_eq!(cells[3], "Failed");
    // The binding's step, file:line (the `portBindings` key is on line 21
    // of the generated file), the port and what to do; not exec's `-p`.
    let at = format!("p.yaml:21 publish host port {port}");
    for want in [
        "step svc: portBindings at",
        &at,
        "already in use",
        "host port (the key)",
    ] {
        assert!(reason.contains(want), "{want:?} in {reason}");
    }
    assert!(!reason.contains("-p "), "{reason}");
    assert!(!env.ws("ran").exists(), "no step ran");
    let (stage, run) = finished(&ev);
    assert_eq!(stage["status"], "failed");
    assert!(stage["error"].as_str().unwrap().contains(&at), "{stage}");
    assert_eq!(run["exit_code"], 1);
    drop(busy);
}

#[test]
fn a_missing_image_with_offline_fails_the_stage_naming_step_and_image() {
    let Some(env) = setup("offline_missing", false) else {
        return;
    };
    let file = env.write(
        "p.yaml",
        &pipeline(&step(
            "Run",
            "use",
            Some("corral-test/never-pulled:1"),
            "echo hi",
        )),
    );
    let ev = env.dir.path().join("events.jsonl");
    let out = env.run(&file, &["--offline", "--events", ev.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let (cells, reason) = stage_row_and_reason(&out, "s");
    assert_eq!(cells[3], "Failed");
    for want in [
        "step use",
        "docker.io/corral-test/never-pulled:1",
        "--offline",
        "pull or import it first",
    ] {
        assert!(reason.contains(want), "{want:?} in {reason}");
    }
    let (stage, run) = finished(&ev);
    assert_eq!(stage["status"], "failed");
    assert_eq!(run["exit_code"], 1);
}

#[test]
fn an_image_the_registry_lacks_fails_the_stage_with_what_to_do() {
    let Some(env) = setup("image_not_found", false) else {
        return;
    };
    // A registry that knows no image at all (named directly: no mirror
    // falls back to Docker Hub).
    let server = image_support::FakeServer::start(|req| {
        if req.path == "/v2/" {
            return image_support::ok(b"{}");
        }
        image_support::status(404)
    });
    let image = format!("{}/corral-test/nowhere:1", server.addr);
    let file = env.write(
        "p.yaml",
        &pipeline(&step("Run", "use", Some(&image), "echo hi")),
    );
    let ev = env.dir.path().join("events.jsonl");
    let out = env.run(&file, &["--events", ev.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let (_, reason) = stage_row_and_reason(&out, "s");
    let failed = format!("step use: failed to pull image {image}");
    for want in [
        failed.as_str(),
        "check the image reference and the registry",
    ] {
        assert!(reason.contains(want), "{want:?} in {reason}");
    }
    let asked = server.count("GET", "/manifests/1") + server.count("HEAD", "/manifests/1");
    assert!(asked > 0, "the registry was asked");
    let (_, run) = finished(&ev);
    assert_eq!(run["exit_code"], 1);
}

#[test]
fn the_pipeline_timeout_stops_running_steps_and_skips_the_rest() {
    let Some(env) = setup("pipeline_timeout", false) else {
        return;
    };
    let yaml = r#"pipeline:
  name: t
  identifier: t
  timeout: 3s
  stages:
    - stage:
        name: a
        identifier: a
        type: CI
        spec:
          execution:
            steps:
              - parallel:
                  - step:
                      type: Run
                      name: one
                      identifier: one
                      spec:
                        shell: Sh
                        command: touch /harness/one; sleep 100
                  - step:
                      type: Run
                      name: two
                      identifier: two
                      spec:
                        shell: Sh
                        command: touch /harness/two; sleep 100
              - step:
                  type: Run
                  name: later
                  identifier: later
                  spec:
                    shell: Sh
                    command: touch /harness/later
    - stage:
        name: b
        identifier: b
        type: CI
        spec:
          execution:
            steps:
              - step:
                  type: Run
                  name: next
                  identifier: next
                  spec:
                    shell: Sh
                    command: touch /harness/next
"#;
    let file = env.write("p.yaml", yaml);
    let ev = env.dir.path().join("events.jsonl");
    let out = env.run(&file, &["--events", ev.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(124), "as a step timeout");
    assert!(env.ws("one").exists() && env.ws("two").exists());
    assert_eq!(row(&out, "one")[3], "Timeout");
    assert_eq!(row(&out, "two")[3], "Timeout");
    assert_eq!(row(&out, "later")[3], "Skipped");
    assert!(!env.ws("later").exists() && !env.ws("next").exists());
    assert!(
        reason(&out, "a").starts_with("the pipeline's timeout of 3s was reached"),
        "{}",
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.lines()
            .any(|l| l.starts_with("b ") && l.contains("Skipped")),
        "{text}"
    );
    let stages = events(&ev, "stage_finished");
    assert_eq!(stages[0]["status"], "failed");
    assert!(stages[0]["error"]
        .as_str()
        .unwrap()
        .contains("pipeline's timeout"));
    assert_eq!(events(&ev, "step_timed_out").len(), 2);
    assert_eq!(events(&ev, "run_finished")[0]["exit_code"], 124);
}

#[test]
fn a_stage_timeout_skips_the_stages_remaining_steps() {
    let Some(env) = setup("stage_timeout", false) else {
        return;
    };
    let yaml = r#"pipeline:
  name: t
  identifier: t
  stages:
    - stage:
        name: a
        identifier: a
        type: CI
        timeout: 2s
        spec:
          execution:
            steps:
              - step:
                  type: Run
                  name: slow
                  identifier: slow
                  spec:
                    shell: Sh
                    command: sleep 100
              - step:
                  type: Run
                  name: later
                  identifier: later
                  when:
                    stageStatus: All
                  spec:
                    shell: Sh
                    command: touch /harness/later
"#;
    let file = env.write("p.yaml", yaml);
    let out = env.run(&file, &[]);
    assert_eq!(out.status.code(), Some(124));
    assert_eq!(row(&out, "slow")[3], "Timeout");
    // Even `stageStatus: All` does not run past the stage's timeout.
    assert_eq!(row(&out, "later")[3], "Skipped");
    assert!(!env.ws("later").exists());
    assert!(reason(&out, "a").starts_with("the stage's timeout of 2s was reached"));
}

#[test]
fn a_holder_that_cannot_start_fails_the_stage_with_the_summary() {
    let Some(env) = setup("holder_fails", false) else {
        return;
    };
    let file = env.write(
        "p.yaml",
        &pipeline(&step("Run", "r", None, "touch /harness/ran")),
    );
    let ev = env.dir.path().join("events.jsonl");
    // The sandbox roles are served by CORRAL_EXE; /bin/false serves none.
    let out = env
        .command(&file)
        .env("CORRAL_EXE", "/bin/false")
        .args(["--events", ev.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let (cells, reason) = stage_row_and_reason(&out, "s");
    assert_eq!(cells[3], "Failed");
    assert!(
        reason.contains("failed to start its sandbox") && reason.contains("corral info"),
        "{reason}"
    );
    assert!(!env.ws("ran").exists());
    let (stage, run) = finished(&ev);
    assert_eq!(stage["status"], "failed");
    assert_eq!(run["exit_code"], 1);
}
