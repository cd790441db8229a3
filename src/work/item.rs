//! One stored item: immutable data beside one atomic state word, and the
//! public views of it ([`Claim`], [`ItemSnapshot`]).
//!
//! The state word packs `status` (3 bits), `attempts` (29 bits) and `seq`
//! (32 bits, the number of claims so far). Every change of status is a
//! compare-and-swap of the whole word, so a claim identified by its `seq`
//! can only settle the item while no later claim exists: that is how a
//! stale claim is refused.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::sync::epoch::{self, Guard};
use crate::sync::{
    AtomicBool, AtomicPtr, AtomicU64, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed,
};

/// Raw statuses kept in the state word. The two `*_EXPIRED` variants are
/// reported as `Pending` / `Failed` but remember that the last claim's
/// lease ran out with nobody claiming since: that claim may still settle
/// the item (DESIGN: "a complete after the lease ran out is accepted if
/// nobody re-claimed the item"). `DELAYED` is a failed item waiting out its
/// retry backoff (reported as `Pending`): it has no entry in the pending
/// order until a promotion moves it to `PENDING` and pushes one.
pub(crate) mod raw {
    pub(crate) const PENDING: u64 = 0;
    pub(crate) const PENDING_EXPIRED: u64 = 1;
    pub(crate) const PROCESSING: u64 = 2;
    pub(crate) const COMPLETED: u64 = 3;
    pub(crate) const FAILED: u64 = 4;
    pub(crate) const FAILED_EXPIRED: u64 = 5;
    pub(crate) const REMOVED: u64 = 6;
    pub(crate) const DELAYED: u64 = 7;
}

/// The largest `max_attempts` the state word can count.
pub const MAX_ATTEMPTS: u32 = (1 << 29) - 1;

/// The packed state word: `seq << 32 | attempts << 3 | status`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct State(pub(crate) u64);

impl State {
    pub(crate) const fn new(status: u64, attempts: u32, seq: u32) -> State {
        State((seq as u64) << 32 | (attempts as u64) << 3 | status)
    }
    pub(crate) const fn status(self) -> u64 {
        self.0 & 0b111
    }
    pub(crate) const fn attempts(self) -> u32 {
        ((self.0 >> 3) & MAX_ATTEMPTS as u64) as u32
    }
    pub(crate) const fn seq(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// Same claim sequence, new status and attempt count.
    pub(crate) const fn with(self, status: u64, attempts: u32) -> State {
        State::new(status, attempts, self.seq())
    }
    /// The public status; `None` once removed.
    pub(crate) fn public(self) -> Option<ItemStatus> {
        match self.status() {
            raw::PENDING | raw::PENDING_EXPIRED | raw::DELAYED => Some(ItemStatus::Pending),
            raw::PROCESSING => Some(ItemStatus::Processing),
            raw::COMPLETED => Some(ItemStatus::Completed),
            raw::FAILED | raw::FAILED_EXPIRED => Some(ItemStatus::Failed),
            _ => None,
        }
    }
}

/// Who records a failure reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordedBy {
    /// The claim itself, through `fail`.
    Claim,
    /// `reap_expired`, when the claim's lease ran out.
    Reaper,
}

/// The last failure reason, tagged with the claim it belongs to (and who
/// recorded it) so that a late writer never overwrites a newer reason.
struct LastError {
    seq: u32,
    by: RecordedBy,
    reason: Arc<str>,
}

impl LastError {
    /// `true` if this record must stay rather than give way to one of
    /// claim `seq` recorded `by`: it belongs to a later claim, or it is
    /// the claim's own reason and the other the reaper's of the same claim.
    /// A claim's `fail` is accepted after a reap of it only (before, the
    /// item is no longer processing and nothing reaps it), so the claim's
    /// reason is the later event even when the reaper's write lands last
    /// (found in review: a preempted reaper overwrote it).
    fn outranks(&self, seq: u32, by: RecordedBy) -> bool {
        seq_newer(self.seq, seq)
            || (self.seq == seq && self.by == RecordedBy::Claim && by == RecordedBy::Reaper)
    }
}

/// An item as the queue stores it. `data` never changes after `add`.
pub(crate) struct Item<T> {
    pub(crate) id: ItemId,
    pub(crate) data: T,
    /// Add sequence number, for `snapshot`'s order.
    pub(crate) seq: u64,
    /// The packed [`State`]; changed only by compare-and-swap.
    pub(crate) state: AtomicU64,
    /// Lease deadline in clock nanoseconds; raised with `fetch_max` before
    /// the claiming CAS, so it never goes back (see `WorkQueue::claim`).
    pub(crate) deadline: AtomicU64,
    /// While `DELAYED`: the clock nanoseconds before which it is not
    /// claimed. Raised with `fetch_max` before the CAS to `DELAYED`, so it
    /// never goes back (see `WorkQueue::fail`).
    pub(crate) not_before: AtomicU64,
    /// Boxed [`LastError`] or null; swapped under an epoch guard.
    last_error: AtomicPtr<LastError>,
}

impl<T> Item<T> {
    pub(crate) fn new(id: ItemId, data: T, seq: u64) -> Item<T> {
        Item {
            id,
            data,
            seq,
            state: AtomicU64::new(State::new(raw::PENDING, 0, 0).0),
            deadline: AtomicU64::new(0),
            not_before: AtomicU64::new(0),
            last_error: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    pub(crate) fn state(&self) -> State {
        // Acquire: pairs with the AcqRel CAS that wrote this state, so the
        // deadline raised before it (and the item's data) are visible.
        State(self.state.load(Acquire))
    }

    /// Compare-and-swap of the state word.
    pub(crate) fn cas(&self, current: State, new: State) -> Result<(), State> {
        self.state
            // AcqRel: Release publishes the deadline raised before a claim
            // to whoever reads the new state; Acquire orders what this
            // thread does next after the transition it won.
            // Acquire on failure: the caller re-decides from the fresh state.
            .compare_exchange(current.0, new.0, AcqRel, Acquire)
            .map(|_| ())
            .map_err(State)
    }

    /// The last failure reason if an attempt before claim `seq` recorded
    /// it (a reason recorded by claim `seq` itself or a later one: `None`).
    pub(crate) fn last_error_before(&self, seq: u32) -> Option<Arc<str>> {
        let _guard = epoch::pin();
        // Acquire: as in `last_error_in`.
        let p = self.last_error.load(Acquire);
        // SAFETY: as in `last_error_in`: pinned, freed only through the epoch.
        let record = unsafe { p.as_ref() }?;
        seq_newer(seq, record.seq).then(|| Arc::clone(&record.reason))
    }

    /// [`last_error_before`](Self::last_error_before) claim `seq`, without
    /// pinning when the item never failed: what `claim` keeps in its
    /// `Claim` (a reason a reaper or a later holder records between the
    /// claim and this read is not the claim's to show; found in review).
    pub(crate) fn last_error_before_claim(&self, seq: u32) -> Option<Arc<str>> {
        // Acquire: as in `last_error_in`. A record is only ever replaced by
        // another, never removed, so null means the item never failed.
        if self.last_error.load(Acquire).is_null() {
            return None;
        }
        self.last_error_before(seq)
    }

    /// The last failure reason, if any, under the caller's guard.
    pub(crate) fn last_error_in(&self, _guard: &Guard) -> Option<Arc<str>> {
        // Acquire: pairs with the AcqRel CAS in `set_last_error`, making
        // the boxed record's contents visible.
        let p = self.last_error.load(Acquire);
        // SAFETY: a non-null record is freed only through the epoch after it
        // was swapped out, and we are pinned; null means no reason yet.
        unsafe { p.as_ref() }.map(|e| Arc::clone(&e.reason))
    }

    /// Records `reason` as the failure of claim `seq`, unless a reason of a
    /// later claim is already there.
    pub(crate) fn set_last_error(&self, seq: u32, by: RecordedBy, reason: Arc<str>) {
        let new = Box::into_raw(Box::new(LastError { seq, by, reason }));
        let guard = epoch::pin();
        // Acquire: we read the current record's `seq` below.
        let mut current = self.last_error.load(Acquire);
        loop {
            // SAFETY: as in `last_error`: pinned, freed only through the epoch.
            if let Some(cur) = unsafe { current.as_ref() } {
                if cur.outranks(seq, by) {
                    // SAFETY: `new` was never shared.
                    drop(unsafe { Box::from_raw(new) });
                    return;
                }
            }
            // AcqRel: Release publishes the new record's contents; Acquire
            // lets us read the record we replaced (or the one that beat us).
            match self
                .last_error
                .compare_exchange(current, new, AcqRel, Acquire)
            {
                Ok(old) => {
                    retire(old, &guard);
                    return;
                }
                Err(actual) => current = actual,
            }
        }
    }
}

/// `true` if claim `a` came after claim `b` (wrapping sequence numbers).
fn seq_newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Frees a replaced error record once no pinned reader can hold it.
fn retire(old: *mut LastError, guard: &Guard) {
    if !old.is_null() {
        // SAFETY: `old` was unlinked by our CAS, so only threads pinned now
        // can still read it; the free waits until they unpin.
        unsafe { guard.defer_unchecked(move || drop(Box::from_raw(old))) };
    }
}

impl<T> Drop for Item<T> {
    fn drop(&mut self) {
        // `&mut self`: nothing is in flight, no ordering needed.
        let p = crate::sync::ptr_get_mut(&mut self.last_error);
        if !p.is_null() {
            // SAFETY: the item owns its current record; it was never retired.
            drop(unsafe { Box::from_raw(p) });
        }
    }
}

/// The identifier [`add`](super::WorkQueue::add) returns: unique among the
/// items stored at the same time, and not reused until the slot behind it
/// has been reused 2^32 times.
///
/// An id belongs to the queue that returned it: ids of two queues are
/// numbered alike, so another queue's id may name one of its own items.
///
/// Ids are ordered (so they can key a `BTreeMap`), but their order is not
/// the order items were added in: a freed slot is reused by a later `add`.
/// [`snapshot`](super::WorkQueue::snapshot) lists items in add order.
///
/// # Examples
/// ```
/// let q = unlocked::WorkQueue::new();
/// let id = q.add("job").unwrap();
/// assert_eq!(q.get(id).unwrap().id(), id);
/// println!("added {id}");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ItemId(pub(crate) u64);

impl ItemId {
    /// The id as a number (stable for the item's life; for logs and maps).
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// let a = q.add(1).unwrap();
    /// let b = q.add(2).unwrap();
    /// assert_ne!(a.as_u64(), b.as_u64());
    /// ```
    pub fn as_u64(self) -> u64 {
        self.0
    }

    pub(crate) fn slot(self) -> u32 {
        self.0 as u32
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 as u32, self.0 >> 32)
    }
}

/// Where an item stands.
///
/// ```text
///  add ──▶ Pending ──── claim ────▶ Processing ── complete ──▶ Completed
///             ▲                         │
///             ├──────── release ────────┤
///             └─── fail / lease expiry ─┤  while attempts < max_attempts
///                                       └── fail / lease expiry ──▶ Failed (dead letter)
/// ```
///
/// `remove` takes an item out from any status. With a
/// [retry backoff](crate::RetryBackoff), an item that `fail`ed stays
/// `Pending` but cannot be claimed before its
/// [`retry_at`](ItemSnapshot::retry_at). `docs/work.md` has the full
/// table, including what a claim whose lease expired may still do.
///
/// # Examples
/// ```
/// use unlocked::{ItemStatus, WorkQueue};
///
/// let q = WorkQueue::new();
/// let id = q.add(()).unwrap();
/// assert_eq!(q.get(id).unwrap().status(), ItemStatus::Pending);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ItemStatus {
    /// Waiting to be claimed.
    Pending,
    /// Claimed by a worker whose lease may or may not have run out yet.
    Processing,
    /// Completed by its worker.
    Completed,
    /// Failed `max_attempts` times: a dead letter, kept until removed.
    Failed,
}

/// How many stored items are in each status (see
/// [`counts`](super::WorkQueue::counts)).
///
/// # Examples
/// ```
/// let q = unlocked::WorkQueue::new();
/// q.add(1).unwrap();
/// let c = q.counts();
/// assert_eq!((c.pending, c.processing, c.completed, c.failed), (1, 0, 0, 0));
/// assert_eq!(c.total(), 1);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct StatusCounts {
    /// Items waiting to be claimed.
    pub pending: usize,
    /// Items claimed and not yet settled.
    pub processing: usize,
    /// Completed items not yet removed.
    pub completed: usize,
    /// Dead letters not yet removed.
    pub failed: usize,
}

impl StatusCounts {
    /// The sum over all statuses.
    ///
    /// # Examples
    /// ```
    /// let c = unlocked::StatusCounts { pending: 1, processing: 2, completed: 3, failed: 4 };
    /// assert_eq!(c.total(), 10);
    /// ```
    pub fn total(&self) -> usize {
        self.pending + self.processing + self.completed + self.failed
    }

    pub(crate) fn add(&mut self, status: ItemStatus) {
        match status {
            ItemStatus::Pending => self.pending += 1,
            ItemStatus::Processing => self.processing += 1,
            ItemStatus::Completed => self.completed += 1,
            ItemStatus::Failed => self.failed += 1,
        }
    }
}

/// A worker's hold on one item, from [`claim`](super::WorkQueue::claim).
///
/// Settle it with [`complete`](super::WorkQueue::complete),
/// [`fail`](super::WorkQueue::fail) or [`release`](super::WorkQueue::release)
/// of the queue that issued it (another queue refuses it with
/// [`WorkError::WrongQueue`](super::WorkError::WrongQueue)).
/// Dropping a claim without settling it leaves the item processing until
/// [`reap_expired`](super::WorkQueue::reap_expired) finds its lease over.
/// The accessors show the item as it was when claimed.
///
/// # Examples
/// ```
/// let q = unlocked::WorkQueue::new();
/// let id = q.add(String::from("resize image")).unwrap();
/// let claim = q.claim().unwrap();
/// assert_eq!(claim.id(), id);
/// assert_eq!(claim.data(), "resize image");
/// assert_eq!(claim.attempts(), 1);
/// q.complete(&claim).unwrap();
/// ```
pub struct Claim<T> {
    /// The number of the queue that issued it.
    pub(crate) queue: u64,
    pub(crate) item: Arc<Item<T>>,
    pub(crate) seq: u32,
    pub(crate) attempts: u32,
    pub(crate) deadline: Duration,
    /// The item's last error when it was claimed.
    pub(crate) last_error: Option<Arc<str>>,
    /// Set once this claim has settled its item (`complete`, `fail` or
    /// `release` succeeded), so that a later settle of it is refused with
    /// `AlreadyFinished` even when another claim holds the item by then.
    pub(crate) settled: AtomicBool,
}

impl<T> Claim<T> {
    /// The item's id.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// let id = q.add(0).unwrap();
    /// assert_eq!(q.claim().unwrap().id(), id);
    /// ```
    pub fn id(&self) -> ItemId {
        self.item.id
    }

    /// The item's data, shared with the queue (never copied).
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// q.add(vec![1, 2]).unwrap();
    /// assert_eq!(q.claim().unwrap().data(), &[1, 2]);
    /// ```
    pub fn data(&self) -> &T {
        &self.item.data
    }

    /// Always [`ItemStatus::Processing`]: the status this claim gave the item.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// q.add(0).unwrap();
    /// assert_eq!(q.claim().unwrap().status(), unlocked::ItemStatus::Processing);
    /// ```
    pub fn status(&self) -> ItemStatus {
        ItemStatus::Processing
    }

    /// Which attempt this is: 1 for the first claim, counting failures and
    /// expired leases before it (a release within its lease does not
    /// count).
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// q.add(0).unwrap();
    /// let c = q.claim().unwrap();
    /// q.fail(&c, "flaky").unwrap();
    /// assert_eq!(q.claim().unwrap().attempts(), 2);
    /// ```
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The reason the previous attempt failed, if one did: the item's last
    /// error when it was claimed (this claim's own `fail` does not change
    /// it; [`WorkQueue::get`](super::WorkQueue::get) reads the latest).
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// q.add(0).unwrap();
    /// let c = q.claim().unwrap();
    /// q.fail(&c, "timeout").unwrap();
    /// assert_eq!(c.last_error(), None);
    /// assert_eq!(q.claim().unwrap().last_error().as_deref(), Some("timeout"));
    /// ```
    pub fn last_error(&self) -> Option<Arc<str>> {
        // The reason of the attempt just before this claim may land a moment
        // after the claim (a `fail` records it just after the status
        // change): read it now if it is there, else what the claim saw.
        self.item
            .last_error_before(self.seq)
            .or_else(|| self.last_error.clone())
    }

    /// When the lease runs out, as a time of the queue's [`Clock`](crate::Clock).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use unlocked::{ManualClock, WorkQueue};
    ///
    /// let clock = ManualClock::new();
    /// let q = WorkQueue::builder().lease(Duration::from_secs(5)).clock(clock.clone()).build().unwrap();
    /// q.add(0).unwrap();
    /// assert_eq!(q.claim().unwrap().deadline(), Duration::from_secs(5));
    /// ```
    pub fn deadline(&self) -> Duration {
        self.deadline
    }
}

impl<T: fmt::Debug> fmt::Debug for Claim<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim")
            .field("id", &self.item.id)
            .field("attempts", &self.attempts)
            .field("deadline", &self.deadline)
            .field("data", &self.item.data)
            .finish()
    }
}

/// An owned picture of one item at one moment, from
/// [`get`](super::WorkQueue::get), [`snapshot`](super::WorkQueue::snapshot)
/// or [`remove`](super::WorkQueue::remove). It shares the item's data and
/// holds nothing of the queue: the item may move on meanwhile.
///
/// # Examples
/// ```
/// use unlocked::{ItemStatus, WorkQueue};
///
/// let q = WorkQueue::new();
/// let id = q.add("payload").unwrap();
/// let snap = q.get(id).unwrap();
/// assert_eq!((snap.id(), *snap.data(), snap.status(), snap.attempts()), (id, "payload", ItemStatus::Pending, 0));
/// assert_eq!(snap.last_error(), None);
/// ```
pub struct ItemSnapshot<T> {
    pub(crate) item: Arc<Item<T>>,
    pub(crate) status: ItemStatus,
    pub(crate) attempts: u32,
    pub(crate) last_error: Option<Arc<str>>,
    pub(crate) retry_at: Option<Duration>,
}

impl<T> ItemSnapshot<T> {
    pub(crate) fn of(item: Arc<Item<T>>, state: State, guard: &Guard) -> Option<ItemSnapshot<T>> {
        let status = state.public()?;
        let last_error = item.last_error_in(guard);
        let retry_at = (state.status() == raw::DELAYED).then(|| {
            // Relaxed: `state` was read with Acquire from the CAS to
            // DELAYED, which the `fetch_max` of `not_before` precedes.
            Duration::from_nanos(item.not_before.load(Relaxed))
        });
        Some(ItemSnapshot {
            item,
            status,
            attempts: state.attempts(),
            last_error,
            retry_at,
        })
    }

    /// The item's id.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// let id = q.add(0).unwrap();
    /// assert_eq!(q.get(id).unwrap().id(), id);
    /// ```
    pub fn id(&self) -> ItemId {
        self.item.id
    }

    /// The item's data, shared with the queue (never copied).
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// let id = q.add(7).unwrap();
    /// assert_eq!(*q.get(id).unwrap().data(), 7);
    /// ```
    pub fn data(&self) -> &T {
        &self.item.data
    }

    /// The status when the snapshot was taken.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// let id = q.add(0).unwrap();
    /// q.claim().unwrap();
    /// assert_eq!(q.get(id).unwrap().status(), unlocked::ItemStatus::Processing);
    /// ```
    pub fn status(&self) -> ItemStatus {
        self.status
    }

    /// Claims that counted so far (failures, expired leases and the claim
    /// in progress, if any; releases do not count).
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// let id = q.add(0).unwrap();
    /// q.claim().unwrap();
    /// assert_eq!(q.get(id).unwrap().attempts(), 1);
    /// ```
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The reason of the last failure (`"lease expired"` for a reaped
    /// lease), if any.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::new();
    /// let id = q.add(0).unwrap();
    /// let c = q.claim().unwrap();
    /// q.fail(&c, "bad input").unwrap();
    /// assert_eq!(q.get(id).unwrap().last_error().as_deref(), Some("bad input"));
    /// ```
    pub fn last_error(&self) -> Option<Arc<str>> {
        self.last_error.clone()
    }

    /// For a failed item waiting out its [retry backoff](crate::RetryBackoff)
    /// (status [`Pending`](ItemStatus::Pending)): the time of the queue's
    /// [`Clock`](crate::Clock) from which it can be claimed again. `None`
    /// for every other item, including one whose wait is over and that was
    /// put back in the pending order.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use unlocked::{ManualClock, RetryBackoff, WorkQueue};
    ///
    /// let clock = ManualClock::new();
    /// let q = WorkQueue::builder()
    ///     .retry_backoff(RetryBackoff::fixed(Duration::from_secs(5)))
    ///     .clock(clock.clone())
    ///     .build()
    ///     .unwrap();
    /// let id = q.add(0).unwrap();
    /// assert_eq!(q.get(id).unwrap().retry_at(), None);
    /// clock.advance(Duration::from_secs(1));
    /// let c = q.claim().unwrap();
    /// q.fail(&c, "busy").unwrap();
    /// assert_eq!(q.get(id).unwrap().retry_at(), Some(Duration::from_secs(6)));
    /// ```
    pub fn retry_at(&self) -> Option<Duration> {
        self.retry_at
    }
}

impl<T> Clone for ItemSnapshot<T> {
    fn clone(&self) -> Self {
        ItemSnapshot {
            item: Arc::clone(&self.item),
            status: self.status,
            attempts: self.attempts,
            last_error: self.last_error.clone(),
            retry_at: self.retry_at,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for ItemSnapshot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItemSnapshot")
            .field("id", &self.item.id)
            .field("status", &self.status)
            .field("attempts", &self.attempts)
            .field("last_error", &self.last_error)
            .field("retry_at", &self.retry_at)
            .field("data", &self.item.data)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_packs_and_unpacks() {
        let s = State::new(raw::FAILED_EXPIRED, MAX_ATTEMPTS, u32::MAX);
        assert_eq!(s.status(), raw::FAILED_EXPIRED);
        assert_eq!(s.attempts(), MAX_ATTEMPTS);
        assert_eq!(s.seq(), u32::MAX);
        let t = s.with(raw::PENDING, 3);
        assert_eq!(
            (t.status(), t.attempts(), t.seq()),
            (raw::PENDING, 3, u32::MAX)
        );
    }

    #[test]
    fn sequence_comparison_wraps() {
        assert!(seq_newer(1, 0));
        assert!(seq_newer(0, u32::MAX));
        assert!(!seq_newer(5, 5));
        assert!(!seq_newer(4, 5));
    }
}
