//! Randomized schedule exploration of `ConfigStore` with
//! [shuttle](https://docs.rs/shuttle): readers (plain `load` and cached
//! `reader()`), two writers and subscribers race on one store.
//!
//! Run (only shuttle test files may be built with the feature):
//! ```text
//! cargo test --release --features shuttle --test shuttle_config -- --nocapture
//! ```
//! Each scenario runs under shuttle's random scheduler and under PCT
//! (depth 3), `MAX_ITERATIONS` schedules each (default 3000), and prints
//! its base seed; `SEED=<seed>` replays it.
//!
//! Shuttle switches threads at the facade's primitives: the writer lock,
//! the `published` version, the subscription check. arc-swap's internals
//! use std atomics and run without a switch inside them (loom and miri
//! cover orderings; shuttle covers whole-scenario interleavings).
//!
//! # What is checked, per schedule
//! - Every snapshot a reader sees is one that was committed: its value
//!   matches the version (each commit adds one to both fields), and the
//!   (version, value) pair is in the writers' log of commits.
//! - The versions any one reader or subscriber sees never go backwards.
//! - Writers get versions 2..=N+1 with no gap or repeat.
//! - A subscriber eventually sees the last commit; one that subscribed
//!   before any commit never reports a version twice.
#![cfg(feature = "shuttle")]

mod shuttle_support;

use std::collections::BTreeSet;

use shuttle::sync::{Arc, Mutex};
use shuttle::thread;
use unlocked::config::ConfigStore;

const DEFAULT_ITERATIONS: usize = 3000;
const PCT_DEPTH: usize = 3;

#[derive(Clone, Debug)]
struct Pair {
    a: u64,
    b: u64,
}

/// Checks one observed value against its version; returns the version.
fn check(version: u64, p: &Pair, last: &mut u64, seen: &mut Vec<(u64, u64)>) {
    assert_eq!(p.a, p.b, "torn snapshot");
    assert_eq!(version, p.a + 1, "value and version from different commits");
    assert!(
        version >= *last,
        "versions went backwards: {last} then {version}"
    );
    *last = version;
    seen.push((version, p.a));
}

/// `readers` readers, two writers committing `commits` each, `subscribers`
/// subscribers; every invariant of the module docs.
fn scenario(readers: usize, commits: u64, subscribers: usize) {
    let store = Arc::new(ConfigStore::new(Pair { a: 0, b: 0 }));
    let log = Arc::new(Mutex::new(vec![(1u64, 0u64)]));
    let last_version = 1 + 2 * commits;
    let mut observers = Vec::new();
    for r in 0..readers {
        let store = Arc::clone(&store);
        observers.push(thread::spawn(move || {
            let mut reader = store.reader();
            let (mut last, mut seen) = (0, Vec::new());
            for _ in 0..3 {
                if r % 2 == 0 {
                    let s = store.load();
                    check(s.version().get(), &s, &mut last, &mut seen);
                } else {
                    let c = reader.load();
                    check(c.version().get(), c, &mut last, &mut seen);
                }
            }
            seen
        }));
    }
    for _ in 0..subscribers {
        let store = Arc::clone(&store);
        observers.push(thread::spawn(move || {
            let mut sub = store.subscribe();
            let (mut last, mut seen) = (sub.seen().get(), Vec::new());
            while last < last_version {
                match sub.try_changed() {
                    Some(s) => {
                        assert!(s.version().get() > last, "a version reported twice");
                        check(s.version().get(), &s, &mut last, &mut seen);
                    }
                    None => thread::yield_now(),
                }
            }
            seen
        }));
    }
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let store = Arc::clone(&store);
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let mut got = Vec::new();
                for _ in 0..commits {
                    let mut value = 0;
                    let v = store
                        .update(|p| -> Result<(), ()> {
                            p.a += 1;
                            p.b += 1;
                            value = p.a;
                            Ok(())
                        })
                        .unwrap();
                    log.lock().unwrap().push((v.get(), value));
                    got.push(v.get());
                }
                got
            })
        })
        .collect();
    let mut versions: Vec<u64> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (2..=last_version).collect::<Vec<_>>());
    let committed: BTreeSet<(u64, u64)> = log.lock().unwrap().iter().copied().collect();
    for o in observers {
        for pair in o.join().unwrap() {
            assert!(committed.contains(&pair), "{pair:?} was never committed");
        }
    }
    assert_eq!(store.load().version().get(), last_version);
}

/// Explores the test `f` under both schedulers.
fn explore(name: &'static str, f: impl Fn() + Send + Sync + Copy + 'static) {
    shuttle_support::explore(name, DEFAULT_ITERATIONS, PCT_DEPTH, f);
}

#[test]
fn readers_two_writers_one_subscriber() {
    explore("readers_two_writers_one_subscriber", || scenario(2, 2, 1));
}

#[test]
fn many_readers_two_writers() {
    explore("many_readers_two_writers", || scenario(4, 1, 0));
}

#[test]
fn two_subscribers_two_writers() {
    explore("two_subscribers_two_writers", || scenario(1, 2, 2));
}

/// `update_if` from two threads that read the same version: exactly one
/// commits, the other gets a conflict naming the winner's version.
#[test]
fn update_if_conflict() {
    explore("update_if_conflict", || {
        let store = Arc::new(ConfigStore::new(Pair { a: 0, b: 0 }));
        let seen = store.load().version();
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let store = Arc::clone(&store);
                thread::spawn(move || {
                    store.update_if(seen, |p| -> Result<(), ()> {
                        p.a += 1;
                        p.b += 1;
                        Ok(())
                    })
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1);
        for r in results {
            if let Err(e) = r {
                assert!(matches!(
                    e,
                    unlocked::config::UpdateError::Conflict { actual, .. } if actual.get() == 2
                ));
            }
        }
        assert_eq!(store.load().a, 1);
    });
}
