//! [`RetryBackoff`]: how long a failed item waits before it may be claimed
//! again.

use std::time::Duration;

/// How long an item that [`fail`](super::WorkQueue::fail)ed waits before
/// it can be claimed again; set with
/// [`WorkQueueBuilder::retry_backoff`](super::WorkQueueBuilder::retry_backoff).
///
/// - [`none`](Self::none) (the default): the item goes straight back to the
///   tail of the pending order.
/// - [`fixed`](Self::fixed): every retry waits the same delay.
/// - [`exponential`](Self::exponential): the first retry waits `base`, each
///   next one twice as long as the one before, never more than `max`.
///
/// The delay is measured with the queue's [`Clock`](crate::Clock) from the
/// moment `fail` is called. There is no jitter: the delay is a function of
/// the attempt number only, so runs on a [`ManualClock`](crate::ManualClock)
/// are reproducible.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use unlocked::RetryBackoff;
///
/// let b = RetryBackoff::exponential(Duration::from_millis(100), Duration::from_secs(1));
/// assert_eq!(b.delay(1), Duration::from_millis(100));
/// assert_eq!(b.delay(2), Duration::from_millis(200));
/// assert_eq!(b.delay(5), Duration::from_secs(1));
/// assert_eq!(RetryBackoff::none().delay(7), Duration::ZERO);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RetryBackoff {
    /// The first retry's delay (zero: no backoff).
    base: Duration,
    /// The longest delay.
    max: Duration,
}

impl RetryBackoff {
    /// No backoff: a failed item is pending again at once (the default).
    ///
    /// # Examples
    /// ```
    /// assert!(unlocked::RetryBackoff::none().is_none());
    /// ```
    pub const fn none() -> Self {
        RetryBackoff {
            base: Duration::ZERO,
            max: Duration::ZERO,
        }
    }

    /// Every retry waits `delay` (a zero `delay` is the same as
    /// [`none`](Self::none)).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let b = unlocked::RetryBackoff::fixed(Duration::from_secs(2));
    /// assert_eq!(b.delay(1), b.delay(9));
    /// ```
    pub const fn fixed(delay: Duration) -> Self {
        RetryBackoff {
            base: delay,
            max: delay,
        }
    }

    /// The first retry waits `base`; each next one doubles, up to `max`.
    /// [`build`](super::WorkQueueBuilder::build) refuses a zero `base` and a
    /// `max` below `base`.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use unlocked::RetryBackoff;
    ///
    /// let b = RetryBackoff::exponential(Duration::from_secs(1), Duration::from_secs(60));
    /// let delays: Vec<u64> = (1..=8).map(|n| b.delay(n).as_secs()).collect();
    /// assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
    /// ```
    pub const fn exponential(base: Duration, max: Duration) -> Self {
        RetryBackoff { base, max }
    }

    /// `true` for [`none`](Self::none).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// assert!(!unlocked::RetryBackoff::fixed(Duration::from_secs(1)).is_none());
    /// ```
    pub const fn is_none(&self) -> bool {
        self.base.is_zero() && self.max.is_zero()
    }

    /// The delay before the retry that follows failed attempt number
    /// `attempt` (1 for the first attempt); zero for attempt 0 and for
    /// [`none`](Self::none).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let b = unlocked::RetryBackoff::exponential(Duration::from_millis(10), Duration::from_millis(35));
    /// assert_eq!(b.delay(3), Duration::from_millis(35));
    /// ```
    pub fn delay(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        // `base << (attempt - 1)` in nanoseconds; past 2^96 ns (more than
        // `Duration::MAX`) or on overflow, it is `max`.
        let doublings = attempt - 1;
        let nanos = (doublings < 96)
            .then(|| self.base.as_nanos().checked_mul(1 << doublings))
            .flatten();
        match nanos {
            Some(n) if n < self.max.as_nanos() => nanos_to_duration(n),
            _ => self.max,
        }
    }

    /// [`delay`](Self::delay) in whole nanoseconds, saturating.
    pub(crate) fn delay_nanos(&self, attempt: u32) -> u64 {
        u64::try_from(self.delay(attempt).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Why the settings cannot work, if they cannot.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        if self.is_none() {
            return Ok(());
        }
        if self.base.is_zero() {
            return Err(
                "retry_backoff: the first delay (base) must be longer than zero; \
                 use RetryBackoff::none() for no backoff",
            );
        }
        if self.max < self.base {
            return Err(
                "retry_backoff: max must be at least base (the delay only grows from base to max)",
            );
        }
        Ok(())
    }
}

/// `n` nanoseconds, known to be below `Duration::MAX`.
fn nanos_to_duration(n: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    Duration::new((n / NANOS_PER_SEC) as u64, (n % NANOS_PER_SEC) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_saturate_at_max() {
        let b = RetryBackoff::exponential(Duration::from_nanos(3), Duration::from_secs(u64::MAX));
        assert_eq!(b.delay(1), Duration::from_nanos(3));
        assert_eq!(b.delay(2), Duration::from_nanos(6));
        assert_eq!(b.delay(32), Duration::from_nanos(3 << 31));
        assert_eq!(b.delay(41), Duration::from_nanos(3 << 40));
        assert_eq!(b.delay(200), Duration::from_secs(u64::MAX));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(u64::MAX));
        let huge = RetryBackoff::exponential(Duration::MAX, Duration::MAX);
        assert_eq!(huge.delay(2), Duration::MAX);
        assert_eq!(huge.delay_nanos(2), u64::MAX);
    }

    #[test]
    fn check_refuses_what_cannot_work() {
        assert!(RetryBackoff::none().check().is_ok());
        assert!(RetryBackoff::fixed(Duration::ZERO).check().is_ok()); // same as none
        assert!(
            RetryBackoff::exponential(Duration::ZERO, Duration::from_secs(1))
                .check()
                .is_err()
        );
        assert!(
            RetryBackoff::exponential(Duration::from_secs(2), Duration::from_secs(1))
                .check()
                .is_err()
        );
        assert!(RetryBackoff::fixed(Duration::from_secs(1)).check().is_ok());
    }
}
