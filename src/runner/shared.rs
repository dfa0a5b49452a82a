//! What one run shares with each of its stages.

use std::path::PathBuf;
use std::sync::Arc;

use super::cancel::{Cancel, Deadline};
use super::events::{Event, EventWriter};
use super::logs::TerminalSink;
use super::Settings;
use crate::pipeline::secret::Masker;

/// What one run shares with each of its stages.
#[derive(Clone)]
pub(crate) struct RunShared<'a> {
    pub settings: &'a Settings,
    pub events: Option<Arc<EventWriter>>,
    pub terminal: Arc<TerminalSink>,
    pub cancel: Arc<Cancel>,
    pub run_dir: PathBuf,
    pub workspaces: super::workspace::Workspaces,
    pub masker: Masker,
    /// The pipeline's `timeout`.
    pub deadline: Option<Deadline>,
    /// Set for a stage that runs beside other stage instances: terminal
    /// lines of its steps are prefixed `stage/step`.
    pub stage_label: Option<String>,
}

impl RunShared<'_> {
    pub fn emit(&self, event: Event) {
        if let Some(events) = &self.events {
            if let Err(err) = events.emit(&event) {
                tracing::warn!("{}", crate::error_chain(&err));
            }
        }
    }

    pub fn note(&self, label: &str, text: &str) {
        if !self.settings.quiet {
            let label = match &self.stage_label {
                Some(stage) => super::logs::staged_label(stage, label),
                None => label.to_string(),
            };
            let _ = self.terminal.note(&label, &self.masker.mask(text));
        }
    }
}
