//! [`BuildError`]: the one error type of every builder's `build()`.

use std::error::Error;
use std::fmt;

use crate::config::ValidationError;

/// A setting a builder refused (or, for a [`ConfigStore`](crate::ConfigStore),
/// an initial value a validator refused). Every builder's `build()` returns
/// it; each variant names the structure it belongs to, and the message says
/// what to change.
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use unlocked::{BuildError, Cache, ConfigStore, WorkQueue};
///
/// let err = Cache::<u32, u32>::builder().max_capacity(0).build().unwrap_err();
/// assert_eq!(err, BuildError::ZeroCapacity);
/// assert!(err.to_string().contains("at least 1"));
///
/// let err = WorkQueue::<u8>::builder().lease(Duration::ZERO).build().unwrap_err();
/// assert_eq!(err, BuildError::ZeroLease);
///
/// let err = ConfigStore::builder(0).history(0).build().unwrap_err();
/// assert_eq!(err, BuildError::ZeroHistory);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// Cache: `max_capacity` was 0 or never set.
    ZeroCapacity,
    /// Cache: `shards(0)`.
    ZeroShards,
    /// Cache: `time_to_live(Duration::ZERO)`: every entry would be expired
    /// at once.
    ZeroTimeToLive,
    /// Cache: `max_weight(0)`: no entry would fit.
    ZeroMaxWeight,
    /// Cache: a [`weigher`](crate::CacheBuilder::weigher) with no
    /// [`max_weight`](crate::CacheBuilder::max_weight) to count the weights
    /// against.
    WeigherWithoutMaxWeight,
    /// Work queue: `max_size(0)`.
    ZeroMaxSize,
    /// Work queue: `max_attempts(0)`.
    ZeroMaxAttempts,
    /// Work queue: `max_attempts` above
    /// [`MAX_ATTEMPTS`](crate::work::MAX_ATTEMPTS).
    TooManyAttempts,
    /// Work queue: `lease(Duration::ZERO)`.
    ZeroLease,
    /// Work queue: retry backoff settings that cannot work (the message
    /// says which).
    InvalidRetryBackoff(&'static str),
    /// Config store: `history(0)`: the history holds at least the current
    /// version.
    ZeroHistory,
    /// Config store: a validator refused the initial value.
    InvalidInitial(ValidationError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BuildError::ZeroCapacity => {
                "cache max_capacity must be at least 1: set it with .max_capacity(n)"
            }
            BuildError::ZeroShards => {
                "cache shards must be at least 1: leave .shards(..) out to pick a count from the capacity"
            }
            BuildError::ZeroTimeToLive => {
                "cache time_to_live must be longer than zero: leave .time_to_live(..) out for entries that never expire"
            }
            BuildError::ZeroMaxWeight => {
                "cache max_weight must be at least 1: leave .max_weight(..) out to bound the entry count alone"
            }
            BuildError::WeigherWithoutMaxWeight => {
                "cache weigher needs a max_weight to bound the total weight: set it with .max_weight(n)"
            }
            BuildError::ZeroMaxSize => {
                "max_size must be at least 1: a work queue that stores nothing accepts nothing"
            }
            BuildError::ZeroMaxAttempts => {
                "max_attempts must be at least 1: every item gets one attempt"
            }
            BuildError::TooManyAttempts => {
                "max_attempts must be at most 536870911 (unlocked::work::MAX_ATTEMPTS, 2^29 - 1)"
            }
            BuildError::ZeroLease => {
                "lease must be longer than zero: a zero lease expires as soon as it is granted"
            }
            BuildError::InvalidRetryBackoff(why) => why,
            BuildError::ZeroHistory => {
                "history length must be at least 1 (it always holds the current version)"
            }
            BuildError::InvalidInitial(e) => {
                return write!(f, "the initial configuration is invalid: {e}")
            }
        })
    }
}

impl Error for BuildError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            BuildError::InvalidInitial(e) => Some(e),
            _ => None,
        }
    }
}

/// Equal variants; two `InvalidInitial`s are equal when the same validator
/// said the same thing (its message), so this is an equivalence: `Eq`.
impl PartialEq for BuildError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (BuildError::InvalidInitial(a), BuildError::InvalidInitial(b)) => {
                a.validator() == b.validator() && a.to_string() == b.to_string()
            }
            (BuildError::InvalidRetryBackoff(a), BuildError::InvalidRetryBackoff(b)) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl Eq for BuildError {}

/// Consistent with `PartialEq`: the variant, and for `InvalidInitial` the
/// validator and its message.
impl std::hash::Hash for BuildError {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            BuildError::InvalidInitial(e) => {
                e.validator().hash(state);
                e.to_string().hash(state);
            }
            BuildError::InvalidRetryBackoff(why) => why.hash(state),
            _ => {}
        }
    }
}
