//! Dropping a cache or a work queue drops every value it was given, evicted
//! and removed ones included, by the time the drop returns, as long as no
//! other thread is pinned in crossbeam-epoch at that moment and no other
//! live thread retired some (those wait in that thread's own batch). That is why
//! this file holds a single test: the test harness runs the tests of one
//! file on parallel threads, which would pin.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};

use common::scaled;
use unlocked::{Cache, UnboundedQueue, WorkQueue};

/// Counts its drops (clones count too: the cache clones values out).
struct Counted(Arc<AtomicUsize>);

impl Clone for Counted {
    fn clone(&self) -> Self {
        // A clone is one more value to drop: count it as dropped already,
        // so that `drops` ends at the number of values put in.
        self.0.fetch_sub(1, SeqCst);
        Counted(Arc::clone(&self.0))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// Queues thousands of another structure's bags with the epoch collector
/// ahead of what the next structure retires: an unbounded queue of
/// one-value segments hands one over per drained segment, while another
/// thread holds the epoch back so that none is freed meanwhile; then that
/// thread exits. Found in review: a drop that ran a fixed number of
/// collection rounds stopped short of its own values behind them.
fn queue_a_backlog_of_bags() {
    let pinned = Arc::new(Barrier::new(2));
    let go = Arc::new(Barrier::new(2));
    let holder = {
        let (pinned, go) = (Arc::clone(&pinned), Arc::clone(&go));
        std::thread::spawn(move || {
            let guard = crossbeam_epoch::pin();
            pinned.wait();
            go.wait();
            drop(guard);
        })
    };
    pinned.wait();
    let q = UnboundedQueue::with_segment_capacity(1);
    for i in 0..scaled(5_000, 300) {
        q.push(i).unwrap();
        assert_eq!(q.pop(), Some(i));
    }
    go.wait();
    holder.join().unwrap();
}

#[test]
fn dropping_a_structure_drops_every_value_it_was_given() {
    // A cache of 10 that evicted, replaced and removed most of its values.
    queue_a_backlog_of_bags();
    let drops = Arc::new(AtomicUsize::new(0));
    let n = scaled(20_000, 200) as u64;
    {
        let cache = Cache::new(10);
        for i in 0..n {
            cache.insert(i % 500, Counted(Arc::clone(&drops)));
        }
        cache.remove(&3);
    }
    assert_eq!(drops.load(SeqCst), n as usize, "cache");

    // A work queue whose items were claimed, completed and removed.
    queue_a_backlog_of_bags();
    let drops = Arc::new(AtomicUsize::new(0));
    let n = scaled(5_000, 100);
    {
        let q = WorkQueue::new();
        for _ in 0..n {
            let id = q.add(Counted(Arc::clone(&drops))).unwrap();
            let claim = q.claim().unwrap();
            q.complete(&claim).unwrap();
            drop(claim);
            q.remove(id).unwrap();
        }
        q.add(Counted(Arc::clone(&drops))).unwrap();
    }
    assert_eq!(drops.load(SeqCst), n + 1, "work queue");

    // A work queue whose items are added and removed while no worker
    // claims: each removed item's data is dropped while the queue lives,
    // once the epoch collector gets to it (found in review: the pending
    // order's entries held every removed item until a claim came by, so
    // memory grew without bound with `len() == 0`).
    queue_a_backlog_of_bags();
    let drops = Arc::new(AtomicUsize::new(0));
    let n = scaled(5_000, 100);
    let q = WorkQueue::builder().max_size(8).build().unwrap();
    for _ in 0..n {
        let id = q.add(Counted(Arc::clone(&drops))).unwrap();
        q.remove(id).unwrap();
    }
    for _ in 0..scaled(100_000, 2_000) {
        if drops.load(SeqCst) == n {
            break;
        }
        crossbeam_epoch::pin().flush();
    }
    assert_eq!(
        drops.load(SeqCst),
        n,
        "removed items kept alive by the queue"
    );
    assert!(q.claim().is_none());
    assert!(q.is_empty());
}
