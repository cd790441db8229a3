//! Contention sweep of `unlocked`'s queues against their peers and the lock
//! baseline, with criterion.
//!
//! One group per scenario (`bounded-64`, `bounded-65536`, `unbounded`); in
//! each, every implementation at 1, 2 and 4 producer/consumer pairs. Thread
//! counts above the core count carry `-oversubscribed` in their id. Threads
//! are spawned once per benchmark and driven with barriers
//! (`support::PairRunner`), so spawn cost stays out of the timings, and every
//! run is verified.
//!
//! `cargo bench --bench queue` runs the sweep in a few minutes;
//! `cargo bench --bench queue -- --test` runs each benchmark once.

use std::time::Duration;

use criterion::{BenchmarkGroup, Criterion, Throughput};

// The report uses parts of the harness that the bench does not.
#[allow(dead_code)]
mod support;

use support::{pairs_label, queues, Job, QueueSpec, Scenario, SCENARIOS};

/// Values each producer pushes per criterion iteration.
const PER_PRODUCER: u64 = 4096;

/// Pair counts of the sweep.
const PAIRS: [usize; 3] = [1, 2, 4];

/// Benchmarks `spec` at `pairs` pairs in `group`.
fn bench_point(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    scenario: &Scenario,
    spec: &QueueSpec,
    pairs: usize,
) {
    let mut runner = (spec.start)(scenario.capacity, pairs);
    group.throughput(Throughput::Elements(pairs as u64 * PER_PRODUCER));
    let id = format!("{}/{}", spec.name, pairs_label(pairs));
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let job = Job {
                per_producer: PER_PRODUCER * iters,
                sample: false,
            };
            runner.run(job).elapsed
        })
    });
}

/// The contention sweep: every scenario, implementation and pair count.
fn contention(c: &mut Criterion) {
    for scenario in &SCENARIOS {
        let mut group = c.benchmark_group(format!("queue/{}", scenario.name));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(2));
        for spec in queues(scenario.kind) {
            for pairs in PAIRS {
                bench_point(&mut group, scenario, &spec, pairs);
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
    contention(&mut c);
    c.final_summary();
}
