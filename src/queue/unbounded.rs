//! [`UnboundedQueue`]: LSCQ, a lock-free linked list of SCQ segments.
//!
//! Producers push into the tail segment; when it is full they *finalize* it
//! (its `queued` ring refuses every later ticket) and link a new segment that
//! already holds their value. Consumers pop from the head segment; when it is
//! empty and has a successor, they re-arm its threshold and try once more (a
//! producer that took its ticket before the finalization may still land),
//! then move `head` on and retire the segment through epoch-based reclamation.
//! This is Figure 10 of Nikolaev (DISC 2019), with crossbeam-epoch for the
//! memory the paper leaves to a generic scheme.

use std::fmt;
use std::future::Future;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use super::error::PushError;
use super::slots::{SlotPushError, SlotRing};
use super::waiters::{Source, Waiters};
use crate::sync::epoch::{self, Guard};
use crate::sync::{
    AtomicBool, AtomicPtr, CachePadded, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed,
    Ordering::Release, Ordering::SeqCst,
};

/// Values per segment for [`UnboundedQueue::new`].
pub const DEFAULT_SEGMENT_CAPACITY: usize = 256;

/// One segment: a bounded ring and the link to its successor.
struct Segment<T> {
    ring: SlotRing<T>,
    next: AtomicPtr<Segment<T>>,
}

impl<T> Segment<T> {
    fn boxed(capacity: usize) -> *mut Segment<T> {
        Box::into_raw(Box::new(Segment {
            ring: SlotRing::new(capacity),
            next: AtomicPtr::new(ptr::null_mut()),
        }))
    }
}

/// One drained segment kept for the next `append`, so that a queue that
/// flows through segments does not allocate (and zero) one every
/// `capacity` pushes. Shared by the queue and the deferred closures that
/// hand retired segments back, which may run after the queue is gone.
struct Spare<T>(AtomicPtr<Segment<T>>);

impl<T> Spare<T> {
    /// Keeps `segment` as the spare, or frees it if there already is one.
    ///
    /// # Safety
    /// `segment` was retired and no thread can still reach it (the epoch
    /// grace period is over): it is ours alone.
    unsafe fn put(&self, segment: *mut Segment<T>) {
        // Release: the drained ring's last writes happen before the thread
        // that takes the spare (Acquire) resets it.
        if self
            .0
            .compare_exchange(ptr::null_mut(), segment, Release, Relaxed)
            .is_err()
        {
            // SAFETY: the caller gave us the only reference.
            drop(unsafe { Box::from_raw(segment) });
        }
    }

    /// The spare segment made new again, if there is one.
    fn take(&self) -> Option<*mut Segment<T>> {
        // Acquire: pairs with the Release in `put`.
        let segment = self.0.swap(ptr::null_mut(), Acquire);
        // SAFETY: a spare is reachable only through this pointer, which the
        // swap took: the segment is ours alone, and drained (LSCQ retires a
        // segment only once empty).
        let fresh = unsafe { segment.as_ref() }?;
        fresh.ring.reset();
        // Relaxed: private until published by the linking CAS in `append`.
        fresh.next.store(ptr::null_mut(), Relaxed);
        Some(segment)
    }
}

impl<T> Drop for Spare<T> {
    fn drop(&mut self) {
        let segment = crate::sync::ptr_get_mut(&mut self.0);
        if !segment.is_null() {
            // SAFETY: the spare is owned by this cell alone (see `take`).
            drop(unsafe { Box::from_raw(segment) });
        }
    }
}

/// An unbounded, lock-free, multi-producer multi-consumer FIFO queue.
///
/// It grows by segments of a fixed capacity and frees them once drained.
/// `push` fails only after [`close`](Self::close), handing the value back.
///
/// # Progress
/// Lock-free in the strict sense, like [`BoundedQueue`](crate::BoundedQueue):
/// no operation waits for another thread to finish its own. Drained segments
/// are freed through epoch-based reclamation (crossbeam-epoch), so a thread
/// that stalls while pinned delays freeing, never progress.
///
/// # Concurrent calls
/// `len` walks the segments and is exact when no operation is in flight,
/// with the same rare exception as [`BoundedQueue`](crate::BoundedQueue)'s
/// (see its "Concurrent calls").
///
/// # Examples
/// ```
/// use unlocked::UnboundedQueue;
///
/// let q = UnboundedQueue::new();
/// for i in 0..1000 {
///     q.push(i).unwrap();
/// }
/// assert_eq!(q.len(), 1000);
/// assert_eq!(q.pop(), Some(0));
/// ```
pub struct UnboundedQueue<T> {
    head: CachePadded<AtomicPtr<Segment<T>>>,
    tail: CachePadded<AtomicPtr<Segment<T>>>,
    closed: AtomicBool,
    segment_capacity: usize,
    /// A drained segment to reuse (see [`Spare`]).
    spare: Arc<Spare<T>>,
    waiters: Waiters,
}

// SAFETY: the queue owns its segments (raw pointers only because they are
// shared between threads); values move between threads, so `T: Send` is
// required and enough, exactly as for `SlotRing`.
unsafe impl<T: Send> Send for UnboundedQueue<T> {}
// SAFETY: as above; `&UnboundedQueue` moves values in and out, never shares
// a `&T`.
unsafe impl<T: Send> Sync for UnboundedQueue<T> {}

impl<T> Default for UnboundedQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> UnboundedQueue<T> {
    /// Creates an empty queue with segments of
    /// 256 values.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::UnboundedQueue::<String>::new();
    /// assert!(q.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::with_segment_capacity(DEFAULT_SEGMENT_CAPACITY)
    }

    /// Creates an empty queue whose segments hold `capacity` values each:
    /// larger segments allocate less often, smaller ones waste less memory.
    ///
    /// # Panics
    /// If `capacity` is 0 or above [`MAX_CAPACITY`](crate::queue::MAX_CAPACITY).
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::UnboundedQueue::with_segment_capacity(2);
    /// for i in 0..5 {
    ///     q.push(i).unwrap();
    /// }
    /// assert_eq!((0..5).map(|_| q.pop().unwrap()).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
    /// ```
    pub fn with_segment_capacity(capacity: usize) -> Self {
        assert!(
            capacity >= 1,
            "UnboundedQueue segment capacity must be at least 1 (got 0)"
        );
        assert!(
            capacity <= super::MAX_CAPACITY,
            "UnboundedQueue segment capacity must be at most {} (got {capacity})",
            super::MAX_CAPACITY
        );
        let first = Segment::boxed(capacity);
        UnboundedQueue {
            head: CachePadded::new(AtomicPtr::new(first)),
            tail: CachePadded::new(AtomicPtr::new(first)),
            closed: AtomicBool::new(false),
            segment_capacity: capacity,
            spare: Arc::new(Spare(AtomicPtr::new(ptr::null_mut()))),
            waiters: Waiters::default(),
        }
    }

    /// Appends `value` at the back.
    ///
    /// # Errors
    /// [`PushError::Closed`] with the value after [`close`](Self::close).
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::UnboundedQueue::new();
    /// q.push("job").unwrap();
    /// q.close();
    /// assert_eq!(q.push("late").unwrap_err().into_inner(), "late");
    /// ```
    pub fn push(&self, value: T) -> Result<(), PushError<T>> {
        if self.closed_flag() {
            return Err(PushError::Closed(value));
        }
        let guard = epoch::pin();
        let mut value = value;
        loop {
            let tail = self.tail.load(Acquire);
            // SAFETY: `tail` is never null and a segment is retired only after
            // both `head` and `tail` moved past it (see `pop`); we are pinned,
            // so it is not freed while we use it.
            let segment = unsafe { &*tail };
            if self.help_tail(tail, segment) {
                continue;
            }
            match segment.ring.push(value) {
                Ok(()) => {
                    self.waiters.notify_one();
                    return Ok(());
                }
                // Full: finalize, so no later push lands behind our new segment.
                Err(SlotPushError::Full(v)) => {
                    segment.ring.close();
                    value = v;
                }
                Err(SlotPushError::Closed(v)) => value = v,
            }
            if self.closed_flag() {
                return Err(PushError::Closed(value));
            }
            match self.append(segment, tail, value, &guard) {
                Ok(()) => {
                    self.waiters.notify_one();
                    return Ok(());
                }
                Err(v) => value = v,
            }
        }
    }

    /// If `segment` (the current tail) has a successor, moves `tail` on and
    /// returns `true`.
    fn help_tail(&self, tail: *mut Segment<T>, segment: &Segment<T>) -> bool {
        // Acquire: pairs with the AcqRel CAS in `append` that linked `next`,
        // so the new segment's contents are visible.
        let next = segment.next.load(Acquire);
        if next.is_null() {
            return false;
        }
        // AcqRel: publishes the move to other threads reading `tail`;
        // failure means another thread moved it, which is as good.
        let _ = self.tail.compare_exchange(tail, next, AcqRel, Acquire);
        true
    }

    /// Links a new segment holding `value` after the finalized `segment`; on
    /// losing the race to another producer, hands `value` back.
    fn append(
        &self,
        segment: &Segment<T>,
        tail: *mut Segment<T>,
        value: T,
        _guard: &Guard,
    ) -> Result<(), T> {
        let fresh = self
            .spare
            .take()
            .unwrap_or_else(|| Segment::boxed(self.segment_capacity));
        // SAFETY: `fresh` was just allocated and is not shared yet.
        let fresh_ref = unsafe { &*fresh };
        if let Err(e) = fresh_ref.ring.push(value) {
            // Unreachable (a new ring has a free slot and is open), but never
            // lose a value: hand it back and try again.
            // SAFETY: `fresh` is still ours alone.
            drop(unsafe { Box::from_raw(fresh) });
            return Err(match e {
                SlotPushError::Full(v) | SlotPushError::Closed(v) => v,
            });
        }
        // SeqCst: publishes the new segment (with our value) like a release,
        // and, with the SeqCst load of `next` in `pop`, takes part in the
        // waiter protocol (`waiters.rs`): either the sleeping consumer's
        // re-check finds this segment or our `notify_one` sees its
        // registration. With AcqRel both could miss (store buffering; miri
        // found the lost wakeup).
        match segment
            .next
            .compare_exchange(ptr::null_mut(), fresh, SeqCst, Acquire)
        {
            Ok(_) => {
                // AcqRel: see `help_tail`; failure means someone helped.
                let _ = self.tail.compare_exchange(tail, fresh, AcqRel, Acquire);
                Ok(())
            }
            Err(_) => {
                // SAFETY: the CAS failed, so `fresh` was never published.
                let fresh = unsafe { Box::from_raw(fresh) };
                let value = fresh.ring.pop();
                drop(fresh);
                // The ring holds exactly the value we pushed into it.
                Err(value.expect("a private segment keeps the value pushed into it"))
            }
        }
    }

    /// Removes and returns the value at the front, or `None` if the queue is
    /// empty. Never blocks.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::UnboundedQueue::new();
    /// q.push(1).unwrap();
    /// assert_eq!(q.pop(), Some(1));
    /// assert_eq!(q.pop(), None);
    /// ```
    pub fn pop(&self) -> Option<T> {
        let guard = epoch::pin();
        loop {
            let head = self.head.load(Acquire);
            // SAFETY: `head` is never null; it is retired only after the CAS
            // below moved `head` past it, and we are pinned.
            let segment = unsafe { &*head };
            if let Some(value) = segment.ring.pop() {
                return Some(value);
            }
            // SeqCst: pairs with the linking CAS in `append`, in the total
            // order the waiter protocol needs (see there).
            let next = segment.next.load(SeqCst);
            if next.is_null() {
                return None;
            }
            // The segment was finalized before `next` was linked, but a
            // producer holding an older ticket may still land: scan once more
            // with a fresh threshold (LSCQ).
            segment.ring.rearm();
            if let Some(value) = segment.ring.pop() {
                return Some(value);
            }
            self.retire_head(head, next, &guard);
        }
    }

    /// Moves `head` (and, first, `tail`) past the drained segment `head`
    /// and frees it once no pinned thread can still see it.
    fn retire_head(&self, head: *mut Segment<T>, next: *mut Segment<T>, guard: &Guard) {
        // AcqRel: `tail` must leave the segment before it is retired, so no
        // producer can load it afterwards; failure means it already left.
        let _ = self.tail.compare_exchange(head, next, AcqRel, Acquire);
        // AcqRel: only the thread whose CAS succeeds retires the segment.
        if self
            .head
            .compare_exchange(head, next, AcqRel, Acquire)
            .is_ok()
        {
            // Its ring holds no values (LSCQ). It becomes the spare for a
            // later `append`, or is freed if there is one already.
            let spare = Arc::clone(&self.spare);
            // SAFETY: `head` and `tail` are both past the segment, so only
            // threads pinned now hold it; the closure runs after they unpin,
            // when it is ours alone, as `put` requires.
            unsafe { guard.defer_unchecked(move || spare.put(head)) };
        }
    }

    /// Waits up to `timeout` for a value, sleeping (not spinning) meanwhile.
    ///
    /// Returns `None` on timeout, or once the queue is closed and drained.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = unlocked::UnboundedQueue::new();
    /// q.push(3).unwrap();
    /// assert_eq!(q.pop_timeout(Duration::from_secs(1)), Some(3));
    /// assert_eq!(q.pop_timeout(Duration::from_millis(1)), None);
    /// ```
    pub fn pop_timeout(&self, timeout: Duration) -> Option<T> {
        self.waiters.pop_timeout(self, timeout)
    }

    /// Waits for a value on any async executor; `None` once closed and
    /// drained. Dropping the future loses nothing.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::UnboundedQueue::new();
    /// q.push('x').unwrap();
    /// assert_eq!(pollster::block_on(q.pop_async()), Some('x'));
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
    /// let q = unlocked::UnboundedQueue::<u8>::new();
    /// q.close();
    /// assert!(q.is_closed());
    /// assert_eq!(q.pop_timeout(std::time::Duration::from_secs(5)), None);
    /// ```
    pub fn close(&self) {
        // SeqCst is not needed: pushes that read `false` may still land,
        // and the close of the tail ring below turns most of those into
        // `Closed`. Release pairs with the Acquire in `closed_flag`.
        self.closed.store(true, crate::sync::Ordering::Release);
        let _guard = epoch::pin();
        let tail = self.tail.load(Acquire);
        // SAFETY: as in `push`: never null, and pinned.
        unsafe { &*tail }.ring.close();
        self.waiters.notify_all();
    }

    /// `true` once [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.closed_flag()
    }

    fn closed_flag(&self) -> bool {
        // Acquire: pairs with the Release in `close`.
        self.closed.load(Acquire)
    }

    /// The number of values in the queue (see "Concurrent calls").
    pub fn len(&self) -> usize {
        let _guard = epoch::pin();
        let mut total = 0;
        let mut current = self.head.load(Acquire);
        while !current.is_null() {
            // SAFETY: reachable from `head` while we are pinned, so not freed.
            let segment = unsafe { &*current };
            total += segment.ring.len();
            // Acquire: pairs with the linking CAS in `append`.
            current = segment.next.load(Acquire);
        }
        total
    }

    /// `true` if the queue holds no value (see "Concurrent calls").
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Source<T> for UnboundedQueue<T> {
    fn try_pop(&self) -> Option<T> {
        self.pop()
    }

    fn is_closed(&self) -> bool {
        self.closed_flag()
    }
}

impl<T> Drop for UnboundedQueue<T> {
    fn drop(&mut self) {
        // `&mut self`: no operation is in flight; retired segments belong to
        // the epoch collector, the rest are reachable from `head`.
        let mut current = self.head.load(Acquire);
        while !current.is_null() {
            // SAFETY: a segment reachable from `head` is owned by the queue
            // and freed exactly once, here; its ring drops the values left.
            let segment = unsafe { Box::from_raw(current) };
            current = segment.next.load(Acquire);
        }
    }
}

impl<T> fmt::Debug for UnboundedQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnboundedQueue")
            .field("len", &self.len())
            .field("segment_capacity", &self.segment_capacity)
            .field("closed", &self.is_closed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::AtomicUsize;

    /// Counts its drops (the counter is leaked, so that a deferred free
    /// that runs after the test never outlives it).
    struct Counted(u64, &'static AtomicUsize);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn drained_segments_are_recycled_in_order_and_drop_nothing_twice() {
        let drops: &'static AtomicUsize = Box::leak(Box::new(AtomicUsize::new(0)));
        let rounds = if cfg!(miri) { 40 } else { 2000 };
        {
            let q = UnboundedQueue::with_segment_capacity(2);
            let mut recycled = false;
            let mut next = 0;
            for round in 0..rounds {
                for _ in 0..3 {
                    q.push(Counted(next, drops)).unwrap();
                    next += 1;
                }
                for k in 0..3 {
                    let v = q.pop().unwrap();
                    assert_eq!(v.0, round * 3 + k);
                }
                epoch::pin().flush();
                // Acquire: as in `Spare::take`.
                recycled |= !q.spare.0.load(Acquire).is_null();
            }
            assert!(recycled, "a retired segment became the spare");
            // Leave values in (recycled) segments for `Drop`.
            for _ in 0..5 {
                q.push(Counted(next, drops)).unwrap();
                next += 1;
            }
            assert_eq!(q.pop().unwrap().0, rounds * 3);
        }
        for _ in 0..64 {
            epoch::pin().flush();
        }
        assert_eq!(drops.load(SeqCst), rounds as usize * 3 + 5);
    }
}
