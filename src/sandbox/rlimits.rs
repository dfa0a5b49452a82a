//! Limits, as rlimits (corral places sandboxes in no cgroup): memory becomes
//! `RLIMIT_DATA`; CPU shares have no rlimit equivalent (the caller warns,
//! see `corral info`).
//!
//! `RLIMIT_DATA` rather than `RLIMIT_AS`: since Linux 4.7 it counts every
//! private writable mapping (heap, anonymous mmap), which is what a memory
//! limit means, while reservations without access (`PROT_NONE`, as Node,
//! the JVM and Go make gigabytes of) and file mappings do not count. Under
//! `RLIMIT_AS` those runtimes fail at start.

use std::io;

use super::spec::Limits;

/// Applies what rlimits can express of `limits` to the calling process.
pub fn apply(limits: &Limits) -> io::Result<()> {
    if let Some(bytes) = limits.memory_bytes {
        let lim = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: bytes,
        };
        // SAFETY: valid rlimit pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_DATA, &lim) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// How `corral info` and the warnings describe the memory limit.
pub const MEMORY_LIMIT_KIND: &str =
    "RLIMIT_DATA (private writable memory per process; address space reservations are free)";

/// One warning per limit that will not be enforced as asked.
pub fn warnings(limits: &Limits) -> Vec<String> {
    let mut out = Vec::new();
    if limits.memory_bytes.is_some() {
        out.push(format!(
            "no cgroup limits here: the memory limit (--memory, resources.limits.memory) is enforced as {MEMORY_LIMIT_KIND}, not for the sandbox as a whole"
        ));
    }
    if limits.cpus.is_some() {
        out.push(
            "no cgroup limits here: the cpu limit (--cpus, resources.limits.cpu) cannot be enforced and is not applied"
                .to_string(),
        );
    }
    out
}
