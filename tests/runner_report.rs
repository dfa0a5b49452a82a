//! The summary table, the exit code, and the JSON-lines event schema (v1).

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns, test code all the same

mod common;

use std::io;
use std::time::Duration;

use corral::pipeline::secret::{Masker, MASK};
use corral::runner::events::{Event, EventWriter, PullPhase, TeardownSignal};
use corral::runner::logs::{LineSink, LogLine, Stream};
use corral::runner::report::{
    exit_code, format_duration, render_table, stage_status, StageResult, StageStatus, StepKind,
    StepResult, StepStatus,
};
use time::macros::datetime;

use common::SharedBuf;

fn step(id: &str, kind: StepKind, status: StepStatus, code: Option<i32>, ms: u64) -> StepResult {
    StepResult {
        step: id.to_string(),
        kind,
        status,
        exit_code: code,
        signal: None,
        duration: Duration::from_millis(ms),
        attempts: 1,
    }
}

fn sauce_stage() -> StageResult {
    StageResult {
        stage: "build".to_string(),
        status: StageStatus::Success,
        duration: Duration::from_millis(9100),
        steps: vec![
            step(
                "Sauce_Connect",
                StepKind::Background,
                StepStatus::RunningAtTeardown,
                None,
                6100,
            ),
            step(
                "Wait_for_SC",
                StepKind::Run,
                StepStatus::Success,
                Some(0),
                3020,
            ),
        ],
        error: None,
        timed_out: false,
    }
}

#[test]
fn durations_are_short() {
    let cases = [
        (0, "0ms"),
        (850, "850ms"),
        (3_020, "3.0s"),
        (59_999, "59.9s"),
        (65_000, "1m05s"),
        (3_600_000 + 180_000, "1h03m"),
    ];
    for (ms, want) in cases {
        assert_eq!(format_duration(Duration::from_millis(ms)), want, "{ms} ms");
    }
}

#[test]
fn table_lists_every_step_with_type_status_exit_and_duration() {
    let table = render_table(&[sauce_stage()], &Masker::new(), false);
    assert_eq!(
        table,
        "\
STAGE  STEP           TYPE        STATUS               EXIT  DURATION
build  Sauce_Connect  Background  Running at teardown  -     6.1s
build  Wait_for_SC    Run         Success              0     3.0s
"
    );
}

#[test]
fn table_shows_every_status_signals_and_attempts() {
    let mut killed = step("killed", StepKind::Run, StepStatus::Failed, None, 10);
    killed.signal = Some(9);
    let mut flaky = step("flaky", StepKind::Run, StepStatus::Success, Some(0), 10);
    flaky.attempts = 3;
    let stage = StageResult {
        stage: "s".to_string(),
        status: StageStatus::Failed,
        duration: Duration::ZERO,
        steps: vec![
            step("failed", StepKind::Run, StepStatus::Failed, Some(2), 10),
            step("slow", StepKind::Run, StepStatus::Timeout, None, 10),
            step("skipped", StepKind::Run, StepStatus::Skipped, None, 0),
            step("ignored", StepKind::Run, StepStatus::Ignored, Some(1), 10),
            killed,
            flaky,
        ],
        error: None,
        timed_out: false,
    };
    let table = render_table(&[stage], &Masker::new(), false);
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    assert_eq!(rows[0], ["s", "failed", "Run", "Failed", "2", "10ms"]);
    assert_eq!(rows[1], ["s", "slow", "Run", "Timeout", "-", "10ms"]);
    assert_eq!(rows[2], ["s", "skipped", "Run", "Skipped", "-", "0ms"]);
    assert_eq!(rows[3], ["s", "ignored", "Run", "Ignored", "1", "10ms"]);
    assert_eq!(rows[4], ["s", "killed", "Run", "Failed", "sig 9", "10ms"]);
    assert_eq!(
        rows[5],
        ["s", "flaky", "Run", "Success (3 attempts)", "0", "10ms"]
    );
}

#[test]
fn table_colors_only_the_status_and_keeps_alignment() {
    let plain = render_table(&[sauce_stage()], &Masker::new(), false);
    let colored = render_table(&[sauce_stage()], &Masker::new(), true);
    assert!(colored.contains("\x1b[32mSuccess\x1b[0m"));
    let stripped = colored
        .replace("\x1b[32m", "")
        .replace("\x1b[2m", "")
        .replace("\x1b[0m", "");
    assert_eq!(stripped, plain);
}

#[test]
fn table_cells_are_masked() {
    let mut masker = Masker::new();
    masker.add("leaky");
    let mut stage = sauce_stage();
    stage.steps[0].step = "leaky_step".to_string();
    let table = render_table(&[stage], &masker, false);
    assert!(!table.contains("leaky"));
    assert!(table.contains(&format!("{MASK}_step")));
}

#[test]
fn stage_without_steps_still_has_a_row() {
    let stage = StageResult {
        stage: "deploy".to_string(),
        status: StageStatus::Skipped,
        duration: Duration::ZERO,
        steps: vec![],
        error: None,
        timed_out: false,
    };
    let table = render_table(&[stage], &Masker::new(), false);
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("deploy  -     Stage  Skipped"),
        "{table}"
    );
}

#[test]
fn exit_code_follows_the_first_failing_step() {
    let ok = sauce_stage();
    assert_eq!(exit_code(std::slice::from_ref(&ok)), 0);

    let failed_with = |s: StepResult| StageResult {
        stage: "t".to_string(),
        status: StageStatus::Failed,
        duration: Duration::ZERO,
        steps: vec![
            // A crashed service never fails its stage, so never sets the code.
            step("svc", StepKind::Background, StepStatus::Failed, Some(7), 1),
            step("ignored", StepKind::Run, StepStatus::Ignored, Some(5), 1),
            s,
        ],
        error: None,
        timed_out: false,
    };
    let code3 = step("run", StepKind::Run, StepStatus::Failed, Some(3), 1);
    assert_eq!(exit_code(&[ok.clone(), failed_with(code3)]), 3);
    let timeout = step("run", StepKind::Run, StepStatus::Timeout, None, 1);
    assert_eq!(exit_code(&[failed_with(timeout)]), 124);
    let mut signaled = step("run", StepKind::Run, StepStatus::Failed, None, 1);
    signaled.signal = Some(15);
    assert_eq!(exit_code(&[failed_with(signaled)]), 143);
    let odd = step("run", StepKind::Run, StepStatus::Failed, Some(-1), 1);
    assert_eq!(exit_code(&[failed_with(odd)]), 1);
    let aborted = StageResult {
        status: StageStatus::Aborted,
        steps: vec![],
        ..sauce_stage()
    };
    assert_eq!(exit_code(&[aborted]), 1);
    // A stage or pipeline timeout that stopped the stage before any step
    // failed (while pulling, or between steps) exits as a step timeout.
    let cut_short = StageResult {
        status: StageStatus::Failed,
        steps: vec![],
        timed_out: true,
        ..sauce_stage()
    };
    assert_eq!(exit_code(&[cut_short]), 124);
}

fn fixed_clock() -> time::OffsetDateTime {
    datetime!(2026-11-27 22:46:02.123456 UTC)
}

fn writer(masker: Masker) -> EventWriter {
    EventWriter::with_clock(Box::new(io::sink()), masker, fixed_clock)
}

/// One example of every event type and its exact encoding: the v1 schema.
#[test]
fn every_event_type_encodes_to_the_v1_schema() {
    let s = String::from;
    let cases: Vec<(Event, &str)> = vec![
        (
            Event::RunStarted {
                pipeline: s("seed"),
                file: s("examples/seed-k8s.yaml"),
            },
            r#"{"v":1,"ts":"2026-11-27T22:46:02.123Z","type":"run_started","file":"examples/seed-k8s.yaml","pipeline":"seed"}"#,
        ),
        (
            Event::StageStarted { stage: s("build") },
            r#"{"v":1,"ts":"2026-11-27T22:46:02.123Z","type":"stage_started","stage":"build"}"#,
        ),
        (
            Event::StepStarted {
                stage: s("build"),
                step: s("Sauce_Connect"),
                kind: StepKind::Background,
                image: Some(s("saucelabs/sauce-connect")),
                attempt: 1,
            },
            r#"{"v":1,"ts":"2026-11-27T22:46:02.123Z","type":"step_started","attempt":1,"image":"saucelabs/sauce-connect","kind":"Background","stage":"build","step":"Sauce_Connect"}"#,
        ),
        (
            Event::StepStarted {
                stage: s("build"),
                step: s("Wait_for_SC"),
                kind: StepKind::Run,
                image: None,
                attempt: 2,
            },
            r#"{"v":1,"ts":"2026-11-27T22:46:02.123Z","type":"step_started","attempt":2,"image":null,"kind":"Run","stage":"build","step":"Wait_for_SC"}"#,
        ),
        (
            Event::Log {
                stage: s("build"),
                step: s("Wait_for_SC"),
                stream: Stream::Stdout,
                line: s("SC ready"),
            },
            r#"{"v":1,"ts":"2026-11-27T22:46:02.123Z","type":"log","line":"SC ready","stage":"build","step":"Wait_for_SC","stream":"stdout"}"#,
        ),
        (
            Event::StepExited {
                stage: s("build"),
                step: s("Wait_for_SC"),
                status: StepStatus::Success,
                exit_code: Some(0),
                signal: None,
                duration_ms: 3020,
                attempt: 1,
            },
            r#"{"v":1,"ts":"2026-11-27T22:46:02.123Z","type":"step_exited","attempt":1,"duration_ms":3020,"exit_code":0,"signal":null,"stage":"build","status":"success","step":"Wait_for_SC"}"#,
        ),
        (
            Event::StepTimedOut {
                stage: s("build"),
                step: s("slow"),
                timeout_ms: 10000,
                attempt: 1,
            },
            r#"{"v":1,"ts":"2026-11-27T22:46:02.123Z","type":"step_timed_out","attempt":1,"stage":"build","step":"slow","timeout_ms":10000}"#,
        ),
        (
            Event::StepRetrying {
                stage: s("build"),
                step: s("flaky"),
                next_attempt: 2,
                delay_ms: 10000,
            },
            r#"{"v":1,"ts":"2026-11-27T22:46:02.123Z","type":"step_retrying","delay_ms":10000,"next_attempt":2,"stage":"build","step":"flaky"}"#,
        ),
        (
            Event::StepSkipped {
                stage: s("build"),
                step: s("notify"),
                reason: s("an earlier step failed"),
            },
            r#"{"v":1,"ts":"2026-11-27T22:46:02.123Z","type":"step_skipped","reason":"an earlier step failed","stage":"build","step":"notify"}"#,
        ),
        (
            Event::BackgroundExited {
                stage: s("build"),
                step: s("db"),
                exit_code: Some(1),
                signal: None,
            },
            r#"{"v":1,"ts":"2026-11-27T22:46:02.123Z","type":"background_exited","exit_code":1,"signal":null,"stage":"build","step":"db"}"#,
        ),
        (
            Event::Teardown {
                stage: s("build"),
                step: s("Sauce_Connect"),
                signal: TeardownSignal::Sigterm,
            },
            r#"{"v":1,"ts":"2026-11-27T22:46:02.123Z","type":"teardown","signal":"SIGTERM","stage":"build","step":"Sauce_Connect"}"#,
        ),
        (
            Event::Teardown {
                stage: s("build"),
                step: s("stubborn"),
                signal: TeardownSignal::Sigkill,
            },
            r#"{"v":1,"ts":"2026-11-27T22:46:02.123Z","type":"teardown","signal":"SIGKILL","stage":"build","step":"stubborn"}"#,
        ),
        (
            Event::PullProgress {
                image: s("docker.io/library/redis:7"),
                phase: PullPhase::Downloading,
                digest: Some(s("sha256:abc")),
                done_bytes: 1024,
                total_bytes: Some(4096),
            },
            r#"{"v":1,"ts":"2026-11-27T22:46:02.123Z","type":"pull_progress","digest":"sha256:abc","done_bytes":1024,"image":"docker.io/library/redis:7","phase":"downloading","total_bytes":4096}"#,
        ),
        (
            Event::StageFinished {
                stage: s("build"),
                status: StageStatus::Failed,
                duration_ms: 9100,
                error: Some(s("step svc: failed to pull image redis:7")),
            },
            r#"{"v":1,"ts":"2026-11-27T22:46:02.123Z","type":"stage_finished","duration_ms":9100,"error":"step svc: failed to pull image redis:7","stage":"build","status":"failed"}"#,
        ),
        (
            Event::RunFinished {
                exit_code: 0,
                duration_ms: 9200,
            },
            r#"{"v":1,"ts":"2026-11-27T22:46:02.123Z","type":"run_finished","duration_ms":9200,"exit_code":0}"#,
        ),
    ];
    let w = writer(Masker::new());
    for (event, want) in &cases {
        assert_eq!(w.encode(event).unwrap(), *want, "{}", event.kind());
        let parsed: serde_json::Value = serde_json::from_str(want).unwrap();
        assert_eq!(parsed["type"], event.kind());
    }
    // Every event type has a case above.
    let mut kinds: Vec<&str> = cases.iter().map(|(e, _)| e.kind()).collect();
    kinds.dedup();
    assert_eq!(kinds.len(), 13);
    // And docs/events.md describes each one.
    let doc = include_str!("../docs/events.md");
    for kind in kinds {
        assert!(
            doc.contains(&format!("### `{kind}`")),
            "docs/events.md does not describe {kind}"
        );
    }
}

#[test]
fn every_string_in_an_event_is_masked_even_with_json_escapes() {
    let mut masker = Masker::new();
    masker.add(r#"pa"ss\word"#);
    let w = writer(masker);
    let line = w
        .encode(&Event::Log {
            stage: "s".into(),
            step: "x".into(),
            stream: Stream::Stderr,
            line: r#"login with pa"ss\word now"#.into(),
        })
        .unwrap();
    assert!(!line.contains("word"), "{line}");
    let parsed: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(parsed["line"], format!("login with {MASK} now"));
    let skipped = w
        .encode(&Event::StepSkipped {
            stage: "s".into(),
            step: "x".into(),
            reason: r#"pa"ss\word"#.into(),
        })
        .unwrap();
    assert!(!skipped.contains("word"), "{skipped}");
}

#[test]
fn the_writer_is_a_log_sink_and_writes_one_line_per_event() {
    let out = SharedBuf::default();
    let w = EventWriter::with_clock(Box::new(out.clone()), Masker::new(), fixed_clock);
    w.emit(&Event::StageStarted {
        stage: "build".into(),
    })
    .unwrap();
    w.line(&LogLine {
        stage: "build",
        step: "Wait_for_SC",
        stream: Stream::Stdout,
        text: "SC ready",
    })
    .unwrap();
    let text = out.text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["type"], "log");
    assert_eq!(lines[1]["line"], "SC ready");
    assert_eq!(lines[1]["v"], 1);
}

#[test]
fn events_file_is_created_and_dash_means_stdout() {
    let dir = common::tempdir();
    let path = dir.path().join("events.jsonl");
    {
        let w = EventWriter::open(&path, Masker::new()).unwrap();
        w.emit(&Event::RunFinished {
            exit_code: 3,
            duration_ms: 1,
        })
        .unwrap();
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(v["exit_code"], 3);
    let err = EventWriter::open(&dir.path().join("missing/dir/e.jsonl"), Masker::new())
        .err()
        .unwrap();
    assert!(err.to_string().contains("missing/dir/e.jsonl"), "{err}");
    assert!(EventWriter::open(std::path::Path::new("-"), Masker::new()).is_ok());
}

/// (steps as kind and status, aborted, expected stage status).
type StageCase = (&'static [(StepKind, StepStatus)], bool, StageStatus);

#[test]
fn stage_status_comes_from_run_steps_only() {
    use StepKind::{Background, Run};
    use StepStatus::*;
    let cases: [StageCase; 8] = [
        (&[], false, StageStatus::Success),
        (
            &[(Run, Success), (Background, RunningAtTeardown)],
            false,
            StageStatus::Success,
        ),
        (&[(Run, Failed)], false, StageStatus::Failed),
        (&[(Run, Timeout)], false, StageStatus::Failed),
        (
            &[(Run, Ignored), (Run, Skipped)],
            false,
            StageStatus::Success,
        ),
        // A crashed service does not fail its stage; the steps that need it do.
        (
            &[(Background, Failed), (Run, Success)],
            false,
            StageStatus::Success,
        ),
        (&[(Run, Failed)], true, StageStatus::Aborted),
        (&[(Run, Success)], true, StageStatus::Aborted),
    ];
    for (steps, aborted, want) in cases {
        let results: Vec<StepResult> = steps
            .iter()
            .map(|(k, st)| step("x", *k, *st, None, 0))
            .collect();
        assert_eq!(
            stage_status(&results, aborted),
            want,
            "{steps:?} aborted={aborted}"
        );
    }
}
