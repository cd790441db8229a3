//! Randomized schedule exploration of the cache with
//! [shuttle](https://docs.rs/shuttle): threads run fixed mixes of inserts
//! (some with TTLs), gets, removes, clock steps, `cleanup_expired` and
//! loads on a few keys, on caches small enough to evict; every schedule's
//! history is checked against a sequential model that allows evictions.
//!
//! Run (only this test file may be built with the feature):
//! ```text
//! cargo test --release --features shuttle --test shuttle_cache -- --nocapture
//! ```
//! Each scenario runs under shuttle's random scheduler and under PCT
//! (depth 3), `MAX_ITERATIONS` schedules each (default 5000). Every run
//! prints its base seed; `SEED=<seed>` replays it (with the same
//! `MAX_ITERATIONS`, running the one test with `--exact`).
//!
//! # What is checked, per schedule
//! - A `get` (or `remove`) that returns a value returns one that some
//!   insert of that key wrote, that insert began before the `get` ended,
//!   and no other write of the key (insert or remove) lies entirely between
//!   the insert's end and the `get`'s start: never a value that was not the
//!   latest. A miss is always allowed (the policy may have evicted the key).
//! - Never an expired value: a value written with a TTL is not returned by
//!   a `get` that began when the clock was already past the insert's end
//!   plus the TTL.
//! - `len() <= max_capacity + inserting threads` whenever a thread looks,
//!   and `len() <= max_capacity` at the end; with a weigher (a value weighs
//!   `value / 10`), `weighted_size() <= max_weight` whenever a thread looks.
//! - At the end, each key holds nothing or the value of one of its last
//!   writes (no completed write came after it); stats count every insert
//!   call exactly once as an insert or an update.
//! - Loads: every caller of `get_or_insert_with` on a key gets the same
//!   value while no other write touches it, and exactly one successful
//!   loader runs, also when the first one fails.
#![cfg(feature = "shuttle")]

mod shuttle_support;

use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;
use std::time::Duration;

use shuttle::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use shuttle::sync::{Arc, Mutex};
use shuttle::thread;
use unlocked::cache::Cache;
use unlocked::{Clock, ManualClock};

const DEFAULT_ITERATIONS: usize = 5000;
const PCT_DEPTH: usize = 3;

/// Deterministic hashing: a replayed schedule must touch the same slots.
type Fixed = BuildHasherDefault<DefaultHasher>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// insert(key, value), with a TTL in nanoseconds if `Some`.
    Insert(u32, u32, Option<u64>),
    Get(u32),
    Remove(u32),
    /// Advance the clock by this many nanoseconds.
    Tick(u64),
    Cleanup,
}

/// One completed operation with its logical invocation/response ticks and
/// the clock around it.
#[derive(Debug, Clone, Copy)]
struct Event {
    op: Op,
    result: Option<u32>,
    inv: usize,
    resp: usize,
    clock_inv: u64,
    clock_resp: u64,
}

#[derive(Clone, Copy)]
struct Scenario {
    capacity: usize,
    /// With a weigher (`value / 10`) and this bound.
    max_weight: Option<u64>,
    programs: &'static [&'static [Op]],
}

fn run_scenario(sc: Scenario) {
    let clock = ManualClock::new();
    let mut builder = Cache::builder()
        .max_capacity(sc.capacity)
        .clock(clock.clone())
        .hasher(Fixed::default());
    if let Some(max) = sc.max_weight {
        builder = builder.max_weight(max).weigher(|_k: &u32, v: &u32| v / 10);
    }
    let cache: Arc<Cache<u32, u32, Fixed>> = Arc::new(builder.build().unwrap());
    let max_weight = sc.max_weight.unwrap_or(u64::MAX);
    let ticks = Arc::new(AtomicUsize::new(0));
    let history = Arc::new(Mutex::new(Vec::new()));
    let threads = sc.programs.len();
    let handles: Vec<_> = sc
        .programs
        .iter()
        .map(|&program| {
            let (cache, ticks, history, clock) = (
                Arc::clone(&cache),
                Arc::clone(&ticks),
                Arc::clone(&history),
                clock.clone(),
            );
            thread::spawn(move || {
                for &op in program {
                    let clock_inv = nanos(&clock);
                    let inv = ticks.fetch_add(1, SeqCst);
                    let result = match op {
                        Op::Insert(k, v, None) => {
                            cache.insert(k, v);
                            None
                        }
                        Op::Insert(k, v, Some(ttl)) => {
                            cache.insert_with_ttl(k, v, Duration::from_nanos(ttl));
                            None
                        }
                        Op::Get(k) => cache.get(&k),
                        Op::Remove(k) => cache.remove(&k),
                        Op::Tick(by) => {
                            clock.advance(Duration::from_nanos(by));
                            None
                        }
                        Op::Cleanup => {
                            cache.cleanup_expired();
                            None
                        }
                    };
                    let resp = ticks.fetch_add(1, SeqCst);
                    let clock_resp = nanos(&clock);
                    assert!(cache.len() <= cache.max_capacity() + threads);
                    assert!(cache.weighted_size() <= max_weight);
                    history.lock().unwrap().push(Event {
                        op,
                        result,
                        inv,
                        resp,
                        clock_inv,
                        clock_resp,
                    });
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let history = history.lock().unwrap().clone();
    check(&history);
    let now = nanos(&clock);
    cache.validate();
    assert!(cache.len() <= sc.capacity);
    for key in keys(&history) {
        let got = cache.get(&key);
        let last = last_writes(&history, key);
        if let Some(v) = got {
            assert!(
                last.iter().any(|w| matches!(w.op, Op::Insert(_, lv, ttl)
                    if lv == v && ttl.map_or(true, |t| w.clock_resp + t > now))),
                "final get({key}) = {v}, last writes {last:?}\n{history:#?}"
            );
        }
    }
    let inserts = history
        .iter()
        .filter(|e| matches!(e.op, Op::Insert(..)))
        .count() as u64;
    let s = cache.stats();
    assert_eq!(s.inserts + s.updates, inserts, "{s:?}");
}

fn nanos(clock: &ManualClock) -> u64 {
    clock.now().as_nanos() as u64
}

fn keys(history: &[Event]) -> Vec<u32> {
    let mut keys: Vec<u32> = history
        .iter()
        .filter_map(|e| match e.op {
            Op::Insert(k, ..) | Op::Get(k) | Op::Remove(k) => Some(k),
            _ => None,
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

fn writes_key(e: &Event, key: u32) -> bool {
    matches!(e.op, Op::Insert(k, ..) | Op::Remove(k) if k == key)
}

/// Writes of `key` that no other completed write of it follows entirely.
fn last_writes(history: &[Event], key: u32) -> Vec<Event> {
    let writes: Vec<&Event> = history.iter().filter(|e| writes_key(e, key)).collect();
    writes
        .iter()
        .filter(|w| !writes.iter().any(|x| x.inv > w.resp))
        .map(|w| **w)
        .collect()
}

/// Checks every returned value against the inserts that could explain it.
fn check(history: &[Event]) {
    for read in history {
        let (key, Some(v)) = (match read.op {
            Op::Get(k) | Op::Remove(k) => (k, read.result),
            _ => continue,
        }) else {
            continue;
        };
        let explained = history.iter().any(|w| {
            let Op::Insert(k, wv, ttl) = w.op else {
                return false;
            };
            if k != key || wv != v || w.inv > read.resp {
                return false;
            }
            // Not expired: its expiry is at least the insert's start plus
            // the TTL; the read must not have begun past its end plus TTL.
            if let Some(t) = ttl {
                if read.clock_inv >= w.clock_resp + t {
                    return false;
                }
            }
            // Not superseded: no other write of the key (nor a read that
            // removed it) lies entirely between this insert and the read.
            !history.iter().any(|x| {
                !std::ptr::eq(x, w)
                    && !std::ptr::eq(x, read)
                    && writes_key(x, key)
                    && x.inv > w.resp
                    && x.resp < read.inv
            })
        });
        assert!(
            explained,
            "{:?} returned {v}, which no latest insert explains\n{history:#?}",
            read.op
        );
    }
}

// ---------------------------------------------------------------------------
// Loads
// ---------------------------------------------------------------------------

/// Three callers load one key in a cache of `capacity`; the first loader
/// may fail (an error: shuttle counts any panic as a failure, even a caught
/// one, so the panicking hand-off is loom's to check). Everyone who gets a
/// value gets the same one, and exactly one successful loader runs.
fn run_loads(capacity: usize, first_fails: bool) {
    let cache: Arc<Cache<u32, u32, Fixed>> = Arc::new(
        Cache::builder()
            .max_capacity(capacity)
            .hasher(Fixed::default())
            .build()
            .unwrap(),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..3u32)
        .map(|t| {
            let (cache, calls) = (Arc::clone(&cache), Arc::clone(&calls));
            thread::spawn(move || {
                cache
                    .try_get_or_insert_with(7, || {
                        if t == 0 && first_fails {
                            return Err("loader failed on purpose");
                        }
                        calls.fetch_add(1, SeqCst);
                        Ok(t + 100)
                    })
                    .ok()
            })
        })
        .collect();
    let values: Vec<u32> = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .collect();
    assert!(values.len() >= 2);
    assert!(values.windows(2).all(|w| w[0] == w[1]), "{values:?}");
    assert_eq!(calls.load(SeqCst), 1);
    assert_eq!(cache.get(&7), Some(values[0]));
}

// ---------------------------------------------------------------------------
// Running under shuttle (the same harness as tests/shuttle_queue.rs)
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

use Op::*;

/// Two keys, capacity 1: every insert of a new key evicts.
/// Explores the test `f` under both schedulers.
fn explore_fn(name: &'static str, f: impl Fn() + Send + Sync + Copy + 'static) {
    shuttle_support::explore(name, DEFAULT_ITERATIONS, PCT_DEPTH, f);
}

#[test]
fn mixed_ops_with_eviction() {
    explore_fn("mixed_ops_with_eviction", || {
        run_scenario(Scenario {
            max_weight: None,
            capacity: 1,
            programs: &[
                &[Insert(1, 10, None), Get(2), Insert(1, 11, None), Get(1)],
                &[Insert(2, 20, None), Get(1), Remove(2), Get(2)],
                &[Get(1), Insert(2, 21, None), Get(2), Get(1)],
            ],
        })
    });
}

/// TTLs racing clock steps, refreshes, removes and cleanup; no eviction.
#[test]
fn mixed_ops_with_expiry() {
    explore_fn("mixed_ops_with_expiry", || {
        run_scenario(Scenario {
            max_weight: None,
            capacity: 8,
            programs: &[
                &[
                    Insert(1, 10, Some(5)),
                    Get(1),
                    Insert(1, 11, Some(5)),
                    Get(1),
                ],
                &[Tick(3), Get(1), Tick(3), Cleanup, Get(2)],
                &[
                    Insert(2, 20, Some(2)),
                    Remove(1),
                    Get(2),
                    Insert(1, 12, None),
                ],
            ],
        })
    });
}

/// Updates, removes and evictions in a cache of 2 over 3 keys.
#[test]
fn mixed_ops_updates_and_removes() {
    explore_fn("mixed_ops_updates_and_removes", || {
        run_scenario(Scenario {
            max_weight: None,
            capacity: 2,
            programs: &[
                &[Insert(1, 10, None), Insert(2, 20, None), Get(3), Remove(1)],
                &[Insert(3, 30, None), Get(1), Insert(1, 11, None), Get(2)],
                &[Get(2), Remove(3), Get(1), Insert(3, 31, Some(4)), Tick(5)],
            ],
        })
    });
}

/// Weighed entries (value / 10) under a bound of 4 in a roomy cache: new
/// keys evict several victims, updates change weights, and a value of
/// weight 5 is turned away (leaving its key absent).
#[test]
fn mixed_ops_with_weights() {
    explore_fn("mixed_ops_with_weights", || {
        run_scenario(Scenario {
            max_weight: Some(4),
            capacity: 8,
            programs: &[
                &[Insert(1, 10, None), Insert(2, 20, None), Get(3), Get(1)],
                &[Insert(3, 30, None), Get(2), Insert(1, 35, None), Get(1)],
                &[Get(2), Insert(2, 50, None), Get(3), Insert(3, 11, None)],
            ],
        })
    });
}

#[test]
fn loads_share_one_value() {
    explore_fn("loads_share_one_value", || run_loads(4, false));
}

#[test]
fn loads_hand_off_after_error() {
    explore_fn("loads_hand_off_after_error", || run_loads(4, true));
}
