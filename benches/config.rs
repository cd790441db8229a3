//! Read cost of the config store against raw arc-swap, `RwLock<Arc<T>>` and
//! the seeds' design (`RwLock<T>` with a deep clone per read), with 1, 2 and
//! 4 readers, with and without a writer committing about 1,000 times a
//! second. Reader counts above the core count carry `-oversubscribed`.
//!
//! `cargo bench --bench config` runs the sweep (a few minutes);
//! `cargo bench --bench config -- --test` runs each benchmark once. The
//! ratios between implementations are printed by the contention report
//! (`cargo run --release --example contention_report`), from one run.

use std::time::Duration;

use criterion::{Criterion, Throughput};

#[allow(dead_code)]
mod support;

#[path = "support/config.rs"]
#[allow(dead_code)]
mod harness;

use harness::{run, Impl};
use support::cpus;

/// Reader counts of the sweep.
const READERS: [usize; 3] = [1, 2, 4];

/// Reads per reader per criterion iteration.
const PER_READER: u64 = 1_000;

/// `4-oversubscribed` when the readers (plus the writer) outnumber the cores.
fn label(readers: usize, writer: bool) -> String {
    if readers + usize::from(writer) > cpus() {
        format!("{readers}-oversubscribed")
    } else {
        readers.to_string()
    }
}

fn sweep(c: &mut Criterion) {
    for writer in [false, true] {
        let name = if writer {
            "config/read-with-writer"
        } else {
            "config/read"
        };
        let mut group = c.benchmark_group(name);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(1));
        for which in Impl::ALL {
            for readers in READERS {
                group.throughput(Throughput::Elements(readers as u64 * PER_READER));
                group.bench_function(format!("{}/{}", which.id(), label(readers, writer)), |b| {
                    b.iter_custom(|iters| run(which, readers, PER_READER * iters, writer).elapsed)
                });
            }
        }
        group.finish();
    }
}

// Written out rather than with `criterion_group!`/`criterion_main!`, whose
// generated `pub fn` carries no docs.
/// Runs the sweep with criterion's command-line settings.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    sweep(&mut c);
    c.final_summary();
}
