//! Failure strategies, `when` gating, outcomes, and timeouts on real processes.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns, test code all the same

use std::process::Command;
use std::time::Duration;

use corral::runner::events::TeardownSignal;
use corral::runner::report::StepStatus;
use corral::runner::supervise::{
    decide, gate, resolve, stop, wait_with_timeout, Action, Decision, ErrorMatch, Exit,
    FailureStrategy, FailureType, Gate, GroupChild, Retry, SkipReason, StageEffect,
    StageStatusCondition, StepOutcome, When,
};

fn on(errors: &[&str], action: Action) -> FailureStrategy {
    FailureStrategy {
        errors: errors
            .iter()
            .map(|e| ErrorMatch::parse(e).unwrap())
            .collect(),
        action,
    }
}

fn retry(count: u32, intervals: &[u64], then: Action) -> Action {
    Action::Retry(Retry {
        count,
        intervals: intervals.iter().map(|s| Duration::from_secs(*s)).collect(),
        on_retry_failure: Box::new(then),
    })
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn error_names_parse_like_harness() {
    assert_eq!(ErrorMatch::parse("AllErrors"), Some(ErrorMatch::AllErrors));
    assert_eq!(
        ErrorMatch::parse("Timeout"),
        Some(ErrorMatch::Only(FailureType::Timeout))
    );
    assert_eq!(
        ErrorMatch::parse("RetryableTransientFailure"),
        Some(ErrorMatch::Only(FailureType::RetryableTransientFailure))
    );
    assert_eq!(ErrorMatch::parse("timeout"), None);
    assert_eq!(ErrorMatch::parse("Everything"), None);
}

/// (name, failure, attempt, strategies of step / group / stage, expected).
type Case<'a> = (
    &'a str,
    FailureType,
    u32,
    Vec<&'a [FailureStrategy]>,
    Decision,
);

#[test]
fn decisions_follow_harness_precedence() {
    use Decision::*;
    use FailureType::{Timeout, Unknown};
    let ignore_all = [on(&["AllErrors"], Action::Ignore)];
    let abort_timeout = [on(&["Timeout"], Action::Abort)];
    let success_all = [on(&["AllErrors"], Action::MarkAsSuccess)];
    let fail_all = [on(&["AllErrors"], Action::MarkAsFailure)];
    let first_wins = [
        on(&["Verification", "Authentication"], Action::Abort),
        on(&["Verification", "Connectivity"], Action::Ignore),
    ];
    let timeout_then_all = [
        on(&["Timeout"], Action::MarkAsSuccess),
        on(&["AllErrors"], Action::Abort),
    ];
    let none: [FailureStrategy; 0] = [];

    let cases: Vec<Case> = vec![
        (
            "no strategy anywhere fails the stage",
            Unknown,
            1,
            vec![&none, &none, &none],
            MarkAsFailure,
        ),
        ("no levels at all", Unknown, 1, vec![], MarkAsFailure),
        (
            "stage strategy applies to a step without one",
            Unknown,
            1,
            vec![&none, &none, &ignore_all],
            Ignore,
        ),
        (
            "step overrides stage",
            Unknown,
            1,
            vec![&success_all, &none, &ignore_all],
            MarkAsSuccess,
        ),
        (
            "group overrides stage",
            Unknown,
            1,
            vec![&none, &fail_all, &ignore_all],
            MarkAsFailure,
        ),
        (
            "step overrides group",
            Unknown,
            1,
            vec![&ignore_all, &fail_all, &none],
            Ignore,
        ),
        (
            "step strategy for other errors falls through",
            Unknown,
            1,
            vec![&abort_timeout, &none, &ignore_all],
            Ignore,
        ),
        (
            "specific step strategy matches its error",
            Timeout,
            1,
            vec![&abort_timeout, &none, &ignore_all],
            Abort,
        ),
        (
            "first matching entry of a level wins (verification)",
            FailureType::Verification,
            1,
            vec![&first_wins],
            Abort,
        ),
        (
            "first matching entry of a level wins (authentication)",
            FailureType::Authentication,
            1,
            vec![&first_wins],
            Abort,
        ),
        (
            "first matching entry of a level wins (connectivity)",
            FailureType::Connectivity,
            1,
            vec![&first_wins],
            Ignore,
        ),
        (
            "unmatched type at one level",
            Unknown,
            1,
            vec![&first_wins],
            MarkAsFailure,
        ),
        (
            "entry order, not specificity, decides",
            Timeout,
            1,
            vec![&timeout_then_all],
            MarkAsSuccess,
        ),
        (
            "AllErrors after a specific entry",
            Unknown,
            1,
            vec![&timeout_then_all],
            Abort,
        ),
    ];
    for (name, failure, attempt, levels, want) in cases {
        assert_eq!(decide(failure, attempt, &levels), want, "{name}");
    }
}

#[test]
fn retries_count_down_with_intervals_then_fall_back() {
    use Decision::*;
    let step = [on(&["AllErrors"], retry(3, &[10, 30], Action::Ignore))];
    let cases = [
        (
            1,
            Retry {
                attempt: 2,
                delay: secs(10),
            },
        ),
        (
            2,
            Retry {
                attempt: 3,
                delay: secs(30),
            },
        ),
        // Fewer intervals than retries: the last one repeats.
        (
            3,
            Retry {
                attempt: 4,
                delay: secs(30),
            },
        ),
        (4, Ignore),
    ];
    for (attempt, want) in cases {
        assert_eq!(
            decide(FailureType::Unknown, attempt, &[&step]),
            want,
            "attempt {attempt}"
        );
    }

    let no_intervals = [on(&["Timeout"], retry(1, &[], Action::Abort))];
    assert_eq!(
        decide(FailureType::Timeout, 1, &[&no_intervals]),
        Retry {
            attempt: 2,
            delay: Duration::ZERO
        }
    );
    assert_eq!(decide(FailureType::Timeout, 2, &[&no_intervals]), Abort);

    let zero = [on(&["AllErrors"], retry(0, &[5], Action::MarkAsSuccess))];
    assert_eq!(decide(FailureType::Unknown, 1, &[&zero]), MarkAsSuccess);

    // A Retry as the action after retries means MarkAsFailure, not a loop.
    let nested = [on(
        &["AllErrors"],
        retry(1, &[1], retry(5, &[1], Action::Ignore)),
    )];
    assert_eq!(decide(FailureType::Unknown, 2, &[&nested]), MarkAsFailure);
}

#[test]
fn outcomes_map_to_failure_types_and_statuses() {
    let cases = [
        (
            StepOutcome::Exited(0),
            None,
            StepStatus::Success,
            Some(0),
            None,
        ),
        (
            StepOutcome::Exited(2),
            Some(FailureType::Unknown),
            StepStatus::Failed,
            Some(2),
            None,
        ),
        (
            StepOutcome::Signaled(9),
            Some(FailureType::Unknown),
            StepStatus::Failed,
            None,
            Some(9),
        ),
        (
            StepOutcome::TimedOut,
            Some(FailureType::Timeout),
            StepStatus::Timeout,
            None,
            None,
        ),
        (
            StepOutcome::NotStarted(FailureType::PluginImageFailure),
            Some(FailureType::PluginImageFailure),
            StepStatus::Failed,
            None,
            None,
        ),
    ];
    for (outcome, failure, status, code, signal) in cases {
        assert_eq!(outcome.failure(), failure, "{outcome:?}");
        assert_eq!(outcome.status(), status, "{outcome:?}");
        assert_eq!(outcome.exit_code(), code, "{outcome:?}");
        assert_eq!(outcome.signal(), signal, "{outcome:?}");
    }
}

#[test]
fn decisions_resolve_to_status_and_stage_effect() {
    use StageEffect::*;
    let failed = StepOutcome::Exited(1);
    let timed_out = StepOutcome::TimedOut;
    let cases = [
        (StepOutcome::Exited(0), None, StepStatus::Success, Continue),
        (
            StepOutcome::Exited(0),
            Some(Decision::Abort),
            StepStatus::Success,
            Continue,
        ),
        (failed, None, StepStatus::Failed, Fail),
        (
            failed,
            Some(Decision::MarkAsFailure),
            StepStatus::Failed,
            Fail,
        ),
        (
            failed,
            Some(Decision::Ignore),
            StepStatus::Ignored,
            Continue,
        ),
        (
            failed,
            Some(Decision::MarkAsSuccess),
            StepStatus::Success,
            Continue,
        ),
        (failed, Some(Decision::Abort), StepStatus::Failed, Abort),
        (
            timed_out,
            Some(Decision::MarkAsFailure),
            StepStatus::Timeout,
            Fail,
        ),
        (timed_out, Some(Decision::Abort), StepStatus::Timeout, Abort),
        (
            timed_out,
            Some(Decision::Ignore),
            StepStatus::Ignored,
            Continue,
        ),
    ];
    for (outcome, decision, status, effect) in cases {
        assert_eq!(
            resolve(&outcome, decision),
            (status, effect),
            "{outcome:?} {decision:?}"
        );
    }
}

#[test]
fn when_gates_on_stage_status_and_condition() {
    use StageStatusCondition::*;
    let w = |s, c| When {
        stage_status: s,
        condition: c,
    };
    let (success, failure, all) = (w(Success, None), w(Failure, None), w(All, None));
    let all_false = w(All, Some(false));
    let all_true = w(All, Some(true));
    let failure_false = w(Failure, Some(false));
    // (when, stage failed, aborted, want)
    let cases = [
        (None, false, false, Gate::Run),
        (None, true, false, Gate::Skip(SkipReason::StageFailed)),
        (Some(&success), false, false, Gate::Run),
        (
            Some(&success),
            true,
            false,
            Gate::Skip(SkipReason::StageFailed),
        ),
        (
            Some(&failure),
            false,
            false,
            Gate::Skip(SkipReason::StageSucceeded),
        ),
        (Some(&failure), true, false, Gate::Run),
        (Some(&all), false, false, Gate::Run),
        (Some(&all), true, false, Gate::Run),
        (
            Some(&all_false),
            false,
            false,
            Gate::Skip(SkipReason::ConditionFalse),
        ),
        (Some(&all_true), true, false, Gate::Run),
        (
            Some(&failure_false),
            true,
            false,
            Gate::Skip(SkipReason::ConditionFalse),
        ),
        (Some(&all), false, true, Gate::Skip(SkipReason::Aborted)),
        (None, false, true, Gate::Skip(SkipReason::Aborted)),
    ];
    for (when, failed, aborted, want) in cases {
        assert_eq!(
            gate(when, failed, aborted),
            want,
            "{when:?} failed={failed} aborted={aborted}"
        );
    }
    assert!(SkipReason::StageFailed.describe().contains("stageStatus"));
}

#[test]
fn a_step_that_exits_reports_its_code() {
    let mut signals = Vec::new();
    let mut child = Command::new("sh").args(["-c", "exit 3"]).spawn().unwrap();
    let outcome = wait_with_timeout(&mut child, Some(secs(60)), secs(1), &mut |s| {
        signals.push(s)
    })
    .unwrap();
    assert_eq!(outcome, StepOutcome::Exited(3));
    let mut child = Command::new("sh")
        .args(["-c", "kill -9 $$"])
        .spawn()
        .unwrap();
    let outcome = wait_with_timeout(&mut child, None, secs(1), &mut |s| signals.push(s)).unwrap();
    assert_eq!(outcome, StepOutcome::Signaled(9));
    assert!(signals.is_empty(), "{signals:?}");
}

#[test]
fn a_step_past_its_timeout_is_stopped_with_sigterm() {
    let mut child = Command::new("sleep").arg("60").spawn().unwrap();
    let mut signals = Vec::new();
    let timeout = Some(Duration::from_millis(100));
    let outcome =
        wait_with_timeout(&mut child, timeout, secs(30), &mut |s| signals.push(s)).unwrap();
    assert_eq!(outcome, StepOutcome::TimedOut);
    assert_eq!(outcome.status(), StepStatus::Timeout);
    assert_eq!(signals, [TeardownSignal::Sigterm]);
    // It is gone, not merely forgotten.
    assert!(child.try_wait().unwrap().is_some());
}

#[test]
fn a_process_ignoring_sigterm_is_killed_after_the_grace() {
    // The shell traps TERM and keeps running; SIGKILL is the only way out.
    let mut child = Command::new("sh")
        .args([
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the trap is in place before signalling.
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    let mut signals = Vec::new();
    let exit = stop(&mut child, Duration::from_millis(200), &mut |s| {
        signals.push(s)
    })
    .unwrap();
    assert_eq!(signals, [TeardownSignal::Sigterm, TeardownSignal::Sigkill]);
    assert_eq!(exit, Exit::Signal(9));
}

#[test]
fn stopping_a_service_that_honours_sigterm_needs_no_sigkill() {
    let mut child = Command::new("sleep").arg("60").spawn().unwrap();
    let mut signals = Vec::new();
    let exit = stop(&mut child, secs(30), &mut |s| signals.push(s)).unwrap();
    assert_eq!(signals, [TeardownSignal::Sigterm]);
    assert_eq!(exit, Exit::Signal(15));
}

#[test]
fn stopping_a_service_that_already_exited_sends_nothing() {
    let mut child = Command::new("sh").args(["-c", "exit 4"]).spawn().unwrap();
    // Let it end first, like a service that crashed before teardown: wait
    // until it is a zombie, without reaping it.
    while std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut signals = Vec::new();
    let exit = stop(&mut child, secs(30), &mut |s| signals.push(s)).unwrap();
    assert!(signals.is_empty(), "{signals:?}");
    assert_eq!(exit, Exit::Code(4));
}

/// True once `pid` is gone or a zombie (dead, waiting to be reaped by init).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
    }
}

#[test]
fn a_group_child_at_its_timeout_takes_its_grandchildren_along() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let child = Command::new("sh")
        .args(["-c", "sleep 30 & echo $!; wait"])
        .stdout(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut child = GroupChild(child);
    let mut out = std::io::BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let grandchild: u32 = line.trim().parse().unwrap();
    assert!(!is_dead(grandchild));
    let outcome = wait_with_timeout(
        &mut child,
        Some(Duration::from_millis(50)),
        secs(5),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(outcome, StepOutcome::TimedOut);
    // The signal was delivered before stop returned; allow the kernel a
    // moment to finish the exit.
    let mut dead = false;
    for _ in 0..500 {
        dead = is_dead(grandchild);
        if dead {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(dead, "sleep {grandchild} outlived its step");
}
