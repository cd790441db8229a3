//! A removed item's `T::drop` runs when crossbeam-epoch collects it: inside
//! the first `epoch::pin()` of some later operation on any thread (the first
//! pin of a thread, and every 128th, collects). A `T::drop` that panics
//! there panics out of that operation. `add`, `fail` and `release` pin for
//! the first time *after* the item's state has changed (inside the push into
//! the pending order, or in `set_last_error`), so the panic leaves an item
//! that reports `Pending` with no entry in the pending order: no `claim`
//! ever returns it again. `claim` takes the promotion job before its scan
//! pins, and pins again after its claiming CAS (reading the previous
//! reason). Found in review; each case failed before the fix.
//!
//! One test in its own binary: it steers the global epoch, which tests on
//! parallel threads would disturb.
#![cfg(not(feature = "shuttle"))]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use unlocked::{ItemStatus, WorkQueue};

/// How many times an armed `Job::drop` panicked.
static PANICKED: AtomicUsize = AtomicUsize::new(0);

struct Job {
    /// Panics when dropped (a `Drop` that flushes a buffer and unwraps the
    /// I/O result, say).
    armed: AtomicBool,
}

impl Job {
    fn plain() -> Self {
        Job {
            armed: AtomicBool::new(false),
        }
    }
    fn armed() -> Self {
        Job {
            armed: AtomicBool::new(true),
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if self.armed.load(SeqCst) && !std::thread::panicking() {
            PANICKED.fetch_add(1, SeqCst);
            panic!("Job::drop panicked");
        }
    }
}

/// Leaves one removed, armed item whose last reference waits in the epoch
/// collector, one epoch short of being freed: the next thread's first pin
/// advances the epoch and frees it.
fn stage_armed_garbage(q: &WorkQueue<Job>) {
    let id = q.add(Job::armed()).unwrap();
    let c = q.claim().unwrap();
    assert_eq!(c.id(), id);
    q.complete(&c).unwrap();
    drop(c);
    // The table's reference is deferred; it is the last one.
    drop(q.remove(id).unwrap());
    // Hands this thread's bag to the global queue and advances the epoch
    // once (nothing else is pinned).
    crossbeam_epoch::pin().flush();
}

/// Runs `op` as the first pinning operation of a fresh thread; returns
/// whether it panicked and whether the armed drop was what panicked.
fn first_pin_on_fresh_thread(op: impl FnOnce() + Send) -> (bool, bool) {
    let before = PANICKED.load(SeqCst);
    let panicked = std::thread::scope(|s| {
        s.spawn(|| catch_unwind(AssertUnwindSafe(op)).is_err())
            .join()
            .unwrap()
    });
    (panicked, PANICKED.load(SeqCst) > before)
}

#[test]
fn deferred_drop_panic_strands_no_item() {
    let q: Arc<WorkQueue<Job>> = Arc::new(WorkQueue::new());
    let mut stranded = Vec::new();

    // 1. `add`: the item is stored, then the push into the pending order pins.
    stage_armed_garbage(&q);
    let (panicked, by_drop) = first_pin_on_fresh_thread(|| {
        q.add(Job::plain()).unwrap();
    });
    println!(
        "add: panicked {panicked}, by the deferred drop {by_drop}; len {} counts {:?}",
        q.len(),
        q.counts()
    );
    if by_drop {
        // Either the add did not happen, or its item can be claimed.
        if q.len() == 1 {
            match q.claim() {
                Some(c) => {
                    q.complete(&c).unwrap();
                }
                None => stranded.push("add: stored, reported Pending, never claimable"),
            }
        }
    }
    for s in q.snapshot() {
        q.remove(s.id());
    }

    // 2. `fail`: the state goes PROCESSING -> PENDING, then set_last_error pins.
    q.add(Job::plain()).unwrap();
    let c = q.claim().unwrap();
    let id = c.id();
    stage_armed_garbage(&q);
    let (panicked, by_drop) = first_pin_on_fresh_thread(|| {
        let _ = q.fail(&c, "boom");
    });
    let status = q.get(id).unwrap().status();
    println!("fail: panicked {panicked}, by the deferred drop {by_drop}; status {status:?}");
    if by_drop && status == ItemStatus::Pending && q.claim().is_none() {
        stranded.push("fail: reported Pending, never claimable");
    }
    drop(c);
    for s in q.snapshot() {
        q.remove(s.id());
    }

    // 3. `release`: the state goes PROCESSING -> PENDING, then the push pins.
    q.add(Job::plain()).unwrap();
    let c = q.claim().unwrap();
    let id = c.id();
    stage_armed_garbage(&q);
    let (panicked, by_drop) = first_pin_on_fresh_thread(|| {
        let _ = q.release(&c);
    });
    let status = q.get(id).unwrap().status();
    println!("release: panicked {panicked}, by the deferred drop {by_drop}; status {status:?}");
    if by_drop && status == ItemStatus::Pending && q.claim().is_none() {
        stranded.push("release: reported Pending, never claimable");
    }
    drop(c);
    for s in q.snapshot() {
        q.remove(s.id());
    }

    // 4. `claim` with a retry backoff: the promotion scan takes the job
    // (swaps `next_due` to "nothing due"), then pins. The due item is left
    // DELAYED with nothing due recorded: no `claim` (or `claim_timeout`
    // waiter) promotes it; only the next `reap_expired` would.
    let clock = unlocked::ManualClock::new();
    let qb: WorkQueue<Job> = WorkQueue::builder()
        .clock(clock.clone())
        .retry_backoff(unlocked::RetryBackoff::fixed(
            std::time::Duration::from_secs(1),
        ))
        .build()
        .unwrap();
    let id = qb.add(Job::plain()).unwrap();
    let c = qb.claim().unwrap();
    assert_eq!(qb.fail(&c, "retry later"), Ok(ItemStatus::Pending));
    drop(c);
    stage_armed_garbage(&qb);
    clock.advance(std::time::Duration::from_secs(2)); // due now
    let (panicked, by_drop) = first_pin_on_fresh_thread(|| {
        let _ = qb.claim();
    });
    println!("claim (promotion): panicked {panicked}, by the deferred drop {by_drop}");
    if by_drop && qb.claim().is_none() {
        stranded
            .push("claim/promotion: a due item is never promoted by claim (only by reap_expired)");
    }
    let _ = id;

    // 5. `claim` of an item that failed before: after the claiming CAS it
    // reads the previous reason, which pins (`last_error_before`). A fresh
    // thread pinned 127 times first, so that this pin is its 129th, the
    // next that collects (the pop's pin before it is the 128th and does not).
    q.add(Job::plain()).unwrap();
    let c = q.claim().unwrap();
    let id = c.id();
    let armed = q.add(Job::armed()).unwrap();
    let ca = q.claim().unwrap();
    q.complete(&ca).unwrap();
    drop(ca);
    assert_eq!(q.fail(&c, "first attempt"), Ok(ItemStatus::Pending));
    drop(c);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let before = PANICKED.load(SeqCst);
    let outcome = std::thread::scope(|s| {
        let q = &q;
        let h = s.spawn(move || {
            for _ in 0..127 {
                drop(crossbeam_epoch::pin());
            }
            ready_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            let outcome = catch_unwind(AssertUnwindSafe(|| q.claim().map(|c| c.id())));
            // If the claim did not collect, let the armed drop run here
            // rather than in the thread's exit (a panic there aborts).
            for _ in 0..256 {
                if PANICKED.load(SeqCst) > before {
                    break;
                }
                let _ = catch_unwind(|| drop(crossbeam_epoch::pin()));
            }
            outcome
        });
        ready_rx.recv().unwrap();
        // The armed item's last reference goes to the epoch collector now,
        // after the thread's first (collecting) pin.
        drop(q.remove(armed).unwrap());
        crossbeam_epoch::pin().flush();
        go_tx.send(()).unwrap();
        h.join().unwrap()
    });
    let by_drop = PANICKED.load(SeqCst) > before;
    let status = q.get(id).unwrap().status();
    let panicked = outcome.is_err();
    println!("claim (previous reason): claim {outcome:?}, deferred drop ran {by_drop}; status {status:?}");
    if panicked && by_drop && status == ItemStatus::Processing {
        stranded.push("claim: item left Processing (attempt counted) with no Claim handed out, until its lease runs out");
    }
    assert!(
        PANICKED.load(SeqCst) > 0,
        "setup: the armed drop never ran inside an operation"
    );
    assert!(stranded.is_empty(), "stranded items: {stranded:#?}");
}
