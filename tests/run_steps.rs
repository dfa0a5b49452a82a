//! `corral run`: steps in real sandboxes — services, timeouts, failure
//! strategies, parallel steps, groups, output variables, masking.

#![allow(clippy::unwrap_used)]

mod common;
mod run_support;

use run_support::{events, log_dir, pipeline, row, setup, stdout};

#[test]
fn redis_service_answers_the_run_step_by_its_step_id() {
    let Some(env) = setup("redis_service", true) else {
        return;
    };
    let file = env.write(
        "p.yaml",
        &pipeline(
            r#"- step:
    type: Background
    name: redis
    identifier: redis_svc
    spec:
      image: redis:7
- step:
    type: Run
    name: use redis
    identifier: use_redis
    spec:
      image: redis:7
      shell: Sh
      command: |
        for i in $(seq 100); do redis-cli -h redis_svc ping && break; sleep 0.1; done
        redis-cli -h redis_svc set greeting from-redis
        echo "value: $(redis-cli -h localhost get greeting)""#,
        ),
    );
    let out = env.run(&file, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("use_redis | value: from-redis"));
    assert_eq!(row(&out, "redis_svc")[3], "Running at teardown");
}

#[test]
fn a_crashing_service_is_reported_and_the_stage_still_succeeds() {
    let Some(env) = setup("crashing_service", true) else {
        return;
    };
    let file = env.write(
        "p.yaml",
        &pipeline(
            r#"- step:
    type: Background
    name: flaky
    identifier: flaky
    spec:
      image: busybox
      shell: Sh
      command: echo flaky is going down; exit 3
- step:
    type: Run
    name: later
    identifier: later
    spec:
      image: busybox
      shell: Sh
      command: sleep 2; echo later ran"#,
        ),
    );
    let ev = env.dir.path().join("events.jsonl");
    let out = env.run(&file, &["--events", ev.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(text.contains("flaky | background step exited with code 3"));
    assert!(
        text.contains("flaky |   flaky is going down"),
        "last lines shown"
    );
    let exited = events(&ev, "background_exited");
    assert_eq!(exited.len(), 1);
    assert_eq!(exited[0]["exit_code"], 3);
    assert_eq!(row(&out, "flaky")[3], "Failed");
    assert_eq!(row(&out, "later")[3], "Success");
}

#[test]
fn a_step_past_its_timeout_is_killed_and_fails_the_stage() {
    let Some(env) = setup("step_timeout", true) else {
        return;
    };
    let file = env.write(
        "p.yaml",
        &pipeline(
            r#"- step:
    type: Run
    name: slow
    identifier: slow
    timeout: 2s
    spec:
      image: busybox
      shell: Sh
      command: echo sleeping; sleep 60
- step:
    type: Run
    name: after
    identifier: after
    spec:
      image: busybox
      shell: Sh
      command: echo must not run"#,
        ),
    );
    let ev = env.dir.path().join("events.jsonl");
    let out = env.run(&file, &["--events", ev.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(124));
    assert_eq!(row(&out, "slow")[3], "Timeout");
    assert_eq!(row(&out, "after")[3], "Skipped");
    assert!(!stdout(&out).contains("must not run"));
    assert_eq!(events(&ev, "step_timed_out").len(), 1);
    assert!(events(&ev, "stage_finished")[0]["status"] == "failed");
}

#[test]
fn ignore_and_retry_failure_strategies() {
    let Some(env) = setup("failure_strategies", true) else {
        return;
    };
    let file = env.write(
        "p.yaml",
        &pipeline(
            r#"- step:
    type: Run
    name: ignored
    identifier: ignored
    spec:
      image: busybox
      shell: Sh
      command: exit 5
    failureStrategies:
      - onFailure:
          errors: [AllErrors]
          action:
            type: Ignore
- step:
    type: Run
    name: retried
    identifier: retried
    spec:
      image: busybox
      shell: Sh
      command: echo attempt >> /harness/attempts; exit 7
    failureStrategies:
      - onFailure:
          errors: [AllErrors]
          action:
            type: Retry
            spec:
              retryCount: 2
              retryIntervals: [1s]
              onRetryFailure:
                action:
                  type: MarkAsFailure"#,
        ),
    );
    let ev = env.dir.path().join("events.jsonl");
    let out = env.run(&file, &["--events", ev.to_str().unwrap()]);
    assert_eq!(row(&out, "ignored")[3], "Ignored");
    let attempts = std::fs::read_to_string(env.ws("attempts")).unwrap();
    assert_eq!(attempts.lines().count(), 3, "one run and two retries");
    assert_eq!(events(&ev, "step_retrying").len(), 2);
    assert_eq!(row(&out, "retried")[3], "Failed (3 attempts)");
    assert_eq!(out.status.code(), Some(7));
}

#[test]
fn parallel_steps_overlap_and_groups_run_their_steps() {
    let Some(env) = setup("parallel_and_groups", true) else {
        return;
    };
    // Each waits to see the other's start marker: only overlapping runs
    // see both.
    let wait = |me: &str, other: &str| {
        format!(
            "touch /harness/{me}.started; for i in $(seq 200); do if [ -e /harness/{other}.started ]; then touch /harness/{me}.saw; break; fi; sleep 0.05; done"
        )
    };
    let file = env.write(
        "p.yaml",
        &pipeline(&format!(
            r#"- parallel:
    - step:
        type: Run
        name: a
        identifier: a
        spec:
          image: busybox
          shell: Sh
          command: {}
    - step:
        type: Run
        name: b
        identifier: b
        spec:
          shell: Bash
          command: {}
- stepGroup:
    name: grp
    identifier: grp
    steps:
      - step:
          type: Run
          name: one
          identifier: one
          spec:
            image: busybox
            shell: Sh
            command: echo one > /harness/one
      - step:
          type: Run
          name: two
          identifier: two
          spec:
            image: busybox
            shell: Sh
            command: cat /harness/one; echo two"#,
            wait("a", "b"),
            wait("b", "a")
        )),
    );
    let out = env.run(&file, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(env.ws("a.saw").exists() && env.ws("b.saw").exists());
    assert!(stdout(&out).contains("grp_two | one"));
    assert_eq!(row(&out, "grp_one")[3], "Success");
}

#[test]
fn output_variables_reach_later_steps() {
    let Some(env) = setup("output_variables", true) else {
        return;
    };
    let file = env.write(
        "p.yaml",
        &pipeline(
            r#"- step:
    type: Run
    name: produce
    identifier: produce
    spec:
      image: busybox
      shell: Sh
      command: export VERSION=1.2.3
      outputVariables:
        - name: VERSION
- step:
    type: Run
    name: consume
    identifier: consume
    spec:
      shell: Bash
      command: echo "got <+steps.produce.output.outputVariables.VERSION>""#,
        ),
    );
    let out = env.run(&file, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("consume | got 1.2.3"));
}

#[test]
fn an_echoed_secret_is_masked_on_the_terminal_in_log_files_and_events() {
    let Some(env) = setup("secret_masking", true) else {
        return;
    };
    let secret = "pa55-w0rd-xyzzy";
    let file = env.write(
        "p.yaml",
        &pipeline(
            r#"- step:
    type: Run
    name: leak
    identifier: leak
    spec:
      image: busybox
      shell: Sh
      envVariables:
        TOKEN: <+secrets.getValue("api_token")>
      command: echo "token is $TOKEN"; echo "$TOKEN" >&2"#,
        ),
    );
    let ev = env.dir.path().join("events.jsonl");
    let out = env
        .command(&file)
        .args(["--secret", "api_token=env:TEST_TOKEN", "--events"])
        .arg(&ev)
        .env("TEST_TOKEN", secret)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", run_support::stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("leak | token is "), "{text}");
    assert!(!text.contains(secret));
    assert!(!run_support::stderr(&out).contains(secret));
    let log = std::fs::read_to_string(log_dir(&out).join("s/leak.log")).unwrap();
    assert!(log.contains("token is ") && !log.contains(secret), "{log}");
    let events_text = std::fs::read_to_string(&ev).unwrap();
    assert!(events_text.contains("token is ") && !events_text.contains(secret));
}

#[test]
fn a_missing_image_fails_naming_the_step_and_the_image() {
    let Some(env) = setup("missing_image", true) else {
        return;
    };
    let file = env.write(
        "p.yaml",
        &pipeline(
            r#"- step:
    type: Run
    name: ghost
    identifier: ghost
    spec:
      image: corral-tests/no-such-image:1
      shell: Sh
      command: echo never"#,
        ),
    );
    let out = env.run(&file, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = run_support::stderr(&out);
    assert!(
        err.contains("step ghost") && err.contains("corral-tests/no-such-image:1"),
        "{err}"
    );
    assert!(!stdout(&out).contains("never"));
}

#[test]
fn stage_selection_and_outputs_across_stages() {
    let Some(env) = setup("stage_selection", true) else {
        return;
    };
    let yaml = r#"pipeline:
  name: two
  identifier: two
  stages:
    - stage:
        name: first
        identifier: first
        type: CI
        spec:
          execution:
            steps:
              - step:
                  type: Run
                  name: make
                  identifier: make
                  spec:
                    image: busybox
                    shell: Sh
                    command: export TAG=v9; touch /harness/first.ran
                    outputVariables:
                      - name: TAG
    - stage:
        name: second
        identifier: second
        type: CI
        spec:
          execution:
            steps:
              - step:
                  type: Run
                  name: use
                  identifier: use
                  spec:
                    image: busybox
                    shell: Sh
                    command: echo "tag <+pipeline.stages.first.spec.execution.steps.make.output.outputVariables.TAG>"
"#;
    let file = env.write("two.yaml", yaml);
    let out = env.run(&file, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("use  | tag v9"), "{}", stdout(&out));
    std::fs::remove_file(env.ws("first.ran")).unwrap();
    let only = env.run(&file, &["--stage", "second"]);
    assert!(
        !env.ws("first.ran").exists(),
        "stage first was not selected"
    );
    let text = stdout(&only);
    assert!(!text.lines().any(|l| l.starts_with("make")), "{text}");
    // The output of an unselected stage is unknown: named, not guessed.
    assert!(text.contains("use | failed:") && text.contains("unknown reference"));
    assert_eq!(only.status.code(), Some(1));
}

#[test]
fn the_library_api_runs_a_pipeline() {
    let Some(env) = setup("library_api", true) else {
        return;
    };
    let file = env.write(
        "p.yaml",
        &pipeline(
            r#"- step:
    type: Run
    name: lib
    identifier: lib
    spec:
      image: busybox
      shell: Sh
      command: echo from-the-library > /harness/lib.txt; exit 3"#,
        ),
    );
    let options = corral::runner::RunOptions {
        store: Some(env.store.clone()),
        workspace: Some(env.workspace.clone()),
        config_file: Some("/dev/null".into()),
        registry_mirrors: vec![format!(
            "docker.io=http://{}",
            env.registry.as_deref().unwrap()
        )],
        exe: Some(common::corral_bin()),
        quiet: true,
        ..corral::runner::RunOptions::default()
    };
    let report = corral::runner::run_pipeline(&file, options).unwrap();
    assert_eq!(report.exit_code, 3);
    assert_eq!(report.stages[0].steps[0].exit_code, Some(3));
    assert_eq!(
        std::fs::read_to_string(env.ws("lib.txt")).unwrap(),
        "from-the-library\n"
    );
    assert!(report.run_dir.join("logs/s/lib.log").exists());
}

#[test]
fn the_stage_timeout_bounds_its_steps() {
    let Some(env) = setup("stage_timeout", true) else {
        return;
    };
    let yaml = pipeline(
        r#"- step:
    type: Run
    name: slow
    identifier: slow
    spec:
      image: busybox
      shell: Sh
      command: sleep 60"#,
    )
    .replace(
        "        type: CI\n",
        "        type: CI\n        timeout: 2s\n",
    );
    let file = env.write("p.yaml", &yaml);
    // Warm the image: the stage's timeout counts its pulls too.
    let mirror = format!("docker.io=http://{}", env.registry.as_ref().unwrap());
    let pull = common::corral(&env.store)
        .args(["pull", "--registry-mirror", &mirror, "busybox"])
        .output()
        .unwrap();
    assert!(pull.status.success());
    let out = env.run(&file, &[]);
    assert_eq!(out.status.code(), Some(124));
    assert_eq!(row(&out, "slow")[3], "Timeout");
}

#[test]
fn offline_uses_stored_images_and_names_a_missing_one() {
    let Some(env) = setup("offline_run", true) else {
        return;
    };
    let file = env.write(
        "p.yaml",
        &pipeline(
            r#"- step:
    type: Run
    name: hi
    identifier: hi
    spec:
      image: busybox
      shell: Sh
      command: echo offline works"#,
        ),
    );
    let out = common::corral(&env.store)
        .args(["run", "--offline"])
        .arg(&file)
        .output()
        .unwrap();
    let err = run_support::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("docker.io/library/busybox:latest"), "{err}");
    // Pulled once through the mirror, the image is then used offline.
    assert!(env.run(&file, &[]).status.success());
    let again = common::corral(&env.store)
        .args(["run", "--offline"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(stdout(&again).contains("hi | offline works"));
}
