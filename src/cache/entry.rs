//! Entries (what the table points at and readers see) and nodes (what the
//! eviction policy holds).
//!
//! An [`Entry`] is immutable once published except for its frequency
//! counter: key, value and expiry never change. An update of a resident key
//! publishes a *new* entry in the same slot; the policy keeps its place
//! because it does not hold the entry but the key's [`Node`], which the
//! writer re-points at the new entry (and the new entry inherits the old
//! one's frequency). Readers therefore reach the value with one pointer
//! chase (slot → entry) and never see a value and an expiry that do not
//! belong together.
//!
//! Nodes are touched only under the shard's write lock (by the shell and by
//! the policy), so every access to their fields is `Relaxed`: the lock
//! orders them.

use std::sync::Arc;

use super::policy::Handle;
use crate::sync::{AtomicBool, AtomicPtr, AtomicU8, Ordering::Relaxed};

/// `expires` of an entry that never expires.
pub(crate) const NEVER: u64 = u64::MAX;

/// Where readers stop bumping an entry's frequency counter. S3-FIFO counts
/// up to 3; a reader that finds the counter there writes nothing, so hot
/// entries' cache lines stay clean and shared between cores.
pub(crate) const MAX_FREQUENCY: u8 = 3;

/// One resident key and its value, as readers see it.
pub(crate) struct Entry<K, V> {
    /// The key's full hash (low bits: home slot; top bits: shard).
    pub(crate) hash: u64,
    /// Expiry on the cache's clock in nanoseconds, or [`NEVER`].
    pub(crate) expires: u64,
    /// Saturating access counter, bumped by readers on a hit.
    pub(crate) frequency: AtomicU8,
    pub(crate) key: K,
    pub(crate) value: V,
    /// The key's node, shared with the policy.
    pub(crate) node: Arc<Node<K, V>>,
}

impl<K, V> Entry<K, V> {
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

/// The identity of a resident key for the policy. Lives while the key is
/// resident (through updates) and as long as the policy still holds it.
pub(crate) struct Node<K, V> {
    hash: u64,
    /// `false` once the key was removed, evicted, expired or cleared.
    live: AtomicBool,
    /// The entry now published for this key while live; null once dead.
    entry: AtomicPtr<Entry<K, V>>,
}

impl<K, V> Node<K, V> {
    pub(crate) fn new(hash: u64) -> Self {
        Node {
            hash,
            live: AtomicBool::new(true),
            entry: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// The entry now published for this key (null once dead). Writer only.
    pub(crate) fn entry(&self) -> *mut Entry<K, V> {
        // Relaxed: nodes are touched only under the shard lock.
        self.entry.load(Relaxed)
    }

    /// Points the node at the entry now published for its key. Writer only.
    pub(crate) fn set_entry(&self, entry: *mut Entry<K, V>) {
        // Relaxed: nodes are touched only under the shard lock.
        self.entry.store(entry, Relaxed);
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
        self.entry.store(std::ptr::null_mut(), Relaxed);
    }
}

/// The policy's handle: a counted reference to a node.
pub(crate) struct NodeRef<K, V>(pub(crate) Arc<Node<K, V>>);

impl<K, V> Handle for NodeRef<K, V> {
    fn hash(&self) -> u64 {
        self.0.hash
    }

    fn frequency(&self) -> u8 {
        let entry = self.0.entry();
        if entry.is_null() {
            return 0;
        }
        // SAFETY: a non-null `entry` is published in the shard's current
        // table (the writer nulls it before unlinking), and the policy runs
        // only under the shard lock, so the entry is not retired meanwhile.
        unsafe { &*entry }.frequency.load(Relaxed)
    }

    fn set_frequency(&self, frequency: u8) {
        let entry = self.0.entry();
        if !entry.is_null() {
            // SAFETY: as in `frequency`.
            let entry = unsafe { &*entry };
            // Relaxed: a hint, as in `Entry::touch`.
            entry.frequency.store(frequency, Relaxed);
        }
    }

    fn is_live(&self) -> bool {
        // Relaxed: nodes are touched only under the shard lock.
        self.0.live.load(Relaxed)
    }
}
