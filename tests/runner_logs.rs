//! Step log streaming: line splitting, masking, prefixes, colors, files.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns, test code all the same

mod common;

use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use corral::cli::ColorChoice;
use corral::pipeline::secret::{Masker, MASK};
use corral::runner::logs::{
    color_enabled, FileSink, LineSink, LineSplitter, LogLine, StepLog, Stream, TerminalSink,
};

use common::SharedBuf;

fn masker(secrets: &[&str]) -> Masker {
    let mut m = Masker::new();
    for s in secrets {
        m.add(s);
    }
    m
}

/// Feeds `chunks` one by one, then finishes; returns the emitted lines.
fn split(masker: Masker, max_line: usize, chunks: &[&[u8]]) -> Vec<String> {
    let mut splitter = LineSplitter::with_max_line(masker, max_line);
    let mut lines = Vec::new();
    for chunk in chunks {
        splitter.push(chunk, &mut |l| lines.push(l.to_string()));
    }
    splitter.finish(&mut |l| lines.push(l.to_string()));
    lines
}

#[test]
fn lines_are_split_at_newlines_and_crlf_is_trimmed() {
    let lines = split(Masker::new(), 1024, &[b"one\ntwo\r\n", b"\nthree\n"]);
    assert_eq!(lines, ["one", "two", "", "three"]);
}

#[test]
fn partial_last_line_is_flushed_at_the_end() {
    let lines = split(Masker::new(), 1024, &[b"done\nno newline ", b"at the end"]);
    assert_eq!(lines, ["done", "no newline at the end"]);
}

#[test]
fn secret_split_across_two_writes_within_a_line_is_masked() {
    let lines = split(
        masker(&["hunter2-secret"]),
        1024,
        &[b"key=hunt", b"er2-sec", b"ret end\n"],
    );
    assert_eq!(lines, [format!("key={MASK} end")]);
}

#[test]
fn secret_in_a_partial_last_line_is_masked() {
    let lines = split(masker(&["s3cr3t"]), 1024, &[b"tail s3c", b"r3t"]);
    assert_eq!(lines, [format!("tail {MASK}")]);
}

#[test]
fn multi_line_secret_written_at_once_is_masked() {
    let key = "-----BEGIN KEY-----\nAAAAbbbbCCCC\n-----END KEY-----";
    let text = format!("before\n{key}\nafter\n");
    let lines = split(masker(&[key]), 1024, &[text.as_bytes()]);
    assert!(
        lines.iter().all(|l| !l.contains("AAAAbbbbCCCC")),
        "{lines:?}"
    );
    assert_eq!(lines.first().map(String::as_str), Some("before"));
    assert_eq!(lines.last().map(String::as_str), Some("after"));
    assert!(lines.iter().any(|l| l.contains(MASK)));
}

#[test]
fn multi_line_secret_printed_line_by_line_has_each_line_masked_when_the_masker_knows_them() {
    // What Harness does: every line of a multi-line secret is a secret too.
    let lines = split(
        masker(&["first-line-of-key", "second-line-of-key"]),
        1024,
        &[b"first-line-of-key\n", b"second-line-of-key\n"],
    );
    assert_eq!(lines, [MASK, MASK]);
}

#[test]
fn invalid_utf8_is_replaced_not_dropped() {
    let lines = split(Masker::new(), 1024, &[b"ok \xff\xfe bytes\n"]);
    assert_eq!(lines, ["ok \u{fffd}\u{fffd} bytes"]);
}

#[test]
fn utf8_character_split_across_writes_stays_whole() {
    let euro = "€".as_bytes();
    let lines = split(
        Masker::new(),
        1024,
        &[b"price 5", &euro[..1], &euro[1..], b"\n"],
    );
    assert_eq!(lines, ["price 5€"]);
}

#[test]
fn very_long_line_is_cut_at_whitespace_and_keeps_every_byte() {
    let word = "abcdefghi ";
    let long: String = word.repeat(50); // 500 bytes
    let lines = split(Masker::new(), 64, &[long.as_bytes(), b"\n"]);
    assert!(lines.len() > 1);
    assert!(lines.iter().all(|l| l.len() <= 64), "{lines:?}");
    // Cut after a space: no word is broken.
    assert!(lines
        .iter()
        .all(|l| l.is_empty() || l.ends_with(' ') || l.ends_with('i')));
    assert_eq!(lines.concat(), long);
}

#[test]
fn very_long_line_without_whitespace_is_cut_on_a_char_boundary() {
    let long = "é".repeat(100); // 200 bytes, 2 per char
    let lines = split(Masker::new(), 33, &[long.as_bytes()]);
    assert!(lines.iter().all(|l| !l.contains('\u{fffd}')), "{lines:?}");
    assert_eq!(lines.concat(), long);
}

#[test]
fn colors_follow_the_choice_and_the_terminal() {
    assert!(color_enabled(ColorChoice::Always, false));
    assert!(!color_enabled(ColorChoice::Never, true));
    assert!(!color_enabled(ColorChoice::Auto, false));
}

fn line<'a>(step: &'a str, text: &'a str) -> LogLine<'a> {
    LogLine {
        stage: "build",
        step,
        stream: Stream::Stdout,
        text,
    }
}

#[test]
fn terminal_prefixes_are_padded_and_uncolored_when_color_is_off() {
    let out = SharedBuf::default();
    let sink = TerminalSink::new(Box::new(out.clone()), false, &["Sauce_Connect", "Wait"]);
    sink.line(&line("Wait", "polling")).unwrap();
    sink.line(&line("Sauce_Connect", "up")).unwrap();
    assert_eq!(out.text(), "Wait          | polling\nSauce_Connect | up\n");
    assert!(!out.text().contains('\x1b'));
}

#[test]
fn terminal_prefix_colors_cycle_per_step() {
    let out = SharedBuf::default();
    let steps: Vec<String> = (0..11).map(|i| format!("s{i}")).collect();
    let names: Vec<&str> = steps.iter().map(String::as_str).collect();
    let sink = TerminalSink::new(Box::new(out.clone()), true, &names);
    for name in &names {
        sink.line(&line(name, "x")).unwrap();
    }
    let text = out.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "\x1b[36ms0  |\x1b[0m x");
    assert_eq!(lines[1], "\x1b[33ms1  |\x1b[0m x");
    // Ten colors, then the first again.
    assert!(lines[10].starts_with("\x1b[36ms10 |"), "{}", lines[10]);
    assert_ne!(&lines[0][..7], &lines[9][..7]);
}

#[test]
fn unknown_step_gets_a_prefix_when_first_seen() {
    let out = SharedBuf::default();
    let sink = TerminalSink::new(Box::new(out.clone()), false, &["a"]);
    sink.line(&line("later_step", "hi")).unwrap();
    assert_eq!(out.text(), "later_step | hi\n");
}

/// Collects lines as (step, stream, text).
#[derive(Default)]
struct Collect(Mutex<Vec<(String, Stream, String)>>);

impl LineSink for Collect {
    fn line(&self, line: &LogLine<'_>) -> io::Result<()> {
        self.0
            .lock()
            .unwrap()
            .push((line.step.to_string(), line.stream, line.text.to_string()));
        Ok(())
    }
}

/// A reader returning fixed chunks, one per read, like a pipe.
struct Chunks(Vec<Vec<u8>>);

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Ok(0);
        }
        let chunk = self.0.remove(0);
        buf[..chunk.len()].copy_from_slice(&chunk);
        Ok(chunk.len())
    }
}

#[test]
fn pump_masks_and_fans_out_to_terminal_file_and_other_sinks() {
    let dir = common::tempdir();
    let out = SharedBuf::default();
    let terminal = Arc::new(TerminalSink::new(Box::new(out.clone()), false, &["Run_1"]));
    let file = Arc::new(FileSink::create(&dir.path().join("logs"), "Run_1").unwrap());
    let collect = Arc::new(Collect::default());
    let log = StepLog::new(
        "build",
        "Run_1",
        masker(&["tok-123456"]),
        vec![terminal, file.clone(), collect.clone()],
    );
    let reader = Chunks(vec![b"token tok-12".to_vec(), b"3456 ok\nbye".to_vec()]);
    let stats = log.pump(Stream::Stderr, reader).unwrap();
    assert_eq!(stats.lines, 2);
    assert_eq!(stats.bytes, 23);
    let masked = format!("token {MASK} ok");
    assert_eq!(out.text(), format!("Run_1 | {masked}\nRun_1 | bye\n"));
    assert_eq!(
        std::fs::read_to_string(file.path()).unwrap(),
        format!("{masked}\nbye\n")
    );
    let got = collect.0.lock().unwrap().clone();
    assert_eq!(
        got,
        [
            ("Run_1".to_string(), Stream::Stderr, masked.clone()),
            ("Run_1".to_string(), Stream::Stderr, "bye".to_string()),
        ]
    );
}

/// A sink that always fails, like a closed stdout.
struct Broken;

impl LineSink for Broken {
    fn line(&self, _: &LogLine<'_>) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
}

#[test]
fn a_failing_sink_does_not_stop_the_others_or_the_draining() {
    let collect = Arc::new(Collect::default());
    let log = StepLog::new(
        "s",
        "step",
        Masker::new(),
        vec![Arc::new(Broken), collect.clone()],
    );
    let stats = log.pump(Stream::Stdout, &b"a\nb\nc\n"[..]).unwrap();
    assert_eq!(stats.lines, 3);
    assert_eq!(collect.0.lock().unwrap().len(), 3);
}

#[test]
fn spawned_pumps_stream_a_real_process() {
    let mut child = std::process::Command::new("sh")
        .args(["-c", "echo out-$SECRET_VALUE; echo err >&2; printf partial"])
        .env("SECRET_VALUE", "xyzzy-42")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let collect = Arc::new(Collect::default());
    let log = StepLog::new("s", "proc", masker(&["xyzzy-42"]), vec![collect.clone()]);
    let out = log
        .spawn_pump(Stream::Stdout, child.stdout.take().unwrap())
        .unwrap();
    let err = log
        .spawn_pump(Stream::Stderr, child.stderr.take().unwrap())
        .unwrap();
    assert!(child.wait().unwrap().success());
    out.join().unwrap().unwrap();
    err.join().unwrap().unwrap();
    let mut got: Vec<(Stream, String)> = collect
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(_, s, t)| (*s, t.clone()))
        .collect();
    got.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        got,
        [
            (Stream::Stderr, "err".to_string()),
            (Stream::Stdout, format!("out-{MASK}")),
            (Stream::Stdout, "partial".to_string()),
        ]
    );
}

#[test]
fn with_file_adds_the_step_file_to_the_shared_sinks() {
    let dir = common::tempdir();
    let collect = Arc::new(Collect::default());
    let shared: Vec<Arc<dyn LineSink>> = vec![collect.clone()];
    let log_dir = dir.path().join("run/stage_a");
    let log = StepLog::with_file("stage_a", "svc", masker(&["pw-1"]), &log_dir, &shared).unwrap();
    log.pump(Stream::Stdout, &b"pw-1\nplain"[..]).unwrap();
    assert_eq!(
        std::fs::read_to_string(log_dir.join("svc.log")).unwrap(),
        format!("{MASK}\nplain\n")
    );
    assert_eq!(collect.0.lock().unwrap().len(), 2);
    // A log file that cannot be created names its path.
    let err = StepLog::with_file(
        "s",
        "x",
        Masker::new(),
        std::path::Path::new("/proc/nope"),
        &shared,
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("/proc/nope"), "{err}");
}
