//! Work-queue cycles (add, claim, complete, remove) with 1, 2 and 4
//! workers: `unlocked::WorkQueue` against the seeds' `MemoryQueue` design
//! ported to Rust (`Mutex<HashMap + VecDeque>`, the lock baseline) and a
//! `crossbeam-channel` pipeline (jobs handed over with no ids or statuses:
//! a lower bound, not a work queue). Worker counts above the core count
//! carry `-oversubscribed` in their id. See `work_support/mod.rs`.
//!
//! `cargo bench --bench work_queue` runs the sweep in about a minute;
//! `cargo bench --bench work_queue -- --test` runs each benchmark once.

use std::time::Duration;

use criterion::{Criterion, Throughput};

// The report uses parts of the harness that the bench does not.
#[allow(dead_code)]
mod work_support;

use work_support::{work_specs, workers_label};

/// Cycles each worker runs per criterion iteration.
const CYCLES: u64 = 1024;

/// Worker counts of the sweep.
const WORKERS: [usize; 3] = [1, 2, 4];

/// The sweep: every implementation at every worker count.
fn cycles(c: &mut Criterion) {
    let mut group = c.benchmark_group("work/cycle");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for spec in work_specs() {
        for workers in WORKERS {
            let mut runner = (spec.start)(workers);
            group.throughput(Throughput::Elements(workers as u64 * CYCLES));
            group.bench_function(format!("{}/{}", spec.name, workers_label(workers)), |b| {
                b.iter_custom(|iters| runner.run(CYCLES * iters))
            });
        }
    }
    group.finish();
}

// Written out rather than with `criterion_group!`/`criterion_main!`, whose
// generated `pub fn` carries no docs (the crate denies missing docs in CI).
/// Runs the sweep with criterion's command-line settings.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    cycles(&mut c);
    c.final_summary();
}
