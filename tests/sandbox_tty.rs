//! `corral exec` on a terminal: a ^C typed once reaches the command once,
//! although corral, the step process and init all see it too (they share
//! the terminal's foreground process group). Runs as root and as both test
//! users.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "sandbox_util.rs"]
mod util;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use util::busybox_rootfs;

#[test]
fn ctrl_c_on_the_terminal_reaches_the_command_once() {
    if !common::require_namespaces("ctrl_c_on_the_terminal_reaches_the_command_once") {
        return;
    }
    let tmp = common::tempdir();
    let rootfs = busybox_rootfs(tmp.path());
    let (master, slave) = common::openpty();
    let slave_fd = slave.as_raw_fd();
    // Every SIGINT the shell gets bumps n; the background sleep keeps the
    // shell in `wait` until the first one arrives.
    let script = "n=0; trap 'n=$((n+1))' INT; echo ready; sleep 3 & wait; sleep 1; echo \"got $n\"";
    let mut cmd = common::corral(&tmp.path().join("store"));
    cmd.args(["exec", "--network", "none", "--rootfs"])
        .arg(&rootfs)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave));
    // SAFETY: setsid and ioctl are async-signal-safe: corral leads a new
    // session whose controlling terminal is the pty, as under a shell.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 || libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    drop(cmd);
    let mut writer = File::from(master.try_clone().unwrap());
    let mut reader = File::from(master);
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        // EIO once every slave fd is closed ends the loop.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut output = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = false;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(chunk) => output.push_str(&String::from_utf8_lossy(&chunk)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if !sent && output.contains("ready") {
            std::thread::sleep(Duration::from_millis(300));
            writer.write_all(b"\x03").unwrap();
            sent = true;
        }
        if output.contains("got ") && output.trim_end().ends_with(|c: char| c.is_ascii_digit()) {
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(sent, "the sandbox never became ready:\n{output}");
    assert!(status.success(), "exit {status:?}\n{output}");
    assert!(
        output.contains("got 1"),
        "^C must reach the command exactly once:\n{output}"
    );
}
