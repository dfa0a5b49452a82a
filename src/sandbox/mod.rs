//! Linux namespaces sandbox: pure specs and plans, a thin syscall seam, the
//! in-child init, the launcher and the stage network. Never imports `pipeline`.
//!
//! ```text
//! corral (any threads)              Stage::start / Stage::spawn
//!  ├─ corral __sandbox holder       unshare(USER|NET); we write its ID maps; lo up;
//!  │                                host port listeners forwarded inside
//!  └─ corral __sandbox step         setns(holder user+net); unshare(MNT|PID|UTS|IPC)
//!      └─ init (PID 1)              scratch tmpfs, overlay rootfs, /proc /dev /sys /tmp;
//!          │                        pivot_root; reaps orphans; forwards signals
//!          └─ command               rlimits, caps, user, no_new_privs, seccomp, exec
//! ```
//! Steps join the holder with `setns` from their own re-executed process
//! rather than being forked by the holder: the holder then may use threads
//! (port forwarders) and needs no fd-passing protocol for stdio.
//! The holder, a stage's step processes and the egress helpers (pasta,
//! slirp4netns) each lead a process group of their own: a terminal's ^C
//! reaches corral alone, whose teardown stops services in order.
//! [`run_once`] (used by `corral exec`) skips the holder: the step process
//! makes its own user and network namespaces. From a single-threaded
//! launcher it skips the re-execution too, and without published ports the
//! step process as well:
//!
//! ```text
//! corral exec (one thread)          run_once
//!  └─ init (PID 1)                  clone(USER|NET|MNT|PID|UTS|IPC); we write
//!      │                            its ID maps; setup as above; reports the
//!      │                            command's wait status to us on a pipe
//!      └─ command
//! ```
//!
//! Use by the stage executor (sync API; wrap waits in `spawn_blocking`):
//!
//! ```no_run
//! use std::time::Duration;
//! use corral::sandbox::{default_exe, new_run_dir, remove_stale, NetworkMode, PortForward,
//!     Rootfs, SandboxSpec, Stage, StageSpec, StepStdio};
//! # fn main() -> Result<(), corral::sandbox::SandboxError> {
//! let run_root = std::path::Path::new("/var/lib/corral/run");
//! remove_stale(run_root, &default_exe())?; // state of crashed corrals
//! let stage = Stage::start(StageSpec {
//!     network: NetworkMode::Private,
//!     ports: vec![PortForward { host_port: 8080, container_port: 80 }],
//!     run_dir: new_run_dir(run_root, "stage"),
//!     exe: default_exe(),
//! })?;
//! let mut db = SandboxSpec::new(Rootfs::Image { lower: "/store/rootfs/abc".into() }, vec!["postgres".into()]);
//! db.hostname = "db".into();
//! let mut service = stage.spawn(&db, StepStdio::Piped)?; // Background step
//! let mut step = stage.spawn(&SandboxSpec::new(Rootfs::HostRoot, vec!["true".into()]), StepStdio::Piped)?;
//! let _stdout = step.take_stdout(); // read it (another thread) before waiting
//! let code = step.wait()?.code();
//! stage.shutdown(Duration::from_secs(10))?; // SIGTERM, grace, SIGKILL; run dir removed
//! let _ = (service.wait(), code);
//! # Ok(()) }
//! ```

mod apply;
pub mod caps;
mod command;
mod etc;
mod holder;
mod hostroot;
pub mod idmap;
mod init;
mod launch;
pub mod net;
mod netns;
pub mod plan;
pub mod probe;
pub mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
mod state;
mod step;
pub mod sys;
pub mod user;

use std::path::PathBuf;

pub use launch::{run_once, Stage, Step, StepExit, StepStdio};
pub use spec::{
    default_exe, BindMount, IdMapping, InlineFile, Limits, NetworkMode, PortForward, Rootfs,
    SandboxSpec, StageSpec, User,
};
pub use state::{
    lock_dir, new_run_dir, remove_dirs, remove_stale, unlocked_dirs, EXEC_MOUNT_POINT,
};

/// Failures of the sandbox launcher.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("failed to create sandbox state {path}")]
    CreateStateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start the stage holder {exe}")]
    SpawnHolder {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start a sandbox with {exe}")]
    SpawnStep {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write the stage's id maps")]
    WriteIdMaps {
        #[source]
        source: idmap::IdMapError,
    },
    #[error("the stage holder failed: {message}")]
    Holder { message: String },
    #[error("the stage holder exited unexpectedly ({status})")]
    HolderDied { status: String },
    #[error("unexpected reply from the stage holder: {message}")]
    HolderProtocol { message: String },
    #[error("sandbox setup failed: {message}")]
    Setup { message: String },
    #[error("failed to create a pipe")]
    Pipe {
        #[source]
        source: std::io::Error,
    },
    #[error("failed to wait for a sandbox")]
    WaitStep {
        #[source]
        source: std::io::Error,
    },
    #[error("failed to send signal {sig} to a sandbox")]
    Signal {
        sig: i32,
        #[source]
        source: std::io::Error,
    },
}

/// Entry of `corral __sandbox ROLE`; returns the process exit code.
pub fn internal_main(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("holder") => holder::holder_main(),
        Some("step") => init::step_main(),
        Some("probe-overlay") => probe::overlay_child(),
        other => {
            eprintln!("corral: unknown internal sandbox role {other:?}");
            125
        }
    }
}
