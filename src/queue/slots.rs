//! A bounded queue of values built from two index rings (SCQ's "indirection"
//! design, section 5 of the paper): `free` holds the indices of empty value
//! slots, `queued` the indices of filled ones, in FIFO order.
//!
//! A push takes an index from `free`, writes the value into that slot, then
//! appends the index to `queued`; a pop takes an index from `queued`, moves the
//! value out, then returns the index to `free`. Whoever holds an index owns
//! its slot exclusively, so slot accesses never race, and a thread stalled
//! while holding an index only hides one slot: the others go on.
//!
//! This is the only file of the queues with `unsafe` code.

use std::mem::MaybeUninit;

use super::ring::{IndexRing, RingClosed};
use crate::sync::UnsafeCell;

/// Why a push into a [`SlotRing`] did not happen; the value comes back.
#[derive(Debug)]
pub(crate) enum SlotPushError<T> {
    /// No free slot.
    Full(T),
    /// The `queued` ring is closed.
    Closed(T),
}

/// A fixed-capacity lock-free MPMC queue of values.
pub(crate) struct SlotRing<T> {
    free: IndexRing,
    queued: IndexRing,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

// SAFETY: values move between threads through the rings (a value pushed on
// one thread is popped on another), so `T: Send` is required and enough; a
// slot is only ever accessed by the thread holding its index, never shared.
unsafe impl<T: Send> Send for SlotRing<T> {}
// SAFETY: as above: `&SlotRing` only lets threads move values in and out,
// never share a `&T`, so `T: Send` suffices.
unsafe impl<T: Send> Sync for SlotRing<T> {}

impl<T> std::fmt::Debug for SlotRing<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotRing")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl<T> SlotRing<T> {
    /// A ring with room for `capacity` values (`1..=MAX_CAPACITY`).
    pub(crate) fn new(capacity: usize) -> Self {
        debug_assert!((1..=crate::queue::MAX_CAPACITY).contains(&capacity));
        let n = capacity.next_power_of_two();
        SlotRing {
            free: IndexRing::new_full(n, capacity),
            queued: IndexRing::new_empty(n),
            slots: (0..capacity)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn len(&self) -> usize {
        self.queued.len(self.capacity())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.queued.is_closed()
    }

    /// Closes the ring: pushes that start afterwards fail with `Closed`.
    pub(crate) fn close(&self) {
        self.queued.close();
    }

    /// Appends `value`, or hands it back when there is no free slot or the
    /// ring is closed.
    pub(crate) fn push(&self, value: T) -> Result<(), SlotPushError<T>> {
        let Some(index) = self.free.dequeue_unless_empty() else {
            return Err(if self.is_closed() {
                SlotPushError::Closed(value)
            } else {
                SlotPushError::Full(value)
            });
        };
        // SAFETY: `index` came from `free`, so this thread owns the slot and
        // it holds no value.
        unsafe { self.write(index, value) };
        match self.queued.enqueue(index) {
            Ok(()) => Ok(()),
            Err(RingClosed) => {
                // SAFETY: the enqueue failed, so the index was never
                // published: this thread still owns the slot we just filled.
                let value = unsafe { self.take(index) };
                self.release(index);
                Err(SlotPushError::Closed(value))
            }
        }
    }

    /// Appends `value`; when no slot is free, displaces the oldest value and
    /// returns it. Fails only if the ring is closed.
    pub(crate) fn force_push(&self, mut value: T) -> Result<Option<T>, SlotPushError<T>> {
        let mut backoff = crate::sync::Backoff::default();
        loop {
            match self.push(value) {
                Ok(()) => return Ok(None),
                Err(SlotPushError::Closed(v)) => return Err(SlotPushError::Closed(v)),
                Err(SlotPushError::Full(v)) => value = v,
            }
            if let Some(index) = self.queued.dequeue() {
                // SAFETY: `index` came from `queued`, so this thread owns the
                // slot and it holds the oldest value, which we move out and
                // replace with ours.
                let oldest = unsafe { self.take(index) };
                // SAFETY: still the owner; the slot was just emptied.
                unsafe { self.write(index, value) };
                // The slot must go back whether or not a close raced us: the
                // displaced value is returned and ours takes its place.
                self.queued.enqueue_ignoring_close(index);
                return Ok(Some(oldest));
            }
            // Every index is held by a thread mid-operation; they will finish.
            backoff.snooze();
        }
    }

    /// Removes and returns the oldest value.
    pub(crate) fn pop(&self) -> Option<T> {
        let index = self.queued.dequeue_unless_empty()?;
        // SAFETY: `index` came from `queued`, so this thread owns the slot and
        // the producer's write is visible (see `ring` on memory ordering).
        let value = unsafe { self.take(index) };
        self.release(index);
        Some(value)
    }

    /// Checks the ring's invariants; call only when no operation is in
    /// flight. Every slot index is in exactly one of `free` and `queued`, and
    /// `len` matches the number queued.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn validate(&self) {
        let queued = self.queued.stored_indices();
        let mut all = self.free.stored_indices();
        all.extend(&queued);
        all.sort_unstable();
        let expected: Vec<u64> = (0..self.capacity() as u64).collect();
        assert_eq!(all, expected, "every slot index is free or queued, once");
        assert_eq!(self.len(), queued.len(), "len counts the queued indices");
    }

    /// Gives an empty slot's index back to `free`.
    fn release(&self, index: u64) {
        // `free` is never closed, so this cannot fail.
        let _ = self.free.enqueue(index);
    }

    /// # Safety
    /// The caller owns slot `index` (holds the index, taken from `free`) and
    /// the slot holds no value.
    unsafe fn write(&self, index: u64, value: T) {
        self.slots[index as usize].with_mut(|slot| {
            // SAFETY: exclusive access to the slot, per this function's
            // contract.
            unsafe { (*slot).write(value) };
        });
    }

    /// # Safety
    /// The caller owns slot `index` (holds the index, taken from `queued`) and
    /// the slot holds an initialized value, which the caller now owns.
    unsafe fn take(&self, index: u64) -> T {
        self.slots[index as usize].with(|slot| {
            // SAFETY: exclusive access to an initialized slot, per this
            // function's contract; the value is moved out exactly once
            // because the index goes back to `free` right after.
            unsafe { (*slot).assume_init_read() }
        })
    }
}

impl<T> Drop for SlotRing<T> {
    fn drop(&mut self) {
        // `&mut self`: no operation is in flight, so every queued index is in
        // `queued` and every slot behind it holds a value dropped exactly once.
        // A value whose drop panics does not stop the others' (as in `Vec`).
        crate::drain::drop_all(&mut || self.pop());
    }
}

#[cfg(test)]
mod tests {
    use super::{SlotPushError, SlotRing};

    #[test]
    fn invariants_hold_after_mixed_sequential_ops() {
        let ring = SlotRing::new(3);
        ring.validate();
        for round in 0..if cfg!(miri) { 5 } else { 500 } {
            ring.push(round).unwrap();
            ring.push(round + 1).unwrap();
            assert_eq!(ring.force_push(round + 2).unwrap(), None);
            assert_eq!(ring.force_push(round + 3).unwrap(), Some(round));
            ring.validate();
            assert!(matches!(ring.push(0), Err(SlotPushError::Full(0))));
            assert_eq!(ring.pop(), Some(round + 1));
            assert_eq!(ring.pop(), Some(round + 2));
            assert_eq!(ring.pop(), Some(round + 3));
            assert_eq!(ring.pop(), None);
            ring.validate();
        }
    }

    #[test]
    fn invariants_hold_after_concurrent_ops() {
        let ring = SlotRing::new(4);
        let per_thread = if cfg!(miri) { 20 } else { 20_000 };
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let ring = &ring;
                s.spawn(move || {
                    for i in 0..per_thread {
                        let _ = ring.force_push(t * per_thread + i);
                        let _ = ring.pop();
                    }
                });
            }
        });
        ring.validate();
    }

    #[test]
    fn closed_ring_hands_values_back() {
        let ring = SlotRing::new(2);
        ring.push(1).unwrap();
        ring.close();
        assert!(matches!(ring.push(2), Err(SlotPushError::Closed(2))));
        ring.validate();
        assert_eq!(ring.pop(), Some(1));
        ring.validate();
    }
}
