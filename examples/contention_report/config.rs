//! Config section: read throughput of `ConfigStore` against raw arc-swap,
//! `RwLock<Arc<T>>` and the seeds' design, with and without a writer
//! committing about 1,000 times a second, and the ratios the issue sets as
//! goals.

use std::fmt::Write as _;
use std::time::Duration;

use crate::support::cpus;
use crate::{interleaved, Config, Plot, Section, Stats};

#[path = "../../benches/support/config.rs"]
#[allow(dead_code)]
mod harness;

use harness::{calibrate, run, Impl};

/// Reader counts of the sweep (`--threads` overrides them).
fn readers() -> &'static [usize] {
    crate::sweep(&[1, 2, 4])
}

/// Target duration of one measured run.
fn run_target(cfg: &Config) -> Duration {
    if cfg.quick {
        Duration::from_millis(2)
    } else {
        Duration::from_millis(15)
    }
}

/// Median Mops/s (and spread) of every implementation at `readers`
/// readers, each with its calibrated `ops`; runs interleaved (see
/// [`interleaved`]).
fn measure(cfg: &Config, impls: &mut [(Impl, u64)], readers: usize, writer: bool) -> Vec<Stats> {
    interleaved(impls, cfg.runs(), |&mut (which, ops)| {
        let r = run(which, readers, ops, writer);
        (readers as u64 * ops) as f64 / r.elapsed.as_secs_f64() / 1e6
    })
}

/// Read throughput table, plots and goal ratios.
pub(crate) fn config_section(cfg: &Config) -> Section {
    let mut s = Section {
        markdown: String::from("## Config snapshots: read throughput\n\n"),
        plots: Vec::new(),
    };
    let _ = writeln!(
        s.markdown,
        "Reads per second (millions, median of {} runs) of a service configuration \
         (two strings, 8 hosts, a map of 8 limits); `with writer`: one more thread commits every millisecond. \
         Reader counts whose threads outnumber the {} cores are oversubscribed. \
         `seeds` is the seeds' design: a read lock and a deep copy per read.\n",
        cfg.runs(),
        cpus()
    );
    let mut impls: Vec<(Impl, u64)> = Impl::ALL
        .iter()
        .map(|&i| (i, calibrate(i, run_target(cfg))))
        .collect();
    for writer in [false, true] {
        let mut table: Vec<Vec<Stats>> = Impl::ALL.iter().map(|_| Vec::new()).collect();
        for &r in readers() {
            for (row, stats) in table.iter_mut().zip(measure(cfg, &mut impls, r, writer)) {
                row.push(stats);
            }
        }
        table_markdown(&mut s.markdown, writer, &table);
        goals_markdown(&mut s.markdown, writer, &table);
        let p = plot(writer, &table);
        let _ = writeln!(s.markdown, "![{}]({})\n", p.title, p.file);
        s.plots.push(p);
    }
    s
}

fn table_markdown(md: &mut String, writer: bool, table: &[Vec<Stats>]) {
    let _ = writeln!(
        md,
        "### {}\n",
        if writer {
            "With a writer (1,000 commits/s)"
        } else {
            "Readers only"
        }
    );
    let head: Vec<String> = readers()
        .iter()
        .map(|&r| {
            let over = if r + usize::from(writer) > cpus() {
                " (oversubscribed)"
            } else {
                ""
            };
            format!("{r} reader{}{over}", if r == 1 { "" } else { "s" })
        })
        .collect();
    let _ = writeln!(md, "| implementation | {} |", head.join(" | "));
    let _ = writeln!(md, "|---|{}", "---:|".repeat(readers().len()));
    for (i, row) in Impl::ALL.iter().zip(table) {
        let cells: Vec<String> = row
            .iter()
            .map(|st| format!("{:.1} (±{:.0}%)", st.median, st.spread() * 50.0))
            .collect();
        let _ = writeln!(md, "| {} | {} |", i.name(), cells.join(" | "));
    }
    md.push('\n');
}

/// Throughput of `a` over that of `b`, as a cost ratio: how many times
/// longer a read of `a` takes than one of `b`.
fn cost_ratio(table: &[Vec<Stats>], a: Impl, b: Impl, col: usize) -> f64 {
    let idx = |x: Impl| Impl::ALL.iter().position(|&y| y == x).unwrap();
    table[idx(b)][col].median / table[idx(a)][col].median
}

fn goals_markdown(md: &mut String, writer: bool, table: &[Vec<Stats>]) {
    let line = |name: &str, a, b, goal: &str| -> String {
        let vals: Vec<String> = (0..readers().len())
            .map(|c| format!("{:.2}x", cost_ratio(table, a, b, c)))
            .collect();
        format!("| {name} | {} | {goal} |\n", vals.join(" | "))
    };
    let _ = writeln!(
        md,
        "| read cost ratio | {} | goal |",
        readers()
            .iter()
            .map(|r| format!("{r}r"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(md, "|---|{}---|", "---:|".repeat(readers().len()));
    md.push_str(&line(
        "`load()` / arc-swap `load`",
        Impl::Load,
        Impl::ArcSwapLoad,
        "≤ 1.2x",
    ));
    md.push_str(&line(
        "`reader()` / arc-swap `Cache`",
        Impl::Reader,
        Impl::ArcSwapCache,
        "≤ 2x",
    ));
    let seeds: Vec<String> = (0..readers().len())
        .map(|c| {
            format!(
                "{:.0}x",
                cost_ratio(table, Impl::SeedsDeepClone, Impl::Load, c)
            )
        })
        .collect();
    let goal = if writer { "≥ 20x" } else { "" };
    let _ = writeln!(
        md,
        "| seeds' design / `load()` | {} | {goal} |",
        seeds.join(" | ")
    );
    let rw: Vec<String> = (0..readers().len())
        .map(|c| format!("{:.1}x", cost_ratio(table, Impl::RwLockArc, Impl::Load, c)))
        .collect();
    let _ = writeln!(
        md,
        "| `RwLock<Arc<T>>` / `load()` | {} | |\n",
        rw.join(" | ")
    );
}

fn plot(writer: bool, table: &[Vec<Stats>]) -> Plot {
    Plot {
        file: format!(
            "config-read{}.svg",
            if writer { "-with-writer" } else { "" }
        ),
        title: format!(
            "Config reads{}",
            if writer {
                " with a writer at 1,000 commits/s"
            } else {
                ""
            }
        ),
        x_desc: "reader threads".into(),
        y_desc: "Mreads/s".into(),
        series: Impl::ALL
            .iter()
            .zip(table)
            .map(|(i, row)| {
                let pts = readers()
                    .iter()
                    .zip(row)
                    .map(|(&r, st)| (r as f64, st.median))
                    .collect();
                (i.name().to_string(), pts)
            })
            .collect(),
    }
}
