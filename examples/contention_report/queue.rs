//! Queue sections: throughput against producer/consumer pairs, and latency.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::support::{
    cpus, oversubscribed, pairs_label, queues, Job, QueueSpec, Role, Runner, Scenario, SCENARIOS,
};
use crate::{
    calibrate, interleaved, median_row, ratio_row, Config, Plot, Section, Stats, RUN_TARGET,
};

/// Values per producer in every `--quick` run.
pub(crate) const QUICK_PER_PRODUCER: u64 = 2_000;

/// Pair counts of the sweep (`--threads` overrides them).
fn pairs() -> &'static [usize] {
    crate::sweep(&[1, 2, 4, 8])
}

/// Pair count of the latency section.
const LATENCY_PAIRS: usize = 2;

/// Scenarios of the latency section.
const LATENCY_SCENARIOS: [&str; 2] = ["bounded-64", "unbounded"];

// ---------------------------------------------------------------------------
// Throughput section
// ---------------------------------------------------------------------------

/// One implementation's statistics at every pair count of a scenario.
#[derive(Debug)]
struct Row {
    /// The implementation.
    spec: QueueSpec,
    /// One entry per pair count of [`pairs`].
    points: Vec<Stats>,
}

/// Throughput against pairs for every scenario.
pub(crate) fn throughput_section(cfg: &Config) -> Section {
    let mut s = Section {
        markdown: format!(
            "## Queue throughput under contention\n\n{}\n",
            crate::queue_method_notes(cfg)
        ),
        plots: Vec::new(),
    };
    for scenario in &SCENARIOS {
        let specs = queues(scenario.kind);
        let mut points: Vec<Vec<Stats>> = specs.iter().map(|_| Vec::new()).collect();
        for &p in pairs() {
            let at_p = measure_point(cfg, scenario, &specs, p);
            for (column, stats) in points.iter_mut().zip(at_p) {
                column.push(stats);
            }
        }
        let rows: Vec<Row> = specs
            .into_iter()
            .zip(points)
            .map(|(spec, points)| Row { spec, points })
            .collect();
        s.markdown
            .push_str(&scenario_markdown(cfg, scenario, &rows));
        s.plots.push(scenario_plot(scenario, &rows));
    }
    s
}

/// Runs one point for every implementation: a calibration/warm-up run of
/// each, then the measured runs, interleaved (see [`interleaved`]).
fn measure_point(
    cfg: &Config,
    scenario: &Scenario,
    specs: &[QueueSpec],
    pairs: usize,
) -> Vec<Stats> {
    let mut set: Vec<(Box<dyn Runner>, Job)> = specs
        .iter()
        .map(|spec| {
            assert_eq!(
                spec.kind, scenario.kind,
                "{} in {}",
                spec.name, scenario.name
            );
            let mut runner = (spec.start)(scenario.capacity, pairs);
            let per_producer = values_per_producer(cfg, runner.as_mut(), RUN_TARGET);
            let job = Job {
                per_producer,
                sample: false,
            };
            (runner, job)
        })
        .collect();
    let all = interleaved(&mut set, cfg.runs(), |(runner, job)| {
        runner.run(*job).mops()
    });
    for (spec, stats) in specs.iter().zip(&all) {
        eprintln!(
            "{:<14} {:<16} {:<24} {:8.2} Mops/s (min {:.2}, max {:.2})",
            scenario.name,
            spec.name,
            pairs_label(pairs),
            stats.median,
            stats.min,
            stats.max
        );
    }
    all
}

/// Values per producer for a run of about `target` (fixed when quick); the
/// calibration runs double as warm-up.
fn values_per_producer(cfg: &Config, runner: &mut dyn Runner, target: Duration) -> u64 {
    if cfg.quick {
        return QUICK_PER_PRODUCER;
    }
    calibrate(target, (4096, 1 << 26), (1024, 1 << 30), |n| {
        runner
            .run(Job {
                per_producer: n,
                sample: false,
            })
            .elapsed
    })
}

/// Column header for `pairs`, flagged when oversubscribed.
fn pairs_header(pairs: usize) -> String {
    let noun = if pairs == 1 { "pair" } else { "pairs" };
    if oversubscribed(pairs) {
        format!("{pairs} {noun} (oversubscribed)")
    } else {
        format!("{pairs} {noun}")
    }
}

/// A markdown table header row and separator for `first` then every pair
/// count.
fn table_header(first: &str) -> String {
    let cols: Vec<String> = pairs().iter().map(|&p| pairs_header(p)).collect();
    let seps = vec!["---:"; pairs().len()].join(" | ");
    format!("| {first} | {} |\n|---| {seps} |\n", cols.join(" | "))
}

/// The implementation's name for tables, the baseline flagged.
fn display_name(spec: &QueueSpec) -> String {
    match spec.role {
        Role::LockBaseline => format!("`{}` (lock baseline)", spec.name),
        _ => format!("`{}`", spec.name),
    }
}

/// Throughput table, ratio table and plot link of one scenario.
fn scenario_markdown(cfg: &Config, scenario: &Scenario, rows: &[Row]) -> String {
    let mut md = format!(
        "### {}\n\nThroughput, Mops/s (median of the runs):\n\n",
        scenario_title(scenario)
    );
    md.push_str(&table_header("implementation"));
    for row in rows {
        md.push_str(&median_row(&display_name(&row.spec), &row.points));
    }
    md.push_str("\nRatios (higher is better for `unlocked`):\n\n");
    md.push_str(&ratio_table(rows));
    if cfg.runs() > 1 {
        md.push_str(&spread_note(rows));
    }
    let _ = writeln!(md, "\n![{0}](queue-{0}.svg)\n", scenario.name);
    md
}

/// `bounded-64 (capacity 64)` or `unbounded`.
fn scenario_title(scenario: &Scenario) -> String {
    match scenario.kind {
        crate::support::Kind::Bounded => {
            format!("{} (capacity {})", scenario.name, scenario.capacity)
        }
        crate::support::Kind::Unbounded => scenario.name.to_string(),
    }
}

/// `unlocked / peer` at every pair count, for every peer and the baseline.
fn ratio_table(rows: &[Row]) -> String {
    let Some(subject) = rows.iter().find(|r| r.spec.role == Role::Subject) else {
        return String::new();
    };
    let mut md = table_header("ratio");
    for row in rows.iter().filter(|r| r.spec.role != Role::Subject) {
        md.push_str(&ratio_row(
            &display_name(&row.spec),
            &subject.points,
            &row.points,
        ));
    }
    md
}

/// The largest run-to-run spread of the table, and where.
fn spread_note(rows: &[Row]) -> String {
    let worst = rows
        .iter()
        .flat_map(|r| {
            r.points
                .iter()
                .zip(pairs().iter().copied())
                .map(move |(s, p)| (s.spread(), r.spec.name, p))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match worst {
        Some((spread, name, pairs)) => format!(
            "\nLargest run-to-run spread (max − min) / median: {:.0}% (`{name}`, {}).\n",
            spread * 100.0,
            pairs_header(pairs)
        ),
        None => String::new(),
    }
}

/// Throughput against pairs, one line per implementation.
fn scenario_plot(scenario: &Scenario, rows: &[Row]) -> Plot {
    let series = rows
        .iter()
        .map(|r| {
            let pts = pairs()
                .iter()
                .zip(&r.points)
                .map(|(&p, s)| (p as f64, s.median))
                .collect();
            (r.spec.name.to_string(), pts)
        })
        .collect();
    Plot {
        file: format!("queue-{}.svg", scenario.name),
        title: format!(
            "{}: throughput vs pairs ({} CPUs)",
            scenario_title(scenario),
            cpus()
        ),
        x_desc: format!("producer/consumer pairs (> {} oversubscribed)", cpus() / 2),
        y_desc: "Mops/s (median)".into(),
        series,
    }
}

// ---------------------------------------------------------------------------
// Latency section
// ---------------------------------------------------------------------------

/// Per-operation push and pop latency percentiles at [`LATENCY_PAIRS`] pairs.
pub(crate) fn latency_section(cfg: &Config) -> Section {
    let mut md = String::from("## Per-operation latency\n\n");
    let _ = writeln!(
        md,
        "{LATENCY_PAIRS} pairs{}; one operation in {} timed with `Instant` (the successful attempt only, \
         not the waits on a full or empty queue); nanoseconds, including about {} ns of timer overhead.\n",
        if oversubscribed(LATENCY_PAIRS) { " (oversubscribed)" } else { "" },
        crate::support::SAMPLE_EVERY,
        timer_overhead_ns()
    );
    for scenario in SCENARIOS
        .iter()
        .filter(|s| LATENCY_SCENARIOS.contains(&s.name))
    {
        let _ = writeln!(md, "### {}\n", scenario_title(scenario));
        md.push_str(
            "| implementation | samples | push p50 | push p99 | push p99.9 | pop p50 | pop p99 | pop p99.9 |\n\
             |---| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for spec in queues(scenario.kind) {
            md.push_str(&latency_row(cfg, scenario, &spec));
        }
        md.push('\n');
    }
    Section {
        markdown: md,
        plots: Vec::new(),
    }
}

/// One implementation's latency row: a warm-up run, then a sampled run.
fn latency_row(cfg: &Config, scenario: &Scenario, spec: &QueueSpec) -> String {
    let mut runner = (spec.start)(scenario.capacity, LATENCY_PAIRS);
    let per_producer = values_per_producer(cfg, runner.as_mut(), RUN_TARGET);
    let mut r = runner.run(Job {
        per_producer,
        sample: true,
    });
    r.push_ns.sort_unstable();
    r.pop_ns.sort_unstable();
    let p = |v: &[u64], q: f64| percentile(v, q).map_or("-".into(), |x| x.to_string());
    eprintln!("{:<14} {:<16} latency sampled", scenario.name, spec.name);
    format!(
        "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
        display_name(spec),
        r.push_ns.len().min(r.pop_ns.len()),
        p(&r.push_ns, 0.50),
        p(&r.push_ns, 0.99),
        p(&r.push_ns, 0.999),
        p(&r.pop_ns, 0.50),
        p(&r.pop_ns, 0.99),
        p(&r.pop_ns, 0.999),
    )
}

/// Nearest-rank percentile `q` of sorted `v`.
fn percentile(v: &[u64], q: f64) -> Option<u64> {
    let rank = ((q * v.len() as f64).ceil() as usize).max(1);
    v.get(rank - 1).copied()
}

/// Median cost of timing an empty region with `Instant`, in ns.
fn timer_overhead_ns() -> u64 {
    let mut v: Vec<u64> = (0..10_000)
        .map(|_| Instant::now().elapsed().as_nanos() as u64)
        .collect();
    v.sort_unstable();
    v[v.len() / 2]
}
