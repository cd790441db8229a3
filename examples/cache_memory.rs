//! Memory overhead per entry of `unlocked::Cache` next to quick_cache, moka,
//! mini-moka, an LRU and dashmap: bytes allocated per resident entry beyond
//! the key and the value (`u64` each), counted by a global allocator.
//!
//! ```text
//! cargo run --release --example cache_memory
//! ```
//!
//! Each cache of capacity 100,000 is filled with 100,000 keys, then with
//! 100,000 more (so that eviction and any ghost history reach their steady
//! state). Memory retired through crossbeam-epoch is then collected, and
//! the live bytes at the end, less those before the cache was built, are
//! divided by the resident entries: everything the cache holds counts,
//! including its tables (which grow with the entries) and ghost history.

use std::alloc::{GlobalAlloc, Layout, System};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

use mini_moka::sync::ConcurrentCacheExt;

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Relaxed);
        // SAFETY: the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Relaxed);
        // SAFETY: the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Relaxed);
        // SAFETY: the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Entries resident in every cache.
const N: usize = 100_000;

/// Bytes of a key and a value.
const PAYLOAD: f64 = 16.0;

/// Live bytes per resident entry beyond the payload, for a cache built by
/// `make`, filled by `insert` and sized by `len`.
fn measure<C>(
    make: impl Fn() -> C,
    insert: impl Fn(&C, u64),
    len: impl Fn(&C) -> usize,
) -> (f64, usize) {
    let before = LIVE.load(Relaxed);
    let cache = make();
    for k in 0..2 * N as u64 {
        insert(&cache, k);
    }
    // Retired tables and entries wait for the epoch: let it run them.
    for _ in 0..256 {
        crossbeam_epoch::pin().flush();
    }
    let full = LIVE.load(Relaxed);
    let n = len(&cache);
    let per = (full - before) as f64 / n.max(1) as f64 - PAYLOAD;
    drop(cache);
    (per, n)
}

fn main() {
    if let Some(arg) = std::env::args().nth(1) {
        let usage = "usage: cache_memory (no arguments): bytes per entry of each cache";
        if arg == "-h" || arg == "--help" {
            println!("{usage}");
            return;
        }
        eprintln!("unknown argument {arg:?}\n{usage}");
        std::process::exit(2);
    }
    let rows: Vec<(&str, (f64, usize))> = vec![
        (
            "unlocked",
            measure(
                || unlocked::Cache::new(N),
                |c, k| c.insert(k, k),
                |c| c.len(),
            ),
        ),
        (
            "quick_cache",
            measure(
                || quick_cache::sync::Cache::new(N),
                |c, k| c.insert(k, k),
                |c| c.len(),
            ),
        ),
        (
            "moka",
            measure(
                || moka::sync::Cache::new(N as u64),
                |c, k| {
                    c.insert(k, k);
                    if k % 1024 == 0 {
                        c.run_pending_tasks();
                    }
                },
                |c| {
                    c.run_pending_tasks();
                    c.entry_count() as usize
                },
            ),
        ),
        (
            "mini-moka",
            measure(
                || mini_moka::sync::Cache::new(N as u64),
                |c, k| c.insert(k, k),
                |c| {
                    c.sync();
                    c.entry_count() as usize
                },
            ),
        ),
        (
            "lru (unsynchronised)",
            measure(
                || std::sync::Mutex::new(lru::LruCache::new(NonZeroUsize::new(N).unwrap())),
                |c, k| {
                    c.lock().unwrap().put(k, k);
                },
                |c| c.lock().unwrap().len(),
            ),
        ),
        (
            "dashmap (no eviction)",
            measure(
                dashmap::DashMap::<u64, u64>::new,
                |c, k| {
                    if (k as usize) < N {
                        c.insert(k, k);
                    }
                },
                |c| c.len(),
            ),
        ),
    ];
    println!("| cache | resident entries | bytes per entry beyond key and value |");
    println!("|---|---:|---:|");
    for (name, (per, n)) in rows {
        println!("| {name} | {n} | {per:.1} |");
    }
}
