//! A batch of stages that run at the same time: a `parallel:` stage group
//! and the copies of looped stages, each loop's copies at most its
//! `maxConcurrency` at a time.

use std::collections::BTreeMap;
use std::time::Instant;

use super::resolve;
use super::stage::{self, RunShared};
use super::step::error_chain;

/// Runs a batch of stages at once (a `parallel:` stage group, copies of a
/// looped stage, or both); the copies of one looped stage at most its
/// `maxConcurrency` at a time, in order. Results in batch order. A stage
/// whose steps cannot be resolved fails alone.
pub(super) fn run_batch(
    shared: &RunShared<'_>,
    contexts: &[Result<resolve::StageContext<'_>, resolve::ResolveError>],
    batch: &[crate::pipeline::model::Stage],
    failed: bool,
    aborted: bool,
) -> Vec<stage::StageOutcome> {
    let run_one = |i: usize| {
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
