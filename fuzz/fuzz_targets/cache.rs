//! Differential fuzzing of `Cache` against a `HashMap` model on a
//! `ManualClock`.
//!
//! Two modes, from the input: *roomy* (capacity 64 over at most 64 keys:
//! nothing is ever evicted, so every answer must equal the model's) and
//! *small* (capacity 1 to 8 over up to 64 keys: the policy evicts, so a
//! lookup may miss a key the model holds, but a hit must return the
//! model's value, `len` stays within capacity, and the stats must add up).
//! Values carry a live counter: a value dropped twice or never fails.
//!
//! Either mode may add a weigher (a value weighs `value % 8`): roomy with a
//! `max_weight` nothing reaches, small with one of 1 to 16 (so entries
//! heavier than a shard's share are turned away and several victims may
//! leave for one newcomer). The model tracks the total weight: the cache's
//! `weighted_size` never exceeds `max_weight`, agrees with the model when
//! roomy, and covers the weight of what `iter` yields.

#![no_main]

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicIsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use unlocked::cache::Cache;
use unlocked::{Clock, ManualClock};
use unlocked_fuzz::collect_garbage;

#[derive(Arbitrary, Debug)]
struct Input {
    /// 0: roomy; otherwise capacity `small % 8 + 1`.
    small: u8,
    /// Use 1 shard or let the cache pick (several only for big caches).
    shards: u8,
    /// 0: no weigher; otherwise a weigher, and in small mode
    /// `max_weight = weight % 16 + 1`.
    weight: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Insert(u8, u16),
    /// TTL in milliseconds `ttl % 16` (0: expired at once).
    InsertTtl(u8, u16, u8),
    Get(u8),
    ContainsKey(u8),
    Remove(u8),
    /// Milliseconds `n % 8`.
    Advance(u8),
    Cleanup,
    Clear,
    Len,
    GetOrInsert(u8, u16),
    TryGetOrInsert(u8, u16, bool),
    Iter,
}

/// A value whose creations and drops are counted.
#[derive(Debug)]
struct Tracked {
    value: u16,
    live: Arc<AtomicIsize>,
}

impl Tracked {
    fn new(value: u16, live: &Arc<AtomicIsize>) -> Self {
        live.fetch_add(1, SeqCst);
        Tracked {
            value,
            live: Arc::clone(live),
        }
    }
}

impl Clone for Tracked {
    fn clone(&self) -> Self {
        Tracked::new(self.value, &self.live)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        assert!(self.live.fetch_sub(1, SeqCst) > 0, "value dropped twice");
    }
}

/// The model: key → (value, expiry in ns or None).
type Model = HashMap<u8, (u16, Option<u64>)>;

/// A value's weight under the fuzzer's weigher.
fn weight_of(v: u16) -> u64 {
    u64::from(v % 8)
}

/// The model's total weight: of every entry, and of the unexpired ones
/// (expired entries weigh until the cache reclaims them).
fn model_weight(model: &Model, weighed: bool, now: u64) -> (u64, u64) {
    let w = |v: u16| if weighed { weight_of(v) } else { 1 };
    let all = model.values().map(|&(v, _)| w(v)).sum();
    let unexpired = model
        .values()
        .filter(|(_, e)| e.map_or(true, |e| now < e))
        .map(|&(v, _)| w(v))
        .sum();
    (all, unexpired)
}

fn model_get(model: &Model, k: u8, now: u64) -> Option<u16> {
    match model.get(&k) {
        Some(&(v, e)) if e.map_or(true, |e| now < e) => Some(v),
        _ => None,
    }
}

fn check(roomy: bool, got: Option<u16>, want: Option<u16>, what: &str, step: usize) {
    if roomy || got.is_some() {
        assert_eq!(got, want, "step {step}: {what}");
    }
}

fn run(input: &Input, live: &Arc<AtomicIsize>) -> usize {
    let roomy = input.small == 0;
    let capacity = if roomy {
        64
    } else {
        usize::from(input.small % 8) + 1
    };
    let clock = ManualClock::new();
    let mut builder = Cache::builder()
        .max_capacity(capacity)
        .clock(clock.clone())
        .hasher(BuildHasherDefault::<DefaultHasher>::default());
    if input.shards % 2 == 1 && !roomy {
        builder = builder.shards(2);
    }
    let weighed = input.weight != 0;
    let max_weight = if !weighed {
        u64::MAX
    } else if roomy {
        64 * 7
    } else {
        u64::from(input.weight % 16) + 1
    };
    if weighed {
        builder = builder
            .max_weight(max_weight)
            .weigher(|_k: &u8, v: &Tracked| weight_of(v.value) as u32);
    }
    let cache: Cache<u8, Tracked, _> = builder.build().unwrap();
    let mut model = Model::new();
    let key = |k: u8| k % 64;
    let mut retired = 0;
    for (step, &op) in input.ops.iter().enumerate() {
        let now = clock.now().as_nanos() as u64;
        match op {
            Op::Insert(k, v) => {
                cache.insert(key(k), Tracked::new(v, live));
                model.insert(key(k), (v, None));
                retired += 1;
            }
            Op::InsertTtl(k, v, ttl) => {
                let ttl = Duration::from_millis(u64::from(ttl % 16));
                cache.insert_with_ttl(key(k), Tracked::new(v, live), ttl);
                model.insert(key(k), (v, Some(now + ttl.as_nanos() as u64)));
                retired += 1;
            }
            Op::Get(k) => {
                let got = cache.get(&key(k)).map(|t| t.value);
                check(roomy, got, model_get(&model, key(k), now), "get", step);
            }
            Op::ContainsKey(k) => {
                let got = cache.contains_key(&key(k));
                let want = model_get(&model, key(k), now).is_some();
                if roomy || got {
                    assert_eq!(got, want, "step {step}: contains_key");
                }
            }
            Op::Remove(k) => {
                let got = cache.remove(&key(k)).map(|t| t.value);
                let want = model_get(&model, key(k), now);
                model.remove(&key(k));
                check(roomy, got, want, "remove", step);
                retired += 1;
            }
            Op::Advance(n) => clock.advance(Duration::from_millis(u64::from(n % 8))),
            Op::Cleanup => {
                let n = cache.cleanup_expired();
                if roomy {
                    let expired = model
                        .values()
                        .filter(|(_, e)| e.is_some_and(|e| now >= e))
                        .count();
                    // Writers may have reclaimed some already.
                    assert!(n <= expired, "step {step}: cleanup {n} > {expired}");
                }
                model.retain(|_, (_, e)| e.map_or(true, |e| now < e));
                retired += n;
            }
            Op::Clear => {
                retired += cache.len();
                cache.clear();
                model.clear();
            }
            Op::Len => {
                let len = cache.len();
                assert!(len <= capacity, "step {step}: len {len} > {capacity}");
                let unexpired = model
                    .values()
                    .filter(|(_, e)| e.map_or(true, |e| now < e))
                    .count();
                if roomy {
                    // Expired entries count until reclaimed.
                    assert!(len >= unexpired && len <= model.len(), "step {step}: len");
                    let (all, unexpired) = model_weight(&model, weighed, now);
                    let w = cache.weighted_size();
                    assert!(w >= unexpired && w <= all, "step {step}: weight {w}");
                }
            }
            Op::GetOrInsert(k, v) => {
                let got = cache
                    .get_or_insert_with(key(k), || Tracked::new(v, live))
                    .value;
                let want = model_get(&model, key(k), now);
                match want {
                    Some(w) if roomy => assert_eq!(got, w, "step {step}: get_or_insert"),
                    Some(w) if got != v => assert_eq!(got, w, "step {step}: get_or_insert"),
                    _ => {
                        assert_eq!(got, v, "step {step}: get_or_insert loaded");
                        model.insert(key(k), (v, None));
                    }
                }
                retired += 1;
            }
            Op::TryGetOrInsert(k, v, fail) => {
                let got = cache
                    .try_get_or_insert_with(key(k), || {
                        if fail {
                            Err(())
                        } else {
                            Ok(Tracked::new(v, live))
                        }
                    })
                    .map(|t| t.value);
                let want = model_get(&model, key(k), now);
                match (got, want) {
                    (Ok(g), Some(w)) if roomy || g != v => assert_eq!(g, w, "step {step}"),
                    (Ok(g), _) => {
                        assert_eq!(g, v, "step {step}: try_get_or_insert loaded");
                        model.insert(key(k), (v, None));
                    }
                    (Err(()), w) => {
                        assert!(fail, "step {step}: error without a failing loader");
                        assert!(!roomy || w.is_none(), "step {step}: loader ran on a hit");
                    }
                }
                retired += 1;
            }
            Op::Iter => {
                let mut seen: Vec<(u8, u16)> = cache.iter().map(|(k, t)| (k, t.value)).collect();
                seen.sort_unstable();
                assert!(
                    seen.windows(2).all(|w| w[0].0 != w[1].0),
                    "step {step}: iter dup"
                );
                for &(k, v) in &seen {
                    assert_eq!(model_get(&model, k, now), Some(v), "step {step}: iter");
                }
                let w: u64 = seen
                    .iter()
                    .map(|&(_, v)| if weighed { weight_of(v) } else { 1 })
                    .sum();
                assert!(w <= cache.weighted_size(), "step {step}: iter weight");
                if roomy {
                    let want = model
                        .keys()
                        .filter(|&&k| model_get(&model, k, now).is_some())
                        .count();
                    assert_eq!(seen.len(), want, "step {step}: iter count");
                }
            }
        }
        assert!(cache.len() <= capacity);
        assert!(
            cache.weighted_size() <= max_weight,
            "step {step}: over max_weight"
        );
        if !weighed {
            assert_eq!(cache.weighted_size(), cache.len() as u64);
        }
        cache.validate();
    }
    let s = cache.stats();
    let inserts = input
        .ops
        .iter()
        .filter(|op| matches!(op, Op::Insert(..) | Op::InsertTtl(..)))
        .count() as u64;
    assert!(s.inserts + s.updates >= inserts, "{s:?}");
    assert_eq!(
        s.inserts,
        s.evictions + s.expirations + s.removals + cache.len() as u64,
        "every insert leaves or stays: {s:?}"
    );
    retired
}

fuzz_target!(|input: Input| {
    let live = Arc::new(AtomicIsize::new(0));
    let retired = run(&input, &live);
    collect_garbage(retired + input.ops.len());
    for _ in 0..64 {
        if live.load(SeqCst) == 0 {
            break;
        }
        collect_garbage(256);
    }
    assert_eq!(live.load(SeqCst), 0, "values leaked");
});
