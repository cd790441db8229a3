//! Waiting for a newer version: [`Subscription`], and change callbacks.
//!
//! The protocol is the Dekker pattern of `queue/waiters.rs`, with the
//! store's `published` version as the condition:
//!
//! - writer: store the new value in the cell, store its version in
//!   `published` (`SeqCst`), then notify the event (event-listener's
//!   `notify` begins with a `SeqCst` fence);
//! - subscriber: load `published` (`SeqCst`); if it is not newer than
//!   what it has seen, create a listener (which is registered with a
//!   `SeqCst` fence), load `published` again, and only then sleep.
//!
//! Either the writer's store comes before the subscriber's second load in
//! the total order of `SeqCst` operations (the subscriber sees the new
//! version and does not sleep) or the listener was registered before the
//! writer's notification (which then wakes it). The value itself is read
//! from the cell after `published`: the cell was written first, so the
//! subscriber gets that version or a newer one, never an older one.
//!
//! Only the latest value is kept: a slow subscriber costs the writer
//! nothing and holds no queue, it simply skips the versions it missed.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_listener::Listener;

use super::cell::Cell;
use super::{Committed, Shared, Snapshot, Version};
use crate::sync::{
    AtomicBool, AtomicU64, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed, Ordering::SeqCst,
};

/// A change callback as stored (shared with the commits running it).
pub(crate) type Callback<T> = Arc<StoredCallback<T>>;

/// A callback as `on_change` takes it.
type CallbackFn<T> = dyn Fn(&Snapshot<T>) + Send + Sync;

/// A registered callback and what `notify` checks before each call.
///
/// # Delivery: one caller at a time, newest first
/// Calls of one callback never overlap and get strictly increasing
/// versions, the newest always among them (found in review: two commits
/// racing could hand a callback version 5 after it had returned from 6,
/// so a callback that applies the configuration could end on the older
/// one). A commit that finds no call of the callback under way becomes
/// its *deliverer*: it calls it with the latest published snapshot, again
/// while a newer one has appeared meanwhile, then steps down. A commit
/// that finds a deliverer at work leaves its version to it. The hand-off
/// needs no `SeqCst` reasoning, because both sides read-modify-write
/// `delivering`: the commit stores `published`, then swaps `delivering`
/// to `true`; the deliverer swaps it back to `false`, then loads
/// `published`. The swaps are ordered in `delivering`'s modification
/// order. If the commit's comes first, the deliverer's swap reads the
/// value the commit's wrote (`AcqRel` on both), so the commit's store of
/// `published` happens before the deliverer's load, which sees the new
/// version and goes round again. If the deliverer's comes first, the
/// commit's swap reads `false` and the commit delivers itself. A commit
/// made by the callback itself (on the deliverer's
/// thread) finds its own delivery under way and leaves the newer version
/// to the loop it is inside, so it is delivered right after the call
/// returns. Under a steady stream of commits, one committing thread may
/// deliver several versions before its own `update` returns.
pub(crate) struct StoredCallback<T> {
    /// Set by `remove_callback`: no call starts once it is seen.
    removed: AtomicBool,
    /// Whether a thread is delivering (see the type docs).
    delivering: AtomicBool,
    /// The newest version this callback was given (read and written only
    /// by the deliverer, handed from one to the next by `delivering`).
    newest: AtomicU64,
    callback: Box<CallbackFn<T>>,
}

impl<T> StoredCallback<T> {
    pub(crate) fn new(callback: Box<CallbackFn<T>>) -> Self {
        StoredCallback {
            removed: AtomicBool::new(false),
            delivering: AtomicBool::new(false),
            newest: AtomicU64::new(0),
            callback,
        }
    }

    /// Marks the callback removed (by `remove_callback`, under the writer
    /// lock).
    pub(crate) fn remove(&self) {
        // SeqCst: a `notify` whose load of `removed` comes later in the
        // total order (any that starts after `remove_callback` returned)
        // sees it.
        self.removed.store(true, SeqCst);
    }

    /// Delivers the latest version of `shared` to the callback, unless a
    /// delivery is under way (which then delivers it), the callback was
    /// removed, or it already had that version. Called after the commit
    /// stored `published`. A panic of the callback is caught.
    fn deliver(&self, shared: &Shared<T>, panicked: &mut Option<Panic>) {
        // AcqRel: the commit's half of the hand-off (type docs): Release
        // passes its store of `published` to the deliverer whose swap reads
        // this one's `true`; Acquire takes over the last deliverer's
        // `newest` when it reads its `false`.
        while !self.delivering.swap(true, AcqRel) {
            self.deliver_newest(shared, panicked);
            // AcqRel: the deliverer's half: Release hands `newest` on to
            // the next deliverer; Acquire takes the `published` stores of
            // the commits whose swaps this one reads after.
            self.delivering.swap(false, AcqRel);
            // Relaxed: `newest` is only written by a deliverer, and this
            // thread was the last one.
            let given = self.newest.load(Relaxed);
            // Acquire: ordered after the swap above (see the type docs);
            // SeqCst for `removed`, as in `remove`.
            if shared.published.load(Acquire) <= given || self.removed.load(SeqCst) {
                return;
            }
        }
    }

    /// The deliverer's loop: calls the callback with the latest snapshot
    /// while it is newer than the last one given.
    fn deliver_newest(&self, shared: &Shared<T>, panicked: &mut Option<Panic>) {
        loop {
            // The cell is stored before `published`, so it holds the
            // version `deliver` saw there, or a newer one. A full `Arc`,
            // not a debt slot, is held across the user's callback.
            let snapshot = Snapshot::from_arc(Cell::into_arc(shared.cell.load()));
            let version = snapshot.version().get();
            // Relaxed: deliverer-only (see `newest`). SeqCst for `removed`:
            // as in `remove`.
            if self.removed.load(SeqCst) || version <= self.newest.load(Relaxed) {
                drop_caught(snapshot, panicked);
                return;
            }
            self.newest.store(version, Relaxed);
            // A panicking callback must not stop the others or fail the
            // commit, which has already happened. The panic hook still
            // reports it.
            if let Err(payload) =
                panic::catch_unwind(AssertUnwindSafe(|| (self.callback)(&snapshot)))
            {
                drop_payload(payload);
            }
            drop_caught(snapshot, panicked);
        }
    }
}

/// A caught panic, resumed by `notify` once every delivery is over.
type Panic = Box<dyn std::any::Any + Send>;

/// Drops `snapshot`, which may be the last owner of its value (newer
/// commits evicted it): a `T::drop` that panics is caught and kept for
/// `notify` to resume, so that it never leaves `delivering` set (which
/// would silence the callback for good).
fn drop_caught<T>(snapshot: Snapshot<T>, panicked: &mut Option<Panic>) {
    if let Err(p) = panic::catch_unwind(AssertUnwindSafe(move || drop(snapshot))) {
        panicked.get_or_insert(p);
    }
}

/// Drops a callback's panic payload, which is user data too: its `drop`
/// may panic (found in review: that panic escaped the delivery loop,
/// failed a commit that had happened and left `delivering` set, silencing
/// the callback for good). Such a panic is part of the callback's, which
/// the docs promise to catch, so it is swallowed; its own payload is
/// leaked rather than dropped, ending the regress.
fn drop_payload(payload: Panic) {
    if let Err(again) = panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
}

/// Names a callback registered with
/// [`ConfigStore::on_change`](super::ConfigStore::on_change).
///
/// # Examples
/// ```
/// let store = unlocked::config::ConfigStore::new(());
/// let a = store.on_change(|_| {});
/// let b = store.on_change(|_| {});
/// assert_ne!(a, b);
/// ```
///
/// An id names one callback of one store: another store's
/// [`remove_callback`](super::ConfigStore::remove_callback) never matches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallbackId {
    /// The store that minted it ([`crate::sync::unique_id`]).
    pub(crate) store: u64,
    /// Its number within that store.
    pub(crate) number: u64,
}

/// Waits for versions newer than the last one it returned, from
/// [`ConfigStore::subscribe`](super::ConfigStore::subscribe).
///
/// Each call returns the latest committed value, skipping any versions
/// committed in between: a subscriber that falls behind never slows a
/// writer and never holds more than one value. A new subscription has
/// already seen the version current when it was made.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use std::thread;
/// use std::time::Duration;
/// use unlocked::config::ConfigStore;
///
/// let store = Arc::new(ConfigStore::new(0u32));
/// let mut sub = store.subscribe();
/// let watcher = thread::spawn(move || {
///     let mut last = 0;
///     while last < 3 {
///         last = *sub.changed_timeout(Duration::from_secs(10)).expect("a commit");
///     }
///     last
/// });
/// for i in 1..=3 {
///     store.update(|n| -> Result<(), ()> { *n = i; Ok(()) }).unwrap();
/// }
/// assert_eq!(watcher.join().unwrap(), 3);
/// ```
pub struct Subscription<T> {
    shared: Arc<Shared<T>>,
    seen: Version,
}

impl<T> Subscription<T> {
    pub(crate) fn new(shared: Arc<Shared<T>>) -> Self {
        let seen = shared.cell.load().version();
        Self { shared, seen }
    }

    /// The last version this subscription returned (or that was current
    /// when it was made).
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::new(0);
    /// assert_eq!(store.subscribe().seen().get(), 1);
    /// ```
    pub fn seen(&self) -> Version {
        self.seen
    }

    /// The latest value if it is newer than the last one returned;
    /// never waits.
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::new(0);
    /// let mut sub = store.subscribe();
    /// assert!(sub.try_changed().is_none());
    /// store.update(|n| -> Result<(), ()> { *n = 9; Ok(()) }).unwrap();
    /// assert_eq!(*sub.try_changed().unwrap(), 9);
    /// assert!(sub.try_changed().is_none());
    /// ```
    pub fn try_changed(&mut self) -> Option<Snapshot<T>> {
        // SeqCst: the subscriber half of the protocol in the module docs.
        if self.shared.published.load(SeqCst) <= self.seen.get() {
            return None;
        }
        let snapshot = Snapshot::from_protected(self.shared.cell.load());
        debug_assert!(snapshot.version() > self.seen, "the cell went backwards");
        self.seen = snapshot.version();
        Some(snapshot)
    }

    fn closed(&self) -> bool {
        // SeqCst: ordered with the listener registration like `published`.
        self.shared.closed.load(SeqCst)
    }

    /// `Some(outcome)` when there is no need to wait: a newer version
    /// (`Some(snapshot)`), or the store is gone (`None`).
    fn ready(&mut self) -> Option<Option<Snapshot<T>>> {
        if let Some(s) = self.try_changed() {
            return Some(Some(s));
        }
        if self.closed() {
            return Some(None);
        }
        None
    }

    /// Waits up to `timeout` for a newer version and returns the latest.
    /// `None` on timeout, or once the store is dropped.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let store = unlocked::config::ConfigStore::new(0);
    /// let mut sub = store.subscribe();
    /// assert!(sub.changed_timeout(Duration::from_millis(1)).is_none());
    /// ```
    pub fn changed_timeout(&mut self, timeout: Duration) -> Option<Snapshot<T>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(outcome) = self.ready() {
                return outcome;
            }
            let listener = self.shared.event.listen();
            if let Some(outcome) = self.ready() {
                return outcome;
            }
            match deadline {
                Some(deadline) => {
                    if listener.wait_deadline(deadline).is_none() {
                        return self.try_changed();
                    }
                }
                None => listener.wait(),
            }
        }
    }

    /// Waits, on any executor, for a newer version and returns the latest;
    /// `None` once the store is dropped. Cancel-safe: dropping the future
    /// loses nothing (the version is still there for the next call).
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::new(0);
    /// let mut sub = store.subscribe();
    /// store.update(|n| -> Result<(), ()> { *n = 4; Ok(()) }).unwrap();
    /// let snap = pollster::block_on(sub.changed()).unwrap();
    /// assert_eq!(*snap, 4);
    /// ```
    pub async fn changed(&mut self) -> Option<Snapshot<T>> {
        loop {
            if let Some(outcome) = self.ready() {
                return outcome;
            }
            let listener = self.shared.event.listen();
            if let Some(outcome) = self.ready() {
                return outcome;
            }
            listener.await;
        }
    }
}

impl<T> fmt::Debug for Subscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl<T> Shared<T> {
    /// After a commit, outside the writer lock: wakes subscribers and runs
    /// callbacks, each one isolated from the others' panics.
    pub(super) fn notify(&self, committed: Arc<Committed<T>>, callbacks: Vec<Callback<T>>) {
        self.event.notify(usize::MAX);
        if callbacks.is_empty() {
            return;
        }
        // The committed version is published; each callback gets it or a
        // newer one, from this thread or from the one delivering to it.
        // A snapshot's `T::drop` that panics reaches the committer, but only
        // after every callback's delivery is over.
        let mut panicked = None;
        for callback in callbacks {
            callback.deliver(self, &mut panicked);
        }
        drop(committed);
        if let Some(p) = panicked {
            panic::resume_unwind(p);
        }
    }

    /// The store is gone: subscribers stop waiting.
    pub(super) fn close(&self) {
        // SeqCst: like `published`, seen by the subscriber's second check
        // or followed by a notification its listener receives.
        self.closed.store(true, SeqCst);
        self.event.notify(usize::MAX);
    }
}
