//! `when.condition`: the JEXL subset.

use super::TestScope;
use crate::pipeline::expr::{eval_condition, parse_condition};

#[test]
fn evaluates_conditions() {
    let cases: &[(&str, bool)] = &[
        ("true", true),
        ("false", false),
        ("null", false),
        ("<+trigger.branch> == \"main\"", true),
        ("<+trigger.branch> != \"main\"", false),
        ("<+pipeline.variables.flag> == \"true\"", true),
        ("<+pipeline.variables.flag> == true", true),
        ("<+pipeline.variables.flag>", true),
        ("<+pipeline.variables.empty>", false),
        ("!<+pipeline.variables.flag>", false),
        ("not <+pipeline.variables.flag>", false),
        ("<+pipeline.variables.count> > 2", true),
        ("<+pipeline.variables.count> >= 3", true),
        ("<+pipeline.variables.count> < 3", false),
        ("<+pipeline.variables.count> <= 3", true),
        ("<+pipeline.variables.count> == 3", true),
        ("\"10\" > \"9\"", true),
        ("\"b\" > \"a\"", true),
        ("pipeline.sequenceId > 5 && pipeline.sequenceId < 10", true),
        ("pipeline.sequenceId > 5 and pipeline.sequenceId > 10", false),
        ("pipeline.sequenceId > 10 or stage.identifier == 'build'", true),
        ("(1 == 2 || 2 == 2) && !(3 == 4)", true),
        ("<+codebase.branch>.startsWith(\"feature/\")", true),
        ("<+codebase.branch>.endsWith(\"/y\")", false),
        ("codebase.branch.contains('ure')", true),
        ("\"<+trigger.branch>\" == \"main\"", true),
        ("<+trigger.prLabels> == null", true),
        // file 006: short-circuit guards the null label list
        (
            "(<+trigger.branch> == \"main\" || (<+trigger.prLabels> != null && <+trigger.prLabels>.contains(\"load-test\")))",
            true,
        ),
        ("<+trigger.prLabels> != null && <+trigger.prLabels>.contains(\"x\")", false),
        ("<+trigger.prLabels>.contains(\"x\")", false),
        ("pipeline.variables.versions.split(',').contains('20')", true),
        ("pipeline.variables.versions.split(',').contains('21')", false),
        ("stage.identifier == 'build' ? true : false", true),
        ("1 + 1 == 2", true),
        ("-1 < 0", true),
        ("<+secrets.getValue('token')> == 's3cr3t-Value'", true),
        ("<+pipeline.variables.x.toLowerCase()> == 'mixed'", true),
        ("<+<+pipeline.variables.x>.toLowerCase()> == 'mixed'", true),
    ];
    let scope = TestScope::new();
    let mut failures = Vec::new();
    for (src, want) in cases {
        match parse_condition(src).and_then(|c| eval_condition(&c, &scope)) {
            Ok(got) if got == *want => {}
            other => failures.push(format!("{src:?}: want {want}, got {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn rejects_malformed_conditions() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 0, "empty condition"),
        ("   ", 0, "empty condition"),
        ("a ==", 4, "expected a value"),
        ("(a == b", 0, "unclosed `(`"),
        ("a == 'b", 5, "unterminated string"),
        ("a = b", 2, "unexpected `=`"),
        ("a == b)", 6, "unexpected `)`"),
        ("<+a == 'b'", 0, "unclosed `<+`"),
        ("a.nope()", 2, "unknown method"),
        ("a && && b", 5, "expected a value"),
        ("x; y", 1, "unexpected `;`"),
    ];
    let mut failures = Vec::new();
    for (src, offset, words) in cases {
        match parse_condition(src) {
            Err(e) if e.offset() == *offset && e.to_string().contains(words) => {}
            other => failures.push(format!(
                "{src:?}: want offset {offset} {words:?}, got {other:?}"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn condition_errors_at_evaluation() {
    let scope = TestScope::new();
    for (src, words) in [
        ("pipeline.variables.nope == 'x'", "unknown reference"),
        ("pipeline.variables.x < 3", "cannot be ordered"),
        ("true < 1", "cannot be ordered"),
    ] {
        let c = parse_condition(src).unwrap();
        let err = eval_condition(&c, &scope).unwrap_err();
        assert!(err.to_string().contains(words), "{src}: {err}");
    }
}
