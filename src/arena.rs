//! The binary's allocator: a bump arena for the first allocations of the
//! process, then the system allocator.
//!
//! A `corral exec` lives for a few milliseconds and allocates about a
//! hundred KiB, clap's grammar for other commands some hundreds. musl's malloc,
//! in the static build, maps and unmaps memory for such bursts, which cost
//! a tenth of that command's wall time (scripts/bench-exec.sh). From the
//! arena, an allocation is one atomic add and never returns memory to the
//! kernel. Memory freed in the arena is reused only when it was the last
//! block handed out; the rest stays until exit, at most [`ARENA_BYTES`].
//! Longer-lived commands (pulls, pipelines) go on in the system allocator
//! once the arena is used up.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Enough for a `corral exec` from start to the command's exit.
pub const ARENA_BYTES: usize = 1 << 20;

#[repr(C, align(4096))]
struct Bytes<const N: usize>(UnsafeCell<[u8; N]>);

/// A bump arena of `N` bytes in front of [`System`].
pub struct Arena<const N: usize> {
    bytes: Bytes<N>,
    /// Offset of the first free byte.
    next: AtomicUsize,
}

// SAFETY: the bytes are handed out in disjoint ranges, claimed through
// atomic compare-and-swap on `next`.
unsafe impl<const N: usize> Sync for Arena<N> {}

impl<const N: usize> Arena<N> {
    pub const fn new() -> Self {
        Arena {
            bytes: Bytes(UnsafeCell::new([0; N])),
            next: AtomicUsize::new(0),
        }
    }

    fn base(&self) -> usize {
        self.bytes.0.get() as usize
    }

    fn owns(&self, ptr: *mut u8) -> bool {
        let addr = ptr as usize;
        addr >= self.base() && addr < self.base() + N
    }

    /// Claims `size` bytes at `align`, or `None` when the arena is full.
    fn claim(&self, size: usize, align: usize) -> Option<*mut u8> {
        let base = self.base();
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            let start = (base + next).checked_next_multiple_of(align)? - base;
            let end = start.checked_add(size)?;
            if end > N {
                return None;
            }
            match self
                .next
                .compare_exchange_weak(next, end, Ordering::Relaxed, Ordering::Relaxed)
            {
                // SAFETY: start + size <= N: inside the arena.
                Ok(_) => return Some(unsafe { self.bytes.0.get().cast::<u8>().add(start) }),
                Err(now) => next = now,
            }
        }
    }

    /// Moves the end of the arena from `old_end` to `new_end` when the block
    /// ending at `old_end` is the last one handed out.
    fn move_end(&self, old_end: usize, new_end: usize) -> bool {
        new_end <= N
            && self
                .next
                .compare_exchange(old_end, new_end, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    fn offset(&self, ptr: *mut u8) -> usize {
        ptr as usize - self.base()
    }
}

impl<const N: usize> Default for Arena<N> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: blocks from the arena are disjoint, aligned as asked and at
// least as large; everything else is the system allocator's.
unsafe impl<const N: usize> GlobalAlloc for Arena<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.claim(layout.size(), layout.align()) {
            Some(ptr) => ptr,
            // SAFETY: the caller's layout, passed on.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.owns(ptr) {
            let start = self.offset(ptr);
            // Only the last block can be given back; others stay till exit.
            self.move_end(start + layout.size(), start);
        } else {
            // SAFETY: a block of the system allocator, with its layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !self.owns(ptr) {
            // SAFETY: a block of the system allocator, with its layout.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let start = self.offset(ptr);
        let end = start + layout.size();
        if new_size <= layout.size() {
            // The last block gives back its tail; others keep it.
            self.move_end(end, start + new_size);
            return ptr;
        }
        if self.move_end(end, start + new_size) {
            return ptr;
        }
        // SAFETY: the size is nonzero (GlobalAlloc::realloc's contract) and
        // the alignment is the old layout's, which was valid.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as in alloc.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are at least layout.size() bytes and disjoint.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size()) };
            // SAFETY: ptr is ours with this layout.
            unsafe { self.dealloc(ptr, layout) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_in_the_arena() {
        let arena: Box<Arena<4096>> = Box::default();
        let a = unsafe { arena.alloc(layout(3, 1)) };
        let b = unsafe { arena.alloc(layout(8, 8)) };
        let c = unsafe { arena.alloc(layout(64, 64)) };
        for (ptr, align) in [(a, 1), (b, 8), (c, 64)] {
            assert!(arena.owns(ptr));
            assert_eq!(ptr as usize % align, 0);
        }
        assert!(b as usize >= a as usize + 3);
        assert!(c as usize >= b as usize + 8);
    }

    #[test]
    fn a_full_arena_hands_over_to_the_system_allocator() {
        let arena: Box<Arena<4096>> = Box::default();
        let big = unsafe { arena.alloc(layout(4000, 8)) };
        assert!(arena.owns(big));
        let next = unsafe { arena.alloc(layout(200, 8)) };
        assert!(!next.is_null() && !arena.owns(next));
        unsafe {
            next.write_bytes(7, 200);
            arena.dealloc(next, layout(200, 8));
        }
    }

    #[test]
    fn the_last_block_is_given_back_and_grows_in_place() {
        let arena: Box<Arena<4096>> = Box::default();
        let a = unsafe { arena.alloc(layout(16, 8)) };
        let b = unsafe { arena.alloc(layout(16, 8)) };
        unsafe { arena.dealloc(b, layout(16, 8)) };
        assert_eq!(unsafe { arena.alloc(layout(16, 8)) }, b);
        let grown = unsafe { arena.realloc(b, layout(16, 8), 1000) };
        assert_eq!(grown, b);
        // `a` is not last: growing it moves it, keeping its bytes.
        unsafe { a.write_bytes(9, 16) };
        let moved = unsafe { arena.realloc(a, layout(16, 8), 32) };
        assert_ne!(moved, a);
        assert_eq!(unsafe { std::slice::from_raw_parts(moved, 16) }, [9; 16]);
    }

    #[test]
    fn shrinking_the_last_block_gives_back_its_tail() {
        let arena: Box<Arena<4096>> = Box::default();
        let a = unsafe { arena.alloc(layout(256, 8)) };
        unsafe { a.write_bytes(3, 256) };
        assert_eq!(unsafe { arena.realloc(a, layout(256, 8), 16) }, a);
        let b = unsafe { arena.alloc(layout(8, 8)) };
        assert_eq!(b as usize, a as usize + 16);
        assert_eq!(unsafe { std::slice::from_raw_parts(a, 16) }, [3; 16]);
    }

    #[test]
    fn growing_past_the_end_moves_to_the_system_allocator() {
        let arena: Box<Arena<4096>> = Box::default();
        let a = unsafe { arena.alloc(layout(100, 8)) };
        unsafe { a.write_bytes(5, 100) };
        let moved = unsafe { arena.realloc(a, layout(100, 8), 8000) };
        assert!(!arena.owns(moved));
        assert_eq!(unsafe { std::slice::from_raw_parts(moved, 100) }, [5; 100]);
        unsafe { arena.dealloc(moved, layout(8000, 8)) };
    }

    #[test]
    fn threads_get_disjoint_blocks() {
        let arena: &'static Arena<65536> = Box::leak(Box::default());
        let blocks: Vec<Vec<usize>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..200)
                            .map(|_| unsafe { arena.alloc(layout(24, 8)) } as usize)
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut all: Vec<usize> = blocks.into_iter().flatten().collect();
        all.sort_unstable();
        assert!(all.windows(2).all(|w| w[1] - w[0] >= 24));
    }
}
