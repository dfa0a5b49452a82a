//! `corral run` with several stages: a `parallel:` stage group runs its
//! stages at the same time, each in its own sandbox stage.

#![allow(clippy::unwrap_used)]

mod common;
mod run_support;

use run_support::{row, setup, stdout};

fn stage(id: &str, me: &str, other: &str) -> String {
    format!(
        r#"          - stage:
              name: {id}
              identifier: {id}
              type: CI
              spec:
                execution:
                  steps:
                    - step:
                        type: Run
                        name: wait
                        identifier: wait_{id}
                        spec:
                          image: busybox
                          shell: Sh
                          command: touch /harness/{me}.started; for i in $(seq 200); do if [ -e /harness/{other}.started ]; then touch /harness/{me}.saw; break; fi; sleep 0.05; done
"#
    )
}

#[test]
fn a_parallel_stage_group_runs_its_stages_at_once() {
    let Some(env) = setup("parallel_stages", true) else {
        return;
    };
    let yaml = format!(
        "pipeline:\n  name: p\n  identifier: p\n  stages:\n    - parallel:\n{}{}    - stage:\n        name: after\n        identifier: after\n        type: CI\n        spec:\n          execution:\n            steps:\n              - step:\n                  type: Run\n                  name: last\n                  identifier: last\n                  spec:\n                    image: busybox\n                    shell: Sh\n                    command: ls /harness/a.saw /harness/b.saw\n",
        stage("one", "a", "b"),
        stage("two", "b", "a")
    );
    let file = env.write("p.yaml", &yaml);
    let out = env.run(&file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(env.ws("a.saw").exists() && env.ws("b.saw").exists());
    assert_eq!(row(&out, "last")[3], "Success");
}
