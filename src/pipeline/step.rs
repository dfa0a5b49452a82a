//! Node tree -> model for execution items: steps, `parallel` blocks and
//! step groups.

use super::common;
use super::duration::DEFAULT_STEP_TIMEOUT;
use super::failure;
use super::fields::{identifier, list, Fields};
use super::location::{Diagnostics, DocPath};
use super::model::{ExecutionItem, Parallel, Step, StepGroup, StepKind, Str};
use super::step_spec::step_spec;
use super::yaml::Node;

const ITEM_FIELDS: &[&str] = &["step", "parallel", "stepGroup", "insert"];

const GROUP_FIELDS: &[&str] = &[
    "name",
    "identifier",
    "steps",
    "when",
    "failureStrategies",
    "sharedPaths",
    "variables",
    "stepGroupInfra",
    "strategy",
    "delegateSelectors",
    "template",
    "description",
];

const STEP_FIELDS: &[&str] = &[
    "type",
    "name",
    "identifier",
    "description",
    "spec",
    "timeout",
    "when",
    "failureStrategies",
    "strategy",
    "enforce",
    "template",
    "delegateSelectors",
];

/// A list of execution items (`steps:` of a stage or group, or the
/// children of `parallel:`); it must not be empty.
pub fn execution_items(
    d: &mut Diagnostics,
    node: &Node,
    path: &DocPath,
    what: &str,
) -> Vec<ExecutionItem> {
    let items = list(d, node, path, what);
    // A non-list already got its own error from `list`.
    let is_list = matches!(node.value, super::yaml::Value::Seq(_)) || node.is_null();
    if items.is_empty() && is_list {
        d.error_hint(
            node.loc,
            path,
            format!("{what} has no steps"),
            "add at least one step",
        );
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = path.index(i);
        let Some(f) = Fields::of(d, item, &path, "an execution item", ITEM_FIELDS) else {
            continue;
        };
        if let Some(e) = f.entry("insert") {
            d.error(
                e.key_loc,
                &path.key("insert"),
                "`insert` items are not supported by corral",
            );
            continue;
        }
        let present: Vec<&str> = ["step", "parallel", "stepGroup"]
            .into_iter()
            .filter(|k| f.has(k))
            .collect();
        if present.len() != 1 {
            d.error_hint(
                item.loc,
                &path,
                format!("an execution item needs exactly one of `step`, `parallel` or `stepGroup` (found {})", present.len()),
                "split it into separate `- step:` items",
            );
            continue;
        }
        let Some((n, p)) = f.get(present[0]) else {
            d.error(
                item.loc,
                &path.key(present[0]),
                format!("`{}` is empty", present[0]),
            );
            continue;
        };
        let built = match present[0] {
            "step" => step(d, n, &p).map(ExecutionItem::Step),
            "parallel" => Some(ExecutionItem::Parallel(Parallel {
                items: execution_items(d, n, &p, "`parallel`"),
                max_concurrency: None,
                loc: n.loc,
            })),
            _ => group(d, n, &p).map(ExecutionItem::Group),
        };
        out.extend(built);
    }
    out
}

fn group(d: &mut Diagnostics, node: &Node, path: &DocPath) -> Option<StepGroup> {
    let f = Fields::of(d, node, path, "a step group", GROUP_FIELDS)?;
    if let Some(e) = f.entry("template") {
        d.error_hint(
            e.key_loc,
            &path.key("template"),
            "step group templates are not supported by corral",
            "templates live in a Harness account; paste the resolved step group YAML instead",
        );
        return None;
    }
    let id = identifier(d, &f, "a step group");
    let name = f.required(d, "name", "a step group");
    let steps = match f.get("steps") {
        Some((n, p)) => execution_items(d, n, &p, "a step group's `steps`"),
        None => {
            d.error(
                f.loc,
                path,
                "a step group is missing the required field `steps`",
            );
            Vec::new()
        }
    };
    Some(StepGroup {
        id: id?,
        name: name?,
        variables: f
            .get("variables")
            .map(|(n, p)| common::variables(d, n, &p))
            .unwrap_or_default(),
        shared_paths: f
            .get("sharedPaths")
            .map(|(n, p)| super::stage_spec::shared_paths(d, n, &p))
            .unwrap_or_default(),
        when: f
            .get("when")
            .and_then(|(n, p)| common::when(d, n, &p, "stageStatus")),
        failure_strategies: f
            .get("failureStrategies")
            .map(|(n, p)| failure::failure_strategies(d, n, &p))
            .unwrap_or_default(),
        strategy: f
            .get("strategy")
            .and_then(|(n, p)| common::strategy(d, n, &p)),
        iteration: None,
        steps,
        loc: node.loc,
    })
}

fn step(d: &mut Diagnostics, node: &Node, path: &DocPath) -> Option<Step> {
    let f = Fields::of(d, node, path, "a step", STEP_FIELDS)?;
    if let Some(e) = f.entry("template") {
        d.error_hint(
            e.key_loc,
            &path.key("template"),
            "step templates are not supported by corral",
            "templates live in a Harness account; paste the resolved step YAML instead",
        );
        return None;
    }
    let kind_str = f.required(d, "type", "a step")?;
    let kind = match kind_str.value.as_str() {
        "Run" => StepKind::Run,
        "Background" => StepKind::Background,
        other => {
            unsupported_type(d, &kind_str, &path.key("type"), other);
            return None;
        }
    };
    let id = identifier(d, &f, "a step");
    let name = f.required(d, "name", "a step");
    let spec = match f.get("spec") {
        Some((n, p)) => step_spec(d, n, &p, kind),
        None => {
            d.error(f.loc, path, "a step is missing the required field `spec`");
            None
        }
    };
    let failure_strategies = f
        .get("failureStrategies")
        .map(|(n, p)| failure::failure_strategies(d, n, &p))
        .unwrap_or_default();
    if kind == StepKind::Background && !failure_strategies.is_empty() {
        if let Some(e) = f.entry("failureStrategies") {
            d.error_hint(
                e.key_loc,
                &path.key("failureStrategies"),
                "Background steps do not support failure strategies",
                "a Background step's exit never fails the stage; remove `failureStrategies`",
            );
        }
    }
    Some(Step {
        id: id?,
        name: name?,
        description: f.string(d, "description"),
        kind,
        spec: spec?,
        timeout: common::timeout(d, &f).unwrap_or(DEFAULT_STEP_TIMEOUT),
        when: f
            .get("when")
            .and_then(|(n, p)| common::when(d, n, &p, "stageStatus")),
        failure_strategies,
        strategy: f
            .get("strategy")
            .and_then(|(n, p)| common::strategy(d, n, &p)),
        iteration: None,
        loc: node.loc,
    })
}

/// Harness step types that corral knows by name but does not run.
const KNOWN_STEP_TYPES: &[&str] = &[
    "Plugin",
    "Action",
    "Bitrise",
    "RunTests",
    "Test",
    "BuildAndPushDockerRegistry",
    "BuildAndPushECR",
    "BuildAndPushGCR",
    "BuildAndPushGAR",
    "BuildAndPushACR",
    "RestoreCacheS3",
    "SaveCacheS3",
    "RestoreCacheGCS",
    "SaveCacheGCS",
    "S3Upload",
    "GCSUpload",
    "ArtifactoryUpload",
    "GitClone",
    "Security",
    "Semgrep",
    "Snyk",
    "Owasp",
    "OsvScanner",
    "SscaOrchestration",
    "ShellScript",
    "Http",
    "K8sApply",
    "K8sRollingDeploy",
];

fn unsupported_type(d: &mut Diagnostics, kind: &Str, path: &DocPath, other: &str) {
    let hint = if KNOWN_STEP_TYPES.contains(&other) {
        "corral runs `Run` and `Background` steps; do the same work in a Run step".to_string()
    } else if let Some(s) = super::location::suggest(other, ["Run", "Background"]) {
        s
    } else {
        "corral runs `Run` and `Background` steps".to_string()
    };
    d.error_hint(
        kind.loc,
        path,
        format!("step type `{other}` is not supported by corral"),
        hint,
    );
}
