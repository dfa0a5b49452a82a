//! Output variables that were never set. Harness renders an expression it
//! cannot resolve as `null`; a step that failed with Ignore, was skipped by
//! its `when`, did not run (its stage was not selected) or has not ended
//! yet leaves its outputs unset, and a run goes on with `null` for them,
//! with one warning per step and reference. A reference to a step or an
//! output the pipeline does not declare stays an error (validation
//! reports it before anything runs).

use std::cell::RefCell;

use crate::pipeline::expr::{classify, is_unprovided, Known, Scope, SecretScope, Value};
use crate::pipeline::model::{Pipeline, Stage};
use crate::pipeline::strategy::is_copy_of;

/// A scope that answers declared-but-unset step outputs with null and
/// remembers which ones it answered.
pub struct UnsetOutputs<'a> {
    inner: &'a dyn Scope,
    pipeline: &'a Pipeline,
    /// The stage `steps.X...` refers to.
    current: &'a Stage,
    /// The paths answered with null, in order of use.
    pub used: RefCell<Vec<String>>,
    /// Fields corral does not provide, answered with null.
    pub unsupported: RefCell<Vec<String>>,
}

impl<'a> UnsetOutputs<'a> {
    pub fn new(inner: &'a dyn Scope, pipeline: &'a Pipeline, current: &'a Stage) -> Self {
        UnsetOutputs {
            inner,
            pipeline,
            current,
            used: RefCell::new(Vec::new()),
            unsupported: RefCell::new(Vec::new()),
        }
    }

    /// Whether `stage` (the current one when `None`) has a step `step`
    /// declaring output `variable`. A looped stage or step is known by its
    /// written id as well as by its copies' ids (`id_0`, `id_1`, ...).
    fn declared(&self, stage: Option<&str>, step: &str, variable: &str) -> bool {
        let stages: Vec<&Stage> = match stage {
            None => vec![self.current],
            Some(id) => self
                .pipeline
                .stages
                .iter()
                .filter(|s| same_id(&s.id.value, id, s.iteration.is_some()))
                .collect(),
        };
        stages.iter().any(|s| {
            let mut found = false;
            let _ = super::for_each_step(&s.execution, &[], &mut |st, _| {
                found |= same_id(&st.id.value, step, st.iteration.is_some())
                    && st
                        .spec
                        .output_variables
                        .iter()
                        .any(|o| o.name.value == variable);
                Ok::<(), ()>(())
            });
            found
        })
    }
}

/// `actual` is `written`, or (`copy`) a strategy copy of it (`written_N`).
fn same_id(actual: &str, written: &str, copy: bool) -> bool {
    actual == written || (copy && is_copy_of(actual, written))
}

impl Scope for UnsetOutputs<'_> {
    fn lookup(&self, path: &[String]) -> Option<Value> {
        if let Some(v) = self.inner.lookup(path) {
            return Some(v);
        }
        // A field corral does not provide (`step.setupId`): null, as
        // Harness renders what it cannot resolve; validation warned.
        let list = if is_unprovided(path) {
            &self.unsupported
        } else {
            match classify(path)? {
                Known::StepOutput {
                    stage,
                    step,
                    variable,
                    ..
                } if self.declared(stage.as_deref(), &step, &variable) => &self.used,
                _ => return None,
            }
        };
        let text = path.join(".");
        let mut list = list.borrow_mut();
        if !list.contains(&text) {
            list.push(text);
        }
        Some(Value::Null)
    }
    fn secret(&self, scope: SecretScope, id: &str) -> Option<String> {
        self.inner.secret(scope, id)
    }
    fn is_secret(&self, path: &[String]) -> bool {
        self.inner.is_secret(path)
    }
    fn not_yet(&self, path: &[String]) -> Option<String> {
        self.inner.not_yet(path)
    }
}

#[cfg(test)]
mod tests {
    use super::same_id;

    #[test]
    fn copies_are_known_by_their_written_id() {
        assert!(same_id("build", "build", false));
        assert!(same_id("build_1", "build", true));
        assert!(!same_id("build_1", "build", false));
        assert!(!same_id("build_x", "build", true));
        assert!(!same_id("build_", "build", true));
    }
}
