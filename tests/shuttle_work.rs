//! Randomized schedule exploration of `WorkQueue` with
//! [shuttle](https://docs.rs/shuttle): producers, workers that complete,
//! fail (with or without a retry backoff), release or vanish, and a maintenance thread that removes an item
//! and reaps expired leases on a manual clock race on one queue; every schedule's outcome is checked against the sequential
//! reference semantics.
//!
//! Run (only this file and `shuttle_queue.rs` may be built with the feature):
//! ```text
//! cargo test --release --features shuttle --test shuttle_work -- --nocapture
//! ```
//! Each scenario runs under shuttle's random scheduler and under PCT
//! (depth 3), `MAX_ITERATIONS` schedules each (default 5000); `SEED=<seed>`
//! replays a run (with the same `MAX_ITERATIONS`, one test with `--exact`).
//!
//! # What is checked, per schedule
//! After all threads join, a sequential drain (clock past every lease,
//! reap, claim and complete whatever is pending) brings the queue to rest.
//! Then, from the threads' logs of successful operations:
//! - every added item ends exactly one way: removed (by exactly one
//!   successful `remove`), completed or failed (a dead letter);
//! - no item is completed twice, and an item reads `Completed` exactly
//!   when one `complete` of it succeeded; a dead letter was never
//!   completed and used `max_attempts` attempts;
//! - `counts()`, `len()` and `snapshot()` equal what the sequential model
//!   gives for those fates (each item's status as the reference queue
//!   would hold it);
//! - `add` refused with `QueueFull` only while `max_size` items were
//!   stored (checked by the bound: stored never exceeds `max_size`).
//!
//! Note that shuttle treats every atomic as `SeqCst`: ordering bugs are
//! loom's and miri's to find (`loom-tests/tests/work.rs`).
#![cfg(feature = "shuttle")]

mod shuttle_support;

mod common;

use std::collections::HashMap;
use std::time::Duration;

use shuttle::sync::{Arc, Mutex};
use shuttle::thread;
use unlocked::{ItemId, ItemStatus, ManualClock, RetryBackoff, StatusCounts, WorkError, WorkQueue};

const DEFAULT_ITERATIONS: usize = 5000;
const PCT_DEPTH: usize = 3;
const LEASE: Duration = Duration::from_secs(1);

/// What a thread saw succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    Added(ItemId),
    Completed(ItemId),
    Removed(ItemId),
}

/// How a worker treats its `n`-th claim.
#[derive(Debug, Clone, Copy)]
enum Act {
    Complete,
    Fail,
    Release,
    Vanish,
}

#[derive(Clone, Copy)]
struct Scenario {
    producers: usize,
    adds_each: usize,
    /// One list of acts per worker; each act consumes one claim.
    workers: &'static [&'static [Act]],
    reaps: usize,
    /// Remove the pre-added item concurrently.
    remover: bool,
    max_size: Option<usize>,
    max_attempts: u32,
    /// A fixed retry backoff of half a lease (the maintenance thread moves
    /// the clock a lease at a time, so items fall due while workers claim).
    backoff: bool,
}

fn run_scenario(sc: Scenario) {
    let clock = ManualClock::new();
    let mut b = WorkQueue::builder()
        .max_attempts(sc.max_attempts)
        .lease(LEASE)
        .clock(clock.clone());
    if let Some(m) = sc.max_size {
        b = b.max_size(m);
    }
    if sc.backoff {
        b = b.retry_backoff(RetryBackoff::fixed(LEASE / 2));
    }
    let q = Arc::new(b.build().unwrap());
    let log = Arc::new(Mutex::new(Vec::<Event>::new()));
    let record = |log: &Mutex<Vec<Event>>, e| log.lock().unwrap().push(e);
    let pre = q.add((usize::MAX, 0)).unwrap();
    record(&log, Event::Added(pre));
    let mut handles = Vec::new();
    for p in 0..sc.producers {
        let (q, log) = (Arc::clone(&q), Arc::clone(&log));
        handles.push(thread::spawn(move || {
            for i in 0..sc.adds_each {
                match q.add((p, i)) {
                    Ok(id) => record(&log, Event::Added(id)),
                    Err(full) => {
                        assert_eq!(full.into_inner(), (p, i));
                        assert!(sc.max_size.is_some(), "QueueFull without a bound");
                    }
                }
                if let Some(m) = sc.max_size {
                    assert!(q.len() <= m);
                }
            }
        }));
    }
    for acts in sc.workers {
        let (q, log) = (Arc::clone(&q), Arc::clone(&log));
        handles.push(thread::spawn(move || {
            for act in acts.iter() {
                let Some(c) = q.claim() else { continue };
                assert!(c.attempts() >= 1 && c.attempts() <= sc.max_attempts);
                match act {
                    Act::Complete => match q.complete(&c) {
                        Ok(()) => {
                            record(&log, Event::Completed(c.id()));
                            let again = q.complete(&c);
                            assert!(
                                matches!(
                                    again,
                                    Err(WorkError::AlreadyFinished | WorkError::Removed)
                                ),
                                "{again:?}"
                            );
                        }
                        Err(WorkError::StaleClaim | WorkError::Removed) => {}
                        Err(e) => panic!("complete: {e}"),
                    },
                    Act::Fail => match q.fail(&c, "planned") {
                        Ok(_) | Err(WorkError::StaleClaim | WorkError::Removed) => {}
                        Err(e) => panic!("fail: {e}"),
                    },
                    Act::Release => match q.release(&c) {
                        Ok(()) | Err(WorkError::StaleClaim | WorkError::Removed) => {}
                        Err(e) => panic!("release: {e}"),
                    },
                    Act::Vanish => drop(c),
                }
            }
        }));
    }
    if sc.reaps > 0 || sc.remover {
        // One maintenance thread removes the pre-added item and reaps (one
        // thread for both keeps schedules within shuttle's PCT limits).
        let (q, log, clock) = (Arc::clone(&q), Arc::clone(&log), clock.clone());
        handles.push(thread::spawn(move || {
            if sc.remover {
                if q.remove(pre).is_some() {
                    record(&log, Event::Removed(pre));
                }
                assert!(q.remove(pre).is_none());
            }
            for _ in 0..sc.reaps {
                clock.advance(LEASE);
                q.reap_expired();
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    // At rest, an item backing off is never stranded: once due, `claim`
    // alone (no `reap_expired`) finds it.
    let backing_off: Vec<ItemId> = q
        .snapshot()
        .iter()
        .filter(|s| s.retry_at().is_some())
        .map(|s| s.id())
        .collect();
    clock.advance(LEASE);
    let mut claimed = Vec::new();
    while let Some(c) = q.claim() {
        claimed.push(c.id());
        q.complete(&c).unwrap();
        record(&log, Event::Completed(c.id()));
    }
    for id in backing_off {
        assert!(claimed.contains(&id), "{id} due but not claimable");
    }
    // Quiescence: drain sequentially.
    loop {
        clock.advance(LEASE);
        q.reap_expired();
        let Some(c) = q.claim() else { break };
        q.complete(&c).unwrap();
        record(&log, Event::Completed(c.id()));
    }
    check(&q, &log.lock().unwrap(), sc);
    drop(q);
    // Run this execution's deferred frees inside it: a free that ran in a
    // later execution would touch this one's shuttle atomics.
    for _ in 0..4 {
        crossbeam_epoch::pin().flush();
    }
}

fn check(q: &WorkQueue<(usize, usize)>, log: &[Event], sc: Scenario) {
    let mut added = Vec::new();
    let mut completed: HashMap<ItemId, usize> = HashMap::new();
    let mut removed: HashMap<ItemId, usize> = HashMap::new();
    for e in log {
        match *e {
            Event::Added(id) => added.push(id),
            Event::Completed(id) => *completed.entry(id).or_default() += 1,
            Event::Removed(id) => *removed.entry(id).or_default() += 1,
        }
    }
    let mut model = StatusCounts::default();
    let mut stored = 0;
    for &id in &added {
        let done = completed.get(&id).copied().unwrap_or(0);
        let gone = removed.get(&id).copied().unwrap_or(0);
        assert!(done <= 1, "{id} completed {done} times");
        assert!(gone <= 1, "{id} removed {gone} times");
        match (gone, q.get(id)) {
            (1, None) => {}
            (1, Some(_)) => panic!("{id} removed but still stored"),
            (_, None) => panic!("{id} lost: not removed, not stored"),
            (_, Some(s)) => {
                stored += 1;
                match s.status() {
                    ItemStatus::Completed => {
                        assert_eq!(done, 1, "{id} completed without a complete")
                    }
                    ItemStatus::Failed => {
                        assert_eq!(done, 0, "{id} dead letter with a successful complete");
                        assert_eq!(s.attempts(), sc.max_attempts, "{id}");
                        assert!(s.last_error().is_some());
                    }
                    other => panic!("{id} left {other:?} at rest"),
                }
                match s.status() {
                    ItemStatus::Completed => model.completed += 1,
                    _ => model.failed += 1,
                }
            }
        }
    }
    assert_eq!(q.counts(), model, "counts at rest");
    assert_eq!(q.len(), stored, "len at rest");
    assert_eq!(q.snapshot().len(), stored, "snapshot at rest");
    if let Some(m) = sc.max_size {
        assert!(stored <= m);
    }
}

use Act::{Complete, Fail, Release, Vanish};

/// Explores `sc` under the random scheduler and under PCT.
fn explore(name: &'static str, sc: Scenario) {
    shuttle_support::explore(name, DEFAULT_ITERATIONS, PCT_DEPTH, move || {
        run_scenario(sc)
    });
}

#[test]
fn producers_failing_and_vanishing_workers_reaper_remover() {
    explore(
        "producers_failing_and_vanishing_workers_reaper_remover",
        Scenario {
            producers: 2,
            adds_each: 2,
            workers: &[&[Fail, Complete, Complete], &[Vanish, Complete, Release]],
            reaps: 2,
            remover: true,
            max_size: None,
            max_attempts: 2,
            backoff: false,
        },
    );
}

#[test]
fn bounded_queue_dead_letters_and_late_completes() {
    explore(
        "bounded_queue_dead_letters_and_late_completes",
        Scenario {
            producers: 2,
            adds_each: 2,
            workers: &[&[Vanish, Fail, Complete], &[Fail, Vanish, Complete]],
            reaps: 2,
            remover: true,
            max_size: Some(3),
            max_attempts: 1,
            backoff: false,
        },
    );
}

#[test]
fn many_workers_one_producer() {
    explore(
        "many_workers_one_producer",
        Scenario {
            producers: 1,
            adds_each: 3,
            workers: &[&[Complete, Complete], &[Vanish, Complete], &[Release, Fail]],
            reaps: 1,
            remover: false,
            max_size: None,
            max_attempts: 3,
            backoff: false,
        },
    );
}

#[test]
fn failing_workers_with_retry_backoff_reaper_remover() {
    explore(
        "failing_workers_with_retry_backoff_reaper_remover",
        Scenario {
            producers: 1,
            adds_each: 2,
            workers: &[&[Fail, Fail, Complete], &[Fail, Vanish, Complete]],
            reaps: 2,
            remover: true,
            max_size: None,
            max_attempts: 3,
            backoff: true,
        },
    );
}

/// A claim shows the item's last error as of the claim: a reaper that
/// expires the new lease between the claim and the claim's read of the
/// record (found in review) must not make a first claim report "lease
/// expired".
#[test]
fn a_first_claim_never_shows_its_own_expiry() {
    const LEASE: Duration = Duration::from_secs(1);
    shuttle_support::explore(
        "first_claim_last_error",
        DEFAULT_ITERATIONS,
        PCT_DEPTH,
        || {
            let clock = ManualClock::new();
            let q = Arc::new(
                WorkQueue::builder()
                    .max_attempts(3)
                    .lease(LEASE)
                    .clock(clock.clone())
                    .build()
                    .unwrap(),
            );
            q.add(7u32).unwrap();
            let w = Arc::clone(&q);
            let worker = thread::spawn(move || w.claim().map(|c| c.last_error()));
            let r = Arc::clone(&q);
            let reaper = thread::spawn(move || {
                clock.advance(LEASE);
                r.reap_expired()
            });
            let seen = worker.join().unwrap();
            let reaped = reaper.join().unwrap();
            if let Some(seen) = seen {
                assert_eq!(
                    seen, None,
                    "a first claim showed a reason (reaped {reaped})"
                );
            }
        },
    );
}
