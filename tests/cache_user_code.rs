//! User code that panics or calls back into the cache from inside an
//! operation: a clock, a key's `Eq`, `V::clone`, a value's `Drop`, the
//! eviction listener. Each leaves the cache consistent and loses no
//! listener call or value. The first four failed before the fixes (found in
//! review).
#![cfg(not(feature = "shuttle"))] // the shuttle facade needs a shuttle runtime

mod clock_panic {
    //! A user `Clock` that panics (e.g. `SystemTime::now().duration_since(start)
    //! .expect(..)` when the wall clock steps backwards) panicked *inside* an
    //! insert's critical section: `unlink_victims` read the clock for the first
    //! time in the operation after the policy had already admitted the newcomer
    //! and evicted the victim. The victim's node was freed while its entry
    //! stayed linked (a use after free, seen by valgrind), and the newcomer's
    //! entry leaked. The shard now reads the clock before it changes anything.

    use std::hash::{BuildHasherDefault, Hasher};
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::atomic::{AtomicIsize, AtomicU64, Ordering::SeqCst};
    use std::sync::Arc;
    use std::time::Duration;

    use unlocked::{Cache, Clock};

    /// Hashes a `u64` to itself, so the test can place keys in chosen slots.
    #[derive(Default)]
    struct Identity(u64);
    impl Hasher for Identity {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, _: &[u8]) {
            unreachable!()
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
    }

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

mod eq_panic {
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

    /// Hashes a `u64` to itself: keys 0, 1, 2 probe from slot 0 and sit in
    /// slots 0, 1, 2, with the same tag (so every probe step compares keys).
    #[derive(Default)]
    struct Identity(u64);
    impl Hasher for Identity {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, _: &[u8]) {
            unreachable!()
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
    }

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

mod clone_panic {
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

mod reentrant_drop {
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

mod listener_reentry {
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
            for i in 0..20_000u64 {
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
        assert!(
            rx.recv_timeout(Duration::from_secs(15)).is_ok(),
            "deadlock or panic in listener re-entry"
        );
    }
}
