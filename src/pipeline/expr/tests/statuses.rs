//! Status expressions through `MapScope`: every spelling of a stage's and a
//! step's status and a step's `retryCount`, in templates and conditions,
//! and a clear error for what has not run yet.

use crate::pipeline::expr::{
    eval_condition, parse_condition, parse_template, render, ExprError, MapScope,
};

/// Stage `build` finished; the current stage `test` has run `unit`
/// (ignored failure after a retry) and `lint` is running.
fn scope() -> MapScope<'static> {
    let mut scope = MapScope::new();
    scope.set_stage_field("build", "status", "SUCCEEDED");
    scope.set_step_field("build", "compile", "status", "SUCCEEDED");
    scope.set_step_field("build", "compile", "retryCount", 0i64);
    scope.set_current_stage("test");
    scope.set_stage_field("test", "status", "RUNNING");
    scope.set_step_field("test", "unit", "status", "IGNORE_FAILED");
    scope.set_step_field("test", "unit", "retryCount", 1i64);
    scope.set_step_field("test", "lint", "status", "RUNNING");
    scope
}

#[test]
fn status_expressions_resolve_in_every_spelling() {
    let cases: &[(&str, &str)] = &[
        ("<+pipeline.stages.build.status>", "SUCCEEDED"),
        ("<+stages.build.status>", "SUCCEEDED"),
        ("<+pipeline.stages.test.status>", "RUNNING"),
        ("<+stage.status>", "RUNNING"),
        (
            "<+pipeline.stages.build.spec.execution.steps.compile.status>",
            "SUCCEEDED",
        ),
        (
            "<+stages.build.spec.execution.steps.compile.status>",
            "SUCCEEDED",
        ),
        (
            "<+pipeline.stages.build.spec.execution.steps.compile.retryCount>",
            "0",
        ),
        ("<+steps.unit.status>", "IGNORE_FAILED"),
        ("<+execution.steps.unit.status>", "IGNORE_FAILED"),
        ("<+execution.steps.grp.steps.unit.status>", "IGNORE_FAILED"),
        (
            "<+pipeline.stages.test.spec.execution.steps.unit.status>",
            "IGNORE_FAILED",
        ),
        ("<+steps.unit.retryCount>", "1"),
        ("<+steps.lint.status>", "RUNNING"),
        (
            "unit=<+steps.unit.status>, retries=<+steps.unit.retryCount>",
            "unit=IGNORE_FAILED, retries=1",
        ),
        ("<+<+steps.unit.status>.toLowerCase()>", "ignore_failed"),
    ];
    let scope = scope();
    for (src, want) in cases {
        let got = render(&parse_template(src).unwrap(), &scope);
        assert_eq!(got.map(|r| r.text).ok().as_deref(), Some(*want), "{src}");
    }
}

#[test]
fn status_conditions_compare_harness_strings() {
    let cases: &[(&str, bool)] = &[
        ("<+pipeline.stages.build.status> == \"SUCCEEDED\"", true),
        ("<+pipeline.stages.build.status> == \"FAILED\"", false),
        ("<+steps.unit.status> == \"IGNORE_FAILED\"", true),
        ("<+execution.steps.unit.status> != \"SUCCEEDED\"", true),
        ("<+steps.unit.retryCount> > 0", true),
        ("<+steps.unit.retryCount> == 1", true),
        ("<+pipeline.stages.build.spec.execution.steps.compile.retryCount> == 0", true),
        (
            "<+pipeline.stages.build.status> == \"SUCCEEDED\" && <+steps.lint.status> == \"RUNNING\"",
            true,
        ),
    ];
    let scope = scope();
    for (src, want) in cases {
        let got = parse_condition(src).and_then(|c| eval_condition(&c, &scope));
        assert_eq!(got.ok(), Some(*want), "{src}");
    }
}

#[test]
fn a_status_not_known_yet_is_a_clear_error() {
    let cases: &[(&str, &str)] = &[
        (
            "<+pipeline.stages.deploy.status>",
            "`pipeline.stages.deploy.status` has no value yet: stage `deploy` has not run yet",
        ),
        (
            "<+steps.e2e.status>",
            "`steps.e2e.status` has no value yet: step `e2e` of stage `test` has not started yet",
        ),
        (
            "<+steps.e2e.retryCount>",
            "step `e2e` of stage `test` has not started yet",
        ),
        (
            "<+pipeline.stages.build.spec.execution.steps.package.status>",
            "step `package` of stage `build` has not started yet",
        ),
    ];
    let scope = scope();
    for (src, want) in cases {
        let err = render(&parse_template(src).unwrap(), &scope).unwrap_err();
        assert!(
            matches!(err, ExprError::NotYet { offset: 2, .. }),
            "{src}: {err:?}"
        );
        assert!(err.to_string().contains(want), "{src}: {err}");
        assert!(
            err.to_string().contains("started before this point"),
            "{err}"
        );
    }
    // Other fields of a step stay unknown references.
    let err = render(&parse_template("<+steps.unit.startTs>").unwrap(), &scope).unwrap_err();
    assert!(matches!(err, ExprError::UnknownReference { .. }), "{err:?}");
}
