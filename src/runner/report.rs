//! Results of steps and stages, the summary table printed after a run, and
//! the process exit code they map to.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::pipeline::secret::Masker;

/// Exit code of a step that hit its timeout (as `timeout(1)` uses it).
pub const TIMEOUT_EXIT: u8 = 124;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StepKind {
    Run,
    Background,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Run => "Run",
            StepKind::Background => "Background",
        }
    }
}

/// Final status of a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Success,
    Failed,
    /// Killed at its timeout.
    Timeout,
    /// Not run: its `when` did not hold or the stage was aborted.
    Skipped,
    /// Failed, but a failure strategy said Ignore; the stage goes on.
    Ignored,
    /// A Background step still running when the stage ended (the normal end
    /// of a service).
    RunningAtTeardown,
}

impl StepStatus {
    pub fn label(self) -> &'static str {
        match self {
            StepStatus::Success => "Success",
            StepStatus::Failed => "Failed",
            StepStatus::Timeout => "Timeout",
            StepStatus::Skipped => "Skipped",
            StepStatus::Ignored => "Ignored",
            StepStatus::RunningAtTeardown => "Running at teardown",
        }
    }

    /// Whether this status fails its stage (Background steps never do).
    pub fn fails_stage(self, kind: StepKind) -> bool {
        kind == StepKind::Run && matches!(self, StepStatus::Failed | StepStatus::Timeout)
    }

    fn color(self) -> &'static str {
        match self {
            StepStatus::Success => "32",
            StepStatus::Failed | StepStatus::Timeout => "31",
            StepStatus::Ignored => "33",
            StepStatus::Skipped | StepStatus::RunningAtTeardown => "2",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    Success,
    Failed,
    /// Stopped by an Abort failure strategy.
    Aborted,
    Skipped,
}

impl StageStatus {
    pub fn label(self) -> &'static str {
        match self {
            StageStatus::Success => "Success",
            StageStatus::Failed => "Failed",
            StageStatus::Aborted => "Aborted",
            StageStatus::Skipped => "Skipped",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepResult {
    /// Step identifier (`group_step` inside a step group).
    pub step: String,
    pub kind: StepKind,
    pub status: StepStatus,
    /// Exit code of the last attempt, when it exited normally.
    pub exit_code: Option<i32>,
    /// Signal that ended the last attempt, when one did.
    pub signal: Option<i32>,
    pub duration: Duration,
    /// 1 plus the number of retries.
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StageResult {
    pub stage: String,
    pub status: StageStatus,
    pub duration: Duration,
    pub steps: Vec<StepResult>,
    /// Why the stage could not start or was cut short (a pull, a busy
    /// port, the holder, a timeout), naming what to do; `corral run`
    /// prints it after the summary table.
    pub error: Option<String>,
    /// A `timeout` (the stage's or the pipeline's) cut the stage short.
    pub timed_out: bool,
}

/// "850ms", "3.2s", "1m05s", "2h03m": short and stable-width enough for a table.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
    } else if ms < 3_600_000 {
        let s = ms / 1000;
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        let m = ms / 60_000;
        format!("{}h{:02}m", m / 60, m % 60)
    }
}

/// The exit code column: the code, `sig N`, or `-`.
fn exit_column(step: &StepResult) -> String {
    match (step.exit_code, step.signal) {
        (Some(code), _) => code.to_string(),
        (None, Some(sig)) => format!("sig {sig}"),
        (None, None) => "-".to_string(),
    }
}

/// The summary table of a run, one row per step, every cell masked.
///
/// ```text
/// STAGE  STEP           TYPE        STATUS               EXIT  DURATION
/// build  Sauce_Connect  Background  Running at teardown  -     6.1s
/// build  Wait_for_SC    Run         Success              0     3.0s
/// ```
pub fn render_table(stages: &[StageResult], masker: &Masker, color: bool) -> String {
    const HEADER: [&str; 6] = ["STAGE", "STEP", "TYPE", "STATUS", "EXIT", "DURATION"];
    let mut rows: Vec<([String; 6], Option<StepStatus>)> = Vec::new();
    for stage in stages {
        if stage.steps.is_empty() {
            let cells = [
                stage.stage.clone(),
                "-".to_string(),
                "Stage".to_string(),
                stage.status.label().to_string(),
                "-".to_string(),
                format_duration(stage.duration),
            ];
            rows.push((cells, None));
        }
        for step in &stage.steps {
            let attempts = if step.attempts > 1 {
                format!(" ({} attempts)", step.attempts)
            } else {
                String::new()
            };
            let cells = [
                stage.stage.clone(),
                step.step.clone(),
                step.kind.as_str().to_string(),
                format!("{}{attempts}", step.status.label()),
                exit_column(step),
                format_duration(step.duration),
            ];
            rows.push((cells, Some(step.status)));
        }
    }
    let rows: Vec<([String; 6], Option<StepStatus>)> = rows
        .into_iter()
        .map(|(cells, status)| (cells.map(|c| masker.mask(&c).into_owned()), status))
        .collect();
    let mut widths = HEADER.map(|h| h.chars().count());
    for (cells, _) in &rows {
        for (w, c) in widths.iter_mut().zip(cells) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    push_row(&mut out, &HEADER.map(str::to_string), &widths, None);
    for (cells, status) in &rows {
        push_row(&mut out, cells, &widths, status.filter(|_| color));
    }
    out
}

fn push_row(
    out: &mut String,
    cells: &[String; 6],
    widths: &[usize; 6],
    status: Option<StepStatus>,
) {
    let mut line = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        let last = i == cells.len() - 1;
        let padded = if last {
            cell.clone()
        } else {
            format!("{cell:<width$}  ")
        };
        match status {
            // Color only the status column, padding outside the escape codes.
            Some(s) if i == 3 => {
                let pad = padded.len() - cell.len();
                let _ = write!(line, "\x1b[{}m{cell}\x1b[0m{}", s.color(), " ".repeat(pad));
            }
            _ => line.push_str(&padded),
        }
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// The status of a stage from its steps' final statuses: Aborted when an
/// Abort strategy stopped it, Failed when a Run step failed or timed out
/// without a strategy forgiving it, else Success.
pub fn stage_status(steps: &[StepResult], aborted: bool) -> StageStatus {
    if aborted {
        StageStatus::Aborted
    } else if steps.iter().any(|s| s.status.fails_stage(s.kind)) {
        StageStatus::Failed
    } else {
        StageStatus::Success
    }
}

/// The exit code of `corral run` for these results: 0 when every stage
/// succeeded; otherwise the code of the first step that failed its stage
/// (124 for a timeout, 128+N for a signal), 124 when a stage or pipeline
/// timeout stopped the stage before a step failed, or 1.
pub fn exit_code(stages: &[StageResult]) -> u8 {
    let failed = stages
        .iter()
        .filter(|s| matches!(s.status, StageStatus::Failed | StageStatus::Aborted))
        .collect::<Vec<_>>();
    let Some(first) = failed.first() else {
        return 0;
    };
    let step = first.steps.iter().find(|s| s.status.fails_stage(s.kind));
    match step {
        None if first.timed_out => TIMEOUT_EXIT,
        Some(s) if s.status == StepStatus::Timeout => TIMEOUT_EXIT,
        Some(StepResult {
            exit_code: Some(code),
            ..
        }) if (1..=255).contains(code) => *code as u8,
        Some(StepResult {
            signal: Some(sig), ..
        }) if (1..=127).contains(sig) => 128 + *sig as u8,
        _ => 1,
    }
}
