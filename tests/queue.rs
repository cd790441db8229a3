//! Unit and integration tests for [`BoundedQueue`] and [`UnboundedQueue`].
//!
//! Most suites run over every configuration of `common::CONFIGS` (bounded
//! capacities 1, 2, 3, 64, 1000; unbounded segments of 1, 2, 7 and the
//! default), one generated `#[test]` each: `suite::bounded_cap1` etc.
//!
//! - sequential differential tests against the `RefQueue` oracle;
//! - edge cases: capacities, `force_push`, `close`, `PushError`;
//! - drop counting, sequential and concurrent;
//! - concurrent producers and consumers (std threads, `pop_timeout`,
//!   `pop_async` on tokio and pollster, cancelled futures).
//!
//! Heavy stress tests are `#[ignore]`d; run them in release:
//! `cargo test --release --test queue -- --ignored`.
//!
//! Under miri the iteration counts shrink (`common::scaled`), and the tokio
//! tests and capacity 1000 are skipped:
//! ```text
//! MIRIFLAGS="-Zmiri-tree-borrows -Zmiri-ignore-leaks -Zmiri-many-seeds=0..4" \
//!     cargo +nightly miri test --test queue
//! ```
//! Tree Borrows because crossbeam-epoch violates Stacked Borrows (a known,
//! upstream issue: crossbeam-rs/crossbeam#545, its own CI uses Tree
//! Borrows); ignoring leaks because segments retired through the epoch
//! collector may still be queued for freeing when the process exits (value
//! drops are counted exactly by the drop-counting tests instead).
//!
//! No assertion depends on timing; timeouts only bound what must happen
//! "eventually", generously.
#![cfg(not(feature = "shuttle"))] // the shuttle facade needs a shuttle runtime

#[macro_use]
mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Duration;

use common::{
    assert_exactly_once, assert_per_producer_fifo, encode, eventually, scaled, Config, DropLog,
    FlagWaker, RefQueue, Tracked, XorShift, CONFIGS,
};
use unlocked::queue::MAX_CAPACITY;
use unlocked::{BoundedQueue, PushError, UnboundedQueue};

/// A wait long enough that only a lost wakeup runs it out (a test bounds the
/// whole scenario by `common::EVENTUALLY`). Under miri, forever: its
/// virtual clock then jumps to the `EVENTUALLY` bound, which fails the test.
const LONG: Duration = if cfg!(miri) {
    Duration::MAX
} else {
    Duration::from_secs(3600)
};

// ===========================================================================
// Construction, capacity and the error type
// ===========================================================================

#[test]
#[should_panic(expected = "capacity must be at least 1")]
fn bounded_capacity_zero_panics() {
    let _ = BoundedQueue::<u8>::new(0);
}

#[test]
#[should_panic(expected = "capacity must be at most")]
fn bounded_capacity_above_max_panics() {
    let _ = BoundedQueue::<u8>::new(MAX_CAPACITY + 1);
}

#[test]
#[should_panic(expected = "capacity must be at most")]
fn bounded_capacity_usize_max_panics() {
    let _ = BoundedQueue::<u8>::new(usize::MAX);
}

#[test]
#[should_panic(expected = "capacity must be at least 1")]
fn unbounded_segment_capacity_zero_panics() {
    let _ = UnboundedQueue::<u8>::with_segment_capacity(0);
}

#[test]
#[should_panic(expected = "capacity must be at most")]
fn unbounded_segment_capacity_above_max_panics() {
    let _ = UnboundedQueue::<u8>::with_segment_capacity(MAX_CAPACITY + 1);
}

#[test]
fn max_capacity_is_two_to_the_thirty() {
    assert_eq!(MAX_CAPACITY, 1 << 30);
}

/// `capacity` is the requested one, not rounded to a power of two, and the
/// queue holds exactly that many values.
#[test]
fn capacity_is_exact_for_every_size() {
    let caps: &[usize] = if cfg!(miri) {
        &[1, 2, 3, 5, 8, 9]
    } else {
        &[
            1, 2, 3, 4, 5, 7, 8, 9, 31, 33, 63, 64, 65, 100, 1000, 1023, 1025,
        ]
    };
    for &cap in caps {
        let q = BoundedQueue::new(cap);
        assert_eq!(q.capacity(), cap);
        for lap in 0..3 {
            for i in 0..cap {
                assert_eq!(q.push(i), Ok(()), "cap {cap} lap {lap} push {i}");
                assert_eq!(q.len(), i + 1);
            }
            assert_eq!(q.push(cap), Err(PushError::Full(cap)), "cap {cap}");
            assert_eq!(q.len(), cap);
            assert!(!q.is_empty());
            for i in 0..cap {
                assert_eq!(q.pop(), Some(i), "cap {cap} lap {lap} pop {i}");
            }
            assert_eq!(q.pop(), None);
            assert!(q.is_empty());
        }
    }
}

/// The default segment size (256) is crossed several times; values come
/// back in order and `len` counts across segments.
#[test]
fn unbounded_default_segments_link_and_unlink() {
    let n = scaled(3 * 256 + 17, 256 + 3);
    let q = UnboundedQueue::default();
    for i in 0..n {
        q.push(i).unwrap();
    }
    assert_eq!(q.len(), n);
    for i in 0..n {
        assert_eq!(q.pop(), Some(i));
        assert_eq!(q.len(), n - i - 1);
    }
    assert_eq!(q.pop(), None);
    assert!(q.is_empty());
}

#[test]
fn push_error_api() {
    let full = PushError::Full(String::from("a"));
    let closed = PushError::Closed(String::from("b"));
    assert!(full.is_full() && !full.is_closed());
    assert!(closed.is_closed() && !closed.is_full());
    assert!(full.to_string().contains("full"));
    assert!(closed.to_string().contains("closed"));
    assert_eq!(format!("{full:?}"), "Full(..)");
    assert_eq!(format!("{closed:?}"), "Closed(..)");
    let boxed: Box<dyn std::error::Error> = Box::new(PushError::Full(1u8));
    assert!(!boxed.to_string().is_empty());
    assert_eq!(full.clone(), PushError::Full(String::from("a")));
    assert_eq!(full.into_inner(), "a");
    assert_eq!(closed.into_inner(), "b");

    // Debug needs no `T: Debug`.
    struct Opaque;
    let e = BoundedQueue::new(1);
    e.push(Opaque).unwrap_or_else(|_| unreachable!());
    assert_eq!(format!("{:?}", e.push(Opaque).unwrap_err()), "Full(..)");
}

#[test]
fn queues_are_send_and_sync_for_send_values() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    // `Cell` is Send but not Sync: values move, they are never shared.
    send_sync::<BoundedQueue<std::cell::Cell<u8>>>();
    send_sync::<UnboundedQueue<std::cell::Cell<u8>>>();
    send_sync::<PushError<u8>>();
    let b = BoundedQueue::<std::cell::Cell<u8>>::new(1);
    let u = UnboundedQueue::<std::cell::Cell<u8>>::new();
    send(&b.pop_async());
    send(&u.pop_async());
}

#[test]
fn debug_output_shows_state() {
    let b = BoundedQueue::new(3);
    b.push(1).unwrap();
    let s = format!("{b:?}");
    assert!(s.contains("BoundedQueue"), "{s}");
    assert!(s.contains("len: 1") && s.contains("capacity: 3"), "{s}");
    assert!(s.contains("closed: false"), "{s}");
    b.close();
    assert!(format!("{b:?}").contains("closed: true"));

    let u = UnboundedQueue::with_segment_capacity(2);
    for i in 0..5 {
        u.push(i).unwrap();
    }
    let s = format!("{u:?}");
    assert!(s.contains("UnboundedQueue") && s.contains("len: 5"), "{s}");
    assert!(s.contains("segment_capacity: 2"), "{s}");
}

#[test]
fn zero_sized_values() {
    let b = BoundedQueue::new(3);
    for _ in 0..3 {
        b.push(()).unwrap();
    }
    assert_eq!(b.push(()), Err(PushError::Full(())));
    assert_eq!(b.force_push(()), Ok(Some(())));
    assert_eq!(b.len(), 3);
    assert_eq!(b.drain_vec().len(), 3);

    let u = UnboundedQueue::with_segment_capacity(2);
    for _ in 0..9 {
        u.push(()).unwrap();
    }
    assert_eq!(u.len(), 9);
    assert_eq!(std::iter::from_fn(|| u.pop()).count(), 9);
}

#[test]
fn large_values_move_intact() {
    let value = |i: u64| -> [u64; 32] { std::array::from_fn(|j| i * 100 + j as u64) };
    let b = BoundedQueue::new(4);
    let u = UnboundedQueue::with_segment_capacity(3);
    for round in 0..scaled(50, 3) as u64 {
        for i in 0..4 {
            b.push(value(round * 4 + i)).unwrap();
            u.push(value(round * 4 + i)).unwrap();
        }
        for i in 0..4 {
            assert_eq!(b.pop(), Some(value(round * 4 + i)));
            assert_eq!(u.pop(), Some(value(round * 4 + i)));
        }
    }
}

/// The oracle itself behaves like the documented API.
#[test]
fn reference_queue_matches_the_documented_examples() {
    let r = RefQueue::bounded(2);
    assert_eq!(r.force_push(1), Ok(None));
    assert_eq!(r.force_push(2), Ok(None));
    assert_eq!(r.force_push(3), Ok(Some(1)));
    assert_eq!(r.push(4), Err(PushError::Full(4)));
    assert_eq!(r.items(), [2, 3]);
    r.close();
    assert_eq!(r.push(5), Err(PushError::Closed(5)));
    assert_eq!(r.pop(), Some(2));
    let u = RefQueue::unbounded();
    for i in 0..10 {
        u.push(i).unwrap();
    }
    assert_eq!(u.len(), 10);
    assert_eq!(u.capacity(), None);
}

/// A consumer blocked in `pop_timeout` must be woken when the value it
/// waits for goes into a new segment. With segments of one value, a push
/// that finds the tail segment full (here: transiently, while the other
/// consumer holds its only slot) finalizes it and links a new segment.
///
/// Regression: the link used to be published by an `AcqRel` CAS and read
/// by an `Acquire` load, outside the `SeqCst` order the waiter protocol
/// relies on; under miri's weak-memory emulation the producer missed the
/// registration while the consumer missed the segment (seed 0 of
/// `-Zmiri-many-seeds` hung this test).
#[test]
fn unbounded_wakeup_when_value_lands_in_new_segment() {
    eventually("unbounded_wakeup_when_value_lands_in_new_segment", || {
        for round in 0..scaled(2_000, 10) {
            let q = Arc::new(UnboundedQueue::with_segment_capacity(1));
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    let q = Arc::clone(&q);
                    thread::spawn(move || q.pop_timeout(LONG))
                })
                .collect();
            if round % 2 == 0 {
                thread::yield_now();
            }
            q.push(2 * round).unwrap();
            q.push(2 * round + 1).unwrap();
            let mut got: Vec<_> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
            got.sort_unstable();
            assert_eq!(got, [Some(2 * round), Some(2 * round + 1)]);
        }
    });
}

/// `len` of an open queue once no operation is in flight: never below the
/// number of values inside. It is documented as exact with one exception:
/// a producer that skipped a ticket still held by a slow consumer of the
/// previous lap leaves it one too high until a pop passes that position
/// (shuttle finds this within a few thousand schedules with `force_push`),
/// so asserting exactness here would make these tests flaky. Closed queues
/// are checked exactly.
#[track_caller]
fn assert_len_at_quiescence(len: usize, inside: usize, what: &str) {
    assert!(
        len >= inside,
        "{what}: len {len} at quiescence below the {inside} values inside"
    );
}

/// `drain` for the plain bounded queue.
trait DrainVec<T> {
    fn drain_vec(&self) -> Vec<T>;
}

impl<T> DrainVec<T> for BoundedQueue<T> {
    fn drain_vec(&self) -> Vec<T> {
        std::iter::from_fn(|| self.pop()).collect()
    }
}

/// Polls a boxed `pop_async` future once with `waker`.
fn poll_once<T>(f: &mut Option<common::PopFuture<'_, T>>, waker: &Waker) -> Poll<Option<T>> {
    f.as_mut()
        .expect("future not dropped")
        .as_mut()
        .poll(&mut Context::from_waker(waker))
}

// ===========================================================================
// Sequential suites, every configuration
// ===========================================================================

/// Runs `ops` seeded random operations on the queue and the reference and
/// compares every result.
fn differential(cfg: Config, seed: u64, ops: usize) {
    let q = cfg.make::<u64>();
    let r = cfg.reference::<u64>();
    let mut rng = XorShift::new(seed);
    // Half the rounds close the queue somewhere.
    let close_at = (rng.below(2) == 0).then(|| rng.below(ops));
    // Phases biased towards pushes or pops, long enough to fill the queue.
    let phase_scale = cfg.capacity().unwrap_or(64).min(1000) * 2 + 16;
    let mut phase_left = 0;
    let mut push_percent = 50;
    let mut next = 0u64;
    for step in 0..ops {
        let ctx = || format!("{cfg:?}, seed {seed:#x}, step {step}");
        if close_at == Some(step) {
            q.close();
            r.close();
        }
        if phase_left == 0 {
            push_percent = [5, 30, 50, 70, 95][rng.below(5)];
            phase_left = 1 + rng.below(phase_scale);
        }
        phase_left -= 1;
        if rng.below(100) < push_percent {
            next += 1;
            if rng.below(4) == 0 {
                assert_eq!(
                    q.force_push(next),
                    r.force_push(next),
                    "force_push: {}",
                    ctx()
                );
            } else {
                assert_eq!(q.push(next), r.push(next), "push: {}", ctx());
            }
        } else {
            assert_eq!(q.pop(), r.pop(), "pop: {}", ctx());
        }
        assert_eq!(q.len(), r.len(), "len: {}", ctx());
        assert_eq!(q.is_empty(), r.is_empty(), "is_empty: {}", ctx());
        assert_eq!(q.is_closed(), r.is_closed(), "is_closed: {}", ctx());
        assert_eq!(q.capacity(), r.capacity());
    }
    assert_eq!(
        q.drain(),
        std::iter::from_fn(|| r.pop()).collect::<Vec<_>>()
    );
    assert_eq!(q.len(), 0);
}

config_tests! {
    /// Seeded random sequences of push, force_push, pop and close give the
    /// same results as the reference, including `len`, `is_empty`, `Full`
    /// and `Closed`.
    fn differential_against_reference(cfg) {
        let rounds = scaled(24, 2) as u64;
        let ops = if cfg!(miri) {
            80
        } else {
            3000.max(6 * cfg.capacity().unwrap_or(0))
        };
        for round in 0..rounds {
            let seed = cfg.id().wrapping_mul(0x1000_0001) ^ (round + 1);
            differential(cfg, seed, ops);
        }
    }

    /// Fill and drain over and over: the index rings go round many cycles
    /// and the unbounded queue links and frees many segments.
    fn fifo_over_many_laps(cfg) {
        let q = cfg.make::<usize>();
        let per_lap = cfg.capacity().unwrap_or(23);
        let laps = scaled((20_000 / per_lap).max(5), 3);
        let mut next = 0;
        for _ in 0..laps {
            for i in 0..per_lap {
                q.push(next + i).unwrap();
            }
            assert_eq!(q.len(), per_lap);
            for i in 0..per_lap {
                assert_eq!(q.pop(), Some(next + i));
            }
            assert_eq!(q.pop(), None);
            next += per_lap;
        }
        // One value at a time: head and tail chase each other.
        for i in 0..scaled(5_000, 20) {
            q.push(i).unwrap();
            assert_eq!(q.len(), 1);
            assert_eq!(q.pop(), Some(i));
            assert!(q.is_empty());
        }
    }

    /// After `close`: pushes hand the value back as `Closed`, every value
    /// inside still comes out in order (through `pop`, `pop_timeout` and
    /// `pop_async`), then all three report `None` without waiting.
    fn close_semantics(cfg) {
        eventually("close_semantics", move || {
            let q = cfg.make::<u32>();
            let n = cfg.capacity().unwrap_or(10).min(6) as u32;
            for i in 0..n {
                q.push(i).unwrap();
            }
            assert!(!q.is_closed());
            q.close();
            assert!(q.is_closed());
            assert_eq!(q.push(100), Err(PushError::Closed(100)));
            assert_eq!(q.force_push(101), Err(PushError::Closed(101)));
            assert_eq!(q.len(), n as usize);
            // Idempotent.
            q.close();
            assert!(q.is_closed());
            let mut out = Vec::new();
            for i in 0..n {
                out.push(match i % 3 {
                    0 => q.pop(),
                    1 => q.pop_timeout(LONG),
                    _ => pollster::block_on(q.pop_async()),
                });
            }
            assert_eq!(out, (0..n).map(Some).collect::<Vec<_>>());
            assert_eq!(q.pop(), None);
            assert_eq!(q.pop_timeout(LONG), None);
            assert_eq!(q.pop_timeout(Duration::ZERO), None);
            assert_eq!(pollster::block_on(q.pop_async()), None);
            assert_eq!(q.push(102), Err(PushError::Closed(102)));
            assert!(q.is_empty());
            assert_eq!(q.len(), 0);
        });
    }

    /// Closing an empty queue, and a full one.
    fn close_empty_and_full(cfg) {
        let q = cfg.make::<u8>();
        q.close();
        assert!(q.is_closed() && q.is_empty());
        assert_eq!(q.pop(), None);
        assert_eq!(q.push(1), Err(PushError::Closed(1)));

        if let Some(cap) = cfg.capacity() {
            let q = cfg.make::<usize>();
            for i in 0..cap {
                q.push(i).unwrap();
            }
            q.close();
            // Closed wins over Full.
            assert_eq!(q.push(cap), Err(PushError::Closed(cap)));
            assert_eq!(q.force_push(cap), Err(PushError::Closed(cap)));
            assert_eq!(q.len(), cap);
            assert_eq!(q.drain(), (0..cap).collect::<Vec<_>>());
        }
    }

    /// `pop_timeout` on an empty open queue returns `None` after the
    /// timeout; with a value, at once; `Duration::MAX` (no deadline) works.
    fn pop_timeout_without_waiting(cfg) {
        eventually("pop_timeout_without_waiting", move || {
            let q = cfg.make::<u8>();
            assert_eq!(q.pop_timeout(Duration::ZERO), None);
            assert_eq!(q.pop_timeout(Duration::from_millis(5)), None);
            q.push(1).unwrap();
            assert_eq!(q.pop_timeout(Duration::ZERO), Some(1));
            q.push(2).unwrap();
            assert_eq!(q.pop_timeout(Duration::MAX), Some(2));
            q.close();
            assert_eq!(q.pop_timeout(Duration::MAX), None);
        });
    }

    /// Values left inside at drop are dropped once, popped ones once (when
    /// the caller drops them), and values handed back in `Full`/`Closed`
    /// errors belong to the caller.
    fn drop_counts_sequential(cfg) {
        let n = cfg.capacity().map_or(40, |c| (c + 5).min(70));
        let log = DropLog::new(n + 2);
        let q = cfg.make::<Tracked>();
        let mut inside = 0usize;
        for id in 0..n {
            match q.push(log.track(id)) {
                Ok(()) => inside += 1,
                Err(PushError::Full(v)) => {
                    assert_eq!(v.id, id);
                    assert_eq!(log.count(id), 0);
                    drop(v);
                    assert_eq!(log.count(id), 1);
                }
                Err(PushError::Closed(_)) => unreachable!("not closed"),
            }
        }
        assert_eq!(q.len(), inside);
        for _ in 0..inside / 2 {
            let v = q.pop().unwrap();
            assert_eq!(log.count(v.id), 0, "a value inside was dropped early");
            let id = v.id;
            drop(v);
            assert_eq!(log.count(id), 1);
            inside -= 1;
        }
        // force_push: the displaced value (if any) is the caller's.
        match q.force_push(log.track(n)) {
            Ok(Some(old)) => {
                assert_eq!(log.count(old.id), 0);
                drop(old);
            }
            Ok(None) => inside += 1,
            Err(e) => panic!("force_push failed: {e:?}"),
        }
        q.close();
        let back = q.push(log.track(n + 1)).unwrap_err().into_inner();
        assert_eq!(back.id, n + 1);
        drop(back);
        assert_eq!(q.len(), inside);
        drop(q);
        log.assert_all_dropped_once();
    }

    // =======================================================================
    // Concurrent suites, every configuration
    // =======================================================================

    /// Producers and spinning consumers: every value popped exactly once,
    /// each producer's order kept in each consumer's view, empty at the end.
    fn mpmc_exactly_once_and_per_producer_fifo(cfg) {
        mpmc_spin(cfg, 3, 2, scaled(3_000, 12));
    }

    /// Consumers blocked in `pop_timeout` drain the queue; producers finish,
    /// the queue is closed, every consumer wakes and gets `None`.
    fn mpmc_pop_timeout_until_closed(cfg) {
        mpmc_blocking(cfg, 2, 3, scaled(3_000, 10));
    }

    /// Values dropped exactly once when consumers take only part of them
    /// and the queue is dropped with the rest (segments of the unbounded
    /// queue are retired through the epoch collector meanwhile).
    fn drop_counts_concurrent(cfg) {
        drop_counts_concurrent_run(cfg, 2, 2, scaled(2_000, 10));
    }

    /// Pushes racing `close`: each push either succeeds (and its value is
    /// popped exactly once) or hands the value back as `Closed`; nothing is
    /// lost or duplicated, and once a thread has seen `is_closed()` its
    /// pushes fail with `Closed`.
    fn close_racing_pushes_loses_nothing(cfg) {
        let rounds = scaled(40, 2);
        for round in 0..rounds {
            close_race_round(cfg, 2, scaled(300, 6), round);
        }
    }

    /// Once every thread is done, `len` counts every value left inside
    /// (exactness: see `assert_len_at_quiescence`), and they all drain.
    fn len_at_quiescence(cfg) {
        let producers = 2;
        let per = scaled(1_000, 8);
        let total = producers * per;
        let leave = cfg.capacity().unwrap_or(total).min(total / 2);
        let q = cfg.make::<usize>();
        let popped = AtomicUsize::new(0);
        thread::scope(|s| {
            for p in 0..producers {
                let q = &q;
                s.spawn(move || {
                    for i in 0..per {
                        q.push_spin(encode(p, i, per)).unwrap();
                    }
                });
            }
            for _ in 0..2 {
                s.spawn(|| {
                    while popped.fetch_add(1, SeqCst) < total - leave {
                        while q.pop().is_none() {
                            thread::yield_now();
                        }
                    }
                });
            }
        });
        assert_len_at_quiescence(q.len(), leave, &format!("{cfg:?}"));
        assert_eq!(q.drain().len(), leave);
        assert_eq!(q.pop(), None);
    }

    /// A consumer blocked in `pop_timeout` is woken by a push from another
    /// thread (several delays, to hit registration windows), and two
    /// blocked consumers both get one of two values.
    fn pop_timeout_woken_by_push(cfg) {
        eventually("pop_timeout_woken_by_push", move || {
            let q = Arc::new(cfg.make::<u32>());
            for (i, delay_ms) in [0u64, 0, 1, 5].into_iter().enumerate() {
                let consumer = {
                    let q = Arc::clone(&q);
                    thread::spawn(move || q.pop_timeout(LONG))
                };
                thread::sleep(Duration::from_millis(delay_ms));
                q.push(i as u32).unwrap();
                assert_eq!(consumer.join().unwrap(), Some(i as u32));
            }
            let consumers: Vec<_> = (0..2)
                .map(|_| {
                    let q = Arc::clone(&q);
                    thread::spawn(move || q.pop_timeout(LONG))
                })
                .collect();
            thread::sleep(Duration::from_millis(2));
            q.push_spin(10).unwrap();
            q.push_spin(11).unwrap();
            let mut got: Vec<_> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
            got.sort_unstable();
            assert_eq!(got, [Some(10), Some(11)]);
        });
    }

    /// Consumers blocked in `pop_timeout` (with and without a deadline) and
    /// in `pop_async` all wake on `close` and get `None`.
    fn blocked_consumers_woken_by_close(cfg) {
        eventually("blocked_consumers_woken_by_close", move || {
            let q = Arc::new(cfg.make::<u32>());
            let mut consumers = Vec::new();
            for kind in 0..3 {
                let q = Arc::clone(&q);
                consumers.push(thread::spawn(move || match kind {
                    0 => q.pop_timeout(LONG),
                    1 => q.pop_timeout(Duration::MAX),
                    _ => pollster::block_on(q.pop_async()),
                }));
            }
            thread::sleep(Duration::from_millis(5));
            q.close();
            for c in consumers {
                assert_eq!(c.join().unwrap(), None);
            }
        });
    }

    /// `pop_async` under pollster: a value pushed later by another thread
    /// wakes the blocked consumer; so does `close`.
    fn pop_async_pollster(cfg) {
        eventually("pop_async_pollster", move || {
            let q = Arc::new(cfg.make::<u32>());
            q.push(1).unwrap();
            assert_eq!(pollster::block_on(q.pop_async()), Some(1));
            let consumer = {
                let q = Arc::clone(&q);
                thread::spawn(move || {
                    let mut got = Vec::new();
                    while let Some(v) = pollster::block_on(q.pop_async()) {
                        got.push(v);
                    }
                    got
                })
            };
            for i in 0..scaled(50, 3) as u32 {
                if i % 10 == 0 {
                    thread::sleep(Duration::from_millis(1));
                }
                while q.push(i).is_err() {
                    thread::yield_now();
                }
            }
            q.close();
            assert_eq!(consumer.join().unwrap(), (0..scaled(50, 3) as u32).collect::<Vec<_>>());
        });
    }

    /// `pop_async` consumers on a multi-thread tokio runtime, producers as
    /// tasks, then close: exactly once, per-producer order per consumer.
    #[cfg_attr(miri, ignore = "tokio's runtime is too slow under miri")]
    fn pop_async_tokio_multi_thread(cfg) {
        tokio_mpmc(cfg, 2, 3, 2_000);
    }

    /// Two `pop_async` futures wait; a push notifies one; dropping that one
    /// unpolled hands the notification to the other, which gets the value.
    fn cancelled_pop_async_hands_notification_on(cfg) {
        let q = cfg.make::<u32>();
        let (flag_a, waker_a) = FlagWaker::new();
        let (flag_b, waker_b) = FlagWaker::new();
        let mut a = Some(q.pop_async());
        let mut b = Some(q.pop_async());
        assert!(poll_once(&mut a, &waker_a).is_pending());
        assert!(poll_once(&mut b, &waker_b).is_pending());
        q.push(7).unwrap();
        let (woken_a, woken_b) = (flag_a.take(), flag_b.take());
        assert!(woken_a || woken_b, "a push must wake one waiting future");
        // Cancel the woken future without polling it again.
        let (survivor, survivor_flag, survivor_waker) = if woken_a {
            drop(a.take());
            (&mut b, &flag_b, &waker_b)
        } else {
            drop(b.take());
            (&mut a, &flag_a, &waker_a)
        };
        assert!(
            woken_a && woken_b || survivor_flag.take(),
            "the cancelled future's notification was lost"
        );
        assert_eq!(poll_once(survivor, survivor_waker), Poll::Ready(Some(7)));
        // With nothing inside, a third future waits, then sees close.
        let (flag_c, waker_c) = FlagWaker::new();
        let mut c = Some(q.pop_async());
        assert!(poll_once(&mut c, &waker_c).is_pending());
        q.close();
        assert!(flag_c.take(), "close must wake every waiter");
        assert_eq!(poll_once(&mut c, &waker_c), Poll::Ready(None));
    }

    /// Threaded variant: a consumer thread blocks in `pop_async` while a
    /// hand-polled future on this thread is registered too; a push then the
    /// cancellation of the local future must still wake the consumer.
    fn cancelled_pop_async_threaded(cfg) {
        eventually("cancelled_pop_async_threaded", move || {
            let q = Arc::new(cfg.make::<u32>());
            for round in 0..scaled(100, 3) as u32 {
                let (_flag, waker) = FlagWaker::new();
                let mut local = q.pop_async();
                assert!(local.as_mut().poll(&mut Context::from_waker(&waker)).is_pending());
                let (tx, rx) = mpsc::channel();
                let consumer = {
                    let q = Arc::clone(&q);
                    thread::spawn(move || {
                        tx.send(()).unwrap();
                        pollster::block_on(q.pop_async())
                    })
                };
                rx.recv().unwrap();
                if round % 2 == 0 {
                    thread::yield_now();
                }
                q.push(round).unwrap();
                drop(local);
                assert_eq!(consumer.join().unwrap(), Some(round));
            }
        });
    }
}

// ===========================================================================
// Bounded-only suites
// ===========================================================================

bounded_tests! {
    /// `force_push` on a full queue displaces exactly the oldest value, and
    /// the new value goes to the back.
    fn force_push_displaces_oldest_in_order(cap) {
        let q = BoundedQueue::new(cap);
        for i in 0..cap {
            assert_eq!(q.force_push(i), Ok(None));
        }
        assert_eq!(q.push(cap), Err(PushError::Full(cap)));
        let extra = scaled(3 * cap + 5, cap + 3);
        for i in cap..cap + extra {
            assert_eq!(q.force_push(i), Ok(Some(i - cap)));
            assert_eq!(q.len(), cap);
        }
        let end = cap + extra;
        assert_eq!(q.drain_vec(), (end - cap..end).collect::<Vec<_>>());
        // Partly full: no displacement.
        q.push(1).unwrap();
        assert_eq!(q.force_push(2), if cap == 1 { Ok(Some(1)) } else { Ok(None) });
    }

    /// Force-pushers and a consumer hammer the queue: every value ends up
    /// exactly once, popped, displaced (returned to a pusher) or left
    /// inside, and each of those views keeps every producer's order.
    fn force_push_storm_exactly_once(cap) {
        force_push_storm(cap, 2, 1, scaled(3_000, 10));
    }

    /// `force_push` after `close` hands the value back; what was inside
    /// stays poppable.
    fn force_push_after_close(cap) {
        let q = BoundedQueue::new(cap);
        for i in 0..cap {
            q.push(i).unwrap();
        }
        q.close();
        assert_eq!(q.force_push(99), Err(PushError::Closed(99)));
        assert_eq!(q.len(), cap);
        assert_eq!(q.drain_vec(), (0..cap).collect::<Vec<_>>());
    }
}

// ===========================================================================
// Scenario bodies shared by the suites and the stress tests
// ===========================================================================

/// `producers` × `consumers` with spinning `pop`s.
fn mpmc_spin(cfg: Config, producers: usize, consumers: usize, per: usize) {
    eventually("mpmc_spin", move || {
        let q = cfg.make::<usize>();
        let total = producers * per;
        let popped = AtomicUsize::new(0);
        let seen: Vec<Vec<usize>> = thread::scope(|s| {
            for p in 0..producers {
                let q = &q;
                s.spawn(move || {
                    for i in 0..per {
                        q.push_spin(encode(p, i, per)).expect("never closed");
                    }
                });
            }
            let handles: Vec<_> = (0..consumers)
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        while popped.load(SeqCst) < total {
                            match q.pop() {
                                Some(v) => {
                                    mine.push(v);
                                    popped.fetch_add(1, SeqCst);
                                }
                                None => thread::yield_now(),
                            }
                        }
                        mine
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (c, mine) in seen.iter().enumerate() {
            assert_per_producer_fifo(mine, per, &format!("{cfg:?} consumer {c}"));
        }
        assert_exactly_once(total, seen.iter().map(Vec::as_slice));
        assert_eq!(
            q.pop(),
            None,
            "{cfg:?}: a value left after every value was popped"
        );
    });
}

/// `producers` × `consumers` blocked in `pop_timeout`, closed at the end.
fn mpmc_blocking(cfg: Config, producers: usize, consumers: usize, per: usize) {
    eventually("mpmc_blocking", move || {
        let q = cfg.make::<usize>();
        let total = producers * per;
        let seen: Vec<Vec<usize>> = thread::scope(|s| {
            let consumer_handles: Vec<_> = (0..consumers)
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        while let Some(v) = q.pop_timeout(LONG) {
                            mine.push(v);
                        }
                        assert!(q.is_closed(), "pop_timeout gave None before close");
                        mine
                    })
                })
                .collect();
            let producer_handles: Vec<_> = (0..producers)
                .map(|p| {
                    let q = &q;
                    s.spawn(move || {
                        for i in 0..per {
                            q.push_spin(encode(p, i, per)).expect("not closed yet");
                            if i % 64 == 0 {
                                // Let consumers go to sleep now and then.
                                thread::yield_now();
                            }
                        }
                    })
                })
                .collect();
            for h in producer_handles {
                h.join().unwrap();
            }
            q.close();
            consumer_handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect()
        });
        for (c, mine) in seen.iter().enumerate() {
            assert_per_producer_fifo(mine, per, &format!("{cfg:?} consumer {c}"));
        }
        assert_exactly_once(total, seen.iter().map(Vec::as_slice));
        assert_eq!(q.pop(), None);
        assert_eq!(
            (q.len(), q.is_empty()),
            (0, true),
            "{cfg:?}: closed and drained"
        );
    });
}

/// Consumers pop about half, producers give up on `Full` once consumers
/// are done, the queue is dropped with the rest: every value dropped once.
fn drop_counts_concurrent_run(cfg: Config, producers: usize, consumers: usize, per: usize) {
    eventually("drop_counts_concurrent", move || {
        let total = producers * per;
        let target = total / 2;
        let log = DropLog::new(total);
        let q = cfg.make::<Tracked>();
        let popped = AtomicUsize::new(0);
        let consumers_done = AtomicBool::new(false);
        let dropped_by_producers = AtomicUsize::new(0);
        thread::scope(|s| {
            for p in 0..producers {
                let (q, log, consumers_done) = (&q, &log, &consumers_done);
                let dropped_by_producers = &dropped_by_producers;
                s.spawn(move || {
                    for i in 0..per {
                        let mut v = log.track(encode(p, i, per));
                        loop {
                            match q.push(v) {
                                Ok(()) => break,
                                Err(PushError::Full(back)) if consumers_done.load(SeqCst) => {
                                    drop(back);
                                    dropped_by_producers.fetch_add(1, SeqCst);
                                    break;
                                }
                                Err(PushError::Full(back)) => {
                                    v = back;
                                    thread::yield_now();
                                }
                                Err(PushError::Closed(_)) => unreachable!("never closed"),
                            }
                        }
                    }
                });
            }
            let handles: Vec<_> = (0..consumers)
                .map(|_| {
                    s.spawn(|| {
                        while popped.load(SeqCst) < target {
                            match q.pop() {
                                Some(v) => {
                                    assert_eq!(log.count(v.id), 0, "popped a dropped value");
                                    popped.fetch_add(1, SeqCst);
                                    drop(v);
                                }
                                None => thread::yield_now(),
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            consumers_done.store(true, SeqCst);
        });
        let alive = (0..total).filter(|&id| log.count(id) == 0).count();
        assert_len_at_quiescence(q.len(), alive, &format!("{cfg:?}: values alive"));
        assert_eq!(
            alive + popped.load(SeqCst) + dropped_by_producers.load(SeqCst),
            total
        );
        drop(q);
        log.assert_all_dropped_once();
    });
}

/// One round of pushes racing `close`, with a concurrent consumer.
fn close_race_round(cfg: Config, producers: usize, per: usize, round: usize) {
    eventually("close_race_round", move || {
        let q = cfg.make::<usize>();
        let total = producers * per;
        let close_after = XorShift::new(round as u64 ^ cfg.id()).below(total);
        let pushed = AtomicUsize::new(0);
        let producers_done = AtomicBool::new(false);
        let (results, consumed) = thread::scope(|s| {
            let producer_handles: Vec<_> = (0..producers)
                .map(|p| {
                    let (q, pushed) = (&q, &pushed);
                    s.spawn(move || {
                        let (mut ok, mut refused) = (Vec::new(), Vec::new());
                        for i in 0..per {
                            let v = encode(p, i, per);
                            let saw_closed = q.is_closed();
                            let mut value = v;
                            loop {
                                match q.push(value) {
                                    Ok(()) => {
                                        assert!(!saw_closed, "push succeeded after is_closed()");
                                        ok.push(v);
                                        pushed.fetch_add(1, SeqCst);
                                        break;
                                    }
                                    Err(PushError::Full(back)) => {
                                        assert!(!saw_closed, "Full (not Closed) after is_closed()");
                                        value = back;
                                        thread::yield_now();
                                    }
                                    Err(PushError::Closed(back)) => {
                                        assert_eq!(back, v, "Closed handed back another value");
                                        refused.push(v);
                                        break;
                                    }
                                }
                            }
                        }
                        (ok, refused)
                    })
                })
                .collect();
            let closer = s.spawn(|| {
                while pushed.load(SeqCst) < close_after {
                    thread::yield_now();
                }
                q.close();
            });
            let consumer = s.spawn(|| {
                let mut mine = Vec::new();
                loop {
                    let done = producers_done.load(SeqCst);
                    match q.pop() {
                        Some(v) => mine.push(v),
                        None if done => break,
                        None => thread::yield_now(),
                    }
                }
                mine
            });
            let results: Vec<(Vec<usize>, Vec<usize>)> = producer_handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect();
            closer.join().unwrap();
            producers_done.store(true, SeqCst);
            (results, consumer.join().unwrap())
        });
        let rest = q.drain();
        assert!(
            rest.is_empty(),
            "{cfg:?}: a pop at quiescence returned None while {} values were inside",
            rest.len()
        );
        // Refusals are sticky per producer: its accepted values come first.
        for (p, (ok, refused)) in results.iter().enumerate() {
            if let (Some(last_ok), Some(first_refused)) = (ok.last(), refused.first()) {
                assert!(
                    last_ok < first_refused,
                    "{cfg:?}: producer {p} pushed after a Closed"
                );
            }
        }
        let refused: Vec<usize> = results
            .iter()
            .flat_map(|(_, r)| r.iter().copied())
            .collect();
        assert_per_producer_fifo(&consumed, per, &format!("{cfg:?} consumer"));
        assert_exactly_once(total, [consumed.as_slice(), refused.as_slice()]);
        assert!(q.is_closed());
        assert_eq!(q.push(0), Err(PushError::Closed(0)));
        assert_eq!(q.pop(), None);
        assert_eq!(
            (q.len(), q.is_empty()),
            (0, true),
            "{cfg:?}: closed and drained"
        );
    });
}

/// Force-pushers and consumers on a bounded queue.
fn force_push_storm(cap: usize, pushers: usize, consumers: usize, per: usize) {
    eventually("force_push_storm", move || {
        let q = BoundedQueue::new(cap);
        let total = pushers * per;
        let pushers_done = AtomicBool::new(false);
        let (displaced, popped) = thread::scope(|s| {
            let pusher_handles: Vec<_> = (0..pushers)
                .map(|p| {
                    let q = &q;
                    s.spawn(move || {
                        let mut displaced = Vec::new();
                        for i in 0..per {
                            match q.force_push(encode(p, i, per)) {
                                Ok(Some(old)) => displaced.push(old),
                                Ok(None) => {}
                                Err(e) => panic!("force_push on an open queue: {e:?}"),
                            }
                        }
                        displaced
                    })
                })
                .collect();
            let consumer_handles: Vec<_> = (0..consumers)
                .map(|_| {
                    s.spawn(|| {
                        let mut mine = Vec::new();
                        while !pushers_done.load(SeqCst) {
                            match q.pop() {
                                Some(v) => mine.push(v),
                                None => thread::yield_now(),
                            }
                        }
                        mine
                    })
                })
                .collect();
            let displaced: Vec<Vec<usize>> = pusher_handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect();
            pushers_done.store(true, SeqCst);
            let popped: Vec<Vec<usize>> = consumer_handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect();
            (displaced, popped)
        });
        let len = q.len();
        assert!(len <= cap);
        let rest = q.drain_vec();
        assert_len_at_quiescence(len, rest.len(), &format!("cap {cap}"));
        for (i, view) in displaced.iter().chain(&popped).chain([&rest]).enumerate() {
            assert_per_producer_fifo(view, per, &format!("cap {cap} view {i}"));
        }
        assert_exactly_once(
            total,
            displaced
                .iter()
                .chain(&popped)
                .chain([&rest])
                .map(Vec::as_slice),
        );
    });
}

/// `pop_async` consumers and producers as tasks on a multi-thread runtime.
fn tokio_mpmc(cfg: Config, producers: usize, consumers: usize, per: usize) {
    eventually("tokio_mpmc", move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async move {
            let q = Arc::new(cfg.make::<usize>());
            let consumer_tasks: Vec<_> = (0..consumers)
                .map(|_| {
                    let q = Arc::clone(&q);
                    tokio::spawn(async move {
                        let mut mine = Vec::new();
                        while let Some(v) = q.pop_async().await {
                            mine.push(v);
                        }
                        mine
                    })
                })
                .collect();
            let producer_tasks: Vec<_> = (0..producers)
                .map(|p| {
                    let q = Arc::clone(&q);
                    tokio::spawn(async move {
                        for i in 0..per {
                            let mut v = encode(p, i, per);
                            loop {
                                match q.push(v) {
                                    Ok(()) => break,
                                    Err(PushError::Full(back)) => {
                                        v = back;
                                        tokio::task::yield_now().await;
                                    }
                                    Err(PushError::Closed(_)) => panic!("closed too early"),
                                }
                            }
                            if i % 100 == 0 {
                                tokio::task::yield_now().await;
                            }
                        }
                    })
                })
                .collect();
            for t in producer_tasks {
                t.await.unwrap();
            }
            q.close();
            let mut seen = Vec::new();
            for t in consumer_tasks {
                seen.push(t.await.unwrap());
            }
            for (c, mine) in seen.iter().enumerate() {
                assert_per_producer_fifo(mine, per, &format!("{cfg:?} task {c}"));
            }
            assert_exactly_once(producers * per, seen.iter().map(Vec::as_slice));
            assert_eq!(q.pop(), None);
            assert_eq!(
                (q.len(), q.is_empty()),
                (0, true),
                "{cfg:?}: closed and drained"
            );
        });
    });
}

// ===========================================================================
// Stress tests: `cargo test --release --test queue -- --ignored`
// ===========================================================================

/// Small queues for the stress tests: contention on every slot and, for
/// the unbounded queue, a new segment every few values.
const STRESS_CONFIGS: [Config; 6] = [
    Config::Bounded(1),
    Config::Bounded(2),
    Config::Bounded(64),
    Config::Unbounded(Some(1)),
    Config::Unbounded(Some(2)),
    Config::Unbounded(Some(7)),
];

#[test]
#[ignore = "stress: run with --release -- --ignored"]
fn stress_mpmc_4x4() {
    for cfg in STRESS_CONFIGS {
        mpmc_spin(cfg, 4, 4, 200_000);
    }
}

#[test]
#[ignore = "stress: run with --release -- --ignored"]
fn stress_mpmc_blocking_consumers() {
    for cfg in STRESS_CONFIGS {
        mpmc_blocking(cfg, 4, 4, 100_000);
    }
}

#[test]
#[ignore = "stress: run with --release -- --ignored"]
fn stress_force_push_storm() {
    for cap in [1, 2, 3, 64] {
        force_push_storm(cap, 4, 2, 500_000);
    }
}

#[test]
#[ignore = "stress: run with --release -- --ignored"]
fn stress_close_races() {
    for cfg in CONFIGS {
        for round in 0..1_500 {
            close_race_round(cfg, 3, 200, round);
        }
    }
}

#[test]
#[ignore = "stress: run with --release -- --ignored"]
fn stress_drop_counts() {
    for cfg in STRESS_CONFIGS {
        drop_counts_concurrent_run(cfg, 4, 4, 100_000);
    }
}

#[test]
#[ignore = "stress: run with --release -- --ignored"]
fn stress_tokio_pop_async() {
    for cfg in STRESS_CONFIGS {
        tokio_mpmc(cfg, 4, 4, 100_000);
    }
}

#[test]
#[ignore = "stress: run with --release -- --ignored"]
fn stress_differential_long_sequences() {
    for cfg in CONFIGS {
        for seed in 0..40 {
            differential(cfg, 0xABCD_0000 + seed, 20_000);
        }
    }
}

// ---------------------------------------------------------------------------
// A push racing `close` is never stranded after "closed and drained"
// ---------------------------------------------------------------------------

/// What the close race needs of a queue.
trait Closable: Send + Sync + 'static {
    fn make(force_full: bool) -> Self;
    fn produce(&self, force_full: bool) -> bool;
    fn shut(&self);
    fn wait_pop(&self) -> Option<u32>;
    fn try_pop(&self) -> Option<u32>;
}

impl Closable for BoundedQueue<u32> {
    /// Capacity 1, never used (its ring's threshold is still -1), or full.
    fn make(force_full: bool) -> Self {
        let q = BoundedQueue::new(1);
        if force_full {
            q.push(1).unwrap();
        }
        q
    }
    fn produce(&self, force_full: bool) -> bool {
        if force_full {
            self.force_push(7).is_ok()
        } else {
            self.push(7).is_ok()
        }
    }
    fn shut(&self) {
        self.close();
    }
    fn wait_pop(&self) -> Option<u32> {
        self.pop_timeout(Duration::from_secs(5))
    }
    fn try_pop(&self) -> Option<u32> {
        self.pop()
    }
}

impl Closable for UnboundedQueue<u32> {
    fn make(_: bool) -> Self {
        UnboundedQueue::with_segment_capacity(1)
    }
    fn produce(&self, _: bool) -> bool {
        self.push(7).is_ok()
    }
    fn shut(&self) {
        self.close();
    }
    fn wait_pop(&self) -> Option<u32> {
        self.pop_timeout(Duration::from_secs(5))
    }
    fn try_pop(&self) -> Option<u32> {
        self.pop()
    }
}

/// Races one push (or `force_push` on a full queue) against `close`
/// followed by a `while let Some(v) = q.pop_timeout(..)` consumer loop, on a
/// new queue each round, and counts the rounds where the push returned `Ok`,
/// the loop ended ("closed and drained"), and the value was in the queue
/// after all. A `BoundedQueue` whose ring was never used stranded 7 to 19
/// pushes in a million rounds (its consumers answered "empty" without
/// taking a ticket), and `force_push` about 120 (found in review).
fn stranded_after_close<Q: Closable>(force_full: bool, rounds: usize) -> usize {
    let current: Arc<std::sync::Mutex<Option<Arc<Q>>>> = Arc::default();
    let round = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicBool::new(false));
    let producer = {
        let (current, round, done, accepted) = (
            Arc::clone(&current),
            Arc::clone(&round),
            Arc::clone(&done),
            Arc::clone(&accepted),
        );
        thread::spawn(move || {
            for r in 1..=rounds {
                while round.load(SeqCst) != r {
                    std::hint::spin_loop();
                }
                let q = current
                    .lock()
                    .unwrap()
                    .clone()
                    .expect("set before the round");
                accepted.store(q.produce(force_full), SeqCst);
                done.store(r, SeqCst);
            }
        })
    };
    let mut stranded = 0;
    let mut rng = XorShift::new(0x9E37_79B9_7F4A_7C15);
    for r in 1..=rounds {
        let q = Arc::new(Q::make(force_full));
        *current.lock().unwrap() = Some(Arc::clone(&q));
        round.store(r, SeqCst);
        for _ in 0..rng.below(400) {
            std::hint::spin_loop();
        }
        q.shut();
        let mut got = Vec::new();
        while let Some(v) = q.wait_pop() {
            got.push(v);
        }
        while done.load(SeqCst) != r {
            std::hint::spin_loop();
        }
        if accepted.load(SeqCst) && !got.contains(&7) {
            assert_eq!(q.try_pop(), Some(7), "accepted, so it is somewhere");
            stranded += 1;
        }
    }
    producer.join().unwrap();
    stranded
}

/// One test for the three cases, run one after the other: each round
/// spins two threads, and parallel tests would oversubscribe the CPUs.
#[test]
#[ignore = "stress: run with --release -- --ignored"]
fn a_push_racing_close_is_never_stranded() {
    const ROUNDS: usize = 300_000;
    let n = stranded_after_close::<BoundedQueue<u32>>(false, ROUNDS);
    assert_eq!(n, 0, "bounded: {n} of {ROUNDS} accepted pushes stranded");
    let n = stranded_after_close::<BoundedQueue<u32>>(true, ROUNDS);
    assert_eq!(
        n, 0,
        "bounded: {n} of {ROUNDS} accepted force_pushes stranded"
    );
    let n = stranded_after_close::<UnboundedQueue<u32>>(false, ROUNDS);
    assert_eq!(n, 0, "unbounded: {n} of {ROUNDS} accepted pushes stranded");
}
