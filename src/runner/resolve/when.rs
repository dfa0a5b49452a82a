//! The `when` of stages, step groups and steps, evaluated for `gate` (or
//! for `--dry-run`), and the warnings about outputs rendered as null.

use super::error::ResolveError;
use super::render::{self, Lenient};
use super::stage::{Condition, StageContext};
use super::unset::UnsetOutputs;
use super::{StepOutputs, StepStatuses};
use crate::pipeline::expr::Scope;
use crate::pipeline::model::{Status, Step, StepGroup, Str, When};
use crate::runner::supervise::{self, StageStatusCondition};

impl StageContext<'_> {
    /// One warning per user and reference rendered as null.
    pub(super) fn warn_unset(&self, user: &str, scope: &UnsetOutputs<'_>) {
        let mut warned = self
            .warned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for path in scope.used.borrow().iter() {
            if warned.insert((user.to_string(), path.clone())) {
                tracing::warn!(
                    "stage {}, {user}: `<+{path}>` is null: that step set no such output (it failed, was skipped, did not run or has not finished)",
                    self.stage.id.value
                );
            }
        }
        for path in scope.unsupported.borrow().iter() {
            if warned.insert((user.to_string(), path.clone())) {
                tracing::warn!(
                    "stage {}, {user}: `<+{path}>` is null: corral does not provide that field",
                    self.stage.id.value
                );
            }
        }
    }

    fn gate_when(
        &self,
        when: Option<&When>,
        scope: &dyn Scope,
        what: &str,
    ) -> Result<Option<supervise::When>, ResolveError> {
        let Some(w) = when else { return Ok(None) };
        let condition = match &w.condition {
            Some(c) => Some(render::condition(&self.run.pipeline.file, c, what, scope)?),
            None => None,
        };
        Ok(Some(supervise::When {
            stage_status: stage_status(w.status),
            condition,
        }))
    }

    /// The stage's `when` (pipelineStatus + condition), for `gate`.
    pub fn stage_when(&self) -> Result<Option<supervise::When>, ResolveError> {
        let scope = UnsetOutputs::new(&self.base.scope, &self.run.pipeline, self.stage);
        let when = self.gate_when(
            self.stage.when.as_ref(),
            &scope,
            "the stage's when.condition",
        );
        self.warn_unset("its when", &scope);
        when
    }

    /// The stage's `when` condition as `--dry-run` sees it.
    pub fn stage_when_preview(&self) -> Result<Option<Condition>, ResolveError> {
        match self.stage.when.as_ref().and_then(|w| w.condition.as_ref()) {
            // The stage's own scope: it is not running yet.
            Some(c) => self.preview(c, &self.base.scope).map(Some),
            None => Ok(None),
        }
    }

    /// A group's `when`; `outer` are the groups around it.
    pub fn group_when(
        &self,
        group: &StepGroup,
        outer: &[&StepGroup],
        outputs: &StepOutputs,
        statuses: &StepStatuses,
    ) -> Result<Option<supervise::When>, ResolveError> {
        let s = self.scope(outer, None, outputs, statuses)?;
        let scope = UnsetOutputs::new(&s.scope, &self.run.pipeline, self.stage);
        let when = self.gate_when(group.when.as_ref(), &scope, "a step group's when.condition");
        self.warn_unset(&format!("step group {}", group.id.value), &scope);
        when
    }

    pub fn step_when(
        &self,
        step: &Step,
        groups: &[&StepGroup],
        outputs: &StepOutputs,
        statuses: &StepStatuses,
    ) -> Result<Option<supervise::When>, ResolveError> {
        let s = self.scope(groups, Some(step), outputs, statuses)?;
        let scope = UnsetOutputs::new(&s.scope, &self.run.pipeline, self.stage);
        let when = self.gate_when(step.when.as_ref(), &scope, "a step's when.condition");
        self.warn_unset(&label(step, groups), &scope);
        when
    }

    /// A condition as `--dry-run` sees it (`groups` enclose the item;
    /// `step` is the step itself, if the `when` is a step's).
    pub fn preview_condition(
        &self,
        when: &When,
        groups: &[&StepGroup],
        step: Option<&Step>,
    ) -> Result<Option<Condition>, ResolveError> {
        let Some(c) = &when.condition else {
            return Ok(None);
        };
        let s = self.scope(groups, step, &StepOutputs::new(), &StepStatuses::new())?;
        self.preview(c, &s.scope).map(Some)
    }

    fn preview(&self, c: &Str, scope: &dyn Scope) -> Result<Condition, ResolveError> {
        let lenient = Lenient::new(scope);
        let value = render::condition(&self.run.pipeline.file, c, "when.condition", &lenient)?;
        Ok(if lenient.deferred.get() {
            Condition::AtRunTime
        } else {
            Condition::Value(value)
        })
    }
}

/// `step X` (`group_X` inside groups), for messages.
pub(super) fn label(step: &Step, groups: &[&StepGroup]) -> String {
    let mut parts: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
    parts.push(step.id.as_str());
    format!("step {}", parts.join("_"))
}

pub fn stage_status(s: Status) -> StageStatusCondition {
    match s {
        Status::Success => StageStatusCondition::Success,
        Status::Failure => StageStatusCondition::Failure,
        Status::All => StageStatusCondition::All,
    }
}
