//! Integration tests of `ConfigStore`: versions, rollback, validators,
//! conflicts, readers, subscriptions, callbacks, history, drops, and (with
//! feature `persist`) the file protocol and a SIGKILL crash test.
//!
//! ```text
//! cargo test --test config                       # in-memory
//! cargo test --features persist --test config    # plus persistence
//! cargo test --release --features persist --test config -- --ignored   # stress
//! ```
//! The in-memory tests also run under miri (scaled down).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use unlocked::config::{BuildError, ConfigStore, UpdateError, Version};

/// Iterations, scaled down under miri.
fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        (n / 100).max(3)
    } else {
        n
    }
}

fn set<T: Clone + Send + Sync + 'static>(store: &ConfigStore<T>, value: T) -> Version {
    store
        .update(move |v| -> Result<(), ()> {
            *v = value;
            Ok(())
        })
        .unwrap()
}

/// Two fields that every commit keeps equal: a torn read would show.
#[derive(Clone, Debug, PartialEq)]
struct Pair {
    a: u64,
    b: u64,
}

#[test]
fn versions_start_at_one_and_add_one_per_commit() {
    let store = ConfigStore::new(0u64);
    assert_eq!(store.load().version(), Version::INITIAL);
    for i in 1..=5u64 {
        let v = set(&store, i);
        assert_eq!(u64::from(v), i + 1);
        assert_eq!(store.load().version(), v);
        assert_eq!(*store.load(), i);
    }
}

#[test]
fn a_failing_closure_changes_nothing() {
    let store = ConfigStore::new(vec![1, 2, 3]);
    let err = store
        .update(|v| {
            v.push(4);
            Err("changed my mind")
        })
        .unwrap_err();
    assert!(matches!(err, UpdateError::Rejected("changed my mind")));
    assert!(err.to_string().contains("changed my mind"));
    assert_eq!(*store.load(), [1, 2, 3]);
    assert_eq!(store.load().version(), Version::INITIAL);
}

#[test]
fn validators_run_in_order_and_refuse() {
    let store = ConfigStore::builder(10i32)
        .validator(|n: &i32| if *n >= 0 { Ok(()) } else { Err("negative") })
        .validator(|n: &i32| if *n <= 100 { Ok(()) } else { Err("over 100") })
        .build()
        .unwrap();
    let err = store
        .update(|n| -> Result<(), ()> {
            *n = 1000;
            Ok(())
        })
        .unwrap_err();
    let UpdateError::Invalid(e) = err else {
        panic!("expected Invalid, got {err:?}")
    };
    assert_eq!(e.validator(), 1);
    assert!(e.to_string().contains("validator #1") && e.to_string().contains("over 100"));
    assert_eq!(*store.load(), 10);
    assert_eq!(set(&store, 50).get(), 2);
}

#[test]
fn build_refuses_bad_settings_and_invalid_initial() {
    let err = ConfigStore::builder(0).history(0).build().unwrap_err();
    assert!(matches!(err, BuildError::ZeroHistory));
    assert!(err.to_string().contains("at least 1"));
    let err = ConfigStore::builder(-1)
        .validator(|n: &i32| if *n >= 0 { Ok(()) } else { Err("negative") })
        .build()
        .unwrap_err();
    assert!(matches!(err, BuildError::InvalidInitial(_)));
    assert!(err.to_string().contains("negative"));
}

#[test]
fn update_if_refuses_a_stale_version() {
    let store = ConfigStore::new(0);
    let seen = store.load().version();
    set(&store, 1);
    let err = store
        .update_if(seen, |n| -> Result<(), ()> {
            *n = 99;
            Ok(())
        })
        .unwrap_err();
    match err {
        UpdateError::Conflict { expected, actual } => {
            assert_eq!((expected.get(), actual.get()), (1, 2));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(*store.load(), 1);
    let now = store.load().version();
    assert_eq!(
        store
            .update_if(now, |n| -> Result<(), ()> {
                *n = 2;
                Ok(())
            })
            .unwrap()
            .get(),
        3
    );
}

#[test]
fn a_panicking_closure_leaves_the_store_usable() {
    let store = Arc::new(ConfigStore::new(1));
    let s = Arc::clone(&store);
    let r = thread::spawn(move || {
        s.update(|n| -> Result<(), ()> {
            *n = 2;
            panic!("boom");
        })
    })
    .join();
    assert!(r.is_err());
    assert_eq!(*store.load(), 1);
    assert_eq!(set(&store, 3).get(), 2);
}

#[test]
fn snapshots_do_not_change_and_readers_are_never_stale() {
    let store = ConfigStore::new(String::from("a"));
    let mut reader = store.reader();
    let old = store.load();
    assert_eq!(reader.load().value(), "a");
    set(&store, String::from("b"));
    assert_eq!(&*old, "a");
    assert_eq!(reader.load().value(), "b");
    assert_eq!(reader.load().version().get(), 2);
    let arc = store.load().into_arc();
    set(&store, String::from("c"));
    assert_eq!(arc.value(), "b");
}

#[test]
fn subscription_has_seen_the_current_version_and_gets_only_the_latest() {
    let store = ConfigStore::new(0);
    set(&store, 1);
    let mut sub = store.subscribe();
    assert_eq!(sub.seen().get(), 2);
    assert!(sub.try_changed().is_none());
    assert!(sub.changed_timeout(Duration::from_millis(5)).is_none());
    for i in 2..=4 {
        set(&store, i);
    }
    let s = sub.changed_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!((*s, s.version().get()), (4, 5));
    assert!(sub.try_changed().is_none());
}

#[test]
fn subscriber_wakes_on_commit_from_another_thread() {
    let store = Arc::new(ConfigStore::new(0u32));
    let mut sub = store.subscribe();
    let n = scaled(200) as u32;
    let writer = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            for i in 1..=n {
                set(&store, i);
            }
        })
    };
    let mut last = 0;
    while last < n {
        let s = sub
            .changed_timeout(Duration::from_secs(30))
            .expect("the writer commits until n");
        assert!(*s > last, "versions go forward");
        last = *s;
    }
    writer.join().unwrap();
}

#[test]
fn async_changed_and_closing() {
    let store = ConfigStore::new(0);
    let mut sub = store.subscribe();
    set(&store, 7);
    assert_eq!(*pollster::block_on(sub.changed()).unwrap(), 7);
    drop(store);
    assert!(pollster::block_on(sub.changed()).is_none());
    assert!(sub.changed_timeout(Duration::from_secs(5)).is_none());
}

#[test]
fn dropping_the_store_wakes_a_waiting_subscriber() {
    let store = ConfigStore::new(0);
    let mut sub = store.subscribe();
    let waiter = thread::spawn(move || sub.changed_timeout(Duration::from_secs(60)));
    thread::sleep(Duration::from_millis(10));
    drop(store);
    assert!(waiter.join().unwrap().is_none());
}

#[test]
fn a_panicking_callback_is_isolated() {
    let store = ConfigStore::new(0);
    let seen = Arc::new(Mutex::new(Vec::new()));
    store.on_change(|_| panic!("callback bug"));
    let s = Arc::clone(&seen);
    let id = store.on_change(move |snap| s.lock().unwrap().push(**snap));
    assert_eq!(set(&store, 1).get(), 2);
    assert_eq!(set(&store, 2).get(), 3);
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
    assert!(store.remove_callback(id));
    set(&store, 3);
    assert_eq!(*seen.lock().unwrap(), [1, 2]);
}

#[test]
fn another_stores_callback_id_removes_nothing() {
    let (a, b) = (ConfigStore::new(0), ConfigStore::new(0));
    let calls = Arc::new(Mutex::new(0));
    let c = Arc::clone(&calls);
    let id_a = a.on_change(move |_| *c.lock().unwrap() += 1);
    let id_b = b.on_change(|_| {});
    assert_ne!(id_a, id_b, "both are the first callback of their store");
    assert!(!b.remove_callback(id_a), "a's id names nothing in b");
    set(&a, 1);
    assert_eq!(*calls.lock().unwrap(), 1, "a's callback still runs");
    assert!(a.remove_callback(id_a));
    assert!(b.remove_callback(id_b));
}

#[test]
fn a_callback_may_update_the_store() {
    let store = Arc::new(ConfigStore::new(0));
    let weak = Arc::downgrade(&store);
    store.on_change(move |snap| {
        if **snap == 1 {
            let store = weak.upgrade().unwrap();
            set(&store, 2);
        }
    });
    set(&store, 1);
    assert_eq!(*store.load(), 2);
    assert_eq!(store.load().version().get(), 3);
}

#[test]
fn history_keeps_the_last_versions_newest_first() {
    let store = ConfigStore::builder(0).history(3).build().unwrap();
    assert_eq!(store.history(10).len(), 1);
    for i in 1..=5 {
        set(&store, i);
    }
    let h = store.history(10);
    let got: Vec<(i32, u64)> = h.iter().map(|s| (**s, s.version().get())).collect();
    assert_eq!(got, [(5, 6), (4, 5), (3, 4)]);
    assert!(h[0].committed_at() >= h[2].committed_at());
    assert_eq!(store.history(1).len(), 1);
}

/// Counts live values.
#[derive(Debug)]
struct Counted {
    n: u64,
    live: Arc<AtomicUsize>,
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.live.fetch_add(1, SeqCst);
        Counted {
            n: self.n,
            live: Arc::clone(&self.live),
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.fetch_sub(1, SeqCst);
    }
}

#[test]
fn every_value_is_dropped_exactly_once() {
    let live = Arc::new(AtomicUsize::new(1));
    let store = ConfigStore::builder(Counted {
        n: 0,
        live: Arc::clone(&live),
    })
    .history(2)
    .build()
    .unwrap();
    let held = store.load();
    let mut reader = store.reader();
    let mut sub = store.subscribe();
    for i in 1..=scaled(300) as u64 {
        store
            .update(|c| -> Result<(), ()> {
                c.n = i;
                Ok(())
            })
            .unwrap();
        assert_eq!(reader.load().n, i);
        if i % 3 == 0 {
            let _ = store.update(|_| Err(()));
        }
    }
    let _ = sub.try_changed();
    // Current + history (2, one of which is current) + the held snapshot
    // of version 1 + the reader's cache (current).
    assert_eq!(live.load(SeqCst), 3);
    drop((held, reader, sub));
    drop(store);
    assert_eq!(live.load(SeqCst), 0);
}

#[test]
fn concurrent_readers_see_whole_commits_in_order() {
    let store = Arc::new(ConfigStore::new(Pair { a: 0, b: 0 }));
    let commits = scaled(2000) as u64;
    let readers = 3;
    let start = Arc::new(Barrier::new(readers + 3));
    let mut handles = Vec::new();
    for r in 0..readers {
        let store = Arc::clone(&store);
        let start = Arc::clone(&start);
        handles.push(thread::spawn(move || {
            start.wait();
            let mut reader = store.reader();
            let mut last = 0;
            loop {
                let (a, b, v) = if r % 2 == 0 {
                    let s = store.load();
                    (s.a, s.b, s.version().get())
                } else {
                    let c = reader.load();
                    (c.a, c.b, c.version().get())
                };
                assert_eq!(a, b, "torn read");
                assert_eq!(v, a + 1, "value and version from one commit");
                assert!(v >= last, "versions never go backwards");
                last = v;
                if a == 2 * commits {
                    return;
                }
                thread::yield_now();
            }
        }));
    }
    for _ in 0..2 {
        let store = Arc::clone(&store);
        let start = Arc::clone(&start);
        handles.push(thread::spawn(move || {
            start.wait();
            for _ in 0..commits {
                store
                    .update(|p| -> Result<(), ()> {
                        p.a += 1;
                        p.b += 1;
                        Ok(())
                    })
                    .unwrap();
            }
        }));
    }
    // Two writers each add 1 per commit: the last value is 2 * commits.
    start.wait();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(store.load().version().get(), 2 * commits + 1);
}

/// Heavy churn of the swap path: many readers hold and drop snapshots while
/// two writers commit; looks for the symptom of arc-swap's issue #210 (a
/// guard showing a value no commit produced, or a version going back).
#[test]
#[ignore = "stress: run with --release -- --ignored"]
fn stress_swap_path() {
    let store = Arc::new(ConfigStore::new(Pair { a: 0, b: 0 }));
    let commits = 200_000u64;
    let done = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..4 {
        let store = Arc::clone(&store);
        let done = Arc::clone(&done);
        handles.push(thread::spawn(move || {
            let mut last = 0;
            let mut held = Vec::new();
            while done.load(SeqCst) < 2 {
                let s = store.load();
                assert_eq!(s.a, s.b);
                assert_eq!(s.version().get(), s.a + 1);
                assert!(s.version().get() >= last);
                last = s.version().get();
                held.push(s);
                if held.len() > 12 {
                    held.clear();
                }
            }
        }));
    }
    for _ in 0..2 {
        let store = Arc::clone(&store);
        let done = Arc::clone(&done);
        handles.push(thread::spawn(move || {
            for _ in 0..commits {
                store
                    .update(|p| -> Result<(), ()> {
                        p.a += 1;
                        p.b += 1;
                        Ok(())
                    })
                    .unwrap();
            }
            done.fetch_add(1, SeqCst);
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(store.load().a, 2 * commits);
}

#[test]
fn store_handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}
    assert_send_sync::<ConfigStore<String>>();
    assert_send_sync::<unlocked::config::Snapshot<String>>();
    assert_send::<unlocked::config::Reader<String>>();
    assert_send::<unlocked::config::Subscription<String>>();
}

#[cfg(feature = "persist")]
#[path = "config/persist.rs"]
mod persist;

/// The seeds' design as an oracle: a lock around the value and its
/// version, with validation and a version check done by hand.
struct RefStore {
    inner: Mutex<(u64, Vec<u32>)>,
}

impl RefStore {
    fn update_if(&self, expected: Option<u64>, push: u32) -> Result<u64, &'static str> {
        let mut g = self.inner.lock().unwrap();
        if expected.is_some_and(|e| e != g.0) {
            return Err("conflict");
        }
        if push % 7 == 0 {
            return Err("rejected");
        }
        if g.1.len() >= 8 {
            return Err("invalid");
        }
        g.1.push(push);
        g.0 += 1;
        Ok(g.0)
    }
}

/// Random update sequences (seeded) applied to the store and to the
/// lock-based reference: every result and every read agrees.
#[test]
fn agrees_with_the_lock_based_reference() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..scaled(200) {
        let store = ConfigStore::builder(Vec::<u32>::new())
            .validator(|v: &Vec<u32>| {
                if v.len() <= 8 {
                    Ok(())
                } else {
                    Err("too long")
                }
            })
            .build()
            .unwrap();
        let reference = RefStore {
            inner: Mutex::new((1, Vec::new())),
        };
        for _ in 0..20 {
            let push = (next() % 50) as u32;
            let current = store.load().version().get();
            let expected = match next() % 3 {
                0 => None,
                1 => Some(current),
                _ => Some(current.saturating_sub(1).max(1)),
            };
            let f = |v: &mut Vec<u32>| {
                if push % 7 == 0 {
                    return Err("rejected");
                }
                v.push(push);
                Ok(())
            };
            let got = match expected {
                None => store.update(f),
                Some(e) => store.update_if(Version::from(e), f),
            };
            let got = match got {
                Ok(v) => Ok(v.get()),
                Err(UpdateError::Conflict { .. }) => Err("conflict"),
                Err(UpdateError::Rejected(e)) => Err(e),
                Err(UpdateError::Invalid(_)) => Err("invalid"),
                Err(other) => panic!("unexpected {other:?}"),
            };
            assert_eq!(got, reference.update_if(expected, push));
            let g = reference.inner.lock().unwrap();
            let s = store.load();
            assert_eq!((s.version().get(), &*s), (g.0, &g.1));
        }
    }
}

/// `changed().await` on a multi-threaded tokio runtime wakes for a commit
/// made from a plain thread, and a dropped `changed()` future loses nothing.
#[cfg(not(miri))]
#[test]
fn async_changed_on_tokio() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let store = Arc::new(ConfigStore::new(0u32));
    let mut sub = store.subscribe();
    rt.block_on(async {
        // Cancelled before any commit: nothing is lost.
        let timed_out = tokio::time::timeout(Duration::from_millis(5), sub.changed()).await;
        assert!(timed_out.is_err());
        let waiter = tokio::spawn(async move {
            let mut last = 0;
            while last < 3 {
                last = *sub.changed().await.expect("store alive");
            }
            last
        });
        let s = Arc::clone(&store);
        thread::spawn(move || {
            for i in 1..=3 {
                set(&s, i);
            }
        })
        .join()
        .unwrap();
        assert_eq!(waiter.await.unwrap(), 3);
    });
}

/// A value whose drop panics once, when armed, for `PanicsOnDrop(0)`.
#[derive(Clone, Debug)]
struct PanicsOnDrop(u32);

static DROP_PANIC_ARMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if self.0 == 0 && DROP_PANIC_ARMED.swap(false, SeqCst) {
            panic!("drop of PanicsOnDrop(0), on purpose");
        }
    }
}

/// A commit whose history eviction drops the last owner of an old value,
/// whose `drop` panics: the panic reaches the caller, but only after the
/// commit is complete, so the next commit gets the next version and every
/// subscriber sees it (found in review: the version used to repeat).
#[test]
fn a_panicking_drop_of_an_old_version_leaves_the_store_consistent() {
    let store = ConfigStore::builder(PanicsOnDrop(0))
        .history(2)
        .build()
        .unwrap();
    let mut sub = store.subscribe();
    let set = |n| {
        move |p: &mut PanicsOnDrop| -> Result<(), ()> {
            p.0 = n;
            Ok(())
        }
    };
    assert_eq!(store.update(set(1)).unwrap().get(), 2);
    assert_eq!(sub.try_changed().unwrap().version().get(), 2);
    DROP_PANIC_ARMED.store(true, SeqCst);
    // Version 1 leaves the history of 2: its value is dropped and panics.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.update(set(2))));
    assert!(panicked.is_err());
    assert_eq!(store.load().version().get(), 3);
    assert_eq!(sub.try_changed().unwrap().version().get(), 3);
    assert_eq!(store.update(set(3)).unwrap().get(), 4);
    let seen = sub
        .try_changed()
        .expect("the commit after the panic is seen");
    assert_eq!((seen.0, seen.version().get()), (3, 4));
}

/// A callback removed by another callback of the same commit is not called
/// after `remove_callback` returned `true` (found in review: the commit
/// ran the list it had copied).
#[test]
fn a_removed_callback_is_not_called_after_remove_returns() {
    let store = Arc::new(ConfigStore::new(0u32));
    let weak = Arc::downgrade(&store);
    let second: Arc<Mutex<Option<unlocked::config::CallbackId>>> = Arc::new(Mutex::new(None));
    let removed = Arc::new(AtomicUsize::new(0));
    let calls_after_removal = Arc::new(Mutex::new(Vec::new()));
    {
        let (second, removed) = (Arc::clone(&second), Arc::clone(&removed));
        store.on_change(move |_| {
            let id = second.lock().unwrap().take();
            if let Some(id) = id {
                assert!(weak.upgrade().unwrap().remove_callback(id));
                removed.store(1, SeqCst);
            }
        });
    }
    {
        let (removed, calls) = (Arc::clone(&removed), Arc::clone(&calls_after_removal));
        let id = store.on_change(move |snap| {
            if removed.load(SeqCst) == 1 {
                calls.lock().unwrap().push(snap.version().get());
            }
        });
        *second.lock().unwrap() = Some(id);
    }
    set(&store, 1);
    assert_eq!(removed.load(SeqCst), 1);
    set(&store, 2);
    assert_eq!(*calls_after_removal.lock().unwrap(), Vec::<u64>::new());
}

/// A callback that commits does not make the callbacks after it end on
/// the older version (found in review: they got 3, then 2).
#[test]
fn callbacks_never_go_back_to_an_older_version_when_a_callback_commits() {
    let store = Arc::new(ConfigStore::new(0u32));
    let weak = Arc::downgrade(&store);
    store.on_change(move |snap| {
        if **snap == 1 {
            set(&*weak.upgrade().unwrap(), 2);
        }
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    store.on_change(move |snap| s.lock().unwrap().push((snap.version().get(), **snap)));
    set(&store, 1);
    assert_eq!(store.load().version().get(), 3);
    assert_eq!(*seen.lock().unwrap(), [(3, 2)]);
}

/// Under concurrent commits a callback's calls never overlap, never go
/// back to an older version, and end on the newest (found in review: the
/// commit of an older version could call after the call for a newer one
/// had returned, leaving a callback that applies the configuration on the
/// older one).
#[test]
fn concurrent_commits_call_a_callback_in_order_one_at_a_time() {
    let store = Arc::new(ConfigStore::new(0u64));
    let last = Arc::new(AtomicU64::new(0));
    let in_call = Arc::new(AtomicBool::new(false));
    let faults = Arc::new(Mutex::new(Vec::new()));
    {
        let (last, in_call, faults) = (last.clone(), in_call.clone(), faults.clone());
        store.on_change(move |snap| {
            let v = snap.version().get();
            if in_call.swap(true, SeqCst) {
                faults.lock().unwrap().push(format!("overlap at {v}"));
            }
            assert_eq!(**snap, v - 1, "the snapshot of its version");
            let before = last.swap(v, SeqCst);
            if before >= v {
                faults.lock().unwrap().push(format!("{v} after {before}"));
            }
            in_call.store(false, SeqCst);
        });
    }
    let (threads, each) = (4, if cfg!(miri) { 10 } else { 2_000 });
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for _ in 0..each {
                    store
                        .update(|n| -> Result<(), ()> {
                            *n += 1;
                            Ok(())
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(*faults.lock().unwrap(), Vec::<String>::new());
    let newest = store.load().version().get();
    assert_eq!(newest, 1 + threads * each);
    assert_eq!(
        last.load(SeqCst),
        newest,
        "the newest version was delivered"
    );
}

/// A value whose drop panics once, when armed (for the test below).
#[derive(Clone, Debug)]
struct DropBomb(u32);

static DROP_BOMB_ARMED: AtomicBool = AtomicBool::new(false);

impl Drop for DropBomb {
    fn drop(&mut self) {
        if self.0 == 0 && DROP_BOMB_ARMED.swap(false, SeqCst) {
            panic!("drop of DropBomb(0), on purpose");
        }
    }
}

/// The snapshot a callback was given may be the last owner of its value:
/// a `T::drop` that panics there reaches the committer, but does not leave
/// the callback silenced for good (found in review: the deliverer's flag
/// stayed set, and neither the version committed inside the callback nor
/// any later one was delivered).
#[test]
fn a_panicking_drop_of_a_delivered_snapshot_does_not_silence_the_callback() {
    let set = |n: u32| {
        move |b: &mut DropBomb| -> Result<(), ()> {
            b.0 = n;
            Ok(())
        }
    };
    let store = Arc::new(
        ConfigStore::builder(DropBomb(1))
            .history(1)
            .build()
            .unwrap(),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    {
        let weak = Arc::downgrade(&store);
        let seen = Arc::clone(&seen);
        store.on_change(move |snap| {
            seen.lock().unwrap().push(snap.0);
            if snap.0 == 0 {
                // Version 4 evicts version 3 (a history of 1) and replaces
                // it in the cell: the deliverer's snapshot is its last owner.
                weak.upgrade().unwrap().update(set(5)).unwrap();
            }
        });
    }
    store.update(set(2)).unwrap();
    DROP_BOMB_ARMED.store(true, SeqCst);
    let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.update(set(0)).unwrap();
    }));
    assert!(committed.is_err(), "the drop's panic reaches the committer");
    assert!(!DROP_BOMB_ARMED.load(SeqCst), "the bomb went off");
    store.update(set(7)).unwrap();
    assert_eq!(*seen.lock().unwrap(), [2, 0, 5, 7]);
}

/// `history` may be called from an update closure: it does not take the
/// writer lock (found in review: it deadlocked).
#[test]
fn history_may_be_read_from_an_update_closure() {
    let store = Arc::new(ConfigStore::new(0u32));
    let (tx, rx) = std::sync::mpsc::channel();
    let s = Arc::clone(&store);
    thread::spawn(move || {
        let first = s.update(|n| -> Result<(), ()> {
            // Refuses a value already tried recently.
            if s.history(4).iter().any(|v| **v == 5) {
                return Err(());
            }
            *n = 5;
            Ok(())
        });
        let again = s.update(|n| -> Result<(), ()> {
            if s.history(4).iter().any(|v| **v == 5) {
                return Err(());
            }
            *n = 5;
            Ok(())
        });
        tx.send((first.is_ok(), again.is_err())).unwrap();
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(30)), Ok((true, true)));
    assert_eq!(store.history(8).len(), 2);
}

/// A thread asleep in `changed_timeout(20 s)` on a new subscription to
/// `store`; it returns what it got and how long it slept.
fn sleeping_subscriber(store: &ConfigStore<u32>) -> thread::JoinHandle<(Option<u32>, Duration)> {
    let mut sub = store.subscribe();
    thread::spawn(move || {
        let start = std::time::Instant::now();
        let got = sub.changed_timeout(Duration::from_secs(20)).map(|s| *s);
        (got, start.elapsed())
    })
}

/// Joins a [`sleeping_subscriber`]: it got `want`, woken well before its
/// timeout (a missing wake-up shows only in the time: the timeout finds
/// the same answer).
fn woken_with(waiter: thread::JoinHandle<(Option<u32>, Duration)>, want: Option<u32>) {
    let (got, waited) = waiter.join().unwrap();
    assert_eq!(got, want);
    assert!(
        waited < Duration::from_secs(10),
        "woken by its timeout, after {waited:?}"
    );
}

/// A subscriber asleep in `changed_timeout` is woken by the commit itself,
/// not by its timeout, also when no callback is registered (a commit that
/// notified only when it had callbacks to run left it asleep until the
/// timeout). Found by mutation testing.
#[test]
#[cfg_attr(miri, ignore = "timing")]
fn a_commit_wakes_a_sleeping_subscriber_before_its_timeout() {
    let store = ConfigStore::new(0u32);
    let waiter = sleeping_subscriber(&store);
    thread::sleep(Duration::from_millis(100));
    set(&store, 1);
    woken_with(waiter, Some(1));
}

/// Every sleeping subscriber is woken by one commit, not just one of them.
/// Found by mutation testing.
#[test]
#[cfg_attr(miri, ignore = "timing")]
fn a_commit_wakes_every_sleeping_subscriber() {
    let store = ConfigStore::new(0u32);
    let waiters: Vec<_> = (0..3).map(|_| sleeping_subscriber(&store)).collect();
    thread::sleep(Duration::from_millis(100));
    set(&store, 1);
    for waiter in waiters {
        woken_with(waiter, Some(1));
    }
}

/// Dropping the store wakes a sleeping subscriber at once. Found by
/// mutation testing.
#[test]
#[cfg_attr(miri, ignore = "timing")]
fn dropping_the_store_wakes_a_sleeping_subscriber_before_its_timeout() {
    let store = ConfigStore::new(0u32);
    let waiter = sleeping_subscriber(&store);
    thread::sleep(Duration::from_millis(100));
    drop(store);
    woken_with(waiter, None);
}

/// Dropping the store drops its callbacks: one that owns a `Reader` or a
/// `Subscription` of the store no longer keeps the store's values alive
/// for ever (found in review: a reference cycle through the callback list,
/// and the values were never dropped).
#[test]
fn a_callback_owning_a_reader_or_subscription_does_not_leak_the_store() {
    static DROPS: AtomicUsize = AtomicUsize::new(0);
    #[derive(Clone)]
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPS.fetch_add(1, SeqCst);
        }
    }
    let store = ConfigStore::new(Counted);
    let reader = Mutex::new(store.reader());
    let subscription = Mutex::new(store.subscribe());
    store.on_change(move |_| {
        let _ = reader.lock().unwrap().load().version();
        let _ = subscription.lock().unwrap().try_changed();
    });
    let before = DROPS.load(SeqCst);
    drop(store);
    assert_eq!(DROPS.load(SeqCst) - before, 1, "the one value is dropped");
}

/// A callback whose panic payload panics when dropped: the commit still
/// succeeds and the callback still gets later versions (found in review:
/// the payload was dropped outside any catch, failing the commit and
/// leaving the callback silenced for good).
#[test]
fn a_panic_payload_that_panics_on_drop_neither_fails_the_commit_nor_silences_the_callback() {
    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            if !thread::panicking() {
                panic!("the payload's drop");
            }
        }
    }
    let store = ConfigStore::new(0u64);
    let calls = Arc::new(AtomicUsize::new(0));
    {
        let calls = Arc::clone(&calls);
        store.on_change(move |snap| {
            calls.fetch_add(1, SeqCst);
            if **snap == 1 {
                std::panic::panic_any(PanicsOnDrop);
            }
        });
    }
    let bump = |n: &mut u64| -> Result<(), ()> {
        *n += 1;
        Ok(())
    };
    let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.update(bump)));
    assert!(matches!(committed, Ok(Ok(_))), "the commit succeeds");
    store.update(bump).unwrap();
    store.update(bump).unwrap();
    assert_eq!((*store.load(), calls.load(SeqCst)), (3, 3));
}

/// `history()` never lists a version that `load()` does not return yet
/// (found in review: the history was pushed before the cell was stored).
#[test]
#[cfg_attr(miri, ignore = "a race that needs many iterations")]
fn history_is_never_ahead_of_load() {
    let store = Arc::new(ConfigStore::new(0u64));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        thread::spawn(move || {
            while !stop.load(SeqCst) {
                store
                    .update(|n| -> Result<(), ()> {
                        *n += 1;
                        Ok(())
                    })
                    .unwrap();
            }
        })
    };
    let mut reader = store.reader();
    for _ in 0..scaled(200_000) {
        let listed = store.history(1)[0].version();
        assert!(store.load().version() >= listed, "load behind history");
        assert!(reader.load().version() >= listed, "reader behind history");
    }
    stop.store(true, SeqCst);
    writer.join().unwrap();
}
