//! Helpers shared by the fuzz targets: a value type whose every instance is
//! accounted for, so that a leak, a double drop or a value handed out twice
//! shows up as a failed assertion instead of going unnoticed.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

/// Which tracked values are alive, indexed by serial number.
///
/// Only `Relaxed` read-modify-writes touch the flags: a swap on one flag is
/// still atomic (so a double drop is always caught), but it creates no
/// happens-before edge between threads that could hide a missing one in the
/// code under test.
pub struct Tracker {
    alive: Box<[AtomicBool]>,
}

impl Tracker {
    /// Room for serials `0..count`.
    pub fn new(count: usize) -> Self {
        Tracker {
            alive: (0..count).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Creates the one value with serial `serial`; each serial may be
    /// created at most once per tracker.
    pub fn make(&self, serial: u32, value: u32) -> Tracked<'_> {
        let was = self.alive[serial as usize].swap(true, Relaxed);
        assert!(!was, "serial {serial} created twice (fuzz target bug)");
        Tracked {
            serial,
            value,
            tracker: self,
        }
    }

    /// As [`make`](Self::make), for structures that require `'static`
    /// values (the work queue): the value keeps the tracker alive.
    pub fn make_shared(self: &Arc<Self>, serial: u32, value: u32) -> SharedTracked {
        let was = self.alive[serial as usize].swap(true, Relaxed);
        assert!(!was, "serial {serial} created twice (fuzz target bug)");
        SharedTracked {
            serial,
            value,
            tracker: Arc::clone(self),
        }
    }

    /// Marks `serial` dropped; panics if it was not alive.
    fn dropped(&self, serial: u32) {
        let was = self.alive[serial as usize].swap(false, Relaxed);
        assert!(
            was,
            "value with serial {serial} dropped twice (or a copy of it dropped)"
        );
    }

    /// The serials of the values alive now (call when no thread is creating
    /// or dropping values).
    pub fn alive(&self) -> Vec<u32> {
        self.alive
            .iter()
            .enumerate()
            .filter(|(_, flag)| flag.load(Relaxed))
            .map(|(serial, _)| serial as u32)
            .collect()
    }

    /// Panics if any value is still alive.
    pub fn assert_none_alive(&self) {
        let alive = self.alive();
        assert!(
            alive.is_empty(),
            "values leaked (never dropped): serials {alive:?}"
        );
    }
}

/// A value with a unique serial number and a payload; dropping it twice (or
/// dropping a bitwise copy of it) panics.
pub struct Tracked<'t> {
    /// Unique per tracker.
    pub serial: u32,
    /// Whatever the target wants to carry along (checked on the way out).
    pub value: u32,
    tracker: &'t Tracker,
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.tracker.dropped(self.serial);
    }
}

/// A [`Tracked`] that owns a share of its tracker (`'static`).
pub struct SharedTracked {
    /// Unique per tracker.
    pub serial: u32,
    /// Whatever the target wants to carry along (checked on the way out).
    pub value: u32,
    tracker: Arc<Tracker>,
}

impl Drop for SharedTracked {
    fn drop(&mut self) {
        self.tracker.dropped(self.serial);
    }
}

impl fmt::Debug for SharedTracked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}({})", self.serial, self.value)
    }
}

impl fmt::Debug for Tracked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}({})", self.serial, self.value)
    }
}

/// Runs the deferred frees of the default crossbeam-epoch collector (the one
/// `unlocked` retires segments to), so that the memory a run retired is
/// freed within the run. libFuzzer runs a costly LeakSanitizer pass after
/// every run that allocates more than it frees; without this, every run that
/// retires a segment would pay for one.
///
/// `retired` is an upper bound on the objects retired since the last call:
/// a flush advances the epoch once and frees up to 8 bags of 64 objects.
pub fn collect_garbage(retired: usize) {
    let rounds = 4 + retired / 64 / 8 * 2;
    for _ in 0..rounds {
        crossbeam_epoch::pin().flush();
    }
}
