//! Time as the crate's structures see it: a [`Clock`] they take, so that
//! tests, fuzz targets and simulations can drive leases and TTLs by hand.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;
#[cfg(any(miri, unlocked_loom, feature = "shuttle"))]
use std::time::Instant;

use crate::sync::{AtomicU64, Ordering};

/// A monotonic source of time, read as the [`Duration`] since the clock's own
/// starting point.
///
/// Structures that expire things (cache TTLs, work-queue leases) read time
/// only through this trait. [`SystemClock`] is the default; [`ManualClock`]
/// moves only when told to.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use unlocked::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// assert_eq!(clock.now(), Duration::ZERO);
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now(), Duration::from_secs(5));
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Time elapsed since the clock's starting point; never goes backwards.
    fn now(&self) -> Duration;

    /// [`now`](Self::now) in whole nanoseconds, saturating at `u64::MAX`
    /// (about 584 years). The structures read time through this on their
    /// hot paths; the provided version converts `now()`, and a clock that
    /// counts nanoseconds natively may override it to skip the
    /// [`Duration`] round trip (a division and a multiplication).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use unlocked::{Clock, ManualClock};
    ///
    /// let clock = ManualClock::new();
    /// clock.advance(Duration::from_micros(3));
    /// assert_eq!(clock.now_nanos(), 3_000);
    /// ```
    fn now_nanos(&self) -> u64 {
        u64::try_from(self.now().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The real monotonic clock, counted from its creation.
///
/// It reads the CPU's time-stamp counter through
/// [`quanta`](https://docs.rs/quanta) where the counter is invariant (about
/// 20 ns a read on the development VM, where [`Instant::now`](std::time::Instant::now) costs about
/// 50 ns), and falls back to [`Instant`](std::time::Instant) elsewhere. Under miri, loom and
/// shuttle it is [`Instant`](std::time::Instant), which those tools understand. A lease or a TTL
/// reads the clock on the hot path, so the difference shows.
///
/// # Examples
/// ```
/// use unlocked::{Clock, SystemClock};
///
/// let clock = SystemClock::new();
/// let a = clock.now();
/// assert!(clock.now() >= a);
/// ```
#[derive(Clone, Debug)]
pub struct SystemClock {
    /// The time source.
    #[cfg(not(any(miri, unlocked_loom, feature = "shuttle")))]
    source: quanta::Clock,
    /// The starting point, in `source`'s raw units.
    #[cfg(not(any(miri, unlocked_loom, feature = "shuttle")))]
    start: u64,
    /// The starting point.
    #[cfg(any(miri, unlocked_loom, feature = "shuttle"))]
    start: Instant,
}

impl SystemClock {
    /// A clock that starts at zero now.
    #[must_use]
    pub fn new() -> Self {
        #[cfg(not(any(miri, unlocked_loom, feature = "shuttle")))]
        {
            // quanta calibrates the counter once per process, not per clock.
            let source = quanta::Clock::new();
            let start = source.raw();
            SystemClock { source, start }
        }
        #[cfg(any(miri, unlocked_loom, feature = "shuttle"))]
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Duration {
        #[cfg(not(any(miri, unlocked_loom, feature = "shuttle")))]
        {
            Duration::from_nanos(self.source.delta_as_nanos(self.start, self.source.raw()))
        }
        #[cfg(any(miri, unlocked_loom, feature = "shuttle"))]
        self.start.elapsed()
    }

    #[inline]
    fn now_nanos(&self) -> u64 {
        #[cfg(not(any(miri, unlocked_loom, feature = "shuttle")))]
        {
            self.source.delta_as_nanos(self.start, self.source.raw())
        }
        #[cfg(any(miri, unlocked_loom, feature = "shuttle"))]
        {
            u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
        }
    }
}

/// A clock that moves only when [`advance`](ManualClock::advance) or
/// [`set`](ManualClock::set) is called: for tests and simulations.
///
/// Clones share the same time, so a test keeps one and hands the other to
/// the structure under test.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use unlocked::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let shared = clock.clone();
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(shared.now(), Duration::from_millis(250));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    /// Nanoseconds since zero, shared between clones.
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at zero.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by` (saturating at `u64::MAX` ns).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: the clock is a single number; readers that need ordering
        // with other data get it from that data's own synchronisation.
        let _ = self
            .nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(by))
            });
    }

    /// Sets the clock to `to`, if that is not earlier than now (a monotonic
    /// clock never goes back; an earlier `to` is ignored).
    pub fn set(&self, to: Duration) {
        let to = u64::try_from(to.as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: as in `advance`.
        self.nanos.fetch_max(to, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.now_nanos())
    }

    fn now_nanos(&self) -> u64 {
        // Relaxed: as in `advance`.
        self.nanos.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_forward() {
        let c = ManualClock::new();
        c.advance(Duration::from_secs(2));
        c.set(Duration::from_secs(1));
        assert_eq!(c.now(), Duration::from_secs(2));
        c.set(Duration::from_secs(3));
        assert_eq!(c.now(), Duration::from_secs(3));
        c.advance(Duration::MAX);
        assert_eq!(c.now(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn system_clock_is_monotonic() {
        let c = SystemClock::new();
        let a = c.now();
        assert!(c.now() >= a);
    }
}
