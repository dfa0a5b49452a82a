//! Failure strategies: `onFailure` error types and the actions corral can
//! take (Ignore, Retry, MarkAsSuccess, Abort, MarkAsFailure).

use super::duration;
use super::fields::{self, list, number_setting, Fields};
use super::location::{suggest, Diagnostics, DocPath};
use super::model::{FailureAction, FailureStrategy, Setting};
use super::yaml::Node;

const ERROR_TYPES: &[&str] = &[
    "AllErrors",
    "Unknown",
    "Timeout",
    "Authentication",
    "Connectivity",
    "Authorization",
    "Verification",
    "DelegateProvisioning",
    "PolicyEvaluationFailure",
    "InputTimeoutError",
    "ApprovalRejection",
    "DelegateRestart",
    "UserMarkedFailure",
    "InfrastructureFailure",
    "PluginImageFailure",
    "ResourceLimitsFailure",
    "ConfigurationFailure",
    "RetryableTransientFailure",
];

/// Harness actions corral cannot perform: rollbacks and manual steps.
const UNSUPPORTED_ACTIONS: &[&str] = &[
    "StageRollback",
    "StepGroupRollback",
    "PipelineRollback",
    "ManualIntervention",
    "ProceedWithDefaultValues",
    "RetryStepGroup",
];

const SUPPORTED_ACTIONS: &[&str] = &["Ignore", "Retry", "MarkAsSuccess", "Abort", "MarkAsFailure"];

pub fn failure_strategies(
    d: &mut Diagnostics,
    node: &Node,
    path: &DocPath,
) -> Vec<FailureStrategy> {
    let mut out = Vec::new();
    for (i, item) in list(d, node, path, "failureStrategies").iter().enumerate() {
        let path = path.index(i);
        let Some(f) = Fields::of(d, item, &path, "a failure strategy", &["onFailure"]) else {
            continue;
        };
        let Some((on_failure, path)) = f.get("onFailure") else {
            d.error(f.loc, &path, "a failure strategy is missing `onFailure`");
            continue;
        };
        let Some(f) = Fields::of(d, on_failure, &path, "`onFailure`", &["errors", "action"]) else {
            continue;
        };
        let errors = match f.get("errors") {
            Some((n, p)) => fields::string_list(d, n, &p),
            None => Vec::new(),
        };
        for (j, e) in errors.iter().enumerate() {
            if !ERROR_TYPES.contains(&e.value.as_str()) {
                let hint = fields_hint(&e.value, ERROR_TYPES);
                d.error_hint(
                    e.loc,
                    &path.key("errors").index(j),
                    format!("`{}` is not a failure type", e.value),
                    hint,
                );
            }
        }
        let action = match f.get("action") {
            Some((n, p)) => action(d, n, &p, true),
            None => {
                d.error(
                    f.loc,
                    &path,
                    "`onFailure` is missing the required field `action`",
                );
                None
            }
        };
        if let Some(action) = action {
            out.push(FailureStrategy {
                errors,
                action,
                loc: item.loc,
            });
        }
    }
    out
}

pub(super) fn fields_hint(word: &str, choices: &[&str]) -> String {
    suggest(word, choices.iter().copied())
        .unwrap_or_else(|| format!("use one of {}", choices.join(", ")))
}

fn action(
    d: &mut Diagnostics,
    node: &Node,
    path: &DocPath,
    allow_retry: bool,
) -> Option<FailureAction> {
    let f = Fields::of(d, node, path, "an action", &["type", "spec"])?;
    let kind = f.required(d, "type", "an action")?;
    let type_path = path.key("type");
    match kind.value.as_str() {
        "Ignore" => Some(FailureAction::Ignore),
        "MarkAsSuccess" => Some(FailureAction::MarkAsSuccess),
        "Abort" => Some(FailureAction::Abort),
        "MarkAsFailure" => Some(FailureAction::MarkAsFailure),
        "Retry" if allow_retry => retry(d, &f, path),
        "Retry" => {
            d.error(kind.loc, &type_path, "`onRetryFailure` cannot retry again");
            None
        }
        other if UNSUPPORTED_ACTIONS.contains(&other) => {
            d.error_hint(
                kind.loc,
                &type_path,
                format!("failure strategy action `{other}` is not supported by corral"),
                format!("use one of {}", SUPPORTED_ACTIONS.join(", ")),
            );
            None
        }
        other => {
            d.error_hint(
                kind.loc,
                &type_path,
                format!("`{other}` is not a failure strategy action"),
                fields_hint(other, SUPPORTED_ACTIONS),
            );
            None
        }
    }
}

fn retry(d: &mut Diagnostics, action_fields: &Fields<'_>, path: &DocPath) -> Option<FailureAction> {
    let Some((spec, spec_path)) = action_fields.get("spec") else {
        d.error_hint(
            action_fields.loc,
            path,
            "a Retry action needs a `spec`",
            "add `spec: {retryCount: 2, retryIntervals: [10s], onRetryFailure: {action: {type: MarkAsFailure}}}`",
        );
        return None;
    };
    let known = ["retryCount", "retryIntervals", "onRetryFailure"];
    let f = Fields::of(d, spec, &spec_path, "a Retry spec", &known)?;
    let count = match f.get("retryCount") {
        Some((n, p)) => match number_setting::<u32>(d, n, &p, "retryCount")? {
            Setting::Value(c) => c,
            Setting::Expr(e) => {
                d.error(e.loc, &p, "retryCount must be a number, not an expression");
                return None;
            }
        },
        None => {
            d.error(f.loc, &spec_path, "a Retry spec is missing `retryCount`");
            return None;
        }
    };
    let mut intervals = Vec::new();
    if let Some((n, p)) = f.get("retryIntervals") {
        for (i, s) in fields::string_list(d, n, &p).iter().enumerate() {
            match duration::parse(&s.value) {
                Ok(t) => intervals.push(t),
                Err(e) => d.error_hint(s.loc, &p.index(i), e.to_string(), duration::HINT),
            }
        }
    }
    let on_retry_failure = match f.get("onRetryFailure") {
        Some((n, p)) => {
            let inner = Fields::of(d, n, &p, "`onRetryFailure`", &["action"])?;
            match inner.get("action") {
                Some((n, p)) => action(d, n, &p, false)?,
                None => {
                    d.error(inner.loc, &p, "`onRetryFailure` is missing `action`");
                    return None;
                }
            }
        }
        None => {
            d.error(
                f.loc,
                &spec_path,
                "a Retry spec is missing `onRetryFailure`",
            );
            return None;
        }
    };
    Some(FailureAction::Retry {
        count,
        intervals,
        on_retry_failure: Box::new(on_retry_failure),
    })
}
