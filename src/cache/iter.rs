//! [`Iter`]: a weakly consistent walk over the shards' tables.
//!
//! The iterator stays pinned for its whole life and walks, shard by shard,
//! the table that was current when it reached that shard. Writers go on
//! meanwhile: a table is only ever changed by single-slot stores, and one
//! that a rebuild or `clear` replaced is frozen from then on (and kept alive
//! by the pin). So every entry yielded was resident at some moment of the
//! walk, an entry resident and unchanged throughout sits in one slot of the
//! table walked and is yielded once, and a key removed and reinserted in
//! another slot may be met twice.

use std::fmt;

use super::table::{tombstone, Table};
use super::Cache;
use crate::sync::epoch::{self, Guard};

/// Iterator over clones of a [`Cache`]'s entries; from [`Cache::iter`].
///
/// # Examples
/// ```
/// let cache = unlocked::Cache::new(4);
/// cache.insert("a", 1);
/// assert_eq!(cache.iter().collect::<Vec<_>>(), [("a", 1)]);
/// ```
pub struct Iter<'a, K, V, S> {
    cache: &'a Cache<K, V, S>,
    guard: Guard,
    /// Next shard to start.
    shard: usize,
    /// The table being walked (valid while `guard` is pinned), or null.
    table: *const Table<K, V>,
    slot: usize,
}

impl<K, V, S> fmt::Debug for Iter<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter")
            .field("shard", &self.shard)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

impl<'a, K, V, S> Iter<'a, K, V, S> {
    pub(crate) fn new(cache: &'a Cache<K, V, S>) -> Self {
        Iter {
            cache,
            guard: epoch::pin(),
            shard: 0,
            table: std::ptr::null(),
            slot: 0,
        }
    }
}

impl<K: Clone, V: Clone, S> Iterator for Iter<'_, K, V, S> {
    type Item = (K, V);

    fn next(&mut self) -> Option<(K, V)> {
        loop {
            if self.table.is_null() {
                let shard = self.cache.shards.get(self.shard)?;
                self.shard += 1;
                self.table = shard.table(&self.guard);
                self.slot = 0;
            }
            // SAFETY: loaded while pinned by `self.guard`, which lives as
            // long as the iterator; tables are retired through the epoch.
            let table = unsafe { &*self.table };
            while self.slot < table.len() {
                let p = table.load(self.slot);
                self.slot += 1;
                if p.is_null() || p == tombstone() {
                    continue;
                }
                // SAFETY: entries are retired through the epoch; we are
                // pinned.
                let e = unsafe { &*p };
                if !self.cache.is_expired(e.expires) {
                    return Some((e.key.clone(), e.value.clone()));
                }
            }
            self.table = std::ptr::null();
        }
    }
}
