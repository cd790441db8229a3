//! Statistics: striped counters, summed on read.
//!
//! Hits and misses are counted by readers, so they go to per-thread stripes
//! (each on its own cache line): with no more threads than stripes, a
//! reader writes only a line no other thread writes. The writer-side counts
//! live in each shard and are bumped under its lock. Every counter is a
//! `Relaxed` statistic; a sum taken while operations run is approximate,
//! one taken at quiescence (after the threads that used the cache were
//! joined, or otherwise synchronised with) is exact.

use crate::sync::{AtomicU64, CachePadded, Ordering::Relaxed};

/// A snapshot of a cache's counters, from [`Cache::stats`](super::Cache::stats).
///
/// Exact when no operation is in flight; approximate (each counter a value
/// it held during the call) otherwise.
///
/// # Examples
/// ```
/// use unlocked::Cache;
///
/// let cache = Cache::new(100);
/// cache.insert("a", 1);
/// cache.insert("a", 2); // an update, not an insert
/// assert_eq!(cache.get("a"), Some(2));
/// assert_eq!(cache.get("b"), None);
/// let stats = cache.stats();
/// assert_eq!((stats.inserts, stats.updates), (1, 1));
/// assert_eq!((stats.hits, stats.misses), (1, 1));
/// assert_eq!(stats.hit_ratio(), 0.5);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct CacheStats {
    /// `get`s (and the first look-ups of `get_or_insert_with` and friends)
    /// that found a live, unexpired entry.
    pub hits: u64,
    /// `get`s that found nothing, or only an expired entry.
    pub misses: u64,
    /// Inserts of a key that was not resident (a loader's result counts here).
    pub inserts: u64,
    /// Inserts over a resident, unexpired key.
    pub updates: u64,
    /// Entries the eviction policy pushed out to make room.
    pub evictions: u64,
    /// Expired entries dropped, wherever that happened (a sweep during
    /// inserts, `cleanup_expired`, an eviction or overwrite of an expired
    /// entry, `remove` or `clear` of one).
    pub expirations: u64,
    /// Entries removed by `remove` or `clear` (a missing key counts nothing).
    pub removals: u64,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or 0 when there were no look-ups.
    ///
    /// # Examples
    /// ```
    /// let stats = unlocked::CacheStats::default();
    /// assert_eq!(stats.hit_ratio(), 0.0);
    /// ```
    #[must_use]
    pub fn hit_ratio(&self) -> f64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            0.0
        } else {
            self.hits as f64 / lookups as f64
        }
    }
}

/// One reader stripe.
#[derive(Default)]
pub(crate) struct ReadCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
}

/// A shard's writer-side counters (bumped under the shard lock, with
/// [`bump_locked`]).
#[derive(Default)]
pub(crate) struct WriteCounters {
    pub(crate) inserts: AtomicU64,
    pub(crate) updates: AtomicU64,
    pub(crate) evictions: AtomicU64,
    pub(crate) expirations: AtomicU64,
    pub(crate) removals: AtomicU64,
}

/// Adds one to a statistics counter.
#[inline]
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// Adds one to a statistics counter that only the holder of one lock
/// writes (a shard's write counters): a load and a store, not a
/// read-modify-write, since the lock already excludes a concurrent bump.
#[inline]
pub(crate) fn bump_locked(counter: &AtomicU64) {
    // Relaxed: a statistic; the lock orders the writers, so the load sees
    // the previous holder's store and no increment is lost.
    let n = counter.load(Relaxed);
    // Relaxed: as above; readers of `stats` may see either value.
    counter.store(n + 1, Relaxed);
}

/// Reader stripes, indexed by a per-thread number.
pub(crate) struct ReadStripes {
    stripes: Box<[CachePadded<ReadCounters>]>,
}

impl ReadStripes {
    pub(crate) fn new() -> Self {
        // Under loom and shuttle `cores()` is 1: a single stripe keeps runs
        // deterministic.
        let n = if crate::sync::cores() == 1 {
            1
        } else {
            crate::sync::cores()
                .saturating_mul(2)
                .clamp(2, 256)
                .next_power_of_two()
        };
        ReadStripes {
            stripes: (0..n).map(|_| CachePadded::default()).collect(),
        }
    }

    /// This thread's stripe.
    #[inline]
    pub(crate) fn mine(&self) -> &ReadCounters {
        &self.stripes[crate::sync::thread_index() & (self.stripes.len() - 1)]
    }

    /// Adds the stripes into `stats`.
    pub(crate) fn sum_into(&self, stats: &mut CacheStats) {
        for s in self.stripes.iter() {
            stats.hits += s.hits.load(Relaxed);
            stats.misses += s.misses.load(Relaxed);
        }
    }
}

impl WriteCounters {
    /// Adds the counters into `stats`.
    pub(crate) fn sum_into(&self, stats: &mut CacheStats) {
        stats.inserts += self.inserts.load(Relaxed);
        stats.updates += self.updates.load(Relaxed);
        stats.evictions += self.evictions.load(Relaxed);
        stats.expirations += self.expirations.load(Relaxed);
        stats.removals += self.removals.load(Relaxed);
    }
}
