//! Recycled entry memory: the blocks of retired entries go back to their
//! shard's writers instead of to the allocator.
//!
//! An insert-heavy mix allocates an entry per insert and frees one per
//! update or eviction, and the frees come in batches from the epoch
//! collector (see `Ctx::retire`), often on another thread: glibc's
//! per-thread cache overflows and both sides take its slow paths, about a
//! quarter of a 50/50 mix in a profile. Here the collector's closure drops
//! the batch's keys and values in place and offers the emptied blocks to the
//! shard's [`Recycler`]; the shard's writer takes them, under its lock, for
//! the next inserts.
//!
//! The recycler is a list of batches: the collector pushes one (a CAS
//! loop) and a writer whose spares ran out takes the whole list (a swap, so
//! there is no ABA to guard against). An offer that finds the list holding
//! its limit frees its blocks instead, so a shard keeps about twice that
//! limit at most (the list and the writer's spares), whatever the workload.

use std::mem::MaybeUninit;
use std::ptr;

use super::entry::Entry;
use crate::sync::{
    AtomicPtr, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
    UnsafeCell,
};

/// Memory blocks, each allocated as a `Box<Entry<K, V>>` and holding no
/// entry (its key and value were dropped, or moved out). Dropping them
/// frees the memory only.
pub(crate) struct Blocks<K, V>(Vec<*mut Entry<K, V>>);

impl<K, V> Blocks<K, V> {
    /// No blocks.
    pub(crate) fn new() -> Self {
        Blocks(Vec::new())
    }

    /// Boxes `entry` in a recycled block if there is one, else in a new
    /// allocation.
    pub(crate) fn boxed(&mut self, entry: Entry<K, V>) -> Box<Entry<K, V>> {
        match self.0.pop() {
            Some(block) => {
                // `block` was allocated as a `Box<Entry<K, V>>` (the same
                // type, so the same layout) and holds no entry (the
                // `Blocks` invariant); it left the list, so it has one owner.
                // SAFETY: as above; written whole, then handed on as a box.
                unsafe {
                    block.write(entry);
                    Box::from_raw(block)
                }
            }
            None => Box::new(entry),
        }
    }

    /// Whether no block is left.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Drops the keys and values of retired entries in place and keeps
    /// their blocks. A value whose `drop` panics does not stop the others'
    /// (see [`crate::drain::drop_all`]); the blocks are then freed by the
    /// unwind.
    ///
    /// # Safety
    /// Each pointer in `retired` is an entry allocated as a `Box`, owned by
    /// the caller (unlinked, and no thread can reach it any more), and
    /// listed once.
    pub(crate) unsafe fn from_retired(retired: Vec<*mut Entry<K, V>>) -> Self {
        // Owns the memory from here: freed, not leaked, if a drop panics.
        let blocks = Blocks(retired);
        let mut next = blocks.0.iter();
        crate::drain::drop_all(&mut || next.next().map(|&e| InPlace(e)));
        blocks
    }
}

impl<K, V> Drop for Blocks<K, V> {
    fn drop(&mut self) {
        for block in self.0.drain(..) {
            // SAFETY: allocated as a `Box<Entry<K, V>>`, holding no entry
            // (the invariant): freed as uninitialised memory of that layout,
            // which drops nothing.
            drop(unsafe { Box::from_raw(block.cast::<MaybeUninit<Entry<K, V>>>()) });
        }
    }
}

/// Drops an entry's contents in place when dropped, not its memory.
struct InPlace<K, V>(*mut Entry<K, V>);

impl<K, V> Drop for InPlace<K, V> {
    fn drop(&mut self) {
        // SAFETY: `from_retired`'s contract: the entry is initialised and
        // owned, and each one is wrapped once.
        unsafe { ptr::drop_in_place(self.0) }
    }
}

/// A batch on the recycler's list.
struct Batch<K, V> {
    blocks: Blocks<K, V>,
    /// The batch pushed before it; written before the push's CAS, read
    /// after the take's swap (a cell, so that loom checks that ordering).
    next: UnsafeCell<*mut Batch<K, V>>,
}

/// Batches of blocks handed from the collector to a shard's writers: a
/// list that offers push onto and a writer takes whole.
pub(crate) struct Recycler<K, V> {
    /// The newest `Box<Batch>`, or null.
    head: AtomicPtr<Batch<K, V>>,
    /// Blocks on the list (counted before a push, uncounted after a take,
    /// so it never underflows); offers past `limit` free their blocks.
    pooled: AtomicUsize,
    limit: usize,
}

impl<K, V> Recycler<K, V> {
    /// Empty; keeps about `limit` blocks at most (more only while offers
    /// race).
    pub(crate) fn new(limit: usize) -> Self {
        Recycler {
            head: AtomicPtr::new(ptr::null_mut()),
            pooled: AtomicUsize::new(0),
            limit,
        }
    }

    /// Keeps `blocks` for the writers, or frees them if the list is full.
    pub(crate) fn offer(&self, blocks: Blocks<K, V>) {
        let n = blocks.0.len();
        // Relaxed: the count only bounds the list; no data depends on it.
        if n == 0 || self.pooled.load(Relaxed) >= self.limit {
            return;
        }
        // Relaxed: as above; sequenced before the push, so a take that
        // acquires this batch uncounts it after it was counted.
        self.pooled.fetch_add(n, Relaxed);
        let batch = Box::into_raw(Box::new(Batch {
            blocks,
            next: UnsafeCell::new(ptr::null_mut()),
        }));
        // Relaxed: the value is only linked below, and published by the
        // CAS.
        let mut head = self.head.load(Relaxed);
        loop {
            // SAFETY: `batch` is not published yet: still ours alone, as
            // is its cell.
            unsafe { (*batch).next.with_mut(|next| *next = head) };
            // Release: publishes the batch (its list, `next`, and the drops
            // of the entries' contents) to the writer whose take acquires
            // it. Relaxed on failure: the new head is only linked, as above.
            match self
                .head
                .compare_exchange_weak(head, batch, Release, Relaxed)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Takes every batch on the list, merged into one.
    pub(crate) fn take(&self) -> Option<Blocks<K, V>> {
        // Acquire: pairs with the Release of the offers that pushed the
        // batches. A swap of the whole list: no ABA, as nothing is read
        // from a node still on the list.
        let mut next = self.head.swap(ptr::null_mut(), Acquire);
        if next.is_null() {
            return None;
        }
        let mut all = Blocks::new();
        while !next.is_null() {
            // SAFETY: the swap took the list out, so its batches (published
            // boxes) have one owner, this call.
            let batch = unsafe { Box::from_raw(next) };
            // SAFETY: written before the push that published the batch,
            // which the swap acquired; no one writes it since.
            next = batch.next.with(|next| unsafe { *next });
            let mut blocks = batch.blocks;
            all.0.append(&mut blocks.0);
        }
        // Relaxed: see `pooled`.
        self.pooled.fetch_sub(all.0.len(), Relaxed);
        Some(all)
    }
}

impl<K, V> Drop for Recycler<K, V> {
    fn drop(&mut self) {
        drop(self.take());
    }
}

/// loom models only (`--cfg unlocked_loom`): a recycler of `u32` entries,
/// driven from `loom-tests` to check offers racing a take.
#[cfg(unlocked_loom)]
#[doc(hidden)]
pub struct ModelRecycler(Recycler<u32, u32>);

#[cfg(unlocked_loom)]
impl std::fmt::Debug for ModelRecycler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModelRecycler")
    }
}

#[cfg(unlocked_loom)]
impl ModelRecycler {
    /// A recycler that keeps about `limit` blocks.
    pub fn new(limit: usize) -> Self {
        ModelRecycler(Recycler::new(limit))
    }

    /// Retires `n` new entries as one batch and offers their blocks.
    pub fn offer(&self, n: u32) {
        let retired = (0..n)
            .map(|k| Box::into_raw(Box::new(Entry::new(super::entry::NEVER, 1, k, k))))
            .collect();
        // SAFETY: just allocated as boxes, never shared, each listed once.
        self.0.offer(unsafe { Blocks::from_retired(retired) });
    }

    /// Takes the list and reuses every block for a new entry (which is then
    /// dropped); returns how many there were.
    pub fn take(&self) -> usize {
        let Some(mut blocks) = self.0.take() else {
            return 0;
        };
        let n = blocks.0.len();
        for k in 0..n as u32 {
            drop(blocks.boxed(Entry::new(super::entry::NEVER, 1, k, k)));
        }
        n
    }
}

#[cfg(all(test, not(unlocked_loom)))]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::rc::Rc;

    use super::super::entry::NEVER;
    use super::*;

    /// A value that counts its drops, and may panic in one.
    struct Counted(Rc<std::cell::Cell<usize>>, bool);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
            assert!(!self.1, "a value whose drop panics");
        }
    }

    fn retired(
        drops: &Rc<std::cell::Cell<usize>>,
        n: usize,
        panicky: Option<usize>,
    ) -> Vec<*mut Entry<u32, Counted>> {
        (0..n)
            .map(|i| {
                let v = Counted(Rc::clone(drops), Some(i) == panicky);
                Box::into_raw(Box::new(Entry::new(NEVER, 1, i as u32, v)))
            })
            .collect()
    }

    #[test]
    fn retired_values_are_dropped_once_and_their_blocks_reused() {
        let drops = Rc::new(std::cell::Cell::new(0));
        let recycler = Recycler::new(64);
        // SAFETY: fresh boxes, owned here, each listed once.
        recycler.offer(unsafe { Blocks::from_retired(retired(&drops, 3, None)) });
        assert_eq!(drops.get(), 3, "the values go when the batch is offered");
        let mut spare = recycler.take().expect("the batch was kept");
        assert!(recycler.take().is_none(), "a take empties the list");
        let fresh: Vec<_> = (0..4)
            .map(|i| spare.boxed(Entry::new(NEVER, 1, i, Counted(Rc::clone(&drops), false))))
            .collect();
        assert!(spare.is_empty(), "three recycled, the fourth allocated");
        assert_eq!(
            fresh.iter().map(|e| e.key).collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        drop(fresh);
        assert_eq!(drops.get(), 7);
    }

    #[test]
    fn an_offer_past_the_limit_frees_its_blocks() {
        let drops = Rc::new(std::cell::Cell::new(0));
        let recycler = Recycler::new(2);
        for _ in 0..3 {
            // SAFETY: as above.
            recycler.offer(unsafe { Blocks::from_retired(retired(&drops, 2, None)) });
        }
        assert_eq!(drops.get(), 6);
        assert_eq!(
            recycler.take().map(|b| b.0.len()),
            Some(2),
            "the first batch only"
        );
        // SAFETY: as above.
        recycler.offer(unsafe { Blocks::from_retired(retired(&drops, 1, None)) });
        drop(recycler); // frees the kept block (miri checks the leak)
    }

    #[test]
    fn a_panicking_drop_stops_neither_the_other_drops_nor_the_frees() {
        let drops = Rc::new(std::cell::Cell::new(0));
        let batch = retired(&drops, 4, Some(1));
        let unwound = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: as above.
            drop(unsafe { Blocks::from_retired(batch) })
        }));
        assert!(unwound.is_err());
        assert_eq!(drops.get(), 4, "every value dropped once");
    }
}
