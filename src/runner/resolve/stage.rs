//! One stage's expression scope, and the per-step scopes built from it.

use std::net::Ipv4Addr;

use super::error::ResolveError;
use super::render::{self, Lenient};
use super::unset::UnsetOutputs;
use super::vars::{self, Origins};
use super::when::label;
use super::{codebase, step, ResolvedStep, RunContext, StepOutputs, StepStatuses};
use crate::pipeline::expr::{MapScope, Value};
use crate::pipeline::model::{ExecutionItem, OutputType, Setting, Stage, Step, StepGroup};
use crate::pipeline::strategy::Iteration;
use crate::runner::status::HarnessStatus;

/// Calls `f` on every step group below `items`, outer groups first.
pub fn for_each_group<'a>(items: &'a [ExecutionItem], f: &mut dyn FnMut(&'a StepGroup)) {
    for item in items {
        match item {
            ExecutionItem::Step(_) => {}
            ExecutionItem::Parallel(p) => for_each_group(&p.items, f),
            ExecutionItem::Group(g) => {
                f(g);
                for_each_group(&g.steps, f);
            }
        }
    }
}

/// A visitor of steps with their enclosing groups.
pub type StepVisitor<'v, 'a, E> = dyn FnMut(&'a Step, &[&'a StepGroup]) -> Result<(), E> + 'v;

/// Calls `f` on every step below `items` with its enclosing groups
/// (outermost first), stopping at the first error.
pub fn for_each_step<'a, E>(
    items: &'a [ExecutionItem],
    groups: &[&'a StepGroup],
    f: &mut StepVisitor<'_, 'a, E>,
) -> Result<(), E> {
    for item in items {
        match item {
            ExecutionItem::Step(s) => f(s, groups)?,
            ExecutionItem::Parallel(p) => for_each_step(&p.items, groups, f)?,
            ExecutionItem::Group(g) => {
                let mut inner = groups.to_vec();
                inner.push(g);
                for_each_step(&g.steps, &inner, f)?;
            }
        }
    }
    Ok(())
}

/// The values every step of a stage sees.
#[derive(Debug, Clone)]
pub struct StageScope<'r> {
    pub scope: MapScope<'r>,
    pub origins: Origins,
}

fn set_iteration(scope: &mut MapScope<'_>, it: &Iteration) {
    scope.set("strategy.iteration", it.index as i64);
    scope.set("strategy.iterations", it.count as i64);
    for (k, v) in &it.matrix {
        scope.set(&format!("matrix.{k}"), v.as_str());
    }
    if let Some(item) = &it.repeat_item {
        scope.set("repeat.item", item.as_str());
    }
}

impl<'r> StageScope<'r> {
    pub fn build(run: &'r RunContext, stage: &Stage) -> Result<StageScope<'r>, ResolveError> {
        let p = &run.pipeline;
        let file = &p.file;
        let mut scope = MapScope::new().with_secrets(&run.secrets);
        let mut origins = Origins::new();
        let opts = &run.options;
        let pipeline_id = p.id();
        scope.set("pipeline.identifier", pipeline_id);
        scope.set(
            "pipeline.name",
            p.name.as_ref().map_or(pipeline_id, |n| n.as_str()),
        );
        scope.set("pipeline.sequenceId", opts.sequence_id() as i64);
        scope.set("pipeline.executionId", opts.execution_id.as_str());
        scope.set("pipeline.triggerType", "MANUAL");
        scope.set("pipeline.startTs", opts.start_ts);
        // Fields a Harness server knows and a local run has no value for:
        // null, as Harness renders what it cannot resolve.
        for field in [
            "pipeline.executionUrl",
            "pipeline.execution.url",
            "pipeline.tags",
            "pipeline.description",
            "pipeline.orgIdentifier",
            "pipeline.projectIdentifier",
            "pipeline.triggeredBy.email",
            "org.identifier",
            "project.identifier",
            "account.identifier",
        ] {
            scope.set(field, Value::Null);
        }
        let user = std::env::var("USER").ok().filter(|u| !u.is_empty());
        scope.set(
            "pipeline.triggeredBy.name",
            user.map_or(Value::Null, Value::Str),
        );
        if let Some(org) = &p.org_identifier {
            scope.set("pipeline.orgIdentifier", org.as_str());
            scope.set("org.identifier", org.as_str());
        }
        if let Some(project) = &p.project_identifier {
            scope.set("pipeline.projectIdentifier", project.as_str());
            scope.set("project.identifier", project.as_str());
        }
        for key in codebase::KEYS {
            scope.set(&format!("codebase.{key}"), Value::Null);
        }
        if let Some(cb) = &run.codebase {
            for (key, value) in cb.expression_values() {
                scope.set(&format!("codebase.{key}"), value);
            }
        }
        for (stage_id, outputs) in &run.stage_outputs {
            for (key, vars) in outputs {
                let step = key.rsplit('.').next().unwrap_or(key);
                for (name, value) in vars {
                    scope.set_step_output(stage_id, step, name, value.as_str());
                }
            }
        }
        for (stage_id, (status, steps)) in &run.stage_statuses {
            scope.set_stage_field(stage_id, "status", status.as_str());
            for (key, state) in steps {
                let step = key.rsplit('.').next().unwrap_or(key);
                set_state(&mut scope, stage_id, step, state);
            }
        }
        vars::set_variables(
            &mut scope,
            &mut origins,
            "pipeline.variables",
            &p.variables,
            &run.given,
            &run.secrets,
            file,
        )?;
        scope.set_current_stage(&stage.id.value);
        scope.set("stage.identifier", stage.id.as_str());
        scope.set("stage.name", stage.name.as_str());
        if let Some(it) = &stage.iteration {
            set_iteration(&mut scope, it);
        }
        vars::set_variables(
            &mut scope,
            &mut origins,
            "stage.variables",
            &stage.variables,
            &run.given,
            &run.secrets,
            file,
        )?;
        Ok(StageScope { scope, origins })
    }
}

fn set_state(scope: &mut MapScope<'_>, stage: &str, step: &str, state: &super::StepState) {
    scope.set_step_field(stage, step, "status", state.status.as_str());
    scope.set_step_field(stage, step, "retryCount", i64::from(state.retry_count));
}

/// A `when.condition` as far as it is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Value(bool),
    /// It refers to step outputs or statuses only known while running.
    AtRunTime,
}

/// What the executor needs while running one stage.
#[derive(Debug)]
pub struct StageContext<'r> {
    pub(super) run: &'r RunContext,
    pub(super) stage: &'r Stage,
    pub(super) base: StageScope<'r>,
    /// (user, reference) pairs already warned about as null.
    pub(super) warned: std::sync::Mutex<std::collections::BTreeSet<(String, String)>>,
}

impl<'r> StageContext<'r> {
    pub(super) fn new(run: &'r RunContext, stage: &'r Stage) -> Result<Self, ResolveError> {
        Ok(StageContext {
            run,
            stage,
            base: StageScope::build(run, stage)?,
            warned: Default::default(),
        })
    }

    pub fn stage(&self) -> &'r Stage {
        self.stage
    }

    pub fn run(&self) -> &'r RunContext {
        self.run
    }

    /// The scope of a step (or of a group's `when`, with `step` None):
    /// group variables, iterations (innermost wins), the outputs and the
    /// statuses so far; the stage itself is RUNNING.
    pub(super) fn scope(
        &self,
        groups: &[&StepGroup],
        step: Option<&Step>,
        outputs: &StepOutputs,
        statuses: &StepStatuses,
    ) -> Result<StageScope<'r>, ResolveError> {
        let mut s = self.base.clone();
        let file = &self.run.pipeline.file;
        let stage_id = &self.stage.id.value;
        s.scope
            .set_stage_field(stage_id, "status", HarnessStatus::Running.as_str());
        let group_path: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
        let mut in_groups = Vec::new();
        for (key, state) in statuses {
            let (step_id, prefix) = split_key(key);
            // As for outputs: the current group copy's steps win.
            if !prefix.is_empty() && group_path.starts_with(&prefix) {
                in_groups.push((step_id, state));
            } else {
                set_state(&mut s.scope, stage_id, step_id, state);
            }
        }
        for (step_id, state) in in_groups {
            set_state(&mut s.scope, stage_id, step_id, state);
        }
        let mut in_groups: Vec<(&String, &std::collections::BTreeMap<String, String>)> = Vec::new();
        for (key, vars) in outputs {
            let (step_id, prefix) = split_key(key);
            // Steps of the current group copy win over same-named steps
            // of other copies: set them last.
            if !prefix.is_empty() && group_path.starts_with(&prefix) {
                in_groups.push((key, vars));
                continue;
            }
            self.set_outputs(&mut s.scope, stage_id, step_id, vars);
        }
        for (key, vars) in in_groups {
            let step_id = key.rsplit('.').next().unwrap_or(key);
            self.set_outputs(&mut s.scope, stage_id, step_id, vars);
        }
        for g in groups {
            if let Some(it) = &g.iteration {
                set_iteration(&mut s.scope, it);
            }
            vars::set_variables(
                &mut s.scope,
                &mut s.origins,
                "stepGroup.variables",
                &g.variables,
                &self.run.given,
                &self.run.secrets,
                file,
            )?;
            s.scope.set("stepGroup.identifier", g.id.as_str());
            s.scope.set("stepGroup.name", g.name.as_str());
        }
        if let Some(step) = step {
            if let Some(it) = &step.iteration {
                set_iteration(&mut s.scope, it);
            }
            s.scope.set("step.identifier", step.id.as_str());
            s.scope.set("step.name", step.name.as_str());
        }
        Ok(s)
    }

    fn set_outputs(
        &self,
        scope: &mut MapScope<'_>,
        stage_id: &str,
        step_id: &str,
        vars: &std::collections::BTreeMap<String, String>,
    ) {
        let declared = self
            .stage
            .steps()
            .into_iter()
            .find(|s| s.id.value == step_id)
            .map(|s| s.spec.output_variables.clone())
            .unwrap_or_default();
        for (name, value) in vars {
            let secret = declared
                .iter()
                .any(|o| &o.name.value == name && o.kind == OutputType::Secret);
            if secret {
                scope.set_secret_step_output(stage_id, step_id, name, value.as_str());
            } else {
                scope.set_step_output(stage_id, step_id, name, value.as_str());
            }
        }
    }

    /// Resolves a step as it starts. `groups` are its enclosing step
    /// groups, outermost first; `outputs` those of the steps before it.
    pub fn resolve_step(
        &self,
        step: &Step,
        groups: &[&StepGroup],
        outputs: &StepOutputs,
        statuses: &StepStatuses,
    ) -> Result<ResolvedStep, ResolveError> {
        let s = self.scope(groups, Some(step), outputs, statuses)?;
        let scope = UnsetOutputs::new(&s.scope, &self.run.pipeline, self.stage);
        let resolved = step::resolve(self.run, self.stage, &s.scope, &scope, step, groups, false);
        self.warn_unset(&label(step, groups), &scope);
        resolved
    }

    /// Resolves a step for `--dry-run`: outputs and statuses that are only
    /// known while running stay as their expression text.
    pub fn preview_step(
        &self,
        step: &Step,
        groups: &[&StepGroup],
    ) -> Result<ResolvedStep, ResolveError> {
        let s = self.scope(
            groups,
            Some(step),
            &StepOutputs::new(),
            &StepStatuses::new(),
        )?;
        let lenient = Lenient::new(&s.scope);
        step::resolve(self.run, self.stage, &s.scope, &lenient, step, groups, true)
    }

    /// Whether the stage's workspace starts as a copy of the codebase:
    /// `cloneCodebase: true`, or not written in a pipeline that declares
    /// `properties.ci.codebase` (Harness then clones). With the line of
    /// the setting (else of the stage), for messages.
    pub fn clone_codebase(&self) -> Result<(bool, usize), ResolveError> {
        let file = &self.run.pipeline.file;
        match &self.stage.spec.clone_codebase {
            None => Ok((self.run.pipeline.codebase.is_some(), self.stage.loc.line)),
            Some(Setting::Value(b)) => Ok((*b, self.stage.loc.line)),
            Some(Setting::Expr(e)) => {
                let r = render::render(file, e, "cloneCodebase", &self.base.scope)?;
                match r.text.trim() {
                    "true" => Ok((true, e.loc.line)),
                    "false" => Ok((false, e.loc.line)),
                    other => Err(ResolveError::BadStageValue {
                        what: "cloneCodebase",
                        stage: self.stage.id.value.clone(),
                        value: if r.has_secret {
                            crate::pipeline::secret::MASK.to_string()
                        } else {
                            other.to_string()
                        },
                        expected: "true or false",
                        file: file.clone(),
                        line: e.loc.line,
                    }),
                }
            }
        }
    }

    /// `/etc/hosts` names of the stage: each step id, and `group_step`
    /// (with every enclosing group) for steps in groups, on 127.0.0.1.
    pub fn step_hosts(&self) -> Vec<(String, Ipv4Addr)> {
        let mut names = Vec::new();
        host_names(&self.stage.execution, &[], &mut names);
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|n| (n, Ipv4Addr::LOCALHOST))
            .collect()
    }
}

/// `outer.inner.step` -> (`step`, [`outer`, `inner`]).
fn split_key(key: &str) -> (&str, Vec<&str>) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let step = parts.pop().unwrap_or(key);
    (step, parts)
}

fn host_names(items: &[ExecutionItem], groups: &[&str], out: &mut Vec<String>) {
    for item in items {
        match item {
            ExecutionItem::Step(s) => {
                out.push(s.id.value.clone());
                if let Some(inner) = groups.last() {
                    out.push(format!("{inner}_{}", s.id.value));
                }
                if groups.len() > 1 {
                    out.push(format!("{}_{}", groups.join("_"), s.id.value));
                }
            }
            ExecutionItem::Parallel(p) => host_names(&p.items, groups, out),
            ExecutionItem::Group(g) => {
                let mut inner = groups.to_vec();
                inner.push(&g.id.value);
                host_names(&g.steps, &inner, out);
            }
        }
    }
}
