//! `corral validate` on the seed pipelines and on a corpus of broken files:
//! exit code, `file:line:col` and a key phrase of each message.
mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

fn validate(file: &Path) -> Output {
    let store = common::tempdir();
    common::corral(store.path())
        .arg("validate")
        .arg(file)
        .output()
        .expect("run corral")
}

fn pipelines() -> PathBuf {
    common::testdata().join("pipelines")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn seed_pipelines_validate_as_written() {
    for name in ["seed-cloud.yaml", "seed-k8s.yaml"] {
        let out = validate(&pipelines().join(name));
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{name}: {text}");
        assert!(
            text.contains("valid: 1 stage, 2 steps (0 warnings)"),
            "{name}: {text}"
        );
    }
}

#[test]
fn unknown_fields_warn_but_validate() {
    let out = validate(&pipelines().join("warn-unknown-field.yaml"));
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("warn-unknown-field.yaml:19:21: warning: unknown field `imagePulPolicy`"),
        "{text}"
    );
    assert!(
        text.contains("hint: did you mean `imagePullPolicy`?"),
        "{text}"
    );
    assert!(
        text.contains(
            "at: pipeline.stages[0].stage.spec.execution.steps[0].step.spec.imagePulPolicy"
        ),
        "{text}"
    );
}

/// (file in bad/, line, column, phrase of the error message)
const BAD: &[(&str, usize, usize, &str)] = &[
    (
        "alias-bomb.yaml",
        5,
        45,
        "expands to more than 100000 nodes",
    ),
    (
        "bad-failure-error.yaml",
        19,
        34,
        "`Timeot` is not a failure type",
    ),
    (
        "bad-identifier.yaml",
        16,
        31,
        "`my-step` is not a valid identifier",
    ),
    (
        "bad-memory.yaml",
        23,
        33,
        "memory limit `500MB` is not a valid quantity",
    ),
    ("bad-timeout.yaml", 17, 28, "`10x` is not a duration"),
    (
        "deep-nesting.yaml",
        2,
        264,
        "nesting deeper than 100 levels",
    ),
    (
        "duplicate-stage-id.yaml",
        23,
        21,
        "duplicate stage identifier `build` (first used at line 7)",
    ),
    (
        "duplicate-step-id.yaml",
        24,
        31,
        "duplicate step identifier `test` (first used at line 16)",
    ),
    ("empty-steps.yaml", 12, 20, "has no steps"),
    ("empty.yaml", 1, 1, "the file is empty"),
    (
        "entrypoint-on-run.yaml",
        21,
        21,
        "`entrypoint` is only allowed on Background steps",
    ),
    (
        "matrix-exclude-unknown-axis.yaml",
        21,
        27,
        "`exclude` names `nod`, which is not a matrix axis",
    ),
    (
        "missing-step-identifier.yaml",
        14,
        19,
        "missing the required field `identifier`",
    ),
    ("no-stages.yaml", 4, 11, "the pipeline has no stages"),
    ("not-a-pipeline.yaml", 1, 1, "this is not a pipeline"),
    ("not-utf8.yaml", 20, 38, "not valid UTF-8"),
    (
        "output-vars-on-background.yaml",
        20,
        21,
        "`outputVariables` is only allowed on Run steps",
    ),
    ("parallelism-zero.yaml", 18, 21, "yields no iterations"),
    (
        "port-not-number.yaml",
        19,
        23,
        "host port `http` is not a port number",
    ),
    (
        "port-out-of-range.yaml",
        19,
        23,
        "host port `70000` is not a port number",
    ),
    (
        "pull-policy-typo.yaml",
        21,
        38,
        "`IfNotPresnt` is not a valid image pull policy",
    ),
    ("run-nothing.yaml", 18, 21, "has nothing to run"),
    ("shell-typo.yaml", 19, 28, "`bash` is not a valid shell"),
    (
        "stage-type-deployment.yaml",
        8,
        15,
        "stage type `Deployment` is not supported by corral",
    ),
    (
        "stage-when-typo.yaml",
        10,
        27,
        "`Succes` is not a valid pipelineStatus",
    ),
    (
        "step-template.yaml",
        16,
        19,
        "step templates are not supported by corral",
    ),
    (
        "step-type-plugin.yaml",
        14,
        25,
        "step type `Plugin` is not supported by corral",
    ),
    ("syntax-error.yaml", 19, 26, "invalid YAML"),
    ("tab-indent.yaml", 19, 1, "tab character in indentation"),
    ("two-documents.yaml", 21, 1, "more than one YAML document"),
    (
        "unknown-failure-action.yaml",
        21,
        33,
        "`Retyr` is not a failure strategy action",
    ),
    (
        "unsupported-failure-action.yaml",
        21,
        33,
        "action `StageRollback` is not supported by corral",
    ),
    (
        "when-without-status.yaml",
        18,
        21,
        "missing the required field `stageStatus`",
    ),
];

/// Hints that the table's files must show (the "did you mean" cases).
const HINTS: &[(&str, &str)] = &[
    ("shell-typo.yaml", "did you mean `Bash`?"),
    ("pull-policy-typo.yaml", "did you mean `IfNotPresent`?"),
    ("unknown-failure-action.yaml", "did you mean `Retry`?"),
    ("bad-failure-error.yaml", "did you mean `Timeout`?"),
    ("bad-identifier.yaml", "did you mean `my_step`?"),
    ("matrix-exclude-unknown-axis.yaml", "did you mean `node`?"),
    ("stage-when-typo.yaml", "did you mean `Success`?"),
];

#[test]
fn every_broken_file_fails_at_its_line() {
    let dir = pipelines().join("bad");
    let mut listed: Vec<&str> = BAD.iter().map(|(f, ..)| *f).collect();
    listed.sort_unstable();
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    present.sort_unstable();
    assert_eq!(listed, present, "every file in bad/ needs a row in BAD");

    for (file, line, column, phrase) in BAD {
        let path = dir.join(file);
        let out = validate(&path);
        let text = stdout(&out);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{file} should be invalid: {text}"
        );
        let want = format!("{}:{line}:{column}: error: ", path.display());
        let hit = text
            .lines()
            .find(|l| l.starts_with(&want))
            .unwrap_or_else(|| panic!("{file}: no error at {line}:{column}:\n{text}"));
        assert!(hit.contains(phrase), "{file}: `{hit}` lacks `{phrase}`");
        assert!(
            text.contains(": invalid: "),
            "{file}: no summary line: {text}"
        );
        assert!(
            !text.contains("panicked") && !text.contains("Error {"),
            "{file}: {text}"
        );
    }
    for (file, hint) in HINTS {
        let text = stdout(&validate(&dir.join(file)));
        let shown = text
            .lines()
            .any(|l| l.trim_start().starts_with("hint:") && l.contains(hint));
        assert!(shown, "{file}: no hint `{hint}`: {text}");
    }
}

#[test]
fn an_oversized_file_is_refused_without_reading_it_all() {
    let dir = common::tempdir();
    let path = dir.path().join("huge.yaml");
    let line = "# padding padding padding padding padding padding padding padding\n";
    let text = line.repeat((50 << 20) / line.len());
    std::fs::write(&path, text).unwrap();
    let out = validate(&path);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(":1:1: error: the file is larger than 10 MiB"),
        "{text}"
    );
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let out = validate(Path::new("/nonexistent/pipeline.yaml"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("failed to read pipeline file /nonexistent/pipeline.yaml"),
        "{err}"
    );
}
