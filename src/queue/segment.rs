//! One segment of [`UnboundedQueue`](super::UnboundedQueue): an array of
//! cells, each used once, with its own enqueue and dequeue ticket counters.
//!
//! This is the "infinite array queue" of the LCRQ paper (Morrison & Afek,
//! PPoPP 2013, §3), cut into finite segments as in Correia & Ramalhete's
//! FAAArrayQueue, with the value stored in the cell:
//!
//! - a producer takes ticket `e` with `enq.fetch_add(1)`, writes its value
//!   into cell `e` (its alone: no other producer has ticket `e`), then
//!   publishes it with a CAS of the cell's state `EMPTY -> FULL`;
//! - a consumer takes ticket `d` with `deq.fetch_add(1)` and swaps the state
//!   of cell `d` to `TAKEN`. If it was `FULL`, the value is the consumer's.
//!   If it was `EMPTY`, the producer of ticket `d` has not published yet: the
//!   consumer has *poisoned* the cell, that producer's CAS fails, and it
//!   takes its value back and tries a later ticket.
//!
//! Nobody ever waits for another thread: a consumer that finds its cell
//! unpublished spins a few rounds at most (the producer is usually between
//! its `fetch_add` and its CAS), then poisons it and moves on. Every cell is
//! written by one producer and read by one consumer, and the state word
//! decides which of "consumed" and "handed back" happens, exactly once.
//!
//! This is the only file of the unbounded queue with `unsafe` code.

use std::mem::MaybeUninit;

use crate::sync::{
    AtomicPtr, AtomicU8, AtomicUsize, CachePadded, Ordering::Acquire, Ordering::Relaxed,
    Ordering::Release, Ordering::SeqCst, UnsafeCell,
};

/// The cell holds no value and its ticket's producer has not published.
const EMPTY: u8 = 0;
/// The cell holds a published value.
const FULL: u8 = 1;
/// A consumer swapped the state: it took the value, or poisoned the cell.
const TAKEN: u8 = 2;

/// Bit of `enq` set by [`Segment::close`]: every later ticket is refused.
const CLOSED: usize = 1 << (usize::BITS - 1);

/// How many times a consumer re-reads an unpublished cell before poisoning
/// it. Bounded, so a stalled producer delays nobody for long; not zero,
/// because the producer of a just-taken ticket is usually a few
/// nanoseconds from publishing, and poisoning costs it a retry. Under the
/// model checkers the wait is pure state space, so it is left out there.
const PATIENCE: u32 = if cfg!(any(unlocked_loom, feature = "shuttle")) {
    0
} else {
    32
};

/// Bytes over which consecutive tickets are spread (two 64-byte lines:
/// x86 prefetches lines in adjacent pairs, as `CachePadded` assumes).
const SPREAD_BYTES: usize = 128;

/// One cell: a state word and room for one value.
struct Cell<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

impl<T> Cell<T> {
    fn new() -> Self {
        Cell {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// # Safety
    /// The caller holds this cell's producer ticket and has not published:
    /// no other thread reads or writes the value.
    unsafe fn write(&self, value: T) {
        self.value.with_mut(|slot| {
            // SAFETY: exclusive access, per this function's contract.
            unsafe { (*slot).write(value) };
        });
    }

    /// # Safety
    /// The cell holds an initialized value that the caller now owns: it
    /// swapped `FULL` out of the state, or it wrote the value and its
    /// publishing CAS failed. Either way no other thread touches it again.
    unsafe fn read(&self) -> T {
        self.value.with(|slot| {
            // SAFETY: an initialized value owned by the caller, moved out
            // exactly once (the state no longer says `FULL` to anyone).
            unsafe { (*slot).assume_init_read() }
        })
    }
}

/// What [`Segment::try_push`] did.
pub(super) enum Push<T> {
    /// The value is in the queue.
    Done,
    /// A consumer poisoned our cell first; the value comes back, try again.
    Poisoned(T),
    /// Every cell of this segment is taken: go to (or create) the next one.
    Full(T),
    /// The segment was closed (the queue is closing).
    Closed(T),
}

/// What [`Segment::try_pop`] found.
pub(super) enum Pop<T> {
    /// A value.
    Value(T),
    /// Our cell's producer had not published, and now never will there:
    /// try again.
    Retry,
    /// No published value past the consumers' tickets, and room left for
    /// producers: the queue is empty.
    Empty,
    /// Every cell has gone to a consumer: go on to the next segment.
    Exhausted,
}

/// A fixed array of single-use cells and the link to the next segment.
pub(super) struct Segment<T> {
    /// Producer tickets (with [`CLOSED`] as the top bit).
    enq: CachePadded<AtomicUsize>,
    /// Consumer tickets.
    deq: CachePadded<AtomicUsize>,
    /// The next segment, null, or the queue's "closed" mark.
    pub(super) next: AtomicPtr<Segment<T>>,
    /// The producer ticket count when the segment was closed (`usize::MAX`
    /// while open): tickets from there on were refused and hold nothing.
    closed_at: AtomicUsize,
    cells: Box<[Cell<T>]>,
    /// `log2` of the number of cache-line groups tickets are spread over
    /// (see [`cell`](Self::cell)); 0 when tickets map to cells in order.
    spread_shift: u32,
}

// SAFETY: values move between threads through the cells (pushed on one,
// popped on another), so `T: Send` is required and enough; a value is only
// ever accessed by its producer or its consumer, never shared.
unsafe impl<T: Send> Send for Segment<T> {}
// SAFETY: as above: `&Segment` lets threads move values in and out, never
// share a `&T`.
unsafe impl<T: Send> Sync for Segment<T> {}

impl<T> Segment<T> {
    /// A new, empty, heap-allocated segment of `capacity` cells.
    pub(super) fn boxed(capacity: usize) -> *mut Segment<T> {
        Box::into_raw(Box::new(Segment {
            enq: CachePadded::new(AtomicUsize::new(0)),
            deq: CachePadded::new(AtomicUsize::new(0)),
            next: AtomicPtr::new(std::ptr::null_mut()),
            closed_at: AtomicUsize::new(usize::MAX),
            cells: (0..capacity).map(|_| Cell::new()).collect(),
            spread_shift: Self::spread_shift(capacity),
        }))
    }

    /// How consecutive tickets are spread over cache lines: `log2` of the
    /// number of line-sized groups of cells, or 0 (no spreading) when the
    /// capacity is not a power of two or is below two lines' worth.
    fn spread_shift(capacity: usize) -> u32 {
        let per_line = (SPREAD_BYTES / std::mem::size_of::<Cell<T>>().max(1)).max(1);
        let per_line = if per_line.is_power_of_two() {
            per_line
        } else {
            per_line.next_power_of_two() / 2
        };
        if !capacity.is_power_of_two() || capacity < 2 * per_line || per_line == 1 {
            return 0;
        }
        (capacity / per_line).trailing_zeros()
    }

    /// The cell of `ticket`, or `None` past the end.
    ///
    /// Consecutive tickets go to different cache lines (the `cache_remap`
    /// of SCQ and LCRQ): two producers, or two consumers, working on
    /// neighbouring tickets then write different lines, instead of
    /// bouncing one line between their cores. Ticket `t` of `G` groups
    /// goes to group `t mod G`, position `t / G` in it: a bijection on
    /// `0..capacity`.
    #[inline]
    fn cell(&self, ticket: usize) -> Option<&Cell<T>> {
        if ticket >= self.cells.len() {
            return None;
        }
        let groups_mask = (1usize << self.spread_shift) - 1;
        let per_group = self.cells.len() >> self.spread_shift;
        let index = (ticket & groups_mask) * per_group + (ticket >> self.spread_shift);
        self.cells.get(index)
    }

    fn capacity(&self) -> usize {
        self.cells.len()
    }

    /// Pushes `value` into the next free cell.
    pub(super) fn try_push(&self, value: T) -> Push<T> {
        // SeqCst: the ticket order is the FIFO order; and the waiter
        // protocol (`waiters.rs`) needs a consumer that saw no ticket here
        // to be ordered before us, so that our `notify_one` sees it.
        let ticket = self.enq.fetch_add(1, SeqCst);
        if ticket & CLOSED != 0 {
            return Push::Closed(value);
        }
        let Some(cell) = self.cell(ticket) else {
            return Push::Full(value);
        };
        // SAFETY: ticket `ticket` is ours alone among producers, and no
        // consumer reads the value before our CAS below says `FULL`.
        unsafe { cell.write(value) };
        // SeqCst on success: publishes the value (a release, paired with the
        // consumer's swap) and is the producer's "publish" step of the waiter
        // protocol. Relaxed on failure: the value never left this thread.
        match cell.state.compare_exchange(EMPTY, FULL, SeqCst, Relaxed) {
            Ok(_) => Push::Done,
            // SAFETY: the CAS failed (a consumer poisoned the cell), so the
            // value was never published: it is still ours.
            Err(_) => Push::Poisoned(unsafe { cell.read() }),
        }
    }

    /// Pops the value at the next consumer ticket.
    pub(super) fn try_pop(&self) -> Pop<T> {
        // SeqCst (both loads): the consumer's re-check in the waiter
        // protocol. `deq` first: if `deq >= enq` held for the values read,
        // it held when `enq` was read (both only grow), and every ticket
        // taken by then belonged to a consumer.
        let consumed = self.deq.load(SeqCst);
        let produced = self.enq.load(SeqCst) & !CLOSED;
        if consumed >= produced {
            return if produced >= self.capacity() {
                Pop::Exhausted
            } else {
                Pop::Empty
            };
        }
        // SeqCst: part of the ticket order, as in `try_push`.
        let ticket = self.deq.fetch_add(1, SeqCst);
        let Some(cell) = self.cell(ticket) else {
            return Pop::Exhausted;
        };
        let mut patience = PATIENCE;
        // Relaxed: only a hint; the swap below decides.
        while patience > 0 && cell.state.load(Relaxed) == EMPTY {
            crate::sync::spin_loop();
            patience -= 1;
        }
        // SeqCst: acquires the value published by the producer's CAS
        // (Acquire would do for that) and orders this step in the waiter
        // protocol's total order.
        if cell.state.swap(TAKEN, SeqCst) == FULL {
            // SAFETY: we swapped `FULL` out: the value is published (the
            // swap synchronised with the producer's CAS) and ours alone.
            Pop::Value(unsafe { cell.read() })
        } else {
            Pop::Retry
        }
    }

    /// Refuses every ticket taken from now on.
    pub(super) fn close(&self) {
        // SeqCst: a producer whose `fetch_add` comes later in the total
        // order sees the bit in the value it gets back.
        let before = self.enq.fetch_or(CLOSED, SeqCst);
        if before & CLOSED == 0 {
            // Release: pairs with the Acquire in `len`; only `len` reads it.
            self.closed_at.store(before, Release);
        }
    }

    /// Published values not yet taken; exact when no operation is in
    /// flight (a poisoned cell used one ticket of each kind; tickets taken
    /// after `close` are not counted).
    pub(super) fn len(&self) -> usize {
        // Acquire (all three): only a snapshot; the values are not read.
        let consumed = self.deq.load(Acquire).min(self.capacity());
        let produced = (self.enq.load(Acquire) & !CLOSED)
            .min(self.closed_at.load(Acquire))
            .min(self.capacity());
        produced.saturating_sub(consumed)
    }

    /// Puts `value` into the first cell of a segment nobody else can see
    /// yet (a new one, or the spare made new by [`reset`](Self::reset)).
    /// Ticket 0's cell is `cells[0]` however tickets are spread.
    pub(super) fn put_first(&self, value: T) {
        // SAFETY: the segment is private to this thread (see above).
        unsafe { self.cells[0].write(value) };
        // Relaxed (both): private; the CAS that links the segment publishes.
        self.cells[0].state.store(FULL, Relaxed);
        self.enq.store(1, Relaxed);
    }

    /// Undoes [`put_first`](Self::put_first) on a segment that was never
    /// published, handing the value back.
    pub(super) fn take_first(&self) -> T {
        // Relaxed (both): still private.
        self.cells[0].state.store(EMPTY, Relaxed);
        self.enq.store(0, Relaxed);
        // SAFETY: private, and `put_first` left a value in cell 0.
        unsafe { self.cells[0].read() }
    }

    /// Makes a drained segment new again.
    ///
    /// Only for a segment no other thread can reach, whose every cell went
    /// to a consumer (as for any segment the queue retired): it holds no
    /// value, so nothing is leaked.
    pub(super) fn reset(&self) {
        // Relaxed (all): private until the linking CAS publishes it.
        for cell in self.cells.iter() {
            cell.state.store(EMPTY, Relaxed);
        }
        self.enq.store(0, Relaxed);
        self.deq.store(0, Relaxed);
        self.closed_at.store(usize::MAX, Relaxed);
        self.next.store(std::ptr::null_mut(), Relaxed);
    }
}

impl<T> Drop for Segment<T> {
    fn drop(&mut self) {
        // `&mut self`: no operation is in flight, so a `FULL` cell holds a
        // value nobody took, dropped here exactly once; a value whose drop
        // panics does not stop the others' (as in `Vec`).
        let mut cells = self.cells.iter_mut();
        crate::drain::drop_all(&mut || {
            cells.find_map(|cell| {
                (crate::sync::u8_get_mut(&mut cell.state) == FULL).then(|| {
                    // SAFETY: `FULL` means an initialized value that no
                    // consumer swapped out; we own the segment, and the
                    // iterator never yields this cell again.
                    unsafe { cell.read() }
                })
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every ticket below the capacity maps to its own cell, for cells of
    /// several sizes and capacities that do and do not spread.
    fn assert_bijection<T>(capacity: usize) {
        let segment = Segment::<T>::boxed(capacity);
        // SAFETY: just allocated, freed below, never shared.
        let segment = unsafe { Box::from_raw(segment) };
        let base = segment.cells.as_ptr();
        let mut seen = vec![false; capacity];
        for ticket in 0..capacity {
            let cell = segment.cell(ticket).expect("inside the segment");
            // SAFETY: `cell` points into `cells`, whose start is `base`.
            let index = unsafe { (cell as *const Cell<T>).offset_from(base) } as usize;
            assert!(!seen[index], "ticket {ticket} reuses cell {index}");
            seen[index] = true;
        }
        assert!(segment.cell(capacity).is_none());
        assert_eq!(segment.cell(0).map(|c| c as *const _), Some(base));
    }

    #[test]
    fn tickets_map_to_distinct_cells() {
        // Fewer sizes under miri (each bijection walks every cell); the
        // ones kept still cover unspread, spread and non-power-of-two.
        let capacities: &[usize] = if cfg!(miri) {
            &[1, 3, 16, 256, 1000]
        } else {
            &[1, 2, 3, 7, 8, 16, 64, 256, 1000, 1024]
        };
        for &capacity in capacities {
            assert_bijection::<u8>(capacity);
            assert_bijection::<u64>(capacity);
            assert_bijection::<[u64; 3]>(capacity);
            assert_bijection::<[u8; 200]>(capacity);
            assert_bijection::<()>(capacity);
        }
    }

    #[test]
    fn consecutive_tickets_use_different_lines_when_spread() {
        let segment = Segment::<u64>::boxed(256);
        // SAFETY: just allocated, freed below, never shared.
        let segment = unsafe { Box::from_raw(segment) };
        assert!(segment.spread_shift > 0, "256 cells of 16 bytes spread");
        let line = |t: usize| segment.cell(t).unwrap() as *const Cell<u64> as usize / 64;
        for t in 0..255 {
            assert_ne!(
                line(t),
                line(t + 1),
                "tickets {t} and {} share a line",
                t + 1
            );
        }
    }
}
