//! `corral validate` on the real-world Harness pipelines in
//! `shared/corpus/harness-real` (not copied into this repository). Each
//! file's expected outcome was written from reading the file: valid, or
//! the unsupported or broken things named at their lines.
mod common;

use std::path::Path;

enum Expect {
    Valid,
    /// Every error, as (line, column, phrase of the message).
    Errors(&'static [(usize, usize, &'static str)]),
}
use Expect::{Errors, Valid};

const PUSH: &str = "step type `BuildAndPushDockerRegistry` is not supported";

const EXPECTED: &[(&str, Expect)] = &[
    // Background postgres without image or command (the Cloud tab of the doc).
    (
        "001",
        Errors(&[
            (23, 25, "Background step has nothing to run"),
            (35, 25, "Background step has nothing to run"),
        ]),
    ),
    ("002", Valid),
    // `spec: ...` placeholder in the last Run step.
    (
        "003",
        Errors(&[(
            101,
            20,
            "a Run step `spec` must be a mapping, found a scalar",
        )]),
    ),
    ("004", Valid),
    ("005", Valid),
    ("006", Errors(&[(134, 25, PUSH)])),
    (
        "007",
        Errors(&[(48, 25, "step type `Action` is not supported")]),
    ),
    (
        "008",
        Errors(&[(56, 19, "step templates are not supported")]),
    ),
    (
        "009",
        Errors(&[(46, 25, "step type `Semgrep` is not supported")]),
    ),
    ("010", Errors(&[(51, 25, PUSH)])),
    ("011", Errors(&[(48, 25, PUSH)])),
    (
        "012",
        Errors(&[(34, 25, "step type `RunTests` is not supported")]),
    ),
    ("013", Errors(&[(54, 25, PUSH)])),
    ("014", Errors(&[(59, 25, PUSH)])),
    (
        "015",
        Errors(&[(5, 3, "pipeline templates are not supported")]),
    ),
    ("016", Errors(&[(39, 25, PUSH)])),
    (
        "017",
        Errors(&[
            (46, 25, PUSH),
            (59, 15, "stage type `Deployment` is not supported"),
        ]),
    ),
    ("018", Valid),
    ("019", Valid),
    ("020", Valid),
    ("021", Valid),
    // The duplicate `pipeline:` key is a warning; the cache steps are not.
    (
        "022",
        Errors(&[
            (36, 25, "step type `RestoreCacheS3` is not supported"),
            (85, 25, "step type `SaveCacheS3` is not supported"),
        ]),
    ),
    ("023", Valid),
    (
        "024",
        Errors(&[(17, 9, "stage templates are not supported")]),
    ),
    ("025", Valid),
    ("026", Valid),
    ("027", Valid),
    (
        "028",
        Errors(&[(24, 25, "step type `Plugin` is not supported")]),
    ),
    ("029", Valid),
    ("030", Errors(&[(40, 25, PUSH)])),
    (
        "031",
        Errors(&[
            (40, 19, "step group templates are not supported"),
            (62, 19, "step templates are not supported"),
            (77, 25, "step type `Plugin` is not supported"),
            (150, 19, "step group templates are not supported"),
        ]),
    ),
    ("032", Valid),
    ("033", Errors(&[(95, 25, PUSH)])),
    ("034", Valid),
    ("035", Valid),
    (
        "036",
        Errors(&[(22, 25, "step type `RunTests` is not supported")]),
    ),
    (
        "037",
        Errors(&[(28, 25, "step type `Action` is not supported")]),
    ),
    ("038", Valid),
    ("039", Valid),
    // The stage has no `type` at all.
    (
        "040",
        Errors(&[(12, 7, "a stage is missing the required field `type`")]),
    ),
    ("041", Valid),
    ("042", Valid),
    ("043", Valid),
    ("044", Valid),
    (
        "045",
        Errors(&[
            (64, 35, "step type `Semgrep` is not supported"),
            (77, 35, "step type `Owasp` is not supported"),
            (90, 35, "step type `OsvScanner` is not supported"),
            (103, 25, "step type `BuildAndPushECR` is not supported"),
            (116, 25, "step type `SscaOrchestration` is not supported"),
        ]),
    ),
    (
        "046",
        Errors(&[
            (88, 25, PUSH),
            (108, 15, "stage type `Deployment` is not supported"),
        ]),
    ),
    (
        "047",
        Errors(&[
            (30, 25, "step type `GitClone` is not supported"),
            (40, 25, PUSH),
        ]),
    ),
    ("048", Errors(&[(58, 39, PUSH)])),
    (
        "049",
        Errors(&[
            (18, 25, "step type `RestoreCacheS3` is not supported"),
            (53, 25, "step type `SaveCacheS3` is not supported"),
        ]),
    ),
    ("050", Valid),
    // A shell comment probing `eventPayload.commits[]{}` and a JEXL script
    // (`var x = …; for …`) are expressions corral cannot evaluate.
    (
        "051",
        Errors(&[(54, 52, "malformed expression"), (87, 31, "JEXL scripts")]),
    ),
    ("052", Valid),
    ("053", Valid),
    ("054", Errors(&[(43, 25, PUSH)])),
    ("055", Valid),
];

/// Warnings a file must show (things the corpus is known for).
const WARNINGS: &[(&str, usize, &str)] = &[
    ("018", 15, "unknown field `cache`"),
    ("021", 63, "platform os `Windows` is ignored"),
    ("022", 14, "duplicate key `pipeline` (also at line 1)"),
    ("032", 52, "unknown field `contextType`"),
    ("036", 14, "infrastructure type `Cloud` is unknown"),
];

fn corpus() -> Option<std::path::PathBuf> {
    let dir = common::shared_dir()?.join("corpus/harness-real");
    dir.is_dir().then_some(dir)
}

fn run(path: &Path) -> (Option<i32>, String) {
    let store = common::tempdir();
    let out = common::corral(store.path())
        .arg("validate")
        .arg(path)
        .output()
        .expect("run corral");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn file_for(dir: &Path, prefix: &str) -> std::path::PathBuf {
    let mut hits: Vec<_> = std::fs::read_dir(dir)
        .expect("read corpus dir")
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            name.starts_with(&format!("{prefix}-")) && name.ends_with(".yaml")
        })
        .collect();
    assert_eq!(hits.len(), 1, "corpus file {prefix}-*.yaml");
    hits.remove(0)
}

#[test]
fn every_corpus_file_meets_its_expectation() {
    // The corpus lives beside the repository; CI has it, so a missing
    // corpus fails there instead of passing silently.
    let Some(dir) = corpus() else {
        common::skip(
            "every_corpus_file_meets_its_expectation",
            "no shared/corpus/harness-real here",
        );
        return;
    };
    let count = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "yaml")
        })
        .count();
    assert_eq!(
        count,
        EXPECTED.len(),
        "every corpus file needs an expectation"
    );

    let mut valid = 0;
    let mut failures = Vec::new();
    for (prefix, expect) in EXPECTED {
        let path = file_for(&dir, prefix);
        let (code, text) = run(&path);
        let errors: Vec<&str> = text.lines().filter(|l| l.contains(": error: ")).collect();
        match expect {
            Valid => {
                if code == Some(0) && errors.is_empty() {
                    valid += 1;
                } else {
                    failures.push(format!("{prefix}: expected valid, got {code:?}:\n{text}"));
                }
            }
            Errors(want) => {
                if code != Some(1) {
                    failures.push(format!("{prefix}: expected exit 1, got {code:?}:\n{text}"));
                }
                if errors.len() != want.len() {
                    failures.push(format!("{prefix}: expected {} errors:\n{text}", want.len()));
                }
                for (line, column, phrase) in *want {
                    let at = if *column == 0 {
                        format!("{}:{line}:", path.display())
                    } else {
                        format!("{}:{line}:{column}: error: ", path.display())
                    };
                    if !errors
                        .iter()
                        .any(|e| e.starts_with(&at) && e.contains(phrase))
                    {
                        failures.push(format!(
                            "{prefix}: no error `{phrase}` at {line}:{column}:\n{text}"
                        ));
                    }
                }
            }
        }
    }
    for (prefix, line, phrase) in WARNINGS {
        let path = file_for(&dir, prefix);
        let (_, text) = run(&path);
        let at = format!("{}:{line}:", path.display());
        if !text
            .lines()
            .any(|l| l.starts_with(&at) && l.contains("warning: ") && l.contains(phrase))
        {
            failures.push(format!(
                "{prefix}: no warning `{phrase}` at line {line}:\n{text}"
            ));
        }
    }
    println!("corpus: {valid} of {} files validate", EXPECTED.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
