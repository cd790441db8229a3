//! [`UnboundedQueue`]: a lock-free linked list of single-use segments.
//!
//! Each segment is an array of cells filled and emptied by ticket
//! (`segment.rs`: the infinite array queue of LCRQ, Morrison & Afek PPoPP
//! 2013, cut into segments as in Correia & Ramalhete's FAAArrayQueue).
//! Producers push into the tail segment; the producer whose ticket falls
//! past its end links a new segment that already holds its value. Consumers
//! pop from the head segment; once every cell of it has gone to a consumer
//! and a successor exists, they move `head` on and retire the segment
//! through epoch-based reclamation. A retired segment is reset and reused
//! as the next new one.
//!
//! Closing sets a bit in the tail segment's ticket counter, so every later
//! ticket is refused, and links a "closed" mark as its successor, so no new
//! segment can follow it.

use std::fmt;
use std::future::Future;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use super::error::PushError;
use super::segment::{Pop, Push, Segment};
use super::waiters::{Source, Waiters};
use crate::sync::epoch::{self, Guard};
use crate::sync::{
    AtomicBool, AtomicPtr, CachePadded, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed,
    Ordering::Release, Ordering::SeqCst,
};

/// Values per segment for [`UnboundedQueue::new`].
pub const DEFAULT_SEGMENT_CAPACITY: usize = 256;

/// The successor a closed queue's last segment gets: never dereferenced, and
/// no allocation can have this address (it is the type's alignment, well
/// inside the first page).
fn closed_mark<T>() -> *mut Segment<T> {
    ptr::NonNull::dangling().as_ptr()
}

/// `next` as a segment to go on to: null and the closed mark are not.
fn successor<T>(next: *mut Segment<T>) -> Option<*mut Segment<T>> {
    (!next.is_null() && next != closed_mark()).then_some(next)
}

/// Why [`UnboundedQueue::grow`] did not place the value.
enum Grow<T> {
    /// Another producer linked the next segment first: try there.
    Moved(T),
    /// The queue is closed.
    Closed(T),
}

/// How many drained segments a queue keeps for reuse.
const SPARES: usize = 4;

/// Drained segments kept for the next `append`s, so that a queue that
/// flows through segments does not allocate (and initialise) one every
/// `capacity` pushes. Shared by the queue and the deferred closures that
/// hand retired segments back, which may run after the queue is gone.
struct Spares<T>([AtomicPtr<Segment<T>>; SPARES]);

impl<T> Spares<T> {
    fn new() -> Self {
        Spares(std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())))
    }

    /// Keeps `segment` as a spare, or frees it if every place is taken.
    ///
    /// # Safety
    /// No other thread can reach `segment`: it was retired and the epoch
    /// grace period is over, or it was never published. It is ours alone.
    unsafe fn put(&self, segment: *mut Segment<T>) {
        for place in &self.0 {
            // Release: the segment's last writes happen before the thread
            // that takes it (Acquire) resets it.
            if place
                .compare_exchange(ptr::null_mut(), segment, Release, Relaxed)
                .is_ok()
            {
                return;
            }
        }
        // SAFETY: the caller gave us the only reference.
        drop(unsafe { Box::from_raw(segment) });
    }

    /// A spare segment made new again, if there is one.
    fn take(&self) -> Option<*mut Segment<T>> {
        self.0.iter().find_map(|place| {
            // Relaxed: a hint, so that an empty place costs no write.
            if place.load(Relaxed).is_null() {
                return None;
            }
            // Acquire: pairs with the Release in `put`.
            let segment = place.swap(ptr::null_mut(), Acquire);
            // A spare is reachable only through its place, and the queue
            // retires a segment only once every cell went to a consumer.
            // SAFETY: the swap emptied the place: the segment is ours
            // alone, and drained.
            let fresh = unsafe { segment.as_ref() }?;
            fresh.reset();
            Some(segment)
        })
    }
}

impl<T> Drop for Spares<T> {
    fn drop(&mut self) {
        for place in &mut self.0 {
            let segment = crate::sync::ptr_get_mut(place);
            if !segment.is_null() {
                // SAFETY: a spare is owned by its place alone (see `take`).
                drop(unsafe { Box::from_raw(segment) });
            }
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
    /// Drained segments to reuse (see [`Spares`]).
    spare: Arc<Spares<T>>,
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
            spare: Arc::new(Spares::new()),
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
            // `tail` is never null (nor the closed mark, which only ever
            // sits in `next`); a segment is retired only after both `head`
            // and `tail` moved past it (see `retire_head`).
            // SAFETY: so, and as we are pinned, it is not freed meanwhile.
            let segment = unsafe { &*tail };
            value = match segment.try_push(value) {
                Push::Done => break,
                Push::Poisoned(v) => v,
                Push::Closed(v) => return Err(self.refuse(v, &guard)),
                Push::Full(v) => match self.grow(segment, tail, v, &guard) {
                    Ok(()) => break,
                    Err(Grow::Moved(v)) => v,
                    Err(Grow::Closed(v)) => return Err(self.refuse(v, &guard)),
                },
            };
        }
        self.waiters.notify_one();
        Ok(())
    }

    /// A push met a closed segment: finishes sealing the queue (a `close`
    /// may still be in flight), sets the closed flag as `close` would, so
    /// that `is_closed` agrees with the refusal from now on (found in
    /// review: a refused push could then see `is_closed()` false), and
    /// hands `value` back. `close` itself still wakes the waiters.
    #[cold]
    fn refuse(&self, value: T, guard: &Guard) -> PushError<T> {
        self.seal(guard);
        // SeqCst: as in `close`: set once no push can land any more.
        self.closed.store(true, SeqCst);
        PushError::Closed(value)
    }

    /// The tail `segment` is full: moves `tail` to its successor, or links
    /// a new segment holding `value`.
    fn grow(
        &self,
        segment: &Segment<T>,
        tail: *mut Segment<T>,
        value: T,
        guard: &Guard,
    ) -> Result<(), Grow<T>> {
        // Acquire: pairs with the linking CAS, so the successor's contents
        // are visible.
        let next = segment.next.load(Acquire);
        if next == closed_mark() {
            return Err(Grow::Closed(value));
        }
        if next.is_null() {
            return self.append(segment, tail, value, guard);
        }
        // AcqRel: publishes the move to threads reading `tail`; failure
        // means another thread moved it, which is as good.
        let _ = self.tail.compare_exchange(tail, next, AcqRel, Acquire);
        Err(Grow::Moved(value))
    }

    /// Links a new segment holding `value` after the full `segment`; on
    /// losing the race (to another producer, or to `close`), hands `value`
    /// back.
    fn append(
        &self,
        segment: &Segment<T>,
        tail: *mut Segment<T>,
        value: T,
        _guard: &Guard,
    ) -> Result<(), Grow<T>> {
        let fresh = self
            .spare
            .take()
            .unwrap_or_else(|| Segment::boxed(self.segment_capacity));
        // SAFETY: `fresh` is not shared yet.
        let fresh_ref = unsafe { &*fresh };
        fresh_ref.put_first(value);
        // SeqCst: publishes the new segment (with our value) like a release,
        // and, with the SeqCst load of `next` in `pop`, takes part in the
        // waiter protocol (`waiters.rs`): either the sleeping consumer's
        // re-check finds this segment or our `notify_one` sees its
        // registration.
        match segment
            .next
            .compare_exchange(ptr::null_mut(), fresh, SeqCst, Acquire)
        {
            Ok(_) => {
                // AcqRel: see `grow`; failure means someone helped.
                let _ = self.tail.compare_exchange(tail, fresh, AcqRel, Acquire);
                Ok(())
            }
            Err(next) => {
                let value = fresh_ref.take_first();
                // SAFETY: the CAS failed, so `fresh` was never published: it
                // is ours alone, as `put` requires.
                unsafe { self.spare.put(fresh) };
                if next == closed_mark() {
                    return Err(Grow::Closed(value));
                }
                // AcqRel: as in `grow`.
                let _ = self.tail.compare_exchange(tail, next, AcqRel, Acquire);
                Err(Grow::Moved(value))
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
            // in `retire_head` moved `head` past it, and we are pinned.
            let segment = unsafe { &*head };
            match segment.try_pop() {
                Pop::Value(value) => return Some(value),
                Pop::Retry => {}
                Pop::Empty => return None,
                Pop::Exhausted => {
                    // SeqCst: pairs with the linking CAS in `append`, in the
                    // total order the waiter protocol needs (see there).
                    let next = successor(segment.next.load(SeqCst))?;
                    self.retire_head(head, next, &guard);
                }
            }
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
            // Every cell went to a consumer, so it holds no value once the
            // threads pinned now are done. It becomes the spare for a later
            // `append`, or is freed if there is one already.
            let spare = Arc::clone(&self.spare);
            // SAFETY: `head` and `tail` are both past the segment, so only
            // threads pinned now hold it; the closure runs after they unpin,
            // when it is ours alone, as `put` requires.
            unsafe { guard.defer_unchecked(move || spare.put(head)) };
            // Hand the retired segment to the collector now, not when this
            // thread's bag of deferred frees fills up (dozens of segments
            // later): it comes back as a spare after two epochs instead of
            // being freed while new ones are allocated. Once per segment.
            guard.flush();
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
    /// drained. Dropping the future loses nothing. A future that was woken
    /// but is kept and never polled again holds that wakeup back from the
    /// other waiters: drop a future you stop polling. Like an `async fn`'s,
    /// it panics if polled again after it returned `Ready`.
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
        let guard = epoch::pin();
        self.seal(&guard);
        // SeqCst: set only once no push can land any more, so a consumer
        // that sees the flag and then finds the queue empty may stop.
        self.closed.store(true, SeqCst);
        self.waiters.notify_all();
    }

    /// Closes the tail segment and every segment linked after it, until a
    /// closed mark ends the list: afterwards no push can land. `close` does
    /// it, and so does a push refused by a closed segment before it reports
    /// `Closed` (it may be helping a `close` still in flight), so that a
    /// refusal is final: a later push by the same thread is refused too.
    fn seal(&self, _guard: &Guard) {
        loop {
            let tail = self.tail.load(Acquire);
            // SAFETY: as in `push`: never null, and the caller is pinned.
            let segment = unsafe { &*tail };
            segment.close();
            // SeqCst: an `append` that loses to this CAS sees the mark and
            // fails; one that wins makes us close its segment too.
            match segment
                .next
                .compare_exchange(ptr::null_mut(), closed_mark(), SeqCst, Acquire)
            {
                Ok(_) => return,
                Err(next) if next == closed_mark() => return,
                Err(next) => {
                    // AcqRel: as in `grow`.
                    let _ = self.tail.compare_exchange(tail, next, AcqRel, Acquire);
                }
            }
        }
    }

    /// `true` once [`close`](Self::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.closed_flag()
    }

    fn closed_flag(&self) -> bool {
        // Acquire: pairs with the store in `close`.
        self.closed.load(Acquire)
    }

    /// The number of values in the queue (see "Concurrent calls").
    pub fn len(&self) -> usize {
        let _guard = epoch::pin();
        let mut total = 0;
        let mut current = self.head.load(Acquire);
        while let Some(segment) = successor(current) {
            // SAFETY: reachable from `head` while we are pinned, so not freed.
            let segment = unsafe { &*segment };
            total += segment.len();
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
        // A value whose drop panics does not stop the other segments'
        // (as in `Vec`).
        let mut current = crate::sync::ptr_get_mut(&mut self.head);
        crate::drain::drop_all(&mut || {
            successor(current).map(|segment| {
                // SAFETY: a segment reachable from `head` is owned by the
                // queue and freed exactly once, here (`current` moves past
                // it); dropping it drops the values left in it.
                let mut segment = unsafe { Box::from_raw(segment) };
                current = crate::sync::ptr_get_mut(&mut segment.next);
                segment
            })
        });
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
                recycled |= q.spare.0.iter().any(|p| !p.load(Acquire).is_null());
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
