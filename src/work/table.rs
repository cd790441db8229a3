//! The id -> item table: a segmented array of slots that never moves.
//!
//! Segment `k` holds `FIRST << k` slots and is allocated on first use by a
//! compare-and-swap into a fixed directory (the loser frees its copy), so
//! the table grows without a resize, a copy or a lock. A slot holds one
//! strong count of its item's `Arc` as a raw pointer; readers pin the epoch,
//! load the pointer and take their own count; a remover unlinks the pointer
//! and drops the slot's count through the epoch, after every reader that
//! could have seen it has unpinned.
//!
//! Slot indices are recycled through lock-free free lists: Treiber stacks
//! threaded through the slots themselves (slots are never freed while the
//! table lives), whose heads pack a 32-bit tag beside the index so that a
//! pop that read a stale `next` fails its compare-and-swap (no ABA unless
//! one thread stalls across 2^32 operations on one list). There is one list
//! per stripe of threads ([`FREE_STRIPES`], picked by
//! [`thread_index`](crate::sync::thread_index)): a thread pushes the slots
//! it frees on its own list and pops its own list first, so workers that
//! each add and remove do not fight over one head; it pops the other lists
//! before it grows the table, so the slot count still follows the peak
//! number of stored items. LIFO reuse keeps recently used slots warm in the
//! cache. Each slot also keeps a generation
//! that goes into the [`ItemId`], so an old id never finds the slot's next
//! item.

use std::ptr;
use std::sync::Arc;

use super::item::{Item, ItemId};
use crate::sync::epoch::Guard;
use crate::sync::{
    AtomicPtr, AtomicU64, AtomicUsize, CachePadded, Ordering::AcqRel, Ordering::Acquire,
    Ordering::Relaxed, Ordering::Release,
};

/// log2 of the first segment's size (small under loom to keep models small).
const FIRST_SHIFT: u32 = if cfg!(unlocked_loom) { 1 } else { 5 };
/// Enough segments for 2^32 slots.
const SEGMENTS: usize = (33 - FIRST_SHIFT) as usize;
/// Free lists (a power of two); two under loom (see `push_stripe`).
const FREE_STRIPES: usize = if cfg!(unlocked_loom) { 2 } else { 8 };

/// One slot: an item pointer (null when free) and its generation.
pub(crate) struct Slot<T> {
    item: AtomicPtr<Item<T>>,
    /// Bumped by each remove; read by the next owner of the slot index,
    /// which got the index through the free list (a happens-before edge).
    generation: AtomicU64,
    /// While on the free list: the next free index plus one (0: none).
    next_free: AtomicU64,
}

impl<T> Slot<T> {
    fn new() -> Slot<T> {
        Slot {
            item: AtomicPtr::new(ptr::null_mut()),
            generation: AtomicU64::new(0),
            next_free: AtomicU64::new(0),
        }
    }
}

/// The free list's head word: `tag << 32 | (index + 1)`, 0 in the low half
/// meaning empty.
#[derive(Clone, Copy)]
struct FreeHead(u64);

impl FreeHead {
    fn top(self) -> Option<u32> {
        (self.0 as u32).checked_sub(1)
    }
    /// The next head: `top` (index plus one, 0 for empty), tag bumped.
    fn then(self, top_plus_one: u64) -> FreeHead {
        FreeHead(((self.0 >> 32).wrapping_add(1) << 32) | top_plus_one)
    }
}

pub(crate) struct Table<T> {
    segments: [AtomicPtr<Slot<T>>; SEGMENTS],
    /// Slot indices handed out so far (one past the highest).
    next: CachePadded<AtomicUsize>,
    /// Heads of the free lists ([`FreeHead`]), one per stripe.
    free: [CachePadded<AtomicU64>; FREE_STRIPES],
}

// SAFETY: the table owns `Arc<Item<T>>`s behind raw pointers; items move
// between threads (`T: Send`) and are read by reference from several
// threads at once through claims and snapshots (`T: Sync`).
unsafe impl<T: Send + Sync> Send for Table<T> {}
// SAFETY: as above.
unsafe impl<T: Send + Sync> Sync for Table<T> {}

/// Segment number and offset of slot `index`.
fn locate(index: u32) -> (usize, usize) {
    let biased = index as u64 + (1 << FIRST_SHIFT);
    let bit = 63 - biased.leading_zeros();
    let segment = (bit - FIRST_SHIFT) as usize;
    (segment, (biased - (1 << bit)) as usize)
}

fn segment_len(segment: usize) -> usize {
    1 << (segment as u32 + FIRST_SHIFT)
}

impl<T> Table<T> {
    pub(crate) fn new() -> Table<T> {
        Table {
            segments: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            next: CachePadded::new(AtomicUsize::new(0)),
            free: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
        }
    }

    /// The slot at `index`, if its segment exists.
    fn slot(&self, index: u32) -> Option<&Slot<T>> {
        let (segment, offset) = locate(index);
        // Acquire: pairs with the Release of the CAS that installed the
        // segment, so its slots are initialised.
        let base = self.segments[segment].load(Acquire);
        // SAFETY: a non-null segment has `segment_len(segment)` slots and is
        // freed only in `drop` (`&mut self`), so it lives as long as `&self`.
        unsafe { base.as_ref().map(|_| &*base.add(offset)) }
    }

    /// The slot at `index`, allocating its segment if needed.
    fn slot_or_alloc(&self, index: u32) -> &Slot<T> {
        let (segment, _) = locate(index);
        let cell = &self.segments[segment];
        // Acquire: as in `slot`.
        if cell.load(Acquire).is_null() {
            let len = segment_len(segment);
            let fresh: Box<[Slot<T>]> = (0..len).map(|_| Slot::new()).collect();
            let fresh = Box::into_raw(fresh) as *mut Slot<T>;
            // AcqRel: Release publishes the new slots; Acquire on failure
            // makes the winner's slots visible to us.
            if cell
                .compare_exchange(ptr::null_mut(), fresh, AcqRel, Acquire)
                .is_err()
            {
                // SAFETY: our segment lost the race and was never shared.
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(fresh, len)) });
            }
        }
        self.slot(index).expect("segment installed above")
    }

    /// Stores `make(id)` in a free slot and returns the id.
    pub(crate) fn insert(&self, make: impl FnOnce(ItemId) -> Arc<Item<T>>) -> Arc<Item<T>> {
        let index = self.pop_free().unwrap_or_else(|| {
            // Relaxed: a plain counter; the slot's contents are published by
            // the item store below.
            let index = self.next.fetch_add(1, Relaxed);
            u32::try_from(index).expect("more than 2^32 work items stored at once")
        });
        let slot = self.slot_or_alloc(index);
        // Relaxed: we own this index; the remover that bumped the generation
        // handed the index over through the free list (a happens-before edge).
        let generation = slot.generation.load(Relaxed);
        let item = make(ItemId(generation << 32 | index as u64));
        // Release: publishes the item (its data and initial state) to readers
        // that load the pointer with Acquire.
        slot.item
            .store(Arc::into_raw(Arc::clone(&item)).cast_mut(), Release);
        item
    }

    /// The item stored under `id`, if it is still there.
    pub(crate) fn get(&self, id: ItemId, _guard: &Guard) -> Option<Arc<Item<T>>> {
        let slot = self.slot(id.slot())?;
        // Acquire: pairs with the Release store in `insert`.
        let p = slot.item.load(Acquire);
        // SAFETY: a linked pointer holds a strong count that is dropped only
        // through the epoch after unlinking; we are pinned (`_guard`).
        let item = unsafe { p.as_ref() }?;
        if item.id != id {
            return None;
        }
        // SAFETY: as above, the count is at least one while we are pinned.
        unsafe { Arc::increment_strong_count(p) };
        // SAFETY: we just took the strong count this `Arc` owns.
        Some(unsafe { Arc::from_raw(p) })
    }

    /// Unlinks `item` (which the caller has marked removed, so no one else
    /// unlinks it) and recycles its slot.
    pub(crate) fn unlink(&self, item: &Arc<Item<T>>, guard: &Guard) {
        let index = item.id.slot();
        let slot = self.slot(index).expect("a stored item's segment exists");
        // Acquire: pairs with the Release store in `insert`. Only the thread
        // that marked the item removed swaps it out, so the pointer is ours.
        let p = slot.item.swap(ptr::null_mut(), Acquire);
        debug_assert!(ptr::eq(p, Arc::as_ptr(item)));
        // Relaxed: the next owner gets the index through the free list.
        slot.generation
            .store((item.id.0 >> 32).wrapping_add(1) & u32::MAX as u64, Relaxed);
        // SAFETY: `p` is unlinked; readers pinned now may still hold it, so
        // its strong count is dropped after they unpin.
        unsafe { guard.defer_unchecked(move || drop(Arc::from_raw(p))) };
        self.push_free(index, slot);
    }

    /// The free list this thread pops first.
    fn own_stripe() -> usize {
        crate::sync::thread_index() & (FREE_STRIPES - 1)
    }

    /// The free list that slot `index` goes to: this thread's. Under loom,
    /// where every thread has stripe 0, the slot index picks it instead, so
    /// that the models see pops that move on to another list.
    fn push_stripe(index: u32) -> usize {
        if cfg!(unlocked_loom) {
            index as usize & (FREE_STRIPES - 1)
        } else {
            Self::own_stripe()
        }
    }

    /// Puts a slot index (whose slot is empty) on this thread's free list.
    fn push_free(&self, index: u32, slot: &Slot<T>) {
        let free = &self.free[Self::push_stripe(index)];
        // Relaxed: the CAS below re-checks the head.
        let mut head = FreeHead(free.load(Relaxed));
        loop {
            // Relaxed: published by the Release CAS below.
            slot.next_free.store(head.0 & u32::MAX as u64, Relaxed);
            // Release: publishes `next_free`, the emptied slot and its new
            // generation to the thread that pops this index (Acquire).
            match free.compare_exchange_weak(
                head.0,
                head.then(index as u64 + 1).0,
                Release,
                Relaxed,
            ) {
                Ok(_) => return,
                Err(actual) => head = FreeHead(actual),
            }
        }
    }

    /// Takes a slot index off a free list, if any: this thread's list
    /// first, then the others.
    fn pop_free(&self) -> Option<u32> {
        let own = Self::own_stripe();
        (0..FREE_STRIPES).find_map(|k| self.pop_free_from(&self.free[(own + k) % FREE_STRIPES]))
    }

    /// Takes a slot index off the free list headed by `free`, if any.
    fn pop_free_from(&self, free: &AtomicU64) -> Option<u32> {
        // Acquire: pairs with the Release CAS of the push that put the top
        // index there, so its `next_free` and generation are visible.
        let mut head = FreeHead(free.load(Acquire));
        loop {
            let top = head.top()?;
            let slot = self.slot(top).expect("a freed slot's segment exists");
            // Relaxed: ordered by the Acquire load of `head`; a stale value
            // (the slot was popped and pushed again meanwhile) makes the CAS
            // fail, because every push and pop bumps the tag.
            let next = slot.next_free.load(Relaxed);
            // Acquire: as for the load above (on failure, the new top's push).
            match free.compare_exchange_weak(head.0, head.then(next).0, Acquire, Acquire) {
                Ok(_) => return Some(top),
                Err(actual) => head = FreeHead(actual),
            }
        }
    }

    /// Calls `f` on every stored item (weakly consistent: items added or
    /// removed meanwhile may or may not be seen).
    pub(crate) fn for_each(&self, guard: &Guard, mut f: impl FnMut(&Arc<Item<T>>, &Guard)) {
        // Relaxed: a bound; slots published after it are "added meanwhile".
        let end = self.next.load(Relaxed).min(u32::MAX as usize + 1);
        for index in 0..end {
            let Some(slot) = self.slot(index as u32) else {
                continue;
            };
            // Acquire: pairs with the Release store in `insert`.
            let p = slot.item.load(Acquire);
            if p.is_null() {
                continue;
            }
            // SAFETY: linked, and we are pinned: the count is at least one.
            // `ManuallyDrop` lends the slot's count without taking it.
            let item = std::mem::ManuallyDrop::new(unsafe { Arc::from_raw(p) });
            f(&item, guard);
        }
    }
}

impl<T> Drop for Table<T> {
    fn drop(&mut self) {
        // The segments first, owned: freed even if an item's drop panics.
        let segments: Vec<Box<[Slot<T>]>> = self
            .segments
            .iter()
            .enumerate()
            .filter_map(|(segment, cell)| {
                // Acquire: `&mut self`, nothing in flight; pairs with the
                // install.
                let base = cell.load(Acquire);
                // SAFETY: installed segments have `segment_len` slots and
                // are freed only here, once.
                (!base.is_null()).then(|| unsafe {
                    Box::from_raw(ptr::slice_from_raw_parts_mut(base, segment_len(segment)))
                })
            })
            .collect();
        let mut items = segments.iter().flat_map(|s| s.iter()).filter_map(|slot| {
            // Acquire: as above.
            let p = slot.item.load(Acquire);
            // SAFETY: a linked pointer owns one strong count, dropped here
            // exactly once (unlinked ones were swapped to null, and the
            // iterator visits each slot once).
            (!p.is_null()).then(|| unsafe { Arc::from_raw(p) })
        });
        // An item whose data's `drop` panics does not stop the others'
        // (found in review: it leaked every later item), as in `Vec`.
        crate::drain::drop_all(&mut || items.next());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_covers_every_index_once() {
        let mut expected = (0usize, 0usize);
        for index in 0..10_000u32 {
            assert_eq!(locate(index), expected, "index {index}");
            expected.1 += 1;
            if expected.1 == segment_len(expected.0) {
                expected = (expected.0 + 1, 0);
            }
        }
        let (last, offset) = locate(u32::MAX);
        assert!(last < SEGMENTS && offset < segment_len(last));
    }
}
