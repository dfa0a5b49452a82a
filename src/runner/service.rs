//! Background steps: a watcher thread per service reports its exit the
//! moment it happens and stops it at teardown.

use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;

use super::events::Event;
use super::report::{StepKind, StepResult, StepStatus};
use super::resolve::ResolvedStep;
use super::stage::StageRun;
use super::step::{self, ServiceEnd, TailSink};
use super::supervise::Exit;

/// A Background step while its stage lives.
pub(crate) struct Service {
    slot: usize,
    id: String,
    started: Instant,
    /// When it exited on its own: its duration ends there, not at teardown.
    ended: Arc<Mutex<Option<Instant>>>,
    handle: JoinHandle<ServiceEnd>,
}

impl Service {
    /// Waits for the watcher (it stops the service once teardown is set).
    pub fn finish(self) -> (usize, StepResult) {
        let end = self.handle.join().unwrap_or(ServiceEnd::Stopped);
        let ended = *self.ended.lock().unwrap_or_else(PoisonError::into_inner);
        let duration = ended.unwrap_or_else(Instant::now) - self.started;
        let (status, exit_code, signal) = match end {
            ServiceEnd::Stopped => (StepStatus::RunningAtTeardown, None, None),
            ServiceEnd::Exited(Exit::Code(0)) => (StepStatus::Success, Some(0), None),
            ServiceEnd::Exited(Exit::Code(c)) => (StepStatus::Failed, Some(c), None),
            ServiceEnd::Exited(Exit::Signal(s)) => (StepStatus::Failed, None, Some(s)),
        };
        let result = StepResult {
            step: self.id,
            kind: StepKind::Background,
            status,
            exit_code,
            signal,
            duration,
            attempts: 1,
        };
        (self.slot, result)
    }
}

pub(super) fn start_service(
    st: &StageRun<'_>,
    slot: usize,
    resolved: &ResolvedStep,
    child: crate::sandbox::Step,
    pumps: Vec<JoinHandle<()>>,
    tail: Arc<TailSink>,
) {
    let stage = st.stage_id().to_string();
    let id = resolved.id.clone();
    let events = st.run.events.clone();
    let terminal = st.run.terminal.clone();
    let masker = st
        .masker
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let (stage2, id2, events2) = (stage.clone(), id.clone(), events.clone());
    let started = Instant::now();
    let ended = Arc::new(Mutex::new(None));
    let ended2 = ended.clone();
    let on_exit = Box::new(move |exit: Exit| {
        *ended2.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
        let (code, sig) = match exit {
            Exit::Code(c) => (Some(c), None),
            Exit::Signal(s) => (None, Some(s)),
        };
        if let Some(events) = &events {
            let _ = events.emit(&Event::BackgroundExited {
                stage: stage.clone(),
                step: id.clone(),
                exit_code: code,
                signal: sig,
            });
        }
        // Reported even with -q: a dead service explains later failures.
        let how = match exit {
            Exit::Code(c) => format!("exited with code {c}"),
            Exit::Signal(s) => format!("was killed by signal {s}"),
        };
        let mut text = format!("background step {how} while its stage runs");
        let lines = tail.lines();
        if !lines.is_empty() {
            text.push_str("; its last lines:");
        }
        let _ = terminal.note(&id, &masker.mask(&text));
        for line in lines {
            let _ = terminal.note(&id, &format!("  {line}"));
        }
    });
    let on_signal = Box::new(move |signal| {
        if let Some(events) = &events2 {
            let _ = events.emit(&Event::Teardown {
                stage: stage2.clone(),
                step: id2.clone(),
                signal,
            });
        }
    });
    let teardown = st.teardown.clone();
    let grace = st.run.settings.grace;
    let handle = std::thread::spawn(move || {
        step::watch_service(child, pumps, teardown, grace, on_exit, on_signal)
    });
    st.services
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Service {
            slot,
            id: resolved.id.clone(),
            started,
            ended,
            handle,
        });
}
