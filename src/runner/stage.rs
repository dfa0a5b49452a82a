//! One stage: its images, its sandbox stage (shared user + network
//! namespaces, published ports), its execution items, and its teardown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::cancel::Deadline;
use super::events::Event;
use super::logs::{LineSink, StepLog};
use super::pull::{Stop, Wanted};
use super::report::{self, StageResult, StageStatus, StepResult, StepStatus};
use super::resolve::{ResolvedStep, StageContext, StepOutputs, StepState, StepStatuses};
use super::status::HarnessStatus;
use super::step::{self, StepMounts};
use super::supervise::{self, FailureStrategy, Gate};
use super::RunError;
use crate::image::Image;
use crate::pipeline::model::{ExecutionItem, Step, StepGroup};
use crate::pipeline::secret::Masker;
use crate::sandbox;

pub(crate) use super::shared::RunShared;

/// The state of a stage while its items run.
pub(crate) struct StageRun<'a> {
    pub(super) run: &'a RunShared<'a>,
    pub(super) sc: &'a StageContext<'a>,
    pub(super) sandbox: &'a sandbox::Stage,
    pub(super) images: Mutex<BTreeMap<String, Image>>,
    pub(super) mounts: StepMounts,
    pub(super) log_dir: PathBuf,
    pub(super) masker: Mutex<Masker>,
    pub(super) outputs: Mutex<StepOutputs>,
    /// Statuses of the steps that started (RUNNING until they end).
    pub(super) statuses: Mutex<StepStatuses>,
    /// Results in start order; Background steps fill theirs at teardown.
    pub(super) results: Mutex<Vec<Option<StepResult>>>,
    pub(super) failed: AtomicBool,
    pub(super) aborted: AtomicBool,
    pub(super) services: Mutex<Vec<super::service::Service>>,
    pub(super) teardown: Arc<AtomicBool>,
    /// The stage's or the pipeline's `timeout`, whichever comes first: no
    /// step runs past it.
    pub(super) deadline: Option<Deadline>,
    /// Set when the deadline stopped a step or skipped one.
    pub(super) timed_out: AtomicBool,
}

impl StageRun<'_> {
    pub fn stage_id(&self) -> &str {
        self.sc.stage().id.as_str()
    }

    /// Reserves the next place in the results.
    pub fn reserve(&self) -> usize {
        let mut results = self.results.lock().unwrap_or_else(PoisonError::into_inner);
        results.push(None);
        results.len() - 1
    }

    pub fn record(&self, slot: usize, result: StepResult) {
        let mut results = self.results.lock().unwrap_or_else(PoisonError::into_inner);
        results[slot] = Some(result);
    }

    pub fn outputs(&self) -> StepOutputs {
        self.outputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn statuses(&self) -> StepStatuses {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records where the step `key` (see `resolve::step_key`) is now.
    pub fn set_status(&self, key: &str, status: HarnessStatus, retry_count: u32) {
        self.statuses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                key.to_string(),
                StepState {
                    status,
                    retry_count,
                },
            );
    }

    /// The step's log: terminal and events (masked), its file, its tail.
    pub fn step_log(
        &self,
        resolved: &ResolvedStep,
        tail: Arc<step::TailSink>,
    ) -> Result<StepLog, RunError> {
        let mut masker = self
            .masker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for value in &resolved.secret_values {
            masker.add(value);
        }
        let mut sinks: Vec<Arc<dyn LineSink>> = Vec::new();
        if !self.run.settings.quiet {
            match &self.run.stage_label {
                Some(stage) => sinks.push(Arc::new(super::logs::StagedTerminal::new(
                    self.run.terminal.clone(),
                    stage,
                ))),
                None => sinks.push(self.run.terminal.clone()),
            }
        }
        if let Some(events) = &self.run.events {
            sinks.push(events.clone());
        }
        sinks.push(tail);
        let file =
            super::logs::FileSink::create(&self.log_dir, &resolved.id).map_err(|source| {
                RunError::Log {
                    stage: self.stage_id().to_string(),
                    source,
                }
            })?;
        sinks.push(Arc::new(file));
        Ok(StepLog::new(self.stage_id(), &resolved.id, masker, sinks))
    }

    /// The step's image, pulled now if it was not known before the stage
    /// started (its reference used an output of an earlier step).
    pub fn image_for(&self, resolved: &ResolvedStep) -> Result<Option<Image>, String> {
        let Some(reference) = &resolved.image else {
            return Ok(None);
        };
        if let Some(image) = self
            .images
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(reference)
        {
            return Ok(Some(image.clone()));
        }
        let wanted = [Wanted {
            image: reference.clone(),
            step: resolved.id.clone(),
            policy: resolved.pull_policy,
            connector: resolved.connector.clone(),
        }];
        let stop = Stop {
            cancel: &self.run.cancel,
            deadline: self.deadline.as_ref(),
        };
        let images = self
            .run
            .settings
            .pull(
                self.sc.run().secrets(),
                &wanted,
                self.run.events.clone(),
                &stop,
            )
            .map_err(|err| super::prepare::pull_failure(&err))?;
        let image = images.get(reference).cloned();
        self.images
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(images);
        Ok(image)
    }

    /// Failure strategies from the step out: step, groups innermost first, stage.
    pub fn levels(&self, step: &Step, groups: &[&StepGroup]) -> Vec<Vec<FailureStrategy>> {
        let mut levels = vec![super::failure::strategies(&step.failure_strategies)];
        for g in groups.iter().rev() {
            levels.push(super::failure::strategies(&g.failure_strategies));
        }
        levels.push(super::failure::strategies(
            &self.sc.stage().failure_strategies,
        ));
        levels
    }
}

/// Every step of the stage with its enclosing groups.
pub(super) fn all_steps<'s>(
    items: &'s [ExecutionItem],
    groups: &[&'s StepGroup],
    out: &mut Vec<(&'s Step, Vec<&'s StepGroup>)>,
) {
    for item in items {
        match item {
            ExecutionItem::Step(s) => out.push((s, groups.to_vec())),
            ExecutionItem::Parallel(p) => all_steps(&p.items, groups, out),
            ExecutionItem::Group(g) => {
                let mut inner = groups.to_vec();
                inner.push(g);
                all_steps(&g.steps, &inner, out);
            }
        }
    }
}

/// A stage that did not run (its `when`, or a timeout before it began).
pub(crate) fn skipped(stage_id: &str, error: Option<String>) -> StageResult {
    StageResult {
        stage: stage_id.to_string(),
        status: StageStatus::Skipped,
        duration: Duration::ZERO,
        steps: Vec::new(),
        error,
        timed_out: false,
    }
}

/// A stage not started because `deadline` had passed.
pub(crate) fn not_reached(run: &RunShared<'_>, stage_id: &str, deadline: &Deadline) -> StageResult {
    let message = format!("not started: {} was reached", deadline.what);
    run.note(stage_id, &message);
    skipped(stage_id, Some(message))
}

/// A stage that could not start (or stopped before its first step):
/// `stage_finished` with the reason, which `corral run` prints after the
/// summary.
pub(crate) fn failed(
    run: &RunShared<'_>,
    stage_id: &str,
    started: Instant,
    message: String,
    timed_out: bool,
) -> StageResult {
    let message = run.masker.mask(&message).into_owned();
    run.note(stage_id, &format!("stage failed: {message}"));
    let duration = started.elapsed();
    run.emit(Event::StageFinished {
        stage: stage_id.to_string(),
        status: StageStatus::Failed,
        duration_ms: duration.as_millis() as u64,
        error: Some(message.clone()),
    });
    StageResult {
        stage: stage_id.to_string(),
        status: StageStatus::Failed,
        duration,
        steps: Vec::new(),
        error: Some(message),
        timed_out,
    }
}

/// What a stage leaves for the stages after it.
pub(crate) type StageOutcome = (StageResult, StepOutputs, StepStatuses);

/// The outcome of a stage none of whose steps started.
pub(crate) fn alone(result: StageResult) -> StageOutcome {
    (result, StepOutputs::new(), StepStatuses::new())
}

/// Runs one stage to its end; `pipeline_failed` is whether an earlier
/// stage failed (for the stage's `when`). Never an error: a stage that
/// cannot start is a failed stage with its reason.
pub(crate) fn run_stage(
    run: &RunShared<'_>,
    sc: &StageContext<'_>,
    pipeline_failed: bool,
    aborted: bool,
) -> StageOutcome {
    let stage = sc.stage();
    let stage_id = stage.id.value.clone();
    let started = Instant::now();
    let when = match sc.stage_when() {
        Ok(when) => when,
        Err(err) => {
            let message = format!(
                "its `when` cannot be evaluated: {}",
                crate::error_chain(&err)
            );
            return alone(failed(run, &stage_id, started, message, false));
        }
    };
    if let Gate::Skip(reason) = supervise::gate(when.as_ref(), pipeline_failed, aborted) {
        let why = reason.describe_stage();
        run.note(&stage_id, &format!("stage skipped: {why}"));
        run.emit(Event::StageFinished {
            stage: stage_id.clone(),
            status: StageStatus::Skipped,
            duration_ms: 0,
            error: Some(format!("skipped: {why}")),
        });
        return alone(skipped(&stage_id, Some(format!("skipped: {why}"))));
    }
    run.emit(Event::StageStarted {
        stage: stage_id.clone(),
    });
    let deadline = Deadline::earliest(
        run.deadline.clone(),
        stage.timeout.map(|t| Deadline::after(started, t, "stage")),
    );
    let prepared = match super::prepare::prepare(run, sc, deadline.as_ref()) {
        Ok(prepared) => prepared,
        Err(super::prepare::NotStarted::Failed(message)) => {
            return alone(failed(run, &stage_id, started, message, false))
        }
        Err(super::prepare::NotStarted::TimedOut(message)) => {
            return alone(failed(run, &stage_id, started, message, true))
        }
        Err(super::prepare::NotStarted::Interrupted(message)) => {
            run.note(&stage_id, &message);
            run.emit(Event::StageFinished {
                stage: stage_id.clone(),
                status: StageStatus::Skipped,
                duration_ms: started.elapsed().as_millis() as u64,
                error: Some(message.clone()),
            });
            let mut result = skipped(&stage_id, Some(message));
            result.duration = started.elapsed();
            return alone(result);
        }
    };
    let super::prepare::Prepared {
        images,
        sandbox,
        shared,
        group_shared,
        hosts,
        workspace,
    } = prepared;
    let log_dir = run.run_dir.join("logs").join(&stage_id);
    let deadline_what = deadline.as_ref().map(|d| d.what.clone());
    let (results, outputs, statuses, aborted, failed, timed_out) = {
        let state = StageRun {
            run,
            sc,
            sandbox: &sandbox,
            images: Mutex::new(images),
            mounts: StepMounts {
                workspace,
                shared,
                hosts,
                group_shared,
            },
            log_dir,
            masker: Mutex::new(run.masker.clone()),
            outputs: Mutex::new(StepOutputs::new()),
            statuses: Mutex::new(StepStatuses::new()),
            results: Mutex::new(Vec::new()),
            failed: AtomicBool::new(false),
            aborted: AtomicBool::new(aborted),
            services: Mutex::new(Vec::new()),
            teardown: Arc::new(AtomicBool::new(false)),
            deadline,
            timed_out: AtomicBool::new(false),
        };
        super::items::run_items(&state, &stage.execution, &[]);
        // Teardown: services get SIGTERM, the grace period, then SIGKILL.
        state.teardown.store(true, Ordering::SeqCst);
        let services = std::mem::take(
            &mut *state
                .services
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for service in services {
            let (slot, result) = service.finish();
            run.emit(Event::StepExited {
                stage: stage_id.clone(),
                step: result.step.clone(),
                status: result.status,
                exit_code: result.exit_code,
                signal: result.signal,
                duration_ms: result.duration.as_millis() as u64,
                attempt: 1,
            });
            state.record(slot, result);
        }
        let outputs = state.outputs();
        let statuses = state.statuses();
        let mut results: Vec<StepResult> = state
            .results
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .into_iter()
            .flatten()
            .collect();
        super::items::yaml_order(&stage.execution, &mut results);
        let aborted = state.aborted.load(Ordering::SeqCst);
        let failed = state.failed.load(Ordering::SeqCst);
        let timed_out = state.timed_out.load(Ordering::SeqCst);
        (results, outputs, statuses, aborted, failed, timed_out)
    };
    if let Err(err) = sandbox.shutdown(run.settings.grace) {
        tracing::warn!("stage {stage_id}: {}", crate::error_chain(&err));
    }
    let mut status = report::stage_status(&results, aborted);
    if status == StageStatus::Success && (failed || timed_out) {
        status = StageStatus::Failed;
    }
    let error = timed_out.then(|| {
        format!(
            "{} was reached: running steps were stopped and the rest skipped",
            deadline_what.unwrap_or_else(|| "a timeout".to_string())
        )
    });
    let duration = started.elapsed();
    run.emit(Event::StageFinished {
        stage: stage_id.clone(),
        status,
        duration_ms: duration.as_millis() as u64,
        error: error.clone(),
    });
    let result = StageResult {
        stage: stage_id,
        status,
        duration,
        steps: results,
        error,
        timed_out,
    };
    (result, outputs, statuses)
}

/// A step that never started: its result.
pub(crate) fn not_run(id: &str, kind: report::StepKind, status: StepStatus) -> StepResult {
    StepResult {
        step: id.to_string(),
        kind,
        status,
        exit_code: None,
        signal: None,
        duration: Duration::ZERO,
        attempts: 0,
    }
}
