//! `corral run` with several stages: a `parallel:` stage group runs its
//! stages at the same time, each in its own sandbox stage.

#![allow(clippy::unwrap_used)]

mod common;
mod run_support;

use run_support::{
    host_step, indent, meet, pipeline_of, retry_twice, row, run_step, setup, stage, stdout,
    with_when, IGNORE,
};

#[test]
fn a_parallel_stage_group_runs_its_stages_at_once() {
    let Some(env) = setup("parallel_stages", true) else {
        return;
    };
    let group = stage("one", &run_step("wait_one", &meet("a", "b")))
        + &stage("two", &run_step("wait_two", &meet("b", "a")));
    let after = stage(
        "after",
        &run_step("last", "ls /harness/a.saw /harness/b.saw"),
    );
    let yaml = pipeline_of(&format!("- parallel:\n{}{after}", indent(&group, 4)));
    let file = env.write("p.yaml", &yaml);
    let out = env.run(&file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(env.ws("a.saw").exists() && env.ws("b.saw").exists());
    assert_eq!(row(&out, "last")[3], "Success");
}

#[test]
fn stage_and_step_statuses_resolve_when_they_are_used() {
    let Some(env) = setup("status_expressions", false) else {
        return;
    };
    let first = stage("first", &host_step("ok", "echo first ran", ""));
    let retry = &retry_twice("MarkAsFailure");
    let second = with_when(
        &stage(
            "second",
            &(host_step("flaky", "exit 3", IGNORE)
                + &host_step(
                    "retried",
                    "if [ -e /harness/tried ]; then exit 0; fi; touch /harness/tried; exit 1",
                    retry,
                )
                + &host_step(
                    "report",
                    "echo \"flaky=<+steps.flaky.status> retried=<+execution.steps.retried.status>/<+steps.retried.retryCount> first=<+pipeline.stages.first.status> ok=<+pipeline.stages.first.spec.execution.steps.ok.status>\"",
                    "",
                )
                + &host_step(
                    "if_ignored",
                    "echo the flaky step was ignored",
                    "    when:\n      stageStatus: Success\n      condition: '<+steps.flaky.status> == \"IGNORE_FAILED\"'\n",
                )
                + &host_step(
                    "if_succeeded",
                    "echo never",
                    "    when:\n      stageStatus: Success\n      condition: '<+steps.flaky.status> == \"SUCCEEDED\"'\n",
                )),
        ),
        "      pipelineStatus: Success\n      condition: <+pipeline.stages.first.status> == \"SUCCEEDED\"\n",
    );
    let third = with_when(
        &stage("third", &host_step("on_failure", "echo never", "")),
        "      pipelineStatus: All\n      condition: <+pipeline.stages.first.status> == \"FAILED\"\n",
    );
    let fourth = stage(
        "fourth",
        &host_step(
            "summary",
            "echo \"second=<+pipeline.stages.second.status> third=<+stages.third.status> skipped_step=<+pipeline.stages.third.spec.execution.steps.on_failure.status>\"",
            "",
        ),
    );
    let yaml = pipeline_of(&(first + &second + &third + &fourth));
    let file = env.write("p.yaml", &yaml);
    let out = env.run(&file, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let said = |step: &str, what: &str| {
        text.lines()
            .any(|l| l.starts_with(step) && l.contains(&format!("| {what}")))
    };
    assert!(
        said(
            "report",
            "flaky=IGNORE_FAILED retried=SUCCEEDED/1 first=SUCCEEDED ok=SUCCEEDED"
        ),
        "{text}"
    );
    assert!(said("if_ignored", "the flaky step was ignored"), "{text}");
    assert_eq!(row(&out, "if_succeeded")[3], "Skipped");
    assert!(
        said("third", "stage skipped: its when.condition is false"),
        "{text}"
    );
    // A stage with an ignored failure is IGNORE_FAILED (Harness's
    // calculateStatus); the steps of a skipped stage are SKIPPED.
    assert!(
        said(
            "summary",
            "second=IGNORE_FAILED third=SKIPPED skipped_step=SKIPPED"
        ),
        "{text}"
    );
}

#[test]
fn a_status_of_what_has_not_run_yet_fails_the_step_naming_it() {
    let Some(env) = setup("status_not_yet", false) else {
        return;
    };
    let a = stage(
        "a",
        &(run_support::step("Run", "slow", None, "sleep 20")
            + "    timeout: 1s\n"
            + &host_step(
                "after",
                "echo \"slow=<+steps.slow.status>\"",
                "    when:\n      stageStatus: All\n",
            )
            + &host_step(
                "peek",
                "echo <+pipeline.stages.b.status>",
                "    when:\n      stageStatus: All\n",
            )),
    );
    let b = with_when(
        &stage(
            "b",
            &host_step("last", "echo \"a=<+pipeline.stages.a.status>\"", ""),
        ),
        "      pipelineStatus: All\n",
    );
    let file = env.write("p.yaml", &pipeline_of(&(a + &b)));
    let out = env.run(&file, &[]);
    let text = stdout(&out);
    let said = |step: &str, what: &str| {
        text.lines()
            .any(|l| l.starts_with(step) && l.contains(&format!("| {what}")))
    };
    assert!(said("after", "slow=EXPIRED"), "{text}");
    assert_eq!(row(&out, "peek")[3], "Failed");
    assert!(
        text.lines().any(|l| l.starts_with("peek")
            && l.contains("p.yaml:")
            && l.contains(
                "`pipeline.stages.b.status` has no value yet: stage `b` has not run yet"
            )),
        "{text}"
    );
    assert!(said("last", "a=FAILED"), "{text}");
    assert_eq!(out.status.code(), Some(124), "{text}");
}
