//! Checks across the built model: unique identifiers, literal strategies
//! that expand, and expressions that parse and refer to things that exist.

use std::collections::HashMap;

use super::expr::{self, Reference};
use super::fields;
use super::location::{suggest, Diagnostics, DocPath, Location};
use super::model::{ExecutionItem, Pipeline, Stage, Step, Str};
use super::strategy::{LiteralsOnly, Strategy, StrategyError};

pub fn check(d: &mut Diagnostics, pipeline: &Pipeline) {
    let mut stage_ids: HashMap<&str, Location> = HashMap::new();
    for (i, stage) in pipeline.stages.iter().enumerate() {
        let path = DocPath::root().key("stages").index(i).key("stage");
        if let Some(first) = stage_ids.insert(&stage.id.value, stage.id.loc) {
            duplicate(d, &stage.id, first, &path, "stage");
        }
        check_stage(d, pipeline, stage, &path);
    }
}

fn duplicate(d: &mut Diagnostics, id: &Str, first: Location, path: &DocPath, what: &str) {
    d.error_hint(
        id.loc,
        &path.key("identifier"),
        format!(
            "duplicate {what} identifier `{}` (first used at line {})",
            id.value, first.line
        ),
        format!("give each {what} its own identifier"),
    );
}

/// Identifiers of steps and groups, with where they are.
fn collect_ids<'a>(items: &'a [ExecutionItem], path: &DocPath, out: &mut Vec<(&'a Str, DocPath)>) {
    for (i, item) in items.iter().enumerate() {
        let p = path.index(i);
        match item {
            ExecutionItem::Step(s) => out.push((&s.id, p.key("step"))),
            ExecutionItem::Parallel(par) => collect_ids(&par.items, &p.key("parallel"), out),
            ExecutionItem::Group(g) => {
                out.push((&g.id, p.key("stepGroup")));
                collect_ids(&g.steps, &p.key("stepGroup").key("steps"), out);
            }
        }
    }
}

fn check_strategy(d: &mut Diagnostics, strategy: &Option<Strategy>, path: &DocPath) {
    let Some(strategy) = strategy else { return };
    match strategy.iterations(&LiteralsOnly) {
        Ok(_) | Err(StrategyError::Unresolved { .. }) => {}
        Err(e) => d.error(strategy.loc(), &path.key("strategy"), e.to_string()),
    }
}

fn check_stage(d: &mut Diagnostics, pipeline: &Pipeline, stage: &Stage, path: &DocPath) {
    check_strategy(d, &stage.strategy, path);
    let exec_path = path.key("spec").key("execution").key("steps");
    let mut ids = Vec::new();
    collect_ids(&stage.execution, &exec_path, &mut ids);
    let mut seen: HashMap<&str, Location> = HashMap::new();
    for (id, p) in &ids {
        if let Some(first) = seen.insert(&id.value, id.loc) {
            duplicate(d, id, first, p, "step");
        }
    }
    let scope = RefScope {
        pipeline,
        stage,
        step_ids: ids.iter().map(|(id, _)| id.value.as_str()).collect(),
    };
    if let Some(when) = &stage.when {
        if let Some(c) = &when.condition {
            scope.condition(d, c, &path.key("when").key("condition"));
        }
    }
    for v in &stage.variables {
        if let Some(value) = &v.value {
            scope.template(d, value, &path.key("variables"));
        }
    }
    walk(d, &scope, &stage.execution, &exec_path);
}

fn walk(d: &mut Diagnostics, scope: &RefScope<'_>, items: &[ExecutionItem], path: &DocPath) {
    for (i, item) in items.iter().enumerate() {
        let p = path.index(i);
        match item {
            ExecutionItem::Step(step) => check_step(d, scope, step, &p.key("step")),
            ExecutionItem::Parallel(par) => walk(d, scope, &par.items, &p.key("parallel")),
            ExecutionItem::Group(g) => {
                let gp = p.key("stepGroup");
                check_strategy(d, &g.strategy, &gp);
                if let Some(c) = g.when.as_ref().and_then(|w| w.condition.as_ref()) {
                    scope.condition(d, c, &gp.key("when").key("condition"));
                }
                walk(d, scope, &g.steps, &gp.key("steps"));
            }
        }
    }
}

fn check_step(d: &mut Diagnostics, scope: &RefScope<'_>, step: &Step, path: &DocPath) {
    check_strategy(d, &step.strategy, path);
    let sp = path.key("spec");
    let spec = &step.spec;
    let singles = [
        (&spec.image, "image"),
        (&spec.command, "command"),
        (&spec.connector_ref, "connectorRef"),
    ];
    for (value, key) in singles {
        if let Some(v) = value {
            scope.template(d, v, &sp.key(key));
        }
    }
    for (k, v) in &spec.env {
        scope.template(d, v, &sp.key("envVariables").key(&k.value));
    }
    for (i, e) in spec.entrypoint.iter().enumerate() {
        scope.template(d, e, &sp.key("entrypoint").index(i));
    }
    if let Some(c) = step.when.as_ref().and_then(|w| w.condition.as_ref()) {
        scope.condition(d, c, &path.key("when").key("condition"));
    }
}

/// Known as written, or as the copy `ID_N` of a looped item `ID`.
fn is_known(name: &str, known: &[&str]) -> bool {
    known.contains(&name)
        || name.rsplit_once('_').is_some_and(|(base, n)| {
            !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && known.contains(&base)
        })
}

/// What expressions in one stage may refer to.
struct RefScope<'a> {
    pipeline: &'a Pipeline,
    stage: &'a Stage,
    step_ids: Vec<&'a str>,
}

impl RefScope<'_> {
    fn template(&self, d: &mut Diagnostics, s: &Str, path: &DocPath) {
        if !s.is_expression() {
            return;
        }
        match expr::parse_template(&s.value) {
            Ok(t) => self.references(d, s, path, &t.references()),
            Err(e) => {
                let at = match &e {
                    expr::ExprError::Parse { offset, .. } => s.loc_at(*offset),
                    _ => s.loc,
                };
                d.error_hint(
                    at,
                    path,
                    e.to_string(),
                    "expressions look like `<+pipeline.variables.NAME>`",
                )
            }
        }
    }

    fn condition(&self, d: &mut Diagnostics, s: &Str, path: &DocPath) {
        if let Err(e) = expr::parse_condition(&s.value) {
            d.error(s.loc, path, format!("condition: {e}"));
        }
    }

    fn references(&self, d: &mut Diagnostics, s: &Str, path: &DocPath, refs: &[Reference]) {
        for r in refs {
            let Reference::Path(segs) = r else { continue };
            let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
            let (what, name, known): (&str, &str, Vec<&str>) = match segs.as_slice() {
                ["pipeline", "variables", name, ..] if self.pipeline.identifier.is_some() => (
                    "pipeline variable",
                    name,
                    self.pipeline
                        .variables
                        .iter()
                        .map(|v| v.name.value.as_str())
                        .collect(),
                ),
                ["stage", "variables", name, ..] => (
                    "stage variable",
                    name,
                    self.stage
                        .variables
                        .iter()
                        .map(|v| v.name.value.as_str())
                        .collect(),
                ),
                ["steps", id, ..] | ["execution", "steps", id, ..] => {
                    ("step", id, self.step_ids.clone())
                }
                ["pipeline", "stages", id, ..] | ["stages", id, ..] => (
                    "stage",
                    id,
                    self.pipeline
                        .stages
                        .iter()
                        .map(|s| s.id.value.as_str())
                        .collect(),
                ),
                _ => continue,
            };
            if !fields::is_identifier(name) || is_known(name, &known) {
                continue;
            }
            {
                let hint = suggest(name, known.iter().copied())
                    .unwrap_or_else(|| format!("declare the {what} or fix the name"));
                d.error_hint(
                    s.loc,
                    path,
                    format!("`{}` refers to an unknown {what} `{name}`", segs.join(".")),
                    hint,
                );
            }
        }
    }
}
