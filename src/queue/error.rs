//! Errors that hand the value back.

use std::fmt;

/// A push that could not proceed; the value comes back inside.
///
/// # Examples
/// ```
/// use unlocked::{BoundedQueue, PushError};
///
/// let q = BoundedQueue::new(1);
/// q.push("a").unwrap();
/// match q.push("b") {
///     Err(PushError::Full(v)) => assert_eq!(v, "b"),
///     other => panic!("expected Full, got {other:?}"),
/// }
/// q.close();
/// assert_eq!(q.push("c"), Err(PushError::Closed("c")));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum PushError<T> {
    /// The queue was at capacity; the value was not inserted.
    Full(T),
    /// The queue was closed; the value was not inserted.
    Closed(T),
}

impl<T> PushError<T> {
    /// Returns the value that could not be pushed.
    ///
    /// # Examples
    /// ```
    /// use unlocked::PushError;
    /// assert_eq!(PushError::Full(7).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> T {
        match self {
            PushError::Full(v) | PushError::Closed(v) => v,
        }
    }

    /// `true` if the push failed because the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, PushError::Full(_))
    }

    /// `true` if the push failed because the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, PushError::Closed(_))
    }
}

impl<T> fmt::Debug for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full(_) => f.write_str("Full(..)"),
            PushError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for PushError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushError::Full(_) => f.write_str(
                "queue is full: pop an item, use force_push, or retry later (the value is returned inside the error)",
            ),
            PushError::Closed(_) => f.write_str(
                "queue is closed: no more values are accepted (the value is returned inside the error)",
            ),
        }
    }
}

impl<T> std::error::Error for PushError<T> {}
