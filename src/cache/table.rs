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
//! Removal writes a tombstone, unless the next slot is null: then the slot
//! and any tombstones just before it become null again (no key can lie
//! beyond a null in its probe sequence). When tombstones pile up the writer
//! rebuilds the table into a fresh array and publishes it by swapping the
//! shard's table pointer; the old array is frozen from then on and retired
//! through the epoch collector (the entries move, they are not retired).

use std::borrow::Borrow;
use std::ptr::NonNull;

use super::entry::Entry;
use crate::sync::{AtomicPtr, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

/// The tombstone: a non-null address no allocation can have.
#[inline]
pub(crate) fn tombstone<K, V>() -> *mut Entry<K, V> {
    NonNull::dangling().as_ptr()
}

/// Slots for a shard of `capacity` entries: at least 1.5 times the capacity,
/// a power of two, at least 4. Live entries then fill at most 2/3 of it.
pub(crate) fn slots_for(capacity: usize) -> usize {
    capacity
        .saturating_add(capacity.div_ceil(2))
        .max(4)
        .checked_next_power_of_two()
        .expect("cache capacity too large for a table")
}

pub(crate) struct Table<K, V> {
    slots: Box<[AtomicPtr<Entry<K, V>>]>,
    mask: usize,
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
        debug_assert!(slots.is_power_of_two());
        Table {
            slots: (0..slots)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            mask: slots - 1,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Most slots in use (entries plus tombstones) before a rebuild: 3/4,
    /// so a probe always meets a null.
    pub(crate) fn occupancy_limit(&self) -> usize {
        self.slots.len() / 4 * 3
    }

    /// Loads slot `i` (entry, tombstone or null).
    #[inline]
    pub(crate) fn load(&self, i: usize) -> *mut Entry<K, V> {
        // Acquire: pairs with the Release store that published the entry,
        // so its fields are visible before the caller dereferences it.
        self.slots[i & self.mask].load(Acquire)
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
        let mut i = hash as usize & self.mask;
        for _ in 0..=self.mask {
            let p = self.load(i);
            if p.is_null() {
                return Probe::Absent;
            }
            if p != tombstone() {
                // SAFETY: a non-null, non-tombstone slot points at an entry
                // that is freed only through the epoch collector after it
                // was unlinked; the caller is pinned or holds the lock.
                let e = unsafe { &*p };
                if e.hash == hash && e.key.borrow() == key {
                    return Probe::Found(i, e);
                }
            }
            i = (i + 1) & self.mask;
        }
        Probe::Absent
    }

    /// Slot that holds exactly `entry`. Writer only; `entry` is linked.
    pub(crate) fn slot_of(&self, entry: *mut Entry<K, V>, hash: u64) -> usize {
        let mut i = hash as usize & self.mask;
        for _ in 0..=self.mask {
            // Relaxed: the writer reads its own stores (under the lock).
            if self.slots[i].load(Relaxed) == entry {
                return i;
            }
            i = (i + 1) & self.mask;
        }
        unreachable!("a linked entry is on its probe sequence");
    }

    /// First free slot (null or tombstone) on `hash`'s probe sequence, and
    /// whether it is a tombstone. Writer only; the key must be absent.
    pub(crate) fn free_slot(&self, hash: u64) -> (usize, bool) {
        let mut i = hash as usize & self.mask;
        for _ in 0..=self.mask {
            // Relaxed: the writer reads its own stores (under the lock).
            let p = self.slots[i].load(Relaxed);
            if p.is_null() {
                return (i, false);
            }
            if p == tombstone() {
                return (i, true);
            }
            i = (i + 1) & self.mask;
        }
        unreachable!("the occupancy limit keeps a null in the table");
    }

    /// Publishes `entry` in slot `i`. Writer only.
    pub(crate) fn publish(&self, i: usize, entry: *mut Entry<K, V>) {
        // Release: publishes the entry's fields to readers that load the
        // slot with Acquire.
        self.slots[i].store(entry, Release);
    }

    /// Unlinks slot `i`; returns how many tombstones the table gained
    /// (1, or minus the number cleared). Writer only.
    pub(crate) fn unlink(&self, i: usize) -> isize {
        let next = (i + 1) & self.mask;
        // Relaxed: the writer reads its own stores (under the lock).
        if !self.slots[next].load(Relaxed).is_null() {
            // Relaxed: a tombstone publishes no data; readers that still
            // loaded the old pointer are protected by the epoch.
            self.slots[i].store(tombstone(), Relaxed);
            return 1;
        }
        // Relaxed: as above; a null publishes no data either.
        self.slots[i].store(std::ptr::null_mut(), Relaxed);
        let mut cleared = 0;
        let mut j = (i + self.mask) & self.mask;
        // Relaxed: own stores, under the lock.
        while j != i && self.slots[j].load(Relaxed) == tombstone() {
            // Relaxed: as above.
            self.slots[j].store(std::ptr::null_mut(), Relaxed);
            cleared += 1;
            j = (j + self.mask) & self.mask;
        }
        -cleared
    }

    /// A fresh table of the same size holding this one's entries (not yet
    /// published: plain stores suffice, the pointer swap publishes it).
    pub(crate) fn rebuilt(&self) -> Table<K, V> {
        let fresh = Table::new(self.slots.len());
        for slot in self.slots.iter() {
            // Relaxed: own stores, under the lock.
            let p = slot.load(Relaxed);
            if p.is_null() || p == tombstone() {
                continue;
            }
            // SAFETY: linked entries are alive while the lock is held.
            let hash = unsafe { &*p }.hash;
            let (i, _) = fresh.free_slot(hash);
            // Relaxed: the table is published by the Release swap of the
            // shard's table pointer.
            fresh.slots[i].store(p, Relaxed);
        }
        fresh
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
