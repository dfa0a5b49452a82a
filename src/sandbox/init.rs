//! The re-executed `step` child and the sandbox's PID 1.
//!
//! ```text
//! corral __sandbox step     joins the holder's user+net namespaces, unshares
//!  │                        mnt|pid|uts|ipc, forwards signals to init, exits
//!  │                        like the command (re-raising its signal)
//!  └─ init (PID 1)          applies the setup plan, pivot_root, reaps every
//!      └─ the command       orphan, forwards signals; drops caps, seccomp, exec
//! ```
//! Setup failures go to the launcher over the status pipe (fd 4); the status
//! pipe is close-on-exec, so EOF tells the launcher the command was exec'd.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::apply::apply;
use super::plan::{plan, SetupOp, StepDirs};
use super::spec::{NetworkMode, StepRequest};
use super::sys::LinuxSys;

/// The spec pipe and the status pipe of a step child.
pub const SPEC_FD: i32 = 3;
pub const STATUS_FD: i32 = 4;

/// Signals the step process and init pass on to the command.
const FORWARDED: [i32; 9] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
    libc::SIGCONT,
    libc::SIGALRM,
];

pub(crate) fn fail(status: &mut File, msg: &str) -> i32 {
    let _ = status.write_all(msg.as_bytes());
    125
}

pub(crate) fn last_error(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// `corral __sandbox step`: returns the exit code of the step process.
pub fn step_main() -> i32 {
    // SAFETY: the launcher put these fds in place for us; we own them now.
    let (spec_pipe, mut status) =
        unsafe { (File::from_raw_fd(SPEC_FD), File::from_raw_fd(STATUS_FD)) };
    set_cloexec(SPEC_FD);
    set_cloexec(STATUS_FD);
    let mut spec_pipe = BufReader::new(spec_pipe);
    let mut json = String::new();
    if let Err(err) = spec_pipe.read_line(&mut json) {
        return fail(
            &mut status,
            &format!("failed to read the sandbox spec: {err}"),
        );
    }
    let req: StepRequest = match serde_json::from_str(&json) {
        Ok(req) => req,
        Err(err) => return fail(&mut status, &format!("invalid sandbox spec: {err}")),
    };
    run_step(&req, spec_pipe, status, None)
}

/// The step process once it has its request: either re-executed
/// (`step_main`) or forked straight from a single-threaded launcher, which
/// may pass `early`: init writes the command's wait status there as soon as
/// it has it, so the launcher need not wait for the namespaces' teardown.
pub(crate) fn run_step(
    req: &StepRequest,
    mut spec_pipe: BufReader<File>,
    mut status: File,
    early: Option<File>,
) -> i32 {
    if let Err(msg) = die_with_parent(req.parent_pid) {
        return fail(&mut status, &msg);
    }
    let joined = if req.holder_pid == 0 {
        create_own_namespaces(req, &mut spec_pipe, &mut status)
    } else {
        join_and_unshare(req)
    };
    if let Err(msg) = joined {
        return fail(&mut status, &msg);
    }
    drop(spec_pipe);
    let blocked = block_signals();
    let (result_r, result_w) = match pipe() {
        Ok(p) => p,
        Err(msg) => return fail(&mut status, &msg),
    };
    let (lifeline_r, lifeline_w) = match pipe() {
        Ok(p) => p,
        Err(msg) => return fail(&mut status, &msg),
    };
    // SAFETY: we are single-threaded (a freshly exec'd process).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return fail(&mut status, &last_error("failed to fork the sandbox init"));
    }
    if pid == 0 {
        drop(result_r);
        drop(lifeline_w);
        let code = init_main(
            req,
            setup_ops(req),
            status,
            Some(File::from(result_w)),
            early,
            Some(lifeline_r),
            None,
        );
        // SAFETY: leaving the child without running parent-owned destructors.
        unsafe { libc::_exit(code) };
    }
    drop(result_w);
    drop(lifeline_r);
    drop(status);
    drop(early);
    let code = supervise_init(pid, &blocked, File::from(result_r));
    drop(lifeline_w);
    code
}

/// A one-off sandbox without a holder: host port listeners first, then the
/// user and network namespaces (the launcher writes our ID maps), a port
/// forwarder process, then the other namespaces.
fn create_own_namespaces(
    req: &StepRequest,
    spec_pipe: &mut BufReader<File>,
    status: &mut File,
) -> Result<(), String> {
    let listeners = super::net::bind_listeners(&req.ports).map_err(|e| crate::error_chain(&e))?;
    let mut flags = libc::CLONE_NEWUSER;
    if req.network != NetworkMode::Host {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: unshare in a single-threaded process.
    if unsafe { libc::unshare(flags) } < 0 {
        return Err(last_error(
            "failed to create the sandbox's user and network namespaces",
        ));
    }
    await_id_maps(spec_pipe, Some(status), req.network != NetworkMode::Host)?;
    if !listeners.is_empty() {
        let pipes = [spec_pipe.get_ref().as_raw_fd(), status.as_raw_fd()];
        spawn_forwarder_process(listeners, pipes)?;
    }
    let flags = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    // SAFETY: unshare in a single-threaded process.
    if unsafe { libc::unshare(flags) } < 0 {
        return Err(last_error(
            "failed to unshare mount, pid, uts and ipc namespaces",
        ));
    }
    Ok(())
}

/// Brings up `lo` of our new network namespace if asked (our capabilities
/// there need no ID map), tells the launcher our user namespace exists
/// unless it knows (`announce` is `None`), and waits until it wrote the ID
/// maps.
fn await_id_maps(
    spec_pipe: &mut BufReader<File>,
    announce: Option<&mut File>,
    loopback: bool,
) -> Result<(), String> {
    if let Some(status) = announce {
        status
            .write_all(b"unshared\n")
            .map_err(|e| format!("launcher gone: {e}"))?;
    }
    if loopback {
        super::net::loopback_up().map_err(|e| crate::error_chain(&e))?;
    }
    let mut line = String::new();
    spec_pipe
        .read_line(&mut line)
        .map_err(|e| format!("launcher gone: {e}"))?;
    if line.trim_end() != "mapped" {
        return Err("the launcher did not write our id maps".into());
    }
    Ok(())
}

/// PID 1 cloned by a single-threaded launcher straight into all of the
/// sandbox's namespaces (no step process in between): waits for its ID
/// maps, then is [`init_main`], reporting the command's exit on `early`.
pub(crate) fn direct_init(
    req: &StepRequest,
    mut spec_pipe: BufReader<File>,
    mut status: File,
    early: File,
) -> i32 {
    block_signals();
    // A launcher that died before this prctl closed the spec pipe: the
    // handshake below then fails and we exit.
    // SAFETY: prctl without pointers.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // No egress helper needs our network namespace from the start (see
    // `clone_init`): it is made beside the rootfs setup.
    let netns = if req.network == NetworkMode::None {
        match super::netns::start() {
            Ok(pending) => Some(pending),
            Err(err) => {
                let msg = format!("failed to start making the network namespace: {err}");
                return fail(&mut status, &msg);
            }
        }
    } else {
        None
    };
    // While the launcher writes our ID maps.
    let ops = setup_ops(req);
    let loopback = req.network == NetworkMode::Private;
    if let Err(msg) = await_id_maps(&mut spec_pipe, None, loopback) {
        return fail(&mut status, &msg);
    }
    drop(spec_pipe);
    init_main(req, ops, status, None, Some(early), None, netns)
}

/// Forwarder threads cannot live in a process that unshared its pid
/// namespace (clone refuses CLONE_THREAD there), so they get a child of
/// their own, which dies with us.
fn spawn_forwarder_process(
    listeners: Vec<(std::net::TcpListener, super::spec::PortForward)>,
    pipes: [i32; 2],
) -> Result<(), String> {
    // SAFETY: single-threaded; the child only closes fds, sets PDEATHSIG and
    // runs the forwarders.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(last_error("failed to fork the port forwarder"));
    }
    if pid > 0 {
        return Ok(());
    }
    // SAFETY: closing fds the forwarder must not keep open (the spec and
    // status pipes, the step's stdio), then waiting forever.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        for fd in 0..3 {
            libc::dup2(null, fd);
        }
        for fd in pipes {
            libc::close(fd);
        }
    }
    super::net::spawn_forwarders(listeners);
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

fn set_cloexec(fd: i32) {
    // SAFETY: fcntl on an fd we own.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| format!("failed to create a pipe: {e}"))
}

/// Dies with the process that spawned us, closing the fork/prctl race.
fn die_with_parent(parent: i32) -> Result<(), String> {
    // SAFETY: prctl/getppid without pointers.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) < 0 {
            return Err(last_error("failed to set the parent-death signal"));
        }
        if libc::getppid() != parent {
            libc::_exit(125);
        }
    }
    Ok(())
}

fn join_and_unshare(req: &StepRequest) -> Result<(), String> {
    let ns = |kind: &str| {
        let path = format!("/proc/{}/ns/{kind}", req.holder_pid);
        File::open(&path).map_err(|e| format!("failed to open {path} of the stage holder: {e}"))
    };
    let user = ns("user")?;
    let net = if req.network != NetworkMode::Host {
        Some(ns("net")?)
    } else {
        None
    };
    // SAFETY: setns/unshare on fds we hold, in a single-threaded process.
    unsafe {
        if libc::setns(user.as_raw_fd(), libc::CLONE_NEWUSER) < 0 {
            return Err(last_error("failed to join the stage's user namespace"));
        }
        if let Some(net) = &net {
            if libc::setns(net.as_raw_fd(), libc::CLONE_NEWNET) < 0 {
                return Err(last_error("failed to join the stage's network namespace"));
            }
        }
        let flags =
            libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
        if libc::unshare(flags) < 0 {
            return Err(last_error(
                "failed to unshare mount, pid, uts and ipc namespaces",
            ));
        }
    }
    Ok(())
}

pub(crate) fn signal_set(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset_t is plain data initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in signals {
            libc::sigaddset(&mut set, *sig);
        }
        set
    }
}

/// Blocks the forwarded signals and SIGCHLD so the loops can `sigwaitinfo`.
fn block_signals() -> libc::sigset_t {
    let mut all = FORWARDED.to_vec();
    all.push(libc::SIGCHLD);
    let set = signal_set(&all);
    // SAFETY: valid sigset pointer.
    unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    set
}

/// The next signal of `set`, and whether the kernel sent it (a terminal's
/// ^C, ^\\, hangup or resize, which reach the command's process group
/// directly: forwarding them too would deliver them twice).
fn wait_signal(set: &libc::sigset_t) -> (i32, bool) {
    loop {
        // SAFETY: siginfo_t is plain data; valid sigset and info pointers.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let sig = unsafe { libc::sigwaitinfo(set, &mut info) };
        if sig > 0 {
            return (sig, info.si_code == libc::SI_KERNEL);
        }
    }
}

/// The step process: forwards signals to init and exits like the command.
fn supervise_init(init: i32, set: &libc::sigset_t, mut result: File) -> i32 {
    loop {
        let (sig, from_tty) = wait_signal(set);
        if sig != libc::SIGCHLD {
            if !from_tty {
                // SAFETY: signalling our own child.
                unsafe { libc::kill(init, sig) };
            }
            continue;
        }
        let mut status = 0;
        // SAFETY: reaping our own child.
        let done = unsafe { libc::waitpid(init, &mut status, libc::WNOHANG) };
        if done != init {
            continue;
        }
        let mut raw = [0u8; 4];
        if result.read_exact(&mut raw).is_ok() {
            return exit_like(i32::from_ne_bytes(raw));
        }
        if libc::WIFEXITED(status) {
            return libc::WEXITSTATUS(status);
        }
        return 128 + libc::WTERMSIG(status);
    }
}

/// Exits with the command's code, or dies by the command's signal so our
/// own parent sees the same wait status.
fn exit_like(status: i32) -> i32 {
    if libc::WIFEXITED(status) {
        return libc::WEXITSTATUS(status);
    }
    let sig = libc::WTERMSIG(status);
    // SAFETY: resetting our own signal state before re-raising.
    unsafe {
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        libc::signal(sig, libc::SIG_DFL);
        let set = signal_set(&[sig]);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), sig);
    }
    128 + sig
}

/// The sandbox's setup, planned (no privilege needed).
fn setup_ops(req: &StepRequest) -> Vec<SetupOp> {
    plan(
        &req.spec,
        &StepDirs::under(&req.step_dir),
        &super::etc::resolv_conf(),
    )
}

/// PID 1 of the sandbox. Returns only on setup failure.
fn init_main(
    req: &StepRequest,
    ops: Vec<SetupOp>,
    mut status: File,
    mut result: Option<File>,
    mut early: Option<File>,
    lifeline: Option<OwnedFd>,
    netns: Option<super::netns::Pending>,
) -> i32 {
    // SAFETY: prctl with a NUL-terminated name, or without pointers.
    unsafe {
        // Recognisable in `ps` inside the sandbox, however we were started.
        libc::prctl(libc::PR_SET_NAME, c"corral-init".as_ptr(), 0, 0, 0);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
    }
    if lifeline.as_ref().is_some_and(parent_gone) {
        return 125;
    }
    drop(lifeline);
    // A network namespace still in the making is joined before sysfs,
    // which shows the mounter's.
    let split = match netns {
        Some(_) => ops
            .iter()
            .position(|op| matches!(op, SetupOp::MountSys { .. }))
            .unwrap_or(ops.len()),
        None => ops.len(),
    };
    let (before, after) = ops.split_at(split);
    if let Err(err) = apply(&mut LinuxSys, before) {
        return fail(&mut status, &crate::error_chain(&err));
    }
    if let Some(netns) = netns {
        if let Err(err) = netns.join() {
            let msg = format!("failed to create the network namespace: {err}");
            return fail(&mut status, &msg);
        }
    }
    if let Err(err) = apply(&mut LinuxSys, after) {
        return fail(&mut status, &crate::error_chain(&err));
    }
    let set = signal_set(&{
        let mut all = FORWARDED.to_vec();
        all.push(libc::SIGCHLD);
        all
    });
    let child = match super::command::spawn(&req.spec, &mut status) {
        Ok(pid) => pid,
        Err(err) => return fail(&mut status, &format!("failed to start the command: {err}")),
    };
    drop(status);
    loop {
        let (sig, from_tty) = wait_signal(&set);
        if sig != libc::SIGCHLD {
            if !from_tty {
                // SAFETY: signalling our child.
                unsafe { libc::kill(child, sig) };
            }
            continue;
        }
        loop {
            let mut wstatus = 0;
            // SAFETY: reaping any child, ours or reparented orphans.
            let pid = unsafe { libc::waitpid(-1, &mut wstatus, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child {
                if let Some(early) = early.as_mut() {
                    // Nothing in the sandbox may run once the launcher has
                    // the status: kill(-1) from PID 1 hits all but us.
                    // SAFETY: signalling the processes of our pid namespace.
                    unsafe { libc::kill(-1, libc::SIGKILL) };
                    let _ = early.write_all(&wstatus.to_ne_bytes());
                }
                if let Some(result) = result.as_mut() {
                    let _ = result.write_all(&wstatus.to_ne_bytes());
                }
                if let Some(early) = &early {
                    // Our exit tears the namespaces down: not while the
                    // launcher, just woken by the report, still needs the CPU.
                    await_reader_gone(early);
                }
                return 0;
            }
        }
    }
}

/// Returns once nothing can read `pipe` any more (the launcher closed it or
/// exited; PDEATHSIG covers a launcher that dies first).
fn await_reader_gone(pipe: &File) {
    let mut fds = [libc::pollfd {
        fd: pipe.as_raw_fd(),
        events: 0,
        revents: 0,
    }];
    // SAFETY: one valid pollfd; POLLERR is reported without being asked for.
    while unsafe { libc::poll(fds.as_mut_ptr(), 1, -1) } == 0
        || fds[0].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) == 0
    {}
}

fn parent_gone(lifeline: &OwnedFd) -> bool {
    super::step::readable(lifeline.as_raw_fd())
}
