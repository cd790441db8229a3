//! loom models of the work queue's races on one item: the state word's
//! compare-and-swaps, the lease deadline, the pending order and the slot
//! table, 2 to 3 threads with 1 to 2 operations each.
//!
//! Run (release, bounded preemptions), from the repository root:
//! ```text
//! RUSTFLAGS="--cfg unlocked_loom" LOOM_MAX_PREEMPTIONS=3 \
//!     CARGO_TARGET_DIR=target/loom cargo test --release -p loom-tests --test work
//! ```
//! Without the cfg this file compiles to nothing (see `queue.rs`).
//!
//! What loom sees: every atomic of the work queue (state words, deadlines,
//! last-error pointers, the slot table's segment directory, slots and
//! generations, the size count) and of the `UnboundedQueue`s it is built
//! on, with loom's weak-memory model. What it does not see: `Arc`
//! reference counts (std's, whose orderings are std's own), and freeing:
//! under loom the epoch facade leaks retired memory, so use-after-free of
//! retired items is not modelled here (miri and the drop-counting tests
//! cover that side).
#![cfg(unlocked_loom)]

use std::time::Duration;

use loom::sync::Arc;
use loom::thread;
use unlocked::{ItemStatus, ManualClock, RetryBackoff, WorkError, WorkQueue};

const LEASE: Duration = Duration::from_secs(1);

/// Runs `f` on a new loom thread with its own handle to the queue.
fn spawn_with<R>(
    q: &Arc<WorkQueue<u32>>,
    f: impl FnOnce(&WorkQueue<u32>) -> R + Send + 'static,
) -> thread::JoinHandle<R>
where
    R: Send + 'static,
{
    let q = Arc::clone(q);
    thread::spawn(move || f(&q))
}

fn queue(max_attempts: u32) -> (Arc<WorkQueue<u32>>, ManualClock) {
    let clock = ManualClock::new();
    let q = WorkQueue::builder()
        .max_attempts(max_attempts)
        .lease(LEASE)
        .clock(clock.clone())
        .build()
        .unwrap();
    (Arc::new(q), clock)
}

/// Two workers and a reaper on one item whose lease has run out: the
/// original holder completes late, the reaper takes the item back, a second
/// worker claims and completes. Exactly one complete succeeds, the loser
/// gets `StaleClaim`, and the item ends completed, counted once.
#[test]
fn two_workers_and_a_reaper_on_one_item() {
    loom::model(|| {
        let (q, clock) = queue(3);
        let id = q.add(7).unwrap();
        let late = q.claim().unwrap();
        clock.advance(LEASE);
        let holder = spawn_with(&q, move |q| q.complete(&late));
        let reaper = spawn_with(&q, |q| q.reap_expired());
        let second = spawn_with(&q, |q| q.claim().map(|c| (c.attempts(), q.complete(&c))));
        let late = holder.join().unwrap();
        let reaped = reaper.join().unwrap();
        let second = second.join().unwrap();
        let oks = usize::from(late.is_ok()) + usize::from(matches!(second, Some((_, Ok(())))));
        assert_eq!(oks, 1, "late {late:?}, reaped {reaped}, second {second:?}");
        match second {
            // The second worker could only claim after the reap.
            Some((attempts, Ok(()))) => {
                assert_eq!(reaped, 1);
                assert_eq!(attempts, 2);
                assert_eq!(late, Err(WorkError::StaleClaim));
            }
            Some((_, Err(e))) => panic!("the second claim was refused: {e}"),
            None => assert_eq!(late, Ok(())),
        }
        let snap = q.get(id).unwrap();
        assert_eq!(snap.status(), ItemStatus::Completed);
        let counts = q.counts();
        assert_eq!((counts.completed, counts.total()), (1, 1));
        assert!(q.claim().is_none());
    });
}

/// A late complete races the reaper (no one else claims): the complete is
/// always accepted, before or after the reap, and the item ends completed
/// with nothing left to claim. With one attempt allowed the reap makes the
/// item a dead letter first, which the late complete may still settle.
#[test]
fn complete_racing_lease_expiry() {
    for max_attempts in [1, 2] {
        loom::model(move || {
            let (q, clock) = queue(max_attempts);
            let id = q.add(1).unwrap();
            // A second item whose worker vanished: the reaper takes it
            // back, as a dead letter at one attempt allowed (found by a
            // mutation audit: no model checked the reaper's dead letter).
            let abandoned = q.add(2).unwrap();
            let claim = q.claim().unwrap();
            let _vanished = q.claim().unwrap();
            clock.advance(LEASE);
            let worker = spawn_with(&q, move |q| q.complete(&claim));
            let reaper = spawn_with(&q, |q| q.reap_expired());
            assert_eq!(worker.join().unwrap(), Ok(()));
            let reaped = reaper.join().unwrap();
            assert!((1..=2).contains(&reaped), "reaped {reaped}");
            let left = q.get(abandoned).unwrap();
            let dead = max_attempts == 1;
            assert_eq!(
                left.status(),
                if dead {
                    ItemStatus::Failed
                } else {
                    ItemStatus::Pending
                }
            );
            assert_eq!(left.attempts(), 1);
            let snap = q.get(id).unwrap();
            assert_eq!(snap.status(), ItemStatus::Completed);
            assert_eq!(snap.attempts(), 1);
            assert_eq!(q.counts().completed, 1);
            // Only the abandoned item may be claimed again, and only while
            // attempts are left.
            let again = q.claim().map(|c| c.id());
            assert_eq!(again, (!dead).then_some(abandoned));
            assert!(
                q.claim().is_none(),
                "a reaped entry must be skipped once completed"
            );
        });
    }
}

/// A lease that has not run out is never reaped, whatever the interleaving
/// of the claim's deadline write, its state CAS and the reaper's reads.
#[test]
fn reaper_never_takes_a_fresh_lease() {
    loom::model(|| {
        let (q, clock) = queue(3);
        q.add(1).unwrap();
        clock.advance(LEASE * 5); // time passes before the claim
        let worker = spawn_with(&q, |q| q.claim().map(|c| q.complete(&c)));
        let reaper = spawn_with(&q, |q| q.reap_expired());
        assert_eq!(worker.join().unwrap(), Some(Ok(())));
        assert_eq!(reaper.join().unwrap(), 0);
    });
}

/// `remove` races a claim and its complete: the remove always succeeds
/// (once), the complete either lands first or gets `Removed`, and nothing
/// of the item is left.
#[test]
fn remove_racing_claim() {
    loom::model(|| {
        let (q, _clock) = queue(3);
        let id = q.add(5).unwrap();
        let worker = spawn_with(&q, |q| q.claim().map(|c| q.complete(&c)));
        let remover = spawn_with(&q, move |q| q.remove(id).map(|s| s.status()));
        let worked = worker.join().unwrap();
        let removed = remover.join().unwrap().expect("remove finds the item");
        match (worked, removed) {
            (None, ItemStatus::Pending) => {}
            (Some(Err(WorkError::Removed)), ItemStatus::Processing) => {}
            (Some(Ok(())), ItemStatus::Processing | ItemStatus::Completed) => {}
            other => panic!("impossible outcome {other:?}"),
        }
        assert!(q.get(id).is_none());
        assert_eq!((q.len(), q.counts().total()), (0, 0));
        assert!(q.claim().is_none());
    });
}

/// Two threads remove the same id: exactly one gets the item, and its slot
/// is freed once, so the next two adds get two different slots (found by a
/// mutation audit: with `remove` unlinking before it marks the item, both
/// removers unlinked, and no model had two of them).
#[test]
fn two_removers_of_one_id_free_its_slot_once() {
    loom::model(|| {
        let (q, _clock) = queue(3);
        let id = q.add(5).unwrap();
        let other = spawn_with(&q, move |q| q.remove(id).map(|s| *s.data()));
        let here = q.remove(id).map(|s| *s.data());
        let there = other.join().unwrap();
        assert!(
            matches!((here, there), (Some(5), None) | (None, Some(5))),
            "exactly one remover gets the item: {here:?} {there:?}"
        );
        assert_eq!((q.len(), q.counts().total()), (0, 0));
        let (a, b) = (q.add(6).unwrap(), q.add(7).unwrap());
        assert_ne!(a, b);
        assert_eq!(
            (*q.get(a).unwrap().data(), *q.get(b).unwrap().data()),
            (6, 7)
        );
        assert!(q.get(id).is_none());
    });
}

/// A slot freed by `remove` is reused by the next `add` while a reader
/// holds the old id: the reader sees the old item or nothing, never the
/// new item under the old id.
#[test]
fn old_id_never_finds_the_slots_next_item() {
    loom::model(|| {
        let (q, _clock) = queue(3);
        let old = q.add(1).unwrap();
        let writer = spawn_with(&q, move |q| {
            q.remove(old).unwrap();
            q.add(2).unwrap()
        });
        let reader = spawn_with(&q, move |q| q.get(old).map(|s| *s.data()));
        let new = writer.join().unwrap();
        assert_ne!(new, old);
        assert!(matches!(reader.join().unwrap(), None | Some(1)));
        assert_eq!(*q.get(new).unwrap().data(), 2);
    });
}

/// Two workers race for one pending item: exactly one claim succeeds, and
/// a release puts it back for the other.
#[test]
fn two_claims_one_item_then_release() {
    loom::model(|| {
        let (q, _clock) = queue(3);
        q.add(9).unwrap();
        let a = spawn_with(&q, |q| q.claim().map(|c| q.release(&c)));
        let b = spawn_with(&q, |q| q.claim().map(|c| q.release(&c)));
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert!(a.is_some() || b.is_some());
        for r in [a, b].into_iter().flatten() {
            assert_eq!(r, Ok(()));
        }
        let c = q.claim().expect("released back to pending");
        assert_eq!(c.attempts(), 1, "releases do not count");
        assert_eq!(q.counts().processing, 1);
    });
}

/// Two threads each free a slot and take one from the free list (a tagged
/// Treiber stack) at the same time: the two new items get distinct slots,
/// and each id finds exactly its own item.
#[test]
fn free_list_hands_each_slot_to_one_adder() {
    loom::model(|| {
        let (q, _clock) = queue(3);
        let x = q.add(1).unwrap();
        let y = q.add(2).unwrap();
        let a = spawn_with(&q, move |q| {
            q.remove(x).unwrap();
            q.add(10).unwrap()
        });
        let b = spawn_with(&q, move |q| {
            q.remove(y).unwrap();
            q.add(20).unwrap()
        });
        let (a, b) = (a.join().unwrap(), b.join().unwrap());
        assert_ne!(a, b);
        assert_ne!(
            a.as_u64() as u32,
            b.as_u64() as u32,
            "one slot handed out twice"
        );
        assert_eq!(*q.get(a).unwrap().data(), 10);
        assert_eq!(*q.get(b).unwrap().data(), 20);
        assert!(q.get(x).is_none() && q.get(y).is_none());
        assert_eq!(q.len(), 2);
    });
}

/// An expired holder's `fail` or `release` races the reaper: whichever
/// wins, the item is pending with exactly one entry in the pending order
/// (one claim gets it, a second finds nothing), and the attempt count is
/// what the sequential semantics give for that order.
#[test]
fn settle_racing_reap_leaves_one_pending_entry() {
    for release in [false, true] {
        loom::model(move || {
            let (q, clock) = queue(3);
            let id = q.add(3).unwrap();
            let claim = q.claim().unwrap();
            clock.advance(LEASE);
            let worker = spawn_with(&q, move |q| {
                if release {
                    q.release(&claim).map(|()| ItemStatus::Pending)
                } else {
                    q.fail(&claim, "late")
                }
            });
            let reaper = spawn_with(&q, |q| q.reap_expired());
            assert_eq!(worker.join().unwrap(), Ok(ItemStatus::Pending));
            let reaped = reaper.join().unwrap();
            let next = q.claim().expect("pending again");
            assert_eq!(next.id(), id);
            // The lease ran out, so its attempt counts, whether the reap or
            // the release came first.
            assert_eq!(next.attempts(), 2, "release {release}, reaped {reaped}");
            assert!(q.claim().is_none(), "a second pending entry");
        });
    }
}

fn backing_off(max_attempts: u32) -> (Arc<WorkQueue<u32>>, ManualClock) {
    let clock = ManualClock::new();
    let q = WorkQueue::builder()
        .max_attempts(max_attempts)
        .lease(LEASE * 10)
        .retry_backoff(RetryBackoff::fixed(LEASE))
        .clock(clock.clone())
        .build()
        .unwrap();
    (Arc::new(q), clock)
}

/// A claim's promotion scan (it takes `next_due` because item `x` is due)
/// races a `fail` that starts item `y` backing off. Whatever the order of
/// the scan, `y`'s CAS to DELAYED and its lowering of `next_due`, `y` is
/// never stranded: once due, `claim` alone (no `reap_expired`) finds it,
/// and `x` is claimed exactly once. Fails if `fail` lowers `next_due`
/// before its CAS, or if the scan's take is not Acquire.
#[test]
fn promotion_scan_racing_a_new_backoff_strands_nothing() {
    loom::model(|| {
        let (q, clock) = backing_off(3);
        let x = q.add(1).unwrap();
        let y = q.add(2).unwrap();
        let cx = q.claim().unwrap();
        let cy = q.claim().unwrap();
        q.fail(&cx, "x").unwrap();
        clock.advance(LEASE);
        let scanner = spawn_with(&q, |q| q.claim().map(|c| c.id()));
        let failer = spawn_with(&q, move |q| q.fail(&cy, "y"));
        let scanned = scanner.join().unwrap();
        assert_eq!(failer.join().unwrap(), Ok(ItemStatus::Pending));
        assert!(scanned.is_none() || scanned == Some(x), "{scanned:?}");
        clock.advance(LEASE);
        let mut rest = Vec::new();
        while let Some(c) = q.claim() {
            rest.push(c.id());
        }
        let expected: &[_] = if scanned.is_some() { &[y] } else { &[x, y] };
        rest.sort();
        assert_eq!(rest, expected);
    });
}

/// A claim and `reap_expired` both find the same item due: exactly one of
/// them moves it to the pending order (one entry), so it is claimed once.
#[test]
fn claim_and_reaper_promote_a_due_item_once() {
    loom::model(|| {
        let (q, clock) = backing_off(3);
        let id = q.add(1).unwrap();
        let c = q.claim().unwrap();
        q.fail(&c, "x").unwrap();
        clock.advance(LEASE);
        let claimer = spawn_with(&q, |q| q.claim().map(|c| c.attempts()));
        let reaper = spawn_with(&q, |q| q.reap_expired());
        let claimed = claimer.join().unwrap();
        assert_eq!(reaper.join().unwrap(), 0);
        let later = q.claim().map(|c| c.attempts());
        assert_eq!(claimed.xor(later), Some(2), "{claimed:?} {later:?}");
        assert!(q.claim().is_none());
        assert_eq!(q.get(id).unwrap().status(), ItemStatus::Processing);
    });
}
