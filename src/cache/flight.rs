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

use std::sync::Arc;

#[cfg(not(any(unlocked_loom, feature = "shuttle")))]
use event_listener::{Event, Listener};

use crate::sync::Mutex;

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
