//! Waiting for a value without spinning: a waiter count in front of an
//! [`event_listener::Event`].
//!
//! The count is the fast path: a push loads it (one atomic load) and touches
//! the event only when a consumer is registered. Registration follows the
//! usual Dekker discipline, with every step `SeqCst`:
//!
//! - producer: publish the value (a `SeqCst` CAS in the ring), then load the
//!   count;
//! - consumer: increment the count, start listening, then try to pop again.
//!
//! In the single total order of `SeqCst` operations either the producer's
//! publish comes before the consumer's second pop (which then finds the value)
//! or the consumer's increment comes before the producer's load (which then
//! notifies). If that notification lands before the listener exists, the
//! listener was created after it and before the second pop, which then sees
//! the value. A dropped listener that had been notified hands the
//! notification to the next one (event-listener's `propagate`), so a
//! cancelled `pop_async` or a timed-out `pop_timeout` never swallows a wakeup.

use std::time::{Duration, Instant};

use event_listener::{Event, IntoNotification, Listener};

use crate::sync::{AtomicUsize, CachePadded, Ordering::SeqCst};

/// What a consumer gets from one attempt on the queue.
pub(crate) trait Source<T> {
    fn try_pop(&self) -> Option<T>;
    fn is_closed(&self) -> bool;
    /// How long a blocked consumer may sleep before a value could appear
    /// with no push to wake it (the work queue's retry backoff); `None`:
    /// only a push makes one appear. Called while registered, after a
    /// failed `try_pop`, so a source that makes such a value possible must
    /// do so with a `SeqCst` write followed by `notify_one` (the protocol
    /// above, with the time in place of the value).
    fn recheck_after(&self) -> Option<Duration> {
        None
    }
}

/// Registered consumers and the event they sleep on.
#[derive(Debug, Default)]
pub(crate) struct Waiters {
    count: CachePadded<AtomicUsize>,
    event: Event,
}

/// Counts one registered waiter while it lives.
struct Registration<'a>(&'a AtomicUsize);

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        // SeqCst: keeps the count in the total order of the protocol above
        // (an extra notification is harmless, a missing one is not).
        self.0.fetch_sub(1, SeqCst);
    }
}

/// The outcome of a check made while registered.
enum Check<T> {
    Ready(Option<T>),
    Sleep,
}

impl Waiters {
    /// Wakes one more waiting consumer, if any; one atomic load otherwise.
    #[inline]
    pub(crate) fn notify_one(&self) {
        // SeqCst: the producer half of the protocol in the module docs.
        if self.count.load(SeqCst) != 0 {
            self.event.notify(1.additional());
        }
    }

    /// Wakes every waiting consumer, if any, with the same producer half of
    /// the protocol as [`notify_one`](Self::notify_one): for news only some
    /// waiters can act on (the work queue's "an item is due at time t": a
    /// waiter whose timeout comes first, or one with no timer, would drop a
    /// single notification and leave the others asleep).
    pub(crate) fn notify_every(&self) {
        // SeqCst: the producer half of the protocol in the module docs.
        if self.count.load(SeqCst) != 0 {
            self.event.notify(usize::MAX);
        }
    }

    /// Wakes every waiting consumer (on close).
    pub(crate) fn notify_all(&self) {
        self.event.notify(usize::MAX);
    }

    fn register(&self) -> Registration<'_> {
        // SeqCst: the consumer half of the protocol in the module docs.
        self.count.fetch_add(1, SeqCst);
        Registration(&self.count)
    }

    /// Pops, or tells the caller to sleep; `Ready(None)` once the source is
    /// closed and drained.
    fn check<T>(source: &impl Source<T>) -> Check<T> {
        if let Some(value) = source.try_pop() {
            return Check::Ready(Some(value));
        }
        if source.is_closed() {
            // Closed: whatever was pushed before the close is still there;
            // one more pop after seeing the flag catches it.
            return Check::Ready(source.try_pop());
        }
        Check::Sleep
    }

    /// Blocks the thread until a value arrives, the source is closed and
    /// drained, or `timeout` passes.
    pub(crate) fn pop_timeout<T>(&self, source: &impl Source<T>, timeout: Duration) -> Option<T> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Check::Ready(value) = Self::check(source) {
                return value;
            }
            let _registration = self.register();
            let listener = self.event.listen();
            if let Check::Ready(value) = Self::check(source) {
                return value;
            }
            let recheck = source
                .recheck_after()
                .and_then(|d| Instant::now().checked_add(d));
            let wake = match (deadline, recheck) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let woken = match wake {
                Some(wake) => listener.wait_deadline(wake).is_some(),
                None => {
                    listener.wait();
                    true
                }
            };
            if !woken && deadline.is_some_and(|d| Instant::now() >= d) {
                return source.try_pop();
            }
        }
    }

    /// Waits for a value on any executor.
    pub(crate) async fn pop_async<T>(&self, source: &impl Source<T>) -> Option<T> {
        loop {
            if let Check::Ready(value) = Self::check(source) {
                return value;
            }
            let _registration = self.register();
            let listener = self.event.listen();
            if let Check::Ready(value) = Self::check(source) {
                return value;
            }
            listener.await;
        }
    }
}
