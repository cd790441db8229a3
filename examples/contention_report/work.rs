//! Work-queue section: add/claim/complete/remove cycles against workers,
//! `unlocked::WorkQueue` beside the seeds' `MemoryQueue` design ported to
//! Rust (the lock baseline), the same lock design with `WorkQueue`'s
//! semantics (the tests' reference: leases, attempts, stale-claim checks)
//! and a `crossbeam-channel` pipeline (a lower bound that tracks nothing). The harness is `benches/work_support/`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

#[path = "../../benches/work_support/mod.rs"]
mod work_support;

use work_support::{cpus, work_specs, Role, Runner, WorkSpec, BACKLOG};

use crate::{calibrate, interleaved, median_row, ratio_row, Config, Plot, Section, Stats};

/// Worker counts of the sweep (`--threads` overrides them).
fn workers() -> &'static [usize] {
    crate::sweep(&[1, 2, 4, 8])
}

/// Cycles per worker in every `--quick` run.
const QUICK_CYCLES: u64 = 500;

/// Target duration of one measured run (shorter than the queue sections':
/// the section should take a few seconds).
const RUN_TARGET: Duration = Duration::from_millis(50);

/// One implementation's statistics at every worker count.
struct Row {
    spec: WorkSpec,
    points: Vec<Stats>,
}

/// Cycles per second against workers, with ratios to the lock baseline.
pub(crate) fn work_section(cfg: &Config) -> Section {
    let started = Instant::now();
    let specs = work_specs();
    let mut points: Vec<Vec<Stats>> = specs.iter().map(|_| Vec::new()).collect();
    for &w in workers() {
        for (column, stats) in points.iter_mut().zip(measure(cfg, &specs, w)) {
            column.push(stats);
        }
    }
    let rows: Vec<Row> = specs
        .into_iter()
        .zip(points)
        .map(|(spec, points)| Row { spec, points })
        .collect();
    let mut md = String::from("## Work queue: add, claim, complete, remove\n\n");
    let _ = writeln!(
        md,
        "Each worker runs cycles of `add` a job, `claim` the oldest pending one, `complete` it and \
         `remove` it, over a backlog of {BACKLOG} pending jobs; every run is verified. Cells: \
         millions of cycles per second (median of {} runs). `crossbeam-channel` only hands jobs \
         over (no ids, statuses, leases or removal): it is a lower bound on the cost of a \
         hand-off, not a work queue.\n",
        cfg.runs()
    );
    md.push_str(&header("implementation"));
    for r in &rows {
        md.push_str(&median_row(&name(&r.spec), &r.points));
    }
    md.push_str("\nRatios (higher is better for `unlocked`):\n\n");
    md.push_str(&ratios(&rows));
    let _ = writeln!(md, "\n![work queue](work-queue.svg)\n");
    let _ = writeln!(
        md,
        "_Section measured in {:.1} s._",
        started.elapsed().as_secs_f64()
    );
    Section {
        markdown: md,
        plots: vec![plot(&rows)],
    }
}

/// One point for every implementation: a calibration/warm-up run of each,
/// then the measured runs, interleaved (see [`interleaved`]).
fn measure(cfg: &Config, specs: &[WorkSpec], workers: usize) -> Vec<Stats> {
    let mut set: Vec<(Box<dyn Runner>, u64)> = specs
        .iter()
        .map(|spec| {
            let mut runner = (spec.start)(workers);
            let cycles = cycles_per_worker(cfg, runner.as_mut());
            (runner, cycles)
        })
        .collect();
    let all = interleaved(&mut set, cfg.runs(), |(runner, cycles)| {
        let took = runner.run(*cycles);
        (*cycles * workers as u64) as f64 / took.as_secs_f64().max(1e-9) / 1e6
    });
    for (spec, stats) in specs.iter().zip(&all) {
        eprintln!(
            "work           {:<24} {:<24} {:8.2} Mcycles/s (min {:.2}, max {:.2})",
            spec.name,
            work_support::workers_label(workers),
            stats.median,
            stats.min,
            stats.max
        );
    }
    all
}

/// Cycles per worker for a run of about [`RUN_TARGET`] (fixed when quick).
fn cycles_per_worker(cfg: &Config, runner: &mut dyn Runner) -> u64 {
    if cfg.quick {
        runner.run(QUICK_CYCLES);
        return QUICK_CYCLES;
    }
    calibrate(RUN_TARGET, (1024, 1 << 24), (256, 1 << 26), |n| {
        runner.run(n)
    })
}

fn header(first: &str) -> String {
    let cols: Vec<String> = workers()
        .iter()
        .map(|&w| {
            let noun = if w == 1 { "worker" } else { "workers" };
            if w > cpus() {
                format!("{w} {noun} (oversubscribed)")
            } else {
                format!("{w} {noun}")
            }
        })
        .collect();
    let seps = vec!["---:"; workers().len()].join(" | ");
    format!("| {first} | {} |\n|---| {seps} |\n", cols.join(" | "))
}

fn name(spec: &WorkSpec) -> String {
    match spec.role {
        Role::LockBaseline if spec.name.contains("same semantics") => {
            format!("`{}` (lock baseline with leases and attempts)", spec.name)
        }
        Role::LockBaseline => format!("`{}` (seeds' design, lock baseline)", spec.name),
        Role::Peer => format!("`{}` (hand-off only)", spec.name),
        Role::Subject => format!("`{}`", spec.name),
    }
}

fn ratios(rows: &[Row]) -> String {
    let Some(subject) = rows.iter().find(|r| r.spec.role == Role::Subject) else {
        return String::new();
    };
    let mut md = header("ratio");
    for row in rows.iter().filter(|r| r.spec.role != Role::Subject) {
        md.push_str(&ratio_row(&name(&row.spec), &subject.points, &row.points));
    }
    md
}

fn plot(rows: &[Row]) -> Plot {
    Plot {
        file: "work-queue.svg".into(),
        title: format!("work queue: cycles/s vs workers ({} CPUs)", cpus()),
        x_desc: format!("workers (> {} oversubscribed)", cpus()),
        y_desc: "Mcycles/s (median)".into(),
        series: rows
            .iter()
            .map(|r| {
                let pts = workers()
                    .iter()
                    .zip(&r.points)
                    .map(|(&w, s)| (w as f64, s.median))
                    .collect();
                (r.spec.name.to_string(), pts)
            })
            .collect(),
    }
}
