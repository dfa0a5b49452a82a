//! Limits without a delegated cgroup v2: memory becomes `RLIMIT_AS`; CPU
//! shares have no rlimit equivalent (the caller warns, see `corral info`).

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
        if unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One warning per limit that will not be enforced as asked, or empty.
pub fn warnings(limits: &Limits, cgroup_v2_delegated: bool) -> Vec<String> {
    if cgroup_v2_delegated {
        return Vec::new();
    }
    let mut out = Vec::new();
    if limits.memory_bytes.is_some() {
        out.push(
            "no delegated cgroup v2 here: --memory is enforced as RLIMIT_AS (address space) per process, not as a cgroup limit"
                .to_string(),
        );
    }
    if limits.cpus.is_some() {
        out.push(
            "no delegated cgroup v2 here: --cpus cannot be enforced and is not applied".to_string(),
        );
    }
    out
}
