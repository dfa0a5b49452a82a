//! Default seccomp filter, like Docker's in effect: a deny-list of syscalls
//! that manage the kernel or escape the sandbox; they fail with EPERM. Built
//! as classic BPF by hand to avoid a libseccomp dependency.

use std::io;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
/// Offsets into `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// x86_64 syscalls with this bit come from the x32 ABI, which we refuse.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Syscalls denied by default (Docker denies these without CAP_SYS_ADMIN and
/// friends, which a sandbox never has in the host's namespaces).
pub fn denied_syscalls() -> Vec<libc::c_long> {
    let mut list = vec![
        libc::SYS_acct,
        libc::SYS_add_key,
        libc::SYS_bpf,
        libc::SYS_clock_adjtime,
        libc::SYS_clock_settime,
        libc::SYS_delete_module,
        libc::SYS_finit_module,
        libc::SYS_init_module,
        libc::SYS_kcmp,
        libc::SYS_kexec_file_load,
        libc::SYS_kexec_load,
        libc::SYS_keyctl,
        libc::SYS_lookup_dcookie,
        libc::SYS_mount,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_name_to_handle_at,
        libc::SYS_open_by_handle_at,
        libc::SYS_perf_event_open,
        libc::SYS_pivot_root,
        libc::SYS_quotactl,
        libc::SYS_reboot,
        libc::SYS_request_key,
        libc::SYS_setns,
        libc::SYS_settimeofday,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_umount2,
        libc::SYS_unshare,
        libc::SYS_userfaultfd,
    ];
    #[cfg(target_arch = "x86_64")]
    list.extend([
        libc::SYS_ioperm,
        libc::SYS_iopl,
        libc::SYS_uselib,
        libc::SYS_ustat,
        libc::SYS_sysfs,
        libc::SYS__sysctl,
        libc::SYS_nfsservctl,
    ]);
    list
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Runs of consecutive syscall numbers in `denied`, ascending.
fn runs(denied: &[libc::c_long]) -> Vec<(u32, u32)> {
    let mut numbers: Vec<u32> = denied.iter().map(|nr| *nr as u32).collect();
    numbers.sort_unstable();
    numbers.dedup();
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for nr in numbers {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == nr => *last = nr,
            _ => runs.push((nr, nr)),
        }
    }
    runs
}

/// The BPF program: wrong architecture kills, listed syscalls get EPERM,
/// everything else is allowed. Consecutive numbers are tested as one range:
/// the kernel's cost of installing a filter grows with its length (about
/// 3 us an instruction on the VMs we measure on), and a third of the list
/// comes in runs.
pub fn build(denied: &[libc::c_long]) -> Vec<libc::sock_filter> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let ld = BPF_LD | BPF_W | BPF_ABS;
    let runs = runs(denied);
    let tests: usize = runs
        .iter()
        .map(|(lo, hi)| if lo == hi { 1 } else { 2 })
        .sum();
    let mut prog = vec![
        stmt(ld, DATA_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        stmt(ld, DATA_NR),
    ];
    #[cfg(target_arch = "x86_64")]
    prog.push(jump(
        BPF_JMP | BPF_JGE | BPF_K,
        X32_SYSCALL_BIT,
        (tests + 1) as u8,
        0,
    ));
    // Jump offsets count from the next instruction; ALLOW follows the
    // tests and the EPERM return follows ALLOW.
    let start = prog.len();
    let to_deny = |at: usize| (tests - at) as u8;
    for (lo, hi) in runs {
        let at = prog.len() - start;
        if lo == hi {
            prog.push(jump(BPF_JMP | BPF_JEQ | BPF_K, lo, to_deny(at), 0));
        } else {
            // Below the run: on to the next one; above it: likewise.
            prog.push(jump(BPF_JMP | BPF_JGE | BPF_K, lo, 0, 1));
            prog.push(jump(BPF_JMP | BPF_JGT | BPF_K, hi, 0, to_deny(at + 1)));
        }
    }
    prog.push(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
    prog.push(stmt(
        BPF_RET | BPF_K,
        SECCOMP_RET_ERRNO | libc::EPERM as u32,
    ));
    prog
}

/// Sets `no_new_privs` and installs `prog` on the calling thread.
pub fn install(prog: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with a valid, live sock_fprog.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        ) < 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `prog` on (arch, nr) as the kernel's classic BPF would, for the
    /// instructions `build` uses.
    fn run(prog: &[libc::sock_filter], arch: u32, nr: u32) -> u32 {
        use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let insn = prog[pc];
            let code = u32::from(insn.code);
            pc += 1;
            if code == BPF_LD | BPF_W | BPF_ABS {
                acc = match insn.k {
                    DATA_NR => nr,
                    DATA_ARCH => arch,
                    other => panic!("load at {other}"),
                };
            } else if code == BPF_RET | BPF_K {
                return insn.k;
            } else {
                let taken = match code {
                    c if c == BPF_JMP | BPF_JEQ | BPF_K => acc == insn.k,
                    c if c == BPF_JMP | BPF_JGE | BPF_K => acc >= insn.k,
                    c if c == BPF_JMP | BPF_JGT | BPF_K => acc > insn.k,
                    other => panic!("instruction {other:#x}"),
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
        }
    }

    #[test]
    fn filter_denies_exactly_the_listed_syscalls() {
        let denied = denied_syscalls();
        let prog = build(&denied);
        let eperm = SECCOMP_RET_ERRNO | libc::EPERM as u32;
        for nr in 0..1024u32 {
            let want = if denied.contains(&libc::c_long::from(nr)) {
                eperm
            } else {
                SECCOMP_RET_ALLOW
            };
            assert_eq!(run(&prog, AUDIT_ARCH, nr), want, "syscall {nr}");
        }
        assert_eq!(run(&prog, AUDIT_ARCH ^ 1, 0), SECCOMP_RET_KILL_PROCESS);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(run(&prog, AUDIT_ARCH, X32_SYSCALL_BIT | 1), eperm);
        // Jump offsets are u8. Runs are one range test each: shorter than
        // a test per syscall.
        assert!(prog.len() < 256);
        assert!(prog.len() < denied.len(), "{} instructions", prog.len());
    }

    #[test]
    fn runs_group_consecutive_numbers_in_any_order() {
        assert_eq!(runs(&[7, 3, 4, 5, 9, 10, 4]), vec![(3, 5), (7, 7), (9, 10)]);
        assert_eq!(runs(&[]), vec![]);
    }

    #[test]
    fn denied_syscall_gets_eperm_and_allowed_one_works_in_a_child() {
        let prog = build(&denied_syscalls());
        // SAFETY: the child only makes raw syscalls and _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = unsafe {
                if install(&prog).is_err() {
                    libc::_exit(10);
                }
                let denied = libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0);
                let errno = *libc::__errno_location();
                let unshare = libc::unshare(libc::CLONE_NEWUTS);
                let errno2 = *libc::__errno_location();
                let allowed = libc::syscall(libc::SYS_getppid);
                if denied != -1 || errno != libc::EPERM {
                    11
                } else if unshare != -1 || errno2 != libc::EPERM {
                    12
                } else if allowed <= 0 {
                    13
                } else {
                    0
                }
            };
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status), "child died: {status:#x}");
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }
}
