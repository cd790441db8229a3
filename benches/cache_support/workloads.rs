//! Key streams for the hit-ratio measurements: the committed ARC traces
//! and seeded synthetic workloads. Shared by the bench harness
//! (`cache_support/mod.rs`) and the policy's own experiments
//! (`src/cache/policy/tests/experiments.rs`), so both replay the same
//! streams.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use rand::{rngs::StdRng, Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

/// Where the committed traces are: `benches/traces` under the crate this
/// was built from, or under the working directory when that is gone (a
/// binary copied to another machine and run from a checkout there).
pub fn trace_dir() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/traces");
    if built.is_dir() {
        built
    } else {
        PathBuf::from("benches/traces")
    }
}

/// Reads `benches/traces/{name}.lis.zst` as a key stream: each line
/// `start count ..` is `count` accesses to the keys `start..start + count`.
/// `limit` keeps only a prefix of that many requests.
///
/// # Panics
/// If the trace is missing or malformed.
pub fn trace(name: &str, limit: Option<usize>) -> Vec<u64> {
    let path = trace_dir().join(format!("{name}.lis.zst"));
    let file = std::fs::File::open(&path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    let decoder = zstd::Decoder::new(file).expect("zstd stream");
    let limit = limit.unwrap_or(usize::MAX);
    let mut keys = Vec::new();
    for line in BufReader::new(decoder).lines() {
        let line = line.expect("trace line");
        let mut fields = line.split_whitespace();
        let (Some(start), Some(count)) = (fields.next(), fields.next()) else {
            continue;
        };
        let start: u64 = start.parse().expect("start block");
        let count: u64 = count.parse().expect("block count");
        for key in start..start + count {
            if keys.len() == limit {
                return keys;
            }
            keys.push(key);
        }
    }
    keys
}

/// `len` keys drawn from a Zipf distribution of exponent `s` over `1..=n`,
/// from a seeded generator.
pub fn zipf(n: u64, s: f64, len: usize, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let dist = Zipf::new(n, s).expect("valid Zipf parameters");
    (0..len).map(|_| dist.sample(&mut rng) as u64).collect()
}

/// A Zipf stream (exponent `s` over `1..=n`) cut, on average every 50,000
/// requests, by a scan of `n / 2` keys that never occur again: the workload
/// that flushes an LRU.
pub fn scan_mixed(n: u64, s: f64, len: usize, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let dist = Zipf::new(n, s).expect("valid Zipf parameters");
    let mut keys = Vec::with_capacity(len);
    let mut fresh = 1u64 << 40;
    while keys.len() < len {
        if rng.gen_range(0..50) == 0 {
            for _ in 0..n / 2 {
                keys.push(fresh);
                fresh += 1;
            }
        } else {
            keys.extend((0..1000).map(|_| dist.sample(&mut rng) as u64));
        }
    }
    keys.truncate(len);
    keys
}

/// `len` requests looping over the keys `0..n`: larger than the cache, the
/// loop is LRU's worst case (every request misses); the best a cache can do
/// is keep a fixed subset.
pub fn looping(n: u64, len: usize) -> Vec<u64> {
    (0..len as u64).map(|i| i % n).collect()
}

/// A Zipf stream (exponent `s` over `n` keys) whose hot set moves to `n`
/// fresh keys every `period` requests: the working set changes and what was
/// hot never returns.
pub fn shifting(n: u64, s: f64, period: usize, len: usize, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let dist = Zipf::new(n, s).expect("valid Zipf parameters");
    (0..len)
        .map(|i| (i / period) as u64 * n + dist.sample(&mut rng) as u64)
        .collect()
}

/// A Zipf core (exponent `s` over `n` keys) with `percent` of the requests
/// going to keys that never occur again (one-hit wonders).
pub fn one_hit_wonders(n: u64, s: f64, percent: u32, len: usize, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let dist = Zipf::new(n, s).expect("valid Zipf parameters");
    let mut fresh = 1u64 << 40;
    (0..len)
        .map(|_| {
            if rng.gen_range(0..100) < percent {
                fresh += 1;
                fresh
            } else {
                dist.sample(&mut rng) as u64
            }
        })
        .collect()
}
