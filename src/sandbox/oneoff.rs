//! A one-off sandbox (`corral exec`) whose PID 1 is cloned before its spec
//! is known.
//!
//! The kernel's work for a sandbox's namespaces (above all a network
//! namespace: a millisecond and more on small VMs) does not depend on the
//! image or the command. So the launcher clones init straight into its new
//! namespaces first, writes its ID maps, and only then resolves the image
//! and builds the spec, while init (and its network namespace helper) wait
//! on the other CPU. The spec follows over the spec pipe as one JSON line;
//! dropping a [`Prestarted`] without [`Prestarted::start`] kills init.

use std::fs::File;
use std::io::{BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use super::init;
use super::launch::{in_child, pipe_from, single_threaded, LiveSteps};
use super::spec::{IdMapping, NetworkMode, SandboxSpec, StepRequest};
use super::step::{pidfd_open, Step, StepProcess};
use super::{idmap, net, SandboxError};

/// Init of a one-off sandbox, in its namespaces and mapped, awaiting its spec.
/// Dropped unstarted, it closes the spec pipe (init leaves on the EOF), then
/// kills and reaps init (fields drop in this order).
pub struct Prestarted {
    spec_w: File,
    status: File,
    step: Step,
    network: NetworkMode,
    mapping: IdMapping,
}

/// Clones init for a one-off sandbox with `network` and no published ports,
/// when this process is single-threaded (the clone is a fork); `None`
/// otherwise, for [`super::run_once`]'s other ways. `exe` names our binary
/// in errors.
pub fn prestart_once(exe: &Path, network: NetworkMode) -> Result<Option<Prestarted>, SandboxError> {
    if !single_threaded() {
        return Ok(None);
    }
    let spawn_err = |source| SandboxError::SpawnStep {
        exe: exe.to_path_buf(),
        source,
    };
    // Off stdio, which init and the command inherit; nothing is dup2'd
    // onto fixed numbers here (no re-exec).
    let (spec_r, spec_w) = pipe_from(3)?;
    let (status_r, status_w) = pipe_from(3)?;
    let (early_r, early_w) = pipe_from(3)?;
    let parent_ends = [
        spec_w.as_raw_fd(),
        status_r.as_raw_fd(),
        early_r.as_raw_fd(),
    ];
    let child = clone_init(network, spec_r, status_w, early_w, parent_ends).map_err(spawn_err)?;
    let pidfd = match pidfd_open(child.id()) {
        Ok(fd) => fd,
        Err(err) => {
            let mut child = child;
            super::launch::kill_and_reap(&mut child);
            return Err(spawn_err(err));
        }
    };
    let mut step = Step {
        id: 0,
        child,
        pidfd,
        early: Some(File::from(early_r)),
        live: LiveSteps::default(),
        exit: None,
        egress: None,
        setup_status: None,
    };
    // Its user namespace exists once clone returns: no round trip first.
    let mapping = idmap::choose();
    idmap::write_maps(step.pid() as i32, mapping)
        .map_err(|source| SandboxError::WriteIdMaps { source })?;
    // Before the spec, so the command never runs without its route out.
    if network == NetworkMode::Private {
        match net::start_egress(step.pid() as i32) {
            Ok(guard) => step.egress = Some(guard),
            Err(msg) => tracing::warn!("{msg}"),
        }
    }
    Ok(Some(Prestarted {
        spec_w: File::from(spec_w),
        status: File::from(status_r),
        step,
        network,
        mapping,
    }))
}

impl Prestarted {
    /// The network init was cloned with.
    pub fn network(&self) -> NetworkMode {
        self.network
    }

    /// Sends init its spec; `step_dir` is the mount point of its scratch
    /// tmpfs (created when missing, see [`super::run_once`]). Returns while
    /// the sandbox is being set up: a setup failure comes from
    /// [`Step::wait`] as [`SandboxError::Setup`].
    pub fn start(mut self, spec: &SandboxSpec, step_dir: &Path) -> Result<Step, SandboxError> {
        super::launch::create_step_dir(step_dir)?;
        let req = StepRequest {
            spec: spec.clone(),
            holder_pid: 0,
            network: self.network,
            ports: Vec::new(),
            parent_pid: std::process::id() as i32,
            step_dir: step_dir.to_path_buf(),
            mapping: self.mapping,
        };
        let mut json = serde_json::to_vec(&req).map_err(|e| SandboxError::HolderProtocol {
            message: e.to_string(),
        })?;
        json.push(b'\n');
        // A failed write means init is gone; its status pipe says why.
        let _ = self.spec_w.write_all(&json);
        drop(self.spec_w);
        self.step.setup_status = Some(self.status);
        Ok(self.step)
    }
}

/// Clones the sandbox's PID 1 straight into new user, network (unless the
/// host's), mount, pid, uts and ipc namespaces: one process fewer than a
/// step process that unshares and forks init. Only sound while this
/// process has one thread; published ports need the step process (their
/// listeners and forwarder live outside the pid namespace).
fn clone_init(
    network: NetworkMode,
    spec_r: OwnedFd,
    status_w: OwnedFd,
    early_w: OwnedFd,
    parent_ends: [i32; 3],
) -> std::io::Result<StepProcess> {
    let mut flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC;
    // The egress helper we start for a private network attaches to the
    // child's network namespace, which must exist first; without one, init
    // makes it beside its rootfs setup (`netns`).
    if network == NetworkMode::Private {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: a fork-like clone (no CLONE_VM, no new stack) of a
    // single-threaded process; the child leaves through _exit.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    in_child(pid, parent_ends, || {
        init::direct_init(
            network,
            BufReader::new(File::from(spec_r)),
            File::from(status_w),
            File::from(early_w),
        )
    })
}
