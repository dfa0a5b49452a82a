//! Interrupting `corral run`: SIGINT/SIGTERM tear the stage down and exit
//! 130/143 with the summary; SIGKILL leaves nothing behind either (the
//! sandboxes die with their parent).

#![allow(clippy::unwrap_used)]

mod common;
mod run_support;

use std::process::{Child, Stdio};
use std::time::Duration;

use run_support::{eventually, leftover_processes, pipeline, run_step, setup, signal, step, Env};

/// The service's command: it reports a SIGTERM and stops.
const SVC: &str = "trap 'echo svc got TERM; exit 0' TERM; while true; do sleep 1; done";

/// A service running `svc` and a Run step that never end on their own;
/// `own_group`: corral leads a process group of its own, as a shell starts
/// a foreground job.
fn start_endless(env: &Env, svc: &str, own_group: bool) -> Child {
    use std::os::unix::process::CommandExt;
    let file = env.write(
        "p.yaml",
        &pipeline(
            &(step("Background", "svc", Some("busybox"), svc)
                + &run_step("forever", "touch /harness/started; sleep 1000")),
        ),
    );
    let mut cmd = env.command(&file);
    if own_group {
        cmd.process_group(0);
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        eventually(60, || env.ws("started").exists()),
        "the Run step started"
    );
    child
}

fn assert_nothing_left(env: &Env) {
    assert!(
        eventually(10, || leftover_processes(&env.store).is_empty()),
        "left behind: {:?}",
        leftover_processes(&env.store)
    );
    let run_root = env.store.join("run");
    let stages: Vec<_> = std::fs::read_dir(&run_root)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let stages: Vec<_> = stages
        .into_iter()
        .filter(|n| !n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(stages.is_empty(), "stage state left: {stages:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(env.store.to_str().unwrap()));
}

fn interrupt(test: &str, sig: i32, code: i32) {
    let Some(env) = setup(test, true) else {
        return;
    };
    let child = start_endless(&env, SVC, false);
    signal(&child, sig);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(code));
    assert!(text.contains("svc") && text.contains("forever"), "summary");
    assert!(
        text.contains("svc     | svc got TERM"),
        "the service got SIGTERM"
    );
    assert_nothing_left(&env);
}

#[test]
fn sigint_midway_tears_down_and_exits_130() {
    interrupt("sigint_midway", libc::SIGINT, 130);
}

#[test]
fn sigterm_midway_tears_down_and_exits_143() {
    interrupt("sigterm_midway", libc::SIGTERM, 143);
}

#[test]
fn sigkill_to_corral_leaves_no_sandbox_behind() {
    let Some(env) = setup("sigkill_corral", true) else {
        return;
    };
    let mut child = start_endless(&env, SVC, false);
    assert!(!leftover_processes(&env.store).is_empty());
    signal(&child, libc::SIGKILL);
    let _ = child.wait();
    assert!(
        eventually(10, || leftover_processes(&env.store).is_empty()),
        "left behind: {:?}",
        leftover_processes(&env.store)
    );
    // The next run cleans the stage state of the killed one.
    std::thread::sleep(Duration::from_millis(100));
    let file = env.write("ok.yaml", &pipeline(&run_step("ok", "echo ok")));
    let out = env.command(&file).output().unwrap();
    assert!(out.status.success());
    assert_nothing_left(&env);
}

/// A terminal's ^C goes to corral's whole process group: the sandboxes, the
/// stage holder and the egress helper are not in it, so the service gets
/// only corral's orderly SIGTERM, never the SIGINT itself.
#[test]
fn sigint_to_corrals_process_group_reaches_only_corral() {
    let Some(env) = setup("sigint_process_group", true) else {
        return;
    };
    let svc = format!("trap 'echo svc got INT; exit 9' INT; {SVC}");
    let child = start_endless(&env, &svc, true);
    // SAFETY: kill(2) on the process group our child leads.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(130));
    assert!(
        text.contains("svc     | svc got TERM"),
        "the service got SIGTERM"
    );
    assert!(
        !text.contains("svc got INT"),
        "the service got the ^C itself"
    );
    assert_nothing_left(&env);
}
