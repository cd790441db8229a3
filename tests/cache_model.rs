//! The cache against a model, with everything switched on at random: a
//! sequential differential over seeds (capacity, shards, weigher,
//! `max_weight`, TTLs, remove, clear, `cleanup_expired`, iter, loading,
//! clock advances; `validate` after every step, the latest value or a
//! listener notice for every key, stats and weights exact, every value
//! dropped once), then concurrent churn checked at quiescence, bounds and
//! monotonic reads under churn, edge inputs, and iteration under churn.
//! Written by a review; `CACHE_MODEL_SEEDS` sets the number of seeds.
#![cfg(not(feature = "shuttle"))] // the shuttle facade needs a shuttle runtime

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicIsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::XorShift;
use unlocked::cache::{Cache, RemovalCause};
use unlocked::ManualClock;

#[derive(Debug)]
struct Val {
    id: u64,
    w: u32,
    live: Arc<AtomicIsize>,
}

impl Val {
    fn new(id: u64, w: u32, live: &Arc<AtomicIsize>) -> Self {
        live.fetch_add(1, SeqCst);
        Val {
            id,
            w,
            live: Arc::clone(live),
        }
    }
}

impl Clone for Val {
    fn clone(&self) -> Self {
        Val::new(self.id, self.w, &self.live)
    }
}

impl Drop for Val {
    fn drop(&mut self) {
        let before = self.live.fetch_sub(1, SeqCst);
        assert!(before > 0, "dropped more often than created");
    }
}

/// The cache's expiry rule, at clock reading `t`: `t + ttl`, or never when
/// that passes the end of the clock's range; a zero TTL is expired at once.
fn expiry(t: u128, ttl: Duration) -> Option<u128> {
    let at = t + ttl.as_nanos();
    (at < u128::from(u64::MAX) || ttl.is_zero()).then_some(at.min(u128::from(u64::MAX) - 1))
}

fn all_dropped(live: &AtomicIsize) {
    for _ in 0..100_000 {
        if live.load(SeqCst) == 0 {
            return;
        }
        crossbeam_epoch::pin().flush();
        std::thread::yield_now();
    }
    panic!("{} values never dropped", live.load(SeqCst));
}

type Log = Arc<Mutex<Vec<(u64, u64, RemovalCause)>>>;

/// One sequential run against a model; checks everything it can.
fn sequential(seed: u64, ops: usize) {
    let mut rng = XorShift::new(seed);
    let live = Arc::new(AtomicIsize::new(0));
    let clock = ManualClock::new();
    let log: Log = Arc::default();
    let capacity = if rng.below(4) == 0 {
        1 + rng.below(150)
    } else {
        1 + rng.below(6)
    };
    let shards = 1 << rng.below(3);
    let weighted = rng.below(2) == 0;
    let max_weight = if capacity > 6 {
        1 + rng.below(600) as u64
    } else {
        1 + rng.below(12) as u64
    };
    let default_ttl = match rng.below(3) {
        0 => Some(Duration::from_secs(1 + rng.below(5) as u64)),
        1 => Some(Duration::MAX),
        _ => None,
    };
    let keys = if capacity > 6 {
        1 + rng.below(300) as u64
    } else {
        1 + rng.below(10) as u64
    };
    {
        let l = Arc::clone(&log);
        let mut b = Cache::builder()
            .max_capacity(capacity)
            .shards(shards)
            .clock(clock.clone())
            .eviction_listener(move |k: &u64, v: &Val, c| l.lock().unwrap().push((*k, v.id, c)));
        if weighted {
            b = b.max_weight(max_weight).weigher(|_k, v: &Val| v.w);
        }
        if let Some(t) = default_ttl {
            b = b.time_to_live(t);
        }
        let cache: Cache<u64, Val> = b.build().unwrap();
        let cfg = format!(
            "seed {seed} cap {capacity} shards {} weighted {weighted} max_weight {max_weight} ttl {default_ttl:?} keys {keys}",
            cache.shards()
        );
        // key -> (id, weight, expires at (nanos) or None)
        let mut model: HashMap<u64, (u64, u32, Option<u128>)> = HashMap::new();
        let mut next_id = 1u64;
        let (mut hits, mut misses) = (0u64, 0u64);
        let mut inserted: Vec<u64> = Vec::new();
        let now = |clock: &ManualClock| unlocked::Clock::now(clock).as_nanos();
        let noticed = |log: &Log, id: u64| log.lock().unwrap().iter().any(|e| e.1 == id);
        for step in 0..ops {
            let k = rng.next_u64() % keys;
            let op = rng.below(100);
            let ctx = format!("{cfg} step {step} op {op} key {k}");
            match op {
                0..=44 => {
                    let id = next_id;
                    next_id += 1;
                    let w = rng.below(max_weight as usize + 3) as u32;
                    inserted.push(id);
                    let t = now(&clock);
                    match rng.below(4) {
                        0 => {
                            let ttl = match rng.below(3) {
                                0 => Duration::ZERO,
                                1 => Duration::MAX,
                                _ => Duration::from_secs(rng.below(4) as u64),
                            };
                            cache.insert_with_ttl(k, Val::new(id, w, &live), ttl);
                            model.insert(k, (id, w, expiry(t, ttl)));
                        }
                        _ => {
                            cache.insert(k, Val::new(id, w, &live));
                            model.insert(k, (id, w, default_ttl.and_then(|d| expiry(t, d))));
                        }
                    }
                }
                45..=59 => {
                    let got = cache.remove(&k);
                    let t = now(&clock);
                    if let Some(v) = &got {
                        let (id, _, e) = model[&k];
                        assert_eq!(v.id, id, "{ctx}: remove returned a stale value");
                        assert!(e.map_or(true, |e| t < e), "{ctx}: remove returned expired");
                    }
                    model.remove(&k);
                }
                60..=69 => clock.advance(Duration::from_millis(rng.below(2500) as u64)),
                70..=72 => {
                    cache.clear();
                    model.clear();
                }
                73..=77 => {
                    let before = log.lock().unwrap().len();
                    let n = cache.cleanup_expired();
                    let after = log.lock().unwrap().clone();
                    let exp = after[before..]
                        .iter()
                        .filter(|e| e.2 == RemovalCause::Expired)
                        .count();
                    assert_eq!(n, exp, "{ctx}: cleanup_expired count");
                    assert_eq!(
                        n,
                        after.len() - before,
                        "{ctx}: cleanup non-expired notices"
                    );
                }
                85..=92 => {
                    let t = now(&clock);
                    let expect = match model.get(&k) {
                        Some(&(id, _, e)) if e.map_or(true, |e| t < e) && !noticed(&log, id) => {
                            Some(id)
                        }
                        _ => None,
                    };
                    let id = next_id;
                    let w = rng.below(max_weight as usize + 3) as u32;
                    let mut ran = false;
                    let got = cache.get_or_insert_with(k, || {
                        ran = true;
                        Val::new(id, w, &live)
                    });
                    if ran {
                        misses += 1;
                        next_id += 1;
                        inserted.push(id);
                        model.insert(k, (id, w, default_ttl.and_then(|d| expiry(t, d))));
                        assert_eq!(expect, None, "{ctx}: loader ran for a resident key");
                        assert_eq!(got.id, id);
                    } else {
                        hits += 1;
                        assert_eq!(Some(got.id), expect, "{ctx}: get_or_insert_with stale");
                    }
                }
                78..=84 => {
                    let t = now(&clock);
                    let mut seen = std::collections::HashSet::new();
                    for (ik, iv) in cache.iter() {
                        assert!(seen.insert(ik), "{ctx}: iter yielded key {ik} twice");
                        let (id, _, e) = model
                            .get(&ik)
                            .copied()
                            .unwrap_or_else(|| panic!("{ctx}: iter yielded absent key {ik}"));
                        assert_eq!(iv.id, id, "{ctx}: iter stale");
                        assert!(e.map_or(true, |e| t < e), "{ctx}: iter expired");
                    }
                }
                _ => {}
            }
            // Every key: get is consistent with the model and the listener.
            let t = now(&clock);
            for key in 0..keys {
                let got = cache.get(&key).map(|v| v.id);
                if got.is_some() {
                    hits += 1
                } else {
                    misses += 1
                }
                match model.get(&key) {
                    Some(&(id, _, e)) if e.map_or(true, |e| t < e) => {
                        if noticed(&log, id) {
                            assert_eq!(got, None, "{ctx}: key {key}: value left but get sees it");
                        } else {
                            assert_eq!(got, Some(id), "{ctx}: key {key}: resident value missing");
                        }
                    }
                    _ => assert_eq!(got, None, "{ctx}: key {key}: absent/expired returned"),
                }
                assert_eq!(
                    got.is_some(),
                    cache.contains_key(&key),
                    "{ctx}: contains_key"
                );
            }
            cache.validate();
            assert!(cache.len() <= capacity, "{ctx}: len");
            if weighted {
                assert!(cache.weighted_size() <= max_weight, "{ctx}: weight");
            } else {
                assert_eq!(
                    cache.weighted_size(),
                    cache.len() as u64,
                    "{ctx}: weight unweighted"
                );
            }
            // Stats vs listener.
            let s = cache.stats();
            let log2 = log.lock().unwrap().clone();
            let c = |cause| log2.iter().filter(|e| e.2 == cause).count() as u64;
            assert_eq!(s.updates, c(RemovalCause::Replaced), "{ctx}: updates");
            assert_eq!((s.hits, s.misses), (hits, misses), "{ctx}: hits/misses");
            assert_eq!(s.evictions, c(RemovalCause::Evicted), "{ctx}: evictions");
            assert_eq!(
                s.expirations,
                c(RemovalCause::Expired),
                "{ctx}: expirations"
            );
            assert_eq!(s.removals, c(RemovalCause::Removed), "{ctx}: removals");
            assert_eq!(
                s.inserts,
                s.evictions + s.expirations + s.removals + cache.len() as u64,
                "{ctx}: identity"
            );
            assert_eq!(
                s.inserts + s.updates,
                inserted.len() as u64,
                "{ctx}: inserts + updates = calls"
            );
            // Every value noticed at most once.
            let mut ids: Vec<u64> = log2.iter().map(|e| e.1).collect();
            ids.sort_unstable();
            let n = ids.len();
            ids.dedup();
            assert_eq!(n, ids.len(), "{ctx}: a value noticed twice");
        }
        // Weight at quiescence: sum of resident entries' weights (iter
        // skips expired ones, so reclaim them first).
        cache.cleanup_expired();
        if weighted {
            let sum: u64 = cache.iter().map(|(_, v)| u64::from(v.w)).sum();
            assert_eq!(
                cache.weighted_size(),
                sum,
                "{cfg}: weighted_size at the end"
            );
        }
        // Every inserted value is resident or was noticed exactly once.
        let resident: Vec<u64> = cache.iter().map(|(_, v)| v.id).collect();
        let log2 = log.lock().unwrap().clone();
        for id in &inserted {
            let n = log2.iter().filter(|e| e.1 == *id).count()
                + resident.iter().filter(|r| *r == id).count();
            assert_eq!(n, 1, "{cfg}: value {id} accounted {n} times");
        }
    }
    all_dropped(&live);
}

#[test]
fn sequential_differential() {
    let n: u64 = std::env::var("CACHE_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        // Fewer in a debug build (the README's `cargo test`); CI's stress
        // step runs the release build.
        .unwrap_or(if cfg!(debug_assertions) { 200 } else { 1500 });
    for seed in 0..n {
        sequential(seed, 300);
    }
}

/// Concurrent churn with weights, TTLs, listener and drop counting; checks
/// the accounting at quiescence.
fn concurrent_accounting(seed: u64, threads: u64, per: usize, capacity: usize, max_weight: u64) {
    let live = Arc::new(AtomicIsize::new(0));
    let clock = ManualClock::new();
    let log: Log = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let l = Arc::clone(&log);
        let cache: Cache<u64, Val> = Cache::builder()
            .max_capacity(capacity)
            .shards(2)
            .max_weight(max_weight)
            .weigher(|_k, v: &Val| v.w)
            .clock(clock.clone())
            .eviction_listener(move |k: &u64, v: &Val, c| l.lock().unwrap().push((*k, v.id, c)))
            .build()
            .unwrap();
        let ids = std::sync::atomic::AtomicU64::new(1);
        std::thread::scope(|s| {
            for t in 0..threads {
                let (cache, live, clock, ids, calls) = (&cache, &live, &clock, &ids, &calls);
                s.spawn(move || {
                    let mut rng = XorShift::new(seed * 100 + t);
                    for _ in 0..per {
                        let k = rng.next_u64() % 40;
                        match rng.below(100) {
                            0..=49 => {
                                let id = ids.fetch_add(1, SeqCst);
                                let w = rng.below(max_weight as usize / 3 + 2) as u32;
                                let v = Val::new(id, w, live);
                                calls.fetch_add(1, SeqCst);
                                if rng.below(3) == 0 {
                                    cache.insert_with_ttl(
                                        k,
                                        v,
                                        Duration::from_millis(rng.below(50) as u64),
                                    );
                                } else {
                                    cache.insert(k, v);
                                }
                            }
                            50..=64 => {
                                cache.remove(&k);
                            }
                            65..=69 => clock.advance(Duration::from_millis(10)),
                            70..=71 => {
                                cache.cleanup_expired();
                            }
                            72 => cache.clear(),
                            73..=79 => for (_k, _v) in cache.iter() {},
                            _ => {
                                cache.get(&k);
                            }
                        }
                    }
                });
            }
        });
        cache.validate();
        let s = cache.stats();
        let log2 = log.lock().unwrap().clone();
        let c = |cause| log2.iter().filter(|e| e.2 == cause).count() as u64;
        assert_eq!(s.updates, c(RemovalCause::Replaced), "updates");
        assert_eq!(s.evictions, c(RemovalCause::Evicted), "evictions");
        assert_eq!(s.expirations, c(RemovalCause::Expired), "expirations");
        assert_eq!(s.removals, c(RemovalCause::Removed), "removals");
        assert_eq!(
            s.inserts + s.updates,
            calls.load(SeqCst),
            "inserts + updates"
        );
        assert_eq!(
            s.inserts,
            s.evictions + s.expirations + s.removals + cache.len() as u64
        );
        let resident: Vec<u64> = {
            let mut all = Vec::new();
            // include expired-but-linked: reclaim them first
            cache.cleanup_expired();
            for (_, v) in cache.iter() {
                all.push(v.id);
            }
            all
        };
        let log2 = log.lock().unwrap().clone();
        let mut seen: HashMap<u64, usize> = HashMap::new();
        for e in &log2 {
            *seen.entry(e.1).or_default() += 1;
        }
        for r in &resident {
            *seen.entry(*r).or_default() += 1;
        }
        let n = ids.load(SeqCst) - 1;
        for id in 1..=n {
            assert_eq!(seen.get(&id).copied().unwrap_or(0), 1, "value {id}");
        }
        let sum: u64 = cache.iter().map(|(_, v)| u64::from(v.w)).sum();
        assert_eq!(cache.weighted_size(), sum);
    }
    all_dropped(&live);
}

#[test]
fn concurrent_accounting_small() {
    for seed in 0..if cfg!(debug_assertions) { 10 } else { 40 } {
        concurrent_accounting(seed, 3, 3000, 8, 20);
    }
}

#[test]
fn concurrent_accounting_growing() {
    for seed in 0..if cfg!(debug_assertions) { 2 } else { 10 } {
        concurrent_accounting(seed, 3, 20000, 300, 2000);
    }
}

/// Monitors len and weighted_size while writers churn; one writer per key
/// range writes increasing values so a reader can check monotonicity.
#[test]
fn bounds_and_monotonic_reads_under_churn() {
    use std::sync::atomic::AtomicBool;
    let cap = 50;
    let mw = 200;
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(cap)
        .shards(1)
        .max_weight(mw)
        .weigher(|_k, v: &u64| (*v % 13) as u32)
        .build()
        .unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(SeqCst) {
                assert!(cache.len() <= cap);
                assert!(cache.weighted_size() <= mw);
            }
        });
        // Reader: key 7's values must never go backwards.
        s.spawn(|| {
            let mut last = 0;
            while !stop.load(SeqCst) {
                if let Some(v) = cache.get(&7) {
                    assert!(v >= last, "get went backwards: {v} after {last}");
                    last = v;
                }
            }
        });
        let w = s.spawn(|| {
            let mut rng = XorShift::new(3);
            for i in 1..2_000_000u64 {
                if i % 3 == 0 {
                    cache.insert(7, i);
                } else if i % 3 == 1 {
                    cache.insert(1000 + rng.next_u64() % 200, i);
                } else {
                    cache.remove(&(1000 + rng.next_u64() % 200));
                }
            }
        });
        w.join().unwrap();
        stop.store(true, SeqCst);
    });
    cache.validate();
}

#[test]
fn edge_inputs_do_not_panic() {
    let c: Cache<u64, u64> = Cache::builder()
        .max_capacity(usize::MAX)
        .max_weight(u64::MAX)
        .weigher(|_, v: &u64| *v as u32)
        .build()
        .unwrap();
    for i in 0..1000u64 {
        c.insert(i, u32::MAX as u64);
        c.insert_with_ttl(i + 5000, 1, Duration::MAX);
        c.insert_with_ttl(i + 9000, 1, Duration::ZERO);
    }
    assert_eq!(c.get(&9001), None);
    assert_eq!(c.get(&5001), Some(1));
    c.validate();
    let c: Cache<u64, u64> = Cache::builder()
        .max_capacity(1)
        .shards(64)
        .max_weight(1)
        .weigher(|_, v: &u64| *v as u32)
        .build()
        .unwrap();
    for i in 0..100u64 {
        c.insert(i % 3, i % 3);
        c.validate();
        assert!(c.weighted_size() <= 1);
    }
    let clock = ManualClock::new();
    clock.advance(Duration::MAX);
    let c: Cache<u64, u64> = Cache::builder()
        .max_capacity(4)
        .clock(clock.clone())
        .time_to_live(Duration::MAX)
        .build()
        .unwrap();
    c.insert(1, 1);
    c.insert_with_ttl(2, 2, Duration::from_secs(1));
    let _ = c.get(&1);
    c.cleanup_expired();
    c.validate();
    let c: Cache<u64, u64> = Cache::builder()
        .max_capacity(7)
        .shards(usize::MAX)
        .build()
        .unwrap();
    for i in 0..100 {
        c.insert(i, i);
    }
    assert!(c.len() <= 7);
}

#[test]
fn iter_under_churn() {
    use std::sync::atomic::AtomicBool;
    let cache: Cache<u64, u64> = Cache::builder()
        .max_capacity(400)
        .shards(2)
        .build()
        .unwrap();
    for k in 0..100 {
        cache.insert(k, k);
    }
    for k in 500..600 {
        cache.insert(k, k);
        cache.remove(&k);
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut rng = XorShift::new(9);
            let mut i = 0u64;
            while !stop.load(SeqCst) {
                i += 1;
                let k = 1000 + rng.next_u64() % 250;
                if i % 2 == 0 {
                    cache.insert(k, i)
                } else {
                    cache.remove(&k);
                }
            }
        });
        for _ in 0..if cfg!(debug_assertions) { 6000 } else { 60000 } {
            let mut count = HashMap::new();
            for (k, v) in cache.iter() {
                if k < 1000 {
                    assert_eq!(k, v);
                }
                *count.entry(k).or_insert(0) += 1;
            }
            for k in 0..100 {
                assert_eq!(count.get(&k), Some(&1), "stable key {k}");
            }
            for k in 500..600 {
                assert_eq!(count.get(&k), None, "removed key {k}");
            }
        }
        stop.store(true, SeqCst);
    });
}
