//! [`BoundedQueue`]: a fixed-capacity lock-free MPMC queue.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use super::error::PushError;
use super::slots::{SlotPushError, SlotRing};
use super::waiters::{Source, Waiters};
use crate::sync::{
    AtomicBool, AtomicUsize, CachePadded, Ordering::Acquire, Ordering::Release, Ordering::SeqCst,
};

/// A bounded, lock-free, multi-producer multi-consumer FIFO queue.
///
/// Values come out in the order their pushes took effect. A full queue hands
/// the value back ([`PushError::Full`]); [`force_push`](Self::force_push)
/// displaces the oldest value instead. [`close`](Self::close) stops pushes
/// and wakes every waiting consumer, who drain what is left and then get
/// `None`.
///
/// # Progress
/// Lock-free in the strict sense: a thread stalled at any point of a `push`
/// or `pop` hides at most the one slot it holds; every other thread completes
/// its operation in a bounded number of its own steps. crossbeam's
/// `ArrayQueue`, by contrast, lets a producer stalled between claiming a slot
/// and writing it block the consumer of that slot. The algorithm is SCQ
/// (Nikolaev, DISC 2019); see `docs/queue.md`. One exception:
/// [`force_push`](Self::force_push) on a full queue.
///
/// # Concurrent calls
/// `len` is exact when no operation is in flight (one rare exception: a
/// producer that overtook a consumer still busy with the same slot one lap
/// earlier may leave it one too high until the next pop passes that
/// position). Under concurrency it is a value the queue had at some moment
/// during the call. On a closed queue it counts the filled entries, O(len). `push` can report
/// `Full` while a consumer that has taken the oldest slot has not yet
/// given it back (the slot is counted until the pop returns).
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use std::thread;
/// use unlocked::BoundedQueue;
///
/// let q = Arc::new(BoundedQueue::new(128));
/// let producer = {
///     let q = Arc::clone(&q);
///     thread::spawn(move || {
///         for i in 0..1000 {
///             let mut v = i;
///             while let Err(e) = q.push(v) {
///                 v = e.into_inner();
///                 thread::yield_now();
///             }
///         }
///         q.close();
///     })
/// };
/// let mut sum = 0u64;
/// while let Some(v) = q.pop_timeout(std::time::Duration::from_secs(10)) {
///     sum += v;
/// }
/// producer.join().unwrap();
/// assert_eq!(sum, 999 * 1000 / 2);
/// ```
pub struct BoundedQueue<T> {
    ring: SlotRing<T>,
    /// Set by `close` before the ring's CLOSED bit: lets pushes that start
    /// after `close` fail with one read-mostly load, without taking a ticket.
    closed: AtomicBool,
    /// `force_push` calls in flight. A displacement pops the oldest value,
    /// then pushes the new one even if the queue closed meanwhile; while it
    /// is in flight a closed queue may look drained when it is not, so a
    /// waiting consumer does not take "closed and empty" for final until
    /// this is zero (found in review).
    displacing: CachePadded<AtomicUsize>,
    waiters: Waiters,
}

impl<T> BoundedQueue<T> {
    /// Creates an empty queue with room for `capacity` values.
    ///
    /// # Panics
    /// If `capacity` is 0 or above [`MAX_CAPACITY`](crate::queue::MAX_CAPACITY).
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::BoundedQueue::<u32>::new(3);
    /// assert_eq!(q.capacity(), 3);
    /// assert!(q.is_empty());
    /// ```
    pub fn new(capacity: usize) -> Self {
        assert!(
            capacity >= 1,
            "BoundedQueue capacity must be at least 1 (got 0); use UnboundedQueue for no limit"
        );
        assert!(
            capacity <= super::MAX_CAPACITY,
            "BoundedQueue capacity must be at most {} (got {capacity})",
            super::MAX_CAPACITY
        );
        BoundedQueue {
            ring: SlotRing::new(capacity),
            closed: AtomicBool::new(false),
            displacing: CachePadded::new(AtomicUsize::new(0)),
            waiters: Waiters::default(),
        }
    }

    /// Appends `value` at the back.
    ///
    /// # Errors
    /// [`PushError::Full`] when the queue holds `capacity` values,
    /// [`PushError::Closed`] after [`close`](Self::close); either way the
    /// value comes back inside the error.
    ///
    /// # Examples
    /// ```
    /// use unlocked::{BoundedQueue, PushError};
    /// let q = BoundedQueue::new(1);
    /// assert_eq!(q.push(1), Ok(()));
    /// assert_eq!(q.push(2), Err(PushError::Full(2)));
    /// ```
    pub fn push(&self, value: T) -> Result<(), PushError<T>> {
        if self.closed_flag() {
            return Err(PushError::Closed(value));
        }
        match self.ring.push(value) {
            Ok(()) => {
                self.waiters.notify_one();
                Ok(())
            }
            Err(SlotPushError::Full(v)) => Err(PushError::Full(v)),
            Err(SlotPushError::Closed(v)) => Err(PushError::Closed(v)),
        }
    }

    /// Appends `value`; if the queue is full, removes the oldest value to
    /// make room and returns it as `Ok(Some(oldest))`.
    ///
    /// # Concurrent calls
    /// Displacement is two linearizable steps, not one: a pop of the oldest
    /// value, then a push of `value` into the slot it freed. Another thread
    /// can observe the state in between: for a moment the queue holds one
    /// value fewer (a `pop` on a full queue of capacity 1 may return `None`,
    /// `is_empty` may be `true`). No value is lost or duplicated: the
    /// displaced value is returned and `value` is inside when the call
    /// returns. crossbeam's `ArrayQueue::force_push` is atomic; SCQ's index
    /// indirection, which is what makes this queue lock-free, does not
    /// allow it. A consumer waiting in [`pop_timeout`](Self::pop_timeout)
    /// or [`pop_async`](Self::pop_async) on a closed queue does not take
    /// that moment for "drained": it waits for the call to finish.
    ///
    /// # Progress
    /// Not lock-free in one case: when the queue is full and every slot is
    /// held by a `push` or `pop` in flight (none is queued for it to
    /// displace), `force_push` waits, with backoff, for one of them to
    /// finish. At capacity `c` that takes `c` stalled threads, one at
    /// capacity 1 (found in review). `push` and `pop` are not affected.
    ///
    /// # Errors
    /// [`PushError::Closed`] with the value after [`close`](Self::close).
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::BoundedQueue::new(2);
    /// assert_eq!(q.force_push(1), Ok(None));
    /// assert_eq!(q.force_push(2), Ok(None));
    /// assert_eq!(q.force_push(3), Ok(Some(1)));
    /// assert_eq!(q.pop(), Some(2));
    /// assert_eq!(q.pop(), Some(3));
    /// ```
    pub fn force_push(&self, value: T) -> Result<Option<T>, PushError<T>> {
        if self.closed_flag() {
            return Err(PushError::Closed(value));
        }
        // SeqCst: before the displacement's pop, in the total order a
        // waiter's `Source::is_closed` reads it in (see `displacing`).
        self.displacing.fetch_add(1, SeqCst);
        let result = self.ring.force_push(value);
        // SeqCst: after the displacement's push; a waiter that reads zero
        // then finds the value, or is registered before `notify_every`
        // loads the waiter count (the protocol in `waiters.rs`).
        self.displacing.fetch_sub(1, SeqCst);
        match result {
            Ok(displaced) => {
                if self.closed_flag() {
                    // Waiters that saw "closed" but slept on this call must
                    // all look again: one takes the value, the others see
                    // the queue drained.
                    self.waiters.notify_every();
                } else {
                    self.waiters.notify_one();
                }
                Ok(displaced)
            }
            Err(SlotPushError::Full(v) | SlotPushError::Closed(v)) => {
                self.waiters.notify_every();
                Err(PushError::Closed(v))
            }
        }
    }

    /// Removes and returns the value at the front, or `None` if the queue is
    /// empty. Never blocks.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::BoundedQueue::new(4);
    /// q.push('a').unwrap();
    /// assert_eq!(q.pop(), Some('a'));
    /// assert_eq!(q.pop(), None);
    /// ```
    pub fn pop(&self) -> Option<T> {
        self.ring.pop()
    }

    /// Waits up to `timeout` for a value, sleeping (not spinning) meanwhile.
    ///
    /// Returns `None` on timeout, or once the queue is closed and drained.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = unlocked::BoundedQueue::<u8>::new(4);
    /// assert_eq!(q.pop_timeout(Duration::from_millis(1)), None);
    /// q.push(9).unwrap();
    /// assert_eq!(q.pop_timeout(Duration::from_secs(1)), Some(9));
    /// ```
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        self.waiters.pop_timeout(self, timeout)
    }

    /// Waits for a value on any async executor.
    ///
    /// Resolves to `None` once the queue is closed and drained. Dropping the
    /// future before it resolves loses nothing: a wakeup it received passes
    /// to another waiter. A future that was woken but is kept and never
    /// polled again holds that wakeup back from the other waiters: drop a
    /// future you stop polling. Like an `async fn`'s, it panics if polled
    /// again after it returned `Ready`.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::BoundedQueue::new(4);
    /// q.push(5).unwrap();
    /// q.close();
    /// assert_eq!(pollster::block_on(q.pop_async()), Some(5));
    /// assert_eq!(pollster::block_on(q.pop_async()), None);
    /// ```
    pub fn pop_async(&self) -> impl Future<Output = Option<T>> + '_ {
        self.waiters.pop_async(self)
    }

    /// Closes the queue: later pushes fail with [`PushError::Closed`], and
    /// every waiting consumer wakes, drains what is left, then gets `None`.
    ///
    /// A push that races `close` either fails with `Closed` or its value is
    /// in the queue for a later pop; no value is lost either way.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::BoundedQueue::new(4);
    /// q.push(1).unwrap();
    /// q.close();
    /// assert!(q.is_closed());
    /// assert!(q.push(2).is_err());
    /// assert_eq!(q.pop(), Some(1));
    /// ```
    pub fn close(&self) {
        // Release: pairs with the Acquire in `closed_flag`; the ring's own
        // SeqCst CLOSED bit is what orders racing pushes.
        self.closed.store(true, Release);
        self.ring.close();
        self.waiters.notify_all();
    }

    /// `true` once [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.ring.is_closed()
    }

    /// Checks internal invariants (fuzzing builds only); call only when no
    /// other operation is in flight.
    #[cfg(fuzzing)]
    #[doc(hidden)]
    pub fn validate(&self) {
        self.ring.validate();
    }

    fn closed_flag(&self) -> bool {
        // Acquire: pairs with the Release in `close`.
        self.closed.load(Acquire)
    }

    /// The number of values in the queue (see "Concurrent calls").
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// `true` if the queue holds no value (see "Concurrent calls").
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most values the queue holds at once.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }
}

impl<T> Source<T> for BoundedQueue<T> {
    fn try_pop(&self) -> Option<T> {
        self.pop()
    }

    /// Closed, and no displacement in flight that could still put a value
    /// in (see `displacing`).
    fn is_closed(&self) -> bool {
        // SeqCst: see `force_push`.
        BoundedQueue::is_closed(self) && self.displacing.load(SeqCst) == 0
    }
}

impl<T> fmt::Debug for BoundedQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedQueue")
            .field("len", &self.len())
            .field("capacity", &self.capacity())
            .field("closed", &self.is_closed())
            .finish()
    }
}
