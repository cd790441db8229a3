//! Hit ratio of `unlocked::Cache` next to moka, quick_cache and an LRU, on
//! the ARC traces (OLTP, P3) and synthetic Zipf and scan-mixed workloads.
//!
//! ```text
//! cargo run --release --example cache_hit_ratio [-- [--quick] [--held-out]]
//! ```
//!
//! Prints one markdown table per workload (hit ratios in percent).
//! `--held-out` runs the held-out workloads instead (other Zipf skews, a
//! loop, a moving hot set, one-hit wonders, the traces' halves): never used
//! to tune the policy, they check that a change is general. The
//! contention report's hit-ratio section runs the same code and adds plots.
//! Traces: N. Megiddo and D. S. Modha, "ARC: A Self-Tuning, Low Overhead
//! Replacement Cache", USENIX FAST 2003.

#[allow(dead_code)]
#[path = "../benches/cache_support/mod.rs"]
mod cache_support;

use cache_support::{cpus, held_out_workloads, hit_ratio_table, workloads, HitCache};

/// What `--help` prints.
const USAGE: &str = "usage: cache_hit_ratio [--quick] [--held-out]\n  \
    --quick     short streams (a smoke test)\n  \
    --held-out  the held-out workloads instead of the traces and tuning streams\n\
    HIT_RATIO_ONLY=zipf,P3 (environment) keeps the workloads whose name contains a word";

fn main() {
    let (mut quick, mut held_out) = (false, false);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "--held-out" => held_out = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            _ => {
                eprintln!("unknown argument {arg:?}\n{USAGE}");
                std::process::exit(2);
            }
        }
    }
    let started = std::time::Instant::now();
    // HIT_RATIO_ONLY=zipf,P3 restricts the run to workloads whose name
    // contains one of the words.
    let only = std::env::var("HIT_RATIO_ONLY").unwrap_or_default();
    let all = if held_out {
        held_out_workloads(quick)
    } else {
        workloads(quick)
    };
    for w in all {
        if !only.is_empty() && !only.split(',').any(|o| w.name.contains(o)) {
            continue;
        }
        let table = hit_ratio_table(&w, cpus());
        let names: Vec<&str> = HitCache::ALL.iter().map(|c| c.name()).collect();
        println!(
            "\n{} ({} requests): {}\n",
            w.name,
            w.keys.len(),
            w.description
        );
        println!(
            "| capacity | {} | unlocked − best peer |",
            names.join(" | ")
        );
        println!("|---:|{}---:|", "---:|".repeat(names.len()));
        for (cap, row) in w.capacities.iter().zip(&table) {
            let cells: Vec<String> = row.iter().map(|r| format!("{:.2}", r * 100.0)).collect();
            let best_peer = row[1].max(row[2]);
            println!(
                "| {cap} | {} | {:+.2} |",
                cells.join(" | "),
                (row[0] - best_peer) * 100.0
            );
        }
    }
    println!("\n({:.1} s)", started.elapsed().as_secs_f64());
}
