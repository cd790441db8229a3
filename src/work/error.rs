//! Errors of the work queue: each says what to do, and `QueueFull` hands
//! the value back.

use std::fmt;

/// An [`add`](super::WorkQueue::add) refused because the queue already
/// stores `max_size` items (whatever their status); the value is inside.
///
/// # Examples
/// ```
/// use unlocked::WorkQueue;
///
/// let q = WorkQueue::builder().max_size(1).build().unwrap();
/// q.add("a").unwrap();
/// let err = q.add("b").unwrap_err();
/// assert_eq!(err.into_inner(), "b");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueFull<T>(pub T);

impl<T> QueueFull<T> {
    /// Returns the value that could not be added.
    ///
    /// # Examples
    /// ```
    /// assert_eq!(unlocked::QueueFull(5).into_inner(), 5);
    /// ```
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for QueueFull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("QueueFull(..)")
    }
}

impl<T> fmt::Display for QueueFull<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "work queue is full: remove completed or dead-letter items, or retry later \
             (the value is returned inside the error)",
        )
    }
}

impl<T> std::error::Error for QueueFull<T> {}

/// Why [`complete`](super::WorkQueue::complete),
/// [`fail`](super::WorkQueue::fail) or [`release`](super::WorkQueue::release)
/// refused a claim. Nothing was changed when one of these comes back.
///
/// # Examples
/// ```
/// use unlocked::{WorkError, WorkQueue};
///
/// let q = WorkQueue::new();
/// q.add(1).unwrap();
/// let claim = q.claim().unwrap();
/// q.complete(&claim).unwrap();
/// assert_eq!(q.complete(&claim), Err(WorkError::AlreadyFinished));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkError {
    /// The claim's lease ran out and the item was claimed again by someone
    /// else: the new holder decides its fate. Drop the result of this
    /// attempt (the work may be done twice, but it is completed once).
    StaleClaim,
    /// This claim already completed, failed or released the item.
    AlreadyFinished,
    /// The item was removed from the queue.
    Removed,
    /// The claim was issued by another work queue: settle it with the
    /// queue it came from.
    WrongQueue,
}

impl fmt::Display for WorkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkError::StaleClaim => {
                "stale claim: the lease ran out and another worker claimed the item; \
                 discard this attempt's result"
            }
            WorkError::AlreadyFinished => {
                "this claim already completed, failed or released the item; \
                 each claim settles its item once"
            }
            WorkError::Removed => "the item was removed from the work queue",
            WorkError::WrongQueue => {
                "this claim was issued by another work queue; \
                 settle it with the queue it came from"
            }
        })
    }
}

impl std::error::Error for WorkError {}

pub use crate::build_error::BuildError;
