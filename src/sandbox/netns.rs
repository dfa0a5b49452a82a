//! A sandbox's new network namespace, made beside its rootfs setup.
//!
//! Creating a network namespace is the costliest single step of a sandbox
//! start (the kernel sets up every per-namespace subsystem: half a
//! millisecond and more), and init has mounts to do meanwhile. So init
//! starts a helper process that shares its memory and fd table, makes the
//! namespace with `lo` up, leaves an fd of it in the shared table and
//! exits; init joins it before anything depends on it (sysfs, the command),
//! or makes it itself when the helper has not started by then.
//!
//! The helper runs concurrently with init in the same address space, so it
//! only makes raw system calls through rustix (no allocator, no errno, no
//! thread-locals) on a stack of its own, and reports through atomics and a
//! pipe.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use super::net::loopback_up_raw;
use super::sys::ChildStack;

/// The helper's stack (a few frames of rustix calls).
const STACK: usize = 64 * 1024;

/// Who makes the namespace: whoever claims it first. On a machine with no
/// idle CPU the helper may not have run by the time init needs the
/// namespace; init then makes it itself rather than wait to be woken.
const UNCLAIMED: u8 = 0;
const HELPER: u8 = 1;
const INIT: u8 = 2;

/// What the helper leaves for init: the namespace fd, or the errno.
struct Shared {
    claim: AtomicU8,
    fd: AtomicI32,
    errno: AtomicI32,
    done: RawFd,
}

/// A network namespace being made; [`Pending::join`] moves init into it.
pub(crate) struct Pending {
    shared: &'static Shared,
    done: OwnedFd,
}

/// Starts the helper. Its stack and the shared state stay mapped for the
/// life of init (64 KiB of address space): the helper may still be on its
/// way out when init goes on.
pub(crate) fn start() -> io::Result<Pending> {
    let (done_r, done_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let shared: &'static Shared = Box::leak(Box::new(Shared {
        claim: AtomicU8::new(UNCLAIMED),
        fd: AtomicI32::new(-1),
        errno: AtomicI32::new(0),
        done: done_w.into_raw_fd(),
    }));
    let stack = ChildStack::map(STACK)?;
    // SAFETY: the helper gets its own stack, never unmapped, and `shared`,
    // which is never freed; it shares our memory (CLONE_VM) and fd table
    // (CLONE_FILES) and touches only `shared`.
    let pid = unsafe {
        libc::clone(
            helper,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_FILES | libc::SIGCHLD,
            (shared as *const Shared).cast_mut().cast(),
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Pending {
        shared,
        done: done_r,
    })
}

impl Pending {
    /// Waits for the helper, then moves the calling process into the new
    /// network namespace.
    pub(crate) fn join(self) -> io::Result<()> {
        let claimed = self.shared.claim.compare_exchange(
            UNCLAIMED,
            INIT,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if claimed.is_ok() {
            // SAFETY: the helper leaves on seeing our claim and never writes.
            unsafe { libc::close(self.shared.done) };
            // SAFETY: NEWNET leaves the memory and fds shared with the helper alone.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET)? };
            return Ok(loopback_up_raw()?);
        }
        let mut byte = [0u8; 1];
        let read = rustix::io::read(&self.done, &mut byte);
        // SAFETY: the write end is ours to close once the helper wrote.
        unsafe { libc::close(self.shared.done) };
        if !matches!(read, Ok(1)) {
            return Err(io::Error::other("the network namespace helper died"));
        }
        let errno = self.shared.errno.load(Ordering::Acquire);
        if errno != 0 {
            return Err(io::Error::from_raw_os_error(errno));
        }
        // SAFETY: the helper opened this fd in our shared table and left it to us.
        let fd = unsafe { OwnedFd::from_raw_fd(self.shared.fd.load(Ordering::Acquire)) };
        rustix::thread::move_into_link_name_space(
            fd.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )?;
        Ok(())
    }
}

extern "C" fn helper(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the leaked `Shared` of `start`.
    let shared = unsafe { &*arg.cast::<Shared>() };
    let claimed =
        shared
            .claim
            .compare_exchange(UNCLAIMED, HELPER, Ordering::AcqRel, Ordering::Acquire);
    if claimed.is_err() {
        return 0;
    }
    match make_namespace() {
        Ok(fd) => shared.fd.store(fd.into_raw_fd(), Ordering::Release),
        Err(err) => shared.errno.store(err.raw_os_error(), Ordering::Release),
    }
    // SAFETY: init closes `done` only after reading this byte.
    let done = unsafe { BorrowedFd::borrow_raw(shared.done) };
    let _ = rustix::io::write(done, &[1]);
    0
}

/// In the helper: a new network namespace with `lo` up, as an fd.
fn make_namespace() -> rustix::io::Result<OwnedFd> {
    // SAFETY: NEWNET leaves the shared fd table and memory alone.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET)? };
    loopback_up_raw()?;
    rustix::fs::open(
        c"/proc/thread-self/ns/net",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
}
