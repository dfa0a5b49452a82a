//! The pipeline's failure strategies mapped onto `supervise`'s.

use super::supervise::{self, Action, ErrorMatch};
use crate::pipeline::model;

/// The pipeline's failure strategies in `supervise` terms (rollback and
/// manual intervention were already mapped by the model; unknown error
/// names never match).
pub(super) fn strategies(list: &[model::FailureStrategy]) -> Vec<supervise::FailureStrategy> {
    list.iter()
        .map(|fs| supervise::FailureStrategy {
            errors: fs
                .errors
                .iter()
                .filter_map(|e| ErrorMatch::parse(e.as_str()))
                .collect(),
            action: action(&fs.action),
        })
        .collect()
}

fn action(a: &model::FailureAction) -> Action {
    match a {
        model::FailureAction::Ignore => Action::Ignore,
        model::FailureAction::MarkAsSuccess => Action::MarkAsSuccess,
        model::FailureAction::Abort => Action::Abort,
        model::FailureAction::MarkAsFailure => Action::MarkAsFailure,
        model::FailureAction::Retry {
            count,
            intervals,
            on_retry_failure,
        } => Action::Retry(supervise::Retry {
            count: *count,
            intervals: intervals.clone(),
            on_retry_failure: Box::new(action(on_retry_failure)),
        }),
    }
}
