//! `get` and `contains_key` allocate nothing. A file of its own, with one
//! test: a counting global allocator, and no other test's threads whose
//! garbage a `get`'s epoch pin could end up collecting (crossbeam-epoch
//! runs deferred destructors, which may allocate, in whichever thread
//! pins; in the shared `tests/cache.rs` that made the count flaky).

mod common;

use std::time::Duration;

use common::{cache_with_clock, scaled};
use unlocked::ManualClock;

/// Counts this thread's allocations, to check that `get` allocates nothing.
struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

// SAFETY: forwards to the system allocator; the counter is a const-
// initialised thread-local, which allocates nothing when touched.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn allocations() -> usize {
    ALLOCATIONS.with(|n| n.get())
}

/// `get` and `contains_key` allocate nothing (values are `u64`: a clone
/// allocates nothing either).
#[test]
fn get_allocates_nothing() {
    let clock = ManualClock::new();
    let n = scaled(512, 64) as u64;
    let cache = cache_with_clock(2 * n as usize, &clock);
    for k in 0..n {
        if k % 2 == 0 {
            cache.insert(k, k);
        } else {
            cache.insert_with_ttl(k, k, Duration::from_secs(1));
        }
    }
    let _ = cache.get(&0); // registers this thread with the epoch collector
    let before = allocations();
    let mut hits = 0;
    for k in 0..2 * n {
        hits += usize::from(cache.get(&k).is_some());
        let _ = cache.contains_key(&k);
    }
    // Alone in its test binary: no other thread retires anything, so
    // the epoch's collection steps (every 128 pins) have nothing to run,
    // and not one allocation is allowed.
    let allocated = allocations() - before;
    assert_eq!(allocated, 0, "allocations in {} look-ups", 4 * n);
    assert_eq!(hits, n as usize);
}
