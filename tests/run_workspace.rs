//! `corral run` workspaces and run numbers: each stage instance gets its
//! own `/harness` and output files, `cloneCodebase` copies the git
//! checkout into it, `<+pipeline.sequenceId>` counts the runs; the
//! terminal prefix names the stage when stage instances run at once.

#![allow(clippy::unwrap_used)]

mod common;
mod run_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use run_support::{
    host_step, pipeline_of, setup, stage, stderr, stdout, with_stage_keys, Env, IGNORE,
};

/// The `workspace:` directory corral names at the end of a run.
fn workspace_root(out: &std::process::Output) -> PathBuf {
    let err = stderr(out);
    let line = err
        .lines()
        .find_map(|l| l.strip_prefix("workspace:"))
        .expect("corral names the workspace");
    let path = line.trim();
    PathBuf::from(
        path.split(' ')
            .next()
            .unwrap()
            .trim_end_matches("/<stage-id>"),
    )
}

/// A stage `s` looped over `a` and `b`, both copies at once. Each copy
/// writes its item to `/harness/who` and waits (3 s at most) for the
/// other copy to have written too before reading it back; then step `r`
/// reads the output `V` that step `w` set to the item.
fn looped_pipeline() -> String {
    let steps = host_step(
        "w",
        "V=<+repeat.item>; echo $V > /harness/who; touch /harness/$V.wrote; \
         for i in $(seq 60); do ls /harness/*.wrote | grep -qv /$V.wrote && break; sleep 0.05; done; \
         echo \"copy $V sees $(cat /harness/who)\"",
        "      outputVariables:\n        - name: V\n",
    ) + &host_step(
        "r",
        "echo 'copy <+repeat.item> got <+steps.w.output.outputVariables.V>'",
        "",
    );
    let looped = with_stage_keys(
        &stage("s", &steps),
        "    strategy:\n      repeat:\n        items: [a, b]\n",
    );
    pipeline_of(&looped)
}

#[test]
fn each_copy_of_a_looped_stage_has_its_own_workspace_and_outputs() {
    let Some(env) = setup("own_workspaces", false) else {
        return;
    };
    let file = env.write("p.yaml", &looped_pipeline());
    let out = env.run_own(&file, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    for item in ["a", "b"] {
        assert!(
            text.contains(&format!("copy {item} sees {item}\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!("copy {item} got {item}\n")),
            "{text}"
        );
    }
    let root = workspace_root(&out);
    for (copy, item) in [("s_0", "a"), ("s_1", "b")] {
        let ws = root.join(copy);
        assert_eq!(
            std::fs::read_to_string(ws.join("who")).unwrap(),
            format!("{item}\n")
        );
        // `.corral/outputs/<execution-id>/<stage-id>/<step>.env`
        let runs: Vec<_> = std::fs::read_dir(ws.join(".corral/outputs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(runs.len(), 1, "{runs:?}");
        let outputs = runs[0].join(copy).join("w.env");
        assert!(outputs.is_file(), "{} is missing", outputs.display());
    }
}

#[test]
fn copies_sharing_a_workspace_dir_keep_their_own_outputs() {
    let Some(env) = setup("shared_workspace_outputs", false) else {
        return;
    };
    // A file someone else left under .corral/outputs stays as it was.
    let other = env.ws(".corral/outputs/s_0");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("w.env"), "V=other\n").unwrap();
    let file = env.write("p.yaml", &looped_pipeline());
    for round in 0..2 {
        let out = env.run(&file, &[]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{text}");
        for item in ["a", "b"] {
            assert!(
                text.contains(&format!("copy {item} got {item}\n")),
                "{text}"
            );
        }
        if round == 0 {
            // The run's own output files are gone, the other file is not.
            let left: Vec<_> = std::fs::read_dir(env.ws(".corral/outputs"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(left, ["s_0"]);
            assert_eq!(
                std::fs::read_to_string(other.join("w.env")).unwrap(),
                "V=other\n"
            );
            std::fs::remove_dir_all(env.ws(".corral")).unwrap();
        } else {
            // Nothing of corral's is left in the user's directory.
            assert!(!env.ws(".corral").exists());
        }
    }
}

fn have_git() -> bool {
    Command::new("git").arg("--version").output().is_ok()
}

fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "{script}: {out:?}");
}

fn clone_stage(steps: &str) -> String {
    pipeline_of(&stage("s", steps).replace("cloneCodebase: false", "cloneCodebase: true"))
}

#[test]
fn clone_codebase_copies_the_checkout_with_its_edits_and_git() {
    let Some(env) = setup("clone_codebase", false) else {
        return;
    };
    if !have_git() {
        common::skip("clone_codebase", "git is not installed on this host");
        return;
    }
    let repo = env.dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let command = "cat tracked.txt; ls -l tool.sh | cut -c1-10; readlink link; \
                   git status --porcelain; git log -1 --format=%s";
    std::fs::write(
        repo.join("p.yaml"),
        clone_stage(&host_step("look", command, "")),
    )
    .unwrap();
    sh(
        &repo,
        "git init -q -b main . && echo committed > tracked.txt && printf '#!/bin/sh\\n' > tool.sh \
         && chmod 750 tool.sh && ln -s tracked.txt link && git add -A && git commit -qm 'the commit' \
         && echo edited > tracked.txt && echo junk > untracked.txt",
    );
    let out = env.run_own(&repo.join("p.yaml"), &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    for want in [
        "look | edited\n",
        "look | -rwxr-x---\n",
        "look | tracked.txt\n",
        "look |  M tracked.txt\n",
        "look | the commit\n",
    ] {
        assert!(text.contains(want), "{want:?} in\n{text}");
    }
    // Untracked files stay out; corral's own directory is not reported.
    assert!(!text.contains("untracked.txt"), "{text}");
    assert!(!text.contains(".corral"), "{text}");
    assert!(!workspace_root(&out).join("s/untracked.txt").exists());
}

#[test]
fn clone_codebase_outside_a_checkout_warns_and_starts_empty() {
    let Some(env) = setup("clone_no_checkout", false) else {
        return;
    };
    let file = env.write(
        "p.yaml",
        &clone_stage(&host_step(
            "look",
            "ls -A /harness | grep -v '^.corral$' | wc -l",
            "",
        )),
    );
    let out = env.run_own(&file, &[]);
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{text}{err}");
    assert!(text.contains("look | 0\n"), "{text}");
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("cloneCodebase"))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].contains("stage s"), "{err}");
    assert!(
        warnings[0].contains(&format!("{}:", file.display())),
        "{err}"
    );
    assert!(warnings[0].contains("not in a git checkout"), "{err}");
}

fn sequence_pipeline(id: &str) -> String {
    pipeline_of(&stage(
        "s",
        &host_step(
            "n",
            "echo \"seq=<+pipeline.sequenceId> build=$HARNESS_BUILD_ID drone=$DRONE_BUILD_NUMBER\"",
            "",
        ),
    ))
    .replace("identifier: t\n", &format!("identifier: {id}\n"))
}

fn sequence_of(env: &Env, file: &Path) -> u64 {
    let out = env.run(file, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("n | seq="))
        .unwrap_or_else(|| panic!("no sequence line in {text}"));
    let (seq, rest) = line.split_once(' ').unwrap();
    assert_eq!(rest, format!("build={seq} drone={seq}"), "{line}");
    seq.parse().unwrap()
}

#[test]
fn the_sequence_id_counts_the_runs_of_each_pipeline() {
    let Some(env) = setup("sequence_id", false) else {
        return;
    };
    let first = env.write("p.yaml", &sequence_pipeline("first"));
    let other = env.write("q.yaml", &sequence_pipeline("other"));
    assert_eq!(sequence_of(&env, &first), 1);
    assert_eq!(sequence_of(&env, &first), 2);
    // A dry run counts nothing.
    let dry = env.run(&first, &["--dry-run"]);
    assert_eq!(dry.status.code(), Some(0));
    assert_eq!(sequence_of(&env, &other), 1);
    assert_eq!(sequence_of(&env, &first), 3);
    // Runs at the same time never get the same number.
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let mut cmd = env.command(&first);
            std::thread::spawn(move || cmd.output().unwrap())
        })
        .collect();
    let mut got: Vec<u64> = handles
        .into_iter()
        .map(|h| {
            let out = h.join().unwrap();
            let text = stdout(&out);
            text.lines()
                .find_map(|l| l.strip_prefix("n | seq="))
                .and_then(|l| l.split(' ').next())
                .unwrap_or_else(|| panic!("{text}"))
                .parse()
                .unwrap()
        })
        .collect();
    got.sort_unstable();
    assert_eq!(got, [4, 5, 6]);
}

fn hello_loop(cap: &str) -> String {
    let looped = with_stage_keys(
        &stage("s", &host_step("w", "echo hello <+repeat.item>", "")),
        &format!("    strategy:\n      repeat:\n        items: [a, b]\n{cap}"),
    );
    pipeline_of(&looped)
}

#[test]
fn prefixes_name_the_stage_only_when_stages_run_at_once() {
    let Some(env) = setup("staged_prefixes", false) else {
        return;
    };
    let file = env.write("p.yaml", &hello_loop(""));
    let out = env.run(&file, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("s_0/w | hello a\n"), "{text}");
    assert!(text.contains("s_1/w | hello b\n"), "{text}");
    assert!(text.contains("s_0/w | exited with code 0"), "{text}");
    // One copy at a time: the prefix stays the step's.
    let file = env.write("q.yaml", &hello_loop("      maxConcurrency: 1\n"));
    let out = env.run(&file, &[]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("w | hello a\n"), "{text}");
    assert!(!text.contains("s_0/"), "{text}");
}

#[test]
fn outputs_never_set_render_as_null_with_one_warning() {
    let Some(env) = setup("unset_outputs", false) else {
        return;
    };
    let tag = "      outputVariables:\n        - name: TAG\n";
    let first = stage("first", &host_step("make", "TAG=v9", tag));
    let steps = host_step("bad", "TAG=x; exit 3", tag)
        + IGNORE
        + &host_step("never", "TAG=y", tag)
        + "    when:\n      stageStatus: Success\n      condition: <+stage.identifier> == \"nope\"\n"
        + &host_step(
            "show",
            "echo 'bad=<+steps.bad.output.outputVariables.TAG> never=<+steps.never.output.outputVariables.TAG> first=<+pipeline.stages.first.spec.execution.steps.make.output.outputVariables.TAG> again=<+steps.bad.output.outputVariables.TAG>'",
            "",
        );
    let second = stage("second", &steps);
    let file = env.write("p.yaml", &pipeline_of(&(first + &second)));
    let out = env.run(&file, &["--stage", "second"]);
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{text}{err}");
    assert!(
        text.contains("| bad=null never=null first=null again=null\n"),
        "{text}"
    );
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("is null")).collect();
    assert_eq!(warnings.len(), 3, "one per reference:\n{err}");
    for reference in [
        "steps.bad.output.outputVariables.TAG",
        "steps.never.output.outputVariables.TAG",
        "pipeline.stages.first.spec.execution.steps.make.output.outputVariables.TAG",
    ] {
        assert!(
            warnings
                .iter()
                .any(|w| w.contains(reference) && w.contains("step show")),
            "{reference} in\n{err}"
        );
    }
    // Run in full, the same reference has its value and no warning.
    let out = env.run(&file, &[]);
    let (text, err) = (stdout(&out), stderr(&out));
    assert!(text.contains("first=v9"), "{text}");
    assert!(!err.contains("first.spec.execution.steps.make"), "{err}");
}

#[test]
fn an_output_of_a_step_that_does_not_exist_stays_an_error() {
    let Some(env) = setup("unknown_output_step", false) else {
        return;
    };
    let yaml = pipeline_of(&stage(
        "s",
        &host_step("show", "echo <+steps.ghost.output.outputVariables.TAG>", ""),
    ));
    let file = env.write("p.yaml", &yaml);
    let out = env.run(&file, &[]);
    let (text, err) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{text}{err}");
    assert!(err.contains("unknown step `ghost`"), "{err}");
    assert!(!text.contains("show |"), "{text}");
}
