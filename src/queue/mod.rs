//! Lock-free multi-producer multi-consumer queues.
//!
//! - [`BoundedQueue`]: a fixed-capacity ring; `push` hands the value back
//!   when full or closed, `force_push` displaces the oldest value.
//! - [`UnboundedQueue`]: a linked list of rings that grows and shrinks.
//!
//! Both are lock-free in the strict sense: a thread stalled at any point of
//! any operation cannot stop other threads from completing theirs. They are
//! built on the SCQ ring of Nikolaev (DISC 2019) and its linked extension
//! LSCQ; `docs/queue.md` describes the algorithm and its memory orderings.
//!
//! Both offer blocking [`pop_timeout`](BoundedQueue::pop_timeout) and
//! executor-agnostic [`pop_async`](BoundedQueue::pop_async). A push with no
//! consumer waiting pays one atomic load for the waiting machinery.

mod bounded;
mod error;
mod ring;
mod slots;
mod unbounded;
pub(crate) mod waiters;

pub use bounded::BoundedQueue;
pub use error::PushError;
pub use unbounded::UnboundedQueue;

/// The largest capacity a [`BoundedQueue`] accepts (2^30 values).
pub const MAX_CAPACITY: usize = 1 << 30;
