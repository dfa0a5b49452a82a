//! Checks across the built model: unique identifiers, literal strategies
//! that expand, and expressions that parse and refer to things that exist.

use std::collections::HashMap;

use super::expr::{self, Reference};
use super::fields;
use super::location::{suggest, Diagnostics, DocPath, Location};
use super::model::{ExecutionItem, Pipeline, Stage, Step, Str};
use super::strategy::{LiteralsOnly, Repeat, RepeatSource, Strategy, StrategyError};

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
        steps: stage.steps(),
    };
    let loops: Vec<&Strategy> = stage.strategy.iter().collect();
    if let Some(when) = &stage.when {
        if let Some(c) = &when.condition {
            scope.condition(d, c, &path.key("when").key("condition"));
        }
    }
    for v in &stage.variables {
        if let Some(value) = &v.value {
            scope.template(d, value, &path.key("variables"), &loops);
        }
    }
    walk(d, &scope, &stage.execution, &exec_path, &loops);
}

fn walk<'a>(
    d: &mut Diagnostics,
    scope: &RefScope<'a>,
    items: &'a [ExecutionItem],
    path: &DocPath,
    loops: &[&'a Strategy],
) {
    for (i, item) in items.iter().enumerate() {
        let p = path.index(i);
        match item {
            ExecutionItem::Step(step) => {
                let mut inner = loops.to_vec();
                inner.extend(step.strategy.as_ref());
                check_step(d, scope, step, &p.key("step"), &inner);
            }
            ExecutionItem::Parallel(par) => walk(d, scope, &par.items, &p.key("parallel"), loops),
            ExecutionItem::Group(g) => {
                let mut inner = loops.to_vec();
                inner.extend(g.strategy.as_ref());
                let gp = p.key("stepGroup");
                check_strategy(d, &g.strategy, &gp);
                if let Some(c) = g.when.as_ref().and_then(|w| w.condition.as_ref()) {
                    scope.condition(d, c, &gp.key("when").key("condition"));
                }
                for v in &g.variables {
                    if let Some(value) = &v.value {
                        scope.template(d, value, &gp.key("variables"), &inner);
                    }
                }
                walk(d, scope, &g.steps, &gp.key("steps"), &inner);
            }
        }
    }
}

fn check_step(
    d: &mut Diagnostics,
    scope: &RefScope<'_>,
    step: &Step,
    path: &DocPath,
    loops: &[&Strategy],
) {
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
            scope.template(d, v, &sp.key(key), loops);
        }
    }
    for (k, v) in &spec.env {
        scope.template(d, v, &sp.key("envVariables").key(&k.value), loops);
    }
    for (i, e) in spec.entrypoint.iter().enumerate() {
        scope.template(d, e, &sp.key("entrypoint").index(i), loops);
    }
    if let Some(c) = step.when.as_ref().and_then(|w| w.condition.as_ref()) {
        scope.condition(d, c, &path.key("when").key("condition"));
    }
}

/// Known as written, or as the copy `ID_N` of a looped item `ID`.
fn is_known(name: &str, known: &[&str]) -> bool {
    known.contains(&name) || known.iter().any(|k| super::strategy::is_copy_of(name, k))
}

/// What expressions in one stage may refer to.
struct RefScope<'a> {
    pipeline: &'a Pipeline,
    stage: &'a Stage,
    step_ids: Vec<&'a str>,
    steps: Vec<&'a Step>,
}

impl RefScope<'_> {
    fn template(&self, d: &mut Diagnostics, s: &Str, path: &DocPath, loops: &[&Strategy]) {
        if !s.is_expression() {
            return;
        }
        match expr::parse_template(&s.value) {
            Ok(t) => {
                for r in t.references() {
                    if let Reference::Path(segs) = &r {
                        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
                        self.references(d, s, path, &segs);
                        loop_reference(d, s, path, &segs, loops);
                    }
                }
            }
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
        match expr::parse_condition(&s.value) {
            Ok(c) => {
                for r in c.references() {
                    if let Reference::Path(segs) = &r {
                        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
                        self.references(d, s, path, &segs);
                    }
                }
            }
            Err(e) => d.error(s.loc, path, format!("condition: {e}")),
        }
    }

    /// Every check of a dotted path against what the pipeline declares.
    fn references(&self, d: &mut Diagnostics, s: &Str, path: &DocPath, segs: &[&str]) {
        self.reference(d, s, path, segs);
        unsupported_field(d, s, path, segs);
        self.nested_step_reference(d, s, path, segs);
        self.output_reference(d, s, path, segs);
    }

    /// Variables, steps and stages named in a reference must exist.
    fn reference(&self, d: &mut Diagnostics, s: &Str, path: &DocPath, segs: &[&str]) {
        let (what, name, known): (&str, &str, Vec<&str>) = match segs {
            ["pipeline", "variables", name, ..] if self.pipeline.identifier.is_some() => (
                "pipeline variable",
                name,
                self.pipeline
                    .variables
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect(),
            ),
            ["stage", "variables", name, ..] => (
                "stage variable",
                name,
                self.stage
                    .variables
                    .iter()
                    .map(|v| v.name.as_str())
                    .collect(),
            ),
            ["steps", id, ..] | ["execution", "steps", id, ..] => {
                ("step", id, self.step_ids.clone())
            }
            ["pipeline", "stages", id, ..] | ["stages", id, ..] => (
                "stage",
                id,
                self.pipeline.stages.iter().map(|s| s.id.as_str()).collect(),
            ),
            _ => return,
        };
        // A name built by a nested expression is only known at run time.
        if !fields::is_identifier(name) || is_known(name, &known) {
            return;
        }
        let hint = suggest(name, known.iter().copied())
            .unwrap_or_else(|| format!("declare the {what} or fix the name"));
        d.error_hint(
            s.loc,
            path,
            format!("`{}` refers to an unknown {what} `{name}`", segs.join(".")),
            hint,
        );
    }

    /// The steps and groups named after the first one of this stage
    /// (`steps.G.steps.S`), and all of them in another stage
    /// (`pipeline.stages.X.spec.execution.steps.S.status`), must exist.
    fn nested_step_reference(&self, d: &mut Diagnostics, s: &Str, path: &DocPath, segs: &[&str]) {
        let (stage, rest, skip) = match segs {
            ["steps", rest @ ..] | ["execution", "steps", rest @ ..] => (self.stage, rest, 1),
            ["pipeline", "stages", id, "spec", "execution", "steps", rest @ ..]
            | ["stages", id, "spec", "execution", "steps", rest @ ..] => {
                // An unknown stage is reported by `reference`.
                match self
                    .pipeline
                    .stages
                    .iter()
                    .find(|st| is_known(id, &[st.id.as_str()]))
                {
                    Some(stage) => (stage, rest, 0),
                    None => return,
                }
            }
            _ => return,
        };
        let mut names = Vec::new();
        let mut more = rest;
        while let [name, tail @ ..] = more {
            names.push(*name);
            match tail {
                ["steps", inner @ ..] => more = inner,
                _ => break,
            }
        }
        let mut ids = Vec::new();
        collect_ids(&stage.execution, &DocPath::root(), &mut ids);
        let known: Vec<&str> = ids.iter().map(|(id, _)| id.as_str()).collect();
        for name in names.into_iter().skip(skip) {
            if !fields::is_identifier(name) || is_known(name, &known) {
                continue;
            }
            let hint = suggest(name, known.iter().copied())
                .unwrap_or_else(|| "declare the step or fix the name".to_string());
            d.error_hint(
                s.loc,
                path,
                format!(
                    "`{}` refers to an unknown step `{name}` of stage `{}`",
                    segs.join("."),
                    stage.id.value
                ),
                hint,
            );
            return;
        }
    }

    /// `steps.ID.output.outputVariables.V` must name a declared output.
    fn output_reference(&self, d: &mut Diagnostics, s: &Str, path: &DocPath, segs: &[&str]) {
        let (id, var) = match segs {
            ["steps", id, "output", "outputVariables", var, ..]
            | ["execution", "steps", id, "output", "outputVariables", var, ..] => (*id, *var),
            _ => return,
        };
        let Some(step) = self.steps.iter().find(|st| st.id.value == id) else {
            return;
        };
        let declared: Vec<&str> = step
            .spec
            .output_variables
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        if declared.contains(&var) {
            return;
        }
        let hint = suggest(var, declared.iter().copied())
            .unwrap_or_else(|| format!("add `outputVariables: [{{name: {var}}}]` to step `{id}`"));
        d.error_hint(
            s.loc,
            path,
            format!("step `{id}` declares no output variable `{var}`"),
            hint,
        );
    }
}

/// `<+matrix.K>` and `<+repeat.item>` need an enclosing strategy that has them.
fn loop_reference(
    d: &mut Diagnostics,
    s: &Str,
    path: &DocPath,
    segs: &[&str],
    loops: &[&Strategy],
) {
    match segs {
        ["matrix", key, ..] => {
            let axes: Vec<&str> = loops
                .iter()
                .filter_map(|l| match l {
                    Strategy::Matrix(m) => Some(m.axes.iter().map(|(k, _)| k.as_str())),
                    _ => None,
                })
                .flatten()
                .collect();
            if axes.contains(key) {
                return;
            }
            let (message, hint) = if axes.is_empty() {
                (
                    format!("`<+matrix.{key}>` is used outside a matrix strategy"),
                    "add `strategy: {matrix: ...}` to this step, its group or its stage"
                        .to_string(),
                )
            } else {
                (
                    format!("`<+matrix.{key}>` names no axis of the enclosing matrix"),
                    suggest(key, axes.iter().copied())
                        .unwrap_or_else(|| format!("axes: {}", axes.join(", "))),
                )
            };
            d.error_hint(s.loc, path, message, hint);
        }
        ["repeat", "item", ..] => {
            let has_items = loops.iter().any(|l| {
                matches!(
                    l,
                    Strategy::Repeat(Repeat {
                        source: RepeatSource::Items(_),
                        ..
                    })
                )
            });
            if !has_items {
                d.error_hint(
                    s.loc,
                    path,
                    "`<+repeat.item>` is used outside a repeat strategy with `items`",
                    "add `strategy: {repeat: {items: [...]}}` to this step, its group or its stage",
                );
            }
        }
        _ => {}
    }
}

/// A field of `pipeline`, `stage` or `step` that corral does not provide
/// (`<+step.setupId>`, `<+pipeline.triggeredBy.uuid>`): Harness renders
/// what it cannot resolve as `null`, and so does a run, with a warning.
fn unsupported_field(d: &mut Diagnostics, s: &Str, path: &DocPath, segs: &[&str]) {
    let owned: Vec<String> = segs.iter().map(|x| x.to_string()).collect();
    if !expr::is_unprovided(&owned) {
        return;
    }
    d.warn_hint(
        s.loc,
        path,
        format!(
            "corral does not provide `{}`; it renders as null",
            segs.join(".")
        ),
        "put the value in a pipeline or stage variable and refer to that",
    );
}
