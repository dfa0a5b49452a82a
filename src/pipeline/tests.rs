//! Table-driven tests of YAML -> model -> validation, through `load_str`.

use std::path::Path;
use std::time::Duration;

use super::model::*;
use super::strategy::{expand_pipeline, expand_stage, LiteralsOnly};
use super::{load_str, Diagnostic, LoadError};

/// A pipeline whose only stage has `steps` (indented for `steps:`).
fn with_steps(steps: &str) -> String {
    let mut text = String::from(
        "pipeline:\n  name: p\n  identifier: p\n  stages:\n    - stage:\n        name: s\n        identifier: s\n        type: CI\n        spec:\n          execution:\n            steps:\n",
    );
    for line in steps.lines() {
        text.push_str("              ");
        text.push_str(line);
        text.push('\n');
    }
    text
}

fn load(text: &str) -> Result<(Pipeline, Vec<Diagnostic>), Vec<Diagnostic>> {
    match load_str(text, Path::new("t.yaml")) {
        Ok(ok) => Ok(ok),
        Err(LoadError::Invalid { diagnostics, .. }) => Err(diagnostics),
        Err(e) => panic!("unexpected {e}"),
    }
}

const FULL: &str = r#"pipeline:
  name: full
  identifier: full
  variables:
    - name: greeting
      type: String
      value: hi
  properties:
    ci:
      codebase:
        connectorRef: gh
        repoName: app
        build: <+input>
  stages:
    - stage:
        name: build
        identifier: build
        type: CI
        variables:
          - name: token
            type: Secret
            value: tok
        when:
          pipelineStatus: Success
        spec:
          cloneCodebase: false
          runtime:
            type: Cloud
            spec: {}
          sharedPaths: [/root/.m2]
          execution:
            steps:
              - step:
                  type: Background
                  name: db
                  identifier: db
                  spec:
                    image: postgres:15
                    entrypoint: [docker-entrypoint.sh, -p, "5433"]
                    envVariables:
                      B: "2"
                      A: "1"
                    portBindings:
                      "8032": "8033"
                    resources:
                      limits:
                        memory: 500Mi
                        cpu: 400m
              - parallel:
                  - step:
                      type: Run
                      name: test
                      identifier: test
                      timeout: 1h30m
                      spec:
                        shell: Bash
                        command: make test
                        imagePullPolicy: IfNotPresent
                        runAsUser: 1000
                        privileged: true
                        reports:
                          type: JUnit
                          spec:
                            paths: ["**/junit.xml"]
                        outputVariables:
                          - name: RESULT
                      when:
                        stageStatus: All
                        condition: <+pipeline.variables.greeting> == "hi"
                      failureStrategies:
                        - onFailure:
                            errors: [Timeout]
                            action:
                              type: Retry
                              spec:
                                retryCount: 2
                                retryIntervals: [10s, 1m]
                                onRetryFailure:
                                  action:
                                    type: MarkAsFailure
                  - stepGroup:
                      name: group
                      identifier: group
                      sharedPaths: [/cache]
                      steps:
                        - step:
                            type: Run
                            name: inner
                            identifier: inner
                            spec:
                              command: echo inner
"#;

#[test]
fn a_full_pipeline_becomes_the_model() {
    let (p, warnings) = load(FULL).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(p.identifier.as_ref().unwrap().value, "full");
    assert_eq!(p.variables[0].name.value, "greeting");
    let cb = p.codebase.as_ref().unwrap();
    assert!(matches!(&cb.build, Some(CodebaseBuild::Input(s)) if s.value == "<+input>"));
    let stage = &p.stages[0];
    assert_eq!(stage.variables[0].kind, VariableType::Secret);
    assert_eq!(stage.when.as_ref().unwrap().status, Status::Success);
    assert_eq!(stage.spec.clone_codebase, Some(Setting::Value(false)));
    assert_eq!(stage.spec.infrastructure, Infrastructure::Cloud);
    assert_eq!(stage.spec.shared_paths[0].value, "/root/.m2");

    let ExecutionItem::Step(db) = &stage.execution[0] else {
        panic!("first item is not a step")
    };
    assert_eq!(db.kind, StepKind::Background);
    assert_eq!(db.timeout, Duration::from_secs(7200));
    let entry: Vec<&str> = db.spec.entrypoint.iter().map(Str::as_str).collect();
    assert_eq!(entry, ["docker-entrypoint.sh", "-p", "5433"]);
    let env: Vec<(&str, &str)> = db
        .spec
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(env, [("B", "2"), ("A", "1")]);
    let port = &db.spec.port_bindings[0];
    assert_eq!(
        (port.host.literal(), port.container.literal()),
        (Some(8032), Some(8033))
    );
    assert_eq!(db.spec.limits.memory_bytes, Some(Setting::Value(500 << 20)));
    assert_eq!(db.spec.limits.cpu_millis, Some(Setting::Value(400)));
    assert_eq!(db.loc.line, 34);

    let ExecutionItem::Parallel(par) = &stage.execution[1] else {
        panic!("second item is not parallel")
    };
    let ExecutionItem::Step(test) = &par.items[0] else {
        panic!("parallel[0] is not a step")
    };
    assert_eq!(test.timeout, Duration::from_secs(5400));
    assert_eq!(test.spec.shell, Shell::Bash);
    assert_eq!(test.spec.image_pull_policy, Some(PullPolicy::IfNotPresent));
    assert_eq!(test.spec.run_as_user, Some(Setting::Value(1000)));
    assert_eq!(test.spec.privileged, Some(Setting::Value(true)));
    assert_eq!(test.spec.reports[0].value, "**/junit.xml");
    assert_eq!(test.spec.output_variables[0].name.value, "RESULT");
    assert_eq!(test.when.as_ref().unwrap().status, Status::All);
    let fs = &test.failure_strategies[0];
    assert_eq!(fs.errors[0].value, "Timeout");
    assert_eq!(
        fs.action,
        FailureAction::Retry {
            count: 2,
            intervals: vec![Duration::from_secs(10), Duration::from_secs(60)],
            on_retry_failure: Box::new(FailureAction::MarkAsFailure),
        }
    );
    let ExecutionItem::Group(group) = &par.items[1] else {
        panic!("parallel[1] is not a group")
    };
    assert_eq!(group.shared_paths[0].value, "/cache");
    assert_eq!(stage.steps().len(), 3);
}

/// (step YAML, expected error phrase or `None` for valid)
const STEP_CASES: &[(&str, Option<&str>)] = &[
    ("- step: {type: Run, name: a, identifier: a, spec: {command: x}}", None),
    ("- step: {type: Run, name: a, identifier: a, timeout: \"\", spec: {command: x}}", None),
    ("- step: {type: Run, name: a, identifier: a, timeout: 3h 30m, spec: {command: x}}", None),
    ("- step: {type: Run, name: a, identifier: a, timeout: 0s, spec: {command: x}}", Some("longer than zero")),
    ("- step: {type: Run, name: a, identifier: a, spec: {command: x, shell: Zsh}}", Some("`Zsh` is not a valid shell")),
    ("- step: {type: Run, name: a, identifier: a, spec: {command: x, shell: Python}}", None),
    ("- step: {type: Run, name: a, identifier: a, spec: {command: x, privileged: maybe}}", Some("not a boolean")),
    ("- step: {type: Run, name: a, identifier: a, spec: {command: x, runAsUser: root}}", Some("not a whole number")),
    ("- step: {type: Run, name: a, identifier: a, spec: {command: x, resources: {limits: {cpu: lots}}}}", Some("cpu limit `lots`")),
    ("- step: {type: Run, name: a, identifier: a, spec: {command: x, outputVariables: [{name: 1bad}]}}", Some("not a valid output variable name")),
    ("- step: {type: Run, name: a, identifier: a, spec: {command: x, outputVariables: [{name: V, type: Secret, value: W}]}}", None),
    ("- step: {type: Background, name: a, identifier: a, spec: {image: redis, portBindings: {\"<+input>\": \"6379\"}}}", None),
    ("- step: {type: Background, name: a, identifier: a, spec: {image: redis, portBindings: {\"0\": \"6379\"}}}", Some("host port `0`")),
    ("- step: {type: Background, name: a, identifier: a, spec: {image: redis}, failureStrategies: [{onFailure: {errors: [AllErrors], action: {type: Ignore}}}]}", Some("Background steps do not support failure strategies")),
    ("- step: {type: Background, name: a, identifier: a, spec: {image: redis}, failureStrategies: []}", None),
    ("- step: {type: BuildAndPushECR, name: a, identifier: a, spec: {}}", Some("step type `BuildAndPushECR` is not supported by corral")),
    ("- step: {type: run, name: a, identifier: a, spec: {command: x}}", Some("step type `run` is not supported")),
    ("- step: {type: Run, name: a, identifier: a, spec: {command: x}, when: {stageStatus: Sometimes}}", Some("`Sometimes` is not a valid stageStatus")),
    ("- step: {type: Run, name: a, identifier: a, spec: {command: x}, failureStrategies: [{onFailure: {errors: [AllErrors], action: {type: ManualIntervention}}}]}", Some("`ManualIntervention` is not supported by corral")),
    ("- step: {type: Run, name: a, identifier: a, spec: {command: x}, failureStrategies: [{onFailure: {errors: [AllErrors], action: {type: Retry, spec: {retryCount: 1, retryIntervals: [1m], onRetryFailure: {action: {type: Retry}}}}}}]}", Some("cannot retry again")),
    ("- step: {type: Run, name: a, identifier: a, spec: {command: x}, strategy: {matrix: {v: [1, 2]}, parallelism: 2}}", Some("exactly one of matrix, repeat or parallelism")),
    ("- step: {type: Run, name: a, identifier: a, spec: {command: x}, strategy: {repeat: {times: 3}}}", None),
    ("- step: {type: Run, name: a, identifier: a, spec: {command: x}, strategy: {matrix: {v: 3}}}", Some("matrix axis `v` must be a list")),
    ("- step: {type: Run, name: a, identifier: a, spec: {command: x}, strategy: {matrix: {v: '<+pipeline.variables.l.split(\",\")>'}}}", None),
    ("- step: {type: Run, name: a, identifier: a, spec: {command: x}}\n- step: {type: Run, name: b, identifier: b, spec: {command: y}}", None),
    ("- stepGroup: {name: g, identifier: a, steps: [{step: {type: Run, name: a, identifier: a, spec: {command: x}}}]}", Some("duplicate step identifier `a`")),
    ("- stepGroup: {name: g, identifier: g, steps: []}", Some("has no steps")),
    ("- parallel: []", Some("has no steps")),
    ("- stepGroup: {name: g, identifier: g, sharedPaths: [cache], steps: [{step: {type: Run, name: a, identifier: a, spec: {command: x}}}]}", Some("shared path `cache` is not absolute")),
    ("- stepGroup: {name: g, identifier: g, variables: [{name: t, type: String, value: a}, {name: t, type: String, value: b}], steps: [{step: {type: Run, name: a, identifier: a, spec: {command: x}}}]}", Some("duplicate variable `t`")),
    ("- stepGroup: {name: g, identifier: g, variables: [{name: t, type: Secret, value: \"<+secrets.getValue('x')>\"}], steps: [{step: {type: Run, name: a, identifier: a, spec: {command: x}}}]}", Some("value is the secret identifier")),
    ("- stepGroup: {name: g, identifier: g, variables: [{name: t, type: Secret, value: x}], steps: [{step: {type: Run, name: a, identifier: a, spec: {command: x}}}]}", None),
    ("- insert: {}", Some("`insert` items are not supported")),
    ("- step: {type: Run, name: a, identifier: a, spec: {command: x}}\n  stepGroup: {name: g, identifier: g, steps: []}", Some("exactly one of `step`, `parallel` or `stepGroup`")),
];

#[test]
fn step_cases_validate_as_expected() {
    for (yaml, want) in STEP_CASES {
        let result = load(&with_steps(yaml));
        match (want, result) {
            (None, Ok(_)) => {}
            (None, Err(diags)) => panic!("{yaml}: expected valid, got {diags:#?}"),
            (Some(phrase), Ok(_)) => panic!("{yaml}: expected error `{phrase}`, got valid"),
            (Some(phrase), Err(diags)) => assert!(
                diags
                    .iter()
                    .any(|d| d.is_error() && d.message.contains(phrase)),
                "{yaml}: no error `{phrase}` in {diags:#?}"
            ),
        }
    }
}

#[test]
fn document_shapes() {
    let cases = [
        ("pipeline:\n", Some("`pipeline` is empty")),
        ("- a\n- b\n", Some("this is not a pipeline")),
        ("stages:\n", Some("the pipeline has no stages")),
        ("stages:\n  - stage: {name: s, identifier: s, type: CI, spec: {execution: {steps: [{step: {type: Run, name: a, identifier: a, spec: {command: x}}}]}}}\n", None),
        ("stages:\n  - parallel:\n      - stage: {name: s, identifier: s, type: CI, spec: {execution: {steps: [{step: {type: Run, name: a, identifier: a, spec: {command: x}}}]}}}\n      - stage: {name: t, identifier: t, type: CI, spec: {execution: {steps: [{step: {type: Run, name: a, identifier: a, spec: {command: x}}}]}}}\n", None),
        ("pipeline: {name: p, identifier: p, stages: [{stage: {name: s, identifier: s, type: CI}}]}\n", Some("missing the required field `spec`")),
        ("pipeline: {name: p, stages: [{stage: {name: s, identifier: s, type: CI, spec: {execution: {steps: [{step: {type: Run, name: a, identifier: a, spec: {command: x}}}]}}}}]}\n", Some("missing the required field `identifier`")),
    ];
    for (yaml, want) in cases {
        match (want, load(yaml)) {
            (None, Ok(_)) => {}
            (None, Err(diags)) => panic!("{yaml}: {diags:#?}"),
            (Some(phrase), Ok(_)) => panic!("{yaml}: expected `{phrase}`"),
            (Some(phrase), Err(diags)) => {
                assert!(
                    diags.iter().any(|d| d.message.contains(phrase)),
                    "{yaml}: {diags:#?}"
                )
            }
        }
    }
    let (p, _) = load(cases[4].0).unwrap();
    let groups: Vec<Option<usize>> = p.stages.iter().map(|s| s.parallel_group).collect();
    assert_eq!(groups, [Some(1), Some(1)]);
}

#[test]
fn all_errors_are_collected_not_just_the_first() {
    let yaml = "- step: {type: Run, name: a, identifier: 1a, spec: {command: x, shell: zsh}}\n- step: {type: Plugin, name: b, identifier: b, spec: {}}";
    let diags = load(&with_steps(yaml)).unwrap_err();
    let errors: Vec<&str> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        diags.iter().all(|d| d.line >= 12 && d.column > 1),
        "{diags:#?}"
    );
}

#[test]
fn strategies_expand_into_suffixed_copies() {
    let yaml = r#"pipeline:
  name: p
  identifier: p
  stages:
    - stage:
        name: s
        identifier: s
        type: CI
        strategy:
          parallelism: 2
        spec:
          execution:
            steps:
              - step:
                  type: Run
                  name: test
                  identifier: test
                  spec: {command: "echo <+matrix.os>"}
                  strategy:
                    matrix:
                      os: [linux, mac]
                      exclude: [{os: mac}]
              - stepGroup:
                  name: g
                  identifier: g
                  strategy:
                    repeat:
                      items: [a, b]
                      maxConcurrency: 1
                  steps:
                    - step: {type: Run, name: i, identifier: i, spec: {command: x}}
"#;
    let (p, _) = load(yaml).unwrap();
    let whole = expand_pipeline(&p, &LiteralsOnly).unwrap();
    assert_eq!(whole.stages.len(), 2);
    assert_eq!(whole.stages[0].parallel_group, Some(1));
    let stages = expand_stage(&p.stages[0], &LiteralsOnly, 7).unwrap();
    let ids: Vec<&str> = stages.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["s_0", "s_1"]);
    let it = stages[1].iteration.as_ref().unwrap();
    assert_eq!((it.index, it.count), (1, 2));
    assert_eq!(stages[1].parallel_group, Some(7));

    let ExecutionItem::Parallel(copies) = &stages[0].execution[0] else {
        panic!("a looped step becomes a parallel block")
    };
    assert_eq!(copies.items.len(), 1);
    let ExecutionItem::Step(step) = &copies.items[0] else {
        panic!("copy is a step")
    };
    assert_eq!(step.id.value, "test_0");
    assert_eq!(
        step.iteration.as_ref().unwrap().matrix_value("os"),
        Some("linux")
    );

    let ExecutionItem::Parallel(groups) = &stages[0].execution[1] else {
        panic!("a looped group becomes a parallel block")
    };
    assert_eq!(groups.max_concurrency, Some(1));
    let ExecutionItem::Group(g1) = &groups.items[1] else {
        panic!("copy is a group")
    };
    assert_eq!(g1.id.value, "g_1");
    assert_eq!(
        g1.iteration.as_ref().unwrap().repeat_item.as_deref(),
        Some("b")
    );
}

#[test]
fn max_concurrency_beside_the_looping_key_applies() {
    // Real pipelines write it beside `repeat` (corpus 014) and `matrix`.
    let stage_with = |strategy: &str| {
        format!(
            r#"pipeline:
  name: p
  identifier: p
  stages:
    - stage:
        name: s
        identifier: s
        type: CI
        strategy:
{strategy}
        spec:
          execution:
            steps:
              - step: {{type: Run, name: a, identifier: a, spec: {{command: x}}}}
"#
        )
    };
    let max = |strategy: &str| {
        let (p, warnings) = load(&stage_with(strategy)).unwrap();
        let copies = expand_stage(&p.stages[0], &LiteralsOnly, 1).unwrap();
        (copies[0].max_concurrency, warnings)
    };
    let (beside_repeat, w) =
        max("          repeat:\n            items: [a, b, c]\n          maxConcurrency: 2");
    assert_eq!((beside_repeat, w.len()), (Some(2), 0));
    let (beside_matrix, _) =
        max("          matrix:\n            os: [a, b, c]\n          maxConcurrency: 1");
    assert_eq!(beside_matrix, Some(1));
    let (beside_parallelism, _) = max("          parallelism: 3\n          maxConcurrency: 2");
    assert_eq!(beside_parallelism, Some(2));
    // Given twice: the inner one applies, and the outer one is pointed at.
    let (twice, w) = max(
        "          matrix:\n            os: [a, b, c]\n            maxConcurrency: 1\n          maxConcurrency: 3",
    );
    assert_eq!(twice, Some(1));
    let text = w
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        text.contains(":13:") && text.contains("given twice"),
        "{text}"
    );
}

/// (step YAML, expected error phrase or `None`); the stage has a variable
/// `v` and a step `out` declaring the output `RESULT`.
const REFERENCE_CASES: &[(&str, Option<&str>)] = &[
    (
        "{command: 'echo <+pipeline.variables.nope>'}",
        Some("unknown pipeline variable `nope`"),
    ),
    ("{command: 'echo <+pipeline.variables.greeting>'}", None),
    ("{command: 'echo <+stage.variables.v>'}", None),
    (
        "{command: 'echo <+stage.variables.w>'}",
        Some("unknown stage variable `w`"),
    ),
    (
        "{command: 'echo <+steps.missing.output.outputVariables.X>'}",
        Some("unknown step `missing`"),
    ),
    (
        "{command: 'echo <+steps.out.output.outputVariables.RESULT>'}",
        None,
    ),
    (
        "{command: 'echo <+steps.out.output.outputVariables.RESULTS>'}",
        Some("declares no output variable `RESULTS`"),
    ),
    ("{command: 'echo <+pipeline.stages.s.status>'}", None),
    (
        "{command: 'echo <+pipeline.stages.other.status>'}",
        Some("unknown stage `other`"),
    ),
    (
        "{command: 'echo <+steps.out.status> <+steps.out.retryCount>'}",
        None,
    ),
    ("{command: 'echo <+execution.steps.out.status>'}", None),
    (
        "{command: 'echo <+pipeline.stages.s.spec.execution.steps.out.status>'}",
        None,
    ),
    (
        "{command: 'echo <+stages.s.spec.execution.steps.out.status>'}",
        None,
    ),
    (
        "{command: 'echo <+pipeline.stages.s.spec.execution.steps.nope.status>'}",
        Some("unknown step `nope` of stage `s`"),
    ),
    (
        "{command: 'echo <+steps.out.steps.nope.status>'}",
        Some("unknown step `nope` of stage `s`"),
    ),
    (
        "{command: 'echo <+matrix.os>'}",
        Some("outside a matrix strategy"),
    ),
    (
        "{command: 'echo <+repeat.item>'}",
        Some("outside a repeat strategy"),
    ),
];

fn reference_pipeline(spec: &str, strategy: &str) -> String {
    format!(
        "pipeline:\n  name: p\n  identifier: p\n  variables: [{{name: greeting, type: String, value: hi}}]\n  stages:\n    - stage:\n        name: s\n        identifier: s\n        type: CI\n        variables: [{{name: v, type: String, value: x}}]\n        spec:\n          execution:\n            steps:\n              - step: {{type: Run, name: out, identifier: out, spec: {{command: x, outputVariables: [{{name: RESULT}}]}}}}\n              - step: {{type: Run, name: a, identifier: a, spec: {spec}{strategy}}}\n"
    )
}

#[test]
fn unknown_references_are_errors() {
    let with_loops = [
        (
            "{command: 'echo <+matrix.os>'}",
            ", strategy: {matrix: {os: [a]}}",
            None,
        ),
        (
            "{command: 'echo <+matrix.od>'}",
            ", strategy: {matrix: {os: [a]}}",
            Some("names no axis"),
        ),
        (
            "{command: 'echo <+repeat.item>'}",
            ", strategy: {repeat: {items: [a]}}",
            None,
        ),
        // `when.condition` is checked as string fields are.
        (
            "{command: x}",
            ", when: {stageStatus: All, condition: '<+steps.out.status> == \"IGNORE_FAILED\"'}",
            None,
        ),
        (
            "{command: x}",
            ", when: {stageStatus: All, condition: '<+pipeline.stages.s.status> == \"SUCCEEDED\"'}",
            None,
        ),
        (
            "{command: x}",
            ", when: {stageStatus: All, condition: '<+pipeline.stages.nope.status> == \"SUCCEEDED\"'}",
            Some("unknown stage `nope`"),
        ),
        (
            "{command: x}",
            ", when: {stageStatus: All, condition: '<+steps.nope.status> == \"FAILED\"'}",
            Some("unknown step `nope`"),
        ),
        (
            "{command: x}",
            ", when: {stageStatus: All, condition: '<+pipeline.stages.s.spec.execution.steps.none.status> != \"FAILED\"'}",
            Some("unknown step `none` of stage `s`"),
        ),
    ];
    let plain = REFERENCE_CASES
        .iter()
        .map(|(spec, want)| (*spec, "", *want));
    for (spec, strategy, want) in plain.chain(with_loops) {
        let result = load(&reference_pipeline(spec, strategy));
        match want {
            None => assert!(result.is_ok(), "{spec}: {result:?}"),
            Some(phrase) => {
                let diags = result.unwrap_err();
                assert!(
                    diags.iter().any(|d| d.message.contains(phrase)),
                    "{spec}: {diags:#?}"
                );
            }
        }
    }
}

#[test]
fn an_unknown_reference_in_a_condition_is_located() {
    let text = reference_pipeline(
        "{command: x}",
        ", when: {stageStatus: All, condition: '<+pipeline.stages.nope.status> == \"SUCCEEDED\"'}",
    );
    let diags = load(&text).unwrap_err();
    let shown: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
    assert!(
        shown
            .iter()
            .any(|d| d.contains(":15:") && d.contains("steps[1].step.when.condition")),
        "{shown:#?}"
    );
}

#[test]
fn reference_cases_are_valid_yaml_pipelines() {
    // Until expressions are parsed, every reference case must at least load.
    for (spec, _) in REFERENCE_CASES {
        let text = reference_pipeline(spec, "");
        if let Err(diags) = load(&text) {
            assert!(
                diags.iter().all(|d| !d.message.contains("YAML")),
                "{spec}: {diags:#?}"
            );
        }
    }
}

#[test]
fn a_field_corral_does_not_provide_is_a_warning_not_an_error() {
    let (_, warnings) = load(&reference_pipeline(
        "{command: 'echo <+step.setupId> <+pipeline.triggeredBy.uuid>'}",
        "",
    ))
    .unwrap();
    let messages: Vec<&str> = warnings.iter().map(|d| d.message.as_str()).collect();
    assert!(
        messages
            .iter()
            .any(|m| m.contains("`step.setupId`") && m.contains("null")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("`pipeline.triggeredBy.uuid`")),
        "{messages:?}"
    );
    // Fields corral provides are no warning.
    let (_, warnings) = load(&reference_pipeline(
        "{command: 'echo <+step.name> <+pipeline.sequenceId>'}",
        "",
    ))
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
}
