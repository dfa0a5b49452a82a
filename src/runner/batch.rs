//! A batch of stages that run at the same time: a `parallel:` stage group
//! and the copies of looped stages, each loop's copies at most its
//! `maxConcurrency` at a time.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Instant;

use super::resolve;
use super::stage::{self, RunShared};
use crate::error_chain;
use crate::pipeline::model::Stage;

/// Runs a batch of stages at once (a `parallel:` stage group, copies of a
/// looped stage, or both); the copies of one looped stage at most its
/// `maxConcurrency` at a time, in order. Results in batch order. A stage
/// whose steps cannot be resolved fails alone.
pub(super) fn run_batch(
    shared: &RunShared<'_>,
    contexts: &[Result<resolve::StageContext<'_>, resolve::ResolveError>],
    batch: &[Stage],
    failed: bool,
    aborted: bool,
) -> Vec<stage::StageOutcome> {
    let at_once = runs_at_once(batch);
    let run_one = |i: usize| {
        // Beside other stage instances, step lines name their stage.
        let labeled;
        let shared = if at_once {
            labeled = RunShared {
                stage_label: Some(batch[i].id.value.clone()),
                ..shared.clone()
            };
            &labeled
        } else {
            shared
        };
        // A copy that waited for its turn past the pipeline's timeout.
        if let Some(deadline) = shared.deadline.as_ref().filter(|d| d.passed()) {
            return stage::alone(stage::not_reached(shared, &batch[i].id.value, deadline));
        }
        match &contexts[i] {
            Ok(sc) => stage::run_stage(shared, sc, failed, aborted),
            Err(err) => {
                let message = format!("failed to resolve its steps: {}", error_chain(err));
                stage::alone(stage::failed(
                    shared,
                    &batch[i].id.value,
                    Instant::now(),
                    message,
                    false,
                ))
            }
        }
    };
    if batch.len() == 1 {
        return vec![run_one(0)];
    }
    // Each copy's turn within its loop: copy k waits for k+1-cap copies of
    // its loop to finish, so at most `cap` run at once.
    let mut turns = Vec::with_capacity(batch.len());
    let mut seen: BTreeMap<usize, usize> = BTreeMap::new();
    for stage in batch {
        turns.push(stage.loop_group.map(|g| {
            let k = seen.entry(g).or_default();
            *k += 1;
            (g, *k - 1)
        }));
    }
    let loops: BTreeMap<usize, Loop> = batch
        .iter()
        .filter_map(|s| Some((s.loop_group?, s.max_concurrency)))
        .map(|(g, cap)| (g, Loop::new(cap)))
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..batch.len())
            .map(|i| {
                let turn = turns[i].and_then(|(g, k)| Some((loops.get(&g)?, k)));
                let run_one = &run_one;
                scope.spawn(move || {
                    if let Some((lp, k)) = turn {
                        lp.wait_turn(k);
                    }
                    let outcome = run_one(i);
                    if let Some((lp, _)) = turn {
                        lp.finished();
                    }
                    outcome
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// The stages of a run cut into batches that run one after the other: a
/// `parallel:` stage group (with the copies of looped stages in it) or the
/// copies of one looped stage form one batch, any other stage its own.
pub(super) fn batches(stages: &[Stage]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut next = 0;
    while next < stages.len() {
        let group = stages[next].parallel_group;
        let mut end = next + 1;
        while group.is_some() && end < stages.len() && stages[end].parallel_group == group {
            end += 1;
        }
        out.push(next..end);
        next = end;
    }
    out
}

/// Whether more than one stage instance of `batch` may run at the same
/// time (the copies of a loop count up to its `maxConcurrency`).
pub(super) fn runs_at_once(batch: &[Stage]) -> bool {
    let mut loops: BTreeMap<usize, (usize, Option<usize>)> = BTreeMap::new();
    let mut alone = 0;
    for stage in batch {
        match stage.loop_group {
            Some(g) => loops.entry(g).or_insert((0, stage.max_concurrency)).0 += 1,
            None => alone += 1,
        }
    }
    let looped: usize = loops
        .values()
        .map(|&(n, cap)| cap.map_or(n, |c| c.clamp(1, n.max(1))))
        .sum();
    alone + looped > 1
}

/// The copies of one looped stage: how many may run, how many finished.
struct Loop {
    cap: Option<usize>,
    finished: std::sync::Mutex<usize>,
    changed: std::sync::Condvar,
}

impl Loop {
    fn new(cap: Option<usize>) -> Self {
        Loop {
            cap: cap.map(|c| c.max(1)),
            finished: std::sync::Mutex::new(0),
            changed: std::sync::Condvar::new(),
        }
    }

    /// Blocks copy `k` (0-based, in order) until fewer than `cap` copies
    /// before it are still running.
    fn wait_turn(&self, k: usize) {
        let Some(cap) = self.cap else { return };
        let mut finished = self
            .finished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *finished + cap <= k {
            finished = self
                .changed
                .wait(finished)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn finished(&self) {
        let mut finished = self
            .finished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *finished += 1;
        self.changed.notify_all();
    }
}
