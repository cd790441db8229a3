//! User code that panics or calls back into a structure from inside one of
//! its operations: a clock, a key's `Eq`, `V::clone`, a value's `Drop`
//! (also when crossbeam-epoch runs it during a pin), the eviction listener,
//! a fail reason's conversion, validators, `Deserialize` impls, change
//! callbacks. Each must leave the structure consistent: nothing lost,
//! stranded or counted twice, no deadlock, no listener call missed. Every
//! test of the `cache_*`, `work_*`, `config_*` and `queue_*` modules that
//! checks a fix failed before it (found in reviews); `checked_fine` holds
//! the cases that held up. The `config_reload_panic` module needs feature
//! `persist`; `tests/work_deferred_drop.rs` is the epoch case of the work
//! queue (alone in its binary).
#![cfg(not(feature = "shuttle"))] // the shuttle facade needs a shuttle runtime

/// Hashes a `u64` to itself, so that a test can place keys in chosen slots.
#[derive(Default)]
struct Identity(u64);

impl std::hash::Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

mod cache_clock_panic {
    //! A user `Clock` that panics (e.g. `SystemTime::now().duration_since(start)
    //! .expect(..)` when the wall clock steps backwards) panicked *inside* an
    //! insert's critical section: `unlink_victims` read the clock for the first
    //! time in the operation after the policy had already admitted the newcomer
    //! and evicted the victim. The victim's node was freed while its entry
    //! stayed linked (a use after free, seen by valgrind), and the newcomer's
    //! entry leaked. The shard now reads the clock before it changes anything.

    use std::hash::BuildHasherDefault;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;
    use std::time::Duration;

    use unlocked::{Cache, Clock};

    use super::Identity;

    /// A wall clock as users write one: time since `start`, which panics when
    /// the wall clock went backwards (as `SystemTime::duration_since(..).expect`).
    #[derive(Debug, Clone)]
    struct WallClock {
        start: u64,
        wall: Arc<AtomicU64>,
    }
    impl Clock for WallClock {
        fn now(&self) -> Duration {
            let wall = self.wall.load(SeqCst);
            Duration::from_nanos(
                wall.checked_sub(self.start)
                    .expect("wall clock went backwards"),
            )
        }
    }

    struct Val(Arc<AtomicIsize>);
    impl Val {
        fn new(live: &Arc<AtomicIsize>) -> Self {
            live.fetch_add(1, SeqCst);
            Val(Arc::clone(live))
        }
    }
    impl Clone for Val {
        fn clone(&self) -> Self {
            Val::new(&self.0)
        }
    }
    impl Drop for Val {
        fn drop(&mut self) {
            self.0.fetch_sub(1, SeqCst);
        }
    }

    // Capacity 1: a table of 4 slots; `start` maps the low 32 bits of the hash
    // onto them, so these keys live in slots 3 and 2 (the first sweep looks at
    // slots 0 and 1, which are empty, and reads no clock).
    const K1: u64 = 3 << 30;
    const K2: u64 = 2 << 30;

    #[test]
    fn a_panicking_clock_leaves_the_shard_consistent() {
        let live = Arc::new(AtomicIsize::new(0));
        let wall = Arc::new(AtomicU64::new(10_000_000_000));
        let identity;
        let clock = WallClock {
            start: 10_000_000_000,
            wall: Arc::clone(&wall),
        };
        {
            let cache: Cache<u64, Val, _> = Cache::builder()
                .max_capacity(1)
                .clock(clock)
                .hasher(BuildHasherDefault::<Identity>::default())
                .build()
                .unwrap();
            cache.insert_with_ttl(K1, Val::new(&live), Duration::from_secs(60));
            // The wall clock steps back (NTP): the user's clock panics now.
            wall.store(5_000_000_000, SeqCst);
            let r = catch_unwind(AssertUnwindSafe(|| cache.insert(K2, Val::new(&live))));
            assert!(r.is_err(), "the clock panicked through insert");
            wall.store(20_000_000_000, SeqCst);
            let s = cache.stats();
            println!(
                "after the panic: len {} get(K1) {} get(K2) {} stats {s:?}",
                cache.len(),
                cache.get(&K1).is_some(),
                cache.get(&K2).is_some()
            );
            identity = (
                s.inserts,
                s.evictions + s.expirations + s.removals + cache.len() as u64,
            );
            // A write that reaches K1's entry through its node (before the
            // fix, into freed memory: valgrind saw it).
            cache.remove(&K1);
            cache.validate();
        }
        assert_eq!(
            identity.0, identity.1,
            "inserts = evictions + expirations + removals + len"
        );
        // Retired values are freed by the epoch collector, which the other
        // tests of this file (on parallel threads) may hold up a while; the
        // newcomer's value leaked for good before the fix.
        for _ in 0..100_000 {
            if live.load(SeqCst) == 0 {
                break;
            }
            crossbeam_epoch::pin().flush();
            std::thread::yield_now();
        }
        assert_eq!(
            live.load(SeqCst),
            0,
            "values never dropped after the cache was dropped"
        );
    }

    /// The same clock panicking in `clear`, which reads it for the first time
    /// after it swapped the table and began killing nodes: the shard is left
    /// with a policy that counts entries it no longer has, and every later
    /// insert of a new key into it panics.
    #[test]
    fn a_panicking_clock_in_clear_leaves_the_shard_usable() {
        let live = Arc::new(AtomicIsize::new(0));
        let wall = Arc::new(AtomicU64::new(10_000_000_000));
        let clock = WallClock {
            start: 10_000_000_000,
            wall: Arc::clone(&wall),
        };
        let cache: Cache<u64, Val, _> = Cache::builder()
            .max_capacity(2)
            .clock(clock)
            .hasher(BuildHasherDefault::<Identity>::default())
            .build()
            .unwrap();
        // Capacity 2: 5 slots. Key 1 sits in slot 0 (no expiry), key
        // 0xFFFF_FFFF in slot 4 (with one): `clear` meets them in that order.
        cache.insert(1, Val::new(&live));
        cache.insert_with_ttl(0xFFFF_FFFF, Val::new(&live), Duration::from_secs(60));
        wall.store(5_000_000_000, SeqCst);
        assert!(catch_unwind(AssertUnwindSafe(|| cache.clear())).is_err());
        wall.store(20_000_000_000, SeqCst);
        println!(
            "after the panic: len {} iter {}",
            cache.len(),
            cache.iter().count()
        );
        for k in 100..104u64 {
            let r = catch_unwind(AssertUnwindSafe(|| cache.insert(k << 32, Val::new(&live))));
            assert!(
                r.is_ok(),
                "insert of key {k} after a clock panic in clear panicked"
            );
        }
    }
}

mod cache_eq_panic {
    //! `docs/cache.md`: "every panic point leaves a consistent state". An
    //! insert sweeps expired entries *before* its probe calls the key's `Eq`;
    //! when that `Eq` panics, the swept entries are gone (and counted as
    //! expirations) but the listener is never told and `len()` is not updated.

    use std::hash::{BuildHasherDefault, Hash, Hasher};
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use unlocked::cache::{Cache, RemovalCause};
    use unlocked::ManualClock;

    /// A key whose `Eq` panics on its `fuse`-th comparison (0: never).
    #[derive(Clone, Debug)]
    struct Key {
        id: u64,
        fuse: Arc<AtomicUsize>,
    }

    impl Key {
        fn new(id: u64) -> Self {
            Key {
                id,
                fuse: Arc::new(AtomicUsize::new(0)),
            }
        }
    }

    impl PartialEq for Key {
        fn eq(&self, other: &Self) -> bool {
            for k in [self, other] {
                let f = k.fuse.load(SeqCst);
                if f == 1 {
                    panic!("Eq panics");
                }
                if f > 1 {
                    k.fuse.store(f - 1, SeqCst);
                }
            }
            self.id == other.id
        }
    }
    impl Eq for Key {}
    impl Hash for Key {
        fn hash<H: Hasher>(&self, h: &mut H) {
            self.id.hash(h);
        }
    }

    // Keys 0, 1, 2 hash to themselves (`Identity`): they probe from slot 0
    // and sit in slots 0, 1, 2, with the same tag (so every probe step
    // compares keys).
    use super::Identity;

    #[test]
    fn panicking_eq_during_insert_loses_no_listener_call_and_keeps_len() {
        let clock = ManualClock::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = Arc::clone(&log);
        let cache: Cache<Key, u64, _> = Cache::builder()
            .max_capacity(3)
            .hasher(BuildHasherDefault::<Identity>::default())
            .clock(clock.clone())
            .eviction_listener(move |k: &Key, _v: &u64, c| l.lock().unwrap().push((k.id, c)))
            .build()
            .unwrap();
        cache.insert(Key::new(0), 0);
        cache.insert_with_ttl(Key::new(1), 1, Duration::from_secs(1));
        cache.insert_with_ttl(Key::new(2), 2, Duration::from_secs(1));
        clock.advance(Duration::from_secs(2));
        // Update key 0 with a key whose second comparison panics: the first is
        // the lock-free look before the lock, the second the probe under it,
        // after the sweep. Three times: the sweep cursor (at slot 2 after the
        // inserts) covers the table of 6 slots.
        for _ in 0..3 {
            let k = Key::new(0);
            k.fuse.store(2, SeqCst);
            let r = catch_unwind(AssertUnwindSafe(|| cache.insert(k, 100)));
            assert!(r.is_err());
        }
        let s = cache.stats();
        let expired_told = log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.1 == RemovalCause::Expired)
            .count();
        let linked = cache.iter().count(); // only key 0 is unexpired
        println!(
            "stats {s:?}, len {}, listener {:?}",
            cache.len(),
            log.lock().unwrap()
        );
        assert_eq!(
            s.expirations as usize, expired_told,
            "expirations counted but not told to the listener"
        );
        assert_eq!(
            s.inserts,
            s.evictions + s.expirations + s.removals + cache.len() as u64,
            "identity"
        );
        assert!(cache.len() >= linked);
        cache.validate();
    }
}

mod cache_clone_panic {
    //! `Cache::remove` clones the removed value before it runs the listener: a
    //! panicking `V::clone` loses the listener's `Removed` call for good (the
    //! entry is already unlinked, counted and retired).

    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};

    use unlocked::cache::{Cache, RemovalCause};

    static CLONE_PANICS: AtomicBool = AtomicBool::new(false);

    struct V(u64);
    impl Clone for V {
        fn clone(&self) -> Self {
            if CLONE_PANICS.load(SeqCst) {
                panic!("clone panics");
            }
            V(self.0)
        }
    }

    #[test]
    fn remove_with_a_panicking_clone_still_tells_the_listener() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = Arc::clone(&log);
        let cache: Cache<u64, V> = Cache::builder()
            .max_capacity(8)
            .eviction_listener(move |k: &u64, _: &V, c| l.lock().unwrap().push((*k, c)))
            .build()
            .unwrap();
        cache.insert(1, V(1));
        CLONE_PANICS.store(true, SeqCst);
        assert!(catch_unwind(AssertUnwindSafe(|| cache.remove(&1))).is_err());
        CLONE_PANICS.store(false, SeqCst);
        assert!(cache.get(&1).is_none(), "the entry is gone");
        assert_eq!(cache.stats().removals, 1);
        assert_eq!(
            *log.lock().unwrap(),
            [(1, RemovalCause::Removed)],
            "listener calls"
        );
    }
}

mod cache_reentrant_drop {
    //! A value's `Drop` that loads another key through the cache deadlocks: the
    //! epoch collector runs deferred destructors inside `epoch::pin()`, and
    //! `Cache::join` pins (in `lookup`) while it holds the shard's `flights`
    //! lock.

    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
    use std::sync::{mpsc, OnceLock};
    use std::time::Duration;

    use unlocked::Cache;

    static CACHE: OnceLock<Cache<u64, Reloads>> = OnceLock::new();
    static RELOADS: AtomicU64 = AtomicU64::new(0);

    /// A value that, when dropped, warms a companion key through the cache
    /// (armed values only, so the chain stops).
    #[derive(Clone)]
    struct Reloads {
        armed: bool,
    }

    impl Drop for Reloads {
        fn drop(&mut self) {
            if self.armed {
                let k = 1_000_000 + RELOADS.fetch_add(1, SeqCst);
                CACHE
                    .get()
                    .unwrap()
                    .get_or_insert_with(k, || Reloads { armed: false });
            }
        }
    }

    #[test]
    fn value_drop_that_loads_through_the_cache_does_not_deadlock() {
        CACHE.get_or_init(|| Cache::builder().max_capacity(4).shards(1).build().unwrap());
        let (done, finished) = mpsc::channel();
        std::thread::spawn(move || {
            let cache = CACHE.get().unwrap();
            for i in 0..200_000u64 {
                cache.get_or_insert_with(i % 64, || Reloads { armed: true });
            }
            done.send(()).unwrap();
        });
        assert!(
            finished.recv_timeout(Duration::from_secs(15)).is_ok(),
            "deadlock: a deferred value drop ran under the flights lock \
             ({} reloads done before it stuck)",
            RELOADS.load(SeqCst)
        );
    }
}

mod cache_clone_reentry {
    //! `V::clone` that loads another key of the same shard: the leader
    //! cloned its value under the shard's `flights` lock and deadlocked
    //! (found in review); `get_or_insert_with`'s docs allow it.

    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::{mpsc, OnceLock};
    use std::time::Duration;

    use unlocked::Cache;

    static CACHE: OnceLock<Cache<u64, Loads>> = OnceLock::new();
    static ARMED: AtomicBool = AtomicBool::new(false);

    /// A value whose `clone` (once armed) loads key 2 through the cache.
    #[derive(Debug)]
    struct Loads(u64);

    impl Clone for Loads {
        fn clone(&self) -> Self {
            if ARMED.swap(false, SeqCst) {
                let two = CACHE.get().unwrap().get_or_insert_with(2, || Loads(2));
                assert_eq!(two.0, 2);
            }
            Loads(self.0)
        }
    }

    #[test]
    fn value_clone_that_loads_another_key_does_not_deadlock() {
        CACHE.get_or_init(|| Cache::builder().max_capacity(16).shards(1).build().unwrap());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let cache = CACHE.get().unwrap();
            ARMED.store(true, SeqCst);
            let one = cache.get_or_insert_with(1, || Loads(1));
            tx.send((one.0, cache.get(&2).map(|v| v.0))).unwrap();
        });
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(30)).ok(),
            Some((1, Some(2))),
            "deadlock: V::clone ran under the shard's flights lock"
        );
    }
}

mod cache_drop_panic {
    //! A value whose `Drop` panics while the cache is dropped: the other
    //! values, resident or retired and not yet handed to the collector,
    //! are still dropped (as `Vec` does).

    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;

    use unlocked::Cache;

    #[derive(Clone, Debug)]
    struct Counted {
        id: u64,
        dropped: Arc<AtomicUsize>,
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.dropped.fetch_add(1, SeqCst);
            if self.id == 3 {
                panic!("value 3 refuses to drop");
            }
        }
    }

    #[test]
    fn a_panicking_value_drop_does_not_leak_the_others() {
        for victim_evicted in [false, true] {
            let dropped = Arc::new(AtomicUsize::new(0));
            let cache = Cache::builder().max_capacity(4).shards(1).build().unwrap();
            // Value 3 is inserted first (and evicted by the others) or last
            // (and resident when the cache is dropped).
            let order: Vec<u64> = if victim_evicted {
                [3, 0, 1, 2, 4, 5, 6, 7, 8, 9].into()
            } else {
                [0, 1, 2, 4, 5, 6, 7, 8, 9, 3].into()
            };
            for id in order {
                let value = Counted {
                    id,
                    dropped: Arc::clone(&dropped),
                };
                cache.insert(id, value);
            }
            assert!(catch_unwind(AssertUnwindSafe(|| drop(cache))).is_err());
            assert_eq!(dropped.load(SeqCst), 10, "evicted first: {victim_evicted}");
        }
    }
}

mod cache_listener_reentry {
    use std::sync::{mpsc, Arc, OnceLock, Weak};
    use std::time::Duration;
    use unlocked::cache::{Cache, RemovalCause};
    use unlocked::ManualClock;

    #[test]
    fn listener_may_call_back_into_the_cache() {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let clock = ManualClock::new();
            let slot: Arc<OnceLock<Weak<Cache<u64, u64>>>> = Arc::default();
            let s2 = Arc::clone(&slot);
            let cache = Arc::new(
                Cache::builder()
                    .max_capacity(4)
                    .max_weight(10)
                    .weigher(|_, v: &u64| (*v % 5) as u32)
                    .shards(1)
                    .clock(clock.clone())
                    .eviction_listener(move |k: &u64, _v: &u64, c| {
                        if let Some(c2) = s2.get().and_then(Weak::upgrade) {
                            if *k < 1000 {
                                let _ = c2.get(k);
                                c2.insert(k + 1000, 1);
                                let _ = c2.remove(&(k + 1001));
                                let _ = c2.get_or_insert_with(k + 2000, || 3);
                                if c == RemovalCause::Expired {
                                    c2.cleanup_expired();
                                }
                            }
                        }
                    })
                    .build()
                    .unwrap(),
            );
            slot.set(Arc::downgrade(&cache)).unwrap();
            for i in 0..if cfg!(miri) { 400 } else { 20_000u64 } {
                match i % 7 {
                    0 => cache.insert_with_ttl(i % 50, i, Duration::from_millis(5)),
                    1 => clock.advance(Duration::from_millis(3)),
                    2 => {
                        cache.remove(&(i % 50));
                    }
                    3 => {
                        cache.get_or_insert_with(i % 50, || i);
                    }
                    4 => {
                        if i % 70 == 4 {
                            cache.clear()
                        }
                    }
                    5 => {
                        cache.cleanup_expired();
                    }
                    _ => cache.insert(i % 50, i),
                }
            }
            cache.validate();
            tx.send(()).unwrap();
        });
        // Generous: miri runs the loop thousands of times slower.
        let limit = Duration::from_secs(if cfg!(miri) { 600 } else { 15 });
        assert!(
            rx.recv_timeout(limit).is_ok(),
            "deadlock or panic in listener re-entry"
        );
    }
}

mod work_clock_panic {
    //! A user `Clock` that panics (a wall clock stepping back, as
    //! `SystemTime::duration_since(..).expect(..)`) inside `claim`.

    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::Arc;
    use std::time::Duration;

    use unlocked::{Clock, WorkQueue};

    #[derive(Debug, Clone, Default)]
    struct FlakyClock {
        broken: Arc<AtomicBool>,
    }
    impl Clock for FlakyClock {
        fn now(&self) -> Duration {
            assert!(!self.broken.load(SeqCst), "wall clock went backwards");
            Duration::from_secs(1)
        }
    }

    /// `claim` pops the item's entry from the pending order and only then
    /// reads the clock (for the lease): the panic drops the entry while the
    /// item stays `Pending`, so no later `claim` ever finds it.
    #[test]
    fn clock_panic_in_claim_loses_no_item() {
        let clock = FlakyClock::default();
        let q = WorkQueue::builder().clock(clock.clone()).build().unwrap();
        let id = q.add("job").unwrap();
        clock.broken.store(true, SeqCst);
        assert!(catch_unwind(AssertUnwindSafe(|| q.claim())).is_err());
        clock.broken.store(false, SeqCst);
        assert_eq!(q.counts().pending, 1, "the item still reports pending");
        let again = q.claim();
        assert!(
            again.is_some(),
            "item {id} is pending but can never be claimed again (its entry \
             in the pending order was dropped by the panic)"
        );
    }

    /// The same through `claim_timeout`: a waiter whose `try_pop` meets the
    /// panicking clock.
    #[test]
    fn clock_panic_in_claim_timeout_loses_no_item() {
        let clock = FlakyClock::default();
        let q = WorkQueue::builder().clock(clock.clone()).build().unwrap();
        q.add(7u32).unwrap();
        clock.broken.store(true, SeqCst);
        assert!(catch_unwind(AssertUnwindSafe(
            || q.claim_timeout(Duration::from_millis(10))
        ))
        .is_err());
        clock.broken.store(false, SeqCst);
        assert!(
            q.claim_timeout(Duration::from_millis(100)).is_some(),
            "pending item lost: counts {:?}",
            q.counts()
        );
    }
}

mod work_reason_panic {
    //! `fail(claim, reason)` converts `reason` (`impl Into<Arc<str>>`, user
    //! code for a user error type) only after the item's state changed.

    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::Arc;
    use std::time::Duration;

    use unlocked::{ItemStatus, ManualClock, RetryBackoff, WorkQueue};

    /// A user error type whose conversion to the reason string panics
    /// (e.g. a `Display` impl that panics on a malformed field).
    struct BadReason;
    impl From<BadReason> for Arc<str> {
        fn from(_: BadReason) -> Arc<str> {
            panic!("formatting the reason panicked")
        }
    }

    #[test]
    fn panicking_reason_in_fail_loses_no_item() {
        let q = WorkQueue::new();
        let id = q.add("job").unwrap();
        let c = q.claim().unwrap();
        assert!(catch_unwind(AssertUnwindSafe(|| q.fail(&c, BadReason))).is_err());
        let status = q.get(id).unwrap().status();
        println!(
            "after the panic: status {status:?}, counts {:?}",
            q.counts()
        );
        // Either the fail did not happen (the claim still holds the item and
        // may settle it), or it did and the item is claimable again.
        if status == ItemStatus::Processing {
            assert!(q.complete(&c).is_ok());
        } else {
            assert_eq!(status, ItemStatus::Pending);
            assert!(
                q.claim().is_some(),
                "item {id} reports Pending but can never be claimed: the \
                 panic came between the state change and the re-queue"
            );
        }
    }

    #[test]
    fn panicking_reason_in_fail_with_backoff_loses_no_item() {
        let clock = ManualClock::new();
        let q = WorkQueue::builder()
            .clock(clock.clone())
            .retry_backoff(RetryBackoff::fixed(Duration::from_secs(1)))
            .build()
            .unwrap();
        let id = q.add("job").unwrap();
        let c = q.claim().unwrap();
        assert!(catch_unwind(AssertUnwindSafe(|| q.fail(&c, BadReason))).is_err());
        clock.advance(Duration::from_secs(5));
        let status = q.get(id).unwrap().status();
        if status == ItemStatus::Processing {
            assert!(q.complete(&c).is_ok());
        } else {
            assert!(
                q.claim().is_some(),
                "item {id} ({status:?}) is due but `claim` does not find it \
                 (next_due was never lowered); only a reap_expired would"
            );
        }
    }
}

#[cfg(feature = "persist")]
mod config_reload_panic {
    //! `reload` reads a file the user edited by hand. When it is refused
    //! (parse error, validator `Err`) the store marks it "not one we
    //! wrote", so the next commit does not make it the backup `NAME.bak`.
    //! A validator (or a `Deserialize` impl) that *panics* on that file
    //! skips the marking: the next commit hard-links the refused file over
    //! the good backup, and `open_or_recover` can no longer recover.

    use std::fs;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use unlocked::config::ConfigStore;

    fn set(store: &ConfigStore<u32>, n: u32) {
        store
            .update(|v| -> Result<(), ()> {
                *v = n;
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn panicking_validator_in_reload_does_not_make_the_refused_file_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.json");
        let bak = dir.path().join("n.json.bak");
        let store = ConfigStore::builder(1u32)
            // A validator that indexes a table by the value (it panics on a
            // value out of range instead of returning Err).
            .validator(|n: &u32| {
                let allowed = [true; 100];
                if allowed[*n as usize] {
                    Ok(())
                } else {
                    Err("not allowed")
                }
            })
            .open(&path)
            .unwrap();
        set(&store, 2);
        set(&store, 3); // n.json holds v3, n.json.bak holds v2
        let good_backup = fs::read_to_string(&bak).unwrap();
        // An operator edits the file by hand, badly.
        fs::write(&path, r#"{"version": 3, "config": 100000}"#).unwrap();
        assert!(catch_unwind(AssertUnwindSafe(|| store.reload())).is_err());
        assert_eq!(*store.load(), 3, "memory unchanged");
        // The next commit must not take the refused file as its backup
        // (what a reload refused with Err guarantees).
        set(&store, 4);
        let backup = fs::read_to_string(&bak).unwrap();
        assert!(
            !backup.contains("100000"),
            "the refused, hand-edited file became the backup (was {good_backup:?}, now {backup:?})"
        );
    }

    /// The same with a `Deserialize` impl that panics on the hand-edited
    /// file (a `deserialize_with` helper that unwraps).
    #[test]
    fn panicking_deserialize_in_reload_does_not_make_the_refused_file_the_backup() {
        #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
        struct Limits {
            #[serde(deserialize_with = "parse_port")]
            port: String,
        }
        fn parse_port<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
            let s: String = serde::Deserialize::deserialize(d)?;
            let _: u16 = s.parse().unwrap(); // panics on a bad port
            Ok(s)
        }
        let set = |store: &ConfigStore<Limits>, p: &str| {
            store
                .update(|l| -> Result<(), ()> {
                    l.port = p.into();
                    Ok(())
                })
                .unwrap();
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.json");
        let bak = dir.path().join("l.json.bak");
        let store = ConfigStore::open(&path, Limits { port: "80".into() }).unwrap();
        set(&store, "81");
        set(&store, "82");
        fs::write(&path, r#"{"version": 3, "config": {"port": "eighty"}}"#).unwrap();
        assert!(catch_unwind(AssertUnwindSafe(|| store.reload())).is_err());
        set(&store, "83");
        let backup = fs::read_to_string(&bak).unwrap();
        assert!(
            !backup.contains("eighty"),
            "the refused, hand-edited file became the backup: {backup:?}"
        );
    }

    #[test]
    fn refused_reload_with_err_keeps_the_backup_for_comparison() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.json");
        let bak = dir.path().join("n.json.bak");
        let store = ConfigStore::builder(1u32)
            .validator(|n: &u32| if *n < 100 { Ok(()) } else { Err("not allowed") })
            .open(&path)
            .unwrap();
        set(&store, 2);
        set(&store, 3);
        fs::write(&path, r#"{"version": 3, "config": 100000}"#).unwrap();
        assert!(store.reload().is_err());
        set(&store, 4);
        assert!(!fs::read_to_string(&bak).unwrap().contains("100000"));
    }
}

mod config_reentrant_drop {
    //! The store's docs promise that `T::drop` of a replaced version runs
    //! after the writer lock is released (`publish`'s "evicted" version), and
    //! callbacks run outside it. But on the error paths of `update`, the
    //! rejected draft is dropped while the writer lock is still held (the
    //! `?` returns with the guard alive), and `remove_callback` drops the
    //! removed callback's closure under the lock. A `Drop` that calls a
    //! locking method of the same store (`update`, `history`, `on_change`,
    //! `remove_callback`) deadlocks on the std mutex.

    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::{mpsc, Arc, OnceLock};
    use std::time::Duration;

    use unlocked::config::ConfigStore;

    /// Runs `f` on a thread; `false` if it did not finish within 5 s.
    fn finishes(f: impl FnOnce() + Send + 'static) -> bool {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(5)).is_ok()
    }

    static STORE: OnceLock<ConfigStore<Conf>> = OnceLock::new();
    static AUDIT_ON_DROP: AtomicBool = AtomicBool::new(false);

    /// A config whose drop records, for an audit log, which version was
    /// current (reading the store's history).
    #[derive(Clone, Debug)]
    struct Conf {
        limit: u32,
    }
    impl Drop for Conf {
        fn drop(&mut self) {
            if AUDIT_ON_DROP.swap(false, SeqCst) {
                let h = STORE.get().unwrap().history(1);
                println!(
                    "audit: dropped limit {} at {:?}",
                    self.limit,
                    h[0].version()
                );
            }
        }
    }

    #[test]
    fn drop_of_a_rejected_draft_may_call_the_store() {
        STORE.get_or_init(|| ConfigStore::new(Conf { limit: 1 }));
        let ok = finishes(|| {
            let store = STORE.get().unwrap();
            AUDIT_ON_DROP.store(true, SeqCst);
            // The closure refuses: the draft (a clone of the current value)
            // is dropped on the way out of `update`.
            let r = store.update(|c| {
                c.limit = 1000;
                Err("limit too high")
            });
            assert!(r.is_err());
        });
        assert!(
            ok,
            "deadlock: the rejected draft's Drop ran under the writer lock and called history()"
        );
    }

    #[test]
    fn a_removed_callbacks_drop_may_call_the_store() {
        let store = Arc::new(ConfigStore::new(0u32));
        /// Captured by a callback: when the callback goes, it unregisters
        /// a companion callback (a drop guard).
        struct Unregister {
            store: Arc<ConfigStore<u32>>,
            companion: unlocked::config::CallbackId,
        }
        impl Drop for Unregister {
            fn drop(&mut self) {
                self.store.remove_callback(self.companion);
            }
        }
        let companion = store.on_change(|_| {});
        let guard = Unregister {
            store: Arc::clone(&store),
            companion,
        };
        let id = store.on_change(move |_| {
            let _ = &guard;
        });
        let s = Arc::clone(&store);
        let ok = finishes(move || {
            s.remove_callback(id);
        });
        assert!(
            ok,
            "deadlock: remove_callback dropped the callback (and what it captured) under the writer lock"
        );
    }
}

mod queue_drop_panic {
    //! Dropping a queue drops the values left in it. When one value's `Drop`
    //! panics, the queue goes on dropping the rest while the panic unwinds,
    //! as `Vec`, `VecDeque` and arrays do (each queue's `Drop` once stopped
    //! there and leaked the values after it: found in review).

    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;

    use unlocked::{BoundedQueue, UnboundedQueue, WorkQueue};

    struct V {
        bomb: bool,
        drops: Arc<AtomicUsize>,
    }
    impl Drop for V {
        fn drop(&mut self) {
            self.drops.fetch_add(1, SeqCst);
            if self.bomb {
                panic!("V::drop panicked");
            }
        }
    }

    fn values(drops: &Arc<AtomicUsize>) -> impl Iterator<Item = V> + '_ {
        (0..10).map(move |i| V {
            bomb: i == 2,
            drops: Arc::clone(drops),
        })
    }

    #[test]
    fn vec_drops_every_value_even_when_one_drop_panics() {
        let drops = Arc::new(AtomicUsize::new(0));
        let v: Vec<V> = values(&drops).collect();
        assert!(catch_unwind(AssertUnwindSafe(|| drop(v))).is_err());
        assert_eq!(drops.load(SeqCst), 10);
    }

    #[test]
    fn bounded_queue_drops_every_value_even_when_one_drop_panics() {
        let drops = Arc::new(AtomicUsize::new(0));
        let q = BoundedQueue::new(16);
        for v in values(&drops) {
            assert!(q.push(v).is_ok());
        }
        assert!(catch_unwind(AssertUnwindSafe(|| drop(q))).is_err());
        assert_eq!(drops.load(SeqCst), 10, "values leaked after the panic");
    }

    #[test]
    fn unbounded_queue_drops_every_value_even_when_one_drop_panics() {
        let drops = Arc::new(AtomicUsize::new(0));
        let q = UnboundedQueue::with_segment_capacity(4);
        for v in values(&drops) {
            assert!(q.push(v).is_ok());
        }
        assert!(catch_unwind(AssertUnwindSafe(|| drop(q))).is_err());
        assert_eq!(drops.load(SeqCst), 10, "values leaked after the panic");
    }

    /// Items that only the work queue's table still holds (completed,
    /// claimed, failed), over several of its segments, past one whose
    /// data's drop panics (found in review: the table's drop stopped at
    /// the panic and leaked every later item).
    #[test]
    fn work_queue_drops_every_item_even_when_one_drop_panics() {
        let drops = Arc::new(AtomicUsize::new(0));
        let q = WorkQueue::builder().max_attempts(1).build().unwrap();
        for i in 0..300 {
            let bomb = i == 2;
            assert!(q
                .add(V {
                    bomb,
                    drops: Arc::clone(&drops)
                })
                .is_ok());
        }
        let mut claims = Vec::new();
        for i in 0..300 {
            let claim = q.claim().expect("pending");
            match i % 3 {
                0 => q.complete(&claim).unwrap(),
                1 => drop(q.fail(&claim, "dead letter").unwrap()),
                _ => {}
            }
            claims.push(claim);
        }
        drop(claims);
        assert!(catch_unwind(AssertUnwindSafe(|| drop(q))).is_err());
        assert_eq!(drops.load(SeqCst), 300, "items leaked after the panic");
    }
}

mod checked_fine {
    //! Hypotheses that turned out fine (these pass on the current code).

    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use std::sync::{mpsc, Arc, OnceLock};
    use std::time::Duration;

    use unlocked::config::ConfigStore;
    use unlocked::{Clock, ItemStatus, RetryBackoff, WorkQueue};

    #[derive(Debug, Clone, Default)]
    struct FlakyClock {
        broken: Arc<AtomicBool>,
        nanos: Arc<AtomicU64>,
    }
    impl Clock for FlakyClock {
        fn now(&self) -> Duration {
            assert!(!self.broken.load(SeqCst), "wall clock went backwards");
            Duration::from_nanos(self.nanos.load(SeqCst))
        }
    }

    /// The clock panicking in fail (with backoff), reap_expired (with and
    /// without backoff), complete, add: each reads the clock before it
    /// changes anything, or not at all.
    #[test]
    fn clock_panics_elsewhere_leave_the_work_queue_consistent() {
        for backoff in [
            RetryBackoff::none(),
            RetryBackoff::fixed(Duration::from_secs(1)),
        ] {
            let clock = FlakyClock::default();
            let q = WorkQueue::builder()
                .clock(clock.clone())
                .lease(Duration::from_secs(1))
                .retry_backoff(backoff)
                .build()
                .unwrap();
            let a = q.add(1u32).unwrap();
            let b = q.add(2u32).unwrap();
            let ca = q.claim().unwrap();
            let cb = q.claim().unwrap();
            clock.nanos.store(2_000_000_000, SeqCst); // both leases over
            clock.broken.store(true, SeqCst);
            assert!(catch_unwind(AssertUnwindSafe(|| q.reap_expired())).is_err());
            let r = catch_unwind(AssertUnwindSafe(|| q.fail(&ca, "x")));
            assert_eq!(r.is_err(), !backoff.is_none());
            assert!(q.add(3u32).is_ok());
            q.complete(&cb).unwrap();
            clock.broken.store(false, SeqCst);
            assert_eq!(q.get(b).unwrap().status(), ItemStatus::Completed);
            // Every item is reachable: drain them.
            clock.nanos.store(10_000_000_000, SeqCst);
            q.reap_expired();
            let mut seen = 0;
            while let Some(c) = q.claim() {
                q.complete(&c).unwrap();
                seen += 1;
            }
            let counts = q.counts();
            assert_eq!(counts.completed, 3, "{backoff:?}: {counts:?} seen {seen}");
            let _ = a;
        }
    }

    /// An item's `Drop` that calls back into the same work queue (add,
    /// claim, remove), run by the epoch collector inside some operation's
    /// pin: no lock anywhere, so no deadlock, and no item is lost.
    #[test]
    fn item_drop_may_call_back_into_the_work_queue() {
        static Q: OnceLock<WorkQueue<Reenters>> = OnceLock::new();
        struct Reenters(bool);
        impl Drop for Reenters {
            fn drop(&mut self) {
                if self.0 {
                    let q = Q.get().unwrap();
                    let id = q.add(Reenters(false)).unwrap();
                    if let Some(c) = q.claim() {
                        let _ = q.complete(&c);
                    }
                    q.remove(id);
                }
            }
        }
        Q.get_or_init(WorkQueue::new);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let q = Q.get().unwrap();
            for _ in 0..50_000 {
                let id = q.add(Reenters(true)).unwrap();
                if let Some(c) = q.claim() {
                    let _ = q.fail(&c, "again");
                }
                q.remove(id);
            }
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_secs(15)).is_ok(), "deadlock");
    }

    /// `T::clone`, the update closure and a validator panicking: the store
    /// is unchanged and usable (the writer lock ignores poisoning).
    #[test]
    fn config_panics_before_publish_change_nothing() {
        static CLONE_PANICS: AtomicBool = AtomicBool::new(false);
        #[derive(Debug)]
        struct C(u32);
        impl Clone for C {
            fn clone(&self) -> Self {
                assert!(!CLONE_PANICS.load(SeqCst), "clone panicked");
                C(self.0)
            }
        }
        let store = ConfigStore::builder(C(1))
            .validator(|c: &C| {
                assert!(c.0 != 13, "validator panicked");
                Ok::<(), &str>(())
            })
            .build()
            .unwrap();
        let mut sub = store.subscribe();
        CLONE_PANICS.store(true, SeqCst);
        assert!(
            catch_unwind(AssertUnwindSafe(|| store.update(|c| -> Result<(), ()> {
                c.0 = 2;
                Ok(())
            })))
            .is_err()
        );
        CLONE_PANICS.store(false, SeqCst);
        assert!(catch_unwind(AssertUnwindSafe(
            || store.update(|_| -> Result<(), ()> { panic!("closure") })
        ))
        .is_err());
        assert!(
            catch_unwind(AssertUnwindSafe(|| store.update(|c| -> Result<(), ()> {
                c.0 = 13;
                Ok(())
            })))
            .is_err()
        );
        assert_eq!(store.load().version().get(), 1);
        assert!(sub.try_changed().is_none());
        assert_eq!(store.history(10).len(), 1);
        let v = store
            .update(|c| -> Result<(), ()> {
                c.0 = 5;
                Ok(())
            })
            .unwrap();
        assert_eq!((v.get(), store.load().0), (2, 5));
        assert_eq!(sub.try_changed().unwrap().version(), v);
    }

    /// Callbacks that panic or re-enter (update, subscribe, load, history)
    /// run outside the lock: no deadlock, commit complete.
    #[test]
    fn config_callbacks_may_reenter_and_panic() {
        let store = Arc::new(ConfigStore::new(0u32));
        let weak = Arc::downgrade(&store);
        store.on_change(|_| panic!("callback panics"));
        store.on_change(move |snap| {
            let s = weak.upgrade().unwrap();
            let _ = s.load();
            let _ = s.subscribe();
            let _ = s.history(2);
            if **snap < 3 {
                s.update(|n| -> Result<(), ()> {
                    *n += 1;
                    Ok(())
                })
                .unwrap();
            }
        });
        let s2 = Arc::clone(&store);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            s2.update(|n| -> Result<(), ()> {
                *n = 1;
                Ok(())
            })
            .unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok(), "deadlock");
        assert_eq!(*store.load(), 3);
        assert_eq!(store.load().version().get(), 4);
    }
}
