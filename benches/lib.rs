//! Benchmark support: a counting global allocator, for the benches that
//! report heap allocations per operation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts every allocation, then defers to the system allocator. A bench
/// installs it with
/// `#[global_allocator] static GLOBAL: Counting = Counting;`.
pub struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees carry over; the counter has no
// effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Heap allocations per call of `op`, averaged over `n` calls (after one
/// warm-up call, for lazy statics and buffer growth). Meaningful only with
/// [`Counting`] installed as the global allocator.
pub fn allocations_per_op(n: u64, mut op: impl FnMut()) -> f64 {
    op();
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..n {
        op();
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / n as f64
}
