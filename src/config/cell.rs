//! The snapshot cell: where the current [`Committed`] value lives.
//!
//! Normally this is [`arc_swap::ArcSwap`]: a load takes one of the thread's
//! debt slots instead of touching the shared reference count, so readers
//! never write a cache line that another reader writes. arc-swap uses std's
//! atomics directly and cannot run under loom, so under `cfg(unlocked_loom)`
//! the cell is a facade-based model of the same publish/load contract: an
//! `AtomicPtr` stored with `Release` and loaded with `Acquire`, every value
//! ever published kept alive until the cell drops (the reclamation that
//! arc-swap does with debts is not modelled; see `docs/config.md`).

use super::snapshot::Committed;

#[cfg(not(unlocked_loom))]
pub(crate) use self::arc_swap_cell::{Cell, Protected, ReaderCache};
#[cfg(unlocked_loom)]
pub(crate) use self::loom_cell::{Cell, Protected, ReaderCache};

#[cfg(not(unlocked_loom))]
mod arc_swap_cell {
    use std::fmt;
    use std::ops::Deref;
    use std::sync::Arc;

    use arc_swap::{ArcSwap, Cache, Guard};

    use super::super::Shared;
    use super::Committed;

    /// A loaded value: arc-swap's guard, which borrows a debt slot instead
    /// of bumping the reference count.
    pub(crate) type Protected<T> = Guard<Arc<Committed<T>>>;

    /// The current value, behind arc-swap.
    pub(crate) struct Cell<T> {
        swap: ArcSwap<Committed<T>>,
    }

    impl<T> Cell<T> {
        pub(crate) fn new(initial: Arc<Committed<T>>) -> Self {
            Self {
                swap: ArcSwap::new(initial),
            }
        }

        /// The current value; wait-free, no shared write.
        #[inline]
        pub(crate) fn load(&self) -> Protected<T> {
            self.swap.load()
        }

        /// Publishes `value`. arc-swap's store is a `SeqCst` swap followed by
        /// waiting until no reader still pays a debt on the old pointer.
        pub(crate) fn store(&self, value: Arc<Committed<T>>) {
            self.swap.store(value);
        }

        /// Wraps an `Arc` the caller already owns as a loaded value.
        pub(crate) fn protect(value: Arc<Committed<T>>) -> Protected<T> {
            Guard::from_inner(value)
        }

        /// The `Arc` behind a loaded value.
        pub(crate) fn into_arc(value: Protected<T>) -> Arc<Committed<T>> {
            Guard::into_inner(value)
        }

        /// A new strong reference to a loaded value.
        pub(crate) fn share(value: &Protected<T>) -> Arc<Committed<T>> {
            Arc::clone(value)
        }
    }

    impl<T: fmt::Debug> fmt::Debug for Cell<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_tuple("Cell").field(&**self.swap.load()).finish()
        }
    }

    /// Lets [`arc_swap::Cache`] reach the store's `ArcSwap` through the
    /// reader's own `Arc` to the shared state.
    pub(crate) struct Handle<T>(Arc<Shared<T>>);

    impl<T> Deref for Handle<T> {
        type Target = ArcSwap<Committed<T>>;

        #[inline]
        fn deref(&self) -> &Self::Target {
            &self.0.cell.swap
        }
    }

    /// A per-thread cached reader: [`arc_swap::Cache`], which compares the
    /// cached pointer with the current one (one load) and reloads only after
    /// a commit.
    pub(crate) struct ReaderCache<T> {
        cache: Cache<Handle<T>, Arc<Committed<T>>>,
    }

    impl<T> ReaderCache<T> {
        pub(crate) fn new(shared: Arc<Shared<T>>) -> Self {
            Self {
                cache: Cache::new(Handle(shared)),
            }
        }

        #[inline]
        pub(crate) fn load(&mut self) -> &Arc<Committed<T>> {
            self.cache.load()
        }
    }
}

#[cfg(unlocked_loom)]
mod loom_cell {
    use std::fmt;
    use std::sync::Arc;

    use super::super::Shared;
    use super::Committed;
    use crate::sync::{AtomicPtr, Ordering, UnsafeCell};

    /// Under loom a loaded value owns a strong reference.
    pub(crate) type Protected<T> = Arc<Committed<T>>;

    /// The current value as a pointer, with every published value kept.
    pub(crate) struct Cell<T> {
        current: AtomicPtr<Committed<T>>,
        /// Every value ever published; written only by the store's single
        /// writer at a time (the writer lock), which loom checks through
        /// the `UnsafeCell`.
        published: UnsafeCell<Vec<Arc<Committed<T>>>>,
    }

    // SAFETY: `current` points into `published`, whose values are `Send +
    // Sync` when `T` is; `published` is only touched under the writer lock.
    unsafe impl<T: Send + Sync> Sync for Cell<T> {}
    // SAFETY: as above; the cell owns its values.
    unsafe impl<T: Send + Sync> Send for Cell<T> {}

    impl<T> Cell<T> {
        pub(crate) fn new(initial: Arc<Committed<T>>) -> Self {
            let ptr = Arc::as_ptr(&initial).cast_mut();
            Self {
                current: AtomicPtr::new(ptr),
                published: UnsafeCell::new(vec![initial]),
            }
        }

        pub(crate) fn load(&self) -> Protected<T> {
            // Acquire: pairs with the Release in `store`, so the value the
            // writer built before publishing is visible here.
            let ptr = self.current.load(Ordering::Acquire);
            // SAFETY: `ptr` came from `Arc::as_ptr` of a value that
            // `published` keeps alive until the cell drops, and the cell
            // outlives this borrow.
            let value = unsafe {
                Arc::increment_strong_count(ptr);
                Arc::from_raw(ptr)
            };
            value.witness_read();
            value
        }

        /// The pointer the cell holds now (for the cached reader's check).
        pub(crate) fn current_ptr(&self) -> *const Committed<T> {
            // Relaxed: only compared with the cached pointer; a reload goes
            // through `load`, which synchronises.
            self.current.load(Ordering::Relaxed)
        }

        pub(crate) fn store(&self, value: Arc<Committed<T>>) {
            let ptr = Arc::as_ptr(&value).cast_mut();
            self.published.with_mut(|published| {
                // SAFETY: only the writer holding the store's writer lock
                // calls `store`, so this is the only access.
                unsafe { (*published).push(value) }
            });
            // Release: publishes the value (and its witness cell) to readers
            // that load the pointer with Acquire.
            self.current.store(ptr, Ordering::Release);
        }

        pub(crate) fn protect(value: Arc<Committed<T>>) -> Protected<T> {
            value
        }

        pub(crate) fn into_arc(value: Protected<T>) -> Arc<Committed<T>> {
            value
        }

        pub(crate) fn share(value: &Protected<T>) -> Arc<Committed<T>> {
            Arc::clone(value)
        }
    }

    impl<T> fmt::Debug for Cell<T> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Cell").finish_non_exhaustive()
        }
    }

    /// The cached reader's model: reload only when the pointer changed.
    pub(crate) struct ReaderCache<T> {
        shared: Arc<Shared<T>>,
        cached: Arc<Committed<T>>,
    }

    impl<T> ReaderCache<T> {
        pub(crate) fn new(shared: Arc<Shared<T>>) -> Self {
            let cached = shared.cell.load();
            Self { shared, cached }
        }

        pub(crate) fn load(&mut self) -> &Arc<Committed<T>> {
            if self.shared.cell.current_ptr() != Arc::as_ptr(&self.cached) {
                self.cached = self.shared.cell.load();
            }
            &self.cached
        }
    }
}
