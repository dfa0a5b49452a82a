//! Realistic pipelines (tests/fixtures/qa/*.yaml, modelled on real Harness
//! ones) run end to end: Background services from Debian's packages (redis
//! in the fixture image library/redis:7), step groups, parallel blocks,
//! failure strategies, output variables and conditions. They share one
//! store, so each image is pulled once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod run_support;

use std::process::Output;

use run_support::{row, setup, stderr, stdout, Env};

/// `corral run` of `tests/fixtures/qa/NAME` with its own workspace.
fn run(env: &Env, name: &str, args: &[&str]) -> Output {
    let file = common::testdata().join("qa").join(name);
    eprintln!("=== {name} {args:?}");
    env.run_own(&file, args)
}

/// Whether step `step` printed the line `text` (`step | text`).
fn said(out: &Output, step: &str, text: &str) -> bool {
    stdout(out).lines().any(|l| {
        l.split_once(" | ")
            .is_some_and(|(who, what)| who.trim() == step && what == text)
    })
}

/// The status column of `step`'s summary row (`-` for a stage's own row).
fn status(out: &Output, step: &str) -> String {
    row(out, step)[3].clone()
}

/// Collects what went wrong instead of stopping at the first pipeline.
#[derive(Default)]
struct Check(Vec<String>);

impl Check {
    fn that(&mut self, pipeline: &str, ok: bool, what: &str) {
        if !ok {
            self.0.push(format!("{pipeline}: {what}"));
        }
    }
}

#[test]
fn qa_pipelines_run_end_to_end() {
    let Some(env) = setup("qa_pipelines", true) else {
        return;
    };
    let mut check = Check::default();

    let p = "redis-cache.yaml";
    let out = run(&env, p, &[]);
    check.that(p, out.status.code() == Some(0), "exit 0");
    check.that(p, said(&out, "seed_wait", "redis is up"), "redis came up");
    check.that(p, said(&out, "seed_load", "loaded 3 keys"), "3 keys loaded");
    check.that(
        p,
        said(&out, "read_localhost", "value 2"),
        "read by localhost",
    );
    check.that(p, said(&out, "read_by_name", "value 3"), "read by step id");
    check.that(
        p,
        said(&out, "verify", "count ok: 3"),
        "the output variable in the condition",
    );
    check.that(
        p,
        status(&out, "cache") == "Running at teardown",
        "cache ran to the end",
    );

    let p = "parallel-groups-services.yaml";
    let out = run(&env, p, &[]);
    check.that(p, out.status.code() == Some(0), "exit 0");
    check.that(
        p,
        said(&out, "Run_3", "sg1=one sg2=two"),
        "both services reached",
    );
    check.that(
        p,
        said(&out, "Run_3", "sg1 was here"),
        "stage sharedPaths from sg1",
    );
    check.that(
        p,
        said(&out, "Run_3", "sg2 was here"),
        "stage sharedPaths from sg2",
    );
    for svc in ["sg1_Background_1", "sg2_Background_2"] {
        check.that(p, status(&out, svc) == "Running at teardown", svc);
    }

    let p = "failure-strategies.yaml";
    let out = run(&env, p, &[]);
    check.that(p, out.status.code() == Some(3), "exit 3 (the package step)");
    for (step, want) in [
        ("flaky", "Success (3 attempts)"),
        ("lint", "Ignored"),
        ("slow", "Success"),
        ("optional_coverage", "Success"),
        ("report", "Success"),
        ("notify", "Skipped"),
        ("package", "Failed"),
        ("never", "Skipped"),
        ("cleanup", "Success"),
        ("-", "Skipped"),
        ("triage", "Success"),
    ] {
        let got = status(&out, step);
        check.that(p, got == want, &format!("{step}: {got}, want {want}"));
    }
    check.that(p, row(&out, "-")[0] == "Publish", "Publish skipped");
    check.that(p, said(&out, "report", "attempts=3"), "three attempts");
    check.that(
        p,
        said(&out, "cleanup", "cleanup after Package"),
        "cleanup ran",
    );
    check.that(
        p,
        said(&out, "triage", "package was FAILED"),
        "triage sees FAILED",
    );
    check.that(
        p,
        stderr(&out).contains(
            "stage Publish: skipped: an earlier stage failed (when.pipelineStatus: Success",
        ),
        "Publish says why",
    );

    let p = "outputs-matrix-conditions.yaml";
    let out = run(&env, p, &[]);
    check.that(p, out.status.code() == Some(0), "exit 0");
    let built = stdout(&out)
        .lines()
        .filter(|l| l.contains(" | build 2.4.") && l.contains("-beta for "))
        .count();
    check.that(p, built == 3, &format!("3 matrix builds, saw {built}"));
    check.that(p, said(&out, "count", "artifacts: 3"), "3 artifacts");
    check.that(
        p,
        stdout(&out).contains("-beta with 3 artifacts"),
        "verify read the outputs of another stage",
    );
    check.that(
        p,
        status(&out, "stable_only") == "Skipped",
        "stable_only skipped",
    );
    check.that(p, row(&out, "-")[0] == "publish", "publish stage skipped");
    let out = run(
        &env,
        p,
        &["--var", "channel=stable", "--var", "publish=true"],
    );
    check.that(p, out.status.code() == Some(0), "exit 0 with --var");
    check.that(
        p,
        said(&out, "stable_only", "stable checks"),
        "stable_only ran",
    );
    check.that(
        p,
        stdout(&out).lines().any(|l| {
            l.starts_with("publish")
                && l.contains("| publishing 2.4.")
                && l.ends_with("-stable to stable")
        }),
        "publish used both outputs",
    );

    let p = "services-crash-abort.yaml";
    let out = run(&env, p, &[]);
    check.that(p, out.status.code() == Some(5), "exit 5 (deploy)");
    check.that(p, said(&out, "e2e_tests", "site ok"), "site served");
    check.that(
        p,
        said(&out, "cache_check", "cache down"),
        "the crashed cache is down",
    );
    check.that(
        p,
        said(
            &out,
            "broken_redis",
            "background step exited with code 1 while its stage runs; its last lines:",
        ),
        "the crash is reported",
    );
    let broken = row(&out, "broken_redis");
    check.that(
        p,
        broken[3] == "Failed" && broken[4] == "1",
        &format!("broken_redis row {broken:?}"),
    );
    check.that(
        p,
        status(&out, "web") == "Running at teardown",
        "web ran to the end",
    );
    check.that(
        p,
        status(&out, "smoke") == "Skipped",
        "smoke skipped after Abort",
    );
    check.that(
        p,
        row(&out, "-")[0] == "promote",
        "promote skipped after Abort",
    );

    assert!(check.0.is_empty(), "failed checks:\n{}", check.0.join("\n"));
}
