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
//! This placeholder is a plain FIFO; the S3-FIFO-family policy replaces it.

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

/// The eviction policy of one shard (see the module docs for the contract).
#[derive(Debug)]
pub(crate) struct Policy<H> {
    /// Most entries resident at once.
    capacity: usize,
    /// Resident entries the shell has not removed.
    live: usize,
    /// Handles in insertion order; may hold dead ones.
    fifo: VecDeque<H>,
}

impl<H: Handle> Policy<H> {
    /// A policy for at most `capacity` resident entries (`capacity >= 1`).
    pub(crate) fn new(capacity: usize) -> Self {
        assert!(capacity >= 1, "a shard holds at least one entry");
        Policy {
            capacity,
            live: 0,
            fifo: VecDeque::new(),
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
        while self.live >= self.capacity {
            match self.fifo.pop_front() {
                Some(h) if h.is_live() => {
                    self.live -= 1;
                    evicted.push(h);
                }
                Some(_) => {}
                None => unreachable!("live entries are all in the FIFO"),
            }
        }
        self.fifo.push_back(handle);
        self.live += 1;
    }

    /// The shell removed a resident entry (its handle is now dead).
    pub(crate) fn removed(&mut self) {
        self.live -= 1;
    }

    /// Forgets every handle, returning the live ones.
    pub(crate) fn clear(&mut self) -> Vec<H> {
        self.live = 0;
        self.fifo.drain(..).filter(Handle::is_live).collect()
    }
}
