//! The status strings of `<+pipeline.stages.S.status>`,
//! `<+steps.ID.status>` and their other spellings.
//!
//! The value set is Harness's `io.harness.pms.contracts.execution.Status`
//! enum (harness-core `status.proto`): the names SUCCEEDED, FAILED,
//! IGNORE_FAILED, EXPIRED, SKIPPED, ABORTED, RUNNING among others. Harness's
//! docs compare against them as strings (`<+pipeline.stages.S.status> ==
//! "FAILED"`, `<+execution.steps.X.status> == "IGNORE_FAILED"` in the
//! conditional-execution and cache pages). A timed-out step or stage is
//! EXPIRED (docs, "Timeout settings"). A stage's status is computed from
//! its steps' as Harness's `StatusUtils.calculateStatus` does; a started
//! Background step is SUCCEEDED (Harness detaches it and never reports its
//! exit).

use super::report::{StageResult, StageStatus, StepKind, StepStatus};

/// One value of Harness's execution status enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HarnessStatus {
    Running,
    Succeeded,
    Failed,
    IgnoreFailed,
    Expired,
    Skipped,
    Aborted,
}

impl HarnessStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HarnessStatus::Running => "RUNNING",
            HarnessStatus::Succeeded => "SUCCEEDED",
            HarnessStatus::Failed => "FAILED",
            HarnessStatus::IgnoreFailed => "IGNORE_FAILED",
            HarnessStatus::Expired => "EXPIRED",
            HarnessStatus::Skipped => "SKIPPED",
            HarnessStatus::Aborted => "ABORTED",
        }
    }

    /// The status of a finished step.
    pub fn of_step(status: StepStatus, kind: StepKind) -> Self {
        match status {
            StepStatus::Success => HarnessStatus::Succeeded,
            StepStatus::Failed => HarnessStatus::Failed,
            StepStatus::Timeout => HarnessStatus::Expired,
            StepStatus::Skipped => HarnessStatus::Skipped,
            StepStatus::Ignored => HarnessStatus::IgnoreFailed,
            StepStatus::RunningAtTeardown if kind == StepKind::Background => {
                HarnessStatus::Succeeded
            }
            StepStatus::RunningAtTeardown => HarnessStatus::Running,
        }
    }

    /// The status of a stage that ran (or did not), given its steps'.
    pub fn of_stage(result: &StageResult, steps: &[HarnessStatus]) -> Self {
        match result.status {
            StageStatus::Skipped => HarnessStatus::Skipped,
            StageStatus::Aborted => HarnessStatus::Aborted,
            StageStatus::Failed if result.timed_out => HarnessStatus::Expired,
            StageStatus::Failed => match combine(steps) {
                // Failed without a failed step: it could not start, or a
                // `when` could not be evaluated.
                HarnessStatus::Succeeded | HarnessStatus::IgnoreFailed => HarnessStatus::Failed,
                other => other,
            },
            StageStatus::Success => combine(steps),
        }
    }
}

/// Harness's `calculateStatus` over the statuses corral produces: all
/// positive (SUCCEEDED, SKIPPED, IGNORE_FAILED) gives IGNORE_FAILED when one
/// was ignored, else SUCCEEDED; otherwise the first of ABORTED, FAILED,
/// EXPIRED, RUNNING that occurs.
pub fn combine(statuses: &[HarnessStatus]) -> HarnessStatus {
    use HarnessStatus::*;
    let positive = |s: &HarnessStatus| matches!(s, Succeeded | Skipped | IgnoreFailed);
    if statuses.iter().all(positive) {
        return if statuses.contains(&IgnoreFailed) {
            IgnoreFailed
        } else {
            Succeeded
        };
    }
    [Aborted, Failed, Expired, Running]
        .into_iter()
        .find(|s| statuses.contains(s))
        .unwrap_or(Failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use HarnessStatus::*;

    fn stage(status: StageStatus, timed_out: bool) -> StageResult {
        StageResult {
            stage: "s".into(),
            status,
            duration: Duration::ZERO,
            steps: Vec::new(),
            error: None,
            timed_out,
        }
    }

    #[test]
    fn steps_map_to_harness_statuses() {
        let cases = [
            (StepStatus::Success, StepKind::Run, "SUCCEEDED"),
            (StepStatus::Failed, StepKind::Run, "FAILED"),
            (StepStatus::Timeout, StepKind::Run, "EXPIRED"),
            (StepStatus::Skipped, StepKind::Run, "SKIPPED"),
            (StepStatus::Ignored, StepKind::Run, "IGNORE_FAILED"),
            (
                StepStatus::RunningAtTeardown,
                StepKind::Background,
                "SUCCEEDED",
            ),
            (StepStatus::Failed, StepKind::Background, "FAILED"),
        ];
        for (status, kind, want) in cases {
            assert_eq!(
                HarnessStatus::of_step(status, kind).as_str(),
                want,
                "{status:?}"
            );
        }
    }

    #[test]
    fn stages_combine_their_steps_as_harness_does() {
        let cases: &[(StageStatus, bool, &[HarnessStatus], HarnessStatus)] = &[
            (StageStatus::Success, false, &[], Succeeded),
            (
                StageStatus::Success,
                false,
                &[Succeeded, Skipped],
                Succeeded,
            ),
            (
                StageStatus::Success,
                false,
                &[Succeeded, IgnoreFailed],
                IgnoreFailed,
            ),
            (
                StageStatus::Failed,
                false,
                &[Succeeded, Failed, Skipped],
                Failed,
            ),
            (StageStatus::Failed, false, &[Expired, Skipped], Expired),
            (StageStatus::Failed, false, &[Expired, Failed], Failed),
            (StageStatus::Failed, false, &[], Failed),
            (StageStatus::Failed, true, &[Succeeded, Expired], Expired),
            (StageStatus::Aborted, false, &[Failed, Skipped], Aborted),
            (StageStatus::Skipped, false, &[], Skipped),
        ];
        for (status, timed_out, steps, want) in cases {
            let got = HarnessStatus::of_stage(&stage(*status, *timed_out), steps);
            assert_eq!(got, *want, "{status:?} {timed_out} {steps:?}");
        }
    }
}
