//! Entries (what the table points at and readers see) and nodes (what the
//! eviction policy holds).
//!
//! An [`Entry`] is immutable once published except for its frequency
//! counter: key, value and expiry never change. An update of a resident key
//! publishes a *new* entry in the same slot; the policy keeps its place
//! because it does not hold the entry but the key's [`Node`], which points
//! at the key's slot and so needs no change (the new entry inherits the old
//! one's frequency and node pointer). Readers therefore reach the value with
//! one pointer chase (slot → entry) and never see a value and an expiry that
//! do not belong together.
//!
//! A node is owned by the policy's handle ([`NodeRef`], one per node, not
//! reference counted): an entry's pointer to its node is followed only by
//! the writer while the entry is linked, when the node is live and so still
//! held by the policy. An update therefore makes no atomic read-modify-write
//! and touches no node.
//!
//! Nodes are touched only under the shard's write lock (by the shell and by
//! the policy), so every access to their fields is `Relaxed`: the lock
//! orders them.

use std::ptr::NonNull;

use super::policy::Handle;
use crate::sync::{AtomicBool, AtomicPtr, AtomicU8, Ordering::Relaxed};

/// `expires` of an entry that never expires.
pub(crate) const NEVER: u64 = u64::MAX;

/// Where readers stop bumping an entry's frequency counter: the policy's
/// cap. A reader that finds the counter there writes nothing, so hot
/// entries' cache lines stay clean and shared between cores.
pub(crate) use super::policy::MAX_FREQUENCY;

/// A table slot (what a node points at while its key is resident).
pub(crate) type Slot<K, V> = AtomicPtr<Entry<K, V>>;

/// One resident key and its value, as readers see it.
pub(crate) struct Entry<K, V> {
    /// Expiry on the cache's clock in nanoseconds, or [`NEVER`].
    pub(crate) expires: u64,
    /// Saturating access counter, bumped by readers on a hit.
    pub(crate) frequency: AtomicU8,
    /// The entry's weight (1 without a weigher), counted against its
    /// shard's share of `max_weight`. Read only by the writer, under the
    /// lock; it sits in the padding after `frequency`, so it costs no bytes
    /// for most key and value types.
    pub(crate) weight: u32,
    pub(crate) key: K,
    pub(crate) value: V,
    /// The key's node, owned by the policy's [`NodeRef`]; null until the
    /// writer gives the entry one. Valid while the entry is linked (a live
    /// node is never dropped), and read only by the writer, under the lock:
    /// readers and the entry's destructor never follow it.
    node: *const Node<K, V>,
}

impl<K, V> Entry<K, V> {
    /// An entry with no node yet and a zero frequency (not yet published).
    pub(crate) fn new(expires: u64, weight: u32, key: K, value: V) -> Self {
        Entry {
            expires,
            frequency: AtomicU8::new(0),
            weight,
            key,
            value,
            node: std::ptr::null(),
        }
    }

    /// Gives the (unpublished) entry its key's node.
    pub(crate) fn set_node(&mut self, node: *const Node<K, V>) {
        self.node = node;
    }

    /// The key's node, as a pointer (for an update's new entry).
    pub(crate) fn node_ptr(&self) -> *const Node<K, V> {
        self.node
    }

    /// The key's node.
    ///
    /// # Safety
    /// The entry is linked in its shard's current table and the caller
    /// holds the shard lock (so the node's owner, the policy, keeps it).
    pub(crate) unsafe fn node(&self) -> &Node<K, V> {
        debug_assert!(!self.node.is_null(), "a linked entry has a node");
        // SAFETY: the caller's contract: a linked entry's node is live, and
        // live nodes are owned by the policy, which only the lock holder
        // changes.
        unsafe { &*self.node }
    }

    /// `true` if the entry has an expiry and `now` (nanoseconds) reached it.
    #[inline]
    pub(crate) fn is_expired_at(&self, now: u64) -> bool {
        self.expires != NEVER && now >= self.expires
    }

    /// Records a hit: bumps the frequency counter unless it is saturated.
    #[inline]
    pub(crate) fn touch(&self) {
        // Relaxed: a hint for the policy; a lost bump (two readers racing)
        // costs nothing but a little precision.
        let f = self.frequency.load(Relaxed);
        if f < MAX_FREQUENCY {
            // Relaxed: as above (a plain store, not a read-modify-write, so
            // that readers never contend on the line for an exact count).
            self.frequency.store(f + 1, Relaxed);
        }
    }
}

/// The identity of a resident key for the policy. Lives while the policy
/// holds it (its [`NodeRef`] owns it), through updates of the key: it
/// points at the key's *slot*, not its entry, so an update (a new entry in
/// the same slot) does not touch it. Only a rebuild, which moves entries to
/// new slots, re-points nodes.
pub(crate) struct Node<K, V> {
    hash: u64,
    /// `false` once the key was removed, evicted, expired or cleared.
    live: AtomicBool,
    /// The slot of the current table that holds this key's entry while live;
    /// null before the entry is published and once dead.
    slot: AtomicPtr<Slot<K, V>>,
}

impl<K, V> Node<K, V> {
    /// The key's full hash (low bits: home slot; bits 32 to 39: tag; top
    /// bits: shard).
    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    fn new(hash: u64) -> Self {
        Node {
            hash,
            live: AtomicBool::new(true),
            slot: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// The slot that holds this key's entry (null before publication and
    /// once dead). Writer only.
    pub(crate) fn slot(&self) -> *const Slot<K, V> {
        // Relaxed: nodes are touched only under the shard lock.
        self.slot.load(Relaxed)
    }

    /// Points the node at the slot now holding its key's entry. Writer only.
    pub(crate) fn set_slot(&self, slot: *const Slot<K, V>) {
        // Relaxed: nodes are touched only under the shard lock.
        self.slot.store(slot.cast_mut(), Relaxed);
    }

    /// `false` once the key is gone from the table. Writer only.
    pub(crate) fn is_live(&self) -> bool {
        // Relaxed: nodes are touched only under the shard lock.
        self.live.load(Relaxed)
    }

    /// Marks the key as gone from the table. Writer only.
    pub(crate) fn kill(&self) {
        // Relaxed: nodes are touched only under the shard lock.
        self.live.store(false, Relaxed);
        // Relaxed: as above.
        self.slot.store(std::ptr::null_mut(), Relaxed);
    }

    /// The entry in the node's slot, if it has one. Writer only.
    fn entry(&self) -> Option<&Entry<K, V>> {
        let slot = self.slot();
        if slot.is_null() {
            return None;
        }
        // A non-null `slot` is in the shard's current table: the writer
        // re-points nodes when it rebuilds and nulls them when it unlinks.
        // SAFETY: that table is live, and the policy runs only under the
        // shard lock, so the table is not retired meanwhile.
        let slot = unsafe { &*slot };
        // Relaxed: the writer reads its own stores, under the lock.
        let entry = slot.load(Relaxed);
        debug_assert!(!entry.is_null(), "a live node's slot holds its entry");
        // SAFETY: a live node's slot holds its key's linked entry, which is
        // not retired while the lock is held.
        Some(unsafe { &*entry })
    }
}

/// The policy's handle: the owner of a node. Not `Clone`: the node is freed
/// when its handle is dropped (by the policy, or by the writer after it
/// unlinked an evicted key), always under the shard lock.
pub(crate) struct NodeRef<K, V>(NonNull<Node<K, V>>);

// SAFETY: a `NodeRef` owns its node like a `Box` would; the node holds a
// hash, atomics and a pointer into a table that is only followed under the
// shard lock, so it may move to and be dropped on another thread.
unsafe impl<K, V> Send for NodeRef<K, V> {}

impl<K, V> NodeRef<K, V> {
    /// A node for a key with this hash, live, with no slot yet.
    pub(crate) fn new(hash: u64) -> Self {
        NodeRef(NonNull::from(Box::leak(Box::new(Node::new(hash)))))
    }

    /// The node (for the entries that point at it).
    pub(crate) fn as_ptr(&self) -> *const Node<K, V> {
        self.0.as_ptr()
    }

    /// The node.
    pub(crate) fn node(&self) -> &Node<K, V> {
        // SAFETY: the handle owns the node, which lives until it is dropped.
        unsafe { self.0.as_ref() }
    }
}

impl<K, V> Drop for NodeRef<K, V> {
    fn drop(&mut self) {
        // SAFETY: the node was leaked from a `Box` in `new` and is owned by
        // this handle alone; entries that still point at it are unlinked
        // (the node is dead) and never follow the pointer again.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

impl<K, V> Handle for NodeRef<K, V> {
    fn hash(&self) -> u64 {
        self.node().hash
    }

    fn frequency(&self) -> u8 {
        // Relaxed: a hint, as in `Entry::touch`.
        self.node().entry().map_or(0, |e| e.frequency.load(Relaxed))
    }

    fn set_frequency(&self, frequency: u8) {
        if let Some(e) = self.node().entry() {
            // Relaxed: a hint, as in `Entry::touch`.
            e.frequency.store(frequency, Relaxed);
        }
    }

    fn is_live(&self) -> bool {
        self.node().is_live()
    }
}

#[cfg(test)]
mod tests {
    use super::Entry;

    #[test]
    fn weight_fits_in_padding() {
        // expiry, node pointer, key, value: 32 bytes; the frequency byte
        // and the u32 weight share the last 8. (The hash lives in the node:
        // 40 bytes is a 48-byte allocator chunk where 48 was a 64-byte one.)
        assert_eq!(std::mem::size_of::<Entry<u64, u64>>(), 40);
    }
}
