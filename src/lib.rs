//! # unlocked
//!
//! Lock-free building blocks for high-throughput services, proven by
//! schedule exploration (loom, shuttle), miri and differential fuzzing, and
//! measured against their peers and the lock-based designs they replace.
//!
//! | module | what | status |
//! |---|---|---|
//! | [`queue`] | [`BoundedQueue`], [`UnboundedQueue`]: lock-free MPMC FIFO queues with close, timeouts and async pop | available |
//! | [`work`] | [`WorkQueue`]: lock-free job queue with ids, statuses, leases, retries, dead letters | available |
//! | [`cache`] | [`Cache`]: sharded, lock-free reads, TTL, S3-FIFO eviction, single-flight loading | available |
//! | [`config`] | [`ConfigStore`]: copy-on-write snapshots with wait-free reads, validated updates, subscriptions, crash-safe persistence | available |
//!
//! ## Quick start
//! ```
//! use std::sync::Arc;
//! use std::thread;
//! use unlocked::UnboundedQueue;
//!
//! let q = Arc::new(UnboundedQueue::new());
//! let producers: Vec<_> = (0..2)
//!     .map(|p| {
//!         let q = Arc::clone(&q);
//!         thread::spawn(move || {
//!             for i in 0..100 {
//!                 q.push(p * 1000 + i).unwrap();
//!             }
//!         })
//!     })
//!     .collect();
//! for p in producers {
//!     p.join().unwrap();
//! }
//! q.close();
//! let mut n = 0;
//! while q.pop_timeout(std::time::Duration::from_secs(1)).is_some() {
//!     n += 1;
//! }
//! assert_eq!(n, 200);
//! ```
//!
//! ## Thread safety
//! The queues are `Send + Sync` when their contents are `Send`: values move
//! between threads, they are never shared by reference, so `T: Sync` is not
//! needed. `WorkQueue<T>` needs `T: Send + Sync` (claims and snapshots
//! share an item's data by reference).
//!
//! ```compile_fail
//! // A queue of non-Send values cannot be shared between threads.
//! fn assert_sync<T: Sync>() {}
//! assert_sync::<unlocked::BoundedQueue<std::rc::Rc<u8>>>();
//! ```
//!
//! A [`ConfigStore<T>`] is different: every reader shares the same committed
//! value by reference, so it is `Send + Sync` when `T` is `Send + Sync`.
//!
//! ```compile_fail
//! // A config store of non-Sync values cannot be shared between threads.
//! fn assert_sync<T: Sync>() {}
//! assert_sync::<unlocked::ConfigStore<std::rc::Rc<u8>>>();
//! ```
//!
//! A cache shares its values between readers (each `get` clones one), so
//! it is `Sync` only when `K` and `V` are `Send + Sync`:
//!
//! ```compile_fail
//! fn assert_sync<T: Sync>() {}
//! assert_sync::<unlocked::Cache<u8, std::cell::Cell<u8>>>();
//! ```
//!
//! ## Consistency and memory ordering
//! - Queues are linearizable FIFO queues: a value is popped at most once,
//!   and, from any one producer, values come out in the order they were
//!   pushed. Across producers, the order is that of the pushes' ticket
//!   fetch-and-adds, which respects real time (a push that returned before
//!   another began comes out first).
//! - A successful `push` happens-before the `pop` that returns its value:
//!   everything the producer wrote before pushing is visible to the consumer.
//! - `len` is exact when no operation is in flight (see
//!   [`BoundedQueue`]'s "Concurrent calls" for one rare exception); otherwise it is a value
//!   the queue held at some moment during the call.
//! - [`WorkQueue`]: every status change is one compare-and-swap on the
//!   item, so a claim settles its item at most once and a stale claim is
//!   refused; a successful `add` happens-before the `claim` that returns
//!   the item. `len`, `counts` and `snapshot` are exact whenever no
//!   operation is in flight. `docs/work.md` has the state machine, the
//!   orderings and the migration guide from the seeds' `MemoryQueue`.
//! - A config [`Snapshot`] is one whole committed version: a commit
//!   happens-before every load that returns it, versions increase by one
//!   per commit, and the versions one thread loads never go backwards.
//!   `docs/config.md` explains the orderings.
//! - Cache operations on one key are linearizable: a `get` returns the value
//!   of the latest insert that took effect before it, or nothing once the key
//!   was removed, evicted or expired; an insert happens-before the `get` that
//!   returns its value. `len` and `stats` are exact at quiescence; `iter` is
//!   weakly consistent (see [`Cache::iter`]).
//! - `docs/queue.md`, `docs/work.md`, `docs/cache.md` and `docs/config.md` explain every atomic ordering.
//!
//! ## Cargo features
//! | feature | default | what it does |
//! |---|---|---|
//! | `persist` | no | `ConfigStore::open`: crash-safe JSON persistence of config snapshots (serde) |
//! | `toml` | no | TOML files for `ConfigStore::open` (implies `persist`) |
//! | `shuttle` | no | swaps the sync facade to [shuttle](https://docs.rs/shuttle) for randomized schedule tests; never enable in production |
//!
//! `RUSTFLAGS="--cfg unlocked_loom"` swaps it to [loom](https://docs.rs/loom)
//! for the exhaustive models in `loom-tests/`.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, missing_debug_implementations)]

mod build_error;
pub mod cache;
mod clock;
pub mod config;
mod drain;
pub mod queue;
mod sync;
pub mod work;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Long-form documentation, rendered from `docs/`.
pub mod docs {
    #[doc = include_str!("../docs/architecture.md")]
    pub mod architecture {}
    #[doc = include_str!("../docs/queue.md")]
    pub mod queue {}
    #[doc = include_str!("../docs/work.md")]
    pub mod work {}
    #[doc = include_str!("../docs/cache.md")]
    pub mod cache {}
    #[doc = include_str!("../docs/config.md")]
    pub mod config {}
    #[doc = include_str!("../docs/cache_policy.md")]
    pub mod cache_policy {}
    #[doc = include_str!("../docs/dependencies.md")]
    pub mod dependencies {}
}

pub use cache::{Cache, CacheBuilder, CacheStats, Iter, RandomState, RemovalCause};
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{
    BoxError, CallbackId, Committed, ConfigStore, OpenError, PersistError, PersistErrorKind,
    Reader, Snapshot, Subscription, UpdateError, ValidationError, Version,
};
pub use queue::{BoundedQueue, PushError, UnboundedQueue};
pub use work::{
    Claim, ItemId, ItemSnapshot, ItemStatus, QueueFull, RetryBackoff, StatusCounts, WorkError,
    WorkQueue, WorkQueueBuilder,
};

// Every builder's error is the one `BuildError`; the names per structure are
// kept for code written against them.
pub use build_error::BuildError;
pub use build_error::BuildError as CacheBuildError;
pub use build_error::BuildError as ConfigBuildError;
pub use build_error::BuildError as WorkBuildError;
pub use config::ConfigStoreBuilder;

/// loom models only (`--cfg unlocked_loom`): run deferred reclamation code
/// at a quiescent point of a model (see `sync::epoch::loom_hooks`).
#[cfg(unlocked_loom)]
#[doc(hidden)]
pub use sync::epoch::loom_hooks as __loom;

/// loom models only: the cache's recycler of entry memory.
#[cfg(unlocked_loom)]
#[doc(hidden)]
pub use cache::ModelRecycler as __LoomRecycler;
