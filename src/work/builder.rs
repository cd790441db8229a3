//! [`WorkQueueBuilder`]: settings checked once, at `build`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::backoff::RetryBackoff;
use super::error::BuildError;
use super::item::MAX_ATTEMPTS;
use super::WorkQueue;
use crate::clock::{Clock, SystemClock};

/// The lease a claim gets unless [`lease`](WorkQueueBuilder::lease) says
/// otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// How many attempts an item gets unless
/// [`max_attempts`](WorkQueueBuilder::max_attempts) says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Settings for a [`WorkQueue`]; start with [`WorkQueue::builder`].
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use unlocked::WorkQueue;
///
/// let q: WorkQueue<String> = WorkQueue::builder()
///     .max_size(10_000)
///     .max_attempts(5)
///     .lease(Duration::from_secs(60))
///     .build()
///     .unwrap();
/// assert_eq!(q.max_size(), Some(10_000));
/// ```
#[must_use]
pub struct WorkQueueBuilder<T> {
    pub(crate) max_size: Option<usize>,
    pub(crate) max_attempts: u32,
    pub(crate) lease: Duration,
    pub(crate) retry_backoff: RetryBackoff,
    pub(crate) clock: Arc<dyn Clock>,
    _items: std::marker::PhantomData<fn(T)>,
}

impl<T: Send + Sync + 'static> WorkQueueBuilder<T> {
    pub(crate) fn new() -> Self {
        WorkQueueBuilder {
            max_size: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            lease: DEFAULT_LEASE,
            retry_backoff: RetryBackoff::none(),
            clock: Arc::new(SystemClock::new()),
            _items: std::marker::PhantomData,
        }
    }

    /// The most items the queue stores at once, whatever their status
    /// (completed items and dead letters count until removed). Unbounded
    /// by default.
    ///
    /// # Examples
    /// ```
    /// let q = unlocked::WorkQueue::builder().max_size(2).build().unwrap();
    /// q.add(1).unwrap();
    /// q.add(2).unwrap();
    /// assert!(q.add(3).is_err());
    /// ```
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = Some(max_size);
        self
    }

    /// How many attempts (failures and expired leases) an item gets before
    /// it becomes a dead letter. Default [`DEFAULT_MAX_ATTEMPTS`]; at most
    /// [`MAX_ATTEMPTS`].
    ///
    /// # Examples
    /// ```
    /// use unlocked::{ItemStatus, WorkQueue};
    ///
    /// let q = WorkQueue::builder().max_attempts(1).build().unwrap();
    /// let id = q.add(()).unwrap();
    /// let c = q.claim().unwrap();
    /// q.fail(&c, "no").unwrap();
    /// assert_eq!(q.get(id).unwrap().status(), ItemStatus::Failed);
    /// ```
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// How long a claim holds its item before
    /// [`reap_expired`](WorkQueue::reap_expired) may hand it out again.
    /// Default [`DEFAULT_LEASE`].
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// let q = unlocked::WorkQueue::<()>::builder().lease(Duration::from_millis(500)).build().unwrap();
    /// assert_eq!(q.lease(), Duration::from_millis(500));
    /// ```
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How long an item that [`fail`](WorkQueue::fail)ed waits before it
    /// can be claimed again; [`RetryBackoff::none`] (no wait) by default.
    ///
    /// While it waits, the item reports [`Pending`](crate::ItemStatus::Pending)
    /// (in [`get`](WorkQueue::get), [`counts`](WorkQueue::counts) and
    /// [`snapshot`](WorkQueue::snapshot); [`ItemSnapshot::retry_at`](crate::ItemSnapshot::retry_at)
    /// says until when), but it is in no pending order: once its time has
    /// come, the next [`claim`](WorkQueue::claim) or
    /// [`reap_expired`](WorkQueue::reap_expired) puts it at the tail of the
    /// pending order. Only `fail` of a claim still holding its item, within
    /// its lease, backs off; an expired lease (which already waited a
    /// lease, reaped or not) and a [`release`](WorkQueue::release) do not.
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use unlocked::{ManualClock, RetryBackoff, WorkQueue};
    ///
    /// let clock = ManualClock::new();
    /// let q = WorkQueue::builder()
    ///     .retry_backoff(RetryBackoff::exponential(Duration::from_secs(1), Duration::from_secs(30)))
    ///     .clock(clock.clone())
    ///     .build()
    ///     .unwrap();
    /// q.add("flaky").unwrap();
    /// let c = q.claim().unwrap();
    /// q.fail(&c, "503").unwrap();
    /// assert!(q.claim().is_none()); // backing off for 1 s
    /// clock.advance(Duration::from_secs(1));
    /// let c = q.claim().unwrap();
    /// q.fail(&c, "503 again").unwrap();
    /// clock.advance(Duration::from_secs(1));
    /// assert!(q.claim().is_none()); // now 2 s
    /// clock.advance(Duration::from_secs(1));
    /// assert_eq!(q.claim().unwrap().attempts(), 3);
    /// ```
    pub fn retry_backoff(mut self, backoff: RetryBackoff) -> Self {
        self.retry_backoff = backoff;
        self
    }

    /// The clock leases are measured by; [`SystemClock`] by default. Tests
    /// and simulations pass a [`ManualClock`](crate::ManualClock).
    ///
    /// # Examples
    /// ```
    /// use std::time::Duration;
    /// use unlocked::{ManualClock, WorkQueue};
    ///
    /// let clock = ManualClock::new();
    /// let q = WorkQueue::builder().lease(Duration::from_secs(1)).clock(clock.clone()).build().unwrap();
    /// q.add(1).unwrap();
    /// let _vanished = q.claim().unwrap();
    /// clock.advance(Duration::from_secs(2));
    /// assert_eq!(q.reap_expired(), 1);
    /// ```
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the queue.
    ///
    /// # Errors
    /// A [`BuildError`] saying which setting is wrong: `max_size(0)`,
    /// `max_attempts(0)` or above [`MAX_ATTEMPTS`],
    /// a zero `lease`, or a [`RetryBackoff`] whose `base` is zero or whose
    /// `max` is below its `base`.
    ///
    /// # Examples
    /// ```
    /// let err = unlocked::WorkQueue::<u8>::builder().max_size(0).build().unwrap_err();
    /// assert!(err.to_string().contains("max_size"));
    /// ```
    pub fn build(self) -> Result<WorkQueue<T>, BuildError> {
        if self.max_size == Some(0) {
            return Err(BuildError::ZeroMaxSize);
        }
        if self.max_attempts == 0 {
            return Err(BuildError::ZeroMaxAttempts);
        }
        if self.max_attempts > MAX_ATTEMPTS {
            return Err(BuildError::TooManyAttempts);
        }
        if self.lease.is_zero() {
            return Err(BuildError::ZeroLease);
        }
        self.retry_backoff
            .check()
            .map_err(BuildError::InvalidRetryBackoff)?;
        Ok(WorkQueue::from_builder(self))
    }
}

impl<T> fmt::Debug for WorkQueueBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkQueueBuilder")
            .field("max_size", &self.max_size)
            .field("max_attempts", &self.max_attempts)
            .field("lease", &self.lease)
            .field("retry_backoff", &self.retry_backoff)
            .field("clock", &self.clock)
            .finish()
    }
}
