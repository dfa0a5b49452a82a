use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::pipeline::model::{ExecutionItem, Step, StepGroup};
use crate::pipeline::secret::Secret;
use crate::runner::status::HarnessStatus;
use crate::runner::supervise::{self, Gate, StageStatusCondition};

const SECRET: &str = "s3cr3t-Value-42";

fn load(yaml: &str) -> Pipeline {
    match crate::pipeline::load_str(yaml, Path::new("p.yaml")) {
        Ok((p, _)) => p,
        Err(crate::pipeline::LoadError::Invalid { diagnostics, .. }) => {
            panic!("{diagnostics:#?}")
        }
        Err(e) => panic!("{e}"),
    }
}

fn store() -> SecretStore {
    let mut s = SecretStore::new();
    s.insert("tok", Secret::new(SECRET));
    s
}

fn ctx_with(yaml: &str, vars: &[(&str, &str)]) -> Result<RunContext, ResolveError> {
    let options = RunOptions {
        vars: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        read_codebase: false,
        execution_id: "exec1".into(),
        ..RunOptions::default()
    };
    RunContext::new(&load(yaml), store(), &Config::default(), options)
}

fn ctx(yaml: &str) -> RunContext {
    ctx_with(yaml, &[]).unwrap()
}

/// A step by id (as expanded) and its enclosing groups.
fn find<'a>(items: &'a [ExecutionItem], id: &str) -> Option<(&'a Step, Vec<&'a StepGroup>)> {
    for item in items {
        match item {
            ExecutionItem::Step(s) if s.id.value == id => return Some((s, Vec::new())),
            ExecutionItem::Step(_) => {}
            ExecutionItem::Parallel(p) => {
                if let Some(found) = find(&p.items, id) {
                    return Some(found);
                }
            }
            ExecutionItem::Group(g) => {
                if let Some((s, mut groups)) = find(&g.steps, id) {
                    groups.insert(0, g);
                    return Some((s, groups));
                }
            }
        }
    }
    None
}

fn resolve(
    run: &RunContext,
    id: &str,
    outputs: &StepOutputs,
) -> Result<ResolvedStep, ResolveError> {
    let stage = run.stages()[0];
    let sc = run.stage(stage)?;
    let (step, groups) = find(&stage.execution, id).expect("step");
    sc.resolve_step(step, &groups, outputs, &StepStatuses::new())
}

fn env<'a>(s: &'a ResolvedStep, name: &str) -> Option<&'a str> {
    s.env
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn stage(steps: &str) -> String {
    format!(
        "pipeline:\n  name: p\n  identifier: p\n  variables:\n    - name: X\n      type: String\n      value: from-pipeline\n    - name: P\n      type: String\n      value: pipeline-only\n  stages:\n    - stage:\n        name: s\n        identifier: s\n        type: CI\n        variables:\n          - name: X\n            type: String\n            value: from-stage\n        spec:\n          execution:\n            steps:\n{steps}"
    )
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("              {l}\n"))
        .collect()
}

#[test]
fn argv_per_kind_and_shell() {
    let yaml = stage(&indent(
        "- step:\n    type: Run\n    name: a\n    identifier: a\n    spec:\n      shell: Bash\n      command: echo <+pipeline.variables.X>\n\
         - step:\n    type: Background\n    name: b\n    identifier: b\n    spec:\n      image: postgres:16\n      command: ignored\n      entrypoint: [\"docker-entrypoint.sh\", \"-p\", \"<+pipeline.variables.P>\"]\n\
         - step:\n    type: Run\n    name: c\n    identifier: c\n    spec:\n      image: alpine@sha256:0000000000000000000000000000000000000000000000000000000000000000\n",
    ));
    let run = ctx(&yaml);
    let none = StepOutputs::new();
    let a = resolve(&run, "a", &none).unwrap();
    assert_eq!(
        a.argv.as_deref().unwrap(),
        ["bash", "-c", "set -e; . /run/corral/step.sh"].map(String::from)
    );
    assert_eq!(a.script.unwrap().text, "echo from-pipeline");
    assert_eq!(a.image, None);
    let b = resolve(&run, "b", &none).unwrap();
    assert_eq!(
        b.argv.as_deref().unwrap(),
        ["docker-entrypoint.sh", "-p", "pipeline-only"].map(String::from)
    );
    assert_eq!(b.image.as_deref(), Some("docker.io/library/postgres:16"));
    assert_eq!(b.pull_policy, PullPolicy::IfNotPresent);
    let c = resolve(&run, "c", &none).unwrap();
    assert_eq!(c.argv, None);
    assert_eq!(c.pull_policy, PullPolicy::IfNotPresent);
}

#[test]
fn env_precedence_and_builtins() {
    let yaml = stage(&indent(
        "- stepGroup:\n    name: g\n    identifier: g\n    variables:\n      - name: X\n        type: String\n        value: from-group\n      - name: G\n        type: String\n        value: group-only\n    steps:\n      - step:\n          type: Run\n          name: inner\n          identifier: inner\n          spec:\n            command: env\n            envVariables:\n              X: from-step\n              K: <+secrets.getValue('tok')>\n      - step:\n          type: Run\n          name: plain\n          identifier: plain\n          spec:\n            command: env\n\
         - step:\n    type: Run\n    name: top\n    identifier: top\n    spec:\n      command: env\n",
    ));
    let run = ctx(&yaml);
    let none = StepOutputs::new();
    let inner = resolve(&run, "inner", &none).unwrap();
    assert_eq!(inner.id, "g_inner");
    assert_eq!(inner.output_key, "g.inner");
    assert_eq!(env(&inner, "X"), Some("from-step"));
    assert_eq!(env(&inner, "G"), Some("group-only"));
    assert_eq!(env(&inner, "P"), Some("pipeline-only"));
    assert_eq!(env(&inner, "K"), Some(SECRET));
    assert_eq!(inner.secret_values, vec![SECRET.to_string()]);
    assert_eq!(env(&inner, "CI"), Some("true"));
    assert_eq!(env(&inner, "HARNESS_WORKSPACE"), Some("/harness"));
    assert_eq!(env(&inner, "HARNESS_STAGE_ID"), Some("s"));
    assert_eq!(env(&inner, "HARNESS_PIPELINE_ID"), Some("p"));
    assert_eq!(env(&inner, "HARNESS_BUILD_ID"), Some("1"));
    assert_eq!(env(&inner, "HARNESS_EXECUTION_ID"), Some("exec1"));
    let out = "/harness/.corral/outputs/exec1/s/g_inner.env";
    assert_eq!(env(&inner, "DRONE_OUTPUT"), Some(out));
    assert_eq!(env(&inner, "HARNESS_OUTPUT_FILE"), Some(out));
    assert_eq!(inner.output_file, out);
    let plain = resolve(&run, "plain", &none).unwrap();
    assert_eq!(env(&plain, "X"), Some("from-group"));
    assert!(plain.secret_values.is_empty());
    let top = resolve(&run, "top", &none).unwrap();
    assert_eq!(env(&top, "X"), Some("from-stage"));
    assert_eq!(env(&top, "G"), None);
    let names: Vec<String> = run
        .stage(run.stages()[0])
        .unwrap()
        .step_hosts()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["g_inner", "g_plain", "inner", "plain", "top"]);
}

#[test]
fn output_variables_in_every_spelling() {
    let yaml = stage(&indent(
        "- step:\n    type: Run\n    name: a\n    identifier: a\n    spec:\n      command: V=1\n      outputVariables:\n        - name: V\n\
         - stepGroup:\n    name: g\n    identifier: g\n    steps:\n      - step:\n          type: Run\n          name: b\n          identifier: b\n          spec:\n            command: W=2\n            outputVariables:\n              - name: W\n\
         - step:\n    type: Run\n    name: c\n    identifier: c\n    spec:\n      command: echo <+steps.a.output.outputVariables.V> <+execution.steps.a.output.outputVariables.V> <+execution.steps.g.steps.b.output.outputVariables.W> <+pipeline.stages.s.spec.execution.steps.a.output.outputVariables.V>\n",
    ));
    let run = ctx(&yaml);
    let a = resolve(&run, "a", &StepOutputs::new()).unwrap();
    assert_eq!(a.output_variables, ["V"]);
    assert!(a
        .script
        .as_ref()
        .unwrap()
        .text
        .contains("__corral_output 'V'"));
    let mut outputs = StepOutputs::new();
    outputs.insert("a".into(), BTreeMap::from([("V".into(), "one".into())]));
    outputs.insert(
        "g.b".into(),
        BTreeMap::from([("W".into(), "two words".into())]),
    );
    let c = resolve(&run, "c", &outputs).unwrap();
    assert_eq!(c.script.unwrap().text, "echo one one two words one");
    // Outputs `a` never set render as null, as Harness renders them; the
    // dry run shows the text.
    let c = resolve(&run, "c", &StepOutputs::new()).unwrap();
    assert_eq!(c.script.unwrap().text, "echo null null null null");
    let stage = run.stages()[0];
    let sc = run.stage(stage).unwrap();
    let (step, groups) = find(&stage.execution, "c").unwrap();
    let preview = sc.preview_step(step, &groups).unwrap();
    assert!(preview
        .script
        .unwrap()
        .text
        .contains("<+steps.a.output.outputVariables.V>"));
}

#[test]
fn when_conditions() {
    let yaml = stage(&indent(
        "- step:\n    type: Run\n    name: a\n    identifier: a\n    spec:\n      command: V=1\n      outputVariables:\n        - name: V\n\
         - step:\n    type: Run\n    name: b\n    identifier: b\n    when:\n      stageStatus: All\n      condition: <+pipeline.variables.X> == \"nope\"\n    spec:\n      command: echo\n\
         - step:\n    type: Run\n    name: c\n    identifier: c\n    when:\n      stageStatus: Failure\n      condition: <+steps.a.output.outputVariables.V> == \"1\"\n    spec:\n      command: echo\n",
    ));
    let run = ctx(&yaml);
    let stage = run.stages()[0];
    let sc = run.stage(stage).unwrap();
    let (b, groups) = find(&stage.execution, "b").unwrap();
    let when = sc
        .step_when(b, &groups, &StepOutputs::new(), &StepStatuses::new())
        .unwrap()
        .unwrap();
    assert_eq!(when.stage_status, StageStatusCondition::All);
    assert_eq!(when.condition, Some(false));
    assert!(matches!(
        supervise::gate(Some(&when), true, false),
        Gate::Skip(_)
    ));
    let (c, groups) = find(&stage.execution, "c").unwrap();
    let outputs = StepOutputs::from([(
        "a".to_string(),
        BTreeMap::from([("V".to_string(), "1".to_string())]),
    )]);
    let when = sc
        .step_when(c, &groups, &outputs, &StepStatuses::new())
        .unwrap()
        .unwrap();
    assert_eq!(when.condition, Some(true));
    assert_eq!(supervise::gate(Some(&when), true, false), Gate::Run);
    assert_eq!(
        supervise::gate(Some(&when), false, false),
        Gate::Skip(supervise::SkipReason::StageSucceeded)
    );
    let preview = sc
        .preview_condition(c.when.as_ref().unwrap(), &groups, Some(c))
        .unwrap();
    assert_eq!(preview, Some(Condition::AtRunTime));
    let preview = sc
        .preview_condition(b.when.as_ref().unwrap(), &groups, Some(b))
        .unwrap();
    assert_eq!(preview, Some(Condition::Value(false)));
    assert_eq!(sc.stage_when().unwrap(), None);
}

#[test]
fn missing_secrets_fail_before_running_and_name_the_user() {
    let yaml = stage(&indent(
        "- step:\n    type: Run\n    name: a\n    identifier: a\n    spec:\n      command: echo <+secrets.getValue('tok')> <+secrets.getValue('account.absent')>\n",
    ))
    .replace(
        "      value: pipeline-only\n",
        "      value: pipeline-only\n    - name: S\n      type: Secret\n      value: org.nope\n",
    );
    let err = ctx_with(&yaml, &[]).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("2 secret(s)"), "{text}");
    assert!(
        text.contains("secret `account.absent` used by step `a`"),
        "{text}"
    );
    assert!(
        text.contains("secret `org.nope` used by variable `S`"),
        "{text}"
    );
    assert!(text.contains("p.yaml:"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

#[test]
fn runtime_inputs_from_vars_defaults_or_errors() {
    let yaml = stage(&indent(
        "- step:\n    type: Run\n    name: a\n    identifier: a\n    spec:\n      command: echo <+pipeline.variables.R> <+pipeline.variables.D> <+pipeline.variables.F>\n",
    ))
    .replace(
        "      value: pipeline-only\n",
        "      value: pipeline-only\n    - name: R\n      type: String\n      value: <+input>.allowedValues(eu,us)\n    - name: D\n      type: String\n      value: <+input>.default(dflt)\n    - name: F\n      type: String\n      value: <+input>\n      default: field-default\n",
    );
    // Known before anything runs.
    let err = ctx_with(&yaml, &[]).unwrap_err();
    assert!(
        err.to_string().contains("p.yaml:")
            && err.to_string().contains("variable `R` is a runtime input"),
        "{err}"
    );
    let run = ctx_with(&yaml, &[("R", "eu")]).unwrap();
    let a = resolve(&run, "a", &StepOutputs::new()).unwrap();
    assert_eq!(a.script.unwrap().text, "echo eu dflt field-default");
    let err = ctx_with(&yaml, &[("R", "mars")]).unwrap_err();
    assert!(
        err.to_string().contains("not one of the allowed values"),
        "{err}"
    );
    let err = ctx_with(&yaml, &[("Q", "1")]).unwrap_err();
    assert!(
        err.to_string().contains("--var `Q` names no variable"),
        "{err}"
    );
    // A name no input carries overrides the fixed value.
    let run = ctx_with(&yaml, &[("R", "us"), ("P", "over")]).unwrap();
    assert_eq!(
        env(&resolve(&run, "a", &StepOutputs::new()).unwrap(), "P"),
        Some("over")
    );
}

#[test]
fn matrix_ports_limits_and_pull_policy() {
    let yaml = stage(&indent(
        "- step:\n    type: Run\n    name: t\n    identifier: t\n    strategy:\n      matrix:\n        v: [\"3.11\", \"3.12\"]\n    spec:\n      image: python:<+matrix.v>\n      shell: Python\n      command: print(<+strategy.iteration>)\n      resources:\n        limits:\n          memory: <+pipeline.variables.M>\n          cpu: 500m\n\
         - step:\n    type: Background\n    name: bg\n    identifier: bg\n    spec:\n      image: registry.example.com:5000/team/svc\n      imagePullPolicy: Never\n      portBindings:\n        \"8080\": <+pipeline.variables.PORT>\n",
    ))
    .replace(
        "      value: pipeline-only\n",
        "      value: pipeline-only\n    - name: M\n      type: String\n      value: 1Gi\n    - name: PORT\n      type: Number\n      value: 80\n",
    );
    let run = ctx(&yaml);
    let none = StepOutputs::new();
    let t1 = resolve(&run, "t_1", &none).unwrap();
    assert_eq!(t1.image.as_deref(), Some("docker.io/library/python:3.12"));
    assert_eq!(
        t1.argv.clone().unwrap()[..2],
        ["python3", "-c"].map(String::from)
    );
    assert_eq!(t1.script.clone().unwrap().text, "print(1)");
    assert_eq!(t1.memory_bytes, Some(1 << 30));
    assert_eq!(t1.cpu_millis, Some(500));
    assert_eq!(env(&t1, "HARNESS_NODE_INDEX"), Some("1"));
    assert_eq!(env(&t1, "HARNESS_NODE_TOTAL"), Some("2"));
    let bg = resolve(&run, "bg", &none).unwrap();
    assert_eq!(bg.ports, vec![(8080, 80)]);
    assert_eq!(bg.pull_policy, PullPolicy::Never);
    assert_eq!(
        bg.image.as_deref(),
        Some("registry.example.com:5000/team/svc:latest")
    );
    assert_eq!(bg.timeout, Duration::from_secs(7200));
}

#[test]
fn stage_selection_and_outputs_across_stages_and_group_copies() {
    let yaml = "pipeline:\n  name: p\n  identifier: p\n  stages:\n    - stage:\n        name: one\n        identifier: one\n        type: CI\n        spec:\n          execution:\n            steps:\n              - stepGroup:\n                  name: g\n                  identifier: g\n                  strategy:\n                    repeat:\n                      items: [a, b]\n                  steps:\n                    - step:\n                        type: Run\n                        name: w\n                        identifier: w\n                        spec:\n                          command: O=<+repeat.item>\n                          outputVariables:\n                            - name: O\n                    - step:\n                        type: Run\n                        name: r\n                        identifier: r\n                        spec:\n                          command: echo <+steps.w.output.outputVariables.O>\n    - stage:\n        name: two\n        identifier: two\n        type: CI\n        spec:\n          execution:\n            steps:\n              - step:\n                  type: Run\n                  name: x\n                  identifier: x\n                  spec:\n                    image: alpine:<+pipeline.stages.one.spec.execution.steps.w.output.outputVariables.O>\n";
    let err = RunContext::new(
        &load(yaml),
        store(),
        &Config::default(),
        RunOptions {
            stages: vec!["twoo".into()],
            read_codebase: false,
            ..RunOptions::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("did you mean `two`?"), "{err}");
    let mut run = ctx(yaml);
    run.check_plan().unwrap();
    let stages: Vec<String> = run.stages().iter().map(|s| s.id.value.clone()).collect();
    assert_eq!(stages, ["one", "two"]);
    // Inside copy g_1, `steps.w` is that copy's step.
    let outputs = StepOutputs::from([
        (
            "g_0.w".to_string(),
            BTreeMap::from([("O".to_string(), "a".to_string())]),
        ),
        (
            "g_1.w".to_string(),
            BTreeMap::from([("O".to_string(), "b".to_string())]),
        ),
    ]);
    {
        let one = run.stages()[0];
        let sc = run.stage(one).unwrap();
        let mut seen = Vec::new();
        for_each_step(&one.execution, &[], &mut |step, groups| {
            if step.id.value == "r" {
                let r = sc.resolve_step(step, groups, &outputs, &StepStatuses::new())?;
                seen.push((r.id, r.script.unwrap().text));
            }
            Ok::<(), ResolveError>(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                ("g_0_r".to_string(), "echo a".to_string()),
                ("g_1_r".to_string(), "echo b".to_string())
            ]
        );
    }
    run.record_outputs(
        "one",
        StepOutputs::from([(
            "g_1.w".to_string(),
            BTreeMap::from([("O".to_string(), "3.20".to_string())]),
        )]),
    );
    let x = {
        let two = run.stages()[1];
        let sc = run.stage(two).unwrap();
        let (step, groups) = find(&two.execution, "x").unwrap();
        sc.resolve_step(step, &groups, &StepOutputs::new(), &StepStatuses::new())
            .unwrap()
    };
    assert_eq!(x.image.as_deref(), Some("docker.io/library/alpine:3.20"));
}

#[test]
fn values_built_from_secrets_are_secret_too() {
    let yaml = stage(&indent(
        "- step:\n    type: Run\n    name: a\n    identifier: a\n    spec:\n      command: echo $AUTH\n      envVariables:\n        UPPER: <+pipeline.variables.AUTH.toUpperCase()>\n",
    ))
    .replace(
        "      value: pipeline-only\n",
        "      value: pipeline-only\n    - name: T\n      type: Secret\n      value: tok\n    - name: AUTH\n      type: String\n      value: user:<+pipeline.variables.T>\n",
    );
    let run = ctx(&yaml);
    let a = resolve(&run, "a", &StepOutputs::new()).unwrap();
    let auth = format!("user:{SECRET}");
    assert_eq!(env(&a, "T"), Some(SECRET));
    assert_eq!(env(&a, "AUTH"), Some(auth.as_str()));
    assert_eq!(env(&a, "UPPER"), Some(auth.to_uppercase().as_str()));
    for v in [SECRET.to_string(), auth.clone(), auth.to_uppercase()] {
        assert!(a.secret_values.contains(&v), "{v} not listed for masking");
    }
    // The plan masks all three.
    let stage = run.stages()[0];
    let text = crate::runner::plan::stage_plan(&run.stage(stage).unwrap(), &run.masker()).unwrap();
    assert!(
        !text.contains(SECRET) && !text.contains(&auth.to_uppercase()),
        "{text}"
    );
    assert!(text.contains("UPPER=**************"), "{text}");
}

#[test]
fn statuses_of_group_copies_and_earlier_stages() {
    let yaml = "pipeline:\n  name: p\n  identifier: p\n  stages:\n    - stage:\n        name: one\n        identifier: one\n        type: CI\n        spec:\n          execution:\n            steps:\n              - stepGroup:\n                  name: g\n                  identifier: g\n                  strategy:\n                    repeat:\n                      items: [a, b]\n                  steps:\n                    - step:\n                        type: Run\n                        name: w\n                        identifier: w\n                        spec:\n                          command: echo\n                    - step:\n                        type: Run\n                        name: r\n                        identifier: r\n                        spec:\n                          command: echo <+steps.w.status>/<+steps.w.retryCount> <+stage.status>\n    - stage:\n        name: two\n        identifier: two\n        type: CI\n        spec:\n          execution:\n            steps:\n              - step:\n                  type: Run\n                  name: x\n                  identifier: x\n                  spec:\n                    command: echo <+pipeline.stages.one.status> <+pipeline.stages.one.spec.execution.steps.w.status> <+stages.one.spec.execution.steps.g_1.steps.r.status>\n";
    let mut run = ctx(yaml);
    let state = |status, retry_count| StepState {
        status,
        retry_count,
    };
    // Inside copy g_1, `steps.w` is that copy's step.
    let statuses = StepStatuses::from([
        ("g_0.w".to_string(), state(HarnessStatus::Succeeded, 0)),
        ("g_1.w".to_string(), state(HarnessStatus::IgnoreFailed, 2)),
    ]);
    {
        let one = run.stages()[0];
        let sc = run.stage(one).unwrap();
        let mut seen = Vec::new();
        for_each_step(&one.execution, &[], &mut |step, groups| {
            if step.id.value == "r" {
                let r = sc.resolve_step(step, groups, &StepOutputs::new(), &statuses)?;
                seen.push(r.script.unwrap().text);
            }
            Ok::<(), ResolveError>(())
        })
        .unwrap();
        assert_eq!(
            seen,
            ["echo SUCCEEDED/0 RUNNING", "echo IGNORE_FAILED/2 RUNNING"]
        );
    }
    // Stage one ended with only g_1.w recorded: the rest never started.
    let steps = StepStatuses::from([("g_1.w".to_string(), state(HarnessStatus::IgnoreFailed, 0))]);
    run.record_statuses("one", HarnessStatus::IgnoreFailed, steps);
    let two = run.stages()[1];
    let sc = run.stage(two).unwrap();
    let (x, groups) = find(&two.execution, "x").unwrap();
    let r = sc
        .resolve_step(x, &groups, &StepOutputs::new(), &StepStatuses::new())
        .unwrap();
    assert_eq!(
        r.script.unwrap().text,
        "echo IGNORE_FAILED IGNORE_FAILED SKIPPED"
    );
}

#[test]
fn a_field_corral_does_not_provide_renders_as_null() {
    let yaml = stage(&indent(
        "- step:\n    type: Run\n    name: a\n    identifier: a\n    spec:\n      command: echo <+step.setupId> <+step.identifier> <+stage.spec.infrastructure.spec.os>\n",
    ));
    let run = ctx(&yaml);
    let a = resolve(&run, "a", &StepOutputs::new()).unwrap();
    assert_eq!(a.script.unwrap().text, "echo null a null");
    // A step of the pipeline that does not exist stays an error.
    let yaml = stage(&indent(
        "- step:\n    type: Run\n    name: a\n    identifier: a\n    spec:\n      command: echo <+steps.nope.status>\n",
    ));
    assert!(crate::pipeline::load_str(&yaml, Path::new("p.yaml")).is_err());
}

#[test]
fn every_pipeline_field_corral_knows_resolves() {
    let yaml = stage(&indent(
        "- step:\n    type: Run\n    name: a\n    identifier: a\n    spec:\n      command: echo <+pipeline.startTs> <+pipeline.execution.url> <+pipeline.executionUrl> <+pipeline.tags> <+account.identifier> <+pipeline.triggerType>\n",
    ));
    let run = ctx(&yaml);
    let a = resolve(&run, "a", &StepOutputs::new()).unwrap();
    let text = a.script.unwrap().text;
    let words: Vec<&str> = text.split(' ').collect();
    let start: i64 = words[1].parse().unwrap();
    assert_eq!(start, run.options.start_ts);
    assert!(
        start > 1_600_000_000_000,
        "milliseconds since the epoch: {start}"
    );
    assert_eq!(words[2..], ["null", "null", "null", "null", "MANUAL"]);
}
