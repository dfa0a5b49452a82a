//! The command child of init: resource limits, working directory,
//! capabilities, user, seccomp, then `execve` (126/127 when it cannot).

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::init::{fail, last_error, signal_set};
use super::spec::SandboxSpec;
use super::sys::ChildStack;
use super::{caps, rlimits, seccomp};

/// Stack of the command child until it execs (it runs a few frames of our
/// own code and the allocator).
const CHILD_STACK: usize = 256 * 1024;

/// Starts the command child of init, which confines itself and execs
/// ([`exec_command`]), and returns its pid. The child shares init's memory
/// until then, with init suspended (vfork semantics, on a stack of its own):
/// no page tables are copied and neither side takes copy-on-write faults.
/// Init is single-threaded and waits, so the child may allocate: the heap
/// is consistent and nothing else touches it meanwhile.
pub(crate) fn spawn(spec: &SandboxSpec, status: &mut File) -> std::io::Result<libc::pid_t> {
    struct Args<'a> {
        spec: &'a SandboxSpec,
        status: &'a mut File,
    }
    extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `arg` is the `Args` below, alive while the parent is
        // suspended in clone (CLONE_VFORK).
        let args = unsafe { &mut *arg.cast::<Args>() };
        let code = exec_command(args.spec, args.status);
        // SAFETY: leaving the child without unwinding into the parent's frames.
        unsafe { libc::_exit(code) }
    }
    let stack = ChildStack::map(CHILD_STACK)?;
    let mut args = Args { spec, status };
    // SAFETY: the stack is ours and the child leaves through exec or _exit.
    let pid = unsafe {
        libc::clone(
            child,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut args as *mut Args).cast(),
        )
    };
    let err = std::io::Error::last_os_error();
    // SAFETY: the child has exec'd or exited: nothing uses the stack now.
    unsafe { stack.unmap() };
    if pid < 0 {
        return Err(err);
    }
    Ok(pid)
}

/// In the command child: confine, then exec. Returns 126/127 on failure.
pub(crate) fn exec_command(spec: &SandboxSpec, status: &mut File) -> i32 {
    // SAFETY: restoring a clean signal mask for the command, and SIGPIPE,
    // which the Rust runtime ignores and an exec would keep ignored.
    unsafe {
        let empty = signal_set(&[]);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    if let Err(err) = rlimits::apply(&spec.limits) {
        return fail(status, &format!("failed to set resource limits: {err}"));
    }
    let cwd = Path::new(&spec.cwd);
    if let Err(err) = std::env::set_current_dir(cwd) {
        return fail(
            status,
            &format!("failed to enter working directory {}: {err}", spec.cwd),
        );
    }
    if !spec.privileged {
        if let Err(err) = caps::restrict_to(caps::default_mask()) {
            return fail(status, &format!("failed to drop capabilities: {err}"));
        }
    }
    if let Some(user) = &spec.user {
        if let Err(msg) = switch_user(user) {
            return fail(status, &msg);
        }
    }
    let path_var = spec
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str());
    let Some(program) = spec.argv.first() else {
        return fail(
            status,
            "no command given and the image has no entrypoint or cmd",
        );
    };
    let Some(resolved) = resolve(program, path_var.unwrap_or(super::spec::DEFAULT_PATH)) else {
        let _ = writeln!(std::io::stderr(), "corral: {program}: not found in PATH");
        return 127;
    };
    let (Ok(prog_c), Ok(argv), Ok(envp)) = (
        CString::new(resolved.as_os_str().as_bytes()),
        spec.argv
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<Result<Vec<_>, _>>(),
        spec.env
            .iter()
            .map(|(k, v)| CString::new(format!("{k}={v}")))
            .collect::<Result<Vec<_>, _>>(),
    ) else {
        return fail(
            status,
            "command, arguments or environment contain a NUL byte",
        );
    };
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|a| a.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    // Whatever fds corral itself inherited (a caller's `3>file`) must not
    // reach the sandbox: everything above stderr closes at exec.
    // SAFETY: close_range only flags fds close-on-exec.
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if !spec.privileged {
        // Last before exec, so as few of our own syscalls as possible run under it.
        if let Err(err) = seccomp::install(&seccomp::build(&seccomp::denied_syscalls())) {
            return fail(
                status,
                &format!("failed to install the seccomp filter: {err}"),
            );
        }
    } else {
        // SAFETY: prctl without pointers.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    }
    // SAFETY: NUL-terminated arrays of valid C strings.
    unsafe { libc::execve(prog_c.as_ptr(), argv_p.as_ptr(), envp_p.as_ptr()) };
    let err = std::io::Error::last_os_error();
    let (code, why) = match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => (127, "not found"),
        _ => (126, "cannot execute"),
    };
    let _ = writeln!(std::io::stderr(), "corral: {program}: {why} ({err})");
    code
}

fn switch_user(user: &super::spec::User) -> Result<(), String> {
    let (uid, gid, groups) = (user.uid, user.gid, &user.groups);
    // SAFETY: credential syscalls; setgroups reads `groups.len()` gids.
    unsafe {
        // Refused (EPERM) when setgroups is denied in a single-ID map, where
        // no group but 0 could be held anyway; any other failure is real.
        if libc::setgroups(groups.len(), groups.as_ptr()) < 0
            && std::io::Error::last_os_error().raw_os_error() != Some(libc::EPERM)
        {
            return Err(last_error(&format!(
                "failed to set supplementary groups {groups:?}"
            )));
        }
        if libc::setresgid(gid, gid, gid) < 0 {
            return Err(last_error(&format!(
                "failed to switch to gid {gid} (is it mapped in this user namespace?)"
            )));
        }
        if libc::setresuid(uid, uid, uid) < 0 {
            return Err(last_error(&format!(
                "failed to switch to uid {uid} (is it mapped in this user namespace?)"
            )));
        }
    }
    Ok(())
}

/// `execvp`'s lookup, but with the sandbox's `PATH`.
fn resolve(program: &str, path: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    let mut fallback = None;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        if let Ok(meta) = candidate.metadata() {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Some(candidate);
            }
            fallback.get_or_insert(candidate);
        }
    }
    fallback
}
