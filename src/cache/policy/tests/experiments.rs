//! Hit-ratio experiments on the policy alone (no shell), next to its peers.
//! Ignored: `cargo test --release --lib experiments -- --ignored --nocapture`.

use std::io::{BufRead, BufReader};
use std::num::NonZeroUsize;

use rand::{rngs::StdRng, Rng as _, SeedableRng};
use rand_distr::{Distribution, Zipf};

use super::Sim;
use crate::cache::policy::Tuning;

fn trace(name: &str) -> Vec<u64> {
    let path = format!(
        "{}/benches/traces/{name}.lis.zst",
        env!("CARGO_MANIFEST_DIR")
    );
    let file = std::fs::File::open(&path).expect("trace");
    let reader = BufReader::new(zstd::Decoder::new(file).expect("zstd"));
    let mut keys = Vec::new();
    for line in reader.lines() {
        let line = line.expect("line");
        let mut f = line.split_whitespace();
        let (Some(start), Some(n)) = (f.next(), f.next()) else {
            continue;
        };
        let start: u64 = start.parse().expect("start");
        let n: u64 = n.parse().expect("count");
        keys.extend(start..start + n);
    }
    keys
}

fn zipf(n: u64, s: f64, len: usize, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let z = Zipf::new(n, s).expect("zipf");
    (0..len).map(|_| z.sample(&mut rng) as u64).collect()
}

fn scan_mixed(n: u64, s: f64, len: usize, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let z = Zipf::new(n, s).expect("zipf");
    let mut out = Vec::with_capacity(len);
    let mut fresh = 1u64 << 40;
    while out.len() < len {
        if rng.gen_range(0..100) < 2 {
            for _ in 0..n / 2 {
                out.push(fresh);
                fresh += 1;
            }
        } else {
            for _ in 0..1000 {
                out.push(z.sample(&mut rng) as u64);
            }
        }
    }
    out.truncate(len);
    out
}

fn ours(keys: &[u64], cap: usize, t: Tuning) -> f64 {
    let mut sim = Sim::with_tuning(cap, t);
    for (i, &k) in keys.iter().enumerate() {
        sim.access(k);
        if std::env::var("TRACE_SMALL").is_ok() && i % (keys.len() / 10) == 0 {
            eprintln!("cap {cap} at {i}: small target {}", sim.policy.small_target);
        }
    }
    sim.hit_ratio()
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
