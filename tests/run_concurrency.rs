//! The copies a looping strategy makes run at the same time, but never
//! more than its `maxConcurrency`: on steps (`matrix`), step groups
//! (`repeat` with the key beside it, as real pipelines write it) and
//! stages (`parallelism`).
//!
//! Every copy appends `start I` and `end I` to a shared file. Copy I ends
//! only once copy I+CAP-1 has started, so with the cap honoured the copies
//! overlap exactly CAP at a time (and the run never stalls); a run that
//! ignored the cap would show more `start`s than CAP before an `end`.

#![allow(clippy::unwrap_used)]

mod common;
mod run_support;

use run_support::{indent, pipeline, setup, stdout, Env};

const COPIES: usize = 4;
const CAP: usize = 2;

/// The command of copy `index` (an expression giving the iteration).
fn copy_command(index: &str) -> String {
    let wait_for = format!("$(( {index} + {CAP} > {COPIES} ? {COPIES} : {index} + {CAP} ))");
    format!(
        "f=/harness/marks; echo start {index} >> $f; want={wait_for}; i=0; while [ $(grep -c start $f) -lt $want ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; echo end {index} >> $f"
    )
}

/// The `- step:` item (column 0) `copy`, running `copy_command(index)`
/// on the host.
fn copy_step(index: &str) -> String {
    format!(
        "- step:\n    type: Run\n    name: copy\n    identifier: copy\n    spec:\n      shell: Sh\n      command: '{}'\n",
        copy_command(index)
    )
}

/// The most copies running at once according to the marks file, and the
/// number of copies that ran.
fn overlap(env: &Env) -> (usize, usize) {
    let marks = std::fs::read_to_string(env.ws("marks")).unwrap();
    let (mut running, mut most, mut started) = (0usize, 0usize, 0usize);
    for line in marks.lines() {
        if line.starts_with("start") {
            running += 1;
            started += 1;
            most = most.max(running);
        } else if line.starts_with("end") {
            running -= 1;
        }
    }
    (most, started)
}

fn run_and_check(test: &str, yaml: &str) {
    let Some(env) = setup(test, false) else {
        return;
    };
    let file = env.write("p.yaml", yaml);
    let out = env.run(&file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let (most, started) = overlap(&env);
    assert_eq!(started, COPIES, "every copy ran");
    assert_eq!(
        most,
        CAP,
        "copies ran {CAP} at a time:\n{}",
        std::fs::read_to_string(env.ws("marks")).unwrap()
    );
}

#[test]
fn matrix_step_copies_respect_max_concurrency() {
    let step = format!(
        "{}    strategy:\n      matrix:\n        n: [a, b, c, d]\n        maxConcurrency: {CAP}\n",
        copy_step("<+strategy.iteration>")
    );
    run_and_check("matrix_cap", &pipeline(&step));
}

#[test]
fn step_group_copies_respect_max_concurrency_beside_repeat() {
    let group = format!(
        r#"- stepGroup:
    name: g
    identifier: g
    strategy:
      repeat:
        items: ["0", "1", "2", "3"]
      maxConcurrency: {CAP}
    steps:
{}"#,
        indent(&copy_step("<+repeat.item>"), 6)
    );
    run_and_check("group_cap", &pipeline(&group));
}

#[test]
fn stage_copies_respect_max_concurrency() {
    let yaml = format!(
        r#"pipeline:
  name: t
  identifier: t
  stages:
    - stage:
        name: s
        identifier: s
        type: CI
        strategy:
          parallelism: {COPIES}
          maxConcurrency: {CAP}
        spec:
          execution:
            steps:
{}"#,
        indent(&copy_step("<+strategy.iteration>"), 14)
    );
    run_and_check("stage_cap", &yaml);
}

#[test]
fn a_looped_stage_in_a_parallel_block_runs_beside_its_siblings() {
    // `other` waits until a copy of `looped` has started: it only ends
    // well when the copies run beside it, not after it.
    let yaml = format!(
        r#"pipeline:
  name: t
  identifier: t
  stages:
    - parallel:
        - stage:
            name: other
            identifier: other
            type: CI
            spec:
              execution:
                steps:
                  - step:
                      type: Run
                      name: wait
                      identifier: wait
                      spec:
                        shell: Sh
                        command: 'i=0; until grep -q start /harness/marks 2>/dev/null; do i=$((i+1)); [ $i -lt 300 ] || exit 7; sleep 0.1; done'
        - stage:
            name: looped
            identifier: looped
            type: CI
            strategy:
              repeat:
                times: {COPIES}
              maxConcurrency: {CAP}
            spec:
              execution:
                steps:
{}"#,
        indent(&copy_step("<+strategy.iteration>"), 18)
    );
    run_and_check("looped_in_parallel", &yaml);
}
