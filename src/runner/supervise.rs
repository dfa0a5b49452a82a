//! Supervision of step processes and the Harness rules around them:
//! timeouts (a step past its timeout is killed and its status is Timeout),
//! failure strategies (step → step group → stage, innermost first) and `when`
//! gating on the stage status. The rules are pure functions over small types
//! of their own; the executor maps the pipeline model onto them. Waiting
//! for and stopping processes is in `process`.

mod process;

use std::time::Duration;

pub use process::{
    stop, wait_with_timeout, Exit, GroupChild, SuperviseError, Supervised, TEARDOWN_GRACE,
};

use super::report::StepStatus;

/// Harness's default step timeout (`CIStepInfo.DEFAULT_TIMEOUT`).
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);

/// Harness failure types (`onFailure.errors`, without AllErrors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureType {
    /// A step that exited non-zero or died of a signal.
    Unknown,
    Timeout,
    Authentication,
    Connectivity,
    Authorization,
    Verification,
    DelegateProvisioning,
    PolicyEvaluationFailure,
    InputTimeoutError,
    ApprovalRejection,
    DelegateRestart,
    UserMarkedFailure,
    /// The sandbox could not be set up.
    InfrastructureFailure,
    /// The step's image could not be pulled or unpacked.
    PluginImageFailure,
    ResourceLimitsFailure,
    ConfigurationFailure,
    RetryableTransientFailure,
}

const FAILURE_TYPES: [(&str, FailureType); 17] = [
    ("Unknown", FailureType::Unknown),
    ("Timeout", FailureType::Timeout),
    ("Authentication", FailureType::Authentication),
    ("Connectivity", FailureType::Connectivity),
    ("Authorization", FailureType::Authorization),
    ("Verification", FailureType::Verification),
    ("DelegateProvisioning", FailureType::DelegateProvisioning),
    (
        "PolicyEvaluationFailure",
        FailureType::PolicyEvaluationFailure,
    ),
    ("InputTimeoutError", FailureType::InputTimeoutError),
    ("ApprovalRejection", FailureType::ApprovalRejection),
    ("DelegateRestart", FailureType::DelegateRestart),
    ("UserMarkedFailure", FailureType::UserMarkedFailure),
    ("InfrastructureFailure", FailureType::InfrastructureFailure),
    ("PluginImageFailure", FailureType::PluginImageFailure),
    ("ResourceLimitsFailure", FailureType::ResourceLimitsFailure),
    ("ConfigurationFailure", FailureType::ConfigurationFailure),
    (
        "RetryableTransientFailure",
        FailureType::RetryableTransientFailure,
    ),
];

/// One entry of `onFailure.errors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorMatch {
    AllErrors,
    Only(FailureType),
}

impl ErrorMatch {
    /// Parses a Harness error name (`AllErrors`, `Timeout`, …); `None` for
    /// names Harness does not define.
    pub fn parse(name: &str) -> Option<ErrorMatch> {
        if name == "AllErrors" {
            return Some(ErrorMatch::AllErrors);
        }
        FAILURE_TYPES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| ErrorMatch::Only(*t))
    }

    pub fn matches(self, failure: FailureType) -> bool {
        match self {
            ErrorMatch::AllErrors => true,
            ErrorMatch::Only(t) => t == failure,
        }
    }
}

/// The failure actions corral carries out. Harness's rollback and manual
/// intervention actions have no meaning for a local run; the executor maps
/// them to `MarkAsFailure` with a warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Ignore,
    Retry(Retry),
    MarkAsSuccess,
    Abort,
    MarkAsFailure,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub count: u32,
    /// Delay before retry N is `intervals[N-1]`, the last one repeating;
    /// none means retry at once.
    pub intervals: Vec<Duration>,
    /// What to do once every retry failed. A Retry here is a MarkAsFailure.
    pub on_retry_failure: Box<Action>,
}

/// One `onFailure` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureStrategy {
    pub errors: Vec<ErrorMatch>,
    pub action: Action,
}

/// What the executor does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run the step again after `delay`; `attempt` is the attempt to start.
    Retry {
        attempt: u32,
        delay: Duration,
    },
    /// The step counts as failed but the stage goes on as if it had not.
    Ignore,
    MarkAsSuccess,
    /// Fail the stage: later steps run only if their `when` allows it.
    MarkAsFailure,
    /// Stop the whole run: later steps and stages are skipped.
    Abort,
}

/// Decides what follows a failure of type `failure` on attempt `attempt`
/// (1 for the first run). `levels` are the strategies of the step, then of
/// its step groups from innermost out, then of the stage. The innermost level
/// with an entry matching the failure wins; within a level the first matching
/// entry wins. Nothing matching means MarkAsFailure.
pub fn decide(failure: FailureType, attempt: u32, levels: &[&[FailureStrategy]]) -> Decision {
    let action = levels
        .iter()
        .flat_map(|level| level.iter())
        .find(|s| s.errors.iter().any(|e| e.matches(failure)))
        .map(|s| &s.action);
    match action {
        None => Decision::MarkAsFailure,
        Some(Action::Retry(retry)) => {
            let retries_done = attempt.saturating_sub(1);
            if retries_done < retry.count {
                let delay = retry
                    .intervals
                    .get(retries_done as usize)
                    .or(retry.intervals.last())
                    .copied()
                    .unwrap_or(Duration::ZERO);
                Decision::Retry {
                    attempt: attempt + 1,
                    delay,
                }
            } else {
                terminal_decision(&retry.on_retry_failure)
            }
        }
        Some(other) => terminal_decision(other),
    }
}

fn terminal_decision(action: &Action) -> Decision {
    match action {
        Action::Ignore => Decision::Ignore,
        Action::MarkAsSuccess => Decision::MarkAsSuccess,
        Action::Abort => Decision::Abort,
        Action::MarkAsFailure | Action::Retry(_) => Decision::MarkAsFailure,
    }
}

/// How a step's final (non-retried) decision shows in its status, and what
/// it does to the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageEffect {
    Continue,
    Fail,
    Abort,
}

/// The final status of a step whose last attempt ended in `outcome`, after
/// `decision` (ignored when the step succeeded).
pub fn resolve(outcome: &StepOutcome, decision: Option<Decision>) -> (StepStatus, StageEffect) {
    let failed_status = outcome.status();
    if failed_status == StepStatus::Success {
        return (StepStatus::Success, StageEffect::Continue);
    }
    match decision {
        Some(Decision::Ignore) => (StepStatus::Ignored, StageEffect::Continue),
        Some(Decision::MarkAsSuccess) => (StepStatus::Success, StageEffect::Continue),
        Some(Decision::Abort) => (failed_status, StageEffect::Abort),
        Some(Decision::MarkAsFailure) | Some(Decision::Retry { .. }) | None => {
            (failed_status, StageEffect::Fail)
        }
    }
}

/// `when.stageStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageStatusCondition {
    Success,
    Failure,
    All,
}

/// A step's (or stage's) `when`, its JEXL `condition` already evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct When {
    pub stage_status: StageStatusCondition,
    pub condition: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Run,
    Skip(SkipReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// An earlier Abort stopped the run.
    Aborted,
    /// `stageStatus: Success` (the default) after a failure.
    StageFailed,
    /// `stageStatus: Failure` while nothing failed.
    StageSucceeded,
    /// `condition` evaluated to false.
    ConditionFalse,
}

impl SkipReason {
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::Aborted => "the run was aborted",
            SkipReason::StageFailed => "an earlier step failed (when.stageStatus: Success)",
            SkipReason::StageSucceeded => "no earlier step failed (when.stageStatus: Failure)",
            SkipReason::ConditionFalse => "its when.condition is false",
        }
    }

    /// The same for a stage, whose `when` speaks of the pipeline.
    pub fn describe_stage(self) -> &'static str {
        match self {
            SkipReason::Aborted => "the run was aborted",
            SkipReason::StageFailed => {
                "an earlier stage failed (when.pipelineStatus: Success, the default)"
            }
            SkipReason::StageSucceeded => "no earlier stage failed (when.pipelineStatus: Failure)",
            SkipReason::ConditionFalse => "its when.condition is false",
        }
    }
}

/// Whether a step runs, given its `when` (none means `stageStatus: Success`),
/// whether the stage has failed so far, and whether the run was aborted.
pub fn gate(when: Option<&When>, stage_failed: bool, aborted: bool) -> Gate {
    if aborted {
        return Gate::Skip(SkipReason::Aborted);
    }
    let stage_status = when.map_or(StageStatusCondition::Success, |w| w.stage_status);
    match (stage_status, stage_failed) {
        (StageStatusCondition::Success, true) => return Gate::Skip(SkipReason::StageFailed),
        (StageStatusCondition::Failure, false) => return Gate::Skip(SkipReason::StageSucceeded),
        _ => {}
    }
    if when.and_then(|w| w.condition) == Some(false) {
        return Gate::Skip(SkipReason::ConditionFalse);
    }
    Gate::Run
}

/// How a step attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    Exited(i32),
    Signaled(i32),
    /// Killed by corral at its timeout.
    TimedOut,
    /// It never ran (image, sandbox …): the executor names the type.
    NotStarted(FailureType),
}

impl StepOutcome {
    /// The failure type strategies match on, or `None` for a success.
    pub fn failure(&self) -> Option<FailureType> {
        match self {
            StepOutcome::Exited(0) => None,
            StepOutcome::Exited(_) | StepOutcome::Signaled(_) => Some(FailureType::Unknown),
            StepOutcome::TimedOut => Some(FailureType::Timeout),
            StepOutcome::NotStarted(t) => Some(*t),
        }
    }

    /// The status before any failure strategy applies.
    pub fn status(&self) -> StepStatus {
        match self {
            StepOutcome::Exited(0) => StepStatus::Success,
            StepOutcome::TimedOut => StepStatus::Timeout,
            _ => StepStatus::Failed,
        }
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self {
            StepOutcome::Exited(code) => Some(*code),
            _ => None,
        }
    }

    pub fn signal(&self) -> Option<i32> {
        match self {
            StepOutcome::Signaled(sig) => Some(*sig),
            _ => None,
        }
    }
}
