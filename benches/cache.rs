//! Cache throughput against its peers, the no-eviction ceiling and the lock
//! baseline, with criterion.
//!
//! One group per mix (`read-100`, `read-90-insert-10`, `read-50-insert-50`);
//! in each, every cache of `cache_support::caches()` (unlocked, quick_cache,
//! moka, mini-moka, dashmap and flurry with no eviction, and the seeds' `TTLCache`
//! ported to Rust as `Mutex<LruCache>` with TTL) at 1, 2, 4 and 8 threads.
//! Thread counts above the core count carry `-oversubscribed` in their id.
//! Keys are Zipf (s = 1.0) over 65,536 keys, from seeded generators; the
//! cache holds 16,384 entries and starts filled with the most popular keys.
//! Threads are spawned once per benchmark and released by barriers.
//!
//! `cargo bench --bench cache` runs the sweep; `cargo bench --bench cache --
//! --test` runs each benchmark once.

use std::time::Duration;

use criterion::{Criterion, Throughput};

// The report uses parts of the harness that the bench does not.
#[allow(dead_code)]
mod cache_support;

use cache_support::{caches, oversubscribed, MIXES};

/// Requests each thread makes per criterion iteration: enough (about a
/// millisecond for the fast caches) that the two barrier hand-offs of a run
/// (tens of microseconds on a loaded VM) stay a small part of it; with
/// 16,384 they capped the fastest caches at about half their rate.
const OPS_PER_THREAD: usize = 1 << 16;

/// Thread counts of the sweep.
const THREADS: [usize; 4] = [1, 2, 4, 8];

/// Every mix, cache and thread count.
fn bench(c: &mut Criterion) {
    for mix in MIXES {
        let mut group = c.benchmark_group(format!("cache/{}", mix.name));
        group.warm_up_time(Duration::from_millis(300));
        group.measurement_time(Duration::from_secs(1));
        group.sample_size(10);
        for spec in caches() {
            for threads in THREADS {
                let mut runner = (spec.start)(mix, threads);
                group.throughput(Throughput::Elements((threads * OPS_PER_THREAD) as u64));
                let suffix = if oversubscribed(threads) {
                    "-oversubscribed"
                } else {
                    ""
                };
                let id = format!("{}/{threads}-threads{suffix}", spec.name);
                group.bench_function(id, |b| {
                    b.iter_custom(|iters| (0..iters).map(|_| runner.run(OPS_PER_THREAD)).sum());
                });
            }
        }
        group.finish();
    }
}

// Written out rather than with `criterion_group!`/`criterion_main!`, whose
// generated `pub fn` carries no docs (the crate denies missing docs in CI).
/// Runs the sweep with criterion's command-line settings.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
