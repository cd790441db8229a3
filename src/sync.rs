//! The one facade for every synchronisation primitive in the crate.
//!
//! Nothing outside this module names `std::sync::atomic`, `std::thread`,
//! `std::cell::UnsafeCell` or a lock. Three back ends exist:
//!
//! | build                         | primitives from |
//! |-------------------------------|-----------------|
//! | default                       | `std`           |
//! | `RUSTFLAGS="--cfg unlocked_loom"` | [`loom`](https://docs.rs/loom): exhaustive schedule exploration |
//! | feature `shuttle`             | [`shuttle`](https://docs.rs/shuttle): randomized schedule exploration |
//!
//! The crate-specific cfg name `unlocked_loom` (not bare `loom`) keeps
//! dependencies that have their own `cfg(loom)` code paths on std.
//!
//! Memory reclamation goes through [`epoch`]: crossbeam-epoch normally; under
//! loom, retired memory is leaked instead, because loom objects must not be
//! touched outside the model run that created them (crossbeam-epoch may free
//! them during a later run).

#[cfg(all(unlocked_loom, feature = "shuttle"))]
compile_error!("`--cfg unlocked_loom` and the `shuttle` feature are exclusive");

#[cfg(unlocked_loom)]
pub(crate) use loom::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize,
};

#[cfg(all(feature = "shuttle", not(unlocked_loom)))]
pub(crate) use shuttle::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize,
};

#[cfg(not(any(unlocked_loom, feature = "shuttle")))]
pub(crate) use std::sync::atomic::{
    AtomicBool, AtomicI64, AtomicPtr, AtomicU64, AtomicU8, AtomicUsize,
};

pub(crate) use std::sync::atomic::Ordering;

pub(crate) use crossbeam_utils::CachePadded;

#[cfg(unlocked_loom)]
pub(crate) use loom::sync::{Mutex as RawMutex, MutexGuard};

#[cfg(all(feature = "shuttle", not(unlocked_loom)))]
pub(crate) use shuttle::sync::{Mutex as RawMutex, MutexGuard};

#[cfg(not(any(unlocked_loom, feature = "shuttle")))]
pub(crate) use std::sync::{Mutex as RawMutex, MutexGuard};

/// A mutual-exclusion lock (std, loom or shuttle) that ignores poisoning.
///
/// Users of this lock keep their data consistent at every point where user
/// code (a hasher, `Eq`, `Clone`, a listener) could panic, so a panic while
/// it is held leaves nothing half-done, and later callers may go on.
#[derive(Debug)]
pub(crate) struct Mutex<T>(RawMutex<T>);

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self(RawMutex::new(value))
    }

    /// Blocks until the lock is held; a poisoned lock is taken all the same.
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Tells the scheduler (or the model checker) that this thread is waiting
/// for another thread's progress. Loom and shuttle need to see every spin.
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(unlocked_loom)]
    loom::thread::yield_now();
    #[cfg(all(feature = "shuttle", not(unlocked_loom)))]
    shuttle::thread::yield_now();
    #[cfg(not(any(unlocked_loom, feature = "shuttle")))]
    std::hint::spin_loop();
}

/// Gives the rest of this time slice away; used when a spin has gone on long
/// enough that the thread we wait for is probably descheduled.
#[inline]
pub(crate) fn yield_now() {
    #[cfg(unlocked_loom)]
    loom::thread::yield_now();
    #[cfg(all(feature = "shuttle", not(unlocked_loom)))]
    shuttle::thread::yield_now();
    #[cfg(not(any(unlocked_loom, feature = "shuttle")))]
    std::thread::yield_now();
}

/// Exponential backoff for a thread waiting on another thread's progress
/// (crossbeam's `Backoff`, rebuilt on this facade so that loom and shuttle
/// see every spin and yield).
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    step: u32,
}

impl Backoff {
    const SPIN_LIMIT: u32 = 6;

    /// Waits a little longer each call: spins first, then yields the CPU.
    pub(crate) fn snooze(&mut self) {
        if self.step <= Self::SPIN_LIMIT {
            for _ in 0..1u32 << self.step {
                spin_loop();
            }
            self.step += 1;
        } else {
            yield_now();
        }
    }
}

/// `UnsafeCell` reached only through `with`/`with_mut`, so loom can check
/// every access for data races (the same shape as loom's own type).
#[cfg(unlocked_loom)]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(loom::cell::UnsafeCell<T>);

#[cfg(unlocked_loom)]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(data: T) -> Self {
        Self(loom::cell::UnsafeCell::new(data))
    }

    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        self.0.with(f)
    }

    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        self.0.with_mut(f)
    }
}

/// `UnsafeCell` reached only through `with`/`with_mut`, so loom can check
/// every access for data races (the same shape as loom's own type).
#[cfg(not(unlocked_loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(unlocked_loom))]
impl<T> UnsafeCell<T> {
    pub(crate) fn new(data: T) -> Self {
        Self(std::cell::UnsafeCell::new(data))
    }

    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// A small number per thread, handed out round-robin on first use, for
/// picking a stripe of striped counters. Always 0 under loom and shuttle, so
/// that model runs stay deterministic.
#[cfg(not(any(unlocked_loom, feature = "shuttle")))]
#[inline]
pub(crate) fn thread_index() -> usize {
    use std::cell::Cell;
    // A ticket dispenser for stripe numbers: no other data depends on it.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    INDEX.with(|i| {
        let mut v = i.get();
        if v == usize::MAX {
            v = NEXT.fetch_add(1, Ordering::Relaxed);
            i.set(v);
        }
        v
    })
}

/// A number that no other call in this process returns: it names an
/// instance (a config store), so that a handle minted by one instance is
/// never mistaken for one of another's. Not part of any modelled algorithm,
/// so it is a plain std atomic under loom and shuttle too.
pub(crate) fn unique_id() -> u64 {
    // A ticket dispenser: only uniqueness matters, no data depends on it.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// See the std version.
#[cfg(any(unlocked_loom, feature = "shuttle"))]
#[inline]
pub(crate) fn thread_index() -> usize {
    0
}

/// The number of CPUs this process may use (read once, then cached); 1
/// under loom and shuttle, so that model runs stay deterministic.
pub(crate) fn cores() -> usize {
    #[cfg(any(unlocked_loom, feature = "shuttle"))]
    {
        1
    }
    #[cfg(not(any(unlocked_loom, feature = "shuttle")))]
    {
        static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
        *CORES.get_or_init(|| std::thread::available_parallelism().map_or(4, usize::from))
    }
}

/// Epoch-based memory reclamation, behind one small interface.
pub(crate) mod epoch {
    #[cfg(not(unlocked_loom))]
    pub(crate) use crossbeam_epoch::{pin, Guard};

    /// Under loom, a guard that never frees: see the module docs.
    #[cfg(unlocked_loom)]
    #[derive(Debug)]
    pub(crate) struct Guard(());

    #[cfg(unlocked_loom)]
    pub(crate) fn pin() -> Guard {
        Guard(())
    }

    #[cfg(unlocked_loom)]
    impl Guard {
        /// Leaks the value: loom objects must not outlive their model run,
        /// and a model is too short for the leak to matter. A model that
        /// wants to check what the deferred code does (a drained segment
        /// reused as a spare) records it instead and runs it once its
        /// threads are joined (see [`loom_hooks`]).
        ///
        /// # Safety
        /// Same contract as `crossbeam_epoch::Guard::defer_unchecked`.
        pub(crate) unsafe fn defer_unchecked<F: FnOnce() -> R, R>(&self, f: F) {
            // SAFETY: the caller keeps `defer_unchecked`'s contract: what
            // `f` uses stays valid until it runs, which `loom_hooks` only
            // does while every thread that could use it is joined.
            unsafe { loom_hooks::defer(f) };
        }

        /// Nothing to hand to a collector (see `defer_unchecked`).
        pub(crate) fn flush(&self) {}
    }

    /// loom only: lets a model run the code that the epoch would run after
    /// a grace period, at a point where no other thread is pinned (all are
    /// joined), so that loom checks what happens next (a retired segment
    /// reset and linked again). Models that do not opt in leak it, as
    /// before. loom runs a model's threads on the test's own thread, so a
    /// thread-local list serves them all.
    #[cfg(unlocked_loom)]
    pub mod loom_hooks {
        use std::cell::{Cell, RefCell};
        use std::mem::ManuallyDrop;

        type Deferred = Box<dyn FnOnce()>;

        std::thread_local! {
            static RECORDING: Cell<bool> = const { Cell::new(false) };
            /// Never dropped: a model that failed before `stop_recording`
            /// leaves closures over its loom objects, which must not be
            /// touched (dropped) once its run is over.
            static RECORDED: RefCell<ManuallyDrop<Vec<Deferred>>> =
                const { RefCell::new(ManuallyDrop::new(Vec::new())) };
        }

        /// Empties the list, handing its closures over.
        fn take() -> Vec<Deferred> {
            RECORDED.with(|r| std::mem::take(&mut **r.borrow_mut()))
        }

        /// Records `f` while a model records, or leaks it.
        ///
        /// # Safety
        /// `f` may run later, from [`run_recorded`], after the caller's
        /// borrows ended: the caller promises (as for crossbeam's
        /// `defer_unchecked`) that what it uses outlives that.
        pub(crate) unsafe fn defer<F: FnOnce() -> R, R>(f: F) {
            if !RECORDING.with(Cell::get) {
                std::mem::forget(f);
                return;
            }
            let boxed: Box<dyn FnOnce() + '_> = Box::new(move || {
                let _ = f();
            });
            // SAFETY: only the lifetime changes; the caller's contract
            // covers running the closure after its borrows end.
            let boxed: Deferred = unsafe { std::mem::transmute(boxed) };
            RECORDED.with(|r| r.borrow_mut().push(boxed));
        }

        /// Starts recording deferred code for this model run (forgetting,
        /// not running or dropping, anything an earlier run left).
        pub fn start_recording() {
            std::mem::forget(take());
            RECORDING.with(|r| r.set(true));
        }

        /// Runs what was deferred so far, oldest first. Call it only while
        /// no other model thread is alive (as after joining them all): that
        /// stands for the end of the epoch's grace period.
        pub fn run_recorded() {
            for f in take() {
                f();
            }
        }

        /// Stops recording; what is left is leaked, as without recording.
        pub fn stop_recording() {
            RECORDING.with(|r| r.set(false));
            std::mem::forget(take());
        }
    }

    /// For `Drop` of a structure that retires user values (cache entries,
    /// work items): frees what this thread and the threads that have exited
    /// retired, unless another thread is pinned at that moment (then those
    /// objects are freed by a later collection, as usual). Without it a
    /// single-threaded program would see values it evicted or removed
    /// dropped only at some later operation.
    ///
    /// How: it defers a marker after everything this thread retired, hands
    /// it to the collector, and pins and flushes until the marker has run.
    /// The collector frees its bags in the order they were handed over, so
    /// then every bag handed over before, the structure's included, has
    /// been freed, even behind other structures' bags queued ahead of it
    /// (an unbounded queue hands one over per drained segment; found in
    /// review: a fixed number of rounds stopped short of the structure's
    /// own bags behind thousands of a queue's). The wait is bounded: past
    /// a backlog of some 30,000 bags (8 a round), the rest is freed by
    /// later collections, as usual.
    ///
    /// `retired` is an upper bound on the objects the structure ever
    /// retired. Each round advances the global epoch if no thread pins an
    /// older one and frees up to eight bags that are two epochs old, so
    /// the rounds are bounded by one per half a round's worth of retired
    /// objects plus a backlog allowance: a pinned thread that stops the
    /// epoch costs a bounded wait, not a hang. A round costs nanoseconds.
    pub(crate) fn collect_garbage(retired: u64) {
        /// Half of what one round can free (crossbeam-epoch's bags are
        /// smaller under miri).
        #[cfg(not(any(unlocked_loom, feature = "shuttle")))]
        const PER_ROUND: u64 = if cfg!(miri) { 16 } else { 256 };
        /// Rounds for other structures' bags queued ahead of ours (eight
        /// bags a round).
        #[cfg(not(any(unlocked_loom, feature = "shuttle")))]
        const BACKLOG_ROUNDS: u64 = if cfg!(miri) { 1 << 8 } else { 1 << 12 };
        // Under loom nothing is ever freed (see `defer_unchecked`); under
        // shuttle, garbage of an earlier execution must not be dropped in
        // this one (see `ptr_get_mut`).
        #[cfg(not(any(unlocked_loom, feature = "shuttle")))]
        {
            use std::sync::atomic::{AtomicBool, Ordering};
            let marker_ran = std::sync::Arc::new(AtomicBool::new(false));
            let marker = std::sync::Arc::clone(&marker_ran);
            {
                let guard = pin();
                // Release: pairs with the Acquire load below, so the frees
                // that ran before the marker happen before `Drop` returns.
                guard.defer(move || marker.store(true, Ordering::Release));
                guard.flush();
            }
            // A thread that is already pinned (a structure dropped by a
            // deferred closure, say) holds the epoch back itself: the marker
            // cannot run meanwhile, so it waits for no backlog.
            let backlog = if crossbeam_epoch::is_pinned() {
                0
            } else {
                BACKLOG_ROUNDS
            };
            let rounds = 4 + (retired / PER_ROUND).min(1 << 16) + backlog;
            for _ in 0..rounds {
                // Acquire: see the Release store in the marker.
                if marker_ran.load(Ordering::Acquire) {
                    return;
                }
                pin().flush();
            }
        }
        #[cfg(any(unlocked_loom, feature = "shuttle"))]
        let _ = retired;
    }
}

/// Reads an atomic pointer through `&mut` (in `Drop`): no synchronisation
/// is needed, and none is recorded. Under shuttle this matters: memory
/// freed through the epoch may be dropped during a later execution, where a
/// `load` would carry the old execution's vector clock into the new one.
pub(crate) fn ptr_get_mut<T>(p: &mut AtomicPtr<T>) -> *mut T {
    #[cfg(unlocked_loom)]
    {
        p.with_mut(|p| *p)
    }
    #[cfg(not(unlocked_loom))]
    {
        *p.get_mut()
    }
}

/// Reads an atomic byte through `&mut` (in `Drop`), recording no
/// synchronisation, for the reason given at [`ptr_get_mut`].
pub(crate) fn u8_get_mut(a: &mut AtomicU8) -> u8 {
    #[cfg(unlocked_loom)]
    {
        a.with_mut(|a| *a)
    }
    #[cfg(not(unlocked_loom))]
    {
        *a.get_mut()
    }
}

/// Locks `mutex` (poisoning ignored, see [`Mutex`]).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock()
}
