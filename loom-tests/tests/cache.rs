//! loom models of the cache: the table's publish/unlink protocol seen by a
//! lock-free reader, eviction, expiry, the single-flight hand-off, and an
//! insert or a removal racing a load.
//! 2 to 3 threads, 1 to 2 operations each.
//!
//! Run (release, bounded preemptions), from the repository root:
//! ```text
//! RUSTFLAGS="--cfg unlocked_loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom \
//!     cargo test --release -p loom-tests --test cache
//! ```
//! Without the cfg this file compiles to nothing (`.ci/run` fails a loom
//! step that ran zero models).
//!
//! Under loom the epoch collector leaks what is retired (see `sync.rs`), so
//! a reader that loaded an entry pointer may always dereference it; what
//! loom checks is that the reader sees the entry's fields (Acquire/Release
//! on the slot and the table pointer), that every answer is one a
//! linearizable cache could give, and that locks and the loaders' waiting
//! never deadlock.
#![cfg(unlocked_loom)]

use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use loom::sync::Arc;
use loom::thread;
use unlocked::cache::Cache;
use unlocked::ManualClock;

/// A deterministic hasher: loom replays schedules and needs every run of a
/// model to touch the same slots.
type Fixed = BuildHasherDefault<DefaultHasher>;

fn cache(capacity: usize, clock: &ManualClock) -> Cache<u32, u32, Fixed> {
    Cache::builder()
        .max_capacity(capacity)
        .clock(clock.clone())
        .hasher(Fixed::default())
        .build()
        .unwrap()
}

/// Runs `f` on a new loom thread with its own handle to the cache.
fn spawn_with<R>(
    c: &Arc<Cache<u32, u32, Fixed>>,
    f: impl FnOnce(&Cache<u32, u32, Fixed>) -> R + Send + 'static,
) -> thread::JoinHandle<R>
where
    R: Send + 'static,
{
    let c = Arc::clone(c);
    thread::spawn(move || f(&c))
}

/// A get racing the first insert of its key sees nothing or the whole
/// value; afterwards the value is there.
#[test]
fn insert_and_get_one_key() {
    loom::model(|| {
        let c = Arc::new(cache(4, &ManualClock::new()));
        let writer = spawn_with(&c, |c| c.insert(1, 10));
        let reader = spawn_with(&c, |c| c.get(&1));
        writer.join().unwrap();
        let seen = reader.join().unwrap();
        assert!(seen.is_none() || seen == Some(10), "{seen:?}");
        assert_eq!(c.get(&1), Some(10));
    });
}

/// An update racing a get: the reader sees the old or the new value, never
/// anything else, and the entry is replaced in place (one entry, one
/// update).
#[test]
fn update_racing_get() {
    loom::model(|| {
        let c = Arc::new(cache(4, &ManualClock::new()));
        c.insert(1, 10);
        let writer = spawn_with(&c, |c| c.insert(1, 11));
        let reader = spawn_with(&c, |c| c.get(&1));
        writer.join().unwrap();
        let seen = reader.join().unwrap();
        assert!(seen == Some(10) || seen == Some(11), "{seen:?}");
        assert_eq!(c.get(&1), Some(11));
        assert_eq!((c.len(), c.stats().updates), (1, 1));
    });
}

/// Two inserts into a cache of one: one evicts the other, a concurrent
/// reader of the first key sees its value or nothing, and the capacity
/// holds throughout.
#[test]
fn insert_racing_eviction() {
    loom::model(|| {
        let c = Arc::new(cache(1, &ManualClock::new()));
        let a = spawn_with(&c, |c| c.insert(1, 10));
        let b = spawn_with(&c, |c| c.insert(2, 20));
        let reader = spawn_with(&c, |c| (c.get(&1), c.len()));
        a.join().unwrap();
        b.join().unwrap();
        let (seen, len) = reader.join().unwrap();
        assert!(seen.is_none() || seen == Some(10), "{seen:?}");
        assert!(len <= 1);
        assert_eq!(c.len(), 1);
        let present = [c.get(&1), c.get(&2)];
        assert!(
            present == [Some(10), None] || present == [None, Some(20)],
            "{present:?}"
        );
        let s = c.stats();
        assert_eq!((s.inserts, s.evictions), (2, 1));
    });
}

/// A remove racing a get: the reader sees the value or nothing; the remove
/// gets the value; afterwards it is gone.
#[test]
fn remove_racing_get() {
    loom::model(|| {
        let c = Arc::new(cache(4, &ManualClock::new()));
        c.insert(1, 10);
        let remover = spawn_with(&c, |c| c.remove(&1));
        let reader = spawn_with(&c, |c| c.get(&1));
        assert_eq!(remover.join().unwrap(), Some(10));
        let seen = reader.join().unwrap();
        assert!(seen.is_none() || seen == Some(10), "{seen:?}");
        assert_eq!(c.get(&1), None);
        assert!(c.is_empty());
    });
}

/// The clock passes an entry's expiry while another thread refreshes it
/// and a third reads it: the reader sees the old value, the new one or
/// nothing (never a torn entry); the refresh always wins in the end, either as
/// an update (it came first) or as a fresh insert after an expiration.
#[test]
fn expiry_racing_refresh() {
    loom::model(|| {
        let clock = ManualClock::new();
        let c = Arc::new(cache(4, &clock));
        c.insert_with_ttl(1, 10, Duration::from_nanos(5));
        let ticker = {
            let clock = clock.clone();
            thread::spawn(move || clock.advance(Duration::from_nanos(5)))
        };
        let refresher = spawn_with(&c, |c| c.insert(1, 11));
        let reader = {
            let clock = clock.clone();
            // Whether the tick had happened before the read: then the old
            // value is expired and must not be returned (found by a
            // mutation audit: a `get` that skipped the expiry check
            // passed this model).
            spawn_with(&c, move |c| {
                let ticked = unlocked::Clock::now(&clock) >= Duration::from_nanos(5);
                (ticked, c.get(&1))
            })
        };
        ticker.join().unwrap();
        refresher.join().unwrap();
        let (ticked, seen) = reader.join().unwrap();
        assert!(seen.is_none() || seen == Some(10) || seen == Some(11));
        assert!(
            !(ticked && seen == Some(10)),
            "an expired value was returned"
        );
        assert_eq!(c.get(&1), Some(11));
        let s = c.stats();
        assert!(
            (s.inserts, s.updates, s.expirations) == (1, 1, 0)
                || (s.inserts, s.updates, s.expirations) == (2, 0, 1),
            "{s:?}"
        );
    });
}

/// The first loader panics: the other caller (waiting, or arriving after)
/// runs its own loader, once, and nobody is left waiting.
#[test]
fn single_flight_hand_off_when_loader_panics() {
    loom::model(|| {
        let c = Arc::new(cache(4, &ManualClock::new()));
        let panicker = spawn_with(&c, |c| {
            catch_unwind(AssertUnwindSafe(|| {
                c.get_or_insert_with(1, || panic!("loader failed on purpose"))
            }))
            .ok()
        });
        let other = spawn_with(&c, |c| c.get_or_insert_with(1, || 2));
        assert_eq!(other.join().unwrap(), 2);
        let p = panicker.join().unwrap();
        assert!(p.is_none() || p == Some(2), "{p:?}");
        assert_eq!(c.get(&1), Some(2));
        assert_eq!(c.stats().inserts, 1);
    });
}

/// Two callers load the same key: exactly one loader runs, both get its
/// value, and each finds it in the cache right after (read your writes:
/// the waiter is woken only once the value is inserted).
#[test]
fn single_flight_loads_once() {
    loom::model(|| {
        let c = Arc::new(cache(4, &ManualClock::new()));
        let load = |c: &Cache<u32, u32, Fixed>, v| (c.get_or_insert_with(1, || v), c.get(&1));
        let a = spawn_with(&c, move |c| load(c, 1));
        let b = spawn_with(&c, move |c| load(c, 2));
        let ((a, a_then), (b, b_then)) = (a.join().unwrap(), b.join().unwrap());
        assert_eq!((a_then, b_then), (Some(a), Some(b)));
        assert_eq!(a, b);
        assert_eq!(c.stats().inserts, 1);
    });
}

/// Starts a thread loading key 1 (the loader returns 10) and, on this
/// thread, runs `write` on the cache, telling it whether the loader had
/// started (a loom atomic the loader sets first); returns what `write`
/// returned and what the loader's caller got.
fn write_racing_a_load<R>(
    c: &Arc<Cache<u32, u32, Fixed>>,
    write: impl FnOnce(&Cache<u32, u32, Fixed>, bool) -> R,
) -> (R, u32) {
    use loom::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let started = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&started);
    let loader = spawn_with(c, move |c| {
        c.get_or_insert_with(1, || {
            // SeqCst: read by the writer below.
            flag.store(true, SeqCst);
            10
        })
    });
    // SeqCst: see the loader.
    let written = write(c, started.load(SeqCst));
    (written, loader.join().unwrap())
}

/// A `remove` racing a load of the same key: once the remove starts after
/// the loader has started, the loaded value is not in the cache afterwards
/// (the remove marks the load superseded, or removes the value it stored).
/// Whatever the order, the loader's caller gets its own value.
#[test]
fn remove_racing_a_load_is_not_undone() {
    loom::model(|| {
        let c = Arc::new(cache(4, &ManualClock::new()));
        let ((after_start, removed), got) =
            write_racing_a_load(&c, |c, after_start| (after_start, c.remove(&1)));
        assert_eq!(got, 10);
        let left = c.get(&1);
        if after_start {
            assert_eq!(left, None, "the removal was undone (removed {removed:?})");
        }
        assert!(removed.is_none() || left.is_none());
    });
}

/// An `insert` racing a load of the same key: once the insert starts after
/// the loader has started, its value is the one left in the cache, and the
/// loader's caller gets its own value.
#[test]
fn insert_racing_a_load_is_not_overwritten() {
    loom::model(|| {
        let c = Arc::new(cache(4, &ManualClock::new()));
        let (after_start, got) = write_racing_a_load(&c, |c, after_start| {
            c.insert(1, 20);
            after_start
        });
        let left = c.get(&1);
        if after_start {
            assert_eq!(got, 10);
            assert_eq!(left, Some(20), "the load overwrote a newer insert");
        }
        assert!(got == 10 || got == 20, "{got}");
        assert!(left == Some(10) || left == Some(20), "{left:?}");
    });
}

/// The first key (from 100 on) whose home slot in a 4-slot table is `slot`.
/// Mirrors the crate's internals: `Cache::hash` mixes the hasher's output,
/// and `Table::start` maps the low half onto the slots (multiply-shift).
fn key_with_home(slot: u64) -> u32 {
    use std::hash::BuildHasher;
    let home = |k: &u32| {
        let h = Fixed::default().hash_one(k);
        let mixed = (h ^ (h >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (u64::from(mixed as u32) * 4) >> 32
    };
    (100..).find(|k| home(k) == slot).unwrap()
}

/// A get racing a table rebuild: the reader walks the old array or the
/// fresh one (published by the table pointer's Release swap) and finds the
/// resident key either way.
#[test]
fn get_racing_rebuild() {
    // Keys whose home slots are 0, 1 and 2 of a cache of 2 (4 slots,
    // rebuilt when more than 3 are used), computed outside the model.
    let (a, b, c) = (key_with_home(0), key_with_home(1), key_with_home(2));
    let d = (a.max(b).max(c) + 1..)
        .find(|k| ![a, b, c].contains(k))
        .unwrap();
    loom::model(move || {
        let cache = Arc::new(cache(2, &ManualClock::new()));
        cache.insert(a, a); // slot 0
        cache.insert(b, b); // slot 1
        cache.remove(&a); // slot 0 becomes a tombstone (slot 1 is used)
        cache.insert(c, c); // slot 2
        cache.remove(&b); // slot 1 becomes a tombstone (slot 2 is used)
        assert_eq!((cache.len(), cache.tombstones()), (1, 2));
        // 2 live + 2 tombstones > 3: inserting `d` rebuilds the table.
        let writer = spawn_with(&cache, move |x| x.insert(d, d));
        let reader = spawn_with(&cache, move |x| x.get(&c));
        writer.join().unwrap();
        assert_eq!(reader.join().unwrap(), Some(c));
        assert_eq!(cache.tombstones(), 0, "the insert rebuilt the table");
        assert_eq!((cache.get(&c), cache.get(&d)), (Some(c), Some(d)));
        cache.validate();
    });
}

/// Two collectors offering the blocks of retired batches while a writer
/// takes the list (see `src/cache/recycle.rs`): every block offered under
/// the limit is taken exactly once (a block taken twice, or a batch lost
/// between the CAS and the swap, changes the total), and the `next` links
/// are read only after the Release push that wrote them.
#[test]
fn recycler_offers_racing_a_take() {
    use unlocked::__LoomRecycler as Recycler;
    loom::model(|| {
        let recycler = Arc::new(Recycler::new(16));
        let offers: Vec<_> = [1, 2]
            .into_iter()
            .map(|n| {
                let r = Arc::clone(&recycler);
                thread::spawn(move || r.offer(n))
            })
            .collect();
        let taken = recycler.take();
        for t in offers {
            t.join().unwrap();
        }
        assert_eq!(taken + recycler.take(), 3);
    });
}

/// An offer that finds the list at its limit frees its blocks instead (the
/// bound on the spare memory), and a take then finds only the first batch.
#[test]
fn recycler_refuses_past_its_limit() {
    use unlocked::__LoomRecycler as Recycler;
    loom::model(|| {
        let recycler = Arc::new(Recycler::new(2));
        let offers: Vec<_> = [2, 2]
            .into_iter()
            .map(|n| {
                let r = Arc::clone(&recycler);
                thread::spawn(move || r.offer(n))
            })
            .collect();
        for t in offers {
            t.join().unwrap();
        }
        // Both offers may see the list empty and push (the bound is
        // approximate while offers race), or the second may find it full.
        let taken = recycler.take();
        assert!(taken == 2 || taken == 4, "took {taken}");
        assert_eq!(recycler.take(), 0);
    });
}
