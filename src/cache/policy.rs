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
//! - For the weight bound, the shell may ask for more victims than the
//!   entry bound needs: [`Policy::evict`] evicts the next one in the order
//!   `insert` would (before an insert, or after an update made its key
//!   heavier). Weights themselves stay in the shell.
//!
//! # The policy: S3-FIFO
//! S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction",
//! SOSP 2023) keeps three FIFO queues:
//! - **small** (10% of the capacity to start with) takes every new key. Most
//!   keys of a scan or of a one-hit-wonder workload are never read again;
//!   they leave from here without disturbing anything else ("quick
//!   demotion").
//! - **main** takes keys that were read while in small, and keys the ghost
//!   remembers. It is a CLOCK on the readers' own counter: a key at the head
//!   that was read since it was last examined goes round again with its
//!   counter lowered by one (counters are capped at [`MAX_FREQUENCY`]); one
//!   that was not is evicted.
//! - **ghost** remembers fingerprints (not the entries) of the keys that
//!   left small unread, for as long as `capacity` more keys leave small. A
//!   miss on a remembered key goes straight into main: it came back soon, so
//!   it is not a one-hit wonder. As the paper suggests, it is a bucketed
//!   table of 32-bit fingerprints with stamps (8 bytes a slot, 1.5 slots a
//!   remembered key), not a queue.
//!
//! # Small's share adapts by marginal utility
//! The paper fixes small at 10%. Recency-heavy workloads want a longer
//! probation and frequency-heavy ones a shorter, so the share moves, by the
//! marginal utility of an entry on either side (the principle of ARC's
//! target and of utility-based cache partitioning): the ghost's stamps count
//! small's departures, and a second, short ghost remembers the keys main
//! evicted last. A miss on a key that left small fewer than `probe` (5% of
//! the capacity) departures ago would have hit with a small `probe` longer; one
//! on a key that main evicted within its last `probe` evictions would have hit
//! with a main that much longer. The votes are counted over epochs of
//! `capacity` inserts, and at the end of an epoch the share moves by 1% of
//! the capacity towards the side that won, but only if it won by more than
//! two standard deviations of the vote count (|grow − shrink|² > 4 × (grow +
//! shrink)): noise does not make it drift, phases still move it. An
//! undecided epoch keeps half its votes (a small shard, with few votes an
//! epoch, still decides), and nobody votes until main has evicted `probe`
//! keys (while the cache fills, only small's probe could vote). The share
//! stays between [`SMALL_MIN_PERCENT`] and [`SMALL_MAX_PERCENT`].
//!
//! # A long probation asks for two reads
//! While the adaptation holds small at [`TWO_READS_FROM_PERCENT`] (20%) of
//! the capacity or more, the workload is one where keys must stay on
//! probation long to show their worth (recency-heavy, as OLTP at small
//! sizes, where small settles near 40%). In so long a probation one read
//! is weak evidence, so a key read once goes round small a second time
//! (its counter reset) and moves to main only if it is read again; a key
//! read twice moves at once, and a key the ghost remembers still goes
//! straight to main. Below that share (every Zipf, scan, loop and P3
//! workload measured) nothing changes: promotion at one read, as in the
//! paper. `docs/cache_policy.md` has the figures.
//!
//! # A starved cache spills into main
//! When no key proves itself for a whole capacity of small's departures
//! (a loop over more keys than the ghost remembers) main stays empty and
//! S3-FIFO is a FIFO, which hits nothing on a loop. Then, while main holds
//! fewer handles than small, small's unread keys spill into main's free
//! share (at its head) instead of leaving, and main keeps a fixed subset;
//! the first proven key undoes it (see `Policy::spills`).
//!
//! Counters stay capped at 3 and the ghost as large as the cache, as in the
//! paper. `docs/cache_policy.md` has the measurements, and those of what was
//! tried and left out (W-TinyLFU's frequency-sketch admission, a hill
//! climber on the hit ratio, an undamped adaptation).
//!
//! Why it resists scans: a scan's keys enter small, are never read again
//! before small turns over, and leave without entering main, so the
//! frequently used core in main stays resident (see the test
//! `frequently_read_keys_survive_a_scan`). The adaptation cannot undo that:
//! a scan's keys never come back, so they cast no vote.
//!
//! Dead handles (removed by the shell) are skipped when met; when they
//! outnumber the live ones the queues are compacted, so memory stays bounded
//! by about twice the capacity however many removals happen.

use std::collections::VecDeque;

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

/// Main's CLOCK reads counters capped here (S3-FIFO uses 3).
pub(crate) const MAX_FREQUENCY: u8 = 3;

/// Share of the capacity for the small queue, in percent (S3-FIFO).
const SMALL_PERCENT: usize = 10;

/// Smallest share of the capacity for the small queue, in percent.
const SMALL_MIN_PERCENT: usize = 1;

/// Largest share of the capacity for the small queue, in percent.
const SMALL_MAX_PERCENT: usize = 50;

/// Depth of the marginal-utility probes, in percent of the capacity.
const PROBE_PERCENT: usize = 5;

/// Small's share, in percent of the capacity, from which a key needs two
/// reads in small to be promoted (see "A long probation asks for two
/// reads" in the module docs).
const TWO_READS_FROM_PERCENT: usize = 20;

/// Step of small's share per significant epoch, in thousandths of the
/// capacity.
const STEP_PERMILLE: usize = 10;

/// `parts / whole` of `capacity`, rounded down, without overflow for any
/// capacity (`parts <= whole`).
fn share(capacity: usize, parts: usize, whole: usize) -> usize {
    (capacity as u128 * parts as u128 / whole as u128) as usize
}

/// Depth of the marginal-utility probes for `capacity` entries.
fn probe_depth(capacity: usize, tuning: Tuning) -> usize {
    if tuning.probe_percent == 0 {
        0
    } else {
        share(capacity, tuning.probe_percent, 100).max(1)
    }
}

/// The eviction policy of one shard (see the module docs).
#[derive(Debug)]
pub(crate) struct Policy<H> {
    /// Most entries resident at once.
    capacity: usize,
    /// Resident entries the shell has not removed.
    live: usize,
    /// New keys, oldest first; may hold dead handles.
    small: VecDeque<H>,
    /// Proven keys in CLOCK order; may hold dead handles.
    main: VecDeque<H>,
    /// Target length of `small`.
    small_target: usize,
    /// Fingerprints of keys that left small unread.
    ghost: Ghost,
    /// Fingerprints of the last `probe` keys evicted from main.
    main_ghost: Ghost,
    /// Depth of the marginal-utility probes (0: off).
    probe: u32,
    /// Probe hits of this epoch: (grow small, grow main).
    votes: (u32, u32),
    /// Inserts in this epoch.
    epoch: usize,
    /// Unread departures from small since a key last entered main proven
    /// (read while in small, or remembered by the ghost).
    starved: usize,
    /// Whether small's unread keys spill into main (see [`Policy::spills`]).
    spilling: bool,
    /// Keys spilled into main, less main's evictions since spilling ended.
    spilled: usize,
    /// Sizes and switches.
    tuning: Tuning,
}

/// Sizes of the policy's parts, for the hit-ratio experiments (the cache
/// uses [`Tuning::DEFAULT`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    /// Share of small, in percent of the capacity.
    pub(crate) small_percent: usize,
    /// Ghost size, in percent of the capacity.
    pub(crate) ghost_percent: usize,
    /// Depth of the marginal-utility probes, in percent of the capacity
    /// (0: small's share stays fixed).
    pub(crate) probe_percent: usize,
    /// Step of small's target per probe hit, in thousandths of the capacity
    /// (at least one entry).
    pub(crate) step_permille: usize,
    /// Whether a starved cache spills small's unread keys into main's free
    /// share (see [`Policy::spills`]).
    pub(crate) spill: bool,
    /// Small's share (percent) from which promotion takes two reads (0:
    /// always one, as in the paper).
    pub(crate) two_reads_from_percent: usize,
}

impl Tuning {
    /// What the cache uses: the paper's sizes.
    pub(crate) const DEFAULT: Tuning = Tuning {
        small_percent: SMALL_PERCENT,
        ghost_percent: 100,
        probe_percent: PROBE_PERCENT,
        step_permille: STEP_PERMILLE,
        spill: true,
        two_reads_from_percent: TWO_READS_FROM_PERCENT,
    };
}

impl<H: Handle> Policy<H> {
    /// A policy for at most `capacity` resident entries (`capacity >= 1`).
    pub(crate) fn new(capacity: usize) -> Self {
        Self::with_tuning(capacity, Tuning::DEFAULT)
    }

    /// A policy with other sizes (for measurements).
    pub(crate) fn with_tuning(capacity: usize, tuning: Tuning) -> Self {
        assert!(capacity >= 1, "a shard holds at least one entry");
        Policy {
            capacity,
            live: 0,
            small: VecDeque::new(),
            main: VecDeque::new(),
            small_target: share(capacity, tuning.small_percent, 100).max(1),
            tuning,
            ghost: Ghost::new(share(capacity, tuning.ghost_percent, 100)),
            main_ghost: Ghost::new(probe_depth(capacity, tuning)),
            probe: probe_depth(capacity, tuning) as u32,
            votes: (0, 0),
            epoch: 0,
            starved: 0,
            spilling: false,
            spilled: 0,
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
        let hash = handle.hash();
        let age = self.ghost.take_age(hash);
        let to_main = age.is_some();
        if to_main {
            self.starved = 0;
            self.spilling = false;
        }
        // Both probes compare like with like only once main has evicted a
        // probe's worth of keys (while the cache fills, only small's probe
        // could vote).
        if self.probe > 0 && self.main_ghost.ticks() >= u64::from(self.probe) {
            // Marginal utility: a key that left small unread less than
            // `probe` departures ago would have hit with a longer small; one
            // that left main that recently, with a longer main.
            if age.is_some_and(|a| a < self.probe) {
                self.votes.0 += 1;
            } else if self.main_ghost.take(hash) {
                self.votes.1 += 1;
            }
            self.epoch += 1;
            if self.epoch >= self.capacity {
                // Move only on a significant difference (two standard
                // deviations of the vote count), so noise does not drift.
                let (g, s) = self.votes;
                let d = g as f64 - s as f64;
                if d * d > 4.0 * (g + s) as f64 {
                    self.move_small(d > 0.0);
                    self.votes = (0, 0);
                } else {
                    // Not significant yet: keep half the evidence, so that a
                    // small shard (few votes an epoch) still decides, and old
                    // votes fade.
                    self.votes = (g / 2, s / 2);
                }
                self.epoch = 0;
            }
        }
        while self.live >= self.capacity {
            self.evict_one(evicted);
        }
        if to_main {
            self.main.push_back(handle);
        } else {
            self.small.push_back(handle);
        }
        self.live += 1;
    }

    /// Evicts one live handle (pushed onto `evicted`), if any is resident:
    /// the next victim in the order `insert` evicts in. For the shell's
    /// weight bound, which may need several victims for one newcomer.
    pub(crate) fn evict(&mut self, evicted: &mut Vec<H>) {
        let before = evicted.len();
        // `evict_one` may only move a handle from small to main; small
        // empties in at most its length of such moves, so this ends.
        while evicted.len() == before && self.live > 0 {
            self.evict_one(evicted);
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
        self.ghost.clear();
        self.main_ghost.clear();
        self.small_target = share(self.capacity, self.tuning.small_percent, 100).max(1);
        self.votes = (0, 0);
        self.epoch = 0;
        self.starved = 0;
        self.spilling = false;
        self.spilled = 0;
        let small = self.small.drain(..);
        small
            .chain(self.main.drain(..))
            .filter(Handle::is_live)
            .collect()
    }

    /// Moves small's target one step towards the side with the higher
    /// marginal utility, within [`SMALL_MIN_PERCENT`] and
    /// [`SMALL_MAX_PERCENT`] of the capacity.
    fn move_small(&mut self, grow: bool) {
        let lo = share(self.capacity, SMALL_MIN_PERCENT, 100).max(1);
        let hi = share(self.capacity, SMALL_MAX_PERCENT, 100).max(lo);
        let step = share(self.capacity, self.tuning.step_permille, 1000).max(1);
        self.small_target = if grow {
            (self.small_target + step).min(hi)
        } else {
            self.small_target.saturating_sub(step).max(lo)
        };
    }

    /// Drops every dead handle.
    fn compact(&mut self) {
        // Spilled keys (main's first `spilled` handles) that the shell
        // removed since are undone already.
        let dead = self
            .main
            .iter()
            .take(self.spilled)
            .filter(|h| !h.is_live())
            .count();
        self.spilled -= dead;
        self.small.retain(Handle::is_live);
        self.main.retain(Handle::is_live);
        self.small.shrink_to(self.small.len() * 2);
        self.main.shrink_to(self.main.len() * 2);
    }

    /// Evicts one live handle, or moves one from small to main.
    fn evict_one(&mut self, evicted: &mut Vec<H>) {
        if self.spilled > 0 && !self.spilling {
            // A key proved itself since small spilled into main: the
            // spilled keys, at main's head, leave before small shortens
            // (as they would have from small). One the shell removed since
            // is undone already: it must not cost another key (found in
            // review: removed spilled keys made proven ones leave).
            while self.spilled > 0 && self.main.front().is_some_and(|h| !h.is_live()) {
                self.main.pop_front();
                self.spilled -= 1;
            }
            if self.spilled > 0 {
                self.spilled -= 1;
                return self.evict_main(evicted);
            }
        }
        // Small's share of what is resident: its target when the entry
        // bound evicts (`live == capacity`), less when the weight bound
        // evicts with fewer entries resident; with the full target small
        // never reached it, main gave every victim and a scan flushed it.
        let target = share(
            self.small_target,
            self.live.min(self.capacity),
            self.capacity,
        )
        .max(1);
        if self.small.len() >= target || self.main.is_empty() {
            // Pop small until one live handle leaves it: an unread one is
            // evicted and remembered by the ghost (or spills into main's
            // free share), a read one moves to main with its counter reset
            // (with a long probation, one read once goes round small again
            // instead; each handle at most once per call, so this ends even
            // while readers keep reading: at most twice small's length).
            let two_reads = self.needs_two_reads();
            // Handles popped after the first `before` were sent round by
            // this call (nothing else is pushed meanwhile): read once, so
            // they move to main rather than leave (found in review).
            let before = self.small.len();
            let mut popped = 0;
            while let Some(h) = self.small.pop_front() {
                popped += 1;
                if !h.is_live() {
                    continue;
                }
                let mut f = h.frequency();
                if popped > before {
                    f = f.max(1);
                } else if f == 1 && two_reads {
                    h.set_frequency(0);
                    self.small.push_back(h);
                    continue;
                }
                if f > 0 {
                    self.starved = 0;
                    self.spilling = false;
                }
                if f == 0 && !self.spills() {
                    self.starved += 1;
                    self.ghost.reserve(self.live);
                    self.ghost.insert(h.hash());
                    self.live -= 1;
                    evicted.push(h);
                } else {
                    h.set_frequency(0);
                    if self.probe > 0 {
                        // Stamps count small's departures, so that a ghost
                        // entry's age says how much longer small would
                        // have had to be to keep it.
                        self.ghost.tick();
                    }
                    if f == 0 {
                        // Spilled: at main's head, its next victim.
                        self.spilled += 1;
                        self.main.push_front(h);
                    } else {
                        self.main.push_back(h);
                    }
                }
                return;
            }
        }
        self.evict_main(evicted);
    }

    /// Whether a key read once in small goes round small again instead of
    /// moving to main: while small's share is at least
    /// [`TWO_READS_FROM_PERCENT`] (see the module docs).
    fn needs_two_reads(&self) -> bool {
        let from = self.tuning.two_reads_from_percent;
        from > 0 && self.small_target as u128 * 100 >= self.capacity as u128 * from as u128
    }

    /// Whether small's unread head moves to main instead of leaving.
    ///
    /// S3-FIFO fills main only with proven keys. When none comes (a loop
    /// over more keys than the ghost remembers: every key returns, but too
    /// late), main stays empty and the cache is a FIFO, which hits nothing
    /// on a loop. So once a whole capacity of keys has left small unread
    /// since the last proven key (that FIFO had no hit in its last
    /// turnover) while main holds fewer handles than small, small's unread
    /// keys spill into main, at its head, until main reaches its share or a
    /// key proves itself. Main keeps them while nothing proves itself (it
    /// evicts only to make room for proven keys), so a loop hits on a fixed
    /// subset instead of on nothing. Once a key proves itself, the spill is
    /// undone: as many evictions as keys spilled come from main's head,
    /// where CLOCK meets the spilled keys first, before small shortens, so a
    /// scan (which starves small just as a loop does) leaves no more behind
    /// than it would have in small. The condition on main keeps this to a
    /// cache that has become a FIFO: one whose main holds proven keys does
    /// not spill.
    fn spills(&mut self) -> bool {
        if !self.tuning.spill
            || self.starved < self.capacity
            || self.main.len() + self.small_target >= self.capacity
        {
            return false;
        }
        if !self.spilling {
            self.spilling = self.main.len() < self.small.len();
        }
        self.spilling
    }

    /// Evicts main's CLOCK victim, or small's head when main holds no live
    /// handle.
    fn evict_main(&mut self, evicted: &mut Vec<H>) {
        // Each live handle goes round at most MAX_FREQUENCY times, unless
        // readers keep reading it; the budget makes eviction finish anyway.
        let mut budget = self.main.len() * usize::from(MAX_FREQUENCY) + 1;
        while let Some(h) = self.main.pop_front() {
            if !h.is_live() {
                continue;
            }
            let f = h.frequency().min(MAX_FREQUENCY);
            if f == 0 || budget == 0 {
                self.main_ghost.reserve(self.live);
                self.main_ghost.insert(h.hash());
                self.live -= 1;
                evicted.push(h);
                return;
            }
            budget -= 1;
            h.set_frequency(f - 1);
            self.main.push_back(h);
        }
        while let Some(h) = self.small.pop_front() {
            if h.is_live() {
                self.ghost.reserve(self.live);
                self.ghost.insert(h.hash());
                self.live -= 1;
                evicted.push(h);
                return;
            }
        }
        unreachable!("live entries are all in small or main");
    }
}

// ---------------------------------------------------------------------------
// Ghost
// ---------------------------------------------------------------------------

/// Slots per ghost bucket.
const BUCKET: usize = 8;

/// A bounded set of recently evicted keys, remembered by 32-bit fingerprints
/// stamped with a clock that advances on every insertion and every
/// [`Ghost::tick`]: an entry more than `capacity` ticks old counts as
/// forgotten, as in a FIFO of that length. When a
/// bucket is full the oldest slot is overwritten (a key forgotten a little
/// early); a fingerprint collision makes a key look remembered (it then goes
/// to main a little early). Both only shade the hit ratio.
#[derive(Debug)]
struct Ghost {
    /// Insertions a fingerprint stays valid for (0: the ghost is off).
    capacity: u32,
    /// `(fingerprint, stamp)` slots, [`BUCKET`] per bucket; fingerprint 0 is
    /// an empty slot.
    slots: Vec<(u32, u32)>,
    /// `slots.len() / BUCKET`.
    buckets: usize,
    /// Keys the slots are sized for (see [`Ghost::reserve`]).
    sized_for: usize,
    /// The clock: insertions and ticks so far (wrapping).
    now: u32,
    /// The clock, not wrapping and not cleared.
    total: u64,
}

impl Ghost {
    /// An empty ghost of about `capacity` fingerprints.
    fn new(capacity: usize) -> Self {
        let capacity = capacity.min(u32::MAX as usize / 2);
        Ghost {
            capacity: capacity as u32,
            // Allocated by the first `insert` (see `ensure_slots`).
            slots: Vec::new(),
            buckets: 1,
            sized_for: 0,
            now: 0,
            total: 0,
        }
    }

    /// The bucket's slots and the nonzero fingerprint of `hash`.
    fn locate(&mut self, hash: u64) -> (&mut [(u32, u32)], u32) {
        // Remix: the shell takes the hash's top bits for the shard and its
        // low bits for the table, so both ends are correlated here.
        let h = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let h = h ^ (h >> 29);
        // Multiply-shift range reduction: no power-of-two rounding needed.
        let bucket = ((u128::from(h as u32) * self.buckets as u128) >> 32) as usize;
        let fingerprint = ((h >> 32) as u32).max(1);
        let start = bucket * BUCKET;
        (&mut self.slots[start..start + BUCKET], fingerprint)
    }

    /// Advances the clock without inserting (small's promotions, so that ages
    /// count all of small's departures).
    fn tick(&mut self) {
        self.now = self.now.wrapping_add(1);
        self.total += 1;
    }

    /// Insertions and ticks since the ghost was made.
    fn ticks(&self) -> u64 {
        self.total
    }

    /// Allocates the slots on first use: a shard remembers keys only once
    /// it evicts, that is once it is full, so a cache that never fills
    /// never pays for a ghost sized for its capacity.
    fn ensure_slots(&mut self) {
        if self.slots.is_empty() {
            self.reserve(self.capacity as usize);
        }
    }

    /// Sizes the slots for `resident` keys (at most `capacity`): the shard
    /// holds that many when it evicts. For the entry bound that is the
    /// capacity, but the weight bound evicts with fewer entries resident,
    /// and a ghost sized for the capacity then allocated 12 bytes per unit
    /// of capacity at the first eviction (25 GB, an abort, for
    /// `usize::MAX / 4`). Grows when twice as many keys are resident,
    /// forgetting what it held (which only shades the hit ratio).
    fn reserve(&mut self, resident: usize) {
        let want = resident.clamp(1, (self.capacity as usize).max(1));
        if self.capacity == 0 || (!self.slots.is_empty() && want <= self.sized_for * 2) {
            return;
        }
        self.sized_for = want;
        self.buckets = (want + want / 2).div_ceil(BUCKET).max(1);
        self.slots = vec![(0, 0); self.buckets * BUCKET];
    }

    /// Remembers `hash`, overwriting a forgotten or the oldest slot.
    fn insert(&mut self, hash: u64) {
        if self.capacity == 0 {
            return;
        }
        self.ensure_slots();
        self.tick();
        let (now, capacity) = (self.now, self.capacity);
        let (bucket, fp) = self.locate(hash);
        let age = |stamp: u32| now.wrapping_sub(stamp);
        let slot = bucket
            .iter_mut()
            .max_by_key(|(f, stamp)| {
                // Prefer the key's own slot, then an empty or forgotten one,
                // then the oldest.
                if *f == fp {
                    u64::MAX
                } else if *f == 0 || age(*stamp) >= capacity {
                    u64::MAX - 1
                } else {
                    u64::from(age(*stamp))
                }
            })
            .expect("a bucket has slots");
        *slot = (fp, now);
    }

    /// Whether `hash` is remembered; forgets it.
    fn take(&mut self, hash: u64) -> bool {
        self.take_age(hash).is_some()
    }

    /// If `hash` is remembered, forgets it and returns its age (insertions
    /// since it was remembered, 0 for the latest).
    fn take_age(&mut self, hash: u64) -> Option<u32> {
        if self.capacity == 0 || self.slots.is_empty() {
            return None;
        }
        let (now, capacity) = (self.now, self.capacity);
        let (bucket, fp) = self.locate(hash);
        for slot in bucket.iter_mut() {
            let age = now.wrapping_sub(slot.1);
            if slot.0 == fp && age < capacity {
                *slot = (0, 0);
                return Some(age);
            }
        }
        None
    }

    /// Forgets everything.
    fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = (0, 0));
    }
}

// Not under miri: the policy is safe sequential code (no `unsafe`, no
// atomics), and its scans of thousands of keys took minutes there.
#[cfg(all(test, not(miri)))]
mod tests;
