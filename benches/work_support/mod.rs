//! Shared harness for `benches/work_queue.rs` and the contention report's
//! work-queue section.
//!
//! - [`BenchWork`]: a work queue under test, over `u64` jobs, implemented
//!   for `unlocked::WorkQueue`, for [`SeedsPort`] (the seeds' `MemoryQueue`
//!   ported to Rust: one `Mutex` around a `HashMap` of items and a
//!   `VecDeque` of pending ids; the lock baseline), and for a
//!   `crossbeam-channel` pipeline (no ids, statuses or leases: a lower bound
//!   on what handing a job over costs, not a work queue).
//! - [`SameSemantics`]: the tests' sequential reference
//!   (`tests/common/work_model.rs`): the same `Mutex<HashMap + VecDeque>`
//!   design with everything `WorkQueue` does (leases read from the system
//!   clock, attempts, last errors, stale-claim checks). It shows what the
//!   features cost under a lock, next to the seeds' bare design.
//! - One *cycle* is what a worker of a job queue does per job: `add` a job,
//!   `claim` the oldest pending one, `complete` it and `remove` it (the
//!   seeds' users called `update` then `remove`). `W` worker threads run
//!   cycles over a backlog of [`BACKLOG`] pending jobs, spawned once and
//!   driven with barriers so that spawning stays out of the timings.
//! - Every run is verified (the backlog intact), and at the end the claimed
//!   values plus the drained backlog must sum to exactly what was added.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Pending jobs every run starts and ends with.
pub const BACKLOG: u64 = 1024;

/// Failed claims spent spinning before a worker yields.
const SPIN_LIMIT: u32 = 64;

/// What an implementation is in the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `unlocked::WorkQueue`: the subject of every ratio.
    Subject,
    /// A peer that does less (no ids or statuses).
    Peer,
    /// The lock-based design the crate replaces.
    LockBaseline,
}

/// A work queue under test, over `u64` jobs.
pub trait BenchWork: Send + Sync + 'static {
    /// Display name.
    const NAME: &'static str;
    /// Place in the comparison.
    const ROLE: Role;
    /// What a claim hands the worker.
    type Ticket;
    /// A new empty queue.
    fn create() -> Self;
    /// Adds a job.
    fn add(&self, v: u64);
    /// Claims the oldest pending job.
    fn claim(&self) -> Option<(Self::Ticket, u64)>;
    /// Completes and removes a claimed job.
    fn finish(&self, t: Self::Ticket);
    /// Jobs stored.
    fn len(&self) -> usize;
}

impl BenchWork for unlocked::WorkQueue<u64> {
    const NAME: &'static str = "unlocked WorkQueue";
    const ROLE: Role = Role::Subject;
    type Ticket = unlocked::Claim<u64>;
    fn create() -> Self {
        unlocked::WorkQueue::new()
    }
    fn add(&self, v: u64) {
        unlocked::WorkQueue::add(self, v).expect("unbounded");
    }
    fn claim(&self) -> Option<(Self::Ticket, u64)> {
        unlocked::WorkQueue::claim(self).map(|c| {
            let v = *c.data();
            (c, v)
        })
    }
    fn finish(&self, c: Self::Ticket) {
        self.complete(&c).expect("the claim is fresh");
        self.remove(c.id()).expect("completed, not yet removed");
    }
    fn len(&self) -> usize {
        unlocked::WorkQueue::len(self)
    }
}

/// The seeds' item: id, data, status.
#[derive(Clone, Debug)]
struct PortItem {
    data: u64,
    processing: bool,
    completed: bool,
}

/// The seeds' `MemoryQueue` fields behind their one lock.
#[derive(Debug, Default)]
struct PortInner {
    items: HashMap<u64, PortItem>,
    order: VecDeque<u64>,
    next_id: u64,
}

/// The seeds' `MemoryQueue` in Rust: `add`, `get_next` (taking the next
/// pending item and marking it processing under the same lock, which the
/// seeds left to the caller and so raced), `update` and `remove`, each one
/// lock acquisition on a `Mutex<HashMap + VecDeque>`.
#[derive(Debug, Default)]
pub struct SeedsPort(Mutex<PortInner>);

impl SeedsPort {
    fn lock(&self) -> std::sync::MutexGuard<'_, PortInner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl BenchWork for SeedsPort {
    const NAME: &'static str = "Mutex<HashMap+VecDeque>";
    const ROLE: Role = Role::LockBaseline;
    type Ticket = u64;
    fn create() -> Self {
        Self::default()
    }
    fn add(&self, v: u64) {
        let mut g = self.lock();
        let id = g.next_id;
        g.next_id += 1;
        g.items.insert(
            id,
            PortItem {
                data: v,
                processing: false,
                completed: false,
            },
        );
        g.order.push_back(id);
    }
    fn claim(&self) -> Option<(u64, u64)> {
        let mut g = self.lock();
        while let Some(id) = g.order.pop_front() {
            if let Some(item) = g.items.get_mut(&id) {
                if !item.processing && !item.completed {
                    item.processing = true;
                    return Some((id, item.data));
                }
            }
        }
        None
    }
    fn finish(&self, id: u64) {
        {
            // `update(item)` after `item.mark_completed()`.
            let mut g = self.lock();
            let item = g.items.get_mut(&id).expect("claimed");
            item.processing = false;
            item.completed = true;
        }
        // `remove(item.id)`.
        self.lock().items.remove(&id).expect("stored");
    }
    fn len(&self) -> usize {
        self.lock().items.len()
    }
}

#[path = "../../tests/common/work_model.rs"]
mod work_model;

/// The seeds' design with `WorkQueue`'s semantics (the tests' reference).
pub struct SameSemantics(work_model::RefWorkQueue<u64, unlocked::SystemClock>);

impl BenchWork for SameSemantics {
    const NAME: &'static str = "Mutex reference, same semantics";
    const ROLE: Role = Role::LockBaseline;
    type Ticket = work_model::RefClaim;
    fn create() -> Self {
        let lease = unlocked::work::DEFAULT_LEASE.as_nanos() as u64;
        Self(work_model::RefWorkQueue::new(
            None,
            3,
            lease,
            unlocked::SystemClock::new(),
        ))
    }
    fn add(&self, v: u64) {
        self.0.add(v).expect("unbounded");
    }
    fn claim(&self) -> Option<(Self::Ticket, u64)> {
        self.0.claim()
    }
    fn finish(&self, c: Self::Ticket) {
        self.0.complete(c).expect("the claim is fresh");
        self.0.remove(c.id).expect("completed, not yet removed");
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// An unbounded `crossbeam-channel`: jobs handed over, nothing tracked.
#[derive(Debug)]
pub struct Channel(
    crossbeam_channel::Sender<u64>,
    crossbeam_channel::Receiver<u64>,
);

impl BenchWork for Channel {
    const NAME: &'static str = "crossbeam-channel";
    const ROLE: Role = Role::Peer;
    type Ticket = ();
    fn create() -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Channel(tx, rx)
    }
    fn add(&self, v: u64) {
        self.0.send(v).expect("the receiver lives in self");
    }
    fn claim(&self) -> Option<((), u64)> {
        self.1.try_recv().ok().map(|v| ((), v))
    }
    fn finish(&self, _: ()) {}
    fn len(&self) -> usize {
        self.1.len()
    }
}

/// Drives `W` workers over one queue, run after run.
pub trait Runner {
    /// Runs `cycles` cycles on every worker; returns the wall time.
    fn run(&mut self, cycles: u64) -> Duration;
}

/// State the workers share.
struct Shared<Q> {
    q: Q,
    cycles: AtomicU64,
    stop: AtomicBool,
    start: Barrier,
    end: Barrier,
    claimed: AtomicU64,
    sum: AtomicU64,
}

/// Persistent worker threads over one `Q`.
struct Workers<Q: BenchWork> {
    shared: Arc<Shared<Q>>,
    threads: Vec<JoinHandle<()>>,
    added: u64,
    added_sum: u64,
    workers: usize,
}

/// One worker's job values: `worker << 40 | run-local sequence`, summed.
fn job_value(worker: usize, i: u64) -> u64 {
    (worker as u64) << 40 | i
}

fn worker_loop<Q: BenchWork>(shared: &Shared<Q>, worker: usize) {
    loop {
        shared.start.wait();
        if shared.stop.load(Relaxed) {
            return;
        }
        let cycles = shared.cycles.load(Relaxed);
        let (mut claimed, mut sum) = (0u64, 0u64);
        for i in 0..cycles {
            shared.q.add(job_value(worker, i));
            let mut spins = 0;
            let (ticket, v) = loop {
                if let Some(got) = shared.q.claim() {
                    break got;
                }
                spins += 1;
                if spins < SPIN_LIMIT {
                    std::hint::spin_loop();
                } else {
                    thread::yield_now();
                }
            };
            shared.q.finish(ticket);
            claimed += 1;
            sum = sum.wrapping_add(v);
        }
        shared.claimed.fetch_add(claimed, Relaxed);
        shared.sum.fetch_add(sum, Relaxed);
        shared.end.wait();
    }
}

impl<Q: BenchWork> Workers<Q> {
    fn start(workers: usize) -> Self {
        let shared = Arc::new(Shared {
            q: Q::create(),
            cycles: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            start: Barrier::new(workers + 1),
            end: Barrier::new(workers + 1),
            claimed: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        });
        let mut added_sum = 0u64;
        for i in 0..BACKLOG {
            let v = job_value(1 << 20, i);
            shared.q.add(v);
            added_sum = added_sum.wrapping_add(v);
        }
        let threads = (0..workers)
            .map(|w| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || worker_loop(&shared, w))
            })
            .collect();
        Workers {
            shared,
            threads,
            added: BACKLOG,
            added_sum,
            workers,
        }
    }
}

impl<Q: BenchWork> Runner for Workers<Q> {
    fn run(&mut self, cycles: u64) -> Duration {
        self.shared.cycles.store(cycles, Relaxed);
        // The clock starts before the release: if this thread were
        // descheduled right after it, a clock started later would miss the
        // work done meanwhile.
        let t0 = Instant::now();
        self.shared.start.wait();
        self.shared.end.wait();
        let elapsed = t0.elapsed();
        self.added += cycles * self.workers as u64;
        for w in 0..self.workers {
            for i in 0..cycles {
                self.added_sum = self.added_sum.wrapping_add(job_value(w, i));
            }
        }
        // Verify: the backlog is intact (a lost job, or one claimed twice
        // and so removed twice, changes the count). `claimed` cannot check
        // anything here: each worker counts exactly `cycles` claims by
        // construction. The values are checked on drop.
        assert_eq!(
            self.shared.q.len() as u64,
            BACKLOG,
            "{}: jobs lost or duplicated (backlog)",
            Q::NAME
        );
        elapsed
    }
}

impl<Q: BenchWork> Drop for Workers<Q> {
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
        self.shared.start.wait();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if thread::panicking() {
            return;
        }
        // Verify the values: what is left plus what was claimed is exactly
        // what was added.
        let mut sum = self.shared.sum.load(Relaxed);
        while let Some((ticket, v)) = self.shared.q.claim() {
            self.shared.q.finish(ticket);
            sum = sum.wrapping_add(v);
        }
        assert_eq!(
            sum,
            self.added_sum,
            "{}: job values lost or duplicated",
            Q::NAME
        );
        assert_eq!(self.shared.q.len(), 0, "{}: drained", Q::NAME);
    }
}

/// An implementation in the comparison.
#[derive(Clone, Copy, Debug)]
pub struct WorkSpec {
    /// Display name.
    pub name: &'static str,
    /// Place in the comparison.
    pub role: Role,
    /// Spawns `W` workers over a new queue with the backlog in it.
    pub start: fn(usize) -> Box<dyn Runner>,
}

fn spec<Q: BenchWork>() -> WorkSpec {
    WorkSpec {
        name: Q::NAME,
        role: Q::ROLE,
        start: |w| Box::new(Workers::<Q>::start(w)),
    }
}

/// Every implementation: the subject first, then the baselines and the peer.
pub fn work_specs() -> Vec<WorkSpec> {
    vec![
        spec::<unlocked::WorkQueue<u64>>(),
        spec::<SeedsPort>(),
        spec::<SameSemantics>(),
        spec::<Channel>(),
    ]
}

/// Available cores.
pub fn cpus() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// `1-worker`, `2-workers`, or `4-workers-oversubscribed`.
pub fn workers_label(workers: usize) -> String {
    let noun = if workers == 1 { "worker" } else { "workers" };
    let tail = if workers > cpus() {
        "-oversubscribed"
    } else {
        ""
    };
    format!("{workers}-{noun}{tail}")
}
