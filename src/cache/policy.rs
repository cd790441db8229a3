//! The eviction policy of one shard: sequential code, run only under the
//! shard's write lock.
//!
//! # The contract between the policy and the concurrent shell
//! - The shell owns the table and the entries. The policy keeps *handles*
//!   (cheap clones that point at entries, e.g. `Arc<Entry>` or a raw pointer
//!   kept alive by the shell) in its own queues and decides which to evict.
//! - Readers never call the policy. On a hit they bump the entry's saturating
//!   frequency counter (`Handle::frequency` reads it; the policy may lower it
//!   with `Handle::set_frequency`). That is the only write a `get` makes.
//! - [`Policy::insert`] admits a key that was not resident and pushes onto
//!   `evicted` the resident handles it chose to evict, so that afterwards
//!   `live() <= capacity()`. The shell then unlinks those from the table
//!   (counting an expiration instead of an eviction when the entry had
//!   expired).
//! - Removal is lazy: when the shell removes, replaces or expires a resident
//!   entry on its own, it first makes `Handle::is_live` return `false` and then
//!   calls [`Policy::removed`]. The policy drops dead handles when it meets
//!   them and never returns them from `insert`.
//! - An update of a resident key does not go through the policy (the shell
//!   swaps the value in place and the entry keeps its place and frequency).
//!
//! # The policy: S3-FIFO
//! S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction",
//! SOSP 2023) keeps three FIFO queues:
//! - **small** (10% of the capacity) takes every new key. Most keys of a scan
//!   or of a one-hit-wonder workload are never read again; they leave from
//!   here without disturbing anything else ("quick demotion").
//! - **main** takes keys that were read while in small, and keys the ghost
//!   remembers. It is a CLOCK: a key at the head that was read since it was
//!   last examined goes round again with its credit lowered by one (capped at
//!   [`MAX_FREQUENCY`]); one that was not is evicted.
//! - **ghost** remembers the hashes (not the entries) of as many keys as the
//!   capacity that left small unread. A miss on a remembered key goes
//!   straight into main: it came back soon, so it is not a one-hit wonder.
//!
//! An optional hill climber ([`Tuning::adaptive`], off by default) moves
//! small's share as W-TinyLFU's does for its window (Einziger et al.,
//! "Adaptive Software Cache Management", Middleware 2018): every sample of
//! `10 × capacity` requests it keeps the direction of its last step if the
//! hit ratio rose and reverses it if it fell. The policy never sees a hit, only
//! the counters it resets, so its hit count lags by up to one turn of the
//! queues; measured, that made it lose 0.5 to 2.5 points on Zipf and P3 and
//! win only at OLTP-250 (`docs/cache_policy.md`), so the paper's fixed 10% is
//! the default.
//!
//! Why it resists scans: a scan's keys enter small, are never read again
//! before small turns over, and leave without entering main, so the
//! frequently used core in main stays resident (see the test
//! `frequently_read_keys_survive_a_scan`).
//!
//! Dead handles (removed by the shell) are skipped when met; when they
//! outnumber the live ones the queues are compacted, so memory stays bounded
//! by about twice the capacity however many removals happen.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// What the policy needs to know about an entry.
pub(crate) trait Handle {
    /// The key's hash (the policy's ghost history is keyed by it).
    fn hash(&self) -> u64;
    /// The saturating access counter that readers bump on a hit.
    fn frequency(&self) -> u8;
    /// Lowers (or resets) the access counter.
    fn set_frequency(&self, frequency: u8);
    /// `false` once the shell has removed, replaced or expired the entry.
    fn is_live(&self) -> bool;
}

/// The CLOCK credit of main is capped here (S3-FIFO uses 3).
pub(crate) const MAX_FREQUENCY: u8 = 3;

/// Smallest share of the capacity for the small queue when the hill climber
/// is on, in percent.
const SMALL_MIN_PERCENT: usize = 1;

/// Largest share of the capacity for the small queue when the hill climber
/// is on, in percent.
const SMALL_MAX_PERCENT: usize = 50;

/// Initial share of the capacity for the small queue, in percent (S3-FIFO).
const SMALL_INITIAL_PERCENT: usize = 10;

/// Requests per hill-climbing sample, as a multiple of the capacity
/// (W-TinyLFU's sample size).
const SAMPLE_FACTOR: usize = 10;

/// First step of the hill climber, in percent of the capacity.
const STEP_INITIAL_PERCENT: f64 = 6.25;

/// The step shrinks by this factor after every sample.
const STEP_DECAY: f64 = 0.98;

/// A change of hit ratio at least this large restarts the step (a new phase).
const RESTART_THRESHOLD: f64 = 0.05;

/// The eviction policy of one shard (see the module docs).
#[derive(Debug)]
pub(crate) struct Policy<H> {
    /// Most entries resident at once.
    capacity: usize,
    /// Resident entries the shell has not removed.
    live: usize,
    /// New keys, oldest first; may hold dead handles.
    small: VecDeque<H>,
    /// Proven keys in CLOCK order with their credit; may hold dead handles.
    main: VecDeque<(H, u8)>,
    /// Target length of `small` (moved by the hill climber, if on).
    small_target: usize,
    /// Hashes of keys that left small unread.
    ghost: Ghost,
    /// The hill climber that moves `small_target`.
    climber: Climber,
    /// Switches for measuring the mechanisms one by one.
    tuning: Tuning,
}

/// Switches for measuring the policy's mechanisms one by one (the tests and
/// the hit-ratio experiments change them; the cache uses the default).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    /// Hill climbing of the small queue's share.
    pub(crate) adaptive: bool,
    /// Initial share of small, in percent of the capacity.
    pub(crate) small_percent: usize,
    /// Ghost size, in percent of the capacity.
    pub(crate) ghost_percent: usize,
}

impl Tuning {
    /// What the cache uses.
    pub(crate) const DEFAULT: Tuning = Tuning {
        adaptive: false,
        small_percent: SMALL_INITIAL_PERCENT,
        ghost_percent: 100,
    };
}

impl<H: Handle> Policy<H> {
    /// A policy for at most `capacity` resident entries (`capacity >= 1`).
    pub(crate) fn new(capacity: usize) -> Self {
        Self::with_tuning(capacity, Tuning::DEFAULT)
    }

    /// A policy with some mechanisms changed (for measurements).
    pub(crate) fn with_tuning(capacity: usize, tuning: Tuning) -> Self {
        assert!(capacity >= 1, "a shard holds at least one entry");
        Policy {
            capacity,
            live: 0,
            small: VecDeque::new(),
            main: VecDeque::new(),
            small_target: percent(capacity, tuning.small_percent),
            ghost: Ghost::new(capacity * tuning.ghost_percent / 100),
            climber: Climber::new(capacity),
            tuning,
        }
    }

    /// Most entries resident at once.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Resident entries the shell has not removed.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Admits `handle` (a key that was not resident) and pushes onto
    /// `evicted` the live handles evicted to make room.
    pub(crate) fn insert(&mut self, handle: H, evicted: &mut Vec<H>) {
        handle.set_frequency(0);
        let to_main = self.ghost.take(handle.hash());
        while self.live >= self.capacity {
            self.evict_one(evicted);
        }
        if to_main {
            self.main.push_back((handle, 0));
        } else {
            self.small.push_back(handle);
        }
        self.live += 1;
        self.climber.misses += 1;
        if self.tuning.adaptive {
            if let Some(step) = self.climber.sample() {
                self.move_small(step);
            }
        }
    }

    /// The shell removed a resident entry (its handle is now dead).
    pub(crate) fn removed(&mut self) {
        self.live -= 1;
        let handles = self.small.len() + self.main.len();
        if handles - self.live > self.live.max(16) {
            self.compact();
        }
    }

    /// Forgets every handle, returning the live ones.
    pub(crate) fn clear(&mut self) -> Vec<H> {
        self.live = 0;
        self.small_target = percent(self.capacity, self.tuning.small_percent);
        self.ghost.clear();
        self.climber = Climber::new(self.capacity);
        let small = self.small.drain(..);
        small
            .chain(self.main.drain(..).map(|(h, _)| h))
            .filter(Handle::is_live)
            .collect()
    }

    /// Drops every dead handle.
    fn compact(&mut self) {
        self.small.retain(Handle::is_live);
        self.main.retain(|(h, _)| h.is_live());
        self.small.shrink_to(self.small.len() * 2);
        self.main.shrink_to(self.main.len() * 2);
    }

    /// Moves the small queue's target by `step` entries, within bounds.
    fn move_small(&mut self, step: isize) {
        let lo = percent(self.capacity, SMALL_MIN_PERCENT);
        let hi = percent(self.capacity, SMALL_MAX_PERCENT);
        let target = self.small_target.saturating_add_signed(step);
        self.small_target = target.clamp(lo, hi.max(lo));
    }

    /// Reads and resets an entry's reader counter, counting its hits.
    fn take_frequency(&mut self, h: &H) -> u8 {
        let f = h.frequency();
        if f > 0 {
            h.set_frequency(0);
            self.climber.hits += u64::from(f);
        }
        f
    }

    /// Evicts one live handle, or moves one from small to main.
    fn evict_one(&mut self, evicted: &mut Vec<H>) {
        if self.small.len() >= self.small_target || self.main.is_empty() {
            // Pop small until one live handle leaves it: an unread one is
            // evicted and remembered by the ghost, a read one moves to main.
            while let Some(h) = self.small.pop_front() {
                if !h.is_live() {
                    continue;
                }
                let f = self.take_frequency(&h);
                if f == 0 {
                    self.ghost.insert(h.hash());
                    self.live -= 1;
                    evicted.push(h);
                } else {
                    self.main.push_back((h, 0));
                }
                return;
            }
        }
        self.evict_main(evicted);
    }

    /// Evicts main's CLOCK victim, or small's head when main holds no live
    /// handle.
    fn evict_main(&mut self, evicted: &mut Vec<H>) {
        // Each live handle goes round at most MAX_FREQUENCY times, unless
        // readers keep reading it; the budget makes eviction finish anyway.
        let mut budget = self.main.len() * (usize::from(MAX_FREQUENCY) + 1) + 1;
        while let Some((h, credit)) = self.main.pop_front() {
            if !h.is_live() {
                continue;
            }
            let f = self.take_frequency(&h);
            let credit = credit.saturating_add(f).min(MAX_FREQUENCY);
            if credit == 0 || budget == 0 {
                self.live -= 1;
                evicted.push(h);
                return;
            }
            budget -= 1;
            self.main.push_back((h, credit - 1));
        }
        while let Some(h) = self.small.pop_front() {
            if h.is_live() {
                self.ghost.insert(h.hash());
                self.live -= 1;
                evicted.push(h);
                return;
            }
        }
        unreachable!("live entries are all in small or main");
    }
}

/// `pct` percent of `n`, at least 1.
fn percent(n: usize, pct: usize) -> usize {
    (n * pct / 100).max(1)
}

// ---------------------------------------------------------------------------
// Hill climber
// ---------------------------------------------------------------------------

/// Moves the small queue's share towards a higher hit ratio.
#[derive(Debug)]
struct Climber {
    /// Requests per sample.
    sample_size: u64,
    /// Hits counted in this sample (when the counters were reset).
    hits: u64,
    /// Misses (inserts) in this sample.
    misses: u64,
    /// The previous sample's hit ratio.
    previous: f64,
    /// The next step, in entries, signed.
    step: f64,
    /// The first step's size, in entries.
    initial: f64,
}

impl Climber {
    /// A climber for a policy of `capacity` entries.
    fn new(capacity: usize) -> Self {
        let initial = capacity as f64 * STEP_INITIAL_PERCENT / 100.0;
        Climber {
            sample_size: (capacity * SAMPLE_FACTOR).max(64) as u64,
            hits: 0,
            misses: 0,
            previous: 0.0,
            step: initial,
            initial,
        }
    }

    /// At the end of a sample, the step to take (in entries).
    fn sample(&mut self) -> Option<isize> {
        if self.hits + self.misses < self.sample_size {
            return None;
        }
        let ratio = self.hits as f64 / (self.hits + self.misses) as f64;
        self.hits = 0;
        self.misses = 0;
        let delta = ratio - self.previous;
        self.previous = ratio;
        if delta < 0.0 {
            self.step = -self.step;
        }
        let size = if delta.abs() >= RESTART_THRESHOLD {
            self.initial
        } else {
            self.step.abs() * STEP_DECAY
        };
        self.step = size.copysign(self.step);
        Some(self.step.round() as isize)
    }
}

// ---------------------------------------------------------------------------
// Ghost
// ---------------------------------------------------------------------------

/// Hashes are already mixed by the shell's hasher: use them as they are.
#[derive(Debug, Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A bounded FIFO set of hashes: the oldest is forgotten when full.
#[derive(Debug)]
struct Ghost {
    /// Most hashes remembered.
    capacity: usize,
    /// Insertion order, with each insertion's sequence number.
    fifo: VecDeque<(u64, u64)>,
    /// Remembered hashes and the sequence number of their latest insertion.
    members: HashMap<u64, u64, BuildHasherDefault<IdentityHasher>>,
    /// Next sequence number.
    next: u64,
}

impl Ghost {
    /// An empty ghost of at most `capacity` hashes.
    fn new(capacity: usize) -> Self {
        Ghost {
            capacity,
            fifo: VecDeque::new(),
            members: HashMap::default(),
            next: 0,
        }
    }

    /// Remembers `hash`, forgetting the oldest one if full.
    fn insert(&mut self, hash: u64) {
        if self.capacity == 0 {
            return;
        }
        let seq = self.next;
        self.next += 1;
        self.members.insert(hash, seq);
        self.fifo.push_back((hash, seq));
        // Entries whose hash was taken or re-inserted since are stale; pop
        // until the live count fits.
        while self.fifo.len() > self.capacity {
            if let Some((old, s)) = self.fifo.pop_front() {
                if self.members.get(&old) == Some(&s) {
                    self.members.remove(&old);
                }
            }
        }
    }

    /// Whether `hash` was remembered; forgets it.
    fn take(&mut self, hash: u64) -> bool {
        self.members.remove(&hash).is_some()
    }

    /// Forgets everything.
    fn clear(&mut self) {
        self.fifo.clear();
        self.members.clear();
    }
}

#[cfg(test)]
mod tests;
