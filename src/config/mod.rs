//! Copy-on-write configuration snapshots with atomic, crash-safe updates.
//!
//! A [`ConfigStore<T>`] holds the current configuration as an immutable,
//! versioned value. Readers take a [`Snapshot`] with [`load`](ConfigStore::load)
//! (wait-free: no lock, no shared write, never a half-applied update) or keep
//! a per-thread [`Reader`] whose loads cost a pointer comparison. Writers
//! call [`update`](ConfigStore::update) with a closure that edits a private
//! copy of the latest value; validators run, then (with feature `persist`)
//! the file is written crash-safely, and only then is the new version
//! published. Any error leaves memory and file as they were.
//!
//! Subscribers ([`Subscription`]) wait for a newer version without spinning
//! and see only the latest one; callbacks ([`ConfigStore::on_change`]) run
//! after each commit, a panicking one isolated from the rest.
//!
//! `docs/config.md` ([`crate::docs::config`]) describes the design, the
//! orderings, the persistence protocol and the migration from the seeds'
//! lock-based config manager.

mod builder;
mod cell;
mod error;
#[cfg(feature = "persist")]
mod persist;
mod snapshot;
mod subscribe;

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use event_listener::Event;

pub use builder::ConfigStoreBuilder;

/// The former name of [`ConfigStoreBuilder`], kept so that code naming
/// `unlocked::config::Builder` still compiles.
pub type Builder<T> = ConfigStoreBuilder<T>;
pub use error::{
    BoxError, BuildError, OpenError, PersistError, PersistErrorKind, UpdateError, ValidationError,
};
pub use snapshot::{Committed, Reader, Snapshot, Version};
pub use subscribe::{CallbackId, Subscription};

use crate::sync::{lock, AtomicBool, AtomicU64, Mutex, Ordering::SeqCst};
use cell::Cell;
use subscribe::{Callback, StoredCallback};

/// A validator as stored: the boxed closure from the builder.
type Validator<T> = Box<dyn Fn(&T) -> Result<(), BoxError> + Send + Sync>;

/// History entries kept by default.
const DEFAULT_HISTORY: usize = 16;

/// A configuration of type `T`, read wait-free and updated by whole
/// versions.
///
/// # Bounds on `T`
/// `Clone`: an update works on a copy of the latest version (copy on
/// write). `Send + Sync + 'static`: every version is shared, behind an
/// `Arc`, with readers on any thread, with subscribers and `on_change`
/// callbacks that run on the committing thread, and with the history; a
/// store is built to be shared between threads, so these are required for
/// every method rather than only where a thread boundary is crossed (a
/// single-threaded program keeps a `T` of `Rc`s in a plain variable).
///
/// # Concurrent calls
/// - `load`, `reader`, `subscribe` and `history` may run on any number of
///   threads at once; `load` and a `Reader`'s load never wait for anything.
/// - Writers (`update`, `update_if`, `reload`) are serialised with each
///   other by a lock that readers never touch, so versions are published
///   (and written to disk) in order, each exactly one more than the last.
/// - An update closure runs while that lock is held: it must not call a
///   writer method of the same store, nor `on_change` or
///   `remove_callback` (that would deadlock), and should be quick. It may
///   read the store, `history` included.
///
/// # Examples
/// ```
/// use std::sync::Arc;
/// use std::thread;
/// use unlocked::config::ConfigStore;
///
/// #[derive(Clone, Debug, PartialEq)]
/// struct Limits { max_connections: u32, timeout_ms: u64 }
///
/// let store = Arc::new(ConfigStore::new(Limits { max_connections: 10, timeout_ms: 500 }));
/// let reader = {
///     let store = Arc::clone(&store);
///     thread::spawn(move || {
///         let mut r = store.reader();
///         // Both fields always come from the same commit.
///         let c = r.load();
///         assert!(c.max_connections == 10 || c.timeout_ms == 250);
///     })
/// };
/// store
///     .update(|l| -> Result<(), ()> {
///         l.max_connections = 20;
///         l.timeout_ms = 250;
///         Ok(())
///     })
///     .unwrap();
/// reader.join().unwrap();
/// assert_eq!(store.load().max_connections, 20);
/// ```
pub struct ConfigStore<T> {
    shared: Arc<Shared<T>>,
}

/// What the store, its readers and its subscriptions share.
pub(crate) struct Shared<T> {
    /// The current value.
    pub(crate) cell: Cell<T>,
    /// The last published version, for subscribers (see `subscribe.rs`).
    published: AtomicU64,
    /// Set when the store is dropped: subscribers stop waiting.
    closed: AtomicBool,
    /// Subscribers sleep here.
    event: Event,
    /// Everything only writers touch.
    writer: Mutex<WriterState<T>>,
    /// The last `history_len` versions, newest last. Its own lock, taken
    /// briefly by a commit (under the writer lock, to push a version) and
    /// by `history`, which runs no user code under it: so `history` may be
    /// called from an update closure or a validator (found in review).
    history: Mutex<VecDeque<Arc<Committed<T>>>>,
    validators: Vec<Validator<T>>,
}

/// The writers' side, under the writer lock.
struct WriterState<T> {
    /// The latest committed value (what the cell holds).
    current: Arc<Committed<T>>,
    /// How many versions `Shared::history` keeps.
    history_len: usize,
    callbacks: Vec<(CallbackId, Callback<T>)>,
    /// Names this store in its callback ids.
    store_id: u64,
    next_callback: u64,
    #[cfg(feature = "persist")]
    persister: Option<persist::Persister<T>>,
}

impl<T: Clone + Send + Sync + 'static> ConfigStore<T> {
    /// A store holding `initial` as version 1, with no validators and no
    /// file.
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::new(String::from("hello"));
    /// assert_eq!(&*store.load(), "hello");
    /// ```
    pub fn new(initial: T) -> Self {
        Self::from_parts(
            Arc::new(Committed::new(Version::INITIAL, initial)),
            Vec::new(),
            DEFAULT_HISTORY,
        )
    }

    /// A builder, to add validators (or open a file) before the store exists.
    ///
    /// # Examples
    /// ```
    /// use unlocked::config::ConfigStore;
    ///
    /// let store = ConfigStore::builder(10u32)
    ///     .validator(|n: &u32| if *n <= 100 { Ok(()) } else { Err("at most 100") })
    ///     .history(4)
    ///     .build()
    ///     .unwrap();
    /// assert!(store.update(|n| -> Result<(), ()> { *n = 1000; Ok(()) }).is_err());
    /// assert_eq!(*store.load(), 10);
    /// ```
    pub fn builder(initial: T) -> ConfigStoreBuilder<T> {
        ConfigStoreBuilder::new(initial)
    }

    pub(crate) fn from_parts(
        current: Arc<Committed<T>>,
        validators: Vec<Validator<T>>,
        history_len: usize,
    ) -> Self {
        let version = current.version();
        let history = VecDeque::from([Arc::clone(&current)]);
        let writer = WriterState {
            current: Arc::clone(&current),
            history_len,
            callbacks: Vec::new(),
            store_id: crate::sync::unique_id(),
            next_callback: 0,
            #[cfg(feature = "persist")]
            persister: None,
        };
        Self {
            shared: Arc::new(Shared {
                cell: Cell::new(current),
                published: AtomicU64::new(version.get()),
                closed: AtomicBool::new(false),
                event: Event::new(),
                writer: Mutex::new(writer),
                history: Mutex::new(history),
                validators,
            }),
        }
    }

    /// The current configuration. Wait-free: no lock, no shared write (the
    /// snapshot borrows one of arc-swap's per-thread debt slots), and
    /// never a half-applied update.
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::new(3);
    /// let snap = store.load();
    /// assert_eq!((*snap, snap.version().get()), (3, 1));
    /// ```
    #[inline]
    pub fn load(&self) -> Snapshot<T> {
        Snapshot::from_protected(self.shared.cell.load())
    }

    /// A cached reader for one thread: each load checks one pointer and
    /// reloads only after a commit, so it is never stale.
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::new(3);
    /// let mut reader = store.reader();
    /// assert_eq!(**reader.load(), 3);
    /// ```
    pub fn reader(&self) -> Reader<T> {
        Reader::new(Arc::clone(&self.shared))
    }

    /// Commits a new version: `f` edits a private copy of the latest
    /// value; the validators check it; with a file, it is written and
    /// synced; only then do readers see it. Returns the new version.
    ///
    /// # Errors
    /// [`UpdateError::Rejected`] with `f`'s error, [`UpdateError::Invalid`]
    /// when a validator refuses, [`UpdateError::Persist`] when the disk
    /// write fails. In every case nothing changed, in memory or on disk.
    ///
    /// # Panics
    /// A panic in `f` or a validator propagates to the caller; the store
    /// is left unchanged and stays usable.
    ///
    /// # Examples
    /// ```
    /// use unlocked::config::ConfigStore;
    ///
    /// let store = ConfigStore::new(vec![1]);
    /// let v = store
    ///     .update(|list| {
    ///         if list.len() >= 2 {
    ///             return Err("full");
    ///         }
    ///         list.push(2);
    ///         Ok(())
    ///     })
    ///     .unwrap();
    /// assert_eq!(v.get(), 2);
    /// assert!(store.update(|list| if list.len() >= 2 { Err("full") } else { Ok(()) }).is_err());
    /// ```
    pub fn update<E, F>(&self, f: F) -> Result<Version, UpdateError<E>>
    where
        F: FnOnce(&mut T) -> Result<(), E>,
    {
        self.commit(None, f)
    }

    /// Like [`update`](Self::update), but only if the current version is
    /// still `expected`: optimistic read-modify-write from outside (an HTTP
    /// handler with an ETag).
    ///
    /// # Errors
    /// [`UpdateError::Conflict`] when another commit came first; otherwise as
    /// [`update`](Self::update).
    ///
    /// # Examples
    /// ```
    /// use unlocked::config::{ConfigStore, UpdateError};
    ///
    /// let store = ConfigStore::new(1);
    /// let seen = store.load().version();
    /// store.update_if(seen, |n| -> Result<(), ()> { *n = 2; Ok(()) }).unwrap();
    /// let again = store.update_if(seen, |n| -> Result<(), ()> { *n = 3; Ok(()) });
    /// assert!(matches!(again, Err(UpdateError::Conflict { .. })));
    /// assert_eq!(*store.load(), 2);
    /// ```
    pub fn update_if<E, F>(&self, expected: Version, f: F) -> Result<Version, UpdateError<E>>
    where
        F: FnOnce(&mut T) -> Result<(), E>,
    {
        self.commit(Some(expected), f)
    }

    /// The writer path shared by `update`, `update_if` and `reload`.
    fn commit<E, F>(&self, expected: Option<Version>, f: F) -> Result<Version, UpdateError<E>>
    where
        F: FnOnce(&mut T) -> Result<(), E>,
    {
        // Declared before the lock, so dropped after it on every return
        // (and unwind): a rejected draft's `T::drop` is user code, which
        // may call a locking method of this store.
        let mut draft_slot: Option<T> = None;
        // The value a persisted commit reads back from its encoding: the
        // same (see `Persister::write`).
        #[cfg(feature = "persist")]
        let mut read_back: Option<T> = None;
        let mut writer = lock(&self.shared.writer);
        let current = Arc::clone(&writer.current);
        if let Some(expected) = expected {
            if expected != current.version() {
                return Err(UpdateError::Conflict {
                    expected,
                    actual: current.version(),
                });
            }
        }
        let version = current
            .version()
            .next()
            .ok_or(UpdateError::VersionsExhausted)?;
        let draft = draft_slot.insert(current.value().clone());
        f(draft).map_err(UpdateError::Rejected)?;
        self.shared.validate(draft).map_err(UpdateError::Invalid)?;
        #[cfg(feature = "persist")]
        if let Some(persister) = writer.persister.as_mut() {
            persister
                .write(
                    draft,
                    version,
                    Some((current.value(), current.version())),
                    &mut read_back,
                )
                .map_err(UpdateError::Persist)?;
        }
        let draft = draft_slot.take().expect("inserted above");
        let committed = Arc::new(Committed::new(version, draft));
        let (callbacks, evicted) = self.shared.publish(&mut writer, Arc::clone(&committed));
        drop(writer);
        self.shared.notify(committed, callbacks);
        drop(evicted);
        Ok(version)
    }

    /// The last `n` versions (at most the builder's `history` length,
    /// default 16), newest first, each with its commit time: for debugging.
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::new(0);
    /// for i in 1..=3 {
    ///     store.update(|n| -> Result<(), ()> { *n = i; Ok(()) }).unwrap();
    /// }
    /// let h = store.history(2);
    /// assert_eq!(h.iter().map(|s| **s).collect::<Vec<_>>(), [3, 2]);
    /// assert_eq!(h[0].version().get(), 4);
    /// ```
    pub fn history(&self, n: usize) -> Vec<Snapshot<T>> {
        let history = lock(&self.shared.history);
        history
            .iter()
            .rev()
            .take(n)
            .map(|c| Snapshot::from_arc(Arc::clone(c)))
            .collect()
    }

    /// A subscription that has already seen the current version: its
    /// [`changed_timeout`](Subscription::changed_timeout) and
    /// [`changed`](Subscription::changed) return the next newer one.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let store = unlocked::config::ConfigStore::new(0);
    /// let mut sub = store.subscribe();
    /// assert!(sub.try_changed().is_none());
    /// store.update(|n| -> Result<(), ()> { *n = 1; Ok(()) }).unwrap();
    /// assert_eq!(*sub.changed_timeout(Duration::from_secs(1)).unwrap(), 1);
    /// ```
    pub fn subscribe(&self) -> Subscription<T> {
        Subscription::new(Arc::clone(&self.shared))
    }

    /// Runs `callback` after each later commit, on a committing thread,
    /// after the new version is visible and after the writer lock is
    /// released (so a callback may itself update the store: reach it
    /// through a [`Weak`](std::sync::Weak), since a callback that owns an
    /// `Arc` of its store keeps the store alive for ever). A callback
    /// that panics is caught: the commit still succeeds and the other
    /// callbacks still run. Dropping the store drops its callbacks (a
    /// callback may own a [`Reader`] or a [`Subscription`] of it).
    ///
    /// Calls of one callback never overlap, and each gets a newer version
    /// than the one before, the latest committed when the call starts: a
    /// callback may skip versions (as a [`Subscription`] does), never see
    /// an older one after a newer, and the newest version is always
    /// delivered. A commit that finds the callback running on another
    /// thread leaves its version to that thread, which calls again once
    /// the running call returns; so under a steady stream of concurrent
    /// commits one committing thread may run several calls before its own
    /// `update` returns. When a callback commits, its own call finishes
    /// first and it is then called with the newer version, and the
    /// callbacks after it get the newer version and skip the older one.
    ///
    /// # Examples
    /// ```
    /// use std::sync::mpsc;
    /// let store = unlocked::config::ConfigStore::new(0);
    /// let (tx, rx) = mpsc::channel();
    /// store.on_change(move |snap| tx.send(**snap).unwrap());
    /// store.update(|n| -> Result<(), ()> { *n = 5; Ok(()) }).unwrap();
    /// assert_eq!(rx.recv().unwrap(), 5);
    /// ```
    pub fn on_change<F>(&self, callback: F) -> CallbackId
    where
        F: Fn(&Snapshot<T>) + Send + Sync + 'static,
    {
        let mut writer = lock(&self.shared.writer);
        let id = CallbackId {
            store: writer.store_id,
            number: writer.next_callback,
        };
        writer.next_callback += 1;
        writer
            .callbacks
            .push((id, Arc::new(StoredCallback::new(Box::new(callback)))));
        id
    }

    /// Removes a callback; `false` if it was already gone or was
    /// registered with another store. Once this has
    /// returned, no call of the callback starts, also from a commit that
    /// was already running its callbacks (one call already under way on
    /// another thread may still finish).
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::new(0);
    /// let id = store.on_change(|_| {});
    /// assert!(store.remove_callback(id));
    /// assert!(!store.remove_callback(id));
    /// ```
    pub fn remove_callback(&self, id: CallbackId) -> bool {
        let mut writer = lock(&self.shared.writer);
        let removed = writer
            .callbacks
            .iter()
            .position(|(i, _)| *i == id)
            .map(|at| writer.callbacks.remove(at));
        // A commit that took the list before may still hold it (a callback
        // that removes the next one, on this very thread): it checks this
        // mark before each call (found in review).
        if let Some((_, callback)) = &removed {
            callback.remove();
        }
        // The closure (and what it captured) is user code: dropped after
        // the lock, so that its `Drop` may call the store.
        drop(writer);
        removed.is_some()
    }
}

impl<T> Shared<T> {
    /// Runs every validator on `value`, in order; the first refusal wins.
    fn validate(&self, value: &T) -> Result<(), ValidationError> {
        validate_with(&self.validators, value)
    }

    /// Makes `committed` the current value. Called under the writer lock;
    /// returns the callbacks to run once it is released, and the version
    /// that left the history, which the caller drops last (after the lock
    /// and the callbacks): it may own the last reference to its value, and
    /// a `T::drop` that panics must find the commit complete, not the
    /// readers on a version the writer does not know (found in review).
    fn publish(
        &self,
        writer: &mut WriterState<T>,
        committed: Arc<Committed<T>>,
    ) -> (Vec<Callback<T>>, Option<Arc<Committed<T>>>) {
        let version = committed.version().get();
        // Still in the history (or in `evicted` below): not its last
        // reference.
        let _previous = std::mem::replace(&mut writer.current, Arc::clone(&committed));
        let evicted = {
            let mut history = lock(&self.history);
            let evicted = if history.len() == writer.history_len {
                history.pop_front()
            } else {
                None
            };
            history.push_back(Arc::clone(&committed));
            // Under the history lock: `history()` (which takes it) then
            // never lists a version that `load()` does not return yet, nor
            // misses one that a `load()` before it returned (found in
            // review: the history was pushed first, and a reader could
            // find a version there that `load()` did not show). The old
            // value the cell drops is not its last reference
            // (`_previous`), so no user code runs under the lock.
            self.cell.store(committed);
            evicted
        };
        // SeqCst: the writer half of the subscription protocol (see
        // `subscribe.rs`): after the cell, before notifying.
        self.published.store(version, SeqCst);
        let callbacks = writer
            .callbacks
            .iter()
            .map(|(_, c)| Arc::clone(c))
            .collect();
        (callbacks, evicted)
    }
}

/// Runs `validators` on `value`, in order; the first refusal wins.
fn validate_with<T>(validators: &[Validator<T>], value: &T) -> Result<(), ValidationError> {
    for (i, validator) in validators.iter().enumerate() {
        validator(value).map_err(|e| ValidationError::new(i, e))?;
    }
    Ok(())
}

impl<T> Drop for ConfigStore<T> {
    fn drop(&mut self) {
        self.shared.close();
        // No commit can call the callbacks any more. A callback may own a
        // `Reader` or a `Subscription` of this store, which keeps the
        // shared state alive: left there, it would keep that state, and
        // every value in it, alive for ever (found in review). Dropped
        // after the lock is released: dropping one runs user code.
        let callbacks = std::mem::take(&mut lock(&self.shared.writer).callbacks);
        drop(callbacks);
    }
}

impl<T: fmt::Debug> fmt::Debug for ConfigStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = self.shared.cell.load();
        f.debug_struct("ConfigStore")
            .field("version", &current.version())
            .field("value", current.value())
            .finish()
    }
}
