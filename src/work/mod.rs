//! [`WorkQueue`]: a lock-free job queue with ids, statuses, leases, retries
//! and dead letters; the replacement for the seeds' reentrant-lock
//! `MemoryQueue`.
//!
//! - Each item is an `Arc` holding immutable data and one atomic state word
//!   (status, attempts, claim sequence). Every status change is one
//!   compare-and-swap on that word, so two workers can never both settle an
//!   item, and a worker whose lease ran out and whose item was claimed again
//!   is refused with [`WorkError::StaleClaim`].
//! - Pending order is the crate's own lock-free
//!   [`UnboundedQueue`] of items; entries whose item
//!   is no longer pending (removed, or settled by an expired claim) are
//!   skipped when popped.
//! - Ids find items through a segmented slot table that grows without a
//!   resize or a lock (`table.rs`); removed items are freed through
//!   epoch-based reclamation.
//!
//! No path takes a lock, and no operation waits for another thread's
//! operation to finish. `docs/work.md` has the state machine, the memory
//! orderings and the migration guide from `MemoryQueue`.

mod backoff;
mod builder;
mod error;
mod item;
mod table;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use backoff::RetryBackoff;
pub use builder::{WorkQueueBuilder, DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS};
pub use error::{BuildError, QueueFull, WorkError};
pub use item::{Claim, ItemId, ItemSnapshot, ItemStatus, StatusCounts, MAX_ATTEMPTS};

use crate::clock::Clock;
use crate::queue::waiters::{Source, Waiters};
use crate::queue::UnboundedQueue;
use crate::sync::epoch;
use crate::sync::{
    AtomicBool, AtomicU64, AtomicUsize, CachePadded, Ordering::Acquire, Ordering::Relaxed,
    Ordering::Release, Ordering::SeqCst,
};
use item::{raw, Item, RecordedBy, State};
use table::Table;

/// The reason recorded when [`WorkQueue::reap_expired`] takes an item back.
pub const LEASE_EXPIRED: &str = "lease expired";

/// Stripes of the `removed` count (a power of two).
const REMOVED_STRIPES: usize = 8;

/// `next_due` when no item may be waiting out a retry backoff.
const NOTHING_DUE: u64 = u64::MAX;

/// `not_before` as a `next_due` hint: a lower bound that is never the
/// [`NOTHING_DUE`] sentinel. A wait that saturated the clock ends at
/// `u64::MAX` and must still make a claim scan once the clock gets there
/// (found in review: only `reap_expired` found such an item).
fn due_hint(not_before: u64) -> u64 {
    not_before.min(NOTHING_DUE - 1)
}

/// A lease deadline that saturated the clock (a lease past its range,
/// such as `Duration::MAX`): it never runs out, also on a clock that
/// saturated too (found in review: such a lease was reaped).
const NEVER_EXPIRES: u64 = u64::MAX;

/// The shortest sleep of a waiting worker while an item backs off (see
/// `recheck_after`): at most this late for an item that becomes due.
const MIN_RECHECK: Duration = Duration::from_millis(1);

/// A lock-free work queue: producers [`add`](Self::add) items, workers
/// [`claim`](Self::claim) them under a lease and settle them with
/// [`complete`](Self::complete), [`fail`](Self::fail) or
/// [`release`](Self::release).
///
/// # Semantics
/// - `max_size` counts every stored item, whatever its status, until it is
///   [`remove`](Self::remove)d; [`add`](Self::add) past it hands the value
///   back in [`QueueFull`].
/// - A claim holds its item for the lease. [`reap_expired`](Self::reap_expired)
///   returns items whose lease ran out to pending and counts the attempt;
///   at `max_attempts` the item becomes a dead letter (status
///   [`Failed`](ItemStatus::Failed), with its last reason) until removed.
/// - A claim whose lease ran out may still settle its item as long as
///   nobody claimed it again; once someone has, it gets
///   [`WorkError::StaleClaim`]. A claim settles its item once.
/// - [`release`](Self::release) puts the item back at the tail of the
///   pending order without counting an attempt, unless its lease had run
///   out (an expired lease counts its attempt whether or not
///   `reap_expired` saw it first).
/// - With a [retry backoff](WorkQueueBuilder::retry_backoff), an item that
///   `fail`ed waits out its delay (reported as pending) before the next
///   `claim` or `reap_expired` puts it at the tail of the pending order.
///
/// # Order
/// Items come out of [`claim`](Self::claim) in the order they became
/// pending: from one producer, in the order added; across producers, in the
/// order of their `add`s' linearization points (an `add` that returned
/// before another began is claimed first). Retried, released and reaped
/// items join the tail (an item backing off, when its wait is over and a
/// `claim` or `reap_expired` notices).
///
/// # Progress
/// Lock-free: no operation takes a lock or waits for another thread's
/// operation. A thread stalled inside `fail`, `release` or `reap_expired`
/// between an item's state change and its re-queuing delays only that item.
///
/// # Bounds on `T`
/// `T: Send + Sync + 'static`. Items are shared between the threads that
/// claim, get and snapshot them (`Sync`), and a removed item is freed after
/// every thread that may still be reading it has moved on: possibly on
/// another thread (`Send`), possibly after a short delay (`'static`: it must
/// not borrow anything that could be gone by then). Dropping the queue
/// frees what is left, and what it removed, before it returns unless
/// another thread is inside an operation of some lock-free structure at
/// that moment.
///
/// ```compile_fail
/// // A borrowed item could be freed after what it borrows is gone.
/// let owner = vec![1, 2, 3];
/// let q = unlocked::WorkQueue::new();
/// q.add(&owner).unwrap();
/// ```
/// ```compile_fail
/// // A `!Send` item could be freed on another thread.
/// let q = unlocked::WorkQueue::new();
/// q.add(std::rc::Rc::new(1)).unwrap();
/// ```
///
/// # Concurrent calls
/// [`len`](Self::len), [`counts`](Self::counts) and
/// [`snapshot`](Self::snapshot) are exact whenever no operation is in
/// flight; during concurrent operations they are weakly consistent (each
/// item is read at some moment during the call). An item's `last_error`
/// is written just after its status changes, so a concurrent reader may see
/// the new status with the previous reason for a moment.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use std::thread;
/// use unlocked::WorkQueue;
///
/// let q = Arc::new(WorkQueue::new());
/// for job in 0..100u64 {
///     q.add(job).unwrap();
/// }
/// let workers: Vec<_> = (0..2)
///     .map(|_| {
///         let q = Arc::clone(&q);
///         thread::spawn(move || {
///             let mut sum = 0;
///             while let Some(claim) = q.claim() {
///                 sum += *claim.data();
///                 q.complete(&claim).unwrap();
///             }
///             sum
///         })
///     })
///     .collect();
/// let total: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
/// assert_eq!(total, (0..100u64).sum::<u64>());
/// assert_eq!(q.counts().completed, 100);
/// ```
pub struct WorkQueue<T> {
    table: Table<T>,
    /// Ids of the items that became pending, oldest first. Ids, not the
    /// items: a removed item's entry then holds nothing of it (its data is
    /// dropped as soon as it is removed), and a claim skips the entry when
    /// the table no longer has the id (found in review: entries that held
    /// the item kept every removed item alive until a claim came by).
    pending: UnboundedQueue<ItemId>,
    /// Items added so far; each add's number orders `snapshot`.
    added: CachePadded<AtomicU64>,
    /// Items removed so far, striped by thread so that workers that each
    /// remove do not share one line (unbounded queues: `len` is `added`
    /// less their sum).
    removed: [CachePadded<AtomicU64>; REMOVED_STRIPES],
    /// Bounded queues: stored items, reserved before insert and released
    /// after unlink, so that it never undercounts: the bound is strict.
    reserved: CachePadded<AtomicUsize>,
    max_size: Option<usize>,
    max_attempts: u32,
    lease: Duration,
    retry_backoff: RetryBackoff,
    /// Clock nanoseconds at or after which some item backing off may be
    /// due ([`NOTHING_DUE`]: none). Never above the `not_before` of an item
    /// backing off, except while a promotion scan that took it runs (see
    /// `promote_due`).
    next_due: CachePadded<AtomicU64>,
    clock: Arc<dyn Clock>,
    closed: AtomicBool,
    waiters: Waiters,
    /// This queue's process-unique number, carried by its claims: a claim
    /// of another queue is refused ([`WorkError::WrongQueue`]).
    id: u64,
}

impl<T: Send + Sync + 'static> Default for WorkQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send + Sync + 'static> WorkQueue<T> {
    /// An unbounded queue with a [`DEFAULT_LEASE`] lease,
    /// [`DEFAULT_MAX_ATTEMPTS`] attempts and the system clock.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::<String>::new();
    /// assert!(q.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::from_builder(WorkQueueBuilder::new())
    }

    /// Settings beyond the defaults; see [`WorkQueueBuilder`].
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::<u32>::builder().max_size(100).build().unwrap();
    /// assert_eq!(q.max_size(), Some(100));
    /// ```
    pub fn builder() -> WorkQueueBuilder<T> {
        WorkQueueBuilder::new()
    }

    pub(crate) fn from_builder(b: WorkQueueBuilder<T>) -> Self {
        WorkQueue {
            table: Table::new(),
            pending: UnboundedQueue::with_segment_capacity(if cfg!(unlocked_loom) {
                2
            } else {
                256
            }),
            added: CachePadded::new(AtomicU64::new(0)),
            removed: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
            reserved: CachePadded::new(AtomicUsize::new(0)),
            max_size: b.max_size,
            max_attempts: b.max_attempts,
            lease: b.lease,
            retry_backoff: b.retry_backoff,
            next_due: CachePadded::new(AtomicU64::new(NOTHING_DUE)),
            clock: b.clock,
            closed: AtomicBool::new(false),
            waiters: Waiters::default(),
            id: crate::sync::unique_id(),
        }
    }

    /// The `max_size` setting (`None`: unbounded).
    ///
    /// # Examples
    /// ```
    /// assert_eq!(unlocked::WorkQueue::<u8>::new().max_size(), None);
    /// ```
    pub fn max_size(&self) -> Option<usize> {
        self.max_size
    }

    /// The `max_attempts` setting.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(unlocked::WorkQueue::<u8>::new().max_attempts(), unlocked::work::DEFAULT_MAX_ATTEMPTS);
    /// ```
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The lease each claim gets.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(unlocked::WorkQueue::<u8>::new().lease(), unlocked::work::DEFAULT_LEASE);
    /// ```
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The retry backoff setting.
    ///
    /// # Examples
    /// ```
    /// assert!(unlocked::WorkQueue::<u8>::new().retry_backoff().is_none());
    /// ```
    pub fn retry_backoff(&self) -> RetryBackoff {
        self.retry_backoff
    }

    fn now(&self) -> u64 {
        self.clock.now_nanos()
    }

    /// Adds an item at the tail of the pending order and returns its id.
    ///
    /// # Errors
    /// [`QueueFull`] with the value inside when `max_size` items are stored.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// let id = q.add("send email").unwrap();
    /// assert_eq!(*q.get(id).unwrap().data(), "send email");
    /// ```
    pub fn add(&self, data: T) -> Result<ItemId, QueueFull<T>> {
        // Pinned before anything changes: a pin may run deferred drops of
        // user values (crossbeam-epoch collects in a thread's first pin),
        // and one that panics must find nothing half-done. The pins nested
        // under this one (the push) do not collect.
        let _guard = epoch::pin();
        if !self.reserve() {
            return Err(QueueFull(data));
        }
        // Relaxed: a number for `snapshot`'s order, published with the item.
        let seq = self.added.fetch_add(1, Relaxed);
        let item = self.table.insert(|id| Arc::new(Item::new(id, data, seq)));
        let id = item.id;
        self.enqueue(&item);
        Ok(id)
    }

    /// Bounded queues: counts one more stored item, unless that would pass
    /// `max_size`. Unbounded queues count nothing here.
    fn reserve(&self) -> bool {
        match self.max_size {
            None => true,
            // Relaxed: the count guards no data, only the bound; a reserve
            // and the release after an unlink are both read-modify-writes,
            // so the count itself is exact.
            Some(max) => self
                .reserved
                .fetch_update(Relaxed, Relaxed, |n| (n < max).then_some(n + 1))
                .is_ok(),
        }
    }

    /// Puts a pending item at the tail and wakes one waiting worker.
    fn enqueue(&self, item: &Item<T>) {
        if self.pending.push(item.id).is_err() {
            unreachable!("the pending order is never closed");
        }
        // The push is a SeqCst publish, as the waiter protocol requires.
        self.waiters.notify_one();
    }

    /// Claims the oldest pending item: it becomes processing, under a lease
    /// from now. `None` if nothing is pending. Never blocks. With a retry
    /// backoff, it first puts the items whose wait is over at the tail of
    /// the pending order (a scan of the stored items, done by one claim
    /// each time one becomes due).
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// assert!(q.claim().is_none());
    /// q.add(1).unwrap();
    /// q.add(2).unwrap();
    /// assert_eq!(*q.claim().unwrap().data(), 1);
    /// ```
    pub fn claim(&self) -> Option<Claim<T>> {
        // Pinned first, and the clock read before an entry is popped: a
        // deferred drop run by a pin, or a user clock, that panics must not
        // find an entry popped or an item claimed with no `Claim` returned.
        let guard = epoch::pin();
        let now = self.now();
        self.promote_due(now);
        while let Some(id) = self.pending.pop() {
            // A removed item's entry (its id is gone from the table) is
            // skipped, like one whose item is no longer pending.
            let Some(item) = self.table.get(id, &guard) else {
                continue;
            };
            if let Some(claim) = self.try_claim(item, now) {
                return Some(claim);
            }
        }
        None
    }

    /// Claims `item` if it is still pending (an entry may be stale).
    fn try_claim(&self, item: Arc<Item<T>>, now: u64) -> Option<Claim<T>> {
        let deadline = now.saturating_add(self.lease_nanos());
        let mut state = item.state();
        loop {
            if !matches!(state.status(), raw::PENDING | raw::PENDING_EXPIRED) {
                return None;
            }
            // Relaxed: the CAS below (Release) publishes it with the new
            // state. `fetch_max`, not a store: a would-be claimer that lost
            // the race can only lengthen the winner's lease, never shorten
            // it with an older reading of the clock.
            let previous = item.deadline.fetch_max(deadline, Relaxed);
            let attempts = state.attempts() + 1;
            let new = State::new(raw::PROCESSING, attempts, state.seq().wrapping_add(1));
            match item.cas(state, new) {
                Ok(()) => {
                    return Some(Claim {
                        queue: self.id,
                        last_error: item.last_error_before_claim(new.seq()),
                        item,
                        seq: new.seq(),
                        attempts,
                        deadline: Duration::from_nanos(previous.max(deadline)),
                        settled: AtomicBool::new(false),
                    })
                }
                Err(actual) => state = actual,
            }
        }
    }

    fn lease_nanos(&self) -> u64 {
        u64::try_from(self.lease.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Waits up to `timeout` for a pending item, sleeping (not spinning).
    /// `None` on timeout, or once the queue is [`close`](Self::close)d and
    /// nothing is claimable: after a close it does not wait for items
    /// still backing off (they stay stored, counted as pending, for a later
    /// `claim`). While an item is backing off it also wakes when
    /// the wait should be over, by the real time elapsed (the queue's clock
    /// converted one to one), and checks again: with the system clock that
    /// is the moment the item is due (or a millisecond after it at most: it
    /// sleeps at least that long between checks, so a clock slower than
    /// real time never makes it spin). A [`ManualClock`](crate::ManualClock)
    /// does not move by itself; a [`reap_expired`](Self::reap_expired) or
    /// [`claim`](Self::claim) after moving it wakes the waiter.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = unlocked::WorkQueue::new();
    /// q.add(5).unwrap();
    /// assert_eq!(*q.claim_timeout(Duration::from_secs(1)).unwrap().data(), 5);
    /// assert!(q.claim_timeout(Duration::from_millis(1)).is_none());
    /// ```
    pub fn claim_timeout(&self, timeout: Duration) -> Option<Claim<T>> {
        self.waiters.pop_timeout(self, timeout)
    }

    /// Waits for a pending item on any async executor; `None` once the
    /// queue is closed and nothing is claimable (items still backing off
    /// stay stored, as for [`claim_timeout`](Self::claim_timeout)).
    /// Dropping the future loses nothing. A future that was woken but is
    /// kept and never polled again holds that wakeup back from the other
    /// waiters: drop a future you stop polling. Like an `async fn`'s, it
    /// panics if polled again after it returned `Ready`.
    ///
    /// It has no timer (it works on any executor): an item whose retry
    /// backoff is over wakes it when some call puts the item back in the
    /// pending order: [`reap_expired`](Self::reap_expired), which a service
    /// runs on a timer anyway for leases, or any [`claim`](Self::claim) or
    /// [`claim_timeout`](Self::claim_timeout). With a retry backoff and
    /// only async workers, run `reap_expired` at least as often as the
    /// delay you can accept past an item's due time.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// q.add("job").unwrap();
    /// let claim = pollster::block_on(q.claim_async()).unwrap();
    /// assert_eq!(*claim.data(), "job");
    /// ```
    pub fn claim_async(&self) -> impl Future<Output = Option<Claim<T>>> + '_ {
        self.waiters.pop_async(self)
    }

    /// Tells waiting workers to stop: every [`claim_timeout`](Self::claim_timeout)
    /// and [`claim_async`](Self::claim_async) wakes, takes what is still
    /// claimable, then returns `None` instead of waiting (an item still
    /// waiting out a retry backoff is not waited for: it stays stored, and
    /// a `claim` once it is due takes it). Everything else
    /// (including `add` and `claim`) keeps working: closing is a shutdown
    /// signal for workers, not a barrier for producers.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = unlocked::WorkQueue::<u8>::new();
    /// q.close();
    /// assert!(q.is_closed());
    /// assert!(q.claim_timeout(Duration::from_secs(60)).is_none());
    /// ```
    pub fn close(&self) {
        // Release: pairs with the Acquire in `is_closed`.
        self.closed.store(true, Release);
        self.waiters.notify_all();
    }

    /// `true` once [`close`](Self::close) has been called.
    ///
    /// # Examples
    /// ```
    /// assert!(!unlocked::WorkQueue::<u8>::new().is_closed());
    /// ```
    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release in `close`.
        self.closed.load(Acquire)
    }

    /// Marks the claimed item completed.
    ///
    /// # Errors
    /// [`WorkError::StaleClaim`] if the lease ran out and the item was
    /// claimed again; [`WorkError::AlreadyFinished`] if this claim already
    /// settled it; [`WorkError::Removed`] if it was removed;
    /// [`WorkError::WrongQueue`] if another queue issued the claim.
    ///
    /// # Examples
    /// ```
    /// use unlocked::{ItemStatus, WorkQueue};
    /// let q = WorkQueue::new();
    /// let id = q.add(1).unwrap();
    /// let claim = q.claim().unwrap();
    /// q.complete(&claim).unwrap();
    /// assert_eq!(q.get(id).unwrap().status(), ItemStatus::Completed);
    /// ```
    pub fn complete(&self, claim: &Claim<T>) -> Result<(), WorkError> {
        self.settle(claim, |s| s.with(raw::COMPLETED, s.attempts()))
            .map(|_| ())
    }

    /// Records a failed attempt with its `reason`. The item goes back to
    /// the tail of the pending order, or, if this was attempt number
    /// `max_attempts`, becomes a dead letter. Returns the new status.
    ///
    /// With a [retry backoff](WorkQueueBuilder::retry_backoff) the item
    /// first waits its delay, measured from now; meanwhile it reports
    /// [`Pending`](ItemStatus::Pending) (with
    /// [`retry_at`](ItemSnapshot::retry_at)), and this returns `Pending`.
    /// A claim whose lease ran out (reaped or not: it already waited a
    /// lease) does not add a delay.
    ///
    /// # Errors
    /// As for [`complete`](Self::complete).
    ///
    /// # Examples
    /// ```
    /// use unlocked::{ItemStatus, WorkQueue};
    /// let q = WorkQueue::builder().max_attempts(2).build().unwrap();
    /// q.add("flaky").unwrap();
    /// let c = q.claim().unwrap();
    /// assert_eq!(q.fail(&c, "timeout"), Ok(ItemStatus::Pending));
    /// let c = q.claim().unwrap();
    /// assert_eq!(q.fail(&c, "timeout again"), Ok(ItemStatus::Failed));
    /// ```
    pub fn fail(
        &self,
        claim: &Claim<T>,
        reason: impl Into<Arc<str>>,
    ) -> Result<ItemStatus, WorkError> {
        // User code (the conversion) and the pin, which may run deferred
        // drops, come before the state changes (see `add`).
        let reason: Arc<str> = reason.into();
        // The clock only with a backoff (the one thing it decides).
        let now = (!self.retry_backoff.is_none()).then(|| self.now());
        let _guard = epoch::pin();
        let max = self.max_attempts;
        let not_before = now
            .filter(|_| claim.attempts < max)
            .and_then(|now| self.not_before(claim.attempts, now));
        // Set by the transition that chose to wait (it may run again if
        // the compare-and-swap loses a race).
        let mut waits = None;
        let old = self.settle(claim, |s| {
            waits = None;
            match s.status() {
                raw::PROCESSING if s.attempts() >= max => s.with(raw::FAILED, s.attempts()),
                // A lease that ran out, reaped or not, already waited a
                // lease: no delay, so the outcome does not depend on
                // whether the reaper came first (found in review).
                raw::PROCESSING if not_before.is_some() && !self.lease_over(claim, now) => {
                    // Relaxed: the CAS that follows (Release) publishes it
                    // with the DELAYED state. `fetch_max`, not a store: a
                    // claim that is refused after this can only lengthen
                    // the wait, never shorten it.
                    let nb = not_before.unwrap_or_default();
                    claim.item.not_before.fetch_max(nb, Relaxed);
                    waits = not_before;
                    s.with(raw::DELAYED, s.attempts())
                }
                raw::PROCESSING | raw::PENDING_EXPIRED => s.with(raw::PENDING, s.attempts()),
                _ => s.with(raw::FAILED, s.attempts()),
            }
        })?;
        claim
            .item
            .set_last_error(claim.seq, RecordedBy::Claim, reason);
        let retry = old.status() == raw::PROCESSING && old.attempts() < max;
        match waits {
            Some(nb) if retry => self.delayed(nb),
            _ if retry => self.enqueue(&claim.item),
            _ => {}
        }
        let pending = retry || old.status() == raw::PENDING_EXPIRED;
        Ok(if pending {
            ItemStatus::Pending
        } else {
            ItemStatus::Failed
        })
    }

    /// Gives the claimed item back, to the tail of the pending order,
    /// without counting an attempt (after an expired lease, the attempt
    /// already counted and stays counted, reaped or not: at `max_attempts`
    /// the item is then a dead letter, as `reap_expired` would make it).
    ///
    /// # Errors
    /// As for [`complete`](Self::complete).
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// q.add(1).unwrap();
    /// let c = q.claim().unwrap();
    /// q.release(&c).unwrap();
    /// assert_eq!(q.claim().unwrap().attempts(), 1);
    /// ```
    pub fn release(&self, claim: &Claim<T>) -> Result<(), WorkError> {
        // The clock (user code) is read, and the pin taken, before the
        // state changes (see `add`).
        let now = self.now();
        let _guard = epoch::pin();
        let max = self.max_attempts;
        // A lease that ran out counts its attempt whether or not a reaper
        // got there first: release it as `reap_expired` then `release`
        // would (found in review: the attempt was given back).
        let mut expired = false;
        let old = self.settle(claim, |s| match s.status() {
            raw::PROCESSING => {
                // Relaxed: as in `reap_one` (`s` was read with Acquire).
                let deadline = claim.item.deadline.load(Relaxed);
                expired = deadline <= now && deadline != NEVER_EXPIRES;
                match (expired, s.attempts() >= max) {
                    (false, _) => s.with(raw::PENDING, s.attempts() - 1),
                    (true, false) => s.with(raw::PENDING, s.attempts()),
                    (true, true) => s.with(raw::FAILED, s.attempts()),
                }
            }
            raw::PENDING_EXPIRED => s.with(raw::PENDING, s.attempts()),
            _ => s.with(raw::FAILED, s.attempts()),
        })?;
        if old.status() == raw::PROCESSING {
            if expired {
                claim
                    .item
                    .set_last_error(claim.seq, RecordedBy::Reaper, Arc::from(LEASE_EXPIRED));
            }
            if !(expired && old.attempts() >= max) {
                self.enqueue(&claim.item);
            }
        }
        Ok(())
    }

    /// When an item that failed attempt number `attempts` at `now` may be
    /// claimed again; `None` without a retry backoff.
    fn not_before(&self, attempts: u32, now: u64) -> Option<u64> {
        if self.retry_backoff.is_none() {
            return None;
        }
        let delay = self.retry_backoff.delay_nanos(attempts);
        Some(now.saturating_add(delay))
    }

    /// Whether the lease of `claim`'s item (which it holds, PROCESSING) ran
    /// out by `now` (`None`: the clock was not read, so not known to be).
    fn lease_over(&self, claim: &Claim<T>, now: Option<u64>) -> bool {
        // Relaxed: as in `reap_one` (the state was read with Acquire).
        let deadline = claim.item.deadline.load(Relaxed);
        now.is_some_and(|now| deadline <= now && deadline != NEVER_EXPIRES)
    }

    /// An item just became DELAYED until `not_before`: lowers `next_due`
    /// and wakes every waiting worker, so that each sleeps until then at
    /// most. Every one, not one: the one woken might time out first, or be
    /// a `claim_async` (no timer), and drop the news (found in review).
    fn delayed(&self, not_before: u64) {
        // SeqCst: (1) Release, so that a promotion scan that takes
        // `next_due` with Acquire from this RMW's release sequence sees the
        // item DELAYED (the CAS before this); (2) the producer half of the
        // waiter protocol (`queue/waiters.rs`), with `recheck_after`'s
        // SeqCst load as the consumer half: either that load sees this
        // time, or `notify_every` below sees the waiter.
        self.next_due.fetch_min(due_hint(not_before), SeqCst);
        self.waiters.notify_every();
    }

    /// Puts every item whose retry backoff is over at the tail of the
    /// pending order, if `next_due` says one may be due. One thread takes
    /// the job by swapping `next_due` to [`NOTHING_DUE`]; its scan lowers
    /// it again for each item still waiting. An item that became DELAYED
    /// before the take is seen by the scan (the take reads the release
    /// sequence of its `delayed`); one delayed after it lowers `next_due`
    /// itself. A thread stalled in its scan leaves the items it has not
    /// reached to the next `reap_expired`.
    fn promote_due(&self, now: u64) {
        // Relaxed: a hint; the compare-and-swap below decides.
        let mut due = self.next_due.load(Relaxed);
        if due == NOTHING_DUE {
            return;
        }
        while due <= now {
            // Acquire: synchronises with the `delayed` whose value (or a
            // later RMW in its release sequence) it reads, so the scan sees
            // that item DELAYED. Relaxed on failure: we only retry or stop.
            match self
                .next_due
                .compare_exchange_weak(due, NOTHING_DUE, Acquire, Relaxed)
            {
                Ok(_) => {
                    let guard = epoch::pin();
                    let mut waiting = false;
                    self.table.for_each(&guard, |item, _| {
                        waiting |= self.promote_one(item, now);
                    });
                    self.after_scan(waiting);
                    return;
                }
                Err(actual) => due = actual,
            }
        }
    }

    /// Puts `item` in the pending order if it is DELAYED and due at `now`;
    /// returns `true` if it is DELAYED and not due yet (then `next_due` was
    /// lowered to its time).
    fn promote_one(&self, item: &Arc<Item<T>>, now: u64) -> bool {
        let state = item.state();
        if state.status() != raw::DELAYED {
            return false;
        }
        // Relaxed: `state` was read with Acquire from the CAS to DELAYED,
        // which the `fetch_max` of `not_before` precedes.
        let not_before = item.not_before.load(Relaxed);
        if not_before > now {
            // SeqCst: as in `delayed` (the waiter protocol: `after_scan`
            // notifies).
            self.next_due.fetch_min(due_hint(not_before), SeqCst);
            return true;
        }
        // A failed CAS means the item was removed or promoted by another
        // scan (a DELAYED item changes no other way).
        if item
            .cas(state, state.with(raw::PENDING, state.attempts()))
            .is_ok()
        {
            self.enqueue(item);
        }
        false
    }

    /// After a scan that left items waiting: workers may have gone to sleep
    /// while `next_due` read [`NOTHING_DUE`]; wake them to read it again
    /// (every one, as in `delayed`).
    fn after_scan(&self, waiting: bool) {
        if waiting {
            self.waiters.notify_every();
        }
    }

    /// Moves the claim's item to `next(state)` by compare-and-swap, if the
    /// claim still holds it; returns the state it replaced.
    fn settle(
        &self,
        claim: &Claim<T>,
        mut next: impl FnMut(State) -> State,
    ) -> Result<State, WorkError> {
        // A claim of another queue: its item is not in this queue's table
        // or pending order, and settling it here would strand it there
        // (found in review: `fail` put it in this queue's pending order).
        if claim.queue != self.id {
            return Err(WorkError::WrongQueue);
        }
        let item = &claim.item;
        let mut state = item.state();
        loop {
            if state.status() == raw::REMOVED {
                return Err(WorkError::Removed);
            }
            // Acquire: pairs with the Release below (the same claim used
            // from another thread after it settled).
            if claim.settled.load(Acquire) {
                // This claim settled the item already; a later claim may
                // hold it now, but that does not make this one stale.
                return Err(WorkError::AlreadyFinished);
            }
            if state.seq() != claim.seq {
                return Err(WorkError::StaleClaim);
            }
            if !matches!(
                state.status(),
                raw::PROCESSING | raw::PENDING_EXPIRED | raw::FAILED_EXPIRED
            ) {
                return Err(WorkError::AlreadyFinished);
            }
            match item.cas(state, next(state)) {
                Ok(()) => {
                    // Release: see the Acquire above.
                    claim.settled.store(true, Release);
                    return Ok(state);
                }
                Err(actual) => state = actual,
            }
        }
    }

    /// Takes back every item whose lease has run out: it counts the
    /// attempt, records [`LEASE_EXPIRED`] as the reason, and puts the item
    /// back to pending, or makes it a dead letter at `max_attempts`.
    /// Returns how many items it took back. Call it periodically (a job
    /// that kills its worker can then never loop forever). The items one
    /// call takes back join the tail of the pending order in slot order
    /// (unspecified, but deterministic for one history).
    ///
    /// With a [retry backoff](WorkQueueBuilder::retry_backoff) the same pass
    /// also puts every item whose wait is over at the tail of the pending
    /// order (in the same slot order, not counted in the result).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use unlocked::{ManualClock, WorkQueue};
    ///
    /// let clock = ManualClock::new();
    /// let q = WorkQueue::builder().lease(Duration::from_secs(10)).clock(clock.clone()).build().unwrap();
    /// q.add("job").unwrap();
    /// let lost = q.claim().unwrap();
    /// assert_eq!(q.reap_expired(), 0);
    /// clock.advance(Duration::from_secs(10));
    /// assert_eq!(q.reap_expired(), 1);
    /// let again = q.claim().unwrap();
    /// assert_eq!(again.attempts(), 2);
    /// assert!(q.complete(&lost).is_err()); // stale: someone else holds it
    /// ```
    pub fn reap_expired(&self) -> usize {
        let now = self.now();
        // Pinned before the promotion job is taken (see `add`).
        let guard = epoch::pin();
        let backoff = !self.retry_backoff.is_none();
        if backoff {
            // Acquire: takes the promotion job as in `promote_due`; this pass
            // visits every item, due or not, and lowers it again.
            self.next_due.swap(NOTHING_DUE, Acquire);
        }
        let mut reaped = 0;
        let mut waiting = false;
        self.table.for_each(&guard, |item, _| {
            if self.reap_one(item, now) {
                reaped += 1;
            } else if backoff {
                waiting |= self.promote_one(item, now);
            }
        });
        self.after_scan(waiting);
        reaped
    }

    /// Takes `item` back if it is processing with a lease over at `now`.
    fn reap_one(&self, item: &Arc<Item<T>>, now: u64) -> bool {
        let mut state = item.state();
        while state.status() == raw::PROCESSING {
            // Relaxed: `state` was read with Acquire from (the release
            // sequence of) the claiming CAS, which the claim's `fetch_max`
            // precedes; so this reads that deadline or a later one.
            let deadline = item.deadline.load(Relaxed);
            if deadline > now || deadline == NEVER_EXPIRES {
                return false;
            }
            let dead = state.attempts() >= self.max_attempts;
            let status = if dead {
                raw::FAILED_EXPIRED
            } else {
                raw::PENDING_EXPIRED
            };
            match item.cas(state, state.with(status, state.attempts())) {
                Ok(()) => {
                    item.set_last_error(state.seq(), RecordedBy::Reaper, Arc::from(LEASE_EXPIRED));
                    if !dead {
                        self.enqueue(item);
                    }
                    return true;
                }
                Err(actual) => state = actual,
            }
        }
        false
    }

    /// The item stored under `id`, as it is now; `None` if there is none
    /// (never added, or removed).
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// let id = q.add('x').unwrap();
    /// assert_eq!(*q.get(id).unwrap().data(), 'x');
    /// q.remove(id);
    /// assert!(q.get(id).is_none());
    /// ```
    pub fn get(&self, id: ItemId) -> Option<ItemSnapshot<T>> {
        let guard = epoch::pin();
        let item = self.table.get(id, &guard)?;
        let state = item.state();
        ItemSnapshot::of(item, state, &guard)
    }

    /// Removes the item stored under `id`, whatever its status, and
    /// returns it as it was; `None` if there is none. A claim on a removed
    /// item gets [`WorkError::Removed`]. The item's data is dropped once
    /// the last snapshot or claim sharing it is gone; a removed item that
    /// was pending also stays behind its entry in the pending order until a
    /// claim skips it (or the queue is dropped).
    ///
    /// # Examples
    /// ```
    /// use unlocked::{WorkError, WorkQueue};
    /// let q = WorkQueue::new();
    /// let id = q.add(1).unwrap();
    /// let claim = q.claim().unwrap();
    /// assert_eq!(*q.remove(id).unwrap().data(), 1);
    /// assert_eq!(q.complete(&claim), Err(WorkError::Removed));
    /// assert!(q.remove(id).is_none());
    /// ```
    pub fn remove(&self, id: ItemId) -> Option<ItemSnapshot<T>> {
        let guard = epoch::pin();
        let item = self.table.get(id, &guard)?;
        let mut state = item.state();
        loop {
            if state.status() == raw::REMOVED {
                return None;
            }
            match item.cas(state, state.with(raw::REMOVED, state.attempts())) {
                Ok(()) => break,
                Err(actual) => state = actual,
            }
        }
        self.table.unlink(&item, &guard);
        if self.max_size.is_some() {
            // Relaxed: see `reserve`; the slot is already unlinked.
            self.reserved.fetch_sub(1, Relaxed);
        } else {
            // Relaxed: a count read on its own (see `len`).
            self.removed[crate::sync::thread_index() & (REMOVED_STRIPES - 1)].fetch_add(1, Relaxed);
        }
        ItemSnapshot::of(item, state, &guard)
    }

    /// How many items are stored, whatever their status.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// q.add(1).unwrap();
    /// assert_eq!(q.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        match self.max_size {
            // Relaxed: a count read on its own.
            Some(_) => self.reserved.load(Relaxed),
            None => {
                // Relaxed: counts read on their own; during concurrent
                // calls the difference is weakly consistent (never negative).
                let removed: u64 = self.removed.iter().map(|r| r.load(Relaxed)).sum();
                let added = self.added.load(Relaxed);
                added.saturating_sub(removed) as usize
            }
        }
    }

    /// `true` if no item is stored.
    ///
    /// # Examples
    /// ```
    /// assert!(unlocked::WorkQueue::<u8>::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many stored items are in each status. Computed by a scan of the
    /// stored items (O(stored items)), which keeps every other operation
    /// free of shared counters; exact whenever no operation is in flight.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// q.add(1).unwrap();
    /// q.add(2).unwrap();
    /// let c = q.claim().unwrap();
    /// q.complete(&c).unwrap();
    /// let counts = q.counts();
    /// assert_eq!((counts.pending, counts.completed), (1, 1));
    /// ```
    pub fn counts(&self) -> StatusCounts {
        let mut counts = StatusCounts::default();
        let guard = epoch::pin();
        self.table.for_each(&guard, |item, _| {
            if let Some(status) = item.state().public() {
                counts.add(status);
            }
        });
        counts
    }

    /// Every stored item, each as it was when read, in the order they were
    /// added (the order of their `add`s' numbering, which agrees with the
    /// order of `add`s that did not overlap). The vector is owned: nothing in
    /// the queue is held while the caller iterates.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// q.add("a").unwrap();
    /// q.add("b").unwrap();
    /// let all: Vec<_> = q.snapshot().iter().map(|s| *s.data()).collect();
    /// assert_eq!(all.len(), 2);
    /// ```
    pub fn snapshot(&self) -> Vec<ItemSnapshot<T>> {
        let mut all = Vec::new();
        {
            // Pinned for the walk only, not for the sort below.
            let guard = epoch::pin();
            self.table.for_each(&guard, |item, guard| {
                if let Some(s) = ItemSnapshot::of(Arc::clone(item), item.state(), guard) {
                    all.push(s);
                }
            });
        }
        all.sort_by_key(|s| s.item.seq);
        all
    }
}

impl<T: Send + Sync + 'static> Source<Claim<T>> for WorkQueue<T> {
    fn try_pop(&self) -> Option<Claim<T>> {
        self.claim()
    }

    fn is_closed(&self) -> bool {
        WorkQueue::is_closed(self)
    }

    fn recheck_after(&self) -> Option<Duration> {
        // SeqCst: the consumer half of the waiter protocol in `delayed`.
        let due = self.next_due.load(SeqCst);
        (due != NOTHING_DUE).then(|| match due.saturating_sub(self.now()) {
            0 => Duration::ZERO,
            // Not due yet: sleep at least `MIN_RECHECK`. A clock slower
            // than real time (a `ManualClock` nobody moves, a coarse one)
            // would otherwise wake the waiter every `due - now` of real
            // time, nanoseconds apart: a spin (found in review: 6,931
            // clock reads in a 200 ms `claim_timeout`).
            left => Duration::from_nanos(left).max(MIN_RECHECK),
        })
    }
}

impl<T> Drop for WorkQueue<T> {
    fn drop(&mut self) {
        // Removed items wait in the epoch collector; free them now (the
        // stored ones go with the table), unless another thread is pinned
        // (or, still alive, retired some itself: docs/cache.md, "Reclamation").
        // Every item added is retired at most once, plus one error record
        // per failure at most: `added` bounds them well enough.
        // Relaxed: `&mut self`, nothing in flight.
        crate::sync::epoch::collect_garbage(self.added.load(Relaxed));
    }
}

impl<T: Send + Sync + 'static> fmt::Debug for WorkQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkQueue")
            .field("len", &self.len())
            .field("max_size", &self.max_size)
            .field("max_attempts", &self.max_attempts)
            .field("lease", &self.lease)
            .field("retry_backoff", &self.retry_backoff)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    fn queue(max_attempts: u32) -> (WorkQueue<u32>, ManualClock) {
        let clock = ManualClock::new();
        let q = WorkQueue::builder()
            .max_attempts(max_attempts)
            .lease(Duration::from_secs(1))
            .clock(clock.clone())
            .build()
            .unwrap();
        (q, clock)
    }

    #[test]
    fn expired_claim_may_settle_until_reclaimed() {
        let (q, clock) = queue(3);
        let id = q.add(1).unwrap();
        let c = q.claim().unwrap();
        clock.advance(Duration::from_secs(1));
        assert_eq!(q.reap_expired(), 1);
        assert_eq!(q.get(id).unwrap().status(), ItemStatus::Pending);
        q.complete(&c).unwrap();
        assert_eq!(q.get(id).unwrap().status(), ItemStatus::Completed);
        // The stale pending entry is skipped.
        assert!(q.claim().is_none());
    }

    #[test]
    fn expired_dead_letter_can_still_be_completed_by_its_claim() {
        let (q, clock) = queue(1);
        let id = q.add(1).unwrap();
        let c = q.claim().unwrap();
        clock.advance(Duration::from_secs(2));
        assert_eq!(q.reap_expired(), 1);
        let snap = q.get(id).unwrap();
        assert_eq!(snap.status(), ItemStatus::Failed);
        assert_eq!(snap.last_error().as_deref(), Some(LEASE_EXPIRED));
        q.complete(&c).unwrap();
        assert_eq!(q.counts().completed, 1);
    }

    #[test]
    fn late_error_never_overwrites_a_newer_one() {
        let (q, _clock) = queue(5);
        let id = q.add(1).unwrap();
        let c1 = q.claim().unwrap();
        q.fail(&c1, "first").unwrap();
        let c2 = q.claim().unwrap();
        q.fail(&c2, "second").unwrap();
        let item = q.table.get(id, &epoch::pin()).unwrap();
        item.set_last_error(c1.seq, RecordedBy::Claim, Arc::from("late first"));
        assert_eq!(q.get(id).unwrap().last_error().as_deref(), Some("second"));
    }

    /// A reaper preempted between its state change and its record must not
    /// overwrite the reason of the claim's `fail`, accepted after the reap
    /// (found in review: the dead letter said "lease expired" for good).
    #[test]
    fn a_late_reaper_record_never_overwrites_the_claims_own_reason() {
        let (q, clock) = queue(1);
        let id = q.add(1).unwrap();
        let c = q.claim().unwrap();
        clock.advance(Duration::from_secs(2));
        assert_eq!(q.reap_expired(), 1);
        assert_eq!(q.fail(&c, "worker reason"), Ok(ItemStatus::Failed));
        // The reaper's record of the same claim lands last.
        let item = q.table.get(id, &epoch::pin()).unwrap();
        item.set_last_error(c.seq, RecordedBy::Reaper, Arc::from(LEASE_EXPIRED));
        assert_eq!(
            q.get(id).unwrap().last_error().as_deref(),
            Some("worker reason")
        );
    }
}
