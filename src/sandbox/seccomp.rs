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

/// Runs per leaf of the search tree: tested one after the other.
const LEAF_RUNS: usize = 2;

/// Instructions that test `runs` (see [`emit_tree`]).
fn tree_len(runs: &[(u32, u32)]) -> usize {
    if runs.len() <= LEAF_RUNS {
        let tests: usize = runs
            .iter()
            .map(|(lo, hi)| if lo == hi { 1 } else { 2 })
            .sum();
        return tests + 1;
    }
    let (left, right) = runs.split_at(runs.len() / 2);
    1 + tree_len(left) + tree_len(right)
}

/// Appends a binary search over `runs` for the number in the accumulator:
/// a match jumps to `deny`, anything else to `allow` (absolute indices
/// past the tree). Jump offsets count from the next instruction.
fn emit_tree(prog: &mut Vec<libc::sock_filter>, runs: &[(u32, u32)], allow: usize, deny: usize) {
    use libc::{BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_K};
    let offset = |prog: &Vec<libc::sock_filter>, to: usize| to - prog.len() - 1;
    if runs.len() <= LEAF_RUNS {
        for &(lo, hi) in runs {
            if lo == hi {
                let to_deny = offset(prog, deny) as u8;
                prog.push(jump(BPF_JMP | BPF_JEQ | BPF_K, lo, to_deny, 0));
            } else {
                // Below the run: on to the next test; above it: likewise.
                prog.push(jump(BPF_JMP | BPF_JGE | BPF_K, lo, 0, 1));
                let to_deny = offset(prog, deny) as u8;
                prog.push(jump(BPF_JMP | BPF_JGT | BPF_K, hi, 0, to_deny));
            }
        }
        let to_allow = offset(prog, allow) as u32;
        prog.push(stmt(BPF_JMP | BPF_JA, to_allow));
        return;
    }
    let (left, right) = runs.split_at(runs.len() / 2);
    // At or above the right half's first number: skip the left half.
    prog.push(jump(
        BPF_JMP | BPF_JGE | BPF_K,
        right[0].0,
        tree_len(left) as u8,
        0,
    ));
    emit_tree(prog, left, allow, deny);
    emit_tree(prog, right, allow, deny);
}

/// The BPF program: wrong architecture kills, listed syscalls get EPERM,
/// everything else is allowed. The listed numbers are found by a binary
/// search over runs of consecutive numbers: installing a filter, the kernel
/// runs it for every syscall number to cache which are always allowed,
/// so its cost grows with the path each number takes (a linear list of
/// 30 runs took about 30 us more to install than this tree, on the VMs we
/// measure on), and every syscall of the command runs it again.
pub fn build(denied: &[libc::c_long]) -> Vec<libc::sock_filter> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let ld = BPF_LD | BPF_W | BPF_ABS;
    let runs = runs(denied);
    let mut prog = vec![
        stmt(ld, DATA_ARCH),
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        stmt(ld, DATA_NR),
    ];
    let tree = tree_len(&runs);
    // Conditional jumps reach at most the program's end in 8 bits: a
    // longer list would make a filter that allows what it should deny.
    assert!(prog.len() + tree + 3 <= 256, "seccomp deny-list too long");
    #[cfg(target_arch = "x86_64")]
    prog.push(jump(
        BPF_JMP | BPF_JGE | BPF_K,
        X32_SYSCALL_BIT,
        (tree + 1) as u8,
        0,
    ));
    // ALLOW follows the tree and the EPERM return follows ALLOW.
    let allow = prog.len() + tree;
    emit_tree(&mut prog, &runs, allow, allow + 1);
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
        run_counting(prog, arch, nr).0
    }

    /// [`run`], with the number of instructions it took.
    fn run_counting(prog: &[libc::sock_filter], arch: u32, nr: u32) -> (u32, usize) {
        use libc::{
            BPF_ABS, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W,
        };
        let (mut pc, mut acc, mut steps) = (0usize, 0u32, 0usize);
        loop {
            steps += 1;
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
                return (insn.k, steps);
            } else if code == BPF_JMP | BPF_JA {
                pc += insn.k as usize;
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
        // Jump offsets are u8.
        assert!(prog.len() < 256);
        // A search, not a walk down the list: the kernel runs the filter
        // for every syscall number when it is installed.
        let longest = (0..1024u32)
            .map(|nr| run_counting(&prog, AUDIT_ARCH, nr).1)
            .max()
            .unwrap();
        assert!(longest <= 14, "{longest} instructions for some syscall");
    }

    #[test]
    fn the_search_finds_every_run_of_any_list() {
        // Lists of 0 to 19 runs of 1 to 4 numbers, from a fixed seed.
        let mut seed = 0x2545_f491_u32;
        let mut next = |bound: u32| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed % bound
        };
        for _ in 0..200 {
            let mut denied = Vec::new();
            let mut nr = next(8);
            for _ in 0..next(20) {
                for _ in 0..=next(3) {
                    denied.push(libc::c_long::from(nr));
                    nr += 1;
                }
                nr += 1 + next(9);
            }
            let prog = build(&denied);
            for nr in 0..nr + 4 {
                let want = if denied.contains(&libc::c_long::from(nr)) {
                    SECCOMP_RET_ERRNO | libc::EPERM as u32
                } else {
                    SECCOMP_RET_ALLOW
                };
                assert_eq!(run(&prog, AUDIT_ARCH, nr), want, "{nr} in {denied:?}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "too long")]
    fn a_list_beyond_8_bit_jumps_is_refused() {
        let apart: Vec<libc::c_long> = (0..600).step_by(2).collect();
        build(&apart);
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
