//! [`Cache`]: a sharded, bounded, concurrent cache whose reads take no lock.
//!
//! - `get` is lock-free and allocation-free; on a hit the only write to
//!   the entry is a saturating frequency bump, skipped once the counter is
//!   saturated. The hit is also counted for [`Cache::stats`], in a
//!   statistics stripe of the calling thread's (on a line of its own, two
//!   stripes a core: shared with another thread only when more threads
//!   read than that).
//! - Writers to one shard are serialised by the shard's lock, which also
//!   owns the eviction policy; capacity is strict per shard (entries are
//!   evicted before the newcomer is published), so `len()` never exceeds
//!   `max_capacity`.
//! - Optionally size-aware: with [`CacheBuilder::max_weight`] and
//!   [`CacheBuilder::weigher`], the total weight is bounded too, strictly
//!   per shard, with the weight stored in each entry (reads never weigh).
//! - Entries expire per entry (`insert_with_ttl`) or by the cache's default
//!   (`time_to_live`); expired entries are never returned and are reclaimed
//!   by writers as they go.
//! - `get_or_insert_with` and friends load each missing key once, however
//!   many callers ask at the same time.
//!
//! The design, every atomic ordering and the consistency of `iter` are in
//! [`docs::cache`](crate::docs::cache).

mod builder;
mod entry;
mod flight;
mod iter;
mod policy;
mod recycle;
mod shard;
#[cfg(unlocked_loom)]
pub use recycle::ModelRecycler;
mod stats;
mod table;

use std::borrow::Borrow;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

pub use builder::{BuildError, CacheBuilder};
pub use iter::Iter;
pub use stats::CacheStats;

use entry::{Entry, NEVER};
use flight::{Flight, InFlight};
use shard::{nanos, Ctx, Resident, Shard};
use stats::{bump, ReadStripes};
use table::Probe;

use crate::clock::Clock;
use crate::sync::{epoch, CachePadded};

/// The default key hasher of [`Cache`]: foldhash's fast hash, keyed with
/// 64 bits from the operating system's randomness per cache.
///
/// The key comes from std's `RandomState` (SipHash keys drawn from the OS,
/// a fresh one per instance), so keys chosen without knowledge of it do not
/// pile onto one probe sequence. foldhash is not a cryptographic hash: a
/// service whose keys come from an attacker who may also learn
/// hash-dependent timings can pick std's SipHash
/// `std::collections::hash_map::RandomState` with [`CacheBuilder::hasher`].
/// Chosen for speed: hashing a `u64` takes about a nanosecond instead of
/// SipHash's five, a fifth of a cache hit (figures in `docs/cache.md`).
///
/// # Examples
/// ```
/// use std::hash::BuildHasher;
/// let state = unlocked::cache::RandomState::new();
/// assert_eq!(state.hash_one(7u64), state.hash_one(7u64));
/// let cache: unlocked::Cache<u64, u64, unlocked::cache::RandomState> = unlocked::Cache::new(4);
/// cache.insert(7, 7);
/// assert_eq!(cache.get(&7), Some(7));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RandomState(foldhash::fast::SeedableRandomState);

impl RandomState {
    /// A hasher with a fresh random key.
    ///
    /// # Examples
    /// ```
    /// use std::hash::BuildHasher;
    /// let (a, b) = (unlocked::cache::RandomState::new(), unlocked::cache::RandomState::new());
    /// // Two instances (almost surely) hash differently.
    /// assert!((0..8u64).any(|k| a.hash_one(k) != b.hash_one(k)));
    /// ```
    #[must_use]
    pub fn new() -> Self {
        let key = std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64);
        RandomState(foldhash::fast::SeedableRandomState::with_seed(
            key,
            foldhash::SharedSeed::global_random(),
        ))
    }
}

impl Default for RandomState {
    fn default() -> Self {
        Self::new()
    }
}

impl BuildHasher for RandomState {
    type Hasher = foldhash::fast::FoldHasher;

    #[inline]
    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

/// Why an entry left the cache, as told to the
/// [eviction listener](CacheBuilder::eviction_listener).
///
/// # Examples
/// ```
/// use unlocked::cache::RemovalCause;
/// assert_ne!(RemovalCause::Evicted, RemovalCause::Expired);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RemovalCause {
    /// The eviction policy pushed it out to make room.
    Evicted,
    /// Its time to live had passed when it was dropped.
    Expired,
    /// `remove` or `clear`.
    Removed,
    /// An insert of the same key replaced its value.
    Replaced,
}

/// The eviction listener's type.
pub(crate) type Listener<K, V> = Arc<dyn Fn(&K, &V, RemovalCause) + Send + Sync>;

/// The weigher's type.
pub(crate) type Weigher<K, V> = Arc<dyn Fn(&K, &V) -> u32 + Send + Sync>;

/// A sharded, bounded, concurrent cache with lock-free reads, TTLs,
/// statistics and single-flight loading.
///
/// Values are returned by clone: put big values in an `Arc`.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use std::thread;
/// use unlocked::Cache;
///
/// let cache = Arc::new(Cache::new(1000));
/// let workers: Vec<_> = (0..2)
///     .map(|t| {
///         let cache = Arc::clone(&cache);
///         thread::spawn(move || {
///             for i in 0..100u64 {
///                 cache.insert(t * 1000 + i, i);
///                 assert_eq!(cache.get(&(t * 1000 + i)), Some(i));
///             }
///         })
///     })
///     .collect();
/// for w in workers {
///     w.join().unwrap();
/// }
/// assert_eq!(cache.len(), 200);
/// ```
///
/// # Concurrent calls
/// Every operation on one key is linearizable: a `get` returns the value of
/// the latest insert of that key that completed before it (or a concurrent
/// one), or nothing if the key was since removed, evicted or expired. Capacity
/// is strict: `len()` never exceeds `max_capacity`, and with a
/// [weigher](CacheBuilder::weigher) `weighted_size()` never exceeds
/// `max_weight`.
pub struct Cache<K, V, S = RandomState> {
    shards: Box<[CachePadded<Shard<K, V>>]>,
    /// `hash.rotate_left(shard_bits) & shard_mask` picks the shard from the
    /// hash's top bits; the table uses the low bits.
    shard_bits: u32,
    shard_mask: usize,
    max_capacity: usize,
    /// The bound on the total weight, if one was set.
    max_weight: Option<u64>,
    /// Weighs entries (without one every entry weighs 1).
    weigher: Option<Weigher<K, V>>,
    /// Default expiry in nanoseconds, or `NEVER`.
    ttl: Option<Duration>,
    clock: Arc<dyn Clock>,
    hasher: S,
    /// The hasher is the user's: mix its output (see [`Cache::hash`]).
    mix_hash: bool,
    listener: Option<Listener<K, V>>,
    reads: ReadStripes,
}

// SAFETY: entries (keys and values) are shared between threads by reference
// (readers clone values out of them, so `V: Sync`, and compare keys, so
// `K: Sync`) and dropped on whichever thread reclaims them (so `K: Send`,
// `V: Send`). Everything else is synchronised by the facade's atomics and
// locks.
unsafe impl<K: Send + Sync, V: Send + Sync, S: Send> Send for Cache<K, V, S> {}
// SAFETY: as above; `&Cache` hands out `&S` to hash keys, so `S: Sync`.
unsafe impl<K: Send + Sync, V: Send + Sync, S: Sync> Sync for Cache<K, V, S> {}

impl<K, V, S> Drop for Cache<K, V, S> {
    fn drop(&mut self) {
        // The entries this cache evicted, replaced or removed wait in the
        // epoch collector; free them now (the linked ones go with the
        // shards), so that dropping the cache drops every value it was
        // given, unless another thread is pinned at this moment or retired
        // some and is still alive (its own batch is out of reach: see
        // docs/cache.md, "Reclamation"). Each entry retired was an update,
        // an eviction, an expiration or a removal.
        let s = self.stats();
        crate::sync::epoch::collect_garbage(s.updates + s.evictions + s.expirations + s.removals);
    }
}

impl<K, V, S> fmt::Debug for Cache<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("len", &self.len())
            .field("max_capacity", &self.max_capacity)
            .field("max_weight", &self.max_weight)
            .field("shards", &self.shards.len())
            .field("time_to_live", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Send + 'static, V: Send + 'static> Cache<K, V, RandomState> {
    /// A cache of at most `max_capacity` entries, with no expiry and the
    /// default shard count and hasher.
    ///
    /// # Panics
    /// If `max_capacity` is 0 ("cache max_capacity must be at least 1").
    /// Use [`Cache::builder`] to get an error instead. Any other capacity,
    /// up to `usize::MAX`, is fine: each shard's table starts small and
    /// grows with its entries (see `docs/cache.md`), so memory follows the
    /// entries stored, not the capacity.
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::new(2);
    /// cache.insert(1, "one");
    /// assert_eq!(cache.get(&1), Some("one"));
    /// ```
    pub fn new(max_capacity: usize) -> Self {
        match Self::builder().max_capacity(max_capacity).build() {
            Ok(cache) => cache,
            Err(e) => panic!("{e}"),
        }
    }
}

impl<K, V> Cache<K, V, RandomState> {
    /// A builder for a cache with a capacity, default TTL, shard count,
    /// clock, hasher and eviction listener of your choice.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let cache = unlocked::Cache::<u64, String>::builder()
    ///     .max_capacity(1 << 16)
    ///     .time_to_live(Duration::from_secs(300))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(cache.max_capacity(), 1 << 16);
    /// ```
    pub fn builder() -> CacheBuilder<K, V, RandomState> {
        CacheBuilder::new()
    }
}

impl<K, V, S> Cache<K, V, S> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        max_capacity: usize,
        max_weight: Option<u64>,
        weigher: Option<Weigher<K, V>>,
        shards: usize,
        ttl: Option<Duration>,
        clock: Arc<dyn Clock>,
        hasher: S,
        mix_hash: bool,
        listener: Option<Listener<K, V>>,
    ) -> Self {
        debug_assert!(shards.is_power_of_two() && shards <= max_capacity);
        debug_assert!(max_weight.map_or(true, |m| m >= shards as u64));
        // Per-shard capacities sum to exactly `max_capacity`, and per-shard
        // weights to exactly `max_weight`, split the same way.
        let (base, extra) = (max_capacity / shards, max_capacity % shards);
        let n = shards as u64;
        let weight = |i: usize| match max_weight {
            None => u64::MAX,
            Some(m) => m / n + u64::from((i as u64) < m % n),
        };
        Cache {
            shards: (0..shards)
                .map(|i| CachePadded::new(Shard::new(base + usize::from(i < extra), weight(i))))
                .collect(),
            shard_bits: shards.trailing_zeros(),
            shard_mask: shards - 1,
            max_capacity,
            max_weight,
            weigher,
            ttl,
            clock,
            hasher,
            mix_hash,
            listener,
            reads: ReadStripes::new(),
        }
    }

    /// The most entries the cache holds.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(unlocked::Cache::<u8, u8>::new(7).max_capacity(), 7);
    /// ```
    pub fn max_capacity(&self) -> usize {
        self.max_capacity
    }

    /// The bound on the total weight of the entries, if one was set with
    /// [`CacheBuilder::max_weight`].
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::<u8, u8>::builder()
    ///     .max_capacity(8)
    ///     .max_weight(100)
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(cache.max_weight(), Some(100));
    /// assert_eq!(unlocked::Cache::<u8, u8>::new(7).max_weight(), None);
    /// ```
    pub fn max_weight(&self) -> Option<u64> {
        self.max_weight
    }

    /// The total weight of the resident entries (expired ones not yet
    /// reclaimed included), as the [weigher](CacheBuilder::weigher) weighed
    /// them when they were inserted; without a weigher every entry weighs
    /// 1, so this is [`len`](Self::len). Exact when no write is in flight;
    /// never more than [`max_weight`](Self::max_weight).
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::builder()
    ///     .max_capacity(100)
    ///     .max_weight(1000)
    ///     .weigher(|_k: &u32, v: &String| v.len() as u32)
    ///     .build()
    ///     .unwrap();
    /// cache.insert(1, "abc".to_string());
    /// cache.insert(2, "de".to_string());
    /// assert_eq!(cache.weighted_size(), 5);
    /// cache.insert(1, "a".to_string());
    /// assert_eq!(cache.weighted_size(), 3);
    /// ```
    pub fn weighted_size(&self) -> u64 {
        self.shards.iter().map(|s| s.weight()).sum()
    }

    /// The weight of an entry: the weigher's verdict, or 1 without one.
    #[inline]
    fn weigh(&self, key: &K, value: &V) -> u32 {
        match &self.weigher {
            None => 1,
            Some(weigher) => weigher(key, value),
        }
    }

    /// The default time to live, if any.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(unlocked::Cache::<u8, u8>::new(7).time_to_live(), None);
    /// ```
    pub fn time_to_live(&self) -> Option<Duration> {
        self.ttl
    }

    /// The number of shards.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(unlocked::Cache::<u8, u8>::new(7).shards(), 1);
    /// ```
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Entries resident now, including expired ones not yet reclaimed.
    /// Exact when no write is in flight; never more than `max_capacity`.
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::new(2);
    /// for i in 0..5 {
    ///     cache.insert(i, i);
    /// }
    /// assert_eq!(cache.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.len()).sum()
    }

    /// `true` if [`len`](Self::len) is 0.
    ///
    /// # Examples
    /// ```
    /// assert!(unlocked::Cache::<u8, u8>::new(7).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The counters (see [`CacheStats`]); cheap: one load per shard and per
    /// reader stripe.
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::new(4);
    /// cache.insert(1, 1);
    /// assert_eq!(cache.stats().inserts, 1);
    /// ```
    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats::default();
        self.reads.sum_into(&mut stats);
        for s in self.shards.iter() {
            s.counters.sum_into(&mut stats);
        }
        stats
    }

    /// Checks internal invariants (table, tags, policy, counters); panics
    /// with what is broken. For tests and fuzzing; takes every shard lock.
    #[doc(hidden)]
    pub fn validate(&self)
    where
        K: Eq,
    {
        let guard = epoch::pin();
        for s in self.shards.iter() {
            s.validate(&guard);
        }
    }

    /// Tombstones in the shards' tables (for tests that drive a rebuild).
    #[doc(hidden)]
    pub fn tombstones(&self) -> usize {
        self.shards.iter().map(|s| s.tombstones()).sum()
    }

    /// Per-shard capacities (for tests).
    #[doc(hidden)]
    pub fn shard_capacities(&self) -> Vec<usize> {
        self.shards.iter().map(|s| s.capacity()).collect()
    }

    /// Per-shard shares of `max_weight` (`u64::MAX` without one; for tests).
    #[doc(hidden)]
    pub fn shard_max_weights(&self) -> Vec<u64> {
        self.shards.iter().map(|s| s.max_weight()).collect()
    }

    #[inline]
    fn shard(&self, hash: u64) -> &Shard<K, V> {
        &self.shards[hash.rotate_left(self.shard_bits) as usize & self.shard_mask]
    }

    fn ctx<'g>(&'g self, guard: &'g epoch::Guard) -> Ctx<'g, K, V> {
        Ctx::new(guard, &*self.clock, self.listener.is_some())
    }

    /// Runs the listener over the removals `ctx` collected (locks released,
    /// guard still pinned).
    /// A listener that panics does not cost the others their calls: every
    /// notice is delivered, then the first panic goes on (found in review:
    /// the rest of the operation's notices were lost).
    fn notify(&self, ctx: Ctx<'_, K, V>) {
        let Some(listener) = &self.listener else {
            return;
        };
        let mut panicked = None;
        for (e, cause) in ctx.notices {
            // SAFETY: the entry was retired with `ctx.guard`, which is
            // still pinned, so it is not freed yet.
            let e = unsafe { &*e };
            let call = catch_unwind(AssertUnwindSafe(|| listener(&e.key, &e.value, cause)));
            if let Err(payload) = call {
                panicked.get_or_insert(payload);
            }
        }
        if let Some(payload) = panicked {
            resume_unwind(payload);
        }
    }

    /// Runs `op` on every shard, going on past a shard whose listener calls
    /// panicked (its state is consistent by then), and then lets the first
    /// panic go on: a panicking listener does not leave the later shards
    /// uncleared (found in review).
    fn each_shard(&self, mut op: impl FnMut(&Shard<K, V>)) {
        let mut panicked = None;
        for shard in self.shards.iter() {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| op(shard))) {
                panicked.get_or_insert(payload);
            }
        }
        if let Some(payload) = panicked {
            resume_unwind(payload);
        }
    }

    /// Expiry for a TTL from now.
    fn expiry(&self, ttl: Option<Duration>) -> u64 {
        match ttl {
            None => NEVER,
            // A zero TTL: expired at once, also on a saturated clock.
            Some(ttl) if ttl.is_zero() => nanos(&*self.clock).min(NEVER - 1),
            // Saturating, as the work queue's lease: a TTL past the end of
            // the clock's range gives `NEVER` and never runs out (found in
            // review: clamped below `NEVER`, a `Duration::MAX` TTL ran out
            // once the clock saturated, and near the top of the clock an
            // hour lasted nanoseconds).
            Some(ttl) => nanos(&*self.clock)
                .saturating_add(u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX)),
        }
    }

    #[inline]
    fn is_expired(&self, expires: u64) -> bool {
        expires != NEVER && nanos(&*self.clock) >= expires
    }

    #[inline]
    fn count_read(&self, hit: bool) {
        let stripe = self.reads.mine();
        bump(if hit { &stripe.hits } else { &stripe.misses });
    }
}

impl<K, V, S> Cache<K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
{
    /// The key's hash; a user's hasher's output is mixed. The shard comes
    /// from its top bits, the home slot from its low half and the tag from
    /// the bits above that, so a hasher that varies only some bits (an
    /// identity hash of small integers varies the low ones) would put
    /// every key in one shard and one probe run (found in review: a
    /// 4096-entry cache of 4 shards held 1024 such keys). A fold and one
    /// multiply spread every input bit over the high ones and the low half
    /// (a bijection, so a good hasher's output stays uniform). The default
    /// [`RandomState`] is left as it is: mixing it cost about a fifth of a
    /// 1-thread read-100 run, as it scatters the slots of keys that
    /// foldhash keeps near each other.
    #[inline]
    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        let h = self.hasher.hash_one(key);
        if self.mix_hash {
            (h ^ (h >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        } else {
            h
        }
    }

    /// The value for `key` if it is resident and unexpired.
    ///
    /// Lock-free and allocation-free (besides `V::clone`); reads the clock
    /// only if the entry has an expiry.
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::new(10);
    /// cache.insert("a".to_string(), 1);
    /// assert_eq!(cache.get("a"), Some(1));
    /// assert_eq!(cache.get("b"), None);
    /// ```
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let found = self.lookup(self.hash(key), key, true);
        self.count_read(found.is_some());
        found
    }

    /// Looks `key` up; `touch`: record the hit for the policy.
    #[inline]
    fn lookup<Q>(&self, hash: u64, key: &Q, touch: bool) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
        V: Clone,
    {
        let guard = epoch::pin();
        match self.shard(hash).table(&guard).find(hash, key) {
            Probe::Found(_, e) if !self.is_expired(e.expires) => {
                if touch {
                    e.touch();
                }
                Some(e.value.clone())
            }
            _ => None,
        }
    }

    /// `true` if `key` is resident and unexpired. Counts no hit or miss and
    /// does not count as an access for eviction.
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::new(10);
    /// cache.insert(1, 1);
    /// assert!(cache.contains_key(&1));
    /// assert!(!cache.contains_key(&2));
    /// ```
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let guard = epoch::pin();
        matches!(
            self.shard(hash).table(&guard).find(hash, key),
            Probe::Found(_, e) if !self.is_expired(e.expires)
        )
    }

    /// Inserts or replaces `key`'s value, with the cache's default time to
    /// live. A new key may evict another to make room.
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::new(10);
    /// cache.insert(1, "a");
    /// cache.insert(1, "b");
    /// assert_eq!(cache.get(&1), Some("b"));
    /// ```
    pub fn insert(&self, key: K, value: V) {
        self.insert_expiring(key, value, self.expiry(self.ttl));
    }

    /// Inserts or replaces `key`'s value, expiring `ttl` from now (a zero
    /// `ttl` makes an entry that is never returned; one that reaches past
    /// the end of the clock's range, such as `Duration::MAX`, never
    /// expires).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use unlocked::{Cache, ManualClock};
    ///
    /// let clock = ManualClock::new();
    /// let cache = Cache::builder().max_capacity(10).clock(clock.clone()).build().unwrap();
    /// cache.insert_with_ttl(1, "a", Duration::from_secs(5));
    /// clock.advance(Duration::from_secs(4));
    /// assert_eq!(cache.get(&1), Some("a"));
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(cache.get(&1), None);
    /// ```
    pub fn insert_with_ttl(&self, key: K, value: V, ttl: Duration) {
        self.insert_expiring(key, value, self.expiry(Some(ttl)));
    }

    fn insert_expiring(&self, key: K, value: V, expires: u64) {
        let hash = self.hash(&key);
        let weight = self.weigh(&key, &value);
        let guard = epoch::pin();
        let mut ctx = self.ctx(&guard);
        let shard = self.shard(hash);
        // First, so that a load of `key` now in flight does not overwrite
        // this newer value (found in review); one atomic load when nothing
        // is loading.
        shard.flights.supersede(hash, &key);
        let entry = Entry::new(expires, weight, key, value);
        let kept = shard.insert(&mut ctx, hash, entry, Resident::Replace);
        debug_assert!(kept.is_none(), "an insert always stores");
        self.notify(ctx);
    }

    /// Removes `key`; its value if it was resident and unexpired.
    ///
    /// The value comes back as a clone (`V: Clone`, as for `get`): readers
    /// that found the entry just before it was unlinked may still be
    /// reading it, so it cannot be moved out; the entry itself is freed
    /// once they are done (epoch-based reclamation). Put a big value in an
    /// `Arc` to make that clone cheap.
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::new(10);
    /// cache.insert(1, "a");
    /// assert_eq!(cache.remove(&1), Some("a"));
    /// assert_eq!(cache.remove(&1), None);
    /// ```
    pub fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
        V: Clone,
    {
        let hash = self.hash(key);
        let guard = epoch::pin();
        let mut ctx = self.ctx(&guard);
        let shard = self.shard(hash);
        // First, so that a load of `key` now in flight does not store a
        // value read before this removal (found in review).
        shard.flights.supersede(hash, key);
        let removed = shard.remove(&mut ctx, hash, key);
        // The listener first: the entry is already unlinked, and `V::clone`
        // (user code) may panic; `guard` keeps `removed` alive (found in
        // review: the listener was never told).
        self.notify(ctx);
        removed.map(|e| e.value.clone())
    }

    /// Removes every entry. Concurrent inserts may land before or after
    /// (each shard is cleared on its own).
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::new(10);
    /// cache.insert(1, 1);
    /// cache.clear();
    /// assert!(cache.is_empty());
    /// ```
    pub fn clear(&self) {
        self.each_shard(|shard| {
            let guard = epoch::pin();
            let mut ctx = self.ctx(&guard);
            // As in `remove`: loads in flight do not store their values.
            shard.flights.supersede_all();
            shard.clear(&mut ctx);
            self.notify(ctx);
        });
    }

    /// Reclaims every expired entry now; how many. (Writers also reclaim
    /// expired entries as they go, so calling this is optional.)
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use unlocked::{Cache, ManualClock};
    ///
    /// let clock = ManualClock::new();
    /// let cache = Cache::builder().max_capacity(10).clock(clock.clone()).build().unwrap();
    /// cache.insert_with_ttl(1, 1, Duration::from_secs(1));
    /// cache.insert(2, 2);
    /// clock.advance(Duration::from_secs(2));
    /// assert_eq!(cache.cleanup_expired(), 1);
    /// assert_eq!(cache.len(), 1);
    /// ```
    pub fn cleanup_expired(&self) -> usize {
        let mut n = 0;
        self.each_shard(|shard| {
            let guard = epoch::pin();
            let mut ctx = self.ctx(&guard);
            n += shard.cleanup_expired(&mut ctx);
            self.notify(ctx);
        });
        n
    }

    /// A weakly consistent iterator over clones of the resident, unexpired
    /// entries.
    ///
    /// It never blocks writers and never returns an entry that was not
    /// resident at some moment during the iteration, nor an expired one.
    /// An entry resident and unchanged for the whole iteration is yielded
    /// exactly once; one inserted, updated or removed meanwhile may or may
    /// not be, and a key removed and inserted again may be yielded twice
    /// (with either value). The iterator keeps the thread pinned (memory
    /// retired meanwhile is freed only after it is dropped), so do not keep
    /// it for long.
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::new(10);
    /// cache.insert(1, 10);
    /// cache.insert(2, 20);
    /// let mut all: Vec<_> = cache.iter().collect();
    /// all.sort();
    /// assert_eq!(all, [(1, 10), (2, 20)]);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, V, S>
    where
        K: Clone,
        V: Clone,
    {
        Iter::new(self)
    }

    /// The value for `key`, loading it with `load` if it is missing.
    ///
    /// However many threads ask for a missing key at once, one runs its
    /// loader and the others wait for its value (they do not run theirs). If
    /// the loader panics, the panic propagates to its caller and one waiter
    /// takes over with its own loader; nobody is left waiting. The same
    /// holds if the weigher or `V::clone` panics in the leader after its
    /// loader returned: that value is not inserted. The loader runs
    /// with no lock of the cache held, so it may use the cache, but it must
    /// not load the *same* key through it: it would wait for itself. The
    /// same holds for `V::clone`, with which waiters copy the shared value.
    ///
    /// A write to the key while the loader runs wins: after an `insert`,
    /// `remove` or `clear` that started once the loader had, or if the key
    /// has a live entry when the loader returns, the loaded value (maybe
    /// read from its source before that write) is returned to the callers
    /// waiting for it but not stored.
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::new(10);
    /// assert_eq!(cache.get_or_insert_with(1, || "loaded"), "loaded");
    /// assert_eq!(cache.get_or_insert_with(1, || unreachable!()), "loaded");
    /// ```
    pub fn get_or_insert_with(&self, key: K, load: impl FnOnce() -> V) -> V
    where
        V: Clone,
    {
        match self.try_get_or_insert_with(key, || Ok::<V, std::convert::Infallible>(load())) {
            Ok(v) => v,
            Err(never) => match never {},
        }
    }

    /// As [`get_or_insert_with`](Self::get_or_insert_with), with a loader
    /// that may fail.
    ///
    /// # Errors
    /// The loader's error, if this caller's loader ran and failed. Nothing
    /// is inserted; a waiting caller takes over with its own loader.
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::new(10);
    /// assert_eq!(cache.try_get_or_insert_with(1, || Err("db down")), Err("db down"));
    /// assert_eq!(cache.try_get_or_insert_with(1, || Ok::<_, &str>(5)), Ok(5));
    /// assert_eq!(cache.get(&1), Some(5));
    /// ```
    pub fn try_get_or_insert_with<E>(
        &self,
        key: K,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E>
    where
        V: Clone,
    {
        let hash = self.hash(&key);
        if let Some(v) = self.get_hashed(hash, &key) {
            return Ok(v);
        }
        let mut key = key;
        let mut load = Some(load);
        loop {
            match self.join(hash, key) {
                Role::Ready(v) => return Ok(v),
                Role::Wait(flight, k) => match flight.wait() {
                    Some(v) => return Ok(v),
                    None => key = k,
                },
                Role::Lead(leader) => {
                    let load = load.take().expect("a caller leads at most once");
                    let v = load()?;
                    return Ok(leader.complete(v));
                }
            }
        }
    }

    /// As [`get_or_insert_with`](Self::get_or_insert_with), for an async
    /// loader, on any executor. If this future is dropped while its loader
    /// runs, a waiting caller takes over; one that is kept but no longer
    /// polled (say, after a `timeout` around `&mut fut` ran out) keeps the
    /// other callers waiting until it is polled or dropped. Like an `async
    /// fn`'s, it panics if polled again after it returned `Ready`.
    ///
    /// # Examples
    /// ```
    /// let cache = unlocked::Cache::new(10);
    /// let v = pollster::block_on(cache.get_or_insert_with_async(1, || async { 42 }));
    /// assert_eq!(v, 42);
    /// assert_eq!(cache.get(&1), Some(42));
    /// ```
    pub async fn get_or_insert_with_async<F, Fut>(&self, key: K, load: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
        V: Clone,
    {
        let hash = self.hash(&key);
        if let Some(v) = self.get_hashed(hash, &key) {
            return v;
        }
        let mut key = key;
        let mut load = Some(load);
        loop {
            match self.join(hash, key) {
                Role::Ready(v) => return v,
                Role::Wait(flight, k) => match flight.wait_async().await {
                    Some(v) => return v,
                    None => key = k,
                },
                Role::Lead(leader) => {
                    let load = load.take().expect("a caller leads at most once");
                    let v = load().await;
                    return leader.complete(v);
                }
            }
        }
    }

    /// `get` with a precomputed hash (counts the hit or miss).
    fn get_hashed(&self, hash: u64, key: &K) -> Option<V>
    where
        V: Clone,
    {
        let found = self.lookup(hash, key, true);
        self.count_read(found.is_some());
        found
    }

    /// Joins the flight for `key`, or starts one (see `flight.rs`).
    fn join(&self, hash: u64, key: K) -> Role<'_, K, V, S>
    where
        V: Clone,
    {
        let shard = self.shard(hash);
        // Pinned before the lock, so that `lookup`'s pin below is nested: a
        // first pin may run deferred destructors of keys and values, user
        // code that could call back into this shard's loading and deadlock
        // on the lock (found in review).
        let guard = epoch::pin();
        let mut flights = shard.flights.lock();
        // A leader inserts before it leaves the list (under this lock), so
        // looking again here closes the window between the two. The value
        // is cloned (`V::clone`, user code that may load another key of
        // this shard) after the lock is released; `guard` keeps the entry.
        if let Probe::Found(_, e) = shard.table(&guard).find(hash, &key) {
            if !self.is_expired(e.expires) {
                drop(flights);
                return Role::Ready(e.value.clone());
            }
        }
        if let Some(flight) = flights.find(hash, &key) {
            return Role::Wait(Arc::clone(flight), key);
        }
        let flight = Arc::new(Flight::new());
        flights.push(hash, key, Arc::clone(&flight));
        Role::Lead(Leader {
            cache: self,
            hash,
            flight,
            done: false,
        })
    }
}

/// What a caller of the loading functions does next.
enum Role<'c, K, V, S> {
    /// The key turned up in the cache.
    Ready(V),
    /// Wait for this flight; the key comes back for a retry.
    Wait(Arc<Flight<V>>, K),
    /// Run the loader.
    Lead(Leader<'c, K, V, S>),
}

/// The leader of a flight; ends it when dropped (see `flight.rs`).
struct Leader<'c, K, V, S> {
    cache: &'c Cache<K, V, S>,
    hash: u64,
    flight: Arc<Flight<V>>,
    done: bool,
}

impl<K, V, S> Leader<'_, K, V, S>
where
    K: Hash + Eq + Send + 'static,
    V: Send + 'static,
    S: BuildHasher,
    V: Clone,
{
    /// Inserts `value`, leaves the list, then shares `value` with the
    /// waiters: a waiter's next `get` finds it (read your writes), unless
    /// something removed it since. A value written (`insert`) or removed
    /// (`remove`, `clear`) while the loader ran wins: the loaded value,
    /// maybe older than that write, goes to the callers but is not stored.
    /// So does a live entry found at the end (an insert that began before
    /// the flight was registered, but landed after `join` looked).
    fn complete(mut self, value: V) -> V {
        let cache = self.cache;
        let shard = cache.shard(self.hash);
        let guard = epoch::pin();
        let mut ctx = cache.ctx(&guard);
        // Cloned before the flights lock: `V::clone` is user code, which
        // may load another key of this shard (found in review: it
        // deadlocked). Dropped, if not stored, after the lock (declared
        // before it), as is the key.
        let stored = value.clone();
        // The entry if the shard kept a live one in its place: dropped
        // last, after the lock, the notices and the waiters.
        let mut kept_out = None;
        let mut flights = shard.flights.lock();
        let mine = flights.take(&self.flight);
        // Not stored if an `insert`, `remove` or `clear` of the key came
        // while the loader ran (`superseded`): that write wins, as the
        // loaded value may be older (found in review: the load overwrote
        // it). An unstored `mine` is dropped at the end, after the lock.
        if let Some(InFlight {
            key,
            superseded: false,
            ..
        }) = mine
        {
            // Weighed under the flights lock (the weigher must not call
            // into the cache), and inserted under it: see `Cache::join`.
            let weight = cache.weigh(&key, &stored);
            // Only if absent: an insert that began before this flight was
            // registered (so it found nothing to supersede) but landed
            // after `join` looked is newer than the load, and wins (found
            // in review).
            let entry = Entry::new(cache.expiry(cache.ttl), weight, key, stored);
            kept_out = shard.insert(&mut ctx, self.hash, entry, Resident::Keep);
        }
        drop(flights);
        cache.notify(ctx);
        self.flight.finish(Some(value.clone()));
        self.done = true;
        // Last: its drop is user code that may panic, which must cost
        // neither the notices nor the waiters their value (found in
        // review).
        drop(kept_out);
        value
    }
}

impl<K, V, S> Drop for Leader<'_, K, V, S> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let shard = self.cache.shard(self.hash);
        let mut flights = shard.flights.lock();
        let mine = flights.take(&self.flight);
        drop(flights);
        self.flight.finish(None);
        // The key (user code may run in its drop) goes outside the lock.
        drop(mine);
    }
}
