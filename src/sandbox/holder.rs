//! `corral __sandbox holder`: owns a stage's user and network namespaces.
//!
//! Protocol (lines; control on stdin, replies on stdout):
//! launcher → `HolderRequest` JSON; holder binds the host ports, unshares
//! USER|NET → `unshared`; launcher writes the ID maps → `mapped`; holder
//! brings `lo` up, binds the inside listeners of host ports that differ
//! from their container ports and starts the forwarders → `ready`. Then
//! `rm PATH` → `ok` / `error MSG` (removal happens here because files
//! created inside belong to IDs only the namespace's root may delete).
//! EOF → exit, and every forwarder (a thread of ours) goes with us.
//!
//! The holder owns the forwarders because it is single-threaded until
//! `ready` and already sits in the namespace: no fork, no extra process.

use std::io::{BufRead, Write};

use super::net;
use super::spec::{HolderRequest, NetworkMode};

fn reply(line: &str) -> bool {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

pub fn holder_main() -> i32 {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let Some(Ok(first)) = lines.next() else {
        return 125;
    };
    let req: HolderRequest = match serde_json::from_str(&first) {
        Ok(req) => req,
        Err(err) => {
            reply(&format!("error invalid holder request: {err}"));
            return 125;
        }
    };
    // SAFETY: prctl/getppid without pointers; single-threaded so far.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != req.parent_pid {
            return 125;
        }
    }
    let mut listeners = match net::bind_listeners(&req.ports) {
        Ok(l) => l,
        Err(err) => {
            reply(&format!("error {}", crate::error_chain(&err)));
            return 125;
        }
    };
    let mut flags = libc::CLONE_NEWUSER;
    if req.network != NetworkMode::Host {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: unshare in a single-threaded process.
    if unsafe { libc::unshare(flags) } < 0 {
        let err = std::io::Error::last_os_error();
        reply(&format!(
            "error failed to create the stage's user and network namespaces: {err}"
        ));
        return 125;
    }
    if !reply("unshared") {
        return 125;
    }
    match lines.next() {
        Some(Ok(line)) if line == "mapped" => {}
        _ => return 125,
    }
    if req.network != NetworkMode::Host {
        // With the host's netns the host listeners serve `localhost` already.
        let inside = net::loopback_up().and_then(|()| net::bind_inside_listeners(&req.ports));
        match inside {
            Ok(inside) => listeners.extend(inside),
            Err(err) => {
                reply(&format!("error {}", crate::error_chain(&err)));
                return 125;
            }
        }
    }
    net::spawn_forwarders(listeners);
    if !reply("ready") {
        return 125;
    }
    for line in lines {
        let Ok(line) = line else { break };
        if let Some(path) = line.strip_prefix("rm ") {
            match std::fs::remove_dir_all(path) {
                Ok(()) => reply("ok"),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => reply("ok"),
                Err(err) => reply(&format!("error failed to remove {path}: {err}")),
            };
        }
    }
    0
}
