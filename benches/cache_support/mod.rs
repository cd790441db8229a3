//! Shared cache harness for `benches/cache.rs` and the contention report's
//! cache sections (`examples/contention_report/cache.rs`).
//!
//! - Workloads: the ARC paper's OLTP and P3 traces (committed in
//!   `benches/traces/`, read with [`trace`]), seeded Zipf key streams
//!   ([`zipf`]) and Zipf streams cut by scans of never-repeated keys
//!   ([`scan_mixed`]).
//! - Hit ratio: [`hit_ratio`] replays a key stream, single-threaded, through
//!   one cache of the comparison ([`HitCache`]): `unlocked::Cache` (sharding
//!   and all), moka (`sync::Cache`, with `run_pending_tasks` after every
//!   insert so that its policy is applied as it goes), quick_cache
//!   (`sync::Cache`) and an LRU (the `lru` crate). A miss inserts the key.
//! - Throughput: [`BenchCache`] over `u64` keys and values, implemented for
//!   `unlocked::Cache`, its peers (moka, quick_cache, mini-moka), dashmap (a
//!   map that never evicts: the ceiling) and [`TtlLru`], the seeds' `TTLCache`
//!   ported to Rust (one lock around an LRU map with per-entry expiry and
//!   statistics); [`ThroughputRunner`] drives it from persistent threads.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Barrier, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rand::{rngs::StdRng, Rng, SeedableRng};

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

mod workloads;

pub use workloads::{looping, one_hit_wonders, scan_mixed, shifting, trace, zipf};

/// A named key stream and the capacities it is measured at.
#[derive(Debug)]
pub struct Workload {
    /// Display name.
    pub name: String,
    /// What it is, in a few words.
    pub description: String,
    /// The requests.
    pub keys: Vec<u64>,
    /// Cache capacities (entries) to measure.
    pub capacities: Vec<usize>,
}

/// The hit-ratio workloads: both traces at their usual capacities, two Zipf
/// skews and a scan mix. `quick` takes prefixes of 30,000 requests.
pub fn workloads(quick: bool) -> Vec<Workload> {
    let limit = quick.then_some(30_000);
    let synthetic = if quick { 30_000 } else { 1_000_000 };
    let mut w = vec![
        Workload {
            name: "OLTP".into(),
            description: "ARC trace: one hour of a CODASYL database".into(),
            keys: trace("OLTP", limit),
            capacities: vec![250, 500, 1000, 2000],
        },
        Workload {
            name: "P3".into(),
            description: "ARC trace: a Windows NT workstation disk".into(),
            keys: trace("P3", limit),
            capacities: vec![8192, 32768, 131072],
        },
    ];
    for (s, seed) in [(0.8, 1), (1.0, 2)] {
        w.push(Workload {
            name: format!("zipf-{s:.1}"),
            description: format!("Zipf s={s} over 100,000 keys, seed {seed}"),
            keys: zipf(100_000, s, synthetic, seed),
            capacities: vec![1000, 10_000],
        });
    }
    w.push(Workload {
        name: "scan-mixed".into(),
        description: "Zipf s=0.9 over 100,000 keys, cut by scans of 50,000 new keys".into(),
        keys: scan_mixed(100_000, 0.9, synthetic, 3),
        capacities: vec![1000, 10_000],
    });
    w
}

/// Held-out workloads: never used to choose or tune the policy, only to
/// check that a change made for [`workloads`] is general. Other Zipf skews
/// and sizes, a loop larger than the cache, a moving hot set, one-hit
/// wonders around a Zipf core, and each trace's halves on their own (a cold
/// start in mid-trace). `quick` takes prefixes of 30,000 requests.
pub fn held_out_workloads(quick: bool) -> Vec<Workload> {
    let len = |n: usize| if quick { n.min(30_000) } else { n };
    let mut w = Vec::new();
    for (s, seed) in [(0.6, 11), (0.9, 12), (1.2, 13)] {
        w.push(Workload {
            name: format!("zipf-{s:.1}"),
            description: format!("Zipf s={s} over 100,000 keys, seed {seed}"),
            keys: zipf(100_000, s, len(500_000), seed),
            capacities: vec![500, 5000, 20_000],
        });
    }
    w.push(Workload {
        name: "loop".into(),
        description: "a loop over 12,000 keys".into(),
        keys: looping(12_000, len(300_000)),
        capacities: vec![1000, 10_000],
    });
    w.push(Workload {
        name: "shifting".into(),
        description: "Zipf s=0.9 over 10,000 keys, moved to fresh keys every 100,000 requests"
            .into(),
        keys: shifting(10_000, 0.9, 100_000, len(600_000), 14),
        capacities: vec![500, 2000, 5000],
    });
    w.push(Workload {
        name: "one-hit-wonders".into(),
        description: "half the requests to Zipf s=1 over 50,000 keys, half to new keys".into(),
        keys: one_hit_wonders(50_000, 1.0, 50, len(600_000), 15),
        capacities: vec![1000, 10_000],
    });
    for (name, caps) in [("OLTP", vec![250, 1000]), ("P3", vec![16_384, 65_536])] {
        let keys = trace(name, None);
        let (first, second) = keys.split_at(keys.len() / 2);
        for (half, keys) in [("1st", first), ("2nd", second)] {
            w.push(Workload {
                name: format!("{name}-{half}-half"),
                description: format!("the {half} half of the {name} trace, from a cold cache"),
                keys: keys[..len(keys.len())].to_vec(),
                capacities: caps.clone(),
            });
        }
    }
    w
}

// ---------------------------------------------------------------------------
// Hit ratio
// ---------------------------------------------------------------------------

/// A cache of the hit-ratio comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HitCache {
    /// `unlocked::Cache` with its default shards.
    Unlocked,
    /// `moka::sync::Cache` (W-TinyLFU).
    Moka,
    /// `quick_cache::sync::Cache` (CLOCK-PRO-like, with a ghost).
    QuickCache,
    /// `lru::LruCache`.
    Lru,
}

impl HitCache {
    /// Every cache, in table order.
    pub const ALL: [HitCache; 4] = [
        HitCache::Unlocked,
        HitCache::Moka,
        HitCache::QuickCache,
        HitCache::Lru,
    ];

    /// Display name.
    pub fn name(self) -> &'static str {
        match self {
            HitCache::Unlocked => "unlocked",
            HitCache::Moka => "moka",
            HitCache::QuickCache => "quick_cache",
            HitCache::Lru => "LRU",
        }
    }
}

/// Replays `keys` through a fresh `cache` of `capacity` entries: a get per
/// request, an insert on a miss. Returns the hit ratio.
pub fn hit_ratio(cache: HitCache, keys: &[u64], capacity: usize) -> f64 {
    let mut hits = 0u64;
    match cache {
        HitCache::Unlocked => {
            let c = unlocked::Cache::new(capacity);
            for &k in keys {
                if c.get(&k).is_some() {
                    hits += 1;
                } else {
                    c.insert(k, ());
                }
            }
        }
        HitCache::Moka => {
            let c = moka::sync::Cache::new(capacity as u64);
            for &k in keys {
                if c.get(&k).is_some() {
                    hits += 1;
                } else {
                    c.insert(k, ());
                    c.run_pending_tasks();
                }
            }
        }
        HitCache::QuickCache => {
            let c = quick_cache::sync::Cache::new(capacity);
            for &k in keys {
                if c.get(&k).is_some() {
                    hits += 1;
                } else {
                    c.insert(k, ());
                }
            }
        }
        HitCache::Lru => {
            let mut c = lru::LruCache::new(NonZeroUsize::new(capacity).expect("capacity >= 1"));
            for &k in keys {
                if c.get(&k).is_some() {
                    hits += 1;
                } else {
                    c.put(k, ());
                }
            }
        }
    }
    hits as f64 / keys.len().max(1) as f64
}

/// Hit ratios of every cache of [`HitCache::ALL`] at every capacity of
/// `workload`: `result[capacity index][cache index]`. Runs the points on
/// `threads` threads (each point is single-threaded).
pub fn hit_ratio_table(workload: &Workload, threads: usize) -> Vec<Vec<f64>> {
    let jobs: Vec<(usize, usize)> = (0..workload.capacities.len())
        .flat_map(|c| (0..HitCache::ALL.len()).map(move |k| (c, k)))
        .collect();
    let results = Mutex::new(vec![
        vec![0.0; HitCache::ALL.len()];
        workload.capacities.len()
    ]);
    let next = std::sync::atomic::AtomicUsize::new(0);
    thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Relaxed);
                let Some(&(c, k)) = jobs.get(i) else { break };
                let r = hit_ratio(HitCache::ALL[k], &workload.keys, workload.capacities[c]);
                results.lock().unwrap_or_else(PoisonError::into_inner)[c][k] = r;
            });
        }
    });
    results.into_inner().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------
// Throughput
// ---------------------------------------------------------------------------

/// What an implementation is in the throughput comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `unlocked::Cache`: the subject of every ratio.
    Subject,
    /// A concurrent cache crate.
    Peer,
    /// A concurrent map that never evicts: the ceiling.
    Ceiling,
    /// The seeds' design: one lock around an LRU map.
    LockBaseline,
}

/// A cache under test, over `u64` keys and values.
pub trait BenchCache: Send + Sync + 'static {
    /// Display name.
    const NAME: &'static str;
    /// Its role in the comparison.
    const ROLE: Role;
    /// An empty cache of `capacity` entries.
    fn with_capacity(capacity: usize) -> Self;
    /// Looks `key` up; `true` on a hit.
    fn get(&self, key: u64) -> bool;
    /// Inserts or replaces `key`.
    fn insert(&self, key: u64, value: u64);
}

impl BenchCache for unlocked::Cache<u64, u64> {
    const NAME: &'static str = "unlocked";
    const ROLE: Role = Role::Subject;
    fn with_capacity(capacity: usize) -> Self {
        unlocked::Cache::new(capacity)
    }
    fn get(&self, key: u64) -> bool {
        unlocked::Cache::get(self, &key).is_some()
    }
    fn insert(&self, key: u64, value: u64) {
        unlocked::Cache::insert(self, key, value);
    }
}

impl BenchCache for moka::sync::Cache<u64, u64> {
    const NAME: &'static str = "moka";
    const ROLE: Role = Role::Peer;
    fn with_capacity(capacity: usize) -> Self {
        moka::sync::Cache::new(capacity as u64)
    }
    fn get(&self, key: u64) -> bool {
        moka::sync::Cache::get(self, &key).is_some()
    }
    fn insert(&self, key: u64, value: u64) {
        moka::sync::Cache::insert(self, key, value);
    }
}

impl BenchCache for quick_cache::sync::Cache<u64, u64> {
    const NAME: &'static str = "quick_cache";
    const ROLE: Role = Role::Peer;
    fn with_capacity(capacity: usize) -> Self {
        quick_cache::sync::Cache::new(capacity)
    }
    fn get(&self, key: u64) -> bool {
        quick_cache::sync::Cache::get(self, &key).is_some()
    }
    fn insert(&self, key: u64, value: u64) {
        quick_cache::sync::Cache::insert(self, key, value);
    }
}

impl BenchCache for mini_moka::sync::Cache<u64, u64> {
    const NAME: &'static str = "mini-moka";
    const ROLE: Role = Role::Peer;
    fn with_capacity(capacity: usize) -> Self {
        mini_moka::sync::Cache::new(capacity as u64)
    }
    fn get(&self, key: u64) -> bool {
        mini_moka::sync::Cache::get(self, &key).is_some()
    }
    fn insert(&self, key: u64, value: u64) {
        mini_moka::sync::Cache::insert(self, key, value);
    }
}

/// dashmap with no eviction: the ceiling of a concurrent map.
pub type DashCeiling = dashmap::DashMap<u64, u64>;

impl BenchCache for DashCeiling {
    const NAME: &'static str = "dashmap (no eviction)";
    const ROLE: Role = Role::Ceiling;
    fn with_capacity(capacity: usize) -> Self {
        dashmap::DashMap::with_capacity(capacity)
    }
    fn get(&self, key: u64) -> bool {
        dashmap::DashMap::get(self, &key).is_some()
    }
    fn insert(&self, key: u64, value: u64) {
        dashmap::DashMap::insert(self, key, value);
    }
}

/// flurry (Java's ConcurrentHashMap design: lock-free reads, per-bin locks
/// on writes, seize reclamation) with no eviction: a second ceiling, and the
/// palette's candidate for the cache's table.
pub type FlurryCeiling = flurry::HashMap<u64, u64>;

impl BenchCache for FlurryCeiling {
    const NAME: &'static str = "flurry (no eviction)";
    const ROLE: Role = Role::Ceiling;
    fn with_capacity(capacity: usize) -> Self {
        flurry::HashMap::with_capacity(capacity)
    }
    fn get(&self, key: u64) -> bool {
        self.pin().get(&key).is_some()
    }
    fn insert(&self, key: u64, value: u64) {
        self.pin().insert(key, value);
    }
}

/// Statistics of [`TtlLru`], kept under its lock as the seeds' do.
#[derive(Debug, Default)]
struct TtlStats {
    hits: u64,
    misses: u64,
    evictions: u64,
    expirations: u64,
}

/// The map of [`TtlLru`]: each value with its expiry.
type TtlMap = lru::LruCache<u64, (u64, Instant)>;

/// The seeds' `TTLCache` ported to Rust: one lock around an LRU map whose
/// entries carry an expiry; a get of an expired entry removes it and misses;
/// statistics are updated under the lock.
#[derive(Debug)]
pub struct TtlLru {
    inner: Mutex<(TtlMap, TtlStats)>,
    ttl: Duration,
}

impl BenchCache for TtlLru {
    const NAME: &'static str = "Mutex<LruCache> + TTL (seeds' TTLCache)";
    const ROLE: Role = Role::LockBaseline;
    fn with_capacity(capacity: usize) -> Self {
        TtlLru {
            inner: Mutex::new((
                lru::LruCache::new(NonZeroUsize::new(capacity).expect("capacity >= 1")),
                TtlStats::default(),
            )),
            ttl: Duration::from_secs(3600),
        }
    }
    fn get(&self, key: u64) -> bool {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (map, stats) = &mut *guard;
        match map.get(&key) {
            Some(&(_, expires)) if Instant::now() < expires => {
                stats.hits += 1;
                true
            }
            Some(_) => {
                map.pop(&key);
                stats.expirations += 1;
                stats.misses += 1;
                false
            }
            None => {
                stats.misses += 1;
                false
            }
        }
    }
    fn insert(&self, key: u64, value: u64) {
        let expires = Instant::now() + self.ttl;
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (map, stats) = &mut *guard;
        if let Some((old, _)) = map.push(key, (value, expires)) {
            if old != key {
                stats.evictions += 1;
            }
        }
    }
}

/// Shards of [`ShardedTtlLru`], as the seeds' `ShardedCache(num_shards=16)`.
const SEED_SHARDS: usize = 16;

/// The seeds' `ShardedCache` ported to Rust: 16 [`TtlLru`]s, a key's shard
/// picked from its hash, the capacity split evenly (the seeds pass the same
/// `max_size` to every shard; splitting it keeps the total equal to the
/// other caches').
#[derive(Debug)]
pub struct ShardedTtlLru {
    shards: Vec<TtlLru>,
}

impl ShardedTtlLru {
    fn shard(&self, key: u64) -> &TtlLru {
        // Fibonacci hashing: the top 4 bits of the product pick 1 of 16.
        &self.shards[(key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize]
    }
}

impl BenchCache for ShardedTtlLru {
    const NAME: &'static str = "16 x Mutex<LruCache> + TTL (seeds' ShardedCache)";
    const ROLE: Role = Role::LockBaseline;
    fn with_capacity(capacity: usize) -> Self {
        let per = capacity.div_ceil(SEED_SHARDS).max(1);
        ShardedTtlLru {
            shards: (0..SEED_SHARDS)
                .map(|_| TtlLru::with_capacity(per))
                .collect(),
        }
    }
    fn get(&self, key: u64) -> bool {
        self.shard(key).get(key)
    }
    fn insert(&self, key: u64, value: u64) {
        self.shard(key).insert(key, value);
    }
}

/// A throughput scenario: how many requests read and how keys are drawn.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    /// Display name.
    pub name: &'static str,
    /// Percentage of requests that are gets (the rest insert).
    pub read_percent: u32,
}

/// The three mixes of the issue.
pub const MIXES: [Mix; 3] = [
    Mix {
        name: "read-100",
        read_percent: 100,
    },
    Mix {
        name: "read-90-insert-10",
        read_percent: 90,
    },
    Mix {
        name: "read-50-insert-50",
        read_percent: 50,
    },
];

/// Cache capacity of the throughput runs.
pub const THROUGHPUT_CAPACITY: usize = 1 << 14;

/// Keys of the throughput runs are Zipf over `1..=THROUGHPUT_KEYS`.
pub const THROUGHPUT_KEYS: u64 = 1 << 16;

/// Zipf exponent of the throughput runs.
pub const THROUGHPUT_ZIPF: f64 = 1.0;

/// Requests each thread replays from its own pre-drawn key stream (cycled).
const STREAM_LEN: usize = 1 << 16;

/// CPUs this process may use.
pub fn cpus() -> usize {
    thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// Whether `threads` threads oversubscribe the CPUs.
pub fn oversubscribed(threads: usize) -> bool {
    threads > cpus()
}

/// `"4 threads"`, with `" (oversubscribed)"` when it applies.
pub fn threads_label(threads: usize) -> String {
    let s = if threads == 1 { "" } else { "s" };
    if oversubscribed(threads) {
        format!("{threads} thread{s} (oversubscribed)")
    } else {
        format!("{threads} thread{s}")
    }
}

/// Drives one cache from persistent threads, released run after run by a
/// barrier, so that spawning stays outside the timed region.
pub trait Runner: Send {
    /// Runs `ops` requests per thread and returns the elapsed time.
    fn run(&mut self, ops: usize) -> Duration;
    /// Threads.
    fn threads(&self) -> usize;
}

/// A [`Runner`] over a concrete cache.
#[derive(Debug)]
pub struct ThroughputRunner<C: BenchCache> {
    shared: Arc<Shared<C>>,
    workers: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared<C> {
    cache: C,
    start: Barrier,
    done: Barrier,
    ops: std::sync::atomic::AtomicUsize,
    stop: AtomicBool,
}

impl<C: BenchCache> ThroughputRunner<C> {
    /// A prefilled cache and `threads` threads running `mix`, each with its own
    /// seeded key stream.
    pub fn new(mix: Mix, threads: usize) -> Self {
        let cache = C::with_capacity(THROUGHPUT_CAPACITY);
        // Prefill with the most popular keys, so reads hit from the start.
        for k in 1..=THROUGHPUT_CAPACITY as u64 {
            cache.insert(k, k);
        }
        let shared = Arc::new(Shared {
            cache,
            start: Barrier::new(threads + 1),
            done: Barrier::new(threads + 1),
            ops: std::sync::atomic::AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let workers = (0..threads)
            .map(|t| {
                let shared = Arc::clone(&shared);
                let keys = zipf(THROUGHPUT_KEYS, THROUGHPUT_ZIPF, STREAM_LEN, 100 + t as u64);
                let mut rng = StdRng::seed_from_u64(200 + t as u64);
                let reads: Vec<bool> = (0..STREAM_LEN)
                    .map(|_| rng.gen_range(0..100) < mix.read_percent)
                    .collect();
                thread::spawn(move || {
                    let mut pos = 0usize;
                    loop {
                        shared.start.wait();
                        if shared.stop.load(Relaxed) {
                            return;
                        }
                        let ops = shared.ops.load(Relaxed);
                        let mut hits = 0u64;
                        for _ in 0..ops {
                            let i = pos % STREAM_LEN;
                            let key = keys[i];
                            if reads[i] {
                                hits += u64::from(shared.cache.get(key));
                            } else {
                                shared.cache.insert(key, key);
                            }
                            pos += 1;
                        }
                        std::hint::black_box(hits);
                        shared.done.wait();
                    }
                })
            })
            .collect();
        ThroughputRunner { shared, workers }
    }
}

impl<C: BenchCache> Runner for ThroughputRunner<C> {
    fn run(&mut self, ops: usize) -> Duration {
        self.shared.ops.store(ops, Relaxed);
        // The clock starts before the release: a worker may finish its run
        // before this thread is scheduled again after the barrier.
        let started = Instant::now();
        self.shared.start.wait();
        self.shared.done.wait();
        started.elapsed()
    }

    fn threads(&self) -> usize {
        self.workers.len()
    }
}

impl<C: BenchCache> Drop for ThroughputRunner<C> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
        self.shared.start.wait();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A cache of the throughput comparison: its name, role and constructor.
#[derive(Clone, Copy, Debug)]
pub struct CacheSpec {
    /// Display name.
    pub name: &'static str,
    /// Role in the comparison.
    pub role: Role,
    /// Starts a runner for a mix and a thread count.
    pub start: fn(Mix, usize) -> Box<dyn Runner>,
}

fn spec<C: BenchCache>() -> CacheSpec {
    CacheSpec {
        name: C::NAME,
        role: C::ROLE,
        start: |mix, threads| Box::new(ThroughputRunner::<C>::new(mix, threads)),
    }
}

/// Every cache of the throughput comparison, subject first.
pub fn caches() -> Vec<CacheSpec> {
    vec![
        spec::<unlocked::Cache<u64, u64>>(),
        spec::<quick_cache::sync::Cache<u64, u64>>(),
        spec::<moka::sync::Cache<u64, u64>>(),
        spec::<mini_moka::sync::Cache<u64, u64>>(),
        spec::<DashCeiling>(),
        spec::<FlurryCeiling>(),
        spec::<TtlLru>(),
        spec::<ShardedTtlLru>(),
    ]
}
