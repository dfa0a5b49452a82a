//! The runner's pieces composed the way the stage executor will use them,
//! with plain host processes standing in for sandboxes: a Background service,
//! a flaky step retried by its failure strategy, a step killed at its timeout
//! and ignored, a gated step; masked logs to terminal, files and events; the
//! summary table and exit code at the end.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns, test code all the same

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral::pipeline::secret::{Masker, MASK};
use corral::runner::events::{Event, EventWriter};
use corral::runner::logs::{LineSink, StepLog, Stream, TerminalSink};
use corral::runner::report::{
    exit_code, render_table, stage_status, StageResult, StepKind, StepResult, StepStatus,
};
use corral::runner::supervise::{
    decide, gate, resolve, stop, wait_with_timeout, Action, Decision, ErrorMatch, FailureStrategy,
    Gate, GroupChild, Retry, StageStatusCondition, When,
};

use common::SharedBuf;

const STAGE: &str = "build";
const SECRET: &str = "sk-live-5e3f9a";

struct Stage {
    masker: Masker,
    events: Arc<EventWriter>,
    sinks: Vec<Arc<dyn LineSink>>,
    log_dir: std::path::PathBuf,
    workdir: std::path::PathBuf,
    failed: bool,
    results: Vec<StepResult>,
}

impl Stage {
    fn spawn(&self, script: &str) -> GroupChild {
        let child = Command::new("sh")
            .args(["-c", &format!("set -e; {script}")])
            .current_dir(&self.workdir)
            .env("API_KEY", SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        GroupChild(child)
    }

    fn run(&mut self, id: &str, script: &str, timeout: Duration, strategies: &[FailureStrategy]) {
        self.run_when(id, script, timeout, strategies, None);
    }

    fn run_when(
        &mut self,
        id: &str,
        script: &str,
        timeout: Duration,
        strategies: &[FailureStrategy],
        when: Option<&When>,
    ) {
        if let Gate::Skip(reason) = gate(when, self.failed, false) {
            self.emit(Event::StepSkipped {
                stage: STAGE.into(),
                step: id.into(),
                reason: reason.describe().into(),
            });
            self.results
                .push(result(id, StepKind::Run, StepStatus::Skipped, None, 1));
            return;
        }
        let log =
            StepLog::with_file(STAGE, id, self.masker.clone(), &self.log_dir, &self.sinks).unwrap();
        let started = Instant::now();
        let mut attempt = 1;
        loop {
            self.emit(Event::StepStarted {
                stage: STAGE.into(),
                step: id.into(),
                kind: StepKind::Run,
                image: None,
                attempt,
            });
            let mut child = self.spawn(script);
            let out = log
                .spawn_pump(Stream::Stdout, child.0.stdout.take().unwrap())
                .unwrap();
            let err = log
                .spawn_pump(Stream::Stderr, child.0.stderr.take().unwrap())
                .unwrap();
            let outcome = wait_with_timeout(
                &mut child,
                Some(timeout),
                Duration::from_secs(5),
                &mut |_| {},
            )
            .unwrap();
            out.join().unwrap().unwrap();
            err.join().unwrap().unwrap();
            if outcome.status() == StepStatus::Timeout {
                self.emit(Event::StepTimedOut {
                    stage: STAGE.into(),
                    step: id.into(),
                    timeout_ms: timeout.as_millis() as u64,
                    attempt,
                });
            }
            let decision = outcome.failure().map(|f| decide(f, attempt, &[strategies]));
            if let Some(Decision::Retry {
                attempt: next,
                delay,
            }) = decision
            {
                self.emit(Event::StepRetrying {
                    stage: STAGE.into(),
                    step: id.into(),
                    next_attempt: next,
                    delay_ms: delay.as_millis() as u64,
                });
                std::thread::sleep(delay);
                attempt = next;
                continue;
            }
            let (status, effect) = resolve(&outcome, decision);
            self.failed |= effect != corral::runner::supervise::StageEffect::Continue;
            self.emit(Event::StepExited {
                stage: STAGE.into(),
                step: id.into(),
                status,
                exit_code: outcome.exit_code(),
                signal: outcome.signal(),
                duration_ms: started.elapsed().as_millis() as u64,
                attempt,
            });
            let mut r = result(id, StepKind::Run, status, outcome.exit_code(), attempt);
            r.duration = started.elapsed();
            self.results.push(r);
            return;
        }
    }

    fn emit(&self, event: Event) {
        self.events.emit(&event).unwrap();
    }
}

fn result(
    id: &str,
    kind: StepKind,
    status: StepStatus,
    code: Option<i32>,
    attempts: u32,
) -> StepResult {
    StepResult {
        step: id.into(),
        kind,
        status,
        exit_code: code,
        signal: None,
        duration: Duration::ZERO,
        attempts,
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn a_stage_of_host_processes_runs_end_to_end() {
    let tmp = common::tempdir();
    let workdir = tmp.path().join("workspace");
    std::fs::create_dir_all(&workdir).unwrap();
    let events_path = tmp.path().join("events.jsonl");
    let mut masker = Masker::new();
    masker.add(SECRET);
    let events = Arc::new(EventWriter::open(&events_path, masker.clone()).unwrap());
    let terminal_out = SharedBuf::default();
    let steps = ["svc", "flaky", "slow", "after", "on_failure"];
    let terminal = Arc::new(TerminalSink::new(
        Box::new(terminal_out.clone()),
        false,
        &steps,
    ));
    let mut stage = Stage {
        masker: masker.clone(),
        sinks: vec![terminal.clone(), events.clone()],
        events,
        log_dir: tmp.path().join("logs").join(STAGE),
        workdir,
        failed: false,
        results: Vec::new(),
    };
    stage.emit(Event::StageStarted {
        stage: STAGE.into(),
    });

    // A Background service: started, never waited for, stopped at teardown.
    let svc_log =
        StepLog::with_file(STAGE, "svc", masker.clone(), &stage.log_dir, &stage.sinks).unwrap();
    let mut svc = stage.spawn("echo \"serving with key $API_KEY\"; while :; do sleep 0.05; done");
    let svc_pumps = [
        svc_log
            .spawn_pump(Stream::Stdout, svc.0.stdout.take().unwrap())
            .unwrap(),
        svc_log
            .spawn_pump(Stream::Stderr, svc.0.stderr.take().unwrap())
            .unwrap(),
    ];

    let retry_twice = [FailureStrategy {
        errors: vec![ErrorMatch::AllErrors],
        action: Action::Retry(Retry {
            count: 2,
            intervals: vec![Duration::from_millis(10)],
            on_retry_failure: Box::new(Action::MarkAsFailure),
        }),
    }];
    let ignore_timeout = [FailureStrategy {
        errors: vec![ErrorMatch::parse("Timeout").unwrap()],
        action: Action::Ignore,
    }];
    let minute = Duration::from_secs(60);
    stage.run(
        "flaky",
        "if [ -f tried ]; then echo \"second try uses $API_KEY\"; else touch tried; echo first try fails >&2; exit 3; fi",
        minute,
        &retry_twice,
    );
    stage.run(
        "slow",
        "echo sleeping; sleep 30",
        Duration::from_millis(200),
        &ignore_timeout,
    );
    stage.run("after", "printf 'done without newline'", minute, &[]);
    let on_failure = When {
        stage_status: StageStatusCondition::Failure,
        condition: None,
    };
    stage.run_when("on_failure", "echo never", minute, &[], Some(&on_failure));

    // Teardown: the service is still running.
    let events = stage.events.clone();
    stop(&mut svc, Duration::from_secs(5), &mut |signal| {
        events
            .emit(&Event::Teardown {
                stage: STAGE.into(),
                step: "svc".into(),
                signal,
            })
            .unwrap();
    })
    .unwrap();
    for pump in svc_pumps {
        pump.join().unwrap().unwrap();
    }
    stage.results.insert(
        0,
        result(
            "svc",
            StepKind::Background,
            StepStatus::RunningAtTeardown,
            None,
            1,
        ),
    );
    let results = StageResult {
        stage: STAGE.into(),
        status: stage_status(&stage.results, false),
        duration: Duration::ZERO,
        steps: stage.results.clone(),
        error: None,
        timed_out: false,
    };
    stage.emit(Event::StageFinished {
        stage: STAGE.into(),
        status: results.status,
        duration_ms: 0,
        error: None,
    });

    // Statuses and exit code.
    let statuses: Vec<(&str, StepStatus, u32)> = results
        .steps
        .iter()
        .map(|s| (s.step.as_str(), s.status, s.attempts))
        .collect();
    assert_eq!(
        statuses,
        [
            ("svc", StepStatus::RunningAtTeardown, 1),
            ("flaky", StepStatus::Success, 2),
            ("slow", StepStatus::Ignored, 1),
            ("after", StepStatus::Success, 1),
            ("on_failure", StepStatus::Skipped, 1),
        ]
    );
    assert_eq!(exit_code(std::slice::from_ref(&results)), 0);
    let table = render_table(std::slice::from_ref(&results), &masker, false);
    assert!(table.contains("Success (2 attempts)"), "{table}");
    assert!(table.contains("Running at teardown"), "{table}");

    // The secret is nowhere; its mask is where it was printed.
    let terminal_text = terminal_out.text();
    let events_text = read(&events_path);
    let svc_file = read(&stage.log_dir.join("svc.log"));
    for text in [
        &terminal_text,
        &events_text,
        &svc_file,
        &read(&stage.log_dir.join("flaky.log")),
    ] {
        assert!(!text.contains(SECRET), "secret leaked into:\n{text}");
    }
    assert_eq!(svc_file, format!("serving with key {MASK}\n"));
    assert!(
        terminal_text.contains(&format!("flaky      | second try uses {MASK}\n")),
        "{terminal_text}"
    );
    assert!(
        terminal_text.contains("after      | done without newline\n"),
        "{terminal_text}"
    );

    // The event stream tells the same story, in order.
    let events: Vec<serde_json::Value> = events_text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.iter().all(|e| e["v"] == 1 && e["ts"].is_string()));
    let story: Vec<String> = events
        .iter()
        .filter(|e| e["type"] != "log")
        .map(|e| {
            let step = e["step"].as_str().unwrap_or("-");
            let extra = e["status"].as_str().or(e["signal"].as_str()).unwrap_or("");
            format!("{} {step} {extra}", e["type"].as_str().unwrap())
                .trim_end()
                .to_string()
        })
        .collect();
    assert_eq!(
        story,
        [
            "stage_started -",
            "step_started flaky",
            "step_retrying flaky",
            "step_started flaky",
            "step_exited flaky success",
            "step_started slow",
            "step_timed_out slow",
            "step_exited slow ignored",
            "step_started after",
            "step_exited after success",
            "step_skipped on_failure",
            "teardown svc SIGTERM",
            "stage_finished - success",
        ]
    );
    let first_try = events
        .iter()
        .find(|e| e["type"] == "log" && e["step"] == "flaky")
        .unwrap();
    assert_eq!(first_try["stream"], "stderr");
    assert_eq!(first_try["line"], "first try fails");
}
