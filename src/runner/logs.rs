//! Step output: read a step's stdout/stderr pipes line by line, mask every
//! line, and hand it to sinks — the terminal (prefixed like docker compose:
//! `Sauce_Connect  | …`), a per-step log file and the events writer.
//!
//! Masking happens on whole lines, never on raw reads, so a secret that
//! arrives split over two writes is still seen whole.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, IsTerminal, LineWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use serde::Serialize;

use crate::cli::ColorChoice;
use crate::pipeline::secret::Masker;

/// Longest line kept whole. A longer line is cut into pieces of at most this
/// many bytes, preferably at whitespace so a secret is unlikely to be split.
pub const MAX_LINE: usize = 256 * 1024;

/// How far back from the cut point a long line looks for whitespace.
const CUT_SEARCH: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("failed to create log directory {path}")]
    CreateLogDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to create step log {path}")]
    CreateLogFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to read {stream} of step {step}")]
    ReadStream {
        step: String,
        stream: Stream,
        #[source]
        source: io::Error,
    },
    #[error("failed to start the log thread of step {step}")]
    SpawnThread {
        step: String,
        #[source]
        source: io::Error,
    },
}

/// Which pipe of the step a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl std::fmt::Display for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        })
    }
}

/// One masked line of output, without its line ending.
#[derive(Debug, Clone, Copy)]
pub struct LogLine<'a> {
    pub stage: &'a str,
    pub step: &'a str,
    pub stream: Stream,
    pub text: &'a str,
}

/// Receives every masked line of every step it is attached to.
pub trait LineSink: Send + Sync {
    fn line(&self, line: &LogLine<'_>) -> io::Result<()>;
}

/// Whether to color output written to a stream that is (or not) a terminal.
/// `Auto` also honours the NO_COLOR convention.
pub fn color_enabled(choice: ColorChoice, is_terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => is_terminal && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// `color_enabled` for this process's stdout.
pub fn stdout_color(choice: ColorChoice) -> bool {
    color_enabled(choice, io::stdout().is_terminal())
}

/// The colors of step prefixes, in the order docker compose uses them.
const PALETTE: [&str; 10] = ["36", "33", "32", "35", "34", "96", "93", "92", "95", "94"];

/// Writes `step | line` to a terminal (or any writer), one whole line per
/// write so lines of concurrent steps never interleave.
pub struct TerminalSink {
    out: Mutex<Box<dyn Write + Send>>,
    color: bool,
    prefixes: Mutex<Prefixes>,
}

struct Prefixes {
    width: usize,
    by_step: HashMap<String, String>,
}

impl TerminalSink {
    /// `steps` are the labels known up front; they set the column width and
    /// get colors in this order. Others get theirs when first seen.
    pub fn new(out: Box<dyn Write + Send>, color: bool, steps: &[&str]) -> Self {
        let sink = TerminalSink {
            out: Mutex::new(out),
            color,
            prefixes: Mutex::new(Prefixes {
                width: steps.iter().map(|s| s.chars().count()).max().unwrap_or(0),
                by_step: HashMap::new(),
            }),
        };
        for step in steps {
            sink.prefix(step);
        }
        sink
    }

    /// A sink writing to this process's stdout.
    pub fn stdout(color: ColorChoice, steps: &[&str]) -> Self {
        Self::new(Box::new(io::stdout()), stdout_color(color), steps)
    }

    fn prefix(&self, step: &str) -> String {
        let mut prefixes = self.prefixes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = prefixes.by_step.get(step) {
            return p.clone();
        }
        let index = prefixes.by_step.len();
        let width = prefixes.width.max(step.chars().count());
        let padded = format!("{step:<width$} |");
        let rendered = if self.color {
            format!("\x1b[{}m{padded}\x1b[0m", PALETTE[index % PALETTE.len()])
        } else {
            padded
        };
        prefixes.by_step.insert(step.to_string(), rendered.clone());
        rendered
    }

    /// Writes a line of corral's own about a step (e.g. its exit), with the
    /// step's prefix. The caller masks it.
    pub fn note(&self, step: &str, text: &str) -> io::Result<()> {
        self.write_line(step, text)
    }

    fn write_line(&self, step: &str, text: &str) -> io::Result<()> {
        let prefix = self.prefix(step);
        let mut buf = String::with_capacity(prefix.len() + text.len() + 2);
        buf.push_str(&prefix);
        buf.push(' ');
        buf.push_str(text);
        buf.push('\n');
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        out.write_all(buf.as_bytes())?;
        out.flush()
    }
}

impl LineSink for TerminalSink {
    fn line(&self, line: &LogLine<'_>) -> io::Result<()> {
        self.write_line(line.step, line.text)
    }
}

/// The terminal prefix of `step` in a stage that runs beside other stage
/// instances (a `parallel:` stage or a looped stage's copy): `stage/step`,
/// so the lines of two copies of one step tell apart. A note about the
/// stage itself keeps the bare stage id.
pub fn staged_label(stage: &str, step: &str) -> String {
    if step == stage {
        stage.to_string()
    } else {
        format!("{stage}/{step}")
    }
}

/// The terminal, for the steps of one stage that runs beside others:
/// every line gets the [`staged_label`] prefix.
pub struct StagedTerminal {
    terminal: Arc<TerminalSink>,
    stage: String,
}

impl StagedTerminal {
    pub fn new(terminal: Arc<TerminalSink>, stage: &str) -> Self {
        StagedTerminal {
            terminal,
            stage: stage.to_string(),
        }
    }
}

impl LineSink for StagedTerminal {
    fn line(&self, line: &LogLine<'_>) -> io::Result<()> {
        self.terminal
            .write_line(&staged_label(&self.stage, line.step), line.text)
    }
}

/// The name of a step's log file in its stage's log directory
/// (`logs/<stage>/` in the run directory).
pub fn log_file_name(step: &str) -> String {
    format!("{}.log", step.replace('/', "_"))
}

/// The plain (unprefixed, uncolored) log of one step, both streams.
pub struct FileSink {
    path: PathBuf,
    file: Mutex<LineWriter<File>>,
}

impl FileSink {
    /// Creates `dir/<step>.log` (and `dir`); a step label never holds `/`.
    pub fn create(dir: &Path, step: &str) -> Result<Self, LogError> {
        std::fs::create_dir_all(dir).map_err(|source| LogError::CreateLogDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(log_file_name(step));
        let file = File::create(&path).map_err(|source| LogError::CreateLogFile {
            path: path.clone(),
            source,
        })?;
        Ok(FileSink {
            path,
            file: Mutex::new(LineWriter::new(file)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl LineSink for FileSink {
    fn line(&self, line: &LogLine<'_>) -> io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(line.text.as_bytes())?;
        file.write_all(b"\n")
    }
}

/// Cuts a byte stream into masked lines. Pure: no I/O, so it is what the
/// tests exercise directly.
pub struct LineSplitter {
    masker: Masker,
    pending: Vec<u8>,
    max_line: usize,
}

impl LineSplitter {
    pub fn new(masker: Masker) -> Self {
        Self::with_max_line(masker, MAX_LINE)
    }

    pub fn with_max_line(masker: Masker, max_line: usize) -> Self {
        LineSplitter {
            masker,
            pending: Vec::new(),
            max_line: max_line.max(1),
        }
    }

    /// Adds bytes read from the pipe; calls `emit` with each finished line.
    pub fn push(&mut self, bytes: &[u8], emit: &mut dyn FnMut(&str)) {
        self.pending.extend_from_slice(bytes);
        // Every complete line is masked as one block first, so a multi-line
        // secret written in one go is masked whole, then split.
        if let Some(last_newline) = self.pending.iter().rposition(|&b| b == b'\n') {
            let rest = self.pending.split_off(last_newline + 1);
            let block = std::mem::replace(&mut self.pending, rest);
            self.emit_block(&block[..block.len() - 1], emit);
        }
        while self.pending.len() > self.max_line {
            let cut = cut_point(&self.pending, self.max_line);
            let rest = self.pending.split_off(cut);
            let piece = std::mem::replace(&mut self.pending, rest);
            self.emit_block(&piece, emit);
        }
    }

    /// Flushes a last line that had no line ending.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&str)) {
        if !self.pending.is_empty() {
            let last = std::mem::take(&mut self.pending);
            self.emit_block(&last, emit);
        }
    }

    fn emit_block(&self, block: &[u8], emit: &mut dyn FnMut(&str)) {
        let text = String::from_utf8_lossy(block);
        let masked = self.masker.mask(&text);
        for line in masked.split('\n') {
            emit(line.strip_suffix('\r').unwrap_or(line));
        }
    }
}

/// Where to cut a line longer than `max`: after the last whitespace in the
/// final stretch before `max`, else at `max` moved back to a UTF-8 boundary.
fn cut_point(bytes: &[u8], max: usize) -> usize {
    let window_start = max.saturating_sub(CUT_SEARCH);
    if let Some(ws) = bytes[window_start..max]
        .iter()
        .rposition(|b| b.is_ascii_whitespace())
    {
        return window_start + ws + 1;
    }
    let mut cut = max;
    // Back off continuation bytes (10xxxxxx) so a character stays whole.
    while cut > max.saturating_sub(3) && cut > 1 && (bytes[cut] & 0xC0) == 0x80 {
        cut -= 1;
    }
    cut
}

/// The output of one step: masks each line and fans it out to the sinks.
#[derive(Clone)]
pub struct StepLog {
    stage: Arc<str>,
    step: Arc<str>,
    masker: Masker,
    sinks: Vec<Arc<dyn LineSink>>,
}

/// What a pump saw on one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PumpStats {
    pub lines: u64,
    pub bytes: u64,
}

impl StepLog {
    pub fn new(stage: &str, step: &str, masker: Masker, sinks: Vec<Arc<dyn LineSink>>) -> Self {
        StepLog {
            stage: stage.into(),
            step: step.into(),
            masker,
            sinks,
        }
    }

    /// The usual set-up: the `shared` sinks (terminal, events) plus the
    /// step's own file `log_dir/<step>.log`. Give each stage its own
    /// `log_dir`: step identifiers are unique only within a stage.
    pub fn with_file(
        stage: &str,
        step: &str,
        masker: Masker,
        log_dir: &Path,
        shared: &[Arc<dyn LineSink>],
    ) -> Result<Self, LogError> {
        let file: Arc<dyn LineSink> = Arc::new(FileSink::create(log_dir, step)?);
        let mut sinks = shared.to_vec();
        sinks.push(file);
        Ok(Self::new(stage, step, masker, sinks))
    }

    pub fn step(&self) -> &str {
        &self.step
    }

    /// Reads `reader` to its end, sending each line to every sink. A sink
    /// that fails is reported once and then skipped; the pipe is always
    /// drained so the step never blocks on a full pipe.
    pub fn pump(&self, stream: Stream, mut reader: impl Read) -> Result<PumpStats, LogError> {
        let mut splitter = LineSplitter::new(self.masker.clone());
        let mut broken = vec![false; self.sinks.len()];
        let mut stats = PumpStats::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut emit = |text: &str| {
            stats.lines += 1;
            self.send(stream, text, &mut broken);
        };
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    splitter.finish(&mut emit);
                    return Err(LogError::ReadStream {
                        step: self.step.to_string(),
                        stream,
                        source,
                    });
                }
            };
            stats.bytes += n as u64;
            splitter.push(&buf[..n], &mut emit);
        }
        splitter.finish(&mut emit);
        Ok(stats)
    }

    /// `pump` on a thread of its own, named after the step.
    pub fn spawn_pump(
        &self,
        stream: Stream,
        reader: impl Read + Send + 'static,
    ) -> Result<JoinHandle<Result<PumpStats, LogError>>, LogError> {
        let log = self.clone();
        std::thread::Builder::new()
            .name(format!("log-{}-{stream}", self.step))
            .spawn(move || log.pump(stream, reader))
            .map_err(|source| LogError::SpawnThread {
                step: self.step.to_string(),
                source,
            })
    }

    fn send(&self, stream: Stream, text: &str, broken: &mut [bool]) {
        let line = LogLine {
            stage: &self.stage,
            step: &self.step,
            stream,
            text,
        };
        for (sink, broken) in self.sinks.iter().zip(broken.iter_mut()) {
            if *broken {
                continue;
            }
            if let Err(err) = sink.line(&line) {
                *broken = true;
                tracing::warn!(step = %self.step, %err, "a log destination failed; it gets no more lines of this step");
            }
        }
    }
}
