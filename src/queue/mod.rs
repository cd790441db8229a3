//! Lock-free multi-producer multi-consumer queues.
//!
//! - [`BoundedQueue`]: a fixed-capacity ring; `push` hands the value back
//!   when full or closed, `force_push` displaces the oldest value.
//! - [`UnboundedQueue`]: a linked list of single-use segments that grows
//!   and shrinks.
//!
//! Both are lock-free in the strict sense: a thread stalled at any point of
//! any operation cannot stop other threads from completing theirs (one
//! exception: [`BoundedQueue::force_push`] on a full queue waits while every
//! slot is held by an operation in flight, see its docs). They are
//! built on fetch-and-add tickets: the bounded queue on the SCQ ring of
//! Nikolaev (DISC 2019), the unbounded one on the LCRQ paper's infinite
//! array queue (Morrison & Afek, PPoPP 2013) cut into segments;
//! `docs/queue.md` describes the algorithms and their memory orderings.
//!
//! Both offer blocking [`pop_timeout`](BoundedQueue::pop_timeout) and
//! executor-agnostic [`pop_async`](BoundedQueue::pop_async). A push with no
//! consumer waiting pays one atomic load for the waiting machinery.

mod bounded;
mod error;
mod ring;
mod segment;
mod slots;
mod unbounded;
pub(crate) mod waiters;

pub use bounded::BoundedQueue;
pub use error::PushError;
pub use unbounded::UnboundedQueue;

/// The largest capacity a [`BoundedQueue`] accepts (2^30 values).
pub const MAX_CAPACITY: usize = 1 << 30;
