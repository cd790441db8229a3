//! Integration tests of `WorkQueue`: API and error behaviour, a seeded
//! differential run against the sequential reference (`common/work_model.rs`,
//! the seeds' `Mutex<HashMap + VecDeque>` design), drop counting, waiting
//! and closing, and multi-threaded runs checked for exactly-once settling.
//!
//! Heavy stress tests are `#[ignore]`d; run them in release:
//! `cargo test --release --test work -- --ignored`.
//! Under miri (scaled down):
//! ```text
//! MIRIFLAGS="-Zmiri-tree-borrows -Zmiri-ignore-leaks" cargo +nightly miri test --test work
//! ```

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::work_model::{RefClaim, RefWorkQueue};
use common::{scaled, XorShift};
use unlocked::work::{LEASE_EXPIRED, MAX_ATTEMPTS};
use unlocked::{
    Claim, ItemId, ItemStatus, ManualClock, QueueFull, RetryBackoff, StatusCounts, WorkError,
    WorkQueue, WorkQueueBuilder,
};

const LEASE: Duration = Duration::from_secs(10);

/// A builder with the tests' lease on `clock`.
fn manual_builder(
    max_size: Option<usize>,
    max_attempts: u32,
    clock: &ManualClock,
) -> WorkQueueBuilder<u64> {
    let b = WorkQueue::builder()
        .max_attempts(max_attempts)
        .lease(LEASE)
        .clock(clock.clone());
    match max_size {
        Some(m) => b.max_size(m),
        None => b,
    }
}

fn manual(max_size: Option<usize>, max_attempts: u32) -> (WorkQueue<u64>, ManualClock) {
    let clock = ManualClock::new();
    (
        manual_builder(max_size, max_attempts, &clock)
            .build()
            .unwrap(),
        clock,
    )
}

/// Advances the epoch until `drops` reaches `expected` or a generous bound
/// of attempts passes (removed items are freed through the epoch, which a
/// test running beside this one may hold back for a while), then returns
/// the count.
fn drops_after_flush(drops: &AtomicUsize, expected: usize) -> usize {
    for _ in 0..scaled(10_000, 64) {
        if drops.load(SeqCst) >= expected {
            break;
        }
        crossbeam_epoch::pin().flush();
        thread::sleep(Duration::from_millis(1));
    }
    drops.load(SeqCst)
}

/// A value that counts its drops.
#[derive(Debug)]
struct Tracked {
    drops: Arc<AtomicUsize>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

// ---------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------

#[test]
fn builder_refuses_bad_settings_with_a_message() {
    let e = WorkQueue::<u8>::builder().max_size(0).build().unwrap_err();
    assert!(e.to_string().contains("max_size"), "{e}");
    let e = WorkQueue::<u8>::builder()
        .max_attempts(0)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("max_attempts"), "{e}");
    let e = WorkQueue::<u8>::builder()
        .max_attempts(MAX_ATTEMPTS + 1)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("max_attempts"), "{e}");
    // The limit written out (found in review: "2^29 - 1" only).
    assert!(e.to_string().contains(&MAX_ATTEMPTS.to_string()), "{e}");
    let e = WorkQueue::<u8>::builder()
        .lease(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("lease"), "{e}");
    let _: &dyn std::error::Error = &e;
    assert!(WorkQueue::<u8>::builder()
        .max_attempts(MAX_ATTEMPTS)
        .build()
        .is_ok());
}

#[test]
fn errors_display_and_hand_values_back() {
    let q = WorkQueue::builder().max_size(1).build().unwrap();
    q.add(String::from("a")).unwrap();
    let full: QueueFull<String> = q.add(String::from("b")).unwrap_err();
    assert!(full.to_string().contains("full"));
    assert_eq!(format!("{full:?}"), "QueueFull(..)");
    assert_eq!(full.into_inner(), "b");
    for e in [
        WorkError::StaleClaim,
        WorkError::AlreadyFinished,
        WorkError::Removed,
    ] {
        assert!(!e.to_string().is_empty());
        let _: &dyn std::error::Error = &e;
    }
}

#[test]
fn work_queue_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<WorkQueue<String>>();
    send_sync::<Claim<String>>();
    send_sync::<unlocked::ItemSnapshot<String>>();
}

#[test]
fn full_lifecycle_and_status_machine() {
    let (q, clock) = manual(None, 2);
    let a = q.add(1).unwrap();
    let b = q.add(2).unwrap();
    assert_ne!(a, b);
    assert_eq!(q.len(), 2);
    // claim hands out the oldest pending item, with a lease.
    let ca = q.claim().unwrap();
    assert_eq!((ca.id(), *ca.data(), ca.attempts()), (a, 1, 1));
    assert_eq!(ca.deadline(), LEASE);
    assert_eq!(q.get(a).unwrap().status(), ItemStatus::Processing);
    // release: back to the tail, attempt not counted.
    q.release(&ca).unwrap();
    assert_eq!(q.release(&ca), Err(WorkError::AlreadyFinished));
    let cb = q.claim().unwrap();
    assert_eq!(cb.id(), b);
    let ca = q.claim().unwrap();
    assert_eq!((ca.id(), ca.attempts()), (a, 1));
    // fail: retry, then dead letter at max_attempts.
    assert_eq!(q.fail(&ca, "boom"), Ok(ItemStatus::Pending));
    assert_eq!(q.fail(&ca, "again"), Err(WorkError::AlreadyFinished));
    let ca = q.claim().unwrap();
    assert_eq!(ca.attempts(), 2);
    assert_eq!(ca.last_error().as_deref(), Some("boom"));
    assert_eq!(q.fail(&ca, "boom 2"), Ok(ItemStatus::Failed));
    let dead = q.get(a).unwrap();
    assert_eq!((dead.status(), dead.attempts()), (ItemStatus::Failed, 2));
    assert_eq!(dead.last_error().as_deref(), Some("boom 2"));
    // complete.
    q.complete(&cb).unwrap();
    assert_eq!(q.complete(&cb), Err(WorkError::AlreadyFinished));
    assert_eq!(
        q.counts(),
        StatusCounts {
            pending: 0,
            processing: 0,
            completed: 1,
            failed: 1
        }
    );
    assert!(q.claim().is_none());
    // remove.
    assert_eq!(q.remove(a).unwrap().status(), ItemStatus::Failed);
    assert!(q.remove(a).is_none());
    assert!(q.get(a).is_none());
    assert_eq!(q.len(), 1);
    clock.advance(LEASE * 10);
    assert_eq!(q.reap_expired(), 0);
}

#[test]
fn lease_expiry_counts_an_attempt_and_refuses_stale_claims() {
    let (q, clock) = manual(None, 3);
    let id = q.add(7).unwrap();
    let first = q.claim().unwrap();
    clock.advance(LEASE - Duration::from_nanos(1));
    assert_eq!(q.reap_expired(), 0);
    clock.advance(Duration::from_nanos(1));
    assert_eq!(q.reap_expired(), 1);
    assert_eq!(q.reap_expired(), 0);
    let snap = q.get(id).unwrap();
    assert_eq!((snap.status(), snap.attempts()), (ItemStatus::Pending, 1));
    assert_eq!(snap.last_error().as_deref(), Some(LEASE_EXPIRED));
    let second = q.claim().unwrap();
    assert_eq!(second.attempts(), 2);
    assert_eq!(q.complete(&first), Err(WorkError::StaleClaim));
    assert_eq!(q.fail(&first, "late"), Err(WorkError::StaleClaim));
    assert_eq!(q.release(&first), Err(WorkError::StaleClaim));
    q.complete(&second).unwrap();
    assert_eq!(q.get(id).unwrap().status(), ItemStatus::Completed);
}

#[test]
fn a_job_that_kills_its_worker_ends_as_a_dead_letter() {
    let (q, clock) = manual(None, 3);
    let id = q.add(0).unwrap();
    for attempt in 1..=3 {
        let c = q.claim().expect("still pending");
        assert_eq!(c.attempts(), attempt);
        drop(c); // the worker vanished
        clock.advance(LEASE);
        assert_eq!(q.reap_expired(), 1);
    }
    assert!(q.claim().is_none());
    let snap = q.get(id).unwrap();
    assert_eq!((snap.status(), snap.attempts()), (ItemStatus::Failed, 3));
}

#[test]
fn removed_item_refuses_its_claim() {
    let (q, _) = manual(None, 3);
    let id = q.add(1).unwrap();
    let c = q.claim().unwrap();
    let removed = q.remove(id).unwrap();
    assert_eq!(removed.status(), ItemStatus::Processing);
    assert_eq!(q.complete(&c), Err(WorkError::Removed));
    assert_eq!(q.fail(&c, "x"), Err(WorkError::Removed));
    assert_eq!(q.release(&c), Err(WorkError::Removed));
    assert!(q.is_empty());
}

/// An expired lease counts its attempt whether the worker's `release` or
/// the reaper gets there first: the same history never gives a retry in
/// one order and a dead letter in the other (found in review: a release
/// before the reap gave the attempt back, so a worker that always overran
/// its lease and released could retry the item forever).
#[test]
fn a_release_after_the_lease_ran_out_counts_the_attempt() {
    for reap_first in [false, true] {
        let (q, clock) = manual(None, 1);
        let id = q.add(7).unwrap();
        let claim = q.claim().unwrap();
        clock.advance(LEASE);
        if reap_first {
            assert_eq!(q.reap_expired(), 1);
        }
        assert_eq!(q.release(&claim), Ok(()));
        let item = q.get(id).unwrap();
        assert_eq!(
            (item.status(), item.attempts(), item.last_error().as_deref()),
            (ItemStatus::Failed, 1, Some(LEASE_EXPIRED)),
            "reap first: {reap_first}"
        );
        assert!(q.claim().is_none(), "a dead letter is not claimable");
    }
    // Within the lease a release still gives the attempt back.
    let (q, clock) = manual(None, 2);
    q.add(7).unwrap();
    let first = q.claim().unwrap();
    clock.advance(LEASE / 2);
    q.release(&first).unwrap();
    let second = q.claim().unwrap();
    assert_eq!(second.attempts(), 1);
    clock.advance(LEASE);
    q.release(&second).unwrap();
    assert_eq!(
        q.claim().unwrap().attempts(),
        2,
        "the expired lease counted"
    );
}

#[test]
fn removed_pending_item_is_skipped_and_ids_are_not_reused() {
    let (q, _) = manual(None, 3);
    let a = q.add(1).unwrap();
    let b = q.add(2).unwrap();
    q.remove(a).unwrap();
    let c = q.add(3).unwrap(); // reuses a's slot, with a new generation
    assert_ne!(c, a);
    assert!(q.get(a).is_none());
    assert_eq!(*q.get(c).unwrap().data(), 3);
    assert_eq!(q.claim().unwrap().id(), b);
    assert_eq!(q.claim().unwrap().id(), c);
    assert!(q.claim().is_none());
}

#[test]
fn max_size_counts_every_status_until_removed() {
    let (q, _) = manual(Some(2), 1);
    let a = q.add(1).unwrap();
    q.add(2).unwrap();
    let c = q.claim().unwrap();
    q.complete(&c).unwrap();
    assert_eq!(q.add(3).unwrap_err().into_inner(), 3);
    q.remove(a).unwrap();
    q.add(3).unwrap();
    assert_eq!(q.len(), 2);
}

#[test]
fn snapshot_is_owned_and_in_add_order() {
    let (q, clock) = manual(None, 3);
    let ids: Vec<ItemId> = (0..5)
        .map(|i| {
            clock.advance(Duration::from_millis(1));
            q.add(i).unwrap()
        })
        .collect();
    q.remove(ids[1]).unwrap();
    let snap = q.snapshot();
    // The queue is free while we hold the snapshot.
    q.add(99).unwrap();
    q.claim().unwrap();
    let seen: Vec<ItemId> = snap.iter().map(|s| s.id()).collect();
    assert_eq!(seen, [ids[0], ids[2], ids[3], ids[4]]);
    assert!(snap.iter().all(|s| s.status() == ItemStatus::Pending));
}

#[test]
fn debug_output_names_the_settings() {
    let q = WorkQueue::<u8>::builder().max_size(3).build().unwrap();
    let s = format!("{q:?}");
    assert!(
        s.contains("max_size: Some(3)") && s.contains("closed: false"),
        "{s}"
    );
    q.add(4).unwrap();
    let c = q.claim().unwrap();
    assert!(format!("{c:?}").contains("data: 4"));
    assert!(format!("{:?}", q.get(c.id()).unwrap()).contains("Processing"));
}

// ---------------------------------------------------------------------------
// Retry backoff
// ---------------------------------------------------------------------------

fn backing_off(backoff: RetryBackoff, max_attempts: u32) -> (WorkQueue<u64>, ManualClock) {
    let clock = ManualClock::new();
    let q = WorkQueue::builder()
        .max_attempts(max_attempts)
        .lease(LEASE)
        .retry_backoff(backoff)
        .clock(clock.clone())
        .build()
        .unwrap();
    (q, clock)
}

const SEC: Duration = Duration::from_secs(1);

#[test]
fn builder_refuses_a_backoff_that_cannot_work() {
    let e = WorkQueue::<u8>::builder()
        .retry_backoff(RetryBackoff::exponential(Duration::ZERO, SEC))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("retry_backoff"), "{e}");
    assert!(e.to_string().contains("base"), "{e}");
    let e = WorkQueue::<u8>::builder()
        .retry_backoff(RetryBackoff::exponential(SEC * 2, SEC))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("max must be at least base"), "{e}");
    for ok in [
        RetryBackoff::none(),
        RetryBackoff::fixed(Duration::ZERO),
        RetryBackoff::fixed(SEC),
        RetryBackoff::exponential(SEC, SEC),
    ] {
        let q = WorkQueue::<u8>::builder()
            .retry_backoff(ok)
            .build()
            .unwrap();
        assert_eq!(q.retry_backoff(), ok);
    }
    assert!(RetryBackoff::fixed(Duration::ZERO).is_none());
    assert_eq!(RetryBackoff::default(), RetryBackoff::none());
}

#[test]
fn failed_item_waits_out_its_backoff_then_joins_the_tail() {
    let (q, clock) = backing_off(RetryBackoff::exponential(SEC, SEC * 3), 4);
    let a = q.add(1).unwrap();
    let ca = q.claim().unwrap();
    assert_eq!(q.fail(&ca, "first"), Ok(ItemStatus::Pending));
    // Refused as before: the claim already settled the item.
    assert_eq!(q.fail(&ca, "again"), Err(WorkError::AlreadyFinished));
    assert_eq!(q.complete(&ca), Err(WorkError::AlreadyFinished));
    assert_eq!(q.release(&ca), Err(WorkError::AlreadyFinished));
    let snap = q.get(a).unwrap();
    assert_eq!(
        (snap.status(), snap.attempts(), snap.retry_at()),
        (ItemStatus::Pending, 1, Some(SEC))
    );
    assert_eq!(snap.last_error().as_deref(), Some("first"));
    assert_eq!(q.counts().pending, 1);
    assert!(format!("{snap:?}").contains("retry_at"));
    assert!(q.claim().is_none(), "still backing off");
    // An item added meanwhile is claimed first; the due one joins the tail.
    let b = q.add(2).unwrap();
    clock.advance(SEC);
    let c = q.add(3).unwrap();
    let order: Vec<ItemId> = (0..3).map(|_| q.claim().unwrap().id()).collect();
    assert_eq!(order, [b, c, a]);
    assert_eq!(
        q.get(a).unwrap().retry_at(),
        None,
        "claimed: no longer waiting"
    );
}

#[test]
fn exponential_delays_grow_to_max_and_dead_letters_do_not_wait() {
    let (q, clock) = backing_off(RetryBackoff::exponential(SEC, SEC * 3), 4);
    let id = q.add(1).unwrap();
    for (attempt, delay) in [(1u32, 1u32), (2, 2), (3, 3)] {
        let c = q.claim().expect("due");
        assert_eq!(c.attempts(), attempt);
        assert_eq!(c.last_error().is_some(), attempt > 1);
        assert_eq!(
            q.fail(&c, format!("fail {attempt}")),
            Ok(ItemStatus::Pending)
        );
        assert_eq!(
            q.get(id).unwrap().retry_at(),
            Some(unlocked::Clock::now(&clock) + SEC * delay)
        );
        clock.advance(SEC * delay - Duration::from_nanos(1));
        assert!(
            q.claim().is_none(),
            "attempt {attempt}: one nanosecond early"
        );
        clock.advance(Duration::from_nanos(1));
    }
    let c = q.claim().unwrap();
    assert_eq!(c.attempts(), 4);
    assert_eq!(q.fail(&c, "last"), Ok(ItemStatus::Failed));
    let dead = q.get(id).unwrap();
    assert_eq!((dead.status(), dead.retry_at()), (ItemStatus::Failed, None));
}

#[test]
fn stale_claims_are_refused_around_a_backoff() {
    let (q, clock) = backing_off(RetryBackoff::fixed(SEC), 5);
    let id = q.add(1).unwrap();
    let lost = q.claim().unwrap();
    clock.advance(LEASE);
    assert_eq!(q.reap_expired(), 1);
    let holder = q.claim().unwrap();
    // The expired claim is stale now; nothing changes.
    assert_eq!(q.fail(&lost, "late"), Err(WorkError::StaleClaim));
    assert_eq!(q.get(id).unwrap().status(), ItemStatus::Processing);
    q.fail(&holder, "busy").unwrap();
    assert_eq!(q.complete(&lost), Err(WorkError::StaleClaim));
    assert_eq!(q.fail(&lost, "late"), Err(WorkError::StaleClaim));
    assert_eq!(q.get(id).unwrap().last_error().as_deref(), Some("busy"));
    assert_eq!(q.get(id).unwrap().retry_at(), Some(LEASE + SEC));
    // A reaped claim's own fail does not add a delay: the item is pending again.
    let (q, clock) = backing_off(RetryBackoff::fixed(SEC), 5);
    q.add(1).unwrap();
    let expired = q.claim().unwrap();
    clock.advance(LEASE);
    assert_eq!(q.reap_expired(), 1);
    assert_eq!(q.fail(&expired, "late"), Ok(ItemStatus::Pending));
    assert_eq!(q.claim().unwrap().attempts(), 2);
}

#[test]
fn reap_expired_moves_due_items_without_counting_them() {
    let (q, clock) = backing_off(RetryBackoff::fixed(SEC), 3);
    let a = q.add(1).unwrap();
    let b = q.add(2).unwrap();
    let ca = q.claim().unwrap();
    let _cb = q.claim().unwrap();
    q.fail(&ca, "x").unwrap();
    clock.advance(SEC);
    assert_eq!(q.reap_expired(), 0, "a due item is not an expired lease");
    assert_eq!(
        q.get(a).unwrap().retry_at(),
        None,
        "moved to the pending order"
    );
    clock.advance(LEASE);
    assert_eq!(q.reap_expired(), 1);
    let order: Vec<ItemId> = (0..2).map(|_| q.claim().unwrap().id()).collect();
    assert_eq!(order, [a, b]);
}

#[test]
fn removing_a_backing_off_item() {
    let (q, clock) = backing_off(RetryBackoff::fixed(SEC), 3);
    let a = q.add(1).unwrap();
    let c = q.claim().unwrap();
    q.fail(&c, "x").unwrap();
    let snap = q.remove(a).unwrap();
    assert_eq!(
        (snap.status(), snap.retry_at()),
        (ItemStatus::Pending, Some(SEC))
    );
    assert_eq!(q.fail(&c, "x"), Err(WorkError::Removed));
    clock.advance(SEC);
    assert!(q.claim().is_none());
    assert_eq!(q.reap_expired(), 0);
    assert!(q.is_empty());
}

#[test]
fn backing_off_values_are_dropped_exactly_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let clock = ManualClock::new();
    {
        let q = WorkQueue::builder()
            .retry_backoff(RetryBackoff::fixed(SEC))
            .clock(clock.clone())
            .build()
            .unwrap();
        for _ in 0..4 {
            q.add(Tracked {
                drops: Arc::clone(&drops),
            })
            .unwrap();
        }
        // Two back off, one of them removed; one is due and moved; one pending.
        for _ in 0..3 {
            let c = q.claim().unwrap();
            q.fail(&c, "x").unwrap();
        }
        let ids: Vec<ItemId> = q.snapshot().iter().map(|s| s.id()).collect();
        assert!(q.remove(ids[0]).is_some());
        clock.advance(SEC);
        let c = q.claim().unwrap();
        q.fail(&c, "x").unwrap();
        assert_eq!(q.counts().pending, 3);
    }
    assert_eq!(drops_after_flush(&drops, 4), 4);
}

#[test]
fn claim_timeout_wakes_when_a_backoff_is_over() {
    // The system clock: the waiter's own timer finds the item due.
    let q = Arc::new(
        WorkQueue::builder()
            .retry_backoff(RetryBackoff::fixed(Duration::from_millis(20)))
            .build()
            .unwrap(),
    );
    q.add(7).unwrap();
    let c = q.claim().unwrap();
    q.fail(&c, "busy").unwrap();
    let again = q
        .claim_timeout(Duration::from_secs(60))
        .expect("due after 20 ms");
    assert_eq!((*again.data(), again.attempts()), (7, 2));
    // A waiter already asleep when the item starts backing off.
    let waiter = {
        let q = Arc::clone(&q);
        thread::spawn(move || {
            q.claim_timeout(Duration::from_secs(60))
                .map(|c| c.attempts())
        })
    };
    thread::sleep(Duration::from_millis(20));
    q.fail(&again, "busy").unwrap();
    assert_eq!(waiter.join().unwrap(), Some(3));
}

#[test]
fn waiters_on_a_manual_clock_are_woken_by_reap_expired() {
    let (q, clock) = backing_off(RetryBackoff::fixed(SEC * 3600), 3);
    let q = Arc::new(q);
    q.add(1).unwrap();
    let c = q.claim().unwrap();
    q.fail(&c, "x").unwrap();
    let blocking = {
        let q = Arc::clone(&q);
        thread::spawn(move || q.claim_timeout(Duration::from_secs(600)).map(|c| *c.data()))
    };
    let asynchronous = {
        let q = Arc::clone(&q);
        thread::spawn(move || pollster::block_on(q.claim_async()).map(|c| *c.data()))
    };
    thread::sleep(Duration::from_millis(20));
    clock.advance(SEC * 3600);
    q.reap_expired();
    q.add(2).unwrap();
    let mut got = [blocking.join().unwrap(), asynchronous.join().unwrap()];
    got.sort();
    assert_eq!(got, [Some(1), Some(2)]);
}

/// Workers on the system clock fail every first and second attempt, with a
/// short backoff, while others wait in `claim_timeout`: every item is
/// completed exactly once, on its third attempt, and nothing is left.
#[test]
fn threaded_workers_with_retry_backoff_complete_everything_once() {
    let n = scaled(600, 12);
    let q = Arc::new(
        WorkQueue::builder()
            .max_attempts(3)
            .retry_backoff(RetryBackoff::exponential(
                Duration::from_micros(200),
                Duration::from_millis(1),
            ))
            .build()
            .unwrap(),
    );
    for i in 0..n {
        q.add(i).unwrap();
    }
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (q, done) = (Arc::clone(&q), Arc::clone(&done));
            thread::spawn(move || {
                let mut completed = Vec::new();
                while done.load(SeqCst) < n {
                    let Some(c) = q.claim_timeout(Duration::from_millis(5)) else {
                        continue;
                    };
                    if c.attempts() < 3 {
                        assert_eq!(q.fail(&c, "not yet"), Ok(ItemStatus::Pending));
                    } else {
                        q.complete(&c).unwrap();
                        completed.push(*c.data());
                        done.fetch_add(1, SeqCst);
                    }
                }
                completed
            })
        })
        .collect();
    let mut all: Vec<usize> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>());
    assert_eq!(q.counts().completed, n);
    assert!(q.snapshot().iter().all(|s| s.retry_at().is_none()));
}

// ---------------------------------------------------------------------------
// Differential against the reference
// ---------------------------------------------------------------------------

/// Retry backoffs `(base, max)` the differential run cycles through: fixed
/// and exponential (clock steps are multiples of `LEASE / 4`).
const BACKOFFS: [(Duration, Duration); 2] = [
    (Duration::from_secs(3), Duration::from_secs(3)),
    (Duration::from_secs(1), Duration::from_secs(8)),
];

fn differential(
    seed: u64,
    ops: usize,
    max_size: Option<usize>,
    max_attempts: u32,
    backoff: Option<(Duration, Duration)>,
) {
    let clock = ManualClock::new();
    let mut b = manual_builder(max_size, max_attempts, &clock);
    let mut model = RefWorkQueue::new(
        max_size,
        max_attempts,
        LEASE.as_nanos() as u64,
        clock.clone(),
    );
    if let Some((base, max)) = backoff {
        b = b.retry_backoff(RetryBackoff::exponential(base, max));
        model = model.with_backoff(base.as_nanos() as u64, max.as_nanos() as u64);
    }
    let q = b.build().unwrap();
    let mut rng = XorShift::new(seed);
    let mut ids: Vec<(ItemId, u64)> = Vec::new();
    let mut claims: Vec<(Claim<u64>, RefClaim)> = Vec::new();
    let mut next = 0u64;
    for step in 0..ops {
        let ctx = format!("seed {seed} step {step}");
        match rng.below(12) {
            0..=2 => {
                next += 1;
                match (q.add(next), model.add(next)) {
                    (Ok(id), Ok(mid)) => ids.push((id, mid)),
                    (Err(e), Err(v)) => assert_eq!(e.into_inner(), v, "{ctx}"),
                    (r, m) => panic!("{ctx}: add {r:?} vs {m:?}"),
                }
            }
            3..=4 => match (q.claim(), {
                // Items whose backoff is over are re-queued in slot order.
                let slot_of =
                    |mid: u64| ids.iter().find(|(_, m)| *m == mid).unwrap().0.as_u64() as u32;
                model.claim_by(slot_of)
            }) {
                (Some(c), Some((mc, data))) => {
                    assert_eq!((*c.data(), c.attempts()), (data, mc.attempts), "{ctx}");
                    let mid = ids.iter().find(|(id, _)| *id == c.id()).unwrap().1;
                    assert_eq!(mid, mc.id, "{ctx}");
                    claims.push((c, mc));
                }
                (None, None) => {}
                (r, m) => panic!("{ctx}: claim {r:?} vs {m:?}"),
            },
            5..=7 if !claims.is_empty() => {
                let i = rng.below(claims.len());
                let (c, mc) = &claims[i];
                match rng.below(3) {
                    0 => assert_eq!(q.complete(c), model.complete(*mc), "{ctx} complete"),
                    1 => assert_eq!(q.fail(c, "err"), model.fail(*mc, "err"), "{ctx} fail"),
                    _ => assert_eq!(q.release(c), model.release(*mc), "{ctx} release"),
                }
                if rng.below(2) == 0 {
                    claims.swap_remove(i);
                }
            }
            8 if !ids.is_empty() => {
                let (id, mid) = ids[rng.below(ids.len())];
                let got = q
                    .remove(id)
                    .map(|s| (s.status(), s.attempts(), s.last_error(), *s.data()));
                assert_eq!(got, model.remove(mid), "{ctx} remove");
            }
            9 => {
                clock.advance(LEASE / 4 * rng.below(4) as u32);
                // One reap re-queues what it takes back in slot order.
                let slot_of =
                    |mid: u64| ids.iter().find(|(_, m)| *m == mid).unwrap().0.as_u64() as u32;
                assert_eq!(
                    q.reap_expired(),
                    model.reap_expired_by(slot_of),
                    "{ctx} reap"
                );
            }
            10 if !ids.is_empty() => {
                let (id, mid) = ids[rng.below(ids.len())];
                let got = q
                    .get(id)
                    .map(|s| (s.status(), s.attempts(), s.last_error(), *s.data()));
                assert_eq!(got, model.get(mid), "{ctx} get");
            }
            _ => {
                assert_eq!(q.len(), model.len(), "{ctx} len");
                assert_eq!(q.counts(), model.counts(), "{ctx} counts");
                let live: Vec<u64> = q
                    .snapshot()
                    .iter()
                    .map(|s| ids.iter().find(|(id, _)| *id == s.id()).unwrap().1)
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                assert_eq!(live, model.ids(), "{ctx} snapshot");
            }
        }
    }
    assert_eq!(q.counts(), model.counts(), "seed {seed}: final counts");
}

#[test]
fn differential_against_reference() {
    let ops = scaled(3000, 150);
    for seed in 0..scaled(24, 2) as u64 {
        let max_size = [None, Some(1), Some(4), Some(16)][seed as usize % 4];
        let max_attempts = [1, 2, 3][seed as usize % 3];
        differential(seed, ops, max_size, max_attempts, None);
    }
}

#[test]
fn differential_with_retry_backoff() {
    let ops = scaled(3000, 150);
    for seed in 0..scaled(24, 2) as u64 {
        let max_size = [None, Some(1), Some(4), Some(16)][seed as usize % 4];
        let max_attempts = [2, 3, 5][seed as usize % 3];
        let backoff = Some(BACKOFFS[seed as usize % 2]);
        differential(seed, ops, max_size, max_attempts, backoff);
    }
}

// ---------------------------------------------------------------------------
// Drops
// ---------------------------------------------------------------------------

#[test]
fn every_value_dropped_exactly_once() {
    let drops = Arc::new(AtomicUsize::new(0));
    let make = || Tracked {
        drops: Arc::clone(&drops),
    };
    let (claim_outlives, snap_outlives);
    {
        let clock = ManualClock::new();
        let q = WorkQueue::builder()
            .max_attempts(1)
            .lease(LEASE)
            .clock(clock.clone())
            .build()
            .unwrap();
        let ids: Vec<ItemId> = (0..8).map(|_| q.add(make()).unwrap()).collect();
        let c0 = q.claim().unwrap();
        q.complete(&c0).unwrap(); // completed, left at drop
        let c1 = q.claim().unwrap();
        q.fail(&c1, "dead").unwrap(); // dead letter, left at drop
        let c2 = q.claim().unwrap();
        q.remove(ids[2]).unwrap(); // removed while claimed
        drop(c2);
        q.remove(ids[3]).unwrap(); // removed while pending (entry still queued)
        claim_outlives = q.claim().unwrap(); // processing, claim outlives the queue
        snap_outlives = q.get(ids[5]).unwrap(); // pending, snapshot outlives the queue
        let _processing_at_drop = q.claim().unwrap();
        clock.advance(LEASE);
        q.reap_expired();
        // ids[7] pending at drop.
    }
    assert_eq!(
        drops_after_flush(&drops, 6),
        6,
        "all but the two still shared"
    );
    drop(claim_outlives);
    drop(snap_outlives);
    assert_eq!(drops.load(SeqCst), 8);
}

#[test]
fn drops_under_concurrent_remove_and_claim() {
    let drops = Arc::new(AtomicUsize::new(0));
    let n = scaled(2000, 40);
    {
        let q = Arc::new(WorkQueue::new());
        let ids: Vec<ItemId> = (0..n)
            .map(|_| {
                q.add(Tracked {
                    drops: Arc::clone(&drops),
                })
                .unwrap()
            })
            .collect();
        let remover = {
            let q = Arc::clone(&q);
            thread::spawn(move || ids.iter().filter(|id| q.remove(**id).is_some()).count())
        };
        let worker = {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                let mut done = 0;
                while let Some(c) = q.claim() {
                    if q.complete(&c).is_ok() {
                        done += 1;
                    }
                }
                done
            })
        };
        let removed = remover.join().unwrap();
        let _completed = worker.join().unwrap();
        assert_eq!(removed, n, "every id is removed once, whatever its status");
        assert!(q.is_empty());
        assert_eq!(q.counts().total(), 0);
    }
    assert_eq!(drops_after_flush(&drops, n), n);
}

// ---------------------------------------------------------------------------
// Waiting and closing
// ---------------------------------------------------------------------------

#[test]
fn claim_timeout_is_woken_by_add_and_release() {
    let q = Arc::new(WorkQueue::new());
    let waiter = {
        let q = Arc::clone(&q);
        thread::spawn(move || {
            let c = q
                .claim_timeout(Duration::from_secs(60))
                .expect("woken by add");
            q.release(&c).unwrap();
            *c.data()
        })
    };
    thread::sleep(Duration::from_millis(20));
    q.add(5).unwrap();
    assert_eq!(waiter.join().unwrap(), 5);
    assert_eq!(*q.claim_timeout(Duration::from_secs(60)).unwrap().data(), 5);
}

#[test]
fn close_wakes_every_waiter_after_draining() {
    let q = Arc::new(WorkQueue::<u32>::new());
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let q = Arc::clone(&q);
            thread::spawn(move || q.claim_timeout(Duration::from_secs(600)).map(|c| *c.data()))
        })
        .collect();
    thread::sleep(Duration::from_millis(20));
    q.add(1).unwrap();
    q.close();
    let mut got: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    got.sort();
    assert_eq!(got, [None, None, Some(1)]);
    assert!(q.is_closed());
    // Non-blocking calls keep working after close.
    q.add(2).unwrap();
    assert_eq!(*q.claim().unwrap().data(), 2);
}

#[test]
fn claim_async_with_pollster_and_close() {
    let q = Arc::new(WorkQueue::new());
    q.add(1).unwrap();
    assert_eq!(*pollster::block_on(q.claim_async()).unwrap().data(), 1);
    let waiter = {
        let q = Arc::clone(&q);
        thread::spawn(move || pollster::block_on(q.claim_async()).map(|c| *c.data()))
    };
    thread::sleep(Duration::from_millis(10));
    q.add(2).unwrap();
    assert_eq!(waiter.join().unwrap(), Some(2));
    q.close();
    assert!(pollster::block_on(q.claim_async()).is_none());
}

#[test]
#[cfg_attr(miri, ignore = "tokio's runtime is too slow under miri")]
fn claim_async_on_tokio_workers() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let q = Arc::new(WorkQueue::new());
    let n = 200u64;
    let sum = rt.block_on(async {
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let q = Arc::clone(&q);
                tokio::spawn(async move {
                    let mut sum = 0;
                    while let Some(c) = q.claim_async().await {
                        sum += *c.data();
                        q.complete(&c).unwrap();
                    }
                    sum
                })
            })
            .collect();
        for i in 0..n {
            q.add(i).unwrap();
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        while q.counts().completed < n as usize {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        q.close();
        let mut sum = 0;
        for w in workers {
            sum += w.await.unwrap();
        }
        sum
    });
    assert_eq!(sum, (0..n).sum::<u64>());
}

// ---------------------------------------------------------------------------
// Threads
// ---------------------------------------------------------------------------

/// Producers add `(producer, i)`; workers claim, sometimes fail or release,
/// else complete. Every item ends completed exactly once.
fn mpmc(producers: usize, workers: usize, per: usize) {
    let q = Arc::new(
        WorkQueue::builder()
            .max_attempts(u32::MAX >> 3)
            .build()
            .unwrap(),
    );
    let total = producers * per;
    let done = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(producers + workers));
    let mut handles = Vec::new();
    for p in 0..producers {
        let (q, barrier) = (Arc::clone(&q), Arc::clone(&barrier));
        handles.push(thread::spawn(move || {
            barrier.wait();
            for i in 0..per {
                q.add((p, i)).unwrap();
            }
            Vec::new()
        }));
    }
    for w in 0..workers {
        let (q, barrier, done) = (Arc::clone(&q), Arc::clone(&barrier), Arc::clone(&done));
        handles.push(thread::spawn(move || {
            barrier.wait();
            let mut rng = XorShift::new(w as u64);
            let mut completed = Vec::new();
            while done.load(SeqCst) < total {
                let Some(c) = q.claim() else {
                    std::hint::spin_loop();
                    continue;
                };
                let (p, i) = *c.data();
                match rng.below(8) {
                    0 => {
                        q.fail(&c, "retry").unwrap();
                    }
                    1 => q.release(&c).unwrap(),
                    _ => {
                        q.complete(&c).unwrap();
                        assert_eq!(q.complete(&c), Err(WorkError::AlreadyFinished));
                        completed.push((p, i));
                        done.fetch_add(1, SeqCst);
                    }
                }
            }
            completed
        }));
    }
    let mut all: Vec<(usize, usize)> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    let expected: Vec<(usize, usize)> = (0..producers)
        .flat_map(|p| (0..per).map(move |i| (p, i)))
        .collect();
    assert_eq!(all, expected, "every item completed exactly once");
    assert_eq!(
        q.counts(),
        StatusCounts {
            completed: total,
            ..StatusCounts::default()
        }
    );
    assert_eq!(q.len(), total);
}

#[test]
fn mpmc_every_item_completed_exactly_once() {
    mpmc(2, 2, scaled(2000, 30));
}

/// Without retries, each worker sees each producer's items in the order
/// they were added (FIFO per producer).
#[test]
fn per_producer_fifo_seen_by_each_worker() {
    let per = scaled(3000, 40);
    let q = Arc::new(WorkQueue::new());
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                for i in 0..per {
                    q.add((p, i)).unwrap();
                }
            })
        })
        .collect();
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (q, done) = (Arc::clone(&q), Arc::clone(&done));
            thread::spawn(move || {
                let mut last = [None::<usize>; 2];
                while done.load(SeqCst) < 2 * per {
                    let Some(c) = q.claim() else { continue };
                    let (p, i) = *c.data();
                    assert!(
                        last[p].map_or(true, |prev| prev < i),
                        "producer {p}: {i} after {:?}",
                        last[p]
                    );
                    last[p] = Some(i);
                    q.complete(&c).unwrap();
                    done.fetch_add(1, SeqCst);
                }
            })
        })
        .collect();
    for h in producers.into_iter().chain(workers) {
        h.join().unwrap();
    }
    assert_eq!(q.counts().completed, 2 * per);
}

/// Workers that vanish, a reaper with a manual clock, and workers whose
/// late completes race the reaper: no item is completed twice, and the
/// reference queue driven by the same outcome agrees on the counts.
#[test]
fn reaper_races_workers_without_double_completion() {
    let n = scaled(1000, 20);
    let clock = ManualClock::new();
    let q = Arc::new(
        WorkQueue::builder()
            .max_attempts(3)
            .lease(Duration::from_millis(1))
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    let ids: Vec<ItemId> = (0..n).map(|i| q.add(i).unwrap()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let reaper = {
        let (q, stop, clock) = (Arc::clone(&q), Arc::clone(&stop), clock.clone());
        thread::spawn(move || {
            let mut reaped = 0;
            while !stop.load(SeqCst) {
                clock.advance(Duration::from_micros(300));
                reaped += q.reap_expired();
                thread::yield_now();
            }
            reaped
        })
    };
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                let mut rng = XorShift::new(w + 100);
                let mut completed = HashMap::new();
                let mut idle = 0;
                while idle < scaled(2000, 50) {
                    let Some(c) = q.claim() else {
                        idle += 1;
                        thread::yield_now();
                        continue;
                    };
                    idle = 0;
                    if rng.below(4) == 0 {
                        continue; // vanish: the reaper takes it back
                    }
                    match q.complete(&c) {
                        Ok(()) => *completed.entry(c.id()).or_insert(0) += 1,
                        Err(WorkError::StaleClaim) => {}
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
                completed
            })
        })
        .collect();
    let mut completed: HashMap<ItemId, usize> = HashMap::new();
    for w in workers {
        for (id, k) in w.join().unwrap() {
            *completed.entry(id).or_insert(0) += k;
        }
    }
    stop.store(true, SeqCst);
    reaper.join().unwrap();
    // Settle what is left: reap everything, complete what comes back.
    clock.advance(Duration::from_secs(1));
    q.reap_expired();
    while let Some(c) = q.claim() {
        q.complete(&c).unwrap();
        *completed.entry(c.id()).or_insert(0) += 1;
    }
    let mut expect = StatusCounts::default();
    for id in &ids {
        let s = q.get(*id).unwrap();
        let k = completed.get(id).copied().unwrap_or(0);
        assert!(k <= 1, "{id} completed {k} times");
        match s.status() {
            ItemStatus::Completed => assert_eq!(k, 1, "{id}"),
            ItemStatus::Failed => {
                assert_eq!(k, 0, "{id}");
                assert_eq!(s.attempts(), 3);
                assert_eq!(s.last_error().as_deref(), Some(LEASE_EXPIRED));
            }
            other => panic!("{id} left {other:?}"),
        }
        expect.add_status(s.status());
    }
    assert_eq!(q.counts(), expect);
}

trait AddStatus {
    fn add_status(&mut self, s: ItemStatus);
}

impl AddStatus for StatusCounts {
    fn add_status(&mut self, s: ItemStatus) {
        match s {
            ItemStatus::Pending => self.pending += 1,
            ItemStatus::Processing => self.processing += 1,
            ItemStatus::Completed => self.completed += 1,
            ItemStatus::Failed => self.failed += 1,
        }
    }
}

/// With a bound, concurrent adders and removers never store more than
/// `max_size` items.
#[test]
fn max_size_is_strict_under_contention() {
    let max = 8;
    let q = Arc::new(WorkQueue::builder().max_size(max).build().unwrap());
    let handles: Vec<_> = (0..3)
        .map(|t| {
            let q = Arc::clone(&q);
            thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..scaled(3000, 40) {
                    match q.add(i) {
                        Ok(id) => mine.push(id),
                        Err(QueueFull(v)) => assert_eq!(v, i),
                    }
                    assert!(q.len() <= max);
                    if (i + t) % 3 == 0 {
                        if let Some(id) = mine.pop() {
                            q.remove(id).unwrap();
                        }
                    }
                }
                mine.len()
            })
        })
        .collect();
    let kept: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(kept <= max);
    assert_eq!(q.len(), kept);
    assert_eq!(q.snapshot().len(), kept);
}

/// The same deterministic workload (each item fails `k % 3` times, then
/// completes) on the lock-free queue and on the reference: same counts.
#[test]
fn concurrent_outcome_matches_the_reference() {
    let n = scaled(600, 20);
    let clock = ManualClock::new();
    let q = Arc::new(
        WorkQueue::builder()
            .max_attempts(2)
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    let model = Arc::new(RefWorkQueue::new(None, 2, 1 << 40, clock));
    for i in 0..n {
        q.add(i).unwrap();
        model.add(i).unwrap();
    }
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (q, model) = (Arc::clone(&q), Arc::clone(&model));
            thread::spawn(move || {
                while let Some(c) = q.claim() {
                    if (c.attempts() as usize) <= c.data() % 3 {
                        q.fail(&c, "planned").unwrap();
                    } else {
                        q.complete(&c).unwrap();
                    }
                }
                while let Some((c, data)) = model.claim() {
                    if (c.attempts as usize) <= data % 3 {
                        model.fail(c, "planned").unwrap();
                    } else {
                        model.complete(c).unwrap();
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(q.counts(), model.counts());
    assert_eq!(q.len(), model.len());
}

// ---------------------------------------------------------------------------
// Stress (ignored; run in release)
// ---------------------------------------------------------------------------

#[test]
#[ignore = "stress: run in release with --ignored"]
fn stress_mpmc_oversubscribed() {
    mpmc(4, 4, 200_000);
}

#[test]
#[ignore = "stress: run in release with --ignored"]
fn stress_drops_with_reaper_removers_and_workers() {
    let drops = Arc::new(AtomicUsize::new(0));
    let n = 200_000;
    {
        let q = Arc::new(
            WorkQueue::builder()
                .max_attempts(2)
                .lease(Duration::from_micros(50))
                .max_size(4096)
                .build()
                .unwrap(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for t in 0..2 {
            let (q, drops) = (Arc::clone(&q), Arc::clone(&drops));
            handles.push(thread::spawn(move || {
                let mut rng = XorShift::new(t);
                let mut added = 0;
                let mut ids = Vec::new();
                while added < n / 2 {
                    if let Ok(id) = q.add(Tracked {
                        drops: Arc::clone(&drops),
                    }) {
                        ids.push(id);
                        added += 1;
                    }
                    if ids.len() > 64 || rng.below(3) == 0 {
                        let id = ids.swap_remove(rng.below(ids.len()));
                        q.remove(id);
                    }
                }
                for id in ids {
                    q.remove(id);
                }
            }));
        }
        for w in 0..3 {
            let (q, stop) = (Arc::clone(&q), Arc::clone(&stop));
            handles.push(thread::spawn(move || {
                let mut rng = XorShift::new(w + 10);
                while !stop.load(SeqCst) {
                    if let Some(c) = q.claim() {
                        match rng.below(4) {
                            0 => drop(c),
                            1 => drop(q.fail(&c, "x")),
                            _ => drop(q.complete(&c)),
                        }
                    }
                    if rng.below(64) == 0 {
                        q.reap_expired();
                    }
                }
            }));
        }
        for h in handles.drain(..2) {
            h.join().unwrap();
        }
        stop.store(true, SeqCst);
        for h in handles {
            h.join().unwrap();
        }
        // Whatever the workers left, removing it all empties the queue.
        for s in q.snapshot() {
            q.remove(s.id());
        }
        assert!(q.is_empty());
        assert_eq!(q.counts().total(), 0);
    }
    assert_eq!(drops_after_flush(&drops, n), n);
}

/// A claim shows the item as it was when claimed: its own `fail`, or a
/// later holder's, does not change its `last_error`.
#[test]
fn a_claim_keeps_the_last_error_it_was_claimed_with() {
    let clock = ManualClock::new();
    let q = WorkQueue::builder()
        .max_attempts(5)
        .lease(Duration::from_secs(1))
        .clock(clock.clone())
        .build()
        .unwrap();
    q.add(0).unwrap();
    let first = q.claim().unwrap();
    q.fail(&first, "first").unwrap();
    assert_eq!(first.last_error(), None);
    let second = q.claim().unwrap();
    assert_eq!(second.last_error().as_deref(), Some("first"));
    clock.advance(Duration::from_secs(1));
    assert_eq!(q.reap_expired(), 1);
    let third = q.claim().unwrap();
    q.fail(&third, "third").unwrap();
    assert_eq!(second.last_error().as_deref(), Some("first"));
    assert_eq!(
        third.last_error().as_deref(),
        Some(unlocked::work::LEASE_EXPIRED)
    );
    assert_eq!(
        q.get(third.id()).unwrap().last_error().as_deref(),
        Some("third")
    );
}

/// Runs a `claim_timeout(timeout)` on a new thread; returns the claimed
/// value and how long the call took.
fn timed_claim(
    q: &Arc<WorkQueue<u32>>,
    timeout: Duration,
) -> thread::JoinHandle<(Option<u32>, Duration)> {
    let q = Arc::clone(q);
    thread::spawn(move || {
        let start = std::time::Instant::now();
        let got = q.claim_timeout(timeout).map(|c| *c.data());
        (got, start.elapsed())
    })
}

/// A queue whose failed items wait `backoff` before a retry, with one item
/// claimed: `fail` it and it is due `backoff` later.
fn one_item_backing_off(backoff: Duration) -> (Arc<WorkQueue<u32>>, Claim<u32>) {
    let q = Arc::new(
        WorkQueue::builder()
            .retry_backoff(RetryBackoff::fixed(backoff))
            .lease(Duration::from_secs(600))
            .build()
            .unwrap(),
    );
    q.add(7).unwrap();
    let claim = q.claim().unwrap();
    (q, claim)
}

/// An item due later wakes every waiter, not only the first in line: the
/// first one here times out before the item is due (and used to take the
/// only notification with it), yet the second claims the item when it is
/// due, long before its own timeout (found in review). The bound only
/// tells "woke when due" (0.3 s) from "slept to its timeout" (30 s).
#[test]
fn a_backoff_wakes_a_waiter_behind_one_that_times_out() {
    let (q, claim) = one_item_backing_off(Duration::from_millis(300));
    let first = timed_claim(&q, Duration::from_millis(150));
    thread::sleep(Duration::from_millis(50));
    let second = timed_claim(&q, Duration::from_secs(30));
    thread::sleep(Duration::from_millis(50));
    q.fail(&claim, "busy").unwrap();
    assert_eq!(first.join().unwrap().0, None);
    let (got, waited) = second.join().unwrap();
    assert_eq!(got, Some(7));
    assert!(waited < Duration::from_secs(15), "slept {waited:?}");
}

/// The same behind a `claim_async`, which has no timer and so cannot act
/// on "due at t" itself. Once the item is due either waiter may take it
/// (the async one can win the race to pop it when the machine is loaded,
/// which made this test flaky), but one of them must, long before the
/// timed one's timeout.
#[test]
fn a_backoff_wakes_a_waiter_behind_an_async_one() {
    let (q, claim) = one_item_backing_off(Duration::from_millis(300));
    let (got_tx, got) = std::sync::mpsc::channel();
    let waiting_async = {
        let (q, got_tx) = (Arc::clone(&q), got_tx.clone());
        thread::spawn(move || {
            let value = pollster::block_on(q.claim_async()).map(|c| *c.data());
            got_tx.send(value).unwrap();
        })
    };
    thread::sleep(Duration::from_millis(50));
    let timed = {
        let q = Arc::clone(&q);
        thread::spawn(move || {
            let value = q.claim_timeout(Duration::from_secs(30)).map(|c| *c.data());
            got_tx.send(value).unwrap();
        })
    };
    thread::sleep(Duration::from_millis(50));
    q.fail(&claim, "busy").unwrap();
    assert_eq!(got.recv_timeout(Duration::from_secs(15)), Ok(Some(7)));
    q.close();
    assert_eq!(got.recv_timeout(Duration::from_secs(15)), Ok(None));
    waiting_async.join().unwrap();
    timed.join().unwrap();
}

/// A retry whose due time saturates the clock (`u64::MAX` nanoseconds) is
/// found by `claim` once the clock gets there (found in review: its due
/// time read as "nothing due", so only `reap_expired` found it).
#[test]
fn a_retry_due_at_the_saturated_clock_is_claimable() {
    let clock = ManualClock::new();
    let q = WorkQueue::builder()
        .retry_backoff(unlocked::RetryBackoff::fixed(Duration::from_secs(10)))
        .clock(clock.clone())
        .build()
        .unwrap();
    clock.set(Duration::from_nanos(u64::MAX - 5_000_000_000));
    let id = q.add(1u32).unwrap();
    let c = q.claim().unwrap();
    assert_eq!(q.fail(&c, "busy"), Ok(ItemStatus::Pending));
    assert!(q.claim().is_none(), "not due yet");
    clock.advance(Duration::from_secs(10));
    let again = q.claim().expect("due: claim finds it");
    assert_eq!(again.id(), id);
}

/// A lease of `Duration::MAX` never runs out, also once the clock has
/// saturated (found in review: it was reaped, counting an attempt).
#[test]
fn a_lease_of_duration_max_is_never_reaped() {
    let clock = ManualClock::new();
    let q = WorkQueue::builder()
        .lease(Duration::MAX)
        .clock(clock.clone())
        .build()
        .unwrap();
    let id = q.add(1u32).unwrap();
    let c = q.claim().unwrap();
    clock.advance(Duration::MAX);
    assert_eq!(q.reap_expired(), 0);
    assert_eq!(q.get(id).unwrap().status(), ItemStatus::Processing);
    q.complete(&c).unwrap();
}

/// A claim that settled its item is refused with `AlreadyFinished` when
/// used again, also once another worker has claimed the item (found in
/// review: it got `StaleClaim`, which the docs keep for a claim whose
/// lease ran out and was claimed again).
#[test]
fn a_settled_claim_used_again_after_a_reclaim_is_already_finished() {
    let q = WorkQueue::builder().max_attempts(10).build().unwrap();
    q.add(1u32).unwrap();
    for settle_first in ["fail", "release"] {
        let first = q.claim().unwrap();
        match settle_first {
            "fail" => assert_eq!(q.fail(&first, "retry"), Ok(ItemStatus::Pending)),
            _ => q.release(&first).unwrap(),
        }
        let second = q.claim().expect("pending again");
        assert_eq!(q.complete(&first), Err(WorkError::AlreadyFinished));
        assert_eq!(
            q.fail(&first, "again").map(|_| ()),
            Err(WorkError::AlreadyFinished)
        );
        assert_eq!(q.release(&first), Err(WorkError::AlreadyFinished));
        // The second claim is unaffected.
        q.release(&second).unwrap();
    }
}

/// With a retry backoff, the `fail` of a claim whose lease ran out adds no
/// wait whether or not the reaper came first (found in review: unreaped,
/// it waited the backoff; reaped, it did not).
#[test]
fn a_fail_after_the_lease_ran_out_waits_the_same_reaped_or_not() {
    fn run(reap: bool) -> (Option<Duration>, bool, u32) {
        let clock = ManualClock::new();
        let q = WorkQueue::builder()
            .lease(Duration::from_secs(10))
            .retry_backoff(RetryBackoff::fixed(Duration::from_secs(100)))
            .clock(clock.clone())
            .build()
            .unwrap();
        let id = q.add(1u32).unwrap();
        let c = q.claim().unwrap();
        clock.advance(Duration::from_secs(20));
        if reap {
            assert_eq!(q.reap_expired(), 1);
        }
        assert_eq!(q.fail(&c, "late"), Ok(ItemStatus::Pending));
        let retry_at = q.get(id).unwrap().retry_at();
        let again = q.claim().map(|c| c.attempts());
        (retry_at, again.is_some(), again.unwrap_or(0))
    }
    assert_eq!(run(true), (None, true, 2));
    assert_eq!(run(false), (None, true, 2));
}

/// A claim settled with another queue of the same type is refused and
/// changes nothing in either (found in review: `q2.fail(&c1)` put q1's
/// item in q2's pending order, stranding it in q1).
#[test]
fn a_claim_of_another_queue_is_refused() {
    let q1 = WorkQueue::<u32>::new();
    let q2 = WorkQueue::<u32>::new();
    let id = q1.add(1).unwrap();
    q2.add(2).unwrap();
    let c = q1.claim().unwrap();
    assert_eq!(q2.fail(&c, "oops"), Err(WorkError::WrongQueue));
    assert_eq!(q2.complete(&c), Err(WorkError::WrongQueue));
    assert_eq!(q2.release(&c), Err(WorkError::WrongQueue));
    assert!(WorkError::WrongQueue
        .to_string()
        .contains("another work queue"));
    assert_eq!(q1.get(id).unwrap().status(), ItemStatus::Processing);
    assert_eq!(q2.counts().pending, 1);
    assert_eq!(*q2.claim().unwrap().data(), 2);
    assert!(q2.claim().is_none());
    q1.complete(&c).unwrap();
    assert_eq!(q1.get(id).unwrap().status(), ItemStatus::Completed);
}

/// A worker waiting for an item that backs off on a clock that never moves
/// sleeps between checks instead of spinning (found in review: it woke
/// every `due - now` of real time, a microsecond here: 6,931 clock reads
/// in a 200 ms wait). An upper bound on reads: a slower machine only
/// wakes less often.
#[test]
fn a_worker_waiting_on_a_clock_that_does_not_move_does_not_spin() {
    #[derive(Clone, Debug, Default)]
    struct Frozen(Arc<AtomicUsize>);
    impl unlocked::Clock for Frozen {
        fn now(&self) -> Duration {
            self.0.fetch_add(1, SeqCst);
            Duration::from_secs(1)
        }
    }
    let clock = Frozen::default();
    let q = WorkQueue::builder()
        .clock(clock.clone())
        .retry_backoff(RetryBackoff::fixed(Duration::from_micros(1)))
        .build()
        .unwrap();
    q.add(1u32).unwrap();
    let c = q.claim().unwrap();
    assert_eq!(q.fail(&c, "again"), Ok(ItemStatus::Pending));
    let before = clock.0.load(SeqCst);
    assert!(q.claim_timeout(Duration::from_millis(100)).is_none());
    let reads = clock.0.load(SeqCst) - before;
    assert!(reads < 2_000, "{reads} clock reads in a 100 ms wait");
}
