//! The `--events FILE` stream: one JSON object per line for every state
//! change of a run. The schema is versioned (`"v": 1`) and documented in
//! `docs/events.md`; add fields freely, but renaming or removing one, or
//! changing its meaning, needs a new version.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use time::OffsetDateTime;

use super::logs::{LineSink, LogLine, Stream};
use super::report::{StageStatus, StepKind, StepStatus};
use crate::pipeline::secret::Masker;

/// Version of the event schema written in every event's `v`.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("failed to create events file {path}")]
    CreateFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to encode a {kind} event")]
    Encode {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("failed to write to the events stream")]
    Write {
        #[source]
        source: io::Error,
    },
}

/// Phase of an image pull reported by `pull_progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PullPhase {
    Resolving,
    Downloading,
    /// The layer was already in the store.
    Cached,
    /// The layer has been unpacked.
    Extracting,
    Done,
}

/// Signal corral sent to a service at teardown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TeardownSignal {
    Sigterm,
    Sigkill,
}

/// Every kind of event, serialized with its name in `type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        pipeline: String,
        file: String,
    },
    StageStarted {
        stage: String,
    },
    StepStarted {
        stage: String,
        step: String,
        kind: StepKind,
        /// Image reference, or null for a step on the host root.
        image: Option<String>,
        attempt: u32,
    },
    Log {
        stage: String,
        step: String,
        stream: Stream,
        line: String,
    },
    StepExited {
        stage: String,
        step: String,
        status: StepStatus,
        exit_code: Option<i32>,
        signal: Option<i32>,
        duration_ms: u64,
        attempt: u32,
    },
    StepTimedOut {
        stage: String,
        step: String,
        timeout_ms: u64,
        attempt: u32,
    },
    StepRetrying {
        stage: String,
        step: String,
        /// The attempt about to start (2 for the first retry).
        next_attempt: u32,
        delay_ms: u64,
    },
    StepSkipped {
        stage: String,
        step: String,
        reason: String,
    },
    /// A Background step ended on its own before teardown.
    BackgroundExited {
        stage: String,
        step: String,
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    /// corral stops a service that was still running at the end of its stage.
    Teardown {
        stage: String,
        step: String,
        signal: TeardownSignal,
    },
    PullProgress {
        image: String,
        phase: PullPhase,
        /// Layer digest, when the event is about one layer.
        digest: Option<String>,
        done_bytes: u64,
        total_bytes: Option<u64>,
    },
    StageFinished {
        stage: String,
        status: StageStatus,
        duration_ms: u64,
        /// Why the stage could not start or was cut short, else null.
        error: Option<String>,
    },
    RunFinished {
        exit_code: u8,
        duration_ms: u64,
    },
}

impl Event {
    /// The `type` string of this event.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::RunStarted { .. } => "run_started",
            Event::StageStarted { .. } => "stage_started",
            Event::StepStarted { .. } => "step_started",
            Event::Log { .. } => "log",
            Event::StepExited { .. } => "step_exited",
            Event::StepTimedOut { .. } => "step_timed_out",
            Event::StepRetrying { .. } => "step_retrying",
            Event::StepSkipped { .. } => "step_skipped",
            Event::BackgroundExited { .. } => "background_exited",
            Event::Teardown { .. } => "teardown",
            Event::PullProgress { .. } => "pull_progress",
            Event::StageFinished { .. } => "stage_finished",
            Event::RunFinished { .. } => "run_finished",
        }
    }
}

/// Time source of event timestamps; tests pass a fixed one.
pub type Clock = fn() -> OffsetDateTime;

/// Writes events as JSON lines, every string value masked.
pub struct EventWriter {
    out: Mutex<Box<dyn Write + Send>>,
    masker: Masker,
    clock: Clock,
}

impl EventWriter {
    pub fn new(out: Box<dyn Write + Send>, masker: Masker) -> Self {
        Self::with_clock(out, masker, OffsetDateTime::now_utc)
    }

    pub fn with_clock(out: Box<dyn Write + Send>, masker: Masker, clock: Clock) -> Self {
        EventWriter {
            out: Mutex::new(out),
            masker,
            clock,
        }
    }

    /// Opens `--events` target: `-` is stdout, anything else a file created
    /// (or truncated) at that path.
    pub fn open(target: &Path, masker: Masker) -> Result<Self, EventsError> {
        if target == Path::new("-") {
            return Ok(Self::new(Box::new(io::stdout()), masker));
        }
        let file = File::create(target).map_err(|source| EventsError::CreateFile {
            path: target.to_path_buf(),
            source,
        })?;
        Ok(Self::new(Box::new(BufWriter::new(file)), masker))
    }

    /// Encodes one event as a JSON line (masked; `v`, `ts`, `type`, then the
    /// event's fields in name order), without writing it.
    pub fn encode(&self, event: &Event) -> Result<String, EventsError> {
        let encode = |source| EventsError::Encode {
            kind: event.kind(),
            source,
        };
        let mut value = serde_json::to_value(event).map_err(encode)?;
        // Mask values, not the encoded text: JSON escaping would hide a
        // secret holding quotes or backslashes from a text search.
        mask_strings(&mut value, &self.masker);
        let ts = serde_json::Value::String(format_ts((self.clock)()));
        // `v`, `ts` and `type` lead every line, for people reading it.
        let mut line = format!(
            "{{\"v\":{SCHEMA_VERSION},\"ts\":{ts},\"type\":\"{}\"",
            event.kind()
        );
        if let serde_json::Value::Object(fields) = value {
            let mut fields: Vec<_> = fields.into_iter().filter(|(k, _)| k != "type").collect();
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            for (key, field) in &fields {
                line.push(',');
                line.push_str(&serde_json::to_string(key).map_err(encode)?);
                line.push(':');
                line.push_str(&serde_json::to_string(field).map_err(encode)?);
            }
        }
        line.push('}');
        Ok(line)
    }

    /// Writes one event and flushes, so a reader tailing the file sees it.
    pub fn emit(&self, event: &Event) -> Result<(), EventsError> {
        let mut line = self.encode(event)?;
        line.push('\n');
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        out.write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|source| EventsError::Write { source })
    }
}

impl LineSink for EventWriter {
    fn line(&self, line: &LogLine<'_>) -> io::Result<()> {
        let event = Event::Log {
            stage: line.stage.to_string(),
            step: line.step.to_string(),
            stream: line.stream,
            line: line.text.to_string(),
        };
        self.emit(&event).map_err(|err| match err {
            EventsError::Write { source } => source,
            other => io::Error::other(other.to_string()),
        })
    }
}

/// RFC 3339 in UTC with millisecond precision: `2026-11-27T22:46:02.123Z`.
/// Always three digits: the well-known RFC 3339 format drops a zero
/// fraction and trailing zeros, so consumers could not parse it by width.
pub fn format_ts(t: OffsetDateTime) -> String {
    const FORMAT: &[time::format_description::FormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(FORMAT)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn mask_strings(value: &mut serde_json::Value, masker: &Masker) {
    match value {
        serde_json::Value::String(s) => {
            if let std::borrow::Cow::Owned(masked) = masker.mask(s) {
                *s = masked;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| mask_strings(v, masker)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| mask_strings(v, masker)),
        _ => {}
    }
}
