//! Cache sections: hit ratio per trace and synthetic workload, and
//! throughput against threads per read/insert mix.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::cache_support::{
    caches, cpus, hit_ratio_table, oversubscribed, threads_label, workloads, CacheSpec, HitCache,
    Mix, Role, Runner, MIXES, THROUGHPUT_CAPACITY, THROUGHPUT_KEYS, THROUGHPUT_ZIPF,
};
use crate::{calibrate, interleaved, median_row, ratio_row, Config, Plot, Section, Stats};

/// Requests per thread in every `--quick` throughput run.
const QUICK_OPS: usize = 2_000;

/// Target duration of one measured throughput run in a full report (shorter
/// than the queue sections': 72 points must fit in well under a minute).
const RUN_TARGET: Duration = Duration::from_millis(100);

/// Measured throughput runs per point in a full report, at most.
const MAX_RUNS: usize = 3;

/// Thread counts of the sweep (`--threads` overrides them).
fn threads() -> &'static [usize] {
    crate::sweep(&[1, 2, 4, 8])
}

// ---------------------------------------------------------------------------
// Hit ratio
// ---------------------------------------------------------------------------

/// Hit ratio of `unlocked::Cache` next to moka, quick_cache and an LRU on the
/// ARC traces and synthetic workloads, all from this run.
pub(crate) fn cache_hit_ratio_section(cfg: &Config) -> Section {
    let started = Instant::now();
    let mut s = Section {
        markdown: String::from("## Cache hit ratio\n\n"),
        plots: Vec::new(),
    };
    let _ = writeln!(
        s.markdown,
        "Each cache replays the key stream single-threaded: a `get` per \
         request, an `insert` on a miss. `unlocked` is `unlocked::Cache` with \
         its default shard count (sharding included); moka is `sync::Cache` with \
         `run_pending_tasks` after every insert (so its policy is fully \
         applied); quick_cache is `sync::Cache`; LRU is the `lru` crate. Cells \
         are hit ratios in percent; the last column is `unlocked` minus the \
         better of moka and quick_cache, in points.{}\n\n\
         Traces: N. Megiddo and D. S. Modha, \"ARC: A Self-Tuning, Low Overhead \
         Replacement Cache\", USENIX FAST 2003 (`benches/traces/`).\n",
        if cfg.quick {
            " **Quick mode: prefixes of 30,000 requests; not representative.**"
        } else {
            ""
        }
    );
    for w in workloads(cfg.quick) {
        let table = hit_ratio_table(&w, cpus());
        let _ = writeln!(
            s.markdown,
            "### {} ({} requests)\n\n{}.\n",
            w.name,
            w.keys.len(),
            w.description
        );
        let names: Vec<&str> = HitCache::ALL.iter().map(|c| c.name()).collect();
        let _ = writeln!(
            s.markdown,
            "| capacity | {} | unlocked − best peer |",
            names.join(" | ")
        );
        let _ = writeln!(
            s.markdown,
            "|---:|{}---:|",
            "---:|".repeat(HitCache::ALL.len())
        );
        for (cap, row) in w.capacities.iter().zip(&table) {
            let cells: Vec<String> = row.iter().map(|r| format!("{:.2}", r * 100.0)).collect();
            let best_peer = row[1].max(row[2]);
            let _ = writeln!(
                s.markdown,
                "| {cap} | {} | {:+.2} |",
                cells.join(" | "),
                (row[0] - best_peer) * 100.0
            );
            eprintln!("hit ratio {:<12} {cap:>7}: {}", w.name, cells.join(" "));
        }
        let file = format!("cache-hit-ratio-{}.svg", w.name.to_lowercase());
        let _ = writeln!(s.markdown, "\n![{}]({file})\n", w.name);
        let x_desc = w
            .capacities
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{}={c}", i + 1))
            .collect::<Vec<_>>()
            .join(", ");
        s.plots.push(Plot {
            file,
            title: format!("{}: hit ratio against capacity", w.name),
            x_desc: format!("capacity point ({x_desc} entries)"),
            y_desc: "hit ratio, %".into(),
            series: HitCache::ALL
                .iter()
                .enumerate()
                .map(|(k, c)| {
                    let pts = table
                        .iter()
                        .enumerate()
                        .map(|(i, row)| ((i + 1) as f64, row[k] * 100.0))
                        .collect();
                    (c.name().to_string(), pts)
                })
                .collect(),
        });
    }
    let _ = writeln!(
        s.markdown,
        "_Hit-ratio section: {:.1} s on {} threads._\n",
        started.elapsed().as_secs_f64(),
        cpus()
    );
    s
}

// ---------------------------------------------------------------------------
// Throughput
// ---------------------------------------------------------------------------

/// One cache's statistics at every thread count of a mix.
#[derive(Debug)]
struct Row {
    spec: CacheSpec,
    points: Vec<Stats>,
}

/// Throughput against threads for every read/insert mix.
pub(crate) fn cache_throughput_section(cfg: &Config) -> Section {
    let mut s = Section {
        markdown: String::from("## Cache throughput under contention\n\n"),
        plots: Vec::new(),
    };
    let runs = cfg.runs().min(MAX_RUNS);
    let _ = writeln!(
        s.markdown,
        "- workload: T threads, each replaying its own seeded stream of Zipf \
         (s = {THROUGHPUT_ZIPF}) keys over {THROUGHPUT_KEYS} keys; a cache of \
         {THROUGHPUT_CAPACITY} entries prefilled with the most popular keys; \
         gets and inserts mixed per the scenario\n\
         - each point: one calibration/warm-up run of every cache, then {runs} \
         measured runs of {}, interleaved across caches (one run of each per \
         round); cells are the median, in millions of requests per second\n\
         - dashmap and flurry never evict: they are ceilings, not caches; the lock \
         baselines are the seeds' `TTLCache` ported to Rust (`Mutex<LruCache>` \
         with per-entry expiry and statistics) and the seeds' `ShardedCache` \
         (16 of them, the capacity split evenly), the design the seeds give \
         for high concurrency\n\
         - oversubscribed: threads > {} CPUs\n",
        if cfg.quick {
            format!("{QUICK_OPS} requests per thread")
        } else {
            format!("about {} ms", RUN_TARGET.as_millis())
        },
        cpus()
    );
    for mix in MIXES {
        let specs = caches();
        let mut points: Vec<Vec<Stats>> = specs.iter().map(|_| Vec::new()).collect();
        for &t in threads() {
            for (column, stats) in points
                .iter_mut()
                .zip(measure_point(cfg, runs, mix, &specs, t))
            {
                column.push(stats);
            }
        }
        let rows: Vec<Row> = specs
            .into_iter()
            .zip(points)
            .map(|(spec, points)| Row { spec, points })
            .collect();
        s.markdown.push_str(&mix_markdown(mix, &rows));
        s.plots.push(Plot {
            file: format!("cache-throughput-{}.svg", mix.name),
            title: format!("cache, {}: throughput against threads", mix.name),
            x_desc: "threads".into(),
            y_desc: "Mops/s".into(),
            series: rows
                .iter()
                .map(|r| {
                    let pts = threads()
                        .iter()
                        .zip(&r.points)
                        .map(|(&t, p)| (t as f64, p.median))
                        .collect();
                    (r.spec.name.to_string(), pts)
                })
                .collect(),
        });
    }
    s
}

/// Runs one point for every cache: a calibration/warm-up run of each, then
/// the measured runs, interleaved (see [`interleaved`]).
fn measure_point(
    cfg: &Config,
    runs: usize,
    mix: Mix,
    specs: &[CacheSpec],
    threads: usize,
) -> Vec<Stats> {
    let mut set: Vec<(Box<dyn Runner>, usize)> = specs
        .iter()
        .map(|spec| {
            let mut runner = (spec.start)(mix, threads);
            let ops = ops_per_thread(cfg, runner.as_mut());
            (runner, ops)
        })
        .collect();
    let all = interleaved(&mut set, runs, |(runner, ops)| {
        let took = runner.run(*ops);
        (*ops * threads) as f64 / took.as_secs_f64().max(1e-9) / 1e6
    });
    for (spec, stats) in specs.iter().zip(&all) {
        eprintln!(
            "{:<18} {:<40} {:<28} {:8.2} Mops/s",
            mix.name,
            spec.name,
            threads_label(threads),
            stats.median
        );
    }
    all
}

/// Requests per thread for a run of about [`RUN_TARGET`] (fixed when quick).
fn ops_per_thread(cfg: &Config, runner: &mut dyn Runner) -> usize {
    if cfg.quick {
        runner.run(QUICK_OPS);
        return QUICK_OPS;
    }
    let n = calibrate(RUN_TARGET, (4096, 1 << 26), (1024, 1 << 28), |n| {
        runner.run(n as usize)
    });
    n as usize
}

/// Column headers for every thread count.
fn table_header(first: &str) -> String {
    let cols: Vec<String> = threads().iter().map(|&t| threads_label(t)).collect();
    let seps = vec!["---:"; threads().len()].join(" | ");
    format!("| {first} | {} |\n|---| {seps} |\n", cols.join(" | "))
}

/// The cache's name for tables, its role flagged.
fn display_name(spec: &CacheSpec) -> String {
    match spec.role {
        Role::LockBaseline => format!("`{}` (lock baseline)", spec.name),
        Role::Ceiling => format!("`{}` (ceiling)", spec.name),
        _ => format!("`{}`", spec.name),
    }
}

/// Throughput table, ratio table and plot link of one mix.
fn mix_markdown(mix: Mix, rows: &[Row]) -> String {
    let mut md = format!(
        "### {} ({}% gets, {}% inserts)\n\nThroughput, Mops/s (median of the runs):\n\n",
        mix.name,
        mix.read_percent,
        100 - mix.read_percent
    );
    md.push_str(&table_header("cache"));
    for row in rows {
        md.push_str(&median_row(&display_name(&row.spec), &row.points));
    }
    if let Some(subject) = rows.iter().find(|r| r.spec.role == Role::Subject) {
        md.push_str("\nRatios (higher is better for `unlocked`):\n\n");
        md.push_str(&table_header("ratio"));
        for row in rows.iter().filter(|r| r.spec.role != Role::Subject) {
            md.push_str(&ratio_row(
                &display_name(&row.spec),
                &subject.points,
                &row.points,
            ));
        }
    }
    let flagged = threads().iter().any(|&t| oversubscribed(t));
    if flagged {
        md.push_str("\nOversubscribed columns measure scheduling as much as the cache.\n");
    }
    let _ = writeln!(md, "\n![{0}](cache-throughput-{0}.svg)\n", mix.name);
    md
}
