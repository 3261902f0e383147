//! The process's global allocator: mimalloc, with a count of allocations per thread.
//!
//! Why mimalloc: the append path allocates per event and glibc's allocator was ~27 % of
//! its instructions (PERF.md, "Where the time goes"). Why the count: issue #13 asks for
//! allocations per append to be measured, and a number on `/metrics`
//! (`starcite_allocations_total`, summed over the cores at scrape time) lets any load run
//! divide it by `starcite_events_append_total` (scripts/bench-hotpath.sh does).
//!
//! Cost: one thread-local increment per allocation (no atomic, no shared cache line);
//! frees are not counted. Each core reads its own thread's count when it answers a scrape
//! (`runtime::core::Core::stats`), so allocations made by other threads (the archive's
//! Postgres thread, signal handling) are not in the metric.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

thread_local! {
    // Const-initialised and without a destructor: reachable from inside the allocator at
    // any point of a thread's life, including its teardown.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// mimalloc, counting the allocations (and reallocations) each thread makes.
pub struct CountingMimalloc;

#[inline]
fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every call is forwarded unchanged to mimalloc, a correct GlobalAlloc; counting
// touches only a thread-local Cell and never allocates.
unsafe impl GlobalAlloc for CountingMimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        mimalloc::MiMalloc.alloc(layout)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        mimalloc::MiMalloc.alloc_zeroed(layout)
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        mimalloc::MiMalloc.realloc(ptr, layout, new_size)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        mimalloc::MiMalloc.dealloc(ptr, layout)
    }
}

/// Allocations (including reallocations) the calling thread has made since it started.
/// Zero in a process whose global allocator is not [`CountingMimalloc`].
pub fn thread_allocations() -> u64 {
    ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[global_allocator]
    static GLOBAL: super::CountingMimalloc = super::CountingMimalloc;

    #[test]
    fn counts_this_threads_allocations_and_reallocations() {
        let before = super::thread_allocations();
        let mut v: Vec<u64> = std::hint::black_box(Vec::with_capacity(1));
        v.extend([1, 2]); // grows: one realloc
        let boxed = std::hint::black_box(Box::new(7u32));
        let after = super::thread_allocations();
        assert_eq!(after - before, 3, "one allocation, one reallocation, one box");
        drop((v, boxed));
        assert_eq!(super::thread_allocations(), after, "frees are not counted");
        // Another thread's allocations are its own: it allocates while this one only
        // spins on a flag (spawning itself allocates, so it is done before counting).
        let go = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0));
        let flag = go.clone();
        let other = std::thread::spawn(move || {
            while flag.load(std::sync::atomic::Ordering::Acquire) == 0 {}
            let before = super::thread_allocations();
            let boxes: Vec<Box<u64>> = (0..1000).map(|i| std::hint::black_box(Box::new(i))).collect();
            flag.store(2, std::sync::atomic::Ordering::Release);
            (super::thread_allocations() - before, boxes.len())
        });
        let mine = super::thread_allocations();
        go.store(1, std::sync::atomic::Ordering::Release);
        while go.load(std::sync::atomic::Ordering::Acquire) != 2 {}
        assert_eq!(super::thread_allocations(), mine, "the other thread's allocations are not counted here");
        let (theirs, _) = other.join().unwrap();
        assert_eq!(theirs, 1001, "1000 boxes and the vector that holds them");
    }
}
