//! Hit-ratio experiments on the policy alone (no shell), next to its peers.
//! Ignored: `cargo test --release --lib experiments -- --ignored --nocapture`.

use std::num::NonZeroUsize;

use super::Sim;
use crate::cache::policy::Tuning;

// The same key streams as the bench harness and the hit-ratio example.
#[allow(dead_code)]
#[path = "../../../../benches/cache_support/workloads.rs"]
mod workloads;
use workloads::{looping, one_hit_wonders, scan_mixed, shifting, zipf};

/// A whole trace.
fn trace(name: &str) -> Vec<u64> {
    workloads::trace(name, None)
}

/// Shards the real cache would use for `cap` on a machine of `cores` cores
/// (at least 256 entries a shard, at most 4 shards a core).
fn shards_for(cap: usize, cores: usize) -> usize {
    let by_cap = 1usize << (usize::BITS - 1 - (cap / 256).max(1).leading_zeros());
    by_cap.min((cores * 4).next_power_of_two())
}

fn ours(keys: &[u64], cap: usize, t: Tuning) -> f64 {
    // SHARD_CORES=n: split the capacity over the shards the real cache
    // would use on n cores, routing keys by their hash's top bits.
    let shards = std::env::var("SHARD_CORES")
        .ok()
        .map_or(1, |c| shards_for(cap, c.parse().expect("cores")));
    let mut sims: Vec<Sim> = (0..shards)
        .map(|i| Sim::with_tuning(cap / shards + usize::from(i < cap % shards), t))
        .collect();
    let bits = shards.trailing_zeros();
    for (i, &k) in keys.iter().enumerate() {
        let shard = if bits == 0 {
            0
        } else {
            (super::mix(k) >> (64 - bits)) as usize
        };
        sims[shard].access(k);
        if std::env::var("TRACE_SMALL").is_ok() && i % (keys.len() / 10) == 0 {
            eprintln!(
                "cap {cap} at {i}: small target {}",
                sims[0].policy.small_target
            );
        }
    }
    let hits: u64 = sims.iter().map(|s| s.hits).sum();
    let total: u64 = sims.iter().map(|s| s.hits + s.misses).sum();
    hits as f64 / total.max(1) as f64
}

fn moka(keys: &[u64], cap: usize) -> f64 {
    let c = moka::sync::Cache::new(cap as u64);
    let mut hits = 0u64;
    for &k in keys {
        if c.get(&k).is_some() {
            hits += 1;
        } else {
            c.insert(k, ());
            c.run_pending_tasks();
        }
    }
    hits as f64 / keys.len() as f64
}

fn quick(keys: &[u64], cap: usize) -> f64 {
    let c = quick_cache::sync::Cache::new(cap);
    let mut hits = 0u64;
    for &k in keys {
        if c.get(&k).is_some() {
            hits += 1;
        } else {
            c.insert(k, ());
        }
    }
    hits as f64 / keys.len() as f64
}

fn lru(keys: &[u64], cap: usize) -> f64 {
    let mut c = lru::LruCache::new(NonZeroUsize::new(cap).expect("cap"));
    let mut hits = 0u64;
    for &k in keys {
        if c.get(&k).is_some() {
            hits += 1;
        } else {
            c.put(k, ());
        }
    }
    hits as f64 / keys.len() as f64
}

#[test]
#[ignore = "minutes; prints hit ratios"]
fn hit_ratios() {
    let only = std::env::var("ONLY").unwrap_or_default();
    let peers = std::env::var("PEERS").is_ok();
    let mut workloads: Vec<(String, Vec<u64>, Vec<usize>)> = Vec::new();
    if only.is_empty() || only.contains("oltp") {
        workloads.push(("OLTP".into(), trace("OLTP"), vec![250, 500, 1000, 2000]));
    }
    if only.is_empty() || only.contains("p3") {
        workloads.push(("P3".into(), trace("P3"), vec![8192, 32768, 131072]));
    }
    if only.contains("shard") {
        // One shard of a sharded cache: 1/8 of the keys and of the capacity.
        workloads.push((
            "zipf0.8/8".into(),
            zipf(12_500, 0.8, 125_000, 1),
            vec![125, 1250],
        ));
        workloads.push((
            "zipf1.0/8".into(),
            zipf(12_500, 1.0, 125_000, 2),
            vec![125, 1250],
        ));
    }
    if only.is_empty() || only.contains("zipf") {
        workloads.push((
            "zipf0.8".into(),
            zipf(100_000, 0.8, 1_000_000, 1),
            vec![1000, 10000],
        ));
        workloads.push((
            "zipf1.0".into(),
            zipf(100_000, 1.0, 1_000_000, 2),
            vec![1000, 10000],
        ));
    }
    if only.is_empty() || only.contains("scan") {
        workloads.push((
            "scan".into(),
            scan_mixed(100_000, 0.9, 1_000_000, 3),
            vec![1000, 10000],
        ));
    }
    if only.contains("heldout") {
        // Not used to choose anything: the check that a change is general.
        for (s, seed) in [(0.6, 11), (0.9, 12), (1.2, 13)] {
            workloads.push((
                format!("zipf{s}"),
                zipf(100_000, s, 500_000, seed),
                vec![500, 5000, 20000],
            ));
        }
        workloads.push((
            "loop12k".into(),
            looping(12_000, 300_000),
            vec![1000, 10000],
        ));
        workloads.push((
            "shift".into(),
            shifting(10_000, 0.9, 100_000, 600_000, 14),
            vec![500, 2000, 5000],
        ));
        workloads.push((
            "ohw50".into(),
            one_hit_wonders(50_000, 1.0, 50, 600_000, 15),
            vec![1000, 10000],
        ));
        let oltp = trace("OLTP");
        let (a, b) = oltp.split_at(oltp.len() / 2);
        workloads.push(("OLTP-1st".into(), a.to_vec(), vec![250, 1000]));
        workloads.push(("OLTP-2nd".into(), b.to_vec(), vec![250, 1000]));
        let p3 = trace("P3");
        let (a, b) = p3.split_at(p3.len() / 2);
        workloads.push(("P3-1st".into(), a.to_vec(), vec![16384, 65536]));
        workloads.push(("P3-2nd".into(), b.to_vec(), vec![16384, 65536]));
    }
    let base = Tuning::DEFAULT;
    let variants: Vec<(String, Tuning)> = std::env::var("VARIANTS")
        .unwrap_or_else(|_| "default".into())
        .split(',')
        .map(|v| {
            let mut t = base;
            for part in v.split('+') {
                let (k, val) = part.split_once('=').unwrap_or((part, "1"));
                match k {
                    "default" => {}
                    "probe" => t.probe_percent = val.parse().unwrap(),
                    "step" => t.step_permille = val.parse().unwrap(),
                    "fixed" => t.probe_percent = 0,
                    "nospill" => t.spill = false,
                    "two" => t.two_reads_from_percent = val.parse().unwrap(),
                    "small" => t.small_percent = val.parse().unwrap(),
                    "ghost" => t.ghost_percent = val.parse().unwrap(),
                    _ => panic!("unknown {k}"),
                }
            }
            (v.to_string(), t)
        })
        .collect();
    for (name, keys, caps) in &workloads {
        for &cap in caps {
            let mut line = format!("{name:8} {cap:7}");
            std::thread::scope(|s| {
                let handles: Vec<_> = variants
                    .iter()
                    .map(|(_, t)| {
                        let t = *t;
                        s.spawn(move || ours(keys, cap, t))
                    })
                    .collect();
                for ((v, _), h) in variants.iter().zip(handles) {
                    line += &format!("  {v}={:.4}", h.join().expect("join"));
                }
                if peers {
                    let m = s.spawn(|| moka(keys, cap));
                    let q = s.spawn(|| quick(keys, cap));
                    let l = lru(keys, cap);
                    line += &format!(
                        "  moka={:.4} quick={:.4} lru={l:.4}",
                        m.join().expect("join"),
                        q.join().expect("join")
                    );
                }
            });
            println!("{line}");
        }
    }
}
