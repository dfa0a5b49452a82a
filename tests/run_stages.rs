//! `corral run` with several stages: a `parallel:` stage group runs its
//! stages at the same time, each in its own sandbox stage.

#![allow(clippy::unwrap_used)]

mod common;
mod run_support;

use run_support::{indent, meet, pipeline_of, row, run_step, setup, stage, stdout};

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
