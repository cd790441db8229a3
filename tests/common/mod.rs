//! Shared helpers for the queue tests: the sequential oracle [`RefQueue`],
//! the configurations every suite runs over ([`Config`], [`AnyQueue`],
//! [`config_tests!`], [`bounded_tests!`]), a drop-counting value type
//! ([`Tracked`]), a seeded pseudo-random generator and checkers.
//!
//! Not every test crate uses every helper. `work_model` is the work
//! queue's sequential reference.
#![allow(dead_code, unused_macros)]

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub mod work_model;

use unlocked::{BoundedQueue, PushError, UnboundedQueue};

/// `native` normally, `miri` under miri (which runs ~1000x slower).
pub const fn scaled(native: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        native
    }
}

// ---------------------------------------------------------------------------
// Pseudo-random numbers
// ---------------------------------------------------------------------------

/// xorshift64*: tiny, seedable, good enough to pick operations.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator for `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------
// The sequential oracle
// ---------------------------------------------------------------------------

/// The sequential reference queue: a `Mutex<VecDeque<T>>` with the same API
/// as the lock-free queues (bounded when built with a capacity).
pub struct RefQueue<T> {
    state: Mutex<RefState<T>>,
    capacity: Option<usize>,
}

#[derive(Clone)]
struct RefState<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> RefQueue<T> {
    /// A reference for `BoundedQueue::new(capacity)`.
    pub fn bounded(capacity: usize) -> Self {
        assert!(capacity >= 1, "capacity must be at least 1");
        Self::with(Some(capacity))
    }

    /// A reference for `UnboundedQueue`.
    pub fn unbounded() -> Self {
        Self::with(None)
    }

    fn with(capacity: Option<usize>) -> Self {
        RefQueue {
            state: Mutex::new(RefState {
                items: VecDeque::new(),
                closed: false,
            }),
            capacity,
        }
    }

    fn state(&self) -> MutexGuard<'_, RefState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_full(&self, state: &RefState<T>) -> bool {
        self.capacity.is_some_and(|c| state.items.len() >= c)
    }

    /// `Closed` after `close`, `Full` at capacity, otherwise appends.
    pub fn push(&self, value: T) -> Result<(), PushError<T>> {
        let mut state = self.state();
        if state.closed {
            return Err(PushError::Closed(value));
        }
        if self.is_full(&state) {
            return Err(PushError::Full(value));
        }
        state.items.push_back(value);
        Ok(())
    }

    /// `push` as if the queue were open: for a push that raced `close` and
    /// may still land after it (`Full` at capacity, otherwise appends).
    pub fn push_ignoring_close(&self, value: T) -> Result<(), PushError<T>> {
        let mut state = self.state();
        if self.is_full(&state) {
            return Err(PushError::Full(value));
        }
        state.items.push_back(value);
        Ok(())
    }

    /// `Closed` after `close`; at capacity, displaces and returns the
    /// oldest value. Without a capacity, the same as `push`.
    pub fn force_push(&self, value: T) -> Result<Option<T>, PushError<T>> {
        let mut state = self.state();
        if state.closed {
            return Err(PushError::Closed(value));
        }
        let displaced = if self.is_full(&state) {
            state.items.pop_front()
        } else {
            None
        };
        state.items.push_back(value);
        Ok(displaced)
    }

    /// Removes the oldest value.
    pub fn pop(&self) -> Option<T> {
        self.state().items.pop_front()
    }

    /// Values inside.
    pub fn len(&self) -> usize {
        self.state().items.len()
    }

    /// `len() == 0`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses later pushes; idempotent.
    pub fn close(&self) {
        self.state().closed = true;
    }

    /// `true` after `close`.
    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// `Some(capacity)` for the bounded reference.
    pub fn capacity(&self) -> Option<usize> {
        self.capacity
    }

    /// The values inside, oldest first.
    pub fn items(&self) -> Vec<T>
    where
        T: Clone,
    {
        self.state().items.iter().cloned().collect()
    }
}

impl<T: Clone> Clone for RefQueue<T> {
    fn clone(&self) -> Self {
        RefQueue {
            state: Mutex::new(self.state().clone()),
            capacity: self.capacity,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for RefQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("RefQueue")
            .field("items", &state.items)
            .field("closed", &state.closed)
            .field("capacity", &self.capacity)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Configurations
// ---------------------------------------------------------------------------

/// One queue configuration a suite runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Config {
    /// `BoundedQueue::new(capacity)`.
    Bounded(usize),
    /// `UnboundedQueue::with_segment_capacity(n)`, or `new()` for `None`.
    Unbounded(Option<usize>),
}

/// Every configuration, in the order the generated tests list them.
pub const CONFIGS: [Config; 9] = [
    Config::Bounded(1),
    Config::Bounded(2),
    Config::Bounded(3),
    Config::Bounded(64),
    Config::Bounded(1000),
    Config::Unbounded(Some(1)),
    Config::Unbounded(Some(2)),
    Config::Unbounded(Some(7)),
    Config::Unbounded(None),
];

impl Config {
    /// A fresh, empty queue of this configuration.
    pub fn make<T>(self) -> AnyQueue<T> {
        match self {
            Config::Bounded(cap) => AnyQueue::Bounded(BoundedQueue::new(cap)),
            Config::Unbounded(Some(seg)) => {
                AnyQueue::Unbounded(UnboundedQueue::with_segment_capacity(seg))
            }
            Config::Unbounded(None) => AnyQueue::Unbounded(UnboundedQueue::new()),
        }
    }

    /// The matching sequential reference.
    pub fn reference<T>(self) -> RefQueue<T> {
        match self {
            Config::Bounded(cap) => RefQueue::bounded(cap),
            Config::Unbounded(_) => RefQueue::unbounded(),
        }
    }

    /// `Some(capacity)` for a bounded queue.
    pub fn capacity(self) -> Option<usize> {
        match self {
            Config::Bounded(cap) => Some(cap),
            Config::Unbounded(_) => None,
        }
    }

    /// A number that differs between configurations (for seeds).
    pub fn id(self) -> u64 {
        match self {
            Config::Bounded(cap) => cap as u64,
            Config::Unbounded(Some(seg)) => (1 << 40) | seg as u64,
            Config::Unbounded(None) => 1 << 41,
        }
    }
}

/// Either queue, behind one API; for the unbounded queue `force_push` is
/// `push` (it never displaces).
// Both variants are large (cache-padded counters); only a few queues exist
// at a time, so boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum AnyQueue<T> {
    /// A `BoundedQueue`.
    Bounded(BoundedQueue<T>),
    /// An `UnboundedQueue`.
    Unbounded(UnboundedQueue<T>),
}

/// The boxed future of [`AnyQueue::pop_async`].
pub type PopFuture<'a, T> = Pin<Box<dyn Future<Output = Option<T>> + Send + 'a>>;

impl<T> AnyQueue<T> {
    /// `push` of the queue.
    pub fn push(&self, value: T) -> Result<(), PushError<T>> {
        match self {
            AnyQueue::Bounded(q) => q.push(value),
            AnyQueue::Unbounded(q) => q.push(value),
        }
    }

    /// `force_push` of the bounded queue, `push` of the unbounded one.
    pub fn force_push(&self, value: T) -> Result<Option<T>, PushError<T>> {
        match self {
            AnyQueue::Bounded(q) => q.force_push(value),
            AnyQueue::Unbounded(q) => q.push(value).map(|()| None),
        }
    }

    /// `push`, retrying (with a yield) while the queue is full; fails only
    /// when closed.
    pub fn push_spin(&self, mut value: T) -> Result<(), T> {
        loop {
            match self.push(value) {
                Ok(()) => return Ok(()),
                Err(PushError::Full(v)) => {
                    value = v;
                    std::thread::yield_now();
                }
                Err(PushError::Closed(v)) => return Err(v),
            }
        }
    }

    /// `pop` of the queue.
    pub fn pop(&self) -> Option<T> {
        match self {
            AnyQueue::Bounded(q) => q.pop(),
            AnyQueue::Unbounded(q) => q.pop(),
        }
    }

    /// `pop_timeout` of the queue.
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        match self {
            AnyQueue::Bounded(q) => q.pop_timeout(timeout),
            AnyQueue::Unbounded(q) => q.pop_timeout(timeout),
        }
    }

    /// `pop_async` of the queue, boxed so both queues share one type.
    pub fn pop_async(&self) -> PopFuture<'_, T>
    where
        T: Send,
    {
        match self {
            AnyQueue::Bounded(q) => Box::pin(q.pop_async()),
            AnyQueue::Unbounded(q) => Box::pin(q.pop_async()),
        }
    }

    /// `len` of the queue.
    pub fn len(&self) -> usize {
        match self {
            AnyQueue::Bounded(q) => q.len(),
            AnyQueue::Unbounded(q) => q.len(),
        }
    }

    /// `is_empty` of the queue.
    pub fn is_empty(&self) -> bool {
        match self {
            AnyQueue::Bounded(q) => q.is_empty(),
            AnyQueue::Unbounded(q) => q.is_empty(),
        }
    }

    /// `close` of the queue.
    pub fn close(&self) {
        match self {
            AnyQueue::Bounded(q) => q.close(),
            AnyQueue::Unbounded(q) => q.close(),
        }
    }

    /// `is_closed` of the queue.
    pub fn is_closed(&self) -> bool {
        match self {
            AnyQueue::Bounded(q) => q.is_closed(),
            AnyQueue::Unbounded(q) => q.is_closed(),
        }
    }

    /// `Some(capacity)` for the bounded queue.
    pub fn capacity(&self) -> Option<usize> {
        match self {
            AnyQueue::Bounded(q) => Some(q.capacity()),
            AnyQueue::Unbounded(_) => None,
        }
    }

    /// Pops until empty, oldest first.
    pub fn drain(&self) -> Vec<T> {
        std::iter::from_fn(|| self.pop()).collect()
    }
}

/// Generates one `#[test]` per configuration in [`CONFIGS`]:
///
/// ```ignore
/// config_tests! {
///     /// Docs and attributes (`#[ignore]`, `#[cfg_attr(miri, ignore)]`)
///     /// apply to every generated test.
///     fn name(cfg) { /* cfg: Config */ }
/// }
/// ```
///
/// expands to `mod name { #[test] fn bounded_cap1() .. fn unbounded_default() }`.
/// Attributes for the unbounded configurations only go in an optional
/// `unbounded(#[..])` after the parameter list:
/// `fn name(cfg) unbounded(#[cfg_attr(miri, ignore = "..")]) { .. }`.
macro_rules! config_tests {
    ($(
        $(#[$attr:meta])*
        fn $name:ident($cfg:ident) $(unbounded($(#[$uattr:meta])*))? $body:block
    )*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($cfg: $crate::common::Config) $body

            $(#[$attr])*
            #[test]
            fn bounded_cap1() {
                run($crate::common::Config::Bounded(1));
            }
            $(#[$attr])*
            #[test]
            fn bounded_cap2() {
                run($crate::common::Config::Bounded(2));
            }
            $(#[$attr])*
            #[test]
            fn bounded_cap3() {
                run($crate::common::Config::Bounded(3));
            }
            $(#[$attr])*
            #[test]
            fn bounded_cap64() {
                run($crate::common::Config::Bounded(64));
            }
            $(#[$attr])*
            #[cfg_attr(miri, ignore = "slow under miri; capacities 1 to 64 take the same paths")]
            #[test]
            fn bounded_cap1000() {
                run($crate::common::Config::Bounded(1000));
            }
            $(#[$attr])*
            $($(#[$uattr])*)?
            #[test]
            fn unbounded_seg1() {
                run($crate::common::Config::Unbounded(Some(1)));
            }
            $(#[$attr])*
            $($(#[$uattr])*)?
            #[test]
            fn unbounded_seg2() {
                run($crate::common::Config::Unbounded(Some(2)));
            }
            $(#[$attr])*
            $($(#[$uattr])*)?
            #[test]
            fn unbounded_seg7() {
                run($crate::common::Config::Unbounded(Some(7)));
            }
            $(#[$attr])*
            $($(#[$uattr])*)?
            #[test]
            fn unbounded_default() {
                run($crate::common::Config::Unbounded(None));
            }
        }
    )*};
}

/// Like [`config_tests!`], for the bounded configurations only; the body
/// gets the capacity as a `usize`.
macro_rules! bounded_tests {
    ($($(#[$attr:meta])* fn $name:ident($cap:ident) $body:block)*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn run($cap: usize) $body

            $(#[$attr])*
            #[test]
            fn cap1() {
                run(1);
            }
            $(#[$attr])*
            #[test]
            fn cap2() {
                run(2);
            }
            $(#[$attr])*
            #[test]
            fn cap3() {
                run(3);
            }
            $(#[$attr])*
            #[test]
            fn cap64() {
                run(64);
            }
            $(#[$attr])*
            #[cfg_attr(miri, ignore = "slow under miri; capacities 1 to 64 take the same paths")]
            #[test]
            fn cap1000() {
                run(1000);
            }
        }
    )*};
}

// ---------------------------------------------------------------------------
// Drop counting
// ---------------------------------------------------------------------------

/// How many times each of `n` tracked values was dropped.
#[derive(Debug)]
pub struct DropLog {
    counts: Vec<AtomicUsize>,
}

impl DropLog {
    /// A log for values `0..n`.
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(DropLog {
            counts: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    /// A value with this `id` that records its drop here.
    pub fn track(self: &Arc<Self>, id: usize) -> Tracked {
        Tracked {
            id,
            log: Arc::clone(self),
        }
    }

    /// How many times value `id` was dropped so far.
    pub fn count(&self, id: usize) -> usize {
        self.counts[id].load(SeqCst)
    }

    /// Every value `0..n` was dropped exactly once.
    #[track_caller]
    pub fn assert_all_dropped_once(&self) {
        let wrong: Vec<(usize, usize)> = self
            .counts
            .iter()
            .enumerate()
            .map(|(id, c)| (id, c.load(SeqCst)))
            .filter(|&(_, c)| c != 1)
            .take(10)
            .collect();
        assert!(
            wrong.is_empty(),
            "values dropped other than exactly once, (id, drops): {wrong:?}"
        );
    }
}

/// A value that counts its drops in a [`DropLog`].
pub struct Tracked {
    /// Which value this is.
    pub id: usize,
    log: Arc<DropLog>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.log.counts[self.id].fetch_add(1, SeqCst);
    }
}

impl fmt::Debug for Tracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tracked({})", self.id)
    }
}

impl PartialEq for Tracked {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

// ---------------------------------------------------------------------------
// Checkers
// ---------------------------------------------------------------------------

/// The value a producer pushes as its `seq`-th value (`seq < per_producer`).
pub fn encode(producer: usize, seq: usize, per_producer: usize) -> usize {
    producer * per_producer + seq
}

/// Each of `0..total` appears exactly once in `groups` together.
#[track_caller]
pub fn assert_exactly_once<'a>(total: usize, groups: impl IntoIterator<Item = &'a [usize]>) {
    let mut seen = vec![0usize; total];
    for group in groups {
        for &v in group {
            assert!(v < total, "value {v} was never pushed");
            seen[v] += 1;
        }
    }
    let wrong: Vec<(usize, usize)> = seen
        .iter()
        .enumerate()
        .filter(|&(_, &c)| c != 1)
        .map(|(v, &c)| (v, c))
        .take(10)
        .collect();
    assert!(
        wrong.is_empty(),
        "values seen other than exactly once, (value, times): {wrong:?}"
    );
}

/// In one consumer's observed sequence, the values of each producer come in
/// the order that producer pushed them (values built by [`encode`]).
#[track_caller]
pub fn assert_per_producer_fifo(observed: &[usize], per_producer: usize, who: &str) {
    let mut last: Vec<Option<usize>> = Vec::new();
    for (i, &v) in observed.iter().enumerate() {
        let (producer, seq) = (v / per_producer, v % per_producer);
        if last.len() <= producer {
            last.resize(producer + 1, None);
        }
        if let Some(prev) = last[producer] {
            assert!(
                seq > prev,
                "{who}: producer {producer}'s value #{seq} came after its #{prev} (position {i})"
            );
        }
        last[producer] = Some(seq);
    }
}

/// The upper bound for anything that must happen "eventually" (a woken
/// consumer, a drained queue): generous, so only a lost wakeup or a
/// livelock hits it, never a slow machine. Under miri the clock is
/// virtual and jumps ahead when every thread is blocked, so a lost wakeup
/// still ends the test, with this message, instead of hanging it.
pub const EVENTUALLY: Duration = Duration::from_secs(if cfg!(miri) { 600 } else { 120 });

/// Runs `f` on its own thread and returns its result, failing the test if
/// it has not finished within [`EVENTUALLY`] (the thread is then leaked).
#[track_caller]
pub fn eventually<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (done, finished) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let r = f();
        let _ = done.send(());
        r
    });
    match finished.recv_timeout(EVENTUALLY) {
        // Disconnected: `f` panicked; `join` hands the panic on.
        Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: did not finish within {EVENTUALLY:?} (lost wakeup or livelock?)")
        }
    }
}

/// A waker that records that it was woken, for polling futures by hand.
#[derive(Debug, Default)]
pub struct FlagWaker {
    woken: std::sync::atomic::AtomicBool,
}

impl FlagWaker {
    /// A fresh flag and the waker that sets it.
    pub fn new() -> (Arc<Self>, std::task::Waker) {
        let flag = Arc::new(FlagWaker::default());
        let waker = std::task::Waker::from(Arc::clone(&flag));
        (flag, waker)
    }

    /// Whether the waker was woken since the last `take`.
    pub fn take(&self) -> bool {
        self.woken.swap(false, SeqCst)
    }
}

impl std::task::Wake for FlagWaker {
    fn wake(self: Arc<Self>) {
        self.woken.store(true, SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, SeqCst);
    }
}

/// A cache of `capacity` `u64` entries on `clock`.
pub fn cache_with_clock(
    capacity: usize,
    clock: &unlocked::ManualClock,
) -> unlocked::Cache<u64, u64> {
    unlocked::Cache::builder()
        .max_capacity(capacity)
        .clock(clock.clone())
        .build()
        .unwrap()
}
