//! A shard's table: open addressing with linear probing over an array of
//! entry pointers, sized once for the shard's capacity so it never grows.
//!
//! A slot holds null (never used since the last rebuild, ends a probe), the
//! tombstone (a removed entry; a probe goes on) or an entry pointer. Only
//! the shard's writer (holding the lock) stores into slots; readers only
//! load. Entries never move between slots of one table: a key stays in its
//! slot while resident, so a reader that walks the probe sequence sees, for
//! the key it looks for, either its slot's state at the moment of the load
//! or a null/tombstone that was there at some moment during its walk.
//!
//! Beside each slot a one-byte *tag* says what the slot holds: `EMPTY`
//! (null), `TOMBSTONE`, or 8 bits of the key's hash (never 0 or 1). A probe
//! walks the tags (64 to a cache line) and loads a slot's pointer, and
//! dereferences the entry, only where the tag matches; without tags every
//! occupied slot on the way costs a cache miss on its entry.
//!
//! Removal writes a tombstone, unless the next slot is null: then the slot
//! and any tombstones just before it become null again (no key can lie
//! beyond a null in its probe sequence). When tombstones pile up the writer
//! rebuilds the table into a fresh array and publishes it by swapping the
//! shard's table pointer; the old array is frozen from then on and retired
//! through the epoch collector (the entries move, they are not retired).

use std::borrow::Borrow;
use std::ptr::NonNull;

use super::entry::{Entry, Slot};
use crate::sync::{AtomicPtr, AtomicU8, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

/// Tag of a slot never used since the last rebuild (its pointer is null).
pub(crate) const EMPTY: u8 = 0;
/// Tag of a removed entry's slot (its pointer is the tombstone).
pub(crate) const TOMBSTONE: u8 = 1;

/// The tag of a key with this hash: 8 bits the shard and home slot do not
/// use (for tables under 2^32 slots), never `EMPTY` or `TOMBSTONE`.
#[inline]
pub(crate) fn tag_of(hash: u64) -> u8 {
    ((hash >> 32) as u8).max(2)
}

/// The tombstone: a non-null address no allocation can have.
#[inline]
pub(crate) fn tombstone<K, V>() -> *mut Entry<K, V> {
    NonNull::dangling().as_ptr()
}

/// Slots for a shard of `capacity` entries: 1.75 times the capacity, at
/// least 4. Live entries then fill at most 4/7 of it, and tombstones have
/// the rest up to the 3/4 occupancy limit before a rebuild. Not rounded to
/// a power of two (probes start by multiply-shift, see [`Table::start`]),
/// so the memory per entry does not jump with the capacity.
pub(crate) fn slots_for(capacity: usize) -> usize {
    capacity
        .saturating_add(capacity.div_ceil(4).saturating_mul(3))
        .max(4)
}

pub(crate) struct Table<K, V> {
    slots: Box<[Slot<K, V>]>,
    tags: Box<[AtomicU8]>,
}

/// What a writer's probe for a key found.
pub(crate) enum Probe<'t, K, V> {
    /// The key is resident in slot `.0`.
    Found(usize, &'t Entry<K, V>),
    /// The key is absent.
    Absent,
}

impl<K, V> Table<K, V> {
    pub(crate) fn new(slots: usize) -> Self {
        debug_assert!(slots >= 4);
        Table {
            slots: (0..slots)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            tags: (0..slots).map(|_| AtomicU8::new(EMPTY)).collect(),
        }
    }

    /// Where `hash`'s probe sequence starts: multiply-shift of the hash's
    /// low 32 bits onto `0..len` (the shard takes the top bits and the tag
    /// bits 32 to 39, so the three are independent).
    #[inline]
    fn start(&self, hash: u64) -> usize {
        ((u128::from(hash as u32) * self.slots.len() as u128) >> 32) as usize
    }

    /// The slot after `i`, wrapping.
    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() {
            0
        } else {
            i + 1
        }
    }

    /// The slot before `i`, wrapping.
    #[inline]
    fn prev(&self, i: usize) -> usize {
        i.checked_sub(1).unwrap_or(self.slots.len() - 1)
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Most slots in use (entries plus tombstones) before a rebuild: 3/4,
    /// so a probe always meets a null.
    pub(crate) fn occupancy_limit(&self) -> usize {
        self.slots.len() * 3 / 4
    }

    /// Loads slot `i` (entry, tombstone or null).
    #[inline]
    pub(crate) fn load(&self, i: usize) -> *mut Entry<K, V> {
        // Acquire: pairs with the Release store that published the entry,
        // so its fields are visible before the caller dereferences it.
        self.slots[i].load(Acquire)
    }

    /// Slot `i` itself, for the key's node to point at (its address stays
    /// put while the table lives; the array is never reallocated).
    #[inline]
    pub(crate) fn slot_ptr(&self, i: usize) -> *const Slot<K, V> {
        &self.slots[i]
    }

    /// The index of a slot of this table, from its address. Writer only.
    pub(crate) fn index_of(&self, slot: *const Slot<K, V>) -> usize {
        let offset = (slot as usize).wrapping_sub(self.slots.as_ptr() as usize);
        let i = offset / std::mem::size_of::<Slot<K, V>>();
        debug_assert!(i < self.slots.len(), "a slot of this table");
        i
    }

    /// Slot `i`'s tag (for the invariant checker).
    pub(crate) fn tag(&self, i: usize) -> u8 {
        // Acquire: as in `find`.
        self.tags[i].load(Acquire)
    }

    /// Finds `key`. Lock-free: readers and the writer both use it.
    ///
    /// The returned reference is valid while the caller stays pinned (the
    /// entry is retired, not freed, when unlinked) or holds the lock.
    #[inline]
    pub(crate) fn find<Q>(&self, hash: u64, key: &Q) -> Probe<'_, K, V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let tag = tag_of(hash);
        let mut i = self.start(hash);
        for _ in 0..self.slots.len() {
            // Acquire: pairs with the Release tag store in `publish`, so a
            // matching tag's slot pointer (stored before it) is visible.
            let t = self.tags[i].load(Acquire);
            if t == EMPTY {
                return Probe::Absent;
            }
            if t == tag {
                let p = self.load(i);
                // The slot may have changed since its tag was read.
                if !p.is_null() && p != tombstone() {
                    // A non-null, non-tombstone slot points at an entry
                    // that is freed only through the epoch collector.
                    // SAFETY: it is freed after it was unlinked, and the
                    // caller is pinned or holds the lock.
                    let e = unsafe { &*p };
                    if e.key.borrow() == key {
                        return Probe::Found(i, e);
                    }
                }
            }
            i = self.next(i);
        }
        Probe::Absent
    }

    /// First free slot (null or tombstone) on `hash`'s probe sequence, and
    /// whether it is a tombstone. Writer only; the key must be absent.
    pub(crate) fn free_slot(&self, hash: u64) -> (usize, bool) {
        let mut i = self.start(hash);
        for _ in 0..self.slots.len() {
            // Relaxed: the writer reads its own stores (under the lock).
            let p = self.slots[i].load(Relaxed);
            if p.is_null() {
                return (i, false);
            }
            if p == tombstone() {
                return (i, true);
            }
            i = self.next(i);
        }
        unreachable!("the occupancy limit keeps a null in the table");
    }

    /// Publishes `entry`, whose key hashes to `hash`, in the free slot `i`.
    /// Writer only.
    pub(crate) fn publish(&self, i: usize, entry: *mut Entry<K, V>, hash: u64) {
        // Release: publishes the entry's fields to readers that load the
        // slot with Acquire.
        self.slots[i].store(entry, Release);
        // Release: publishes the slot pointer to readers that load the tag
        // with Acquire; from here on probes for the key stop at this slot.
        self.tags[i].store(tag_of(hash), Release);
    }

    /// Replaces the entry in slot `i` by a new one for the same key (the
    /// tag stays). Writer only.
    pub(crate) fn replace(&self, i: usize, entry: *mut Entry<K, V>) {
        // Release: publishes the entry's fields to readers that load the
        // slot with Acquire.
        self.slots[i].store(entry, Release);
    }

    /// Unlinks slot `i`; returns how many tombstones the table gained
    /// (1, or minus the number cleared). Writer only.
    pub(crate) fn unlink(&self, i: usize) -> isize {
        let next = self.next(i);
        // Relaxed: the writer reads its own stores (under the lock).
        if !self.slots[next].load(Relaxed).is_null() {
            // Relaxed: a tombstone publishes no data; readers that still
            // loaded the old pointer are protected by the epoch.
            self.slots[i].store(tombstone(), Relaxed);
            // Relaxed: a reader that still sees the old tag loads the slot
            // and finds the tombstone or the old entry (epoch-protected).
            self.tags[i].store(TOMBSTONE, Relaxed);
            return 1;
        }
        // Relaxed: as above; a null publishes no data either.
        self.slots[i].store(std::ptr::null_mut(), Relaxed);
        // Relaxed: as above; the next slot is empty, so no probe needs to
        // pass this one.
        self.tags[i].store(EMPTY, Relaxed);
        let mut cleared = 0;
        let mut j = self.prev(i);
        // Relaxed: own stores, under the lock.
        while j != i && self.slots[j].load(Relaxed) == tombstone() {
            // Relaxed: as above.
            self.slots[j].store(std::ptr::null_mut(), Relaxed);
            // Relaxed: as above.
            self.tags[j].store(EMPTY, Relaxed);
            cleared += 1;
            j = self.prev(j);
        }
        -cleared
    }

    /// A fresh table of `slots` slots (more than this table's live entries
    /// divided by 3/4) holding this one's entries (not
    /// yet published: plain stores suffice, the pointer swap publishes it).
    /// Their nodes still point at the old slots: see [`Table::point_nodes`].
    pub(crate) fn rebuilt(&self, slots: usize) -> Table<K, V> {
        let fresh = Table::new(slots);
        for slot in self.slots.iter() {
            // Relaxed: own stores, under the lock.
            let p = slot.load(Relaxed);
            if p.is_null() || p == tombstone() {
                continue;
            }
            // SAFETY: a linked entry is alive while the lock is held, and
            // so is its node (`Entry::node`'s contract).
            let hash = unsafe { (*p).node() }.hash();
            let (i, _) = fresh.free_slot(hash);
            // Relaxed: the table is published by the Release swap of the
            // shard's table pointer.
            fresh.slots[i].store(p, Relaxed);
            // Relaxed: as above.
            fresh.tags[i].store(tag_of(hash), Relaxed);
        }
        fresh
    }

    /// Points every linked entry's node at its slot in this table, once the
    /// table is where it will stay (after a rebuild moved the entries here).
    /// Writer only.
    pub(crate) fn point_nodes(&self) {
        for i in 0..self.slots.len() {
            // Relaxed: own stores, under the lock.
            let p = self.slots[i].load(Relaxed);
            if p.is_null() || p == tombstone() {
                continue;
            }
            // SAFETY: linked entries (and so their live nodes) are alive
            // while the lock is held.
            unsafe { (*p).node() }.set_slot(self.slot_ptr(i));
        }
    }

    /// Every entry pointer in the table (neither null nor tombstone), in
    /// slot order. Writer (or owner) only.
    pub(crate) fn entries(&self) -> impl Iterator<Item = *mut Entry<K, V>> + '_ {
        self.slots.iter().filter_map(|slot| {
            // Relaxed: own stores, under the lock or with exclusive access.
            let p = slot.load(Relaxed);
            (!p.is_null() && p != tombstone()).then_some(p)
        })
    }
}
