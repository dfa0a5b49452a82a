//! The Stage API the stage executor uses: several sandboxes in one stage
//! share its network namespace; the host reaches only published ports.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "sandbox_util.rs"]
mod util;

use std::io::Read;
use std::time::Duration;

use corral::sandbox::{
    NetworkMode, PortForward, Rootfs, SandboxSpec, Stage, StageSpec, StepExit, StepStdio,
};
use util::{busybox_rootfs, eventually, free_port};

fn stage(
    tmp: &std::path::Path,
    network: NetworkMode,
    ports: Vec<PortForward>,
) -> Result<Stage, corral::sandbox::SandboxError> {
    Stage::start(StageSpec {
        network,
        ports,
        run_dir: tmp.join("store/run/stage-1"),
        exe: common::corral_bin(),
    })
}

fn sh(rootfs: &std::path::Path, script: &str) -> SandboxSpec {
    SandboxSpec::new(
        Rootfs::Dir(rootfs.to_path_buf()),
        vec!["sh".into(), "-c".into(), script.into()],
    )
}

fn read_all(step: &mut corral::sandbox::Step) -> String {
    let mut out = String::new();
    step.take_stdout()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out
}

#[test]
fn two_sandboxes_share_localhost_and_the_host_cannot_reach_unpublished_ports() {
    if !common::require_namespaces(
        "two_sandboxes_share_localhost_and_the_host_cannot_reach_unpublished_ports",
    ) {
        return;
    }
    let tmp = common::tempdir();
    let rootfs = busybox_rootfs(tmp.path());
    let inner_port = free_port();
    let stage = stage(tmp.path(), NetworkMode::None, Vec::new()).unwrap();
    let mut service = sh(
        &rootfs,
        &format!(
            "mkdir /www && echo pong > /www/index.html && exec httpd -f -p {inner_port} -h /www"
        ),
    );
    service.hostname = "service".into();
    let mut server = stage.spawn(&service, StepStdio::Piped).unwrap();
    let client_script = format!(
        "for i in $(seq 100); do wget -q -O- http://127.0.0.1:{inner_port}/ && exit 0; sleep 0.1; done; exit 1"
    );
    let mut client = stage
        .spawn(&sh(&rootfs, &client_script), StepStdio::Piped)
        .unwrap();
    let out = read_all(&mut client);
    assert_eq!(client.wait().unwrap(), StepExit::Exited(0));
    assert_eq!(out, "pong\n");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", inner_port)).is_err(),
        "host reached an unpublished port"
    );
    assert_eq!(
        server.try_wait().unwrap(),
        None,
        "the service should still run"
    );
    let run_dir = tmp.path().join("store/run/stage-1");
    assert!(run_dir.is_dir());
    stage.shutdown(Duration::from_secs(2)).unwrap();
    assert!(!run_dir.exists(), "run dir kept after shutdown");
    // httpd dies of the SIGTERM forwarded by init.
    assert_eq!(server.wait().unwrap(), StepExit::Signaled(libc::SIGTERM));
}

#[test]
fn published_port_forwards_into_the_stage() {
    if !common::require_namespaces("published_port_forwards_into_the_stage") {
        return;
    }
    let tmp = common::tempdir();
    let rootfs = busybox_rootfs(tmp.path());
    let host_port = free_port();
    let stage = stage(
        tmp.path(),
        NetworkMode::None,
        vec![PortForward {
            host_port,
            container_port: 9000,
        }],
    )
    .unwrap();
    let mut step = stage
        .spawn(
            &sh(&rootfs, "exec nc -l -p 9000 -e echo through-the-forwarder"),
            StepStdio::Piped,
        )
        .unwrap();
    let mut got = String::new();
    assert!(eventually(10, || {
        got.clear();
        std::net::TcpStream::connect(("127.0.0.1", host_port))
            .and_then(|mut s| s.read_to_string(&mut got))
            .is_ok()
            && got.contains("through-the-forwarder")
    }));
    assert_eq!(step.wait().unwrap(), StepExit::Exited(0));
    stage.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn busy_port_fails_stage_start_and_signals_map_to_step_exits() {
    if !common::require_namespaces("busy_port_fails_stage_start_and_signals_map_to_step_exits") {
        return;
    }
    let tmp = common::tempdir();
    let busy = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let err = stage(
        tmp.path(),
        NetworkMode::None,
        vec![PortForward {
            host_port: port,
            container_port: 80,
        }],
    )
    .err()
    .expect("a busy port must fail");
    assert!(err.to_string().contains("already in use"), "{err}");
    assert!(!tmp.path().join("store/run/stage-1").exists());

    let rootfs = busybox_rootfs(tmp.path());
    let stage = stage(tmp.path(), NetworkMode::Host, Vec::new()).unwrap();
    let mut step = stage
        .spawn(&sh(&rootfs, "echo up; exec sleep 1000"), StepStdio::Piped)
        .unwrap();
    let mut first = [0u8; 3];
    step.take_stdout().unwrap().read_exact(&mut first).unwrap();
    step.signal(libc::SIGKILL).unwrap();
    let exit = step.wait().unwrap();
    assert!(
        matches!(exit, StepExit::Signaled(libc::SIGKILL)),
        "{exit:?}"
    );
    assert_eq!(exit.code(), 137);
    let mut bad = sh(&rootfs, "true");
    bad.cwd = "/does/not/exist".into();
    let err = stage
        .spawn(&bad, StepStdio::Piped)
        .err()
        .expect("a missing cwd fails setup");
    assert!(err.to_string().contains("/does/not/exist"), "{err}");
    stage.shutdown(Duration::from_secs(1)).unwrap();
}

#[test]
fn stage_is_shareable_across_threads_and_a_dropped_stage_leaves_nothing() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}
    assert_send_sync::<Stage>();
    assert_send::<corral::sandbox::Step>();
    if !common::require_namespaces(
        "stage_is_shareable_across_threads_and_a_dropped_stage_leaves_nothing",
    ) {
        return;
    }
    let tmp = common::tempdir();
    let rootfs = busybox_rootfs(tmp.path());
    let stage = std::sync::Arc::new(stage(tmp.path(), NetworkMode::None, Vec::new()).unwrap());
    let marker = format!("sleep {}", 500_000 + fastrand::u32(..99_999));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (stage, spec) = (
                stage.clone(),
                sh(&rootfs, &format!("echo up; exec {marker}")),
            );
            std::thread::spawn(move || {
                let mut step = stage.spawn(&spec, StepStdio::Piped).unwrap();
                let mut up = [0u8; 3];
                step.take_stdout().unwrap().read_exact(&mut up).unwrap();
                std::mem::forget(step); // leave it running: the stage must clean up
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // `sh` execs `sleep` just after "up": give it a moment to be replaced.
    assert!(
        eventually(5, || util::processes_with(&marker).len() == 2),
        "expected the two steps running: {:?}",
        util::processes_with(&marker)
    );
    drop(std::sync::Arc::into_inner(stage).unwrap());
    assert!(
        eventually(5, || util::processes_with(&marker).is_empty()),
        "steps survived the stage"
    );
    assert!(!tmp.path().join("store/run/stage-1").exists());
}

#[test]
fn two_stages_bind_the_same_port_without_conflict() {
    if !common::require_namespaces("two_stages_bind_the_same_port_without_conflict") {
        return;
    }
    let tmp = common::tempdir();
    let rootfs = busybox_rootfs(tmp.path());
    let stages: Vec<Stage> = (0..2)
        .map(|i| {
            Stage::start(StageSpec {
                network: NetworkMode::None,
                ports: Vec::new(),
                run_dir: tmp.path().join(format!("store/run/stage-{i}")),
                exe: common::corral_bin(),
            })
            .unwrap()
        })
        .collect();
    let mut services = Vec::new();
    for (i, stage) in stages.iter().enumerate() {
        let script = format!(
            "mkdir /www && echo stage-{i} > /www/index.html && exec httpd -f -p 8080 -h /www"
        );
        services.push(
            stage
                .spawn(&sh(&rootfs, &script), StepStdio::Piped)
                .unwrap(),
        );
    }
    for (i, stage) in stages.iter().enumerate() {
        let client = "for i in $(seq 100); do wget -q -O- http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1";
        let mut step = stage.spawn(&sh(&rootfs, client), StepStdio::Piped).unwrap();
        assert_eq!(read_all(&mut step), format!("stage-{i}\n"));
        assert_eq!(step.wait().unwrap(), StepExit::Exited(0));
    }
    for stage in stages {
        stage.shutdown(Duration::from_secs(2)).unwrap();
    }
    for mut service in services {
        assert!(matches!(service.wait().unwrap(), StepExit::Signaled(_)));
    }
}

#[test]
fn many_sequential_steps_leak_no_fds_or_processes() {
    if !common::require_namespaces("many_sequential_steps_leak_no_fds_or_processes") {
        return;
    }
    let tmp = common::tempdir();
    let rootfs = busybox_rootfs(tmp.path());
    let stage = stage(tmp.path(), NetworkMode::None, Vec::new()).unwrap();
    // Other tests share this process, so count what belongs to this stage.
    let holder_fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", stage.holder_pid()))
            .unwrap()
            .count()
    };
    let mut pids = Vec::new();
    let mut run = |n: usize| {
        for _ in 0..n {
            let mut step = stage
                .spawn(&sh(&rootfs, "echo x"), StepStdio::Piped)
                .unwrap();
            pids.push(step.pid());
            assert_eq!(read_all(&mut step), "x\n");
            assert_eq!(step.wait().unwrap(), StepExit::Exited(0));
        }
    };
    run(5);
    let before = holder_fds();
    run(60);
    assert_eq!(holder_fds(), before, "the holder leaks fds");
    let alive: Vec<_> = pids
        .iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("__sandbox"))
                .unwrap_or(false)
        })
        .collect();
    assert!(alive.is_empty(), "step processes left: {alive:?}");
    stage.shutdown(Duration::from_secs(1)).unwrap();
}
