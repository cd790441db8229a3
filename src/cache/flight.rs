//! Single-flight loading: one loader per missing key, the others wait for
//! its value; a loader that fails hands the job on.
//!
//! Each shard keeps a short list of keys being loaded (`InFlight`), guarded
//! by its own lock (never held while a loader runs or a waiter sleeps). A
//! caller that misses takes that lock, looks again in the cache (a leader
//! inserts its value *before* it leaves the list, under the same lock, so a
//! late caller finds one or the other), and then either joins the key's
//! [`Flight`] or adds one and becomes its leader.
//!
//! The leader's `Leader` guard (in `cache/mod.rs`) ends the flight in every
//! case: on success it inserts and leaves the list, then publishes
//! `Done(value)` (so a waiter's next `get` finds the value); if it is
//! dropped unfinished (the loader panicked, returned an error, or the async
//! caller's future was dropped) it leaves the list and publishes
//! `Abandoned`. Every waiter wakes; a waiter that sees `Abandoned` starts
//! over, and the first of them to take the list lock becomes the new leader
//! while the others join it. Nobody waits on a flight whose leader is gone.

use std::borrow::Borrow;
use std::sync::Arc;

#[cfg(not(any(unlocked_loom, feature = "shuttle")))]
use event_listener::{Event, Listener};

use crate::sync::{AtomicUsize, Mutex, MutexGuard, Ordering::SeqCst};

/// Where a flight stands.
enum State<V> {
    Loading,
    Done(V),
    Abandoned,
}

/// One load in progress, shared by its leader and its waiters.
pub(crate) struct Flight<V> {
    state: Mutex<State<V>>,
    /// Wakes waiters when the state leaves `Loading` (std only; under loom
    /// and shuttle waiters yield in a loop, which the checkers can see).
    #[cfg(not(any(unlocked_loom, feature = "shuttle")))]
    event: Event,
}

/// A key being loaded, in its shard's list.
pub(crate) struct InFlight<K, V> {
    pub(crate) hash: u64,
    pub(crate) key: K,
    pub(crate) flight: Arc<Flight<V>>,
    /// A write to the key (`insert`, `remove`, `clear`) came while the
    /// loader ran: its value may be older than that write, so it goes to
    /// the callers but is not stored.
    pub(crate) superseded: bool,
}

/// A shard's keys being loaded: the list, under its own lock, and its
/// length, so that a writer with nothing loading pays one atomic load.
pub(crate) struct Flights<K, V> {
    list: Mutex<Vec<InFlight<K, V>>>,
    /// `list.len()`, written under the lock.
    flying: AtomicUsize,
}

/// The locked list (see [`Flights::lock`]). Its length goes to `flying`
/// when it is unlocked, after everything done under the lock: a `complete`
/// that took its flight out and then stored the value counts as loading
/// until the value is in the table, so a `remove` that reads 0 comes after
/// that store and removes the value (loom found a `remove` slipping in
/// between the two when the count dropped at the take).
pub(crate) struct FlightList<'a, K, V> {
    list: MutexGuard<'a, Vec<InFlight<K, V>>>,
    flying: &'a AtomicUsize,
}

impl<K, V> Flights<K, V> {
    pub(crate) fn new() -> Self {
        Flights {
            list: Mutex::new(Vec::new()),
            flying: AtomicUsize::new(0),
        }
    }

    pub(crate) fn lock(&self) -> FlightList<'_, K, V> {
        FlightList {
            list: self.list.lock(),
            flying: &self.flying,
        }
    }

    /// A write to `key` is about to land: a load of it in flight will not
    /// store its value (see [`InFlight::superseded`]). Called before the
    /// write, so a load that completes in between stored its value first
    /// and the write then replaces or removes it.
    pub(crate) fn supersede<Q>(&self, hash: u64, key: &Q)
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.supersede_where(|f| f.hash == hash && f.key.borrow() == key);
    }

    /// As [`supersede`](Self::supersede), for every key (`clear`).
    pub(crate) fn supersede_all(&self) {
        self.supersede_where(|_| true);
    }

    fn supersede_where(&self, mut matches: impl FnMut(&InFlight<K, V>) -> bool) {
        // SeqCst: ordered with the stores of `FlightList`'s unlock: a load
        // registered before this write is seen (and marked), one that
        // registers after it started after the write did, and a 0 comes
        // after the last completed load stored its value.
        if self.flying.load(SeqCst) == 0 {
            return;
        }
        for f in self.lock().list.iter_mut().filter(|f| matches(f)) {
            f.superseded = true;
        }
    }
}

impl<K: Eq, V> FlightList<'_, K, V> {
    /// The flight loading `key`, if any.
    pub(crate) fn find(&self, hash: u64, key: &K) -> Option<&Arc<Flight<V>>> {
        self.list
            .iter()
            .find(|f| f.hash == hash && f.key == *key)
            .map(|f| &f.flight)
    }

    /// Registers the load of `key` by `flight`.
    pub(crate) fn push(&mut self, hash: u64, key: K, flight: Arc<Flight<V>>) {
        self.list.push(InFlight {
            hash,
            key,
            flight,
            superseded: false,
        });
    }
}

impl<K, V> FlightList<'_, K, V> {
    /// Takes `flight`'s entry out of the list, if it is still there.
    pub(crate) fn take(&mut self, flight: &Arc<Flight<V>>) -> Option<InFlight<K, V>> {
        let pos = self
            .list
            .iter()
            .position(|f| Arc::ptr_eq(&f.flight, flight))?;
        Some(self.list.swap_remove(pos))
    }
}

impl<K, V> Drop for FlightList<'_, K, V> {
    fn drop(&mut self) {
        // SeqCst: see `Flights::supersede_where`. Still under the lock (the
        // guard field drops after this).
        self.flying.store(self.list.len(), SeqCst);
    }
}

impl<V> Flight<V> {
    pub(crate) fn new() -> Self {
        Flight {
            state: Mutex::new(State::Loading),
            #[cfg(not(any(unlocked_loom, feature = "shuttle")))]
            event: Event::new(),
        }
    }

    /// Ends the flight with `value` (`None`: abandoned) and wakes everyone.
    pub(crate) fn finish(&self, value: Option<V>) {
        let state = match value {
            Some(v) => State::Done(v),
            None => State::Abandoned,
        };
        let old = std::mem::replace(&mut *self.state.lock(), state);
        #[cfg(not(any(unlocked_loom, feature = "shuttle")))]
        self.event.notify(usize::MAX);
        // A flight that was already done keeps no value for anyone now; the
        // old state is dropped outside the lock.
        drop(old);
    }
}

impl<V: Clone> Flight<V> {
    /// `None` while loading; `Some(Some(v))` once done, `Some(None)` once
    /// abandoned.
    fn check(&self) -> Option<Option<V>> {
        match &*self.state.lock() {
            State::Loading => None,
            State::Done(v) => Some(Some(v.clone())),
            State::Abandoned => Some(None),
        }
    }

    /// Blocks until the flight ends: its value, or `None` if abandoned.
    pub(crate) fn wait(&self) -> Option<V> {
        loop {
            // Listen before checking: a `finish` after the check notifies
            // this listener (event-listener's protocol).
            #[cfg(not(any(unlocked_loom, feature = "shuttle")))]
            let listener = self.event.listen();
            if let Some(result) = self.check() {
                return result;
            }
            #[cfg(not(any(unlocked_loom, feature = "shuttle")))]
            listener.wait();
            #[cfg(any(unlocked_loom, feature = "shuttle"))]
            crate::sync::yield_now();
        }
    }

    /// [`wait`](Self::wait) for any executor.
    pub(crate) async fn wait_async(&self) -> Option<V> {
        loop {
            #[cfg(not(any(unlocked_loom, feature = "shuttle")))]
            let listener = self.event.listen();
            if let Some(result) = self.check() {
                return result;
            }
            #[cfg(not(any(unlocked_loom, feature = "shuttle")))]
            listener.await;
            #[cfg(any(unlocked_loom, feature = "shuttle"))]
            crate::sync::yield_now();
        }
    }
}
