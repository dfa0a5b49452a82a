//! Execution items of a stage: steps (Run and Background), `parallel`
//! blocks (threads, `maxConcurrency`) and step groups (their own `when`
//! and failure strategies).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use super::events::Event;
use super::report::{StepKind, StepResult, StepStatus};
use super::resolve::{step_key, ResolvedStep, WORKSPACE};
use super::stage::{not_run, StageRun};
use super::status::HarnessStatus;
use super::step::{self, TailSink};
use super::supervise::{self, Decision, Gate, StepOutcome};
use crate::pipeline::model::{self, ExecutionItem, Step, StepGroup};

/// Lines of a crashed service shown in its report.
const TAIL_LINES: usize = 10;

pub(super) fn run_items(st: &StageRun<'_>, items: &[ExecutionItem], groups: &[&StepGroup]) {
    for item in items {
        run_item(st, item, groups);
    }
}

fn run_item(st: &StageRun<'_>, item: &ExecutionItem, groups: &[&StepGroup]) {
    match item {
        ExecutionItem::Step(s) => run_step(st, s, groups),
        ExecutionItem::Group(g) => run_group(st, g, groups),
        ExecutionItem::Parallel(p) => {
            let workers = p
                .max_concurrency
                .unwrap_or(p.items.len())
                .clamp(1, p.items.len().max(1));
            let next = AtomicUsize::new(0);
            std::thread::scope(|scope| {
                for _ in 0..workers {
                    scope.spawn(|| loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(item) = p.items.get(i) else { break };
                        run_item(st, item, groups);
                    });
                }
            });
        }
    }
}

fn run_group(st: &StageRun<'_>, group: &StepGroup, outer: &[&StepGroup]) {
    let gate = match st
        .sc
        .group_when(group, outer, &st.outputs(), &st.statuses())
    {
        Ok(when) => supervise::gate(
            when.as_ref(),
            st.failed.load(Ordering::SeqCst),
            st.aborted.load(Ordering::SeqCst) || st.run.cancel.signal().is_some(),
        ),
        Err(err) => {
            st.run.note(
                group.id.as_str(),
                &format!("step group failed: {}", crate::error_chain(&err)),
            );
            st.failed.store(true, Ordering::SeqCst);
            Gate::Skip(supervise::SkipReason::StageFailed)
        }
    };
    let mut inner = outer.to_vec();
    inner.push(group);
    match gate {
        Gate::Run => run_items(st, &group.steps, &inner),
        Gate::Skip(reason) => {
            st.run.note(
                group.id.as_str(),
                &format!("step group skipped: {}", reason.describe()),
            );
            skip_all(st, &group.steps, &inner, reason.describe());
        }
    }
}

fn skip_all(st: &StageRun<'_>, items: &[ExecutionItem], groups: &[&StepGroup], why: &str) {
    for item in items {
        match item {
            ExecutionItem::Step(s) => skip(st, s, groups, why),
            ExecutionItem::Parallel(p) => skip_all(st, &p.items, groups, why),
            ExecutionItem::Group(g) => {
                let mut inner = groups.to_vec();
                inner.push(g);
                skip_all(st, &g.steps, &inner, why);
            }
        }
    }
}

fn skip(st: &StageRun<'_>, s: &Step, groups: &[&StepGroup], why: &str) {
    let (id, kind) = (&step_label(s, groups), kind_of(s));
    st.set_status(&step_key(s, groups), HarnessStatus::Skipped, 0);
    let slot = st.reserve();
    st.run.emit(Event::StepSkipped {
        stage: st.stage_id().to_string(),
        step: id.to_string(),
        reason: why.to_string(),
    });
    st.run.note(id, &format!("skipped: {why}"));
    st.record(slot, not_run(id, kind, StepStatus::Skipped));
}

/// Puts a stage's results in YAML order: steps of a `parallel` block (and
/// copies of a looped step) finish in any order, the summary must not.
pub(super) fn yaml_order(items: &[ExecutionItem], results: &mut [StepResult]) {
    let mut steps = Vec::new();
    super::stage::all_steps(items, &[], &mut steps);
    let labels: Vec<String> = steps.iter().map(|(s, g)| step_label(s, g)).collect();
    // Stable: a label not found (none expected) keeps its place at the end.
    results.sort_by_key(|r| {
        labels
            .iter()
            .position(|l| *l == r.step)
            .unwrap_or(usize::MAX)
    });
}

/// The id a step has in the stage (`group_step` inside groups).
fn step_label(s: &Step, groups: &[&StepGroup]) -> String {
    let mut parts: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
    parts.push(s.id.as_str());
    parts.join("_")
}

fn kind_of(s: &Step) -> StepKind {
    match s.kind {
        model::StepKind::Run => StepKind::Run,
        model::StepKind::Background => StepKind::Background,
    }
}

fn run_step(st: &StageRun<'_>, s: &Step, groups: &[&StepGroup]) {
    let label = step_label(s, groups);
    let key = step_key(s, groups);
    let kind = kind_of(s);
    if st.run.cancel.signal().is_some() {
        return skip(st, s, groups, "the run was interrupted");
    }
    if let Some(deadline) = st.deadline.as_ref().filter(|d| d.passed()) {
        st.timed_out.store(true, Ordering::SeqCst);
        let why = format!("{} was reached", deadline.what);
        return skip(st, s, groups, &why);
    }
    let outputs = st.outputs();
    let statuses = st.statuses();
    let when = match st.sc.step_when(s, groups, &outputs, &statuses) {
        Ok(when) => when,
        Err(err) => return not_started(st, &label, &key, kind, &crate::error_chain(&err)),
    };
    let gate = supervise::gate(
        when.as_ref(),
        st.failed.load(Ordering::SeqCst),
        st.aborted.load(Ordering::SeqCst),
    );
    if let Gate::Skip(reason) = gate {
        return skip(st, s, groups, reason.describe());
    }
    let resolved = match st.sc.resolve_step(s, groups, &outputs, &statuses) {
        Ok(r) => r,
        Err(err) => return not_started(st, &label, &key, kind, &crate::error_chain(&err)),
    };
    let image = match st.image_for(&resolved) {
        Ok(image) => image,
        Err(message) => return not_started(st, &resolved.id, &key, kind, &message),
    };
    let mounts = st.mounts.for_groups(groups);
    let spec = match step::sandbox_spec(&resolved, image.as_ref(), &mounts, st.sandbox.mapping()) {
        Ok(spec) => spec,
        Err(message) => return not_started(st, &resolved.id, &key, kind, &message),
    };
    let tail = Arc::new(TailSink::new(TAIL_LINES));
    let log = match st.step_log(&resolved, tail.clone()) {
        Ok(log) => log,
        Err(err) => return not_started(st, &resolved.id, &key, kind, &crate::error_chain(&err)),
    };
    let started = |attempt| {
        st.run.emit(Event::StepStarted {
            stage: st.stage_id().to_string(),
            step: resolved.id.clone(),
            kind,
            image: resolved.image.clone(),
            attempt,
        })
    };
    if kind == StepKind::Background {
        started(1);
        let slot = st.reserve();
        match step::spawn(st.sandbox, &spec, &log) {
            Ok((child, pumps)) => {
                // Harness detaches a Background step: it has succeeded.
                st.set_status(&key, HarnessStatus::Succeeded, 0);
                super::service::start_service(st, slot, &resolved, child, pumps, tail)
            }
            Err(message) => {
                st.set_status(&key, HarnessStatus::Failed, 0);
                st.run
                    .note(&resolved.id, &format!("failed to start: {message}"));
                st.record(slot, not_run(&resolved.id, kind, StepStatus::Failed));
            }
        }
        return;
    }
    st.set_status(&key, HarnessStatus::Running, 0);
    let slot = st.reserve();
    let levels = st.levels(s, groups);
    let level_refs: Vec<&[supervise::FailureStrategy]> = levels.iter().map(Vec::as_slice).collect();
    let begin = Instant::now();
    let mut attempt = 1;
    let mut attempt_began: Instant;
    let (outcome, decision) = loop {
        started(attempt);
        attempt_began = Instant::now();
        let outcome = run_attempt(st, &resolved, &spec, &log, attempt);
        let Some(failure) = outcome.failure() else {
            break (outcome, None);
        };
        if st.run.cancel.signal().is_some() || st.deadline.as_ref().is_some_and(|d| d.passed()) {
            break (outcome, None);
        }
        match supervise::decide(failure, attempt, &level_refs) {
            Decision::Retry {
                attempt: next,
                delay,
            } => {
                // Every attempt ends with its own step_exited; a retried
                // one has its status before any strategy (failed, timeout).
                st.run.emit(Event::StepExited {
                    stage: st.stage_id().to_string(),
                    step: resolved.id.clone(),
                    status: outcome.status(),
                    exit_code: outcome.exit_code(),
                    signal: outcome.signal(),
                    duration_ms: attempt_began.elapsed().as_millis() as u64,
                    attempt,
                });
                st.run.emit(Event::StepRetrying {
                    stage: st.stage_id().to_string(),
                    step: resolved.id.clone(),
                    next_attempt: next,
                    delay_ms: delay.as_millis() as u64,
                });
                st.run.note(
                    &resolved.id,
                    &format!(
                        "retrying (attempt {next}) in {}",
                        humantime::format_duration(delay)
                    ),
                );
                // A timeout above the step ends the wait as it ends steps.
                let wait = st
                    .deadline
                    .as_ref()
                    .map_or(delay, |d| delay.min(d.remaining()));
                st.run.cancel.sleep(wait);
                attempt = next;
                st.set_status(&key, HarnessStatus::Running, attempt - 1);
            }
            decision => break (outcome, Some(decision)),
        }
    };
    let (status, effect) = supervise::resolve(&outcome, decision);
    st.set_status(&key, HarnessStatus::of_step(status, kind), attempt - 1);
    if matches!(outcome, StepOutcome::Exited(0)) {
        read_outputs(st, &resolved);
    }
    let duration = begin.elapsed();
    st.run.emit(Event::StepExited {
        stage: st.stage_id().to_string(),
        step: resolved.id.clone(),
        status,
        exit_code: outcome.exit_code(),
        signal: outcome.signal(),
        duration_ms: attempt_began.elapsed().as_millis() as u64,
        attempt,
    });
    st.run
        .note(&resolved.id, &describe(&outcome, status, attempt));
    match effect {
        supervise::StageEffect::Continue => {}
        supervise::StageEffect::Fail => st.failed.store(true, Ordering::SeqCst),
        supervise::StageEffect::Abort => {
            st.failed.store(true, Ordering::SeqCst);
            st.aborted.store(true, Ordering::SeqCst);
        }
    }
    st.record(
        slot,
        StepResult {
            step: resolved.id.clone(),
            kind,
            status,
            exit_code: outcome.exit_code(),
            signal: outcome.signal(),
            duration,
            attempts: attempt,
        },
    );
}

fn describe(outcome: &StepOutcome, status: StepStatus, attempts: u32) -> String {
    let how = match outcome {
        StepOutcome::Exited(code) => format!("exited with code {code}"),
        StepOutcome::Signaled(sig) => format!("killed by signal {sig}"),
        StepOutcome::TimedOut => "timed out".to_string(),
        StepOutcome::NotStarted(t) => format!("did not start ({t:?})"),
    };
    let tries = if attempts > 1 {
        format!(", {attempts} attempts")
    } else {
        String::new()
    };
    format!("{how} ({}{tries})", status.label())
}

/// One attempt of a Run step.
fn run_attempt(
    st: &StageRun<'_>,
    resolved: &ResolvedStep,
    spec: &crate::sandbox::SandboxSpec,
    log: &super::logs::StepLog,
    attempt: u32,
) -> StepOutcome {
    let (mut child, pumps) = match step::spawn(st.sandbox, spec, log) {
        Ok(started) => started,
        Err(message) => {
            st.run
                .note(&resolved.id, &format!("failed to start: {message}"));
            return StepOutcome::NotStarted(supervise::FailureType::InfrastructureFailure);
        }
    };
    let stage = st.stage_id().to_string();
    let id = resolved.id.clone();
    let mut on_signal = |signal| {
        st.run.emit(Event::Teardown {
            stage: stage.clone(),
            step: id.clone(),
            signal,
        })
    };
    // The stage's or pipeline's deadline, when it comes first, stops the
    // step as its own timeout would.
    let cut_by = st
        .deadline
        .as_ref()
        .filter(|d| d.remaining() < resolved.timeout);
    let timeout = cut_by.map_or(resolved.timeout, |d| d.remaining());
    let outcome = step::wait_run(
        &mut child,
        timeout,
        st.run.settings.grace,
        &st.run.cancel,
        &mut on_signal,
    );
    for pump in pumps {
        let _ = pump.join();
    }
    match outcome {
        Ok(StepOutcome::TimedOut) => {
            st.run.emit(Event::StepTimedOut {
                stage: st.stage_id().to_string(),
                step: resolved.id.clone(),
                timeout_ms: timeout.as_millis() as u64,
                attempt,
            });
            let why = match cut_by {
                Some(deadline) => {
                    st.timed_out.store(true, Ordering::SeqCst);
                    format!("stopped: {} was reached", deadline.what)
                }
                None => format!("timed out after {}", humantime::format_duration(timeout)),
            };
            st.run.note(&resolved.id, &why);
            StepOutcome::TimedOut
        }
        Ok(outcome) => outcome,
        Err(message) => {
            st.run.note(&resolved.id, &message);
            StepOutcome::NotStarted(supervise::FailureType::InfrastructureFailure)
        }
    }
}

/// Reads the step's output file into the stage's outputs.
fn read_outputs(st: &StageRun<'_>, resolved: &ResolvedStep) {
    if resolved.output_variables.is_empty() {
        return;
    }
    let inside = resolved
        .output_file
        .strip_prefix(WORKSPACE)
        .unwrap_or(&resolved.output_file)
        .trim_start_matches('/');
    let path = st.mounts.workspace.join(inside);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) => {
            st.run.note(
                &resolved.id,
                &format!("no output variables: cannot read {}: {err}", path.display()),
            );
            return;
        }
    };
    let values = super::resolve::parse_output_file(&text, &resolved.output_variables);
    {
        let mut masker = st.masker.lock().unwrap_or_else(PoisonError::into_inner);
        for name in &resolved.secret_outputs {
            if let Some(v) = values.get(name) {
                masker.add(v);
            }
        }
    }
    st.outputs
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(resolved.output_key.clone(), values);
}

fn not_started(st: &StageRun<'_>, id: &str, key: &str, kind: StepKind, message: &str) {
    st.set_status(key, HarnessStatus::Failed, 0);
    let slot = st.reserve();
    st.run.note(id, &format!("failed: {message}"));
    if kind == StepKind::Run {
        st.failed.store(true, Ordering::SeqCst);
    }
    st.record(slot, not_run(id, kind, StepStatus::Failed));
}
