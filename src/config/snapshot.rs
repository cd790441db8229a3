//! What readers get: [`Version`], [`Committed`], [`Snapshot`], [`Reader`].

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::SystemTime;

use super::cell::{Cell, Protected, ReaderCache};
use super::Shared;

/// The number of a committed configuration: 1 for the initial value, one
/// more for each commit. A store reopened from disk continues from the
/// version in the file.
///
/// # Examples
/// ```
/// use unlocked::config::{ConfigStore, Version};
///
/// let store = ConfigStore::new(0u32);
/// assert_eq!(store.load().version(), Version::INITIAL);
/// let v = store.update(|n| -> Result<(), ()> { *n += 1; Ok(()) }).unwrap();
/// assert_eq!(u64::from(v), 2);
/// // An ETag from an HTTP request comes back as a number.
/// assert_eq!(Version::from(2), v);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(u64);

impl Version {
    /// The version of a new store's initial value.
    pub const INITIAL: Version = Version(1);

    /// The number as a `u64`.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(unlocked::config::Version::INITIAL.get(), 1);
    /// ```
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The version after this one, if there is one.
    pub(crate) fn next(self) -> Option<Version> {
        self.0.checked_add(1).map(Version)
    }
}

impl From<Version> for u64 {
    fn from(v: Version) -> u64 {
        v.0
    }
}

impl From<u64> for Version {
    fn from(v: u64) -> Version {
        Version(v)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// One committed configuration: the value, its version and when it was
/// committed. Immutable once published; readers share it.
///
/// # Examples
/// ```
/// use unlocked::config::ConfigStore;
///
/// let store = ConfigStore::new(String::from("a"));
/// let mut reader = store.reader();
/// let committed = reader.load();
/// assert_eq!(committed.value(), "a");
/// assert_eq!(committed.version().get(), 1);
/// ```
pub struct Committed<T> {
    version: Version,
    committed_at: SystemTime,
    value: T,
    /// Under loom: created by the writer, read by every load, so that loom
    /// reports a load that does not happen after the value was built.
    #[cfg(unlocked_loom)]
    witness: crate::sync::UnsafeCell<()>,
}

// SAFETY: under loom the witness cell is only read after creation (loom
// checks those reads); everything else is plain data, `Sync` when `T` is.
#[cfg(unlocked_loom)]
unsafe impl<T: Sync> Sync for Committed<T> {}

/// The wall clock; a fixed time under miri, whose isolation forbids
/// reading it.
fn now() -> SystemTime {
    if cfg!(miri) {
        SystemTime::UNIX_EPOCH
    } else {
        SystemTime::now()
    }
}

impl<T> Committed<T> {
    pub(crate) fn new(version: Version, value: T) -> Self {
        Self {
            version,
            committed_at: now(),
            value,
            #[cfg(unlocked_loom)]
            witness: crate::sync::UnsafeCell::new(()),
        }
    }

    #[cfg(unlocked_loom)]
    pub(crate) fn witness_read(&self) {
        self.witness.with(|_| ());
    }

    /// The configuration.
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::new(7u8);
    /// assert_eq!(*store.reader().load().value(), 7);
    /// ```
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Its version.
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::new(7u8);
    /// assert_eq!(store.reader().load().version().get(), 1);
    /// ```
    pub fn version(&self) -> Version {
        self.version
    }

    /// When it was committed (wall clock; for debugging, not ordering).
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::new(7u8);
    /// assert!(store.load().committed_at() <= std::time::SystemTime::now());
    /// ```
    pub fn committed_at(&self) -> SystemTime {
        self.committed_at
    }
}

impl<T> Deref for Committed<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Committed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Committed")
            .field("version", &self.version)
            .field("committed_at", &self.committed_at)
            .field("value", &self.value)
            .finish()
    }
}

/// A consistent view of the configuration as of one commit, returned by
/// [`ConfigStore::load`](super::ConfigStore::load). Derefs to `T`.
///
/// A snapshot never changes: a commit after it was taken publishes a new
/// value and leaves this one alone. It is cheap to take (no shared
/// reference count is touched) and meant to be short-lived; keep an
/// [`Arc`] ([`Snapshot::into_arc`]) to hold a value for long.
///
/// # Examples
/// ```
/// use unlocked::config::ConfigStore;
///
/// let store = ConfigStore::new(vec![1, 2]);
/// let before = store.load();
/// store.update(|v| -> Result<(), ()> { v.push(3); Ok(()) }).unwrap();
/// assert_eq!(*before, [1, 2]);
/// assert_eq!(*store.load(), [1, 2, 3]);
/// assert_eq!(store.load().version().get(), before.version().get() + 1);
/// ```
pub struct Snapshot<T> {
    inner: Protected<T>,
}

impl<T> Snapshot<T> {
    #[inline]
    pub(crate) fn from_protected(inner: Protected<T>) -> Self {
        Self { inner }
    }

    pub(crate) fn from_arc(value: Arc<Committed<T>>) -> Self {
        Self {
            inner: Cell::protect(value),
        }
    }

    /// The version this snapshot shows.
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::new(());
    /// assert_eq!(store.load().version().get(), 1);
    /// ```
    #[inline]
    pub fn version(&self) -> Version {
        self.inner.version
    }

    /// When this version was committed.
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::new(());
    /// let _when = store.load().committed_at();
    /// ```
    pub fn committed_at(&self) -> SystemTime {
        self.inner.committed_at
    }

    /// The committed value as an `Arc`, to keep for long.
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::new(5);
    /// let kept = store.load().into_arc();
    /// assert_eq!(**kept, 5);
    /// ```
    pub fn into_arc(self) -> Arc<Committed<T>> {
        Cell::into_arc(self.inner)
    }
}

/// A clone holds the same version: a strong reference to it (a full
/// `Arc`, not a debt slot), so clones are fine to keep for long.
///
/// # Examples
/// ```
/// let store = unlocked::config::ConfigStore::new(1);
/// let a = store.load();
/// let b = a.clone();
/// store.update(|n| -> Result<(), ()> { *n = 2; Ok(()) }).unwrap();
/// assert_eq!((*a, *b, b.version()), (1, 1, a.version()));
/// ```
impl<T> Clone for Snapshot<T> {
    fn clone(&self) -> Self {
        Self::from_arc(Cell::share(&self.inner))
    }
}

impl<T> Deref for Snapshot<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.inner.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Snapshot<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("version", &self.version())
            .field("value", &**self)
            .finish()
    }
}

/// A per-thread cached reader, from
/// [`ConfigStore::reader`](super::ConfigStore::reader): it keeps the last
/// value it loaded and, on each [`load`](Reader::load), compares it with the
/// current one (a single atomic load) and reloads only after a commit. It is
/// never stale: every load returns the latest committed value.
///
/// It replaces the seeds' thread-local cache with a time-to-live, which
/// served stale values for up to a second. Keep one per thread: `load`
/// takes `&mut self`.
///
/// # Examples
/// ```
/// use unlocked::config::ConfigStore;
///
/// let store = ConfigStore::new(1u32);
/// let mut reader = store.reader();
/// assert_eq!(**reader.load(), 1);
/// store.update(|n| -> Result<(), ()> { *n = 2; Ok(()) }).unwrap();
/// assert_eq!(**reader.load(), 2);
/// ```
pub struct Reader<T> {
    cache: ReaderCache<T>,
}

impl<T> Reader<T> {
    pub(crate) fn new(shared: Arc<Shared<T>>) -> Self {
        Self {
            cache: ReaderCache::new(shared),
        }
    }

    /// The latest committed value: a reference into this reader's cache,
    /// valid until the next `load`.
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::new("x");
    /// let mut reader = store.reader();
    /// let c = reader.load();
    /// assert_eq!((**c, c.version().get()), ("x", 1));
    /// ```
    #[inline]
    pub fn load(&mut self) -> &Committed<T> {
        self.cache.load()
    }
}

impl<T: fmt::Debug> fmt::Debug for Reader<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}
