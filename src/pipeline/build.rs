//! Node tree -> model: the pipeline wrapper and stages. Steps live in
//! `step.rs`. Every problem goes to `Diagnostics`; building continues so
//! one run reports them all.

use std::path::Path;

use super::common;
use super::fields::{self, identifier, list, one_of, Fields};
use super::location::{Diagnostics, DocPath};
use super::model::{Codebase, CodebaseBuild, Infrastructure, Pipeline, Stage, StageSpec, Str};
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
        (None, Some(_)) => (root, top, false),
        _ => {
            d.error_hint(
                root.loc,
                &DocPath::root(),
                "this is not a pipeline: there is no `pipeline:` or `stages:` at the top level",
                "start the file with `pipeline:` (name, identifier, stages) or a bare `stages:` list",
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
    let stages = match f.get("stages") {
        Some((n, p)) => stages(d, n, &p),
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
        codebase: codebase(d, &f),
        variables,
        timeout: common::timeout(d, &f),
        stages,
    })
}

fn codebase(d: &mut Diagnostics, pipeline: &Fields<'_>) -> Option<Codebase> {
    let (props, p) = pipeline.get("properties")?;
    let props = Fields::of(d, props, &p, "`properties`", &["ci"])?;
    let (ci, p) = props.get("ci")?;
    let ci = Fields::of(d, ci, &p, "`properties.ci`", &["codebase"])?;
    let (node, p) = ci.get("codebase")?;
    let known = [
        "connectorRef",
        "repoName",
        "build",
        "depth",
        "prCloneStrategy",
        "sslVerify",
        "lfs",
        "debug",
        "resources",
        "submoduleStrategy",
        "sparseCheckout",
        "cloneDirectory",
        "detectBuildTool",
    ];
    let f = Fields::of(d, node, &p, "`codebase`", &known)?;
    let build = match f.get("build") {
        Some((n, bp)) if n.as_scalar().is_some() => {
            fields::string(d, n, &bp).map(CodebaseBuild::Input)
        }
        Some((n, bp)) => {
            Fields::of(d, n, &bp, "`codebase.build`", &["type", "spec"]).and_then(|b| {
                let kind = b.required(d, "type", "`codebase.build`")?;
                let value = b.get("spec").and_then(|(n, sp)| {
                    let s = Fields::of(
                        d,
                        n,
                        &sp,
                        "`build.spec`",
                        &["branch", "tag", "number", "commitSha"],
                    )?;
                    ["branch", "tag", "number", "commitSha"]
                        .iter()
                        .find_map(|k| s.string(d, k))
                });
                Some(CodebaseBuild::Spec { kind, value })
            })
        }
        None => None,
    };
    Some(Codebase {
        connector_ref: f.string(d, "connectorRef"),
        repo_name: f.string(d, "repoName"),
        build,
        depth: f.string(d, "depth"),
        loc: node.loc,
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
    let spec = stage_spec(d, &s);
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
            .map(|(n, p)| common::failure_strategies(d, n, &p))
            .unwrap_or_default(),
        strategy: f
            .get("strategy")
            .and_then(|(n, p)| common::strategy(d, n, &p)),
        iteration: None,
        timeout: common::timeout(d, &f),
        spec,
        execution: execution?,
        parallel_group,
        loc: node.loc,
    })
}

fn stage_spec(d: &mut Diagnostics, s: &Fields<'_>) -> StageSpec {
    let clone_codebase = s
        .get("cloneCodebase")
        .and_then(|(n, p)| fields::bool_setting(d, n, &p));
    let (mut platform_os, mut platform_arch) = (None, None);
    if let Some((n, p)) = s.get("platform") {
        if let Some(pf) = Fields::of(d, n, &p, "`platform`", &["os", "arch"]) {
            platform_os = pf.string(d, "os");
            platform_arch = pf.string(d, "arch");
            if let Some(os) = platform_os
                .as_ref()
                .filter(|os| os.value != "Linux" && !os.is_expression())
            {
                d.warn_hint(
                    os.loc,
                    &p.key("os"),
                    format!(
                        "platform os `{}` is ignored: corral runs steps in Linux sandboxes",
                        os.value
                    ),
                    "steps that need Windows or macOS tools will fail",
                );
            }
        }
    }
    let mut infrastructure = Infrastructure::Unspecified;
    if let Some((n, p)) = s.get("runtime") {
        if let Some(rt) = Fields::of(d, n, &p, "`runtime`", &["type", "spec"]) {
            infrastructure = match rt.get("type") {
                Some((n, tp)) => match one_of(
                    d,
                    n,
                    &tp,
                    "runtime type",
                    &[("Cloud", true), ("Docker", false)],
                ) {
                    Some(true) => Infrastructure::Cloud,
                    Some(false) => Infrastructure::Docker,
                    None => Infrastructure::Unspecified,
                },
                None => {
                    d.error(rt.loc, &p, "`runtime` is missing the required field `type`");
                    Infrastructure::Unspecified
                }
            };
        }
    }
    if let Some((n, p)) = s.get("infrastructure") {
        if let Some(infra) = infrastructure_of(d, n, &p) {
            infrastructure = infra;
        }
    }
    let shared_paths = s
        .get("sharedPaths")
        .map(|(n, p)| fields::string_list(d, n, &p))
        .unwrap_or_default();
    StageSpec {
        clone_codebase,
        platform_os,
        platform_arch,
        infrastructure,
        shared_paths,
    }
}

fn infrastructure_of(d: &mut Diagnostics, node: &Node, path: &DocPath) -> Option<Infrastructure> {
    let f = Fields::of(
        d,
        node,
        path,
        "`infrastructure`",
        &["type", "spec", "useFromStage"],
    )?;
    if let Some(from) = f.string(d, "useFromStage") {
        return Some(Infrastructure::UseFromStage(from));
    }
    let Some(kind) = f.string(d, "type") else {
        d.warn(
            f.loc,
            path,
            "`infrastructure` has no `type`; corral runs the stage in the local sandbox",
        );
        return None;
    };
    Some(match kind.value.as_str() {
        "KubernetesDirect" => Infrastructure::KubernetesDirect,
        "VM" => Infrastructure::Vm,
        "UseFromStage" => {
            let from = f
                .get("spec")
                .and_then(|(n, p)| Fields::of(d, n, &p, "`infrastructure.spec`", &["useFromStage"]))
                .and_then(|s| s.string(d, "useFromStage"));
            Infrastructure::UseFromStage(from.unwrap_or_else(|| Str::new("", kind.loc)))
        }
        _ => {
            d.warn_hint(
                kind.loc,
                &path.key("type"),
                format!("infrastructure type `{}` is unknown; corral runs the stage in the local sandbox", kind.value),
                "Harness infrastructure types are KubernetesDirect, VM and UseFromStage; `Cloud` belongs under `runtime`",
            );
            Infrastructure::Other(kind)
        }
    })
}
