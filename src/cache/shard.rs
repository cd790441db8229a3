//! One shard: a lock-free-readable [`Table`], and a lock that serialises
//! its writers and owns the eviction [`Policy`].
//!
//! Writers (insert, remove, sweeps, clear) take the lock, change the table
//! with single-pointer stores, tell the policy, and retire what they
//! unlinked through the epoch collector. Removals they make are collected as
//! notices, so the eviction listener runs after the lock is released (while
//! the caller is still pinned, so the entries it is shown are alive).

use std::borrow::Borrow;
use std::sync::Arc;

use super::entry::{Entry, Node, NodeRef, NEVER};
use super::flight::Flights;
use super::policy::Policy;
use super::recycle::{Blocks, Recycler};
use super::stats::{bump_locked, WriteCounters};
use super::table::{slots_for, tombstone, Probe, Table};
use super::RemovalCause;
use crate::clock::Clock;
use crate::sync::epoch::Guard;
use crate::sync::{
    AtomicPtr, AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use crate::sync::{CachePadded, Mutex, MutexGuard};

/// Slots a writer inspects for expired entries per insert.
const SWEEP_PER_INSERT: usize = 2;

/// Entries a shard's first table is sized for. Tables double as entries
/// arrive (a rebuild, O(entries), amortized O(1) per insert), up to the
/// size for the shard's capacity, so a cache built with a large capacity
/// and filled slowly, or never, does not hold a full-size table from the
/// start. Under the model checkers it is 1, so that their small caches
/// grow too, and a rebuild races readers in every scenario that fills one.
const INITIAL_ENTRIES: usize = if cfg!(any(unlocked_loom, feature = "shuttle")) {
    1
} else {
    64
};

/// What one operation needs besides the shard: the pinned guard, the time
/// (read at most once, and only if an entry has an expiry) and the removal
/// notices for the listener.
pub(crate) struct Ctx<'g, K, V> {
    pub(crate) guard: &'g Guard,
    clock: &'g dyn Clock,
    now: Option<u64>,
    /// Collect notices at all (there is a listener).
    notify: bool,
    pub(crate) notices: Vec<(*const Entry<K, V>, RemovalCause)>,
}

impl<'g, K, V> Ctx<'g, K, V> {
    pub(crate) fn new(guard: &'g Guard, clock: &'g dyn Clock, notify: bool) -> Self {
        Ctx {
            guard,
            clock,
            now: None,
            notify,
            notices: Vec::new(),
        }
    }

    /// The time in nanoseconds, read once per operation.
    pub(crate) fn now(&mut self) -> u64 {
        let clock = self.clock;
        *self.now.get_or_insert_with(|| nanos(clock))
    }

    /// `true` if `e` has an expiry and it has passed (reads the clock only
    /// for entries with an expiry).
    pub(crate) fn expired(&mut self, e: &Entry<K, V>) -> bool {
        e.expires != NEVER && e.is_expired_at(self.now())
    }

    fn notice(&mut self, e: *const Entry<K, V>, cause: RemovalCause) {
        if self.notify {
            self.notices.push((e, cause));
        }
    }

    /// Retires an unlinked entry: freed once no pinned thread can see it.
    /// Entries go to the collector in batches of [`RETIRE_BATCH`] (one
    /// deferred closure each): deferring them one by one cost about a
    /// tenth of an insert-heavy mix in the epoch's bookkeeping.
    fn retire(&self, w: &mut Writer<K, V>, e: *mut Entry<K, V>) {
        w.retired.push(e);
        if w.retired.len() < RETIRE_BATCH {
            return;
        }
        let batch = std::mem::replace(&mut w.retired, Vec::with_capacity(RETIRE_BATCH));
        let recycler = Arc::clone(&w.recycler);
        // Every entry of `batch` was unlinked from the table (or never
        // published) by a writer holding this lock, before this call, and
        // is retired exactly once (it leaves `retired` here). The closure
        // owns the batch: it drops the keys and values (past one whose
        // `drop` panics) and gives the blocks to the shard's writers (see
        // `recycle.rs`). A reader that loaded one of them was pinned before
        // it was unlinked, so before this defer.
        // SAFETY: the collector runs the closure only after every thread
        // pinned now has unpinned, when no reader can reach the batch.
        unsafe {
            self.guard.defer_unchecked(move || {
                recycler.offer(Blocks::from_retired(batch));
            })
        };
    }
}

/// What a write leaves unused, for its caller to drop after the lock: the
/// node allocated for a key that turned out resident, and the entry when a
/// live one was kept ([`Resident::Keep`]).
type Unused<K, V> = (Option<NodeRef<K, V>>, Option<Entry<K, V>>);

/// What an insert does with a live entry of its key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resident {
    /// Replaces it (an insert).
    Replace,
    /// Keeps it, and stores nothing: a loader's value, which must not
    /// overwrite an insert that landed while it loaded (one that started
    /// before the load was registered, so found no flight to supersede:
    /// found in review).
    Keep,
}

/// Retired entries a shard collects before it hands them to the epoch
/// collector together (one at a time under the model checkers, which then
/// see each retirement as before).
const RETIRE_BATCH: usize = if cfg!(any(unlocked_loom, feature = "shuttle")) {
    1
} else {
    32
};

/// Blocks a shard's recycler keeps at most: a quarter of its capacity,
/// between one batch and [`MAX_RECYCLED`], so that the spare memory stays
/// small next to the entries themselves.
fn recycle_limit(capacity: usize) -> usize {
    (capacity / 4).clamp(RETIRE_BATCH, MAX_RECYCLED)
}

/// The most blocks a shard's recycler keeps.
const MAX_RECYCLED: usize = 512;

/// The clock's time in nanoseconds (saturating), through
/// [`Clock::now_nanos`], which a clock may override for its hot path.
pub(crate) fn nanos(clock: &dyn Clock) -> u64 {
    clock.now_nanos()
}

/// Writer state, under the shard lock.
struct Writer<K, V> {
    policy: Policy<NodeRef<K, V>>,
    /// Tombstones in the current table.
    tombstones: usize,
    /// Linked entries that have an expiry (0: sweeps and clock reads skip).
    expiring: usize,
    /// Total weight of the linked entries (never above `max_weight` when
    /// the lock is released).
    weight: u64,
    /// Next slot the sweep inspects.
    cursor: usize,
    /// Scratch for the policy's evictions (kept to avoid allocating).
    evicted: Vec<NodeRef<K, V>>,
    /// Unlinked entries not yet handed to the collector (see
    /// [`Ctx::retire`]); owned by the shard until then.
    retired: Vec<*mut Entry<K, V>>,
    /// Blocks of reclaimed entries for the next inserts, refilled from
    /// `recycler` (see `recycle.rs`).
    spare: Blocks<K, V>,
    /// Where the collector returns the blocks of retired batches.
    recycler: Arc<Recycler<K, V>>,
}

impl<K, V> Writer<K, V> {
    /// Boxes a new entry, in a recycled block when there is one.
    fn boxed(&mut self, entry: Entry<K, V>) -> Box<Entry<K, V>> {
        if self.spare.is_empty() {
            if let Some(blocks) = self.recycler.take() {
                self.spare = blocks;
            }
        }
        self.spare.boxed(entry)
    }
}

pub(crate) struct Shard<K, V> {
    /// The current table; replaced (Release) only by a writer's rebuild or
    /// clear. On a cache line of its own: every `get` loads it, and the
    /// fields below (the lock word, `len`, the counters) are written by
    /// every insert, which would otherwise invalidate readers' copy.
    table: CachePadded<AtomicPtr<Table<K, V>>>,
    /// Linked entries, mirrored from the policy after each write.
    len: AtomicUsize,
    /// Their total weight, mirrored from the writer after each write.
    weight: AtomicU64,
    /// The shard's share of the cache's `max_weight` (`u64::MAX`: none).
    max_weight: u64,
    writer: Mutex<Writer<K, V>>,
    pub(crate) counters: WriteCounters,
    /// Keys being loaded by `get_or_insert_with` and friends.
    pub(crate) flights: Flights<K, V>,
    /// The table's size once the shard holds `capacity` entries; it starts
    /// smaller and doubles as entries arrive (see [`INITIAL_ENTRIES`]).
    max_slots: usize,
}

impl<K, V> Shard<K, V> {
    /// A shard of at most `capacity` entries weighing at most `max_weight`
    /// together.
    pub(crate) fn new(capacity: usize, max_weight: u64) -> Self {
        let table = Box::new(Table::new(slots_for(capacity.min(INITIAL_ENTRIES))));
        Shard {
            table: CachePadded::new(AtomicPtr::new(Box::into_raw(table))),
            max_slots: slots_for(capacity),
            len: AtomicUsize::new(0),
            weight: AtomicU64::new(0),
            max_weight,
            writer: Mutex::new(Writer {
                policy: Policy::new(capacity),
                tombstones: 0,
                expiring: 0,
                weight: 0,
                cursor: 0,
                evicted: Vec::new(),
                retired: Vec::new(),
                spare: Blocks::new(),
                recycler: Arc::new(Recycler::new(recycle_limit(capacity))),
            }),
            counters: WriteCounters::default(),
            flights: Flights::new(),
        }
    }

    /// The current table, valid while `guard` is pinned.
    #[inline]
    pub(crate) fn table<'g>(&self, _guard: &'g Guard) -> &'g Table<K, V> {
        // Acquire: pairs with the Release store that published the table,
        // so its slots' initial contents are visible.
        let t = self.table.load(Acquire);
        // SAFETY: tables are retired through the epoch collector when
        // replaced, and the caller is pinned by `_guard`.
        unsafe { &*t }
    }

    /// Linked entries (expired ones not yet reclaimed included).
    pub(crate) fn len(&self) -> usize {
        // Relaxed: a statistic; exact at quiescence.
        self.len.load(Relaxed)
    }

    /// Total weight of the linked entries.
    pub(crate) fn weight(&self) -> u64 {
        // Relaxed: a statistic; exact at quiescence.
        self.weight.load(Relaxed)
    }

    /// The most weight this shard holds.
    pub(crate) fn max_weight(&self) -> u64 {
        self.max_weight
    }

    /// The most entries this shard holds.
    pub(crate) fn capacity(&self) -> usize {
        self.writer.lock().policy.capacity()
    }

    /// Tombstones in the current table (for tests).
    pub(crate) fn tombstones(&self) -> usize {
        self.writer.lock().tombstones
    }

    fn lock(&self) -> MutexGuard<'_, Writer<K, V>> {
        self.writer.lock()
    }

    /// The lock, for an operation that may change the shard: when some
    /// entry can expire, the clock (user code, which may panic) is read
    /// first, before anything changes, and every later expiry check of the
    /// operation uses that reading. A clock that panicked midway left a
    /// victim's node freed while its entry stayed linked (found in review).
    fn lock_for_write(&self, ctx: &mut Ctx<'_, K, V>) -> MutexGuard<'_, Writer<K, V>> {
        let w = self.lock();
        if w.expiring > 0 {
            ctx.now();
        }
        w
    }

    fn publish_len(&self, w: &Writer<K, V>) {
        // Relaxed: a statistic for `len`.
        self.len.store(w.policy.live(), Relaxed);
        // Relaxed: a statistic for `weighted_size`.
        self.weight.store(w.weight, Relaxed);
    }
}

impl<K: Eq + 'static, V: 'static> Shard<K, V> {
    /// Inserts or updates `entry`'s key; with [`Resident::Keep`], a live
    /// entry of the key stays and `entry` comes back unstored, for the
    /// caller to drop outside its own locks.
    ///
    /// The node of a key that a lock-free look finds absent is allocated
    /// before the lock is taken, and a node the look made in vain is freed
    /// after it is released. The entry is boxed under the lock, in a block
    /// recycled from a retired entry when the shard has one (see
    /// `recycle.rs`), else by the allocator. The look also brings the
    /// probe's cache lines in before the lock is taken.
    pub(crate) fn insert(
        &self,
        ctx: &mut Ctx<'_, K, V>,
        hash: u64,
        entry: Entry<K, V>,
        resident: Resident,
    ) -> Option<Entry<K, V>> {
        let node = match self.table(ctx.guard).find(hash, &entry.key) {
            Probe::Found(..) => None,
            Probe::Absent => Some(NodeRef::new(hash)),
        };
        let (unused, kept) = self.insert_entry(ctx, hash, entry, node, resident);
        drop(unused);
        kept
    }

    /// Inserts or updates `entry`'s key under the lock, with `node` for a
    /// key that turns out absent; returns the node if it was not needed,
    /// and the entry if `resident` kept a live entry in its place.
    fn insert_entry(
        &self,
        ctx: &mut Ctx<'_, K, V>,
        hash: u64,
        entry: Entry<K, V>,
        node: Option<NodeRef<K, V>>,
        resident: Resident,
    ) -> Unused<K, V> {
        let mut w = self.lock_for_write(ctx);
        let table = self.table(ctx.guard);
        // The probe runs the key's `Eq` (user code, which may panic) before
        // anything changes: a panic after the sweep lost its listener calls
        // and left `len` stale (found in review). The sweep may then unlink
        // the entry found, if it expired: look at its slot again.
        let probe = table.find(hash, &entry.key);
        self.sweep(&mut w, table, ctx);
        let probe = match probe {
            Probe::Found(i, old) if !std::ptr::eq(table.load(i), old) => Probe::Absent,
            probe => probe,
        };
        if let (Probe::Found(_, old), Resident::Keep) = (&probe, resident) {
            if !ctx.expired(old) {
                // The sweep may have reclaimed entries.
                self.publish_len(&w);
                return (node, Some(entry));
            }
        }
        let entry = w.boxed(entry);
        // Expired on arrival (a zero TTL, or a clock that moved): never
        // visible, so it must not evict a live entry to make room (found in
        // review: a zero-TTL insert into a full cache pushed one out).
        // Checked before the weight: an expired entry counts as an
        // expiration wherever it is dropped (DESIGN), also when it is too
        // heavy (found in review: it counted as an eviction).
        if entry.expires != NEVER && ctx.expired(&entry) {
            self.turn_away(&mut w, table, probe, entry, RemovalCause::Expired, ctx);
            return (node, None);
        }
        // Predictable: without a weigher every entry weighs 1 and the
        // shard's share is at least 1.
        if u64::from(entry.weight) > self.max_weight {
            self.turn_away(&mut w, table, probe, entry, RemovalCause::Evicted, ctx);
            return (node, None);
        }
        if let Probe::Found(i, old) = probe {
            if !ctx.expired(old) {
                self.replace(&mut w, table, i, old, entry, ctx);
                // The sweep may have reclaimed entries.
                self.publish_len(&w);
                return (node, None);
            }
            self.unlink(&mut w, table, i, old, RemovalCause::Expired, ctx);
            w.policy.removed();
        }
        let node = node.unwrap_or_else(|| NodeRef::new(hash));
        self.admit(&mut w, table, hash, entry, node, ctx);
        self.publish_len(&w);
        (None, None)
    }

    /// Turns away an entry that is never visible: one heavier than the
    /// shard's share of `max_weight` (`Evicted`, as for a newcomer the
    /// policy evicts) or one expired on arrival (`Expired`); an insert if
    /// its key was not resident. A resident entry of the key leaves first,
    /// as an update (`Replaced`) if it was live, so no stale value stays
    /// behind.
    #[cold]
    #[inline(never)]
    fn turn_away(
        &self,
        w: &mut Writer<K, V>,
        table: &Table<K, V>,
        probe: Probe<'_, K, V>,
        entry: Box<Entry<K, V>>,
        cause: RemovalCause,
        ctx: &mut Ctx<'_, K, V>,
    ) {
        let mut replaced = false;
        if let Probe::Found(i, old) = probe {
            replaced = !ctx.expired(old);
            let cause = if replaced {
                RemovalCause::Replaced
            } else {
                RemovalCause::Expired
            };
            self.unlink(w, table, i, old, cause, ctx);
            w.policy.removed();
        }
        if !replaced {
            bump_locked(&self.counters.inserts);
        }
        let entry = Box::into_raw(entry);
        bump_locked(if cause == RemovalCause::Expired {
            &self.counters.expirations
        } else {
            &self.counters.evictions
        });
        ctx.notice(entry, cause);
        ctx.retire(w, entry);
        self.publish_len(w);
    }

    /// Unlinks victims in the policy's order until the shard's total
    /// weight plus `extra` fits its share (or nothing is left).
    #[cold]
    #[inline(never)]
    fn shed_weight(
        &self,
        w: &mut Writer<K, V>,
        table: &Table<K, V>,
        extra: u64,
        ctx: &mut Ctx<'_, K, V>,
    ) {
        let mut evicted = std::mem::take(&mut w.evicted);
        while w.weight + extra > self.max_weight && w.policy.live() > 0 {
            w.policy.evict(&mut evicted);
            self.unlink_victims(w, table, &mut evicted, std::ptr::null(), ctx);
        }
        w.evicted = evicted;
    }

    /// Publishes `new` for a resident key in its slot, in place of `old`;
    /// the key's node (its place in the policy) and frequency carry over.
    fn replace(
        &self,
        w: &mut Writer<K, V>,
        table: &Table<K, V>,
        i: usize,
        old: &Entry<K, V>,
        mut new: Box<Entry<K, V>>,
        ctx: &mut Ctx<'_, K, V>,
    ) {
        // The key keeps its node (which points at the slot, not the entry)
        // and its frequency. Relaxed: a hint (see `Entry::touch`).
        new.frequency.store(old.frequency.load(Relaxed), Relaxed);
        new.set_node(old.node_ptr());
        let expiring = new.expires != NEVER;
        let weight = w.weight - u64::from(old.weight) + u64::from(new.weight);
        let new = Box::into_raw(new);
        // The slot's own pointer (not one derived from `old`, a shared
        // reference) is the one the entry may be freed through.
        let old_raw = table.load(i);
        debug_assert!(std::ptr::eq(old_raw, old));
        table.replace(i, new);
        w.expiring = w.expiring + usize::from(expiring) - usize::from(old.expires != NEVER);
        w.weight = weight;
        bump_locked(&self.counters.updates);
        ctx.notice(old_raw, RemovalCause::Replaced);
        ctx.retire(w, old_raw);
        if w.weight > self.max_weight {
            // A heavier value: evict in the policy's order until the shard
            // fits again (the updated key itself may be among the victims).
            self.shed_weight(w, table, 0, ctx);
        }
    }

    /// Admits `entry`, whose key is not resident, with its new `node`,
    /// evicting as the policy decides.
    fn admit<'g>(
        &self,
        w: &mut Writer<K, V>,
        mut table: &'g Table<K, V>,
        hash: u64,
        mut entry: Box<Entry<K, V>>,
        node: NodeRef<K, V>,
        ctx: &mut Ctx<'g, K, V>,
    ) {
        let node_ptr = node.as_ptr();
        entry.set_node(node_ptr);
        let (expiring, weight) = (entry.expires != NEVER, entry.weight);
        let entry = Box::into_raw(entry);
        bump_locked(&self.counters.inserts);
        if !self.make_room(w, table, node, weight, ctx) {
            // The policy turned the newcomer away: it was never visible.
            bump_locked(&self.counters.evictions);
            ctx.notice(entry, RemovalCause::Evicted);
            ctx.retire(w, entry);
            return;
        }
        if w.policy.live() + w.tombstones > table.occupancy_limit() {
            let slots = self.rebuilt_size(w, table);
            table = self.rebuild(w, table, slots, ctx.guard);
        }
        let (i, was_tombstone) = table.free_slot(hash);
        if was_tombstone {
            w.tombstones -= 1;
        }
        table.publish(i, entry, hash);
        // SAFETY: the node is live (the policy admitted it) and owned by the
        // policy, which only the lock holder changes.
        unsafe { &*node_ptr }.set_slot(table.slot_ptr(i));
        w.expiring += usize::from(expiring);
        w.weight += u64::from(weight);
    }

    /// Evicts until a newcomer of `weight` (at most the shard's share)
    /// fits, then hands `node` to the policy and unlinks the entries it
    /// evicts; `false` if the policy evicted the newcomer itself (its node
    /// is then freed).
    fn make_room(
        &self,
        w: &mut Writer<K, V>,
        table: &Table<K, V>,
        node: NodeRef<K, V>,
        weight: u32,
        ctx: &mut Ctx<'_, K, V>,
    ) -> bool {
        let node_ptr = node.as_ptr();
        // Predictable: never taken without a weigher and `max_weight`. The
        // newcomer is not in the policy yet, so it is never a victim here.
        if w.weight + u64::from(weight) > self.max_weight {
            self.shed_weight(w, table, u64::from(weight), ctx);
        }
        let mut evicted = std::mem::take(&mut w.evicted);
        w.policy.insert(node, &mut evicted);
        let admitted = self.unlink_victims(w, table, &mut evicted, node_ptr, ctx);
        w.evicted = evicted;
        admitted
    }

    /// Unlinks the entries of the policy's `evicted` handles (draining it);
    /// `false` if `newcomer`'s handle was among them.
    fn unlink_victims(
        &self,
        w: &mut Writer<K, V>,
        table: &Table<K, V>,
        evicted: &mut Vec<NodeRef<K, V>>,
        newcomer: *const Node<K, V>,
        ctx: &mut Ctx<'_, K, V>,
    ) -> bool {
        let mut admitted = true;
        for victim in evicted.drain(..) {
            if std::ptr::eq(victim.as_ptr(), newcomer) {
                admitted = false;
                continue;
            }
            let i = table.index_of(victim.node().slot());
            let e = table.load(i);
            // SAFETY: a live node's slot holds its linked entry, and linked
            // entries stay alive while the lock is held.
            let v = unsafe { &*e };
            debug_assert!(
                std::ptr::eq(victim.as_ptr(), v.node_ptr()),
                "a node's entry points back at it"
            );
            let cause = if ctx.expired(v) {
                RemovalCause::Expired
            } else {
                RemovalCause::Evicted
            };
            self.unlink(w, table, i, v, cause, ctx);
        }
        admitted
    }

    /// Unlinks the entry in slot `i`, marks its node dead, counts it under
    /// `cause` and retires it. The caller tells the policy (`removed`),
    /// unless the policy itself chose the entry.
    fn unlink(
        &self,
        w: &mut Writer<K, V>,
        table: &Table<K, V>,
        i: usize,
        e: &Entry<K, V>,
        cause: RemovalCause,
        ctx: &mut Ctx<'_, K, V>,
    ) {
        // The slot's own pointer: see `replace`.
        let raw = table.load(i);
        debug_assert!(std::ptr::eq(raw, e));
        let delta = table.unlink(i);
        w.tombstones = w.tombstones.wrapping_add_signed(delta);
        // SAFETY: `e` was linked until just now, and the lock is held.
        unsafe { e.node() }.kill();
        w.expiring -= usize::from(e.expires != NEVER);
        w.weight -= u64::from(e.weight);
        self.count(cause);
        ctx.notice(raw, cause);
        ctx.retire(w, raw);
    }

    fn count(&self, cause: RemovalCause) {
        bump_locked(match cause {
            RemovalCause::Evicted => &self.counters.evictions,
            RemovalCause::Expired => &self.counters.expirations,
            RemovalCause::Removed => &self.counters.removals,
            RemovalCause::Replaced => &self.counters.updates,
        });
    }

    /// The size of the table that replaces a full `table`: twice as large
    /// while live entries fill more than half of it and it is below its
    /// final size, the same size otherwise (the rebuild then only sweeps
    /// out tombstones).
    fn rebuilt_size(&self, w: &Writer<K, V>, table: &Table<K, V>) -> usize {
        let slots = table.len();
        if w.policy.live().saturating_mul(2) > slots && slots < self.max_slots {
            slots.saturating_mul(2).min(self.max_slots)
        } else {
            slots
        }
    }

    /// Copies the live entries into a fresh table of `slots` slots,
    /// publishes it and retires the old array.
    fn rebuild<'g>(
        &self,
        w: &mut Writer<K, V>,
        old: &'g Table<K, V>,
        slots: usize,
        guard: &'g Guard,
    ) -> &'g Table<K, V> {
        let fresh = Box::into_raw(Box::new(old.rebuilt(slots)));
        // SAFETY: just allocated; freed only after it is published and then
        // retired by a later writer.
        unsafe { &*fresh }.point_nodes();
        // Release: publishes the fresh table's slots to readers that load
        // the table pointer with Acquire. (The swap's read needs nothing:
        // only writers, under the lock, store the pointer.) The returned
        // pointer, not one derived from `old`, is the one to free through.
        let old_raw = self.table.swap(fresh, Release);
        debug_assert!(std::ptr::eq(old_raw, old));
        let old = old_raw;
        // SAFETY: the old table is unreachable for new readers; readers
        // that loaded it are pinned. Dropping a table frees only its array,
        // never the entries (which now live in the fresh table).
        unsafe { guard.defer_unchecked(move || drop(Box::from_raw(old))) };
        w.tombstones = 0;
        w.cursor = 0;
        // SAFETY: just published; retired only by a later writer, after
        // this guard unpins.
        unsafe { &*fresh }
    }

    /// Reclaims expired entries among the next few slots.
    fn sweep(&self, w: &mut Writer<K, V>, table: &Table<K, V>, ctx: &mut Ctx<'_, K, V>) {
        if w.expiring == 0 {
            return;
        }
        for _ in 0..SWEEP_PER_INSERT {
            let i = w.cursor % table.len();
            w.cursor = i + 1;
            self.expire_slot(w, table, i, ctx);
        }
    }

    /// Unlinks the entry in slot `i` if it has expired; `true` if it did.
    fn expire_slot(
        &self,
        w: &mut Writer<K, V>,
        table: &Table<K, V>,
        i: usize,
        ctx: &mut Ctx<'_, K, V>,
    ) -> bool {
        let p = table.load(i);
        if p.is_null() || p == tombstone() {
            return false;
        }
        // SAFETY: linked entries stay alive while the lock is held.
        let e = unsafe { &*p };
        if !ctx.expired(e) {
            return false;
        }
        self.unlink(w, table, i, e, RemovalCause::Expired, ctx);
        w.policy.removed();
        true
    }

    /// Removes `key`; the entry (still alive while `ctx.guard` is pinned)
    /// if it was resident and unexpired.
    pub(crate) fn remove<'g, Q>(
        &self,
        ctx: &mut Ctx<'g, K, V>,
        hash: u64,
        key: &Q,
    ) -> Option<&'g Entry<K, V>>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let mut w = self.lock_for_write(ctx);
        let table = self.table(ctx.guard);
        let Probe::Found(i, e) = table.find(hash, key) else {
            return None;
        };
        let expired = ctx.expired(e);
        let cause = if expired {
            RemovalCause::Expired
        } else {
            RemovalCause::Removed
        };
        self.unlink(&mut w, table, i, e, cause, ctx);
        w.policy.removed();
        self.publish_len(&w);
        (!expired).then_some(e)
    }

    /// Reclaims every expired entry; how many.
    pub(crate) fn cleanup_expired(&self, ctx: &mut Ctx<'_, K, V>) -> usize {
        let mut w = self.lock_for_write(ctx);
        if w.expiring == 0 {
            return 0;
        }
        let table = self.table(ctx.guard);
        let mut n = 0;
        for i in 0..table.len() {
            n += usize::from(self.expire_slot(&mut w, table, i, ctx));
        }
        self.publish_len(&w);
        n
    }

    /// Removes every entry.
    pub(crate) fn clear(&self, ctx: &mut Ctx<'_, K, V>) {
        let mut w = self.lock_for_write(ctx);
        let old = self.table(ctx.guard);
        let fresh = Box::into_raw(Box::new(Table::new(old.len())));
        // Release: publishes the empty table's initialised slots (the
        // swap's read: see `rebuild`).
        let old_raw = self.table.swap(fresh, Release);
        debug_assert!(std::ptr::eq(old_raw, old));
        for p in old.entries() {
            // SAFETY: linked entries stay alive while the lock is held.
            let e = unsafe { &*p };
            // SAFETY: `e` was linked until the swap, and the lock is held.
            unsafe { e.node() }.kill();
            let cause = if ctx.expired(e) {
                RemovalCause::Expired
            } else {
                RemovalCause::Removed
            };
            self.count(cause);
            ctx.notice(p, cause);
            ctx.retire(&mut w, p);
        }
        let old = old_raw;
        // SAFETY: as in `rebuild`: the old array alone is freed, after
        // every reader that loaded it unpins.
        unsafe { ctx.guard.defer_unchecked(move || drop(Box::from_raw(old))) };
        drop(w.policy.clear());
        w.tombstones = 0;
        w.expiring = 0;
        w.weight = 0;
        w.cursor = 0;
        self.publish_len(&w);
    }
}

impl<K: Eq, V> Shard<K, V> {
    /// Checks the shard's invariants (for tests and fuzzing); panics with
    /// what is broken.
    pub(crate) fn validate(&self, guard: &Guard) {
        use super::table::{tag_of, EMPTY, TOMBSTONE};
        let w = self.lock();
        let table = self.table(guard);
        let (mut live, mut tombstones, mut expiring, mut empty) = (0, 0, 0, 0);
        let mut weight = 0u64;
        for i in 0..table.len() {
            let p = table.load(i);
            match table.tag(i) {
                EMPTY => {
                    assert!(p.is_null(), "slot {i}: empty tag, non-null pointer");
                    empty += 1;
                }
                TOMBSTONE => {
                    assert!(p == tombstone(), "slot {i}: tombstone tag, other pointer");
                    tombstones += 1;
                }
                tag => {
                    assert!(!p.is_null() && p != tombstone(), "slot {i}: tag, no entry");
                    // SAFETY: linked entries stay alive while the lock is held.
                    let e = unsafe { &*p };
                    // SAFETY: `e` is linked and the lock is held.
                    let node = unsafe { e.node() };
                    assert_eq!(tag, tag_of(node.hash()), "slot {i}: wrong tag");
                    assert!(
                        matches!(table.find(node.hash(), &e.key), Probe::Found(j, _) if j == i),
                        "slot {i}: entry not reachable on its probe sequence"
                    );
                    assert!(node.is_live(), "slot {i}: linked entry, dead node");
                    assert_eq!(
                        node.slot(),
                        table.slot_ptr(i),
                        "slot {i}: node points elsewhere"
                    );
                    live += 1;
                    expiring += usize::from(e.expires != NEVER);
                    weight += u64::from(e.weight);
                }
            }
        }
        assert!(empty > 0, "no empty slot: probes would not terminate early");
        assert_eq!(live, w.policy.live(), "linked entries vs policy");
        assert!(live <= w.policy.capacity(), "over capacity");
        assert_eq!(tombstones, w.tombstones, "tombstone count");
        assert_eq!(expiring, w.expiring, "expiring count");
        assert_eq!(live, self.len(), "len");
        assert_eq!(weight, w.weight, "weight");
        assert!(weight <= self.max_weight, "over max_weight");
        assert_eq!(weight, self.weight(), "published weight");
    }
}

impl<K, V> Drop for Shard<K, V> {
    fn drop(&mut self) {
        // Relaxed: `&mut self` excludes every other access.
        let table = self.table.load(Relaxed);
        // SAFETY: the current table is owned by the shard; retired tables
        // and the batches handed over belong to the collector, linked
        // entries to this table.
        let table = unsafe { Box::from_raw(table) };
        // The retired entries not yet handed to the collector: unlinked, so
        // no table holds them, and `&mut self` means no reader can either.
        let retired = std::mem::take(&mut self.writer.lock().retired);
        // One run over both, so that a value whose drop panics stops
        // neither the rest of the table nor the batch.
        let mut owned = table.entries().chain(retired);
        crate::drain::drop_all(&mut || {
            // SAFETY: each linked entry is owned by the table and each
            // retired one by the batch (see `Ctx::retire`), once; no entry
            // is in both.
            owned.next().map(|p| unsafe { Box::from_raw(p) })
        });
    }
}
