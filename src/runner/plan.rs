//! The resolved plan of a stage, as `corral run --dry-run` prints it:
//! every step in order, with parallel blocks and step groups nested, and
//! what each `when` decides. Every line goes through the masker.

use std::fmt::Write;

use super::resolve::{Condition, ResolveError, ResolvedStep, StageContext};
use crate::pipeline::model::{
    ExecutionItem, Infrastructure, Stage, Status, StepGroup, StepKind, When,
};
use crate::pipeline::secret::Masker;

/// The plan of one stage; secret values (of the run and of each step)
/// are masked.
pub fn stage_plan(ctx: &StageContext<'_>, masker: &Masker) -> Result<String, ResolveError> {
    let mut masker = masker.clone();
    let stage = ctx.stage();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "stage {} \"{}\" ({})",
        stage.id.value,
        stage.name.value,
        infrastructure(stage)
    );
    if let Some(it) = &stage.iteration {
        let limit = stage
            .max_concurrency
            .map(|m| format!(" (copies run at most {m} at once)"))
            .unwrap_or_default();
        let _ = writeln!(out, "  iteration: {}{limit}", iteration(it));
    }
    if let Some(when) = &stage.when {
        let cond = ctx.preview_condition(when, &[], None)?;
        let _ = writeln!(out, "  when: {}", when_text(when, cond, "stage"));
    }
    let hosts: Vec<String> = ctx.step_hosts().into_iter().map(|(n, _)| n).collect();
    let _ = writeln!(out, "  hosts: {} -> 127.0.0.1", hosts.join(", "));
    let mut printer = Printer {
        ctx,
        masker: &mut masker,
        out: &mut out,
    };
    printer.items(&stage.execution, &[], "", 2)?;
    Ok(masker.mask(&out).into_owned())
}

struct Printer<'a, 'r> {
    ctx: &'a StageContext<'r>,
    masker: &'a mut Masker,
    out: &'a mut String,
}

impl Printer<'_, '_> {
    fn items(
        &mut self,
        items: &[ExecutionItem],
        groups: &[&StepGroup],
        number: &str,
        indent: usize,
    ) -> Result<(), ResolveError> {
        let pad = " ".repeat(indent);
        for (i, item) in items.iter().enumerate() {
            let n = format!("{number}{}", i + 1);
            match item {
                ExecutionItem::Step(step) => {
                    let resolved = self.ctx.preview_step(step, groups)?;
                    for v in &resolved.secret_values {
                        self.masker.add(v);
                    }
                    let when = match &step.when {
                        Some(w) => Some(when_text(
                            w,
                            self.ctx.preview_condition(w, groups, Some(step))?,
                            "step",
                        )),
                        None => None,
                    };
                    let it = step.iteration.as_ref().map(iteration);
                    self.step(&resolved, &n, &pad, when, it);
                }
                ExecutionItem::Parallel(p) => {
                    let limit = p
                        .max_concurrency
                        .map(|m| format!(", at most {m} at once"))
                        .unwrap_or_default();
                    let _ = writeln!(
                        self.out,
                        "{pad}{n}. parallel ({} branches{limit})",
                        p.items.len()
                    );
                    self.items(&p.items, groups, &format!("{n}."), indent + 3)?;
                }
                ExecutionItem::Group(g) => {
                    let _ = writeln!(
                        self.out,
                        "{pad}{n}. group {} \"{}\"",
                        g.id.value, g.name.value
                    );
                    if let Some(it) = &g.iteration {
                        let _ = writeln!(self.out, "{pad}   iteration: {}", iteration(it));
                    }
                    if let Some(w) = &g.when {
                        let cond = self.ctx.preview_condition(w, groups, None)?;
                        let _ = writeln!(self.out, "{pad}   when: {}", when_text(w, cond, "group"));
                    }
                    let mut inner = groups.to_vec();
                    inner.push(g);
                    self.items(&g.steps, &inner, &format!("{n}."), indent + 3)?;
                }
            }
        }
        Ok(())
    }

    fn step(
        &mut self,
        s: &ResolvedStep,
        n: &str,
        pad: &str,
        when: Option<String>,
        iteration: Option<String>,
    ) {
        let kind = match s.kind {
            StepKind::Run => "Run",
            StepKind::Background => "Background",
        };
        let out = &mut *self.out;
        let _ = writeln!(out, "{pad}{n}. {kind} {} \"{}\"", s.id, s.name);
        let d = format!("{pad}     ");
        if let Some(it) = iteration {
            let _ = writeln!(out, "{d}iteration: {it}");
        }
        if let Some(w) = when {
            let _ = writeln!(out, "{d}when: {w}");
        }
        match &s.image {
            Some(image) => {
                let _ = writeln!(out, "{d}image: {image} (pull: {:?})", s.pull_policy);
            }
            None => {
                let _ = writeln!(out, "{d}image: host (runs on the host's root, read-only)");
            }
        }
        if let Some(c) = &s.connector_ref {
            let status = if s.connector.is_some() {
                "credentials from the config"
            } else {
                "not in the config: anonymous pull"
            };
            let _ = writeln!(out, "{d}connector: {c} ({status})");
        }
        match &s.argv {
            Some(argv) => {
                let shown: Vec<String> = argv.iter().map(|a| quote(a)).collect();
                let _ = writeln!(out, "{d}argv: {}", shown.join(" "));
            }
            None => {
                let _ = writeln!(out, "{d}argv: (the image's entrypoint and cmd)");
            }
        }
        if let Some(script) = &s.script {
            // Written into the sandbox's memory, never argv (see resolve::script).
            let _ = writeln!(out, "{d}script {}: {}", script.path, quote(&script.text));
        }
        if !s.ports.is_empty() {
            let ports: Vec<String> = s.ports.iter().map(|(h, c)| format!("{h}->{c}")).collect();
            let _ = writeln!(out, "{d}ports: {}", ports.join(", "));
        }
        let _ = writeln!(out, "{d}timeout: {}", humantime::format_duration(s.timeout));
        if s.privileged {
            let _ = writeln!(out, "{d}privileged: true");
        }
        if let Some(u) = s.run_as_user {
            let _ = writeln!(out, "{d}runAsUser: {u}");
        }
        if let Some(m) = s.memory_bytes {
            let _ = writeln!(out, "{d}memory limit: {m} bytes");
        }
        if let Some(c) = s.cpu_millis {
            let _ = writeln!(out, "{d}cpu limit: {c} millicores");
        }
        if !s.output_variables.is_empty() {
            let _ = writeln!(
                out,
                "{d}outputs: {} (read from {})",
                s.output_variables.join(", "),
                s.output_file
            );
        }
        let _ = writeln!(out, "{d}env:");
        for (k, v) in &s.env {
            // Mask before quoting: a quoted secret would no longer match.
            let masked = self.masker.mask(v);
            let _ = writeln!(out, "{d}  {k}={}", quote(&masked));
        }
    }
}

fn infrastructure(stage: &Stage) -> String {
    match &stage.spec.infrastructure {
        Infrastructure::Unspecified => "infrastructure: local".into(),
        Infrastructure::Cloud => "infrastructure: Cloud, run locally".into(),
        Infrastructure::Docker => "infrastructure: Docker, run locally".into(),
        Infrastructure::KubernetesDirect => "infrastructure: KubernetesDirect, run locally".into(),
        Infrastructure::Vm => "infrastructure: VM, run locally".into(),
        Infrastructure::UseFromStage(s) => format!("infrastructure: from stage {}", s.value),
        Infrastructure::Other(s) => format!("infrastructure: {}, run locally", s.value),
    }
}

fn iteration(it: &crate::pipeline::strategy::Iteration) -> String {
    let mut s = format!("{} of {}", it.index + 1, it.count);
    let values: Vec<String> = it.matrix.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !values.is_empty() {
        s.push_str(&format!(" (matrix {})", values.join(", ")));
    }
    if let Some(item) = &it.repeat_item {
        s.push_str(&format!(" (repeat item {item})"));
    }
    s
}

/// What a `when` decides in a run where nothing failed yet.
fn when_text(when: &When, condition: Option<Condition>, what: &str) -> String {
    let status_key = if what == "stage" {
        "pipelineStatus"
    } else {
        "stageStatus"
    };
    let status = match when.status {
        Status::Success => "Success",
        Status::Failure => "Failure",
        Status::All => "All",
    };
    let cond = when
        .condition
        .as_ref()
        .map(|c| format!(", condition `{}`", c.value))
        .unwrap_or_default();
    let decision = match (when.status, condition) {
        (_, Some(Condition::Value(false))) => "skipped: the condition is false".to_string(),
        (_, Some(Condition::AtRunTime)) => {
            "decided at run time: the condition uses values known only while running".to_string()
        }
        (Status::Failure, _) => format!(
            "decided at run time: runs only if an earlier {} failed",
            if what == "stage" { "stage" } else { "step" }
        ),
        (Status::Success, _) => "runs (unless something fails before it)".to_string(),
        (Status::All, _) => "runs".to_string(),
    };
    format!("{decision} ({status_key}: {status}{cond})")
}

/// An argument as a reader can copy it: bare when plain, else quoted with
/// escapes.
fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%*".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("{arg:?}")
    }
}
