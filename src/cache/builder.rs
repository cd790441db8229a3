//! [`CacheBuilder`].

use std::fmt;

pub use crate::build_error::BuildError;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::time::Duration;

use super::{Cache, Listener, RandomState, RemovalCause, Weigher};
use crate::clock::{Clock, SystemClock};

/// Settings for a [`Cache`]; from [`Cache::builder`].
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use unlocked::{Cache, ManualClock};
///
/// let clock = ManualClock::new();
/// let cache: Cache<String, u32> = Cache::builder()
///     .max_capacity(10_000)
///     .time_to_live(Duration::from_secs(60))
///     .clock(clock.clone())
///     .build()
///     .unwrap();
/// cache.insert("k".to_string(), 1);
/// clock.advance(Duration::from_secs(61));
/// assert_eq!(cache.get("k"), None);
/// ```
#[must_use = "a builder does nothing until .build()"]
pub struct CacheBuilder<K, V, S = RandomState> {
    max_capacity: usize,
    max_weight: Option<u64>,
    weigher: Option<Weigher<K, V>>,
    ttl: Option<Duration>,
    shards: Option<usize>,
    clock: Option<Arc<dyn Clock>>,
    hasher: S,
    /// The hasher is the user's: mix its output (see `Cache::hash`).
    mix_hash: bool,
    listener: Option<Listener<K, V>>,
}

impl<K, V, S: fmt::Debug> fmt::Debug for CacheBuilder<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("max_weight", &self.max_weight)
            .field("weigher", &self.weigher.is_some())
            .field("time_to_live", &self.ttl)
            .field("shards", &self.shards)
            .field("clock", &self.clock)
            .field("hasher", &self.hasher)
            .field("eviction_listener", &self.listener.is_some())
            .finish()
    }
}

impl<K, V> CacheBuilder<K, V, RandomState> {
    pub(crate) fn new() -> Self {
        CacheBuilder {
            max_capacity: 0,
            max_weight: None,
            weigher: None,
            ttl: None,
            shards: None,
            clock: None,
            hasher: RandomState::new(),
            mix_hash: false,
            listener: None,
        }
    }
}

impl<K, V, S> CacheBuilder<K, V, S> {
    /// The most entries the cache holds (required, at least 1).
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::<u32, u32>::builder().max_capacity(3).build().unwrap();
    /// assert_eq!(cache.max_capacity(), 3);
    /// ```
    pub fn max_capacity(mut self, max_capacity: usize) -> Self {
        self.max_capacity = max_capacity;
        self
    }

    /// The most total weight the cache holds (at least 1), as weighed by
    /// the [`weigher`](Self::weigher), or 1 an entry without one (then the
    /// bound is on entries, like a smaller `max_capacity`).
    ///
    /// `max_capacity` stays required and still bounds the entry count (it
    /// also sizes the tables and the policy): set it to the most entries
    /// you expect. The cache evicts, in the policy's order, until both
    /// bounds hold. The weight is split across shards as the capacity is
    /// (shares differ by at most 1, and there are never more shards than
    /// `max_weight`); an entry heavier than its shard's share is never
    /// cached (see [`weigher`](Self::weigher)).
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::<u32, Vec<u8>>::builder()
    ///     .max_capacity(1000)
    ///     .max_weight(1 << 20)
    ///     .weigher(|_k, v| v.len() as u32)
    ///     .build()
    ///     .unwrap();
    /// cache.insert(1, vec![0; 4096]);
    /// assert_eq!(cache.weighted_size(), 4096);
    /// ```
    pub fn max_weight(mut self, max_weight: u64) -> Self {
        self.max_weight = Some(max_weight);
        self
    }

    /// Weighs each entry when it is inserted (a new key, an update, a
    /// loader's value); the total is bounded by
    /// [`max_weight`](Self::max_weight), which is then required. The weight
    /// is stored in the entry (in its padding for most types: no extra
    /// bytes), so reads never call the weigher.
    ///
    /// The weigher runs on the inserting thread, before the shard lock is
    /// taken (for a loader's value, under the key's single-flight lock): it
    /// should be cheap and must not call into the cache.
    ///
    /// - An insert makes room by evicting, in the policy's order, as many
    ///   entries as it takes; each counts in
    ///   [`CacheStats::evictions`](super::CacheStats::evictions) and is
    ///   shown to the listener as [`RemovalCause::Evicted`].
    /// - An update to a heavier value evicts in the same way until its
    ///   shard fits again (the updated key itself may be the victim).
    /// - An entry heavier than its shard's share of `max_weight` is not
    ///   cached: the insert counts as an insert and an eviction, and the
    ///   listener sees the new value as `Evicted`. If the key was resident,
    ///   its old value leaves as an update (`Replaced`) and the new one is
    ///   turned away as `Evicted`: afterwards the key is absent. Either way
    ///   the value is dropped once, and nothing panics. (An entry that is
    ///   also expired on arrival, a zero TTL, counts as an expiration and
    ///   is shown as `Expired` instead: expirations are counted wherever an
    ///   expired entry is dropped.)
    /// - A weight of 0 is allowed: such entries are bounded by
    ///   `max_capacity` alone.
    ///
    /// # Examples
    /// ```
    /// use unlocked::cache::{Cache, RemovalCause};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&seen);
    /// let cache = Cache::builder()
    ///     .max_capacity(100)
    ///     .max_weight(10)
    ///     .weigher(|_k: &u32, v: &String| v.len() as u32)
    ///     .eviction_listener(move |k: &u32, _v: &String, cause| log.lock().unwrap().push((*k, cause)))
    ///     .build()
    ///     .unwrap();
    /// cache.insert(1, "abcd".to_string());
    /// cache.insert(2, "efgh".to_string());
    /// cache.insert(3, "ijklmn".to_string()); // evicts until 6 more fit
    /// assert!(cache.weighted_size() <= 10);
    /// cache.insert(4, "x".repeat(11)); // heavier than the bound: not cached
    /// assert_eq!(cache.get(&4), None);
    /// assert!(seen.lock().unwrap().contains(&(4, RemovalCause::Evicted)));
    /// ```
    pub fn weigher(mut self, weigher: impl Fn(&K, &V) -> u32 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(weigher));
        self
    }

    /// Default time to live of entries added by `insert` and the loaders
    /// (`insert_with_ttl` sets its own). Without it entries never expire.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let cache = unlocked::Cache::<u32, u32>::builder()
    ///     .max_capacity(8)
    ///     .time_to_live(Duration::from_secs(3600))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(cache.time_to_live(), Some(Duration::from_secs(3600)));
    /// ```
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Number of shards (rounded up to a power of two, then down to at most
    /// `max_capacity` and at most 65536, so that a huge request cannot make
    /// `build` allocate that many). The default picks one from the capacity and the
    /// machine: at least 256 entries a shard, since every split costs hit
    /// ratio, and no more than 4 shards a core (rounded up to a power of
    /// two), since more buys no parallelism.
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::<u32, u32>::builder()
    ///     .max_capacity(1000)
    ///     .shards(4)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(cache.shards(), 4);
    /// ```
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// The clock TTLs are measured on (default: a [`SystemClock`]); tests
    /// pass a [`ManualClock`](crate::ManualClock).
    ///
    /// # Examples
    /// ```
    /// use unlocked::{Cache, ManualClock};
    /// let cache = Cache::<u32, u32>::builder()
    ///     .max_capacity(8)
    ///     .clock(ManualClock::new())
    ///     .build()
    ///     .unwrap();
    /// # drop(cache);
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The hasher for keys (default: [`RandomState`], foldhash keyed from
    /// the OS's randomness; pass std's
    /// `std::collections::hash_map::RandomState` for SipHash).
    ///
    /// # Examples
    /// ```
    /// use std::hash::BuildHasherDefault;
    /// use std::collections::hash_map::DefaultHasher;
    /// let cache = unlocked::Cache::<u32, u32>::builder()
    ///     .max_capacity(8)
    ///     .hasher(BuildHasherDefault::<DefaultHasher>::default())
    ///     .build()
    ///     .unwrap();
    /// cache.insert(1, 1);
    /// assert_eq!(cache.get(&1), Some(1));
    /// ```
    pub fn hasher<S2>(self, hasher: S2) -> CacheBuilder<K, V, S2> {
        CacheBuilder {
            max_capacity: self.max_capacity,
            max_weight: self.max_weight,
            weigher: self.weigher,
            ttl: self.ttl,
            shards: self.shards,
            clock: self.clock,
            hasher,
            mix_hash: true,
            listener: self.listener,
        }
    }

    /// Called with each entry that leaves the cache and why (see
    /// [`RemovalCause`]), after the cache's internal locks are released, on
    /// the thread whose operation removed it. A slow listener slows that
    /// operation down (and delays memory reclamation while it runs). A
    /// panic in it propagates into the operation once the cache's state is
    /// consistent and every other notice of the operation was delivered
    /// (`clear` and `cleanup_expired` still go through every shard).
    /// Dropping the cache notifies nothing: the entries still resident are
    /// dropped with it, as a `HashMap`'s are (call
    /// [`clear`](super::Cache::clear) first to see each one as `Removed`).
    ///
    /// # Examples
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use unlocked::cache::{Cache, RemovalCause};
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&seen);
    /// let cache = Cache::builder()
    ///     .max_capacity(8)
    ///     .eviction_listener(move |k: &u32, v: &u32, cause| log.lock().unwrap().push((*k, *v, cause)))
    ///     .build()
    ///     .unwrap();
    /// cache.insert(1, 10);
    /// cache.insert(1, 11);
    /// cache.remove(&1);
    /// assert_eq!(
    ///     *seen.lock().unwrap(),
    ///     [(1, 10, RemovalCause::Replaced), (1, 11, RemovalCause::Removed)]
    /// );
    /// ```
    pub fn eviction_listener(
        mut self,
        listener: impl Fn(&K, &V, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Builds the cache.
    ///
    /// # Errors
    /// [`BuildError`] for a zero capacity (or none set), zero shards, a
    /// zero time to live, a zero `max_weight`, or a weigher without a
    /// `max_weight`.
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::<&str, u32>::builder().max_capacity(100).build().unwrap();
    /// cache.insert("a", 1);
    /// assert_eq!(cache.get("a"), Some(1));
    /// ```
    pub fn build(self) -> Result<Cache<K, V, S>, BuildError>
    where
        K: Hash + Eq,
        S: BuildHasher,
    {
        if self.max_capacity == 0 {
            return Err(BuildError::ZeroCapacity);
        }
        if self.shards == Some(0) {
            return Err(BuildError::ZeroShards);
        }
        if self.ttl == Some(Duration::ZERO) {
            return Err(BuildError::ZeroTimeToLive);
        }
        if self.max_weight == Some(0) {
            return Err(BuildError::ZeroMaxWeight);
        }
        if self.weigher.is_some() && self.max_weight.is_none() {
            return Err(BuildError::WeigherWithoutMaxWeight);
        }
        // Every shard gets at least one entry and one unit of weight.
        let most = self.max_weight.map_or(self.max_capacity, |m| {
            self.max_capacity
                .min(usize::try_from(m).unwrap_or(usize::MAX))
        });
        let shards = shard_count(self.max_capacity, self.shards).min(prev_power_of_two(most));
        Ok(Cache::from_parts(
            self.max_capacity,
            self.max_weight,
            self.weigher,
            shards,
            self.ttl,
            self.clock.unwrap_or_else(|| Arc::new(SystemClock::new())),
            self.hasher,
            self.mix_hash,
            self.listener,
        ))
    }
}

/// Entries per shard below which the default does not split further.
const MIN_PER_SHARD: usize = 256;

/// The most shards a cache has (see [`CacheBuilder::shards`]).
const MAX_SHARDS: usize = 1 << 16;

/// The shard count: a power of two, at most `capacity` and [`MAX_SHARDS`].
fn shard_count(capacity: usize, requested: Option<usize>) -> usize {
    let most = prev_power_of_two(capacity).min(MAX_SHARDS);
    let n = match requested {
        Some(n) => n.checked_next_power_of_two().unwrap_or(most),
        None => {
            let cores = crate::sync::cores();
            let by_cores = cores.saturating_mul(4).next_power_of_two();
            prev_power_of_two((capacity / MIN_PER_SHARD).max(1)).min(by_cores)
        }
    };
    n.min(most)
}

/// The largest power of two `<= n` (`n >= 1`).
fn prev_power_of_two(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_counts() {
        assert_eq!(shard_count(1, None), 1);
        assert_eq!(shard_count(255, None), 1);
        assert_eq!(shard_count(1000, Some(3)), 4);
        assert_eq!(shard_count(3, Some(64)), 2);
        assert_eq!(shard_count(1, Some(usize::MAX)), 1);
        // Found in review: `shards(usize::MAX)` with a huge capacity asked
        // for 2^63 shards (a capacity-overflow panic in `build`).
        assert_eq!(shard_count(usize::MAX, Some(usize::MAX)), MAX_SHARDS);
        assert_eq!(shard_count(usize::MAX, Some(1 << 40)), MAX_SHARDS);
        let n = shard_count(1 << 30, None);
        assert!(n.is_power_of_two() && n > 1);
    }
}
