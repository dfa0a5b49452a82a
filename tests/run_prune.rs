//! `corral prune --runs`: the directories of finished runs go, with what
//! steps left in their workspaces as other users or without write
//! permission; a run still going on is left alone.

#![allow(clippy::unwrap_used)]

mod common;
mod run_support;

use std::os::fd::AsRawFd;

use run_support::{pipeline, run_step, setup, stdout};

fn prune_runs(store: &std::path::Path) -> String {
    let out = common::corral(store)
        .args(["prune", "--runs"])
        .output()
        .unwrap();
    common::assert_success(&out, "corral prune --runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn runs_in(store: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store.join("runs"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn finished_runs_go_with_files_of_other_users_and_running_ones_stay() {
    let Some(env) = setup("prune_runs", true) else {
        return;
    };
    // A directory we may not write into, holding one we may not enter.
    let mut steps = run_step(
        "locked",
        "mkdir -p /harness/ro/deep && touch /harness/ro/deep/f && chmod 000 /harness/ro/deep && chmod 555 /harness/ro",
    );
    let single_id = common::single_id_mapping(&env.store);
    if !single_id {
        // Files of another user: a subuid on the host.
        steps += &(run_step(
            "other_user",
            "mkdir /harness/app && echo x >/harness/app/f && chmod 700 /harness/app",
        ) + "      runAsUser: 1000\n");
    }
    let file = env.write("p.yaml", &pipeline(&steps));
    let out = env.run_own(&file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let finished = runs_in(&env.store);
    assert_eq!(finished.len(), 1, "{finished:?}");
    let workspace = env.store.join("runs").join(&finished[0]).join("workspace");
    assert!(std::fs::read_dir(&workspace).unwrap().next().is_some());

    // A run going on: its lock is held.
    let live = env.store.join("runs").join("20990101-000000-live");
    std::fs::create_dir_all(&live).unwrap();
    let lock = std::fs::File::create(live.join("lock")).unwrap();
    // SAFETY: flock on an fd we own.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_SH) }, 0);

    let text = prune_runs(&env.store);
    assert!(
        text.contains("removed 1 finished runs (1 still running)"),
        "{text}"
    );
    assert_eq!(
        runs_in(&env.store),
        vec!["20990101-000000-live".to_string()]
    );

    drop(lock);
    let text = prune_runs(&env.store);
    assert!(
        text.contains("removed 1 finished runs (0 still running)"),
        "{text}"
    );
    assert!(runs_in(&env.store).is_empty());
}
