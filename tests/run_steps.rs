//! `corral run`: steps in real sandboxes — services, timeouts, failure
//! strategies, parallel steps, groups, output variables, masking.

#![allow(clippy::unwrap_used)]

mod common;
mod run_support;

use run_support::{
    events, indent, log_dir, meet, pipeline, pipeline_of, retry_twice, row, run_step, setup, stage,
    stdout, step, IGNORE,
};

#[test]
fn redis_service_answers_the_run_step_by_its_step_id() {
    let Some(env) = setup("redis_service", true) else {
        return;
    };
    let file = env.write(
        "p.yaml",
        &pipeline(
            &(step("Background", "redis_svc", Some("redis:7"), "")
                + &step(
                    "Run",
                    "use_redis",
                    Some("redis:7"),
                    r#"for i in $(seq 100); do redis-cli -h redis_svc ping && break; sleep 0.1; done
redis-cli -h redis_svc set greeting from-redis
echo "value: $(redis-cli -h localhost get greeting)""#,
                )),
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
            &(step(
                "Background",
                "flaky",
                Some("busybox"),
                "echo flaky is going down; exit 3",
            ) + &run_step("later", "sleep 2; echo later ran")),
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
            &(run_step("slow", "echo sleeping; sleep 60")
                + "    timeout: 2s\n"
                + &run_step("after", "echo must not run")),
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
            &(run_step("ignored", "exit 5")
                + IGNORE
                + &run_step("retried", "echo attempt >> /harness/attempts; exit 7")
                + &retry_twice("MarkAsFailure")),
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
    let parallel = run_step("a", &meet("a", "b")) + &step("Run", "b", None, &meet("b", "a"));
    let group =
        run_step("one", "echo one > /harness/one") + &run_step("two", "cat /harness/one; echo two");
    let file = env.write(
        "p.yaml",
        &pipeline(&format!(
            "- parallel:\n{}- stepGroup:\n    name: grp\n    identifier: grp\n    steps:\n{}",
            indent(&parallel, 4),
            indent(&group, 6)
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
            &(run_step("produce", "export VERSION=1.2.3")
                + "      outputVariables:\n        - name: VERSION\n"
                + &step(
                    "Run",
                    "consume",
                    None,
                    r#"echo "got <+steps.produce.output.outputVariables.VERSION>""#,
                )),
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
            &(run_step("leak", r#"echo "token is $TOKEN"; echo "$TOKEN" >&2"#)
                + "      envVariables:\n        TOKEN: <+secrets.getValue(\"api_token\")>\n"),
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
        &pipeline(&step(
            "Run",
            "ghost",
            Some("corral-tests/no-such-image:1"),
            "echo never",
        )),
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
    let make = run_step("make", "export TAG=v9; touch /harness/first.ran")
        + "      outputVariables:\n        - name: TAG\n";
    let using = run_step(
        "use",
        r#"echo "tag <+pipeline.stages.first.spec.execution.steps.make.output.outputVariables.TAG>""#,
    );
    let yaml = pipeline_of(&(stage("first", &make) + &stage("second", &using)));
    let file = env.write("two.yaml", &yaml);
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
    // The output of an unselected stage was never set: null, as Harness
    // renders it, with a warning naming the step and the reference.
    assert!(text.contains("use | tag null"), "{text}");
    let err = run_support::stderr(&only);
    assert!(
        err.contains("step use") && err.contains("steps.make.output.outputVariables.TAG"),
        "{err}"
    );
    assert_eq!(only.status.code(), Some(0));
}

#[test]
fn the_library_api_runs_a_pipeline() {
    let Some(env) = setup("library_api", true) else {
        return;
    };
    let file = env.write(
        "p.yaml",
        &pipeline(&run_step(
            "lib",
            "echo from-the-library > /harness/lib.txt; exit 3",
        )),
    );
    let options = corral::runner::RunOptions {
        store: Some(env.store.clone()),
        workspace: Some(env.workspace.clone()),
        config_file: Some("/dev/null".into()),
        registry_mirrors: env.mirror().into_iter().collect(),
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
    let yaml = pipeline(&run_step("slow", "sleep 60")).replace(
        "        type: CI\n",
        "        type: CI\n        timeout: 2s\n",
    );
    let file = env.write("p.yaml", &yaml);
    // Warm the image: the stage's timeout counts its pulls too.
    env.pull("busybox");
    let out = env.run(&file, &[]);
    assert_eq!(out.status.code(), Some(124));
    assert_eq!(row(&out, "slow")[3], "Timeout");
}

#[test]
fn offline_uses_stored_images_and_names_a_missing_one() {
    let Some(env) = setup("offline_run", true) else {
        return;
    };
    let file = env.write("p.yaml", &pipeline(&run_step("hi", "echo offline works")));
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

/// Every host user can read any process's argv (`ps`): a secret in a
/// step's command must not be in one, nor in any file left on disk.
#[test]
fn a_secret_in_a_command_is_in_no_process_argv() {
    let Some(env) = setup("secret_not_in_argv", false) else {
        return;
    };
    let secret = "s3cret-in-argv-4711";
    let file = env.write(
        "p.yaml",
        &pipeline(&step(
            "Run",
            "uses_secret",
            None,
            "X=\"<+secrets.getValue(\"tok\")>\"\ntouch /harness/started\nfor i in $(seq 600); do [ -e /harness/scanned ] && break; sleep 0.1; done\necho \"length ${#X}\"",
        )),
    );
    let child = env
        .command(&file)
        .args(["--secret", "tok=env:TEST_TOK"])
        .env("TEST_TOK", secret)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        run_support::eventually(60, || env.ws("started").exists()),
        "the step started"
    );
    let mut seen = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(secret) {
            seen.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    std::fs::write(env.ws("scanned"), "").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = stdout(&out);
    eprintln!("{text}");
    assert_eq!(out.status.code(), Some(0));
    assert!(text.contains(&format!("uses_secret | length {}", secret.len())));
    assert!(seen.is_empty(), "the secret is in argv: {seen:?}");
    assert!(ps.status.success());
    assert!(!String::from_utf8_lossy(&ps.stdout).contains(secret));
    // Nor in a file of the run (logs are masked; the script lived in memory).
    let mut stack = vec![env.dir.path().to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => {
                    let data = std::fs::read(&path).unwrap_or_default();
                    assert!(
                        !String::from_utf8_lossy(&data).contains(secret),
                        "{} holds the secret",
                        path.display()
                    );
                }
                _ => {}
            }
        }
    }
}
