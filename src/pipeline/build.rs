//! Node tree -> model: the pipeline wrapper and stages. Steps live in
//! `step.rs`. Every problem goes to `Diagnostics`; building continues so
//! one run reports them all.

use std::path::Path;

use super::common;
use super::failure;
use super::fields::{identifier, list, Fields};
use super::location::{suggest, Diagnostics, DocPath};
use super::model::{Pipeline, Stage};
use super::stage_spec;
use super::step::execution_items;
use super::yaml::{Node, Value};

const PIPELINE_FIELDS: &[&str] = &[
    "name",
    "identifier",
    "projectIdentifier",
    "orgIdentifier",
    "tags",
    "properties",
    "variables",
    "stages",
    "timeout",
    "notificationRules",
    "delegateSelectors",
    "allowStageExecutions",
    "flowControl",
    "template",
    "description",
    "fixedInputsOnRerun",
];

const STAGE_FIELDS: &[&str] = &[
    "name",
    "identifier",
    "description",
    "type",
    "variables",
    "when",
    "failureStrategies",
    "strategy",
    "timeout",
    "tags",
    "delegateSelectors",
    "spec",
    "template",
];

const STAGE_SPEC_FIELDS: &[&str] = &[
    "cloneCodebase",
    "platform",
    "runtime",
    "infrastructure",
    "sharedPaths",
    "execution",
    "caching",
    "buildIntelligence",
    "serviceDependencies",
];

/// Builds the pipeline from the document root; `None` when the shape is
/// too broken to say anything (the reason is in `d`).
pub fn pipeline(d: &mut Diagnostics, root: &Node, file: &Path) -> Option<Pipeline> {
    let top = DocPath::root();
    let key = |k: &str| match &root.value {
        Value::Map(entries) => entries.iter().find(|e| e.key == k),
        _ => None,
    };
    let (body, path, wrapped) = match (key("pipeline"), key("stages")) {
        (Some(e), _) if !e.value.is_null() => {
            Fields::of(d, root, &top, "the document", &["pipeline"])?;
            (&e.value, top.key("pipeline"), true)
        }
        (Some(e), _) if key("stages").is_none() => {
            d.error_hint(
                e.key_loc,
                &top.key("pipeline"),
                "`pipeline` is empty",
                "give it a name, an identifier and stages",
            );
            return None;
        }
        (_, Some(_)) => (root, top, false),
        _ => {
            let keys: Vec<&str> = match &root.value {
                Value::Map(entries) => entries.iter().map(|e| e.key.as_str()).collect(),
                _ => Vec::new(),
            };
            let hint = keys
                .iter()
                .find_map(|k| {
                    suggest(k, ["pipeline", "stages"]).map(|s| format!("`{k}`: {s}"))
                })
                .unwrap_or_else(|| {
                    "start the file with `pipeline:` (name, identifier, stages) or a bare `stages:` list"
                        .to_string()
                });
            d.error_hint(
                root.loc,
                &DocPath::root(),
                "this is not a pipeline: there is no `pipeline:` or `stages:` at the top level",
                hint,
            );
            return None;
        }
    };
    let f = Fields::of(d, body, &path, "`pipeline`", PIPELINE_FIELDS)?;
    if let Some(e) = f.entry("template") {
        d.error_hint(
            e.key_loc,
            &path.key("template"),
            "pipeline templates are not supported by corral",
            "templates live in a Harness account; paste the resolved pipeline YAML instead",
        );
        return None;
    }
    let (name, identifier) = if wrapped {
        (
            f.required(d, "name", "`pipeline`"),
            identifier(d, &f, "`pipeline`"),
        )
    } else {
        (None, None)
    };
    let variables = f
        .get("variables")
        .map(|(n, p)| common::variables(d, n, &p))
        .unwrap_or_default();
    let stages = match f.entry("stages") {
        Some(e) => stages(d, &e.value, &path.key("stages")),
        None => {
            d.error(
                f.loc,
                &path,
                "`pipeline` is missing the required field `stages`",
            );
            Vec::new()
        }
    };
    Some(Pipeline {
        file: file.to_path_buf(),
        name,
        identifier,
        project_identifier: f.string(d, "projectIdentifier"),
        org_identifier: f.string(d, "orgIdentifier"),
        codebase: stage_spec::codebase(d, &f),
        variables,
        timeout: common::timeout(d, &f),
        stages,
    })
}

fn stages(d: &mut Diagnostics, node: &Node, path: &DocPath) -> Vec<Stage> {
    let items = list(d, node, path, "`stages`");
    if items.is_empty() {
        d.error(node.loc, path, "the pipeline has no stages");
    }
    let mut out = Vec::new();
    let mut groups = 0;
    for (i, item) in items.iter().enumerate() {
        let path = path.index(i);
        let Some(f) = Fields::of(d, item, &path, "a stages item", &["stage", "parallel"]) else {
            continue;
        };
        match (f.get("stage"), f.get("parallel")) {
            (Some((n, p)), None) => out.extend(stage(d, n, &p, None)),
            (None, Some((n, p))) => {
                groups += 1;
                let children = list(d, n, &p, "`parallel`");
                if children.is_empty() {
                    d.error(n.loc, &p, "`parallel` has no stages");
                }
                for (j, child) in children.iter().enumerate() {
                    let cp = p.index(j);
                    let Some(cf) = Fields::of(d, child, &cp, "a parallel item", &["stage"]) else {
                        continue;
                    };
                    match cf.get("stage") {
                        Some((n, sp)) => out.extend(stage(d, n, &sp, Some(groups))),
                        None => d.error(
                            child.loc,
                            &cp,
                            "a `parallel` item of stages must hold a `stage`",
                        ),
                    }
                }
            }
            _ => d.error_hint(
                item.loc,
                &path,
                "each stages item needs exactly one of `stage` or `parallel`",
                "write `- stage: {...}` or `- parallel: [...]`",
            ),
        }
    }
    out
}

fn stage(
    d: &mut Diagnostics,
    node: &Node,
    path: &DocPath,
    parallel_group: Option<usize>,
) -> Option<Stage> {
    let f = Fields::of(d, node, path, "a stage", STAGE_FIELDS)?;
    if let Some(e) = f.entry("template") {
        d.error_hint(
            e.key_loc,
            &path.key("template"),
            "stage templates are not supported by corral",
            "templates live in a Harness account; paste the resolved stage YAML instead",
        );
        return None;
    }
    let kind = f.string(d, "type");
    if kind.is_none() {
        d.error_hint(
            f.loc,
            path,
            "a stage is missing the required field `type`",
            "add `type: CI`",
        );
    }
    if let Some(kind) = &kind {
        if kind.value != "CI" {
            let hint = if kind.value.eq_ignore_ascii_case("ci") {
                "did you mean `CI`?".to_string()
            } else {
                "corral runs CI (build) stages only".to_string()
            };
            d.error_hint(
                kind.loc,
                &path.key("type"),
                format!("stage type `{}` is not supported by corral", kind.value),
                hint,
            );
            return None;
        }
    }
    let id = identifier(d, &f, "a stage");
    let name = f.required(d, "name", "a stage");
    let Some((spec_node, spec_path)) = f.get("spec") else {
        d.error(f.loc, path, "a stage is missing the required field `spec`");
        return None;
    };
    let s = Fields::of(
        d,
        spec_node,
        &spec_path,
        "a stage `spec`",
        STAGE_SPEC_FIELDS,
    )?;
    let execution = match s.get("execution") {
        Some((n, p)) => Fields::of(d, n, &p, "`execution`", &["steps", "rollbackSteps"]).map(|e| {
            match e.get("steps") {
                Some((n, p)) => execution_items(d, n, &p, "`execution.steps`"),
                None => {
                    d.error(e.loc, &p, "`execution` has no `steps`");
                    Vec::new()
                }
            }
        }),
        None => {
            d.error(s.loc, &spec_path, "a stage `spec` is missing `execution`");
            None
        }
    };
    let spec = stage_spec::stage_spec(d, &s);
    Some(Stage {
        id: id?,
        name: name?,
        description: f.string(d, "description"),
        variables: f
            .get("variables")
            .map(|(n, p)| common::variables(d, n, &p))
            .unwrap_or_default(),
        when: f
            .get("when")
            .and_then(|(n, p)| common::when(d, n, &p, "pipelineStatus")),
        failure_strategies: f
            .get("failureStrategies")
            .map(|(n, p)| failure::failure_strategies(d, n, &p))
            .unwrap_or_default(),
        strategy: f
            .get("strategy")
            .and_then(|(n, p)| common::strategy(d, n, &p)),
        iteration: None,
        timeout: common::timeout(d, &f),
        spec,
        execution: execution?,
        parallel_group,
        max_concurrency: None,
        loop_group: None,
        loc: node.loc,
    })
}
