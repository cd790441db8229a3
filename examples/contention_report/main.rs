//! Contention report: the project's main measurement.
//!
//! ```text
//! cargo run --release --example contention_report [-- [--quick] [--out DIR]
//!     [--threads 1,2,4,8] [--sections queue,queue-latency,work,config,cache-hit-ratio,cache]]
//! ```
//!
//! Runs a short sweep of `unlocked`'s queues against their peers
//! (crossbeam-queue, concurrent-queue) and the lock baseline
//! (`Mutex<VecDeque>`, the design of Python's `queue.Queue`), at 1, 2, 4 and
//! 8 producer/consumer pairs, for a small bounded, a large bounded and an
//! unbounded queue, and the work queue's add/claim/complete/remove cycles
//! against the seeds' lock design at 1, 2, 4 and 8 workers (`work.rs`),
//! then writes `report.md` and one SVG plot per scenario to
//! `$CARGO_TARGET_DIR/contention-report/` (default `target/`). Every figure
//! and ratio comes from this run. `--quick` uses tiny runs, to check in a few
//! seconds that the report still works. `--threads 1,2,4,8,16` replaces every
//! section's thread counts (pairs for the queues, workers, readers, threads)
//! with one list, for sweeping a many-core machine; `--sections` runs only
//! the named sections (the machine section is always written).
//!
//! The report is a list of [`SECTIONS`]; a later part of the crate adds its
//! own by adding a module next to `queue.rs` and appending its section
//! functions to the list.

#[path = "../../benches/support/mod.rs"]
mod support;

// The bench uses parts of the harness that the report does not.
#[allow(dead_code)]
#[path = "../../benches/cache_support/mod.rs"]
mod cache_support;

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use support::cpus;

mod cache;
mod config;
mod queue;
mod work;

/// Measured runs per point in a full report.
const RUNS: usize = 5;

/// Target duration of one measured run in a full report.
const RUN_TARGET: Duration = Duration::from_millis(250);

/// Result type of fallible report steps.
type Res<T> = Result<T, Box<dyn Error>>;

/// A part of the report: a function from the settings to markdown and plots.
type SectionFn = fn(&Config) -> Section;

/// The report, in order, each part under the name `--sections` selects it
/// by. Append a pair here to add a section.
const SECTIONS: &[(&str, SectionFn)] = &[
    ("machine", machine_section),
    ("queue", queue::throughput_section),
    ("queue-latency", queue::latency_section),
    ("work", work::work_section),
    ("config", config::config_section),
    ("cache-hit-ratio", cache::cache_hit_ratio_section),
    ("cache", cache::cache_throughput_section),
];

/// Settings from the command line.
#[derive(Debug)]
struct Config {
    /// Tiny runs, one per point.
    quick: bool,
    /// Where the report goes.
    out: PathBuf,
    /// The sections to run (`--sections`); every one when `None`. The
    /// machine section is always written.
    sections: Option<Vec<String>>,
}

impl Config {
    /// Whether the section called `name` runs.
    fn runs_section(&self, name: &str) -> bool {
        name == "machine"
            || self
                .sections
                .as_ref()
                .map_or(true, |list| list.iter().any(|s| s == name))
    }
}

impl Config {
    /// Measured runs per point.
    fn runs(&self) -> usize {
        if self.quick {
            1
        } else {
            RUNS
        }
    }
}

/// One section's output.
#[derive(Debug, Default)]
struct Section {
    /// Markdown, starting with a `##` heading.
    markdown: String,
    /// Plots to write next to `report.md` (the markdown links them).
    plots: Vec<Plot>,
}

/// A line chart, one line per series.
#[derive(Debug)]
struct Plot {
    /// File name inside the output directory.
    file: String,
    /// Chart caption.
    title: String,
    /// X axis label.
    x_desc: String,
    /// Y axis label.
    y_desc: String,
    /// Named lines of `(x, y)` points.
    series: Vec<(String, Vec<(f64, f64)>)>,
}

impl Plot {
    /// The largest x and y over every series (at least 1 and 0).
    fn bounds(&self) -> (f64, f64) {
        let points = || self.series.iter().flat_map(|s| &s.1);
        let x_max = points().map(|p| p.0).fold(1.0, f64::max);
        let y_max = points().map(|p| p.1).fold(0.0, f64::max);
        (x_max, y_max)
    }
}

/// Median, minimum and maximum of a point's runs, in Mops/s.
#[derive(Clone, Copy, Debug)]
struct Stats {
    /// Median run.
    median: f64,
    /// Slowest run.
    min: f64,
    /// Fastest run.
    max: f64,
}

impl Stats {
    /// Statistics of `samples` (not empty).
    fn of(mut samples: Vec<f64>) -> Stats {
        samples.sort_by(f64::total_cmp);
        Stats {
            median: samples[samples.len() / 2],
            min: samples[0],
            max: samples[samples.len() - 1],
        }
    }

    /// Run-to-run spread relative to the median.
    fn spread(&self) -> f64 {
        (self.max - self.min) / self.median
    }
}

/// Work per thread for a run of about `target`: starts at `first` and grows
/// by 4 until a run takes at least an eighth of `target` (or `n` reaches
/// `limit`), then scales; the result is clamped to `min..=max`. `run(n)`
/// times one run of `n` units.
fn calibrate(
    target: Duration,
    (first, limit): (u64, u64),
    (min, max): (u64, u64),
    mut run: impl FnMut(u64) -> Duration,
) -> u64 {
    let mut n = first;
    loop {
        let took = run(n);
        if took >= target / 8 || n >= limit {
            let scale = target.as_secs_f64() / took.as_secs_f64().max(1e-6);
            return ((n as f64 * scale) as u64).clamp(min, max);
        }
        n *= 4;
    }
}

/// The measured runs of several implementations at one point, interleaved:
/// one run of each per round (ABCABC, not AAABBBCCC), so that a machine
/// whose speed drifts during the sweep (the 2-CPU development VM has fast
/// and slow phases minutes long, see docs/work.md) moves every
/// implementation alike and the ratios stay fair. `once` times one run and
/// returns its throughput; the result has one [`Stats`] per runner.
fn interleaved<R>(
    runners: &mut [R],
    runs: usize,
    mut once: impl FnMut(&mut R) -> f64,
) -> Vec<Stats> {
    let mut samples: Vec<Vec<f64>> = runners.iter().map(|_| Vec::with_capacity(runs)).collect();
    for _ in 0..runs {
        for (runner, s) in runners.iter_mut().zip(&mut samples) {
            s.push(once(runner));
        }
    }
    samples.into_iter().map(Stats::of).collect()
}

/// One markdown table row: `name`, then each point's median to 2 places.
fn median_row(name: &str, points: &[Stats]) -> String {
    let cells: Vec<String> = points.iter().map(|s| format!("{:.2}", s.median)).collect();
    format!("| {name} | {} |\n", cells.join(" | "))
}

/// One ratio-table row: `unlocked / name`, then the subject's median over
/// the peer's at each point.
fn ratio_row(name: &str, subject: &[Stats], peer: &[Stats]) -> String {
    let cells: Vec<String> = subject
        .iter()
        .zip(peer)
        .map(|(s, p)| format!("{:.2}×", s.median / p.median))
        .collect();
    format!("| unlocked / {name} | {} |\n", cells.join(" | "))
}

/// The thread counts given with `--threads`, if any.
static SWEEP: OnceLock<Vec<usize>> = OnceLock::new();

/// The thread counts a section sweeps: the `--threads` list when one was
/// given (every section then uses the same list, so a many-core machine can
/// be swept past the 2-core defaults), else the section's own `default`.
fn sweep(default: &'static [usize]) -> &'static [usize] {
    SWEEP.get().map_or(default, Vec::as_slice)
}

/// Parses a `--threads` list such as `1,2,4,8,16`.
fn parse_threads(list: &str) -> Res<Vec<usize>> {
    let counts: Vec<usize> = list
        .split(',')
        .map(|n| match n.trim().parse::<usize>() {
            Ok(c) if (1..=1024).contains(&c) => Ok(c),
            _ => Err(format!(
                "--threads: {n:?} is not a thread count in 1..=1024"
            )),
        })
        .collect::<Result<_, _>>()?;
    if !counts.windows(2).all(|w| w[0] < w[1]) {
        return Err(format!("--threads: {list:?} must be strictly increasing").into());
    }
    Ok(counts)
}

/// Parses a `--sections` list such as `queue,work`.
fn parse_sections(list: &str) -> Res<Vec<String>> {
    list.split(',')
        .map(|name| {
            let name = name.trim();
            if SECTIONS.iter().any(|(known, _)| *known == name) {
                Ok(name.to_string())
            } else {
                let known: Vec<&str> = SECTIONS.iter().map(|(n, _)| *n).collect();
                Err(format!(
                    "--sections: unknown section {name:?}; known: {}",
                    known.join(",")
                )
                .into())
            }
        })
        .collect()
}

/// Parses `--quick`, `--out DIR`, `--threads LIST` and `--sections LIST`.
fn parse_args() -> Res<Config> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), PathBuf::from);
    let mut cfg = Config {
        quick: false,
        out: target.join("contention-report"),
        sections: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => cfg.quick = true,
            "--out" => cfg.out = args.next().ok_or("--out needs a directory")?.into(),
            "--threads" => {
                let list = args
                    .next()
                    .ok_or("--threads needs a list such as 1,2,4,8")?;
                SWEEP
                    .set(parse_threads(&list)?)
                    .map_err(|_| "--threads given twice")?;
            }
            "--sections" => {
                let list = args
                    .next()
                    .ok_or("--sections needs a list such as queue,work")?;
                cfg.sections = Some(parse_sections(&list)?);
            }
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument {arg:?}\n{}", usage()).into()),
        }
    }
    Ok(cfg)
}

/// What `--help` prints.
fn usage() -> String {
    let known: Vec<&str> = SECTIONS.iter().map(|(n, _)| *n).collect();
    format!(
        "usage: contention_report [--quick] [--out DIR] [--threads 1,2,4,8] \
         [--sections LIST]\n  \
         --quick          tiny runs, one each: a smoke test, not figures\n  \
         --out DIR        where report.md and the SVG plots go \
         (default target/contention-report)\n  \
         --threads LIST   thread counts for every section (default: each section's own)\n  \
         --sections LIST  only these sections, of: {}",
        known.join(",")
    )
}

/// Runs every section, writes the report and its plots, prints the report.
fn main() -> Res<()> {
    let cfg = parse_args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    std::fs::create_dir_all(&cfg.out)?;
    let started = Instant::now();
    let mut md = String::from("# unlocked contention report\n\n");
    for (name, section) in SECTIONS {
        if !cfg.runs_section(name) {
            continue;
        }
        let s = section(&cfg);
        md.push_str(&s.markdown);
        md.push('\n');
        for plot in &s.plots {
            write_svg(&cfg.out.join(&plot.file), plot)?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    writeln!(
        md,
        "_Report generated in {secs:.1} s; load average after: {}._",
        load_average()
    )?;
    let path = cfg.out.join("report.md");
    std::fs::write(&path, &md)?;
    println!("{md}");
    println!("report written to {}", path.display());
    Ok(())
}

// ---------------------------------------------------------------------------
// Machine section
// ---------------------------------------------------------------------------

/// The machine, the build and the method.
fn machine_section(cfg: &Config) -> Section {
    let mut md = String::from("## Machine and method\n\n");
    let cpu = cpu_model().unwrap_or_else(|| "unknown".into());
    let profile = if cfg!(debug_assertions) {
        "debug (figures are not representative; use --release)"
    } else {
        "release"
    };
    let _ = writeln!(md, "- CPUs available: {}", cpus());
    let _ = writeln!(md, "- CPU model: {cpu}");
    let _ = writeln!(md, "- OS: {}", os_description());
    let _ = writeln!(md, "- build: {profile}");
    let _ = writeln!(md, "- generated: {} UTC", utc_now());
    let _ = writeln!(md, "- load average before the sweep: {}", load_average());
    let _ = writeln!(
        md,
        "- mode: {}",
        if cfg.quick {
            "quick (tiny runs, 1 each: smoke test only)"
        } else {
            "full"
        }
    );
    Section {
        markdown: md,
        plots: Vec::new(),
    }
}

/// How the queue sweep measures, in a few bullets (at the head of the
/// queue throughput section: every other section says how it measures).
pub(crate) fn queue_method_notes(cfg: &Config) -> String {
    let run = if cfg.quick {
        format!("{} values per producer", queue::QUICK_PER_PRODUCER)
    } else {
        format!(
            "about {} ms (values per producer calibrated per point)",
            RUN_TARGET.as_millis()
        )
    };
    format!(
        "- workload: P producers and P consumers (\"pairs\"), persistent threads released by a barrier; \
         each producer pushes its values, each consumer pops its share; every run is verified \
         (count, sum, sum of squares, per-producer FIFO order)\n\
         - on full/empty: {} spin-loop hints, then `yield_now`, the same for every implementation\n\
         - each point: one calibration/warm-up run of every implementation, then {} measured runs of {run}, \
         interleaved across implementations (one run of each per round, so a drift in the machine's speed \
         moves them alike); cells are the median, in millions of values transferred per second (Mops/s)\n\
         - oversubscribed: 2 × pairs > {} CPUs\n",
        support::SPIN_LIMIT,
        cfg.runs(),
        cpus()
    )
}

/// The CPU model from `/proc/cpuinfo`, if readable.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("model name"))?;
    Some(line.split_once(':')?.1.trim().to_string())
}

/// The 1-, 5- and 15-minute load averages from `/proc/loadavg`: other work
/// on the machine skews every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// The OS name, its release and the kernel, as far as they are readable.
fn os_description() -> String {
    let pretty = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        });
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok();
    let mut s = format!("{} {}", std::env::consts::OS, std::env::consts::ARCH);
    if let Some(p) = pretty {
        let _ = write!(s, ", {p}");
    }
    if let Some(k) = kernel {
        let _ = write!(s, ", kernel {}", k.trim());
    }
    s
}

/// The current UTC time as `YYYY-MM-DD HH:MM`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil-from-days (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

// ---------------------------------------------------------------------------
// Plots
// ---------------------------------------------------------------------------

/// Draws `plot` as an SVG line chart at `path`.
fn write_svg(path: &Path, plot: &Plot) -> Res<()> {
    let root = SVGBackend::new(path, (860, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let (x_max, y_max) = plot.bounds();
    let mut chart = ChartBuilder::on(&root)
        .caption(&plot.title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5..x_max + 0.5, 0.0..(y_max * 1.15).max(1e-3))?;
    chart
        .configure_mesh()
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc(&plot.x_desc)
        .y_desc(&plot.y_desc)
        .draw()?;
    for (i, (name, pts)) in plot.series.iter().enumerate() {
        draw_line(&mut chart, Palette99::pick(i).to_rgba(), name, pts)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// The chart type [`write_svg`] draws on.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws one named series as a line with point markers and a legend entry.
fn draw_line(
    chart: &mut Chart<'_, '_>,
    color: RGBAColor,
    name: &str,
    pts: &[(f64, f64)],
) -> Res<()> {
    chart
        .draw_series(LineSeries::new(pts.to_vec(), color.stroke_width(2)))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    Ok(())
}
