//! Shared contention harness for `benches/queue.rs` and
//! `examples/contention_report.rs`.
//!
//! - [`BenchQueue`]: the queue under test, over `u64` values, implemented for
//!   `unlocked`'s queues, their peers (crossbeam-queue, concurrent-queue) and
//!   the lock baseline `Mutex<VecDeque<u64>>` (what the seeds' Python
//!   `queue.Queue` is: a lock around a deque).
//! - [`PairRunner`]: `P` producer and `P` consumer threads ("pairs"), spawned
//!   once and driven run after run with [`Barrier`]s so that thread spawn
//!   stays outside the timed region.
//! - Every run is verified (count, sum, sum of squares and per-producer FIFO
//!   order as seen by each consumer): a benchmark must not silently measure a
//!   broken queue.
//!
//! On a full (or empty) queue a thread spins with [`std::hint::spin_loop`]
//! for a few attempts, then yields with [`thread::yield_now`]; the same
//! backoff applies to every implementation, which matters when the threads
//! outnumber the cores.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Low bits of a value that hold the producer's sequence number.
const SEQ_BITS: u32 = 40;

/// One sampled operation every this many, when a run samples latencies.
pub const SAMPLE_EVERY: u64 = 64;

/// Failed attempts spent spinning before a thread starts yielding.
pub const SPIN_LIMIT: u32 = 64;

/// A thread stuck this long on a full or empty queue declares the run broken.
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// Whether a queue has a capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Fixed capacity: `push` fails when full.
    Bounded,
    /// Grows without limit: `push` never fails.
    Unbounded,
}

/// What an implementation is in the comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `unlocked`'s own queue: the subject of every ratio.
    Subject,
    /// A lock-free peer crate.
    Peer,
    /// The lock-based design the crate replaces.
    LockBaseline,
}

/// A queue under test, over `u64` values.
pub trait BenchQueue: Send + Sync + 'static {
    /// Display name, shared by the bounded and unbounded variants.
    const NAME: &'static str;
    /// Bounded or unbounded.
    const KIND: Kind;
    /// Place in the comparison.
    const ROLE: Role;
    /// A new empty queue; unbounded queues ignore `capacity`.
    fn create(capacity: usize) -> Self;
    /// Pushes `v`, handing it back when the queue is full.
    fn push(&self, v: u64) -> Result<(), u64>;
    /// Pops the oldest value, if any.
    fn pop(&self) -> Option<u64>;
}

impl BenchQueue for unlocked::BoundedQueue<u64> {
    const NAME: &'static str = "unlocked";
    const KIND: Kind = Kind::Bounded;
    const ROLE: Role = Role::Subject;
    fn create(capacity: usize) -> Self {
        Self::new(capacity)
    }
    fn push(&self, v: u64) -> Result<(), u64> {
        unlocked::BoundedQueue::push(self, v).map_err(unlocked::PushError::into_inner)
    }
    fn pop(&self) -> Option<u64> {
        unlocked::BoundedQueue::pop(self)
    }
}

impl BenchQueue for unlocked::UnboundedQueue<u64> {
    const NAME: &'static str = "unlocked";
    const KIND: Kind = Kind::Unbounded;
    const ROLE: Role = Role::Subject;
    fn create(_capacity: usize) -> Self {
        Self::new()
    }
    fn push(&self, v: u64) -> Result<(), u64> {
        unlocked::UnboundedQueue::push(self, v).map_err(unlocked::PushError::into_inner)
    }
    fn pop(&self) -> Option<u64> {
        unlocked::UnboundedQueue::pop(self)
    }
}

impl BenchQueue for crossbeam_queue::ArrayQueue<u64> {
    const NAME: &'static str = "ArrayQueue";
    const KIND: Kind = Kind::Bounded;
    const ROLE: Role = Role::Peer;
    fn create(capacity: usize) -> Self {
        Self::new(capacity)
    }
    fn push(&self, v: u64) -> Result<(), u64> {
        crossbeam_queue::ArrayQueue::push(self, v)
    }
    fn pop(&self) -> Option<u64> {
        crossbeam_queue::ArrayQueue::pop(self)
    }
}

impl BenchQueue for crossbeam_queue::SegQueue<u64> {
    const NAME: &'static str = "SegQueue";
    const KIND: Kind = Kind::Unbounded;
    const ROLE: Role = Role::Peer;
    fn create(_capacity: usize) -> Self {
        Self::new()
    }
    fn push(&self, v: u64) -> Result<(), u64> {
        crossbeam_queue::SegQueue::push(self, v);
        Ok(())
    }
    fn pop(&self) -> Option<u64> {
        crossbeam_queue::SegQueue::pop(self)
    }
}

/// `concurrent_queue::ConcurrentQueue`, bounded.
#[derive(Debug)]
pub struct CqBounded(concurrent_queue::ConcurrentQueue<u64>);

/// `concurrent_queue::ConcurrentQueue`, unbounded.
#[derive(Debug)]
pub struct CqUnbounded(concurrent_queue::ConcurrentQueue<u64>);

/// Pushes into a `ConcurrentQueue`, handing the value back on failure.
fn cq_push(q: &concurrent_queue::ConcurrentQueue<u64>, v: u64) -> Result<(), u64> {
    q.push(v).map_err(concurrent_queue::PushError::into_inner)
}

impl BenchQueue for CqBounded {
    const NAME: &'static str = "ConcurrentQueue";
    const KIND: Kind = Kind::Bounded;
    const ROLE: Role = Role::Peer;
    fn create(capacity: usize) -> Self {
        Self(concurrent_queue::ConcurrentQueue::bounded(capacity))
    }
    fn push(&self, v: u64) -> Result<(), u64> {
        cq_push(&self.0, v)
    }
    fn pop(&self) -> Option<u64> {
        self.0.pop().ok()
    }
}

impl BenchQueue for CqUnbounded {
    const NAME: &'static str = "ConcurrentQueue";
    const KIND: Kind = Kind::Unbounded;
    const ROLE: Role = Role::Peer;
    fn create(_capacity: usize) -> Self {
        Self(concurrent_queue::ConcurrentQueue::unbounded())
    }
    fn push(&self, v: u64) -> Result<(), u64> {
        cq_push(&self.0, v)
    }
    fn pop(&self) -> Option<u64> {
        self.0.pop().ok()
    }
}

/// The lock baseline, bounded: a `Mutex<VecDeque<u64>>` with a capacity.
#[derive(Debug)]
pub struct MutexBounded {
    /// The locked deque.
    deque: Mutex<VecDeque<u64>>,
    /// Values the deque may hold.
    capacity: usize,
}

/// The lock baseline, unbounded: a plain `Mutex<VecDeque<u64>>`.
#[derive(Debug)]
pub struct MutexUnbounded(Mutex<VecDeque<u64>>);

/// Locks `m`, ignoring poisoning (a panic is reported by the harness).
fn lock(m: &Mutex<VecDeque<u64>>) -> std::sync::MutexGuard<'_, VecDeque<u64>> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BenchQueue for MutexBounded {
    const NAME: &'static str = "Mutex<VecDeque>";
    const KIND: Kind = Kind::Bounded;
    const ROLE: Role = Role::LockBaseline;
    fn create(capacity: usize) -> Self {
        let deque = Mutex::new(VecDeque::with_capacity(capacity));
        Self { deque, capacity }
    }
    fn push(&self, v: u64) -> Result<(), u64> {
        let mut deque = lock(&self.deque);
        if deque.len() >= self.capacity {
            return Err(v);
        }
        deque.push_back(v);
        Ok(())
    }
    fn pop(&self) -> Option<u64> {
        lock(&self.deque).pop_front()
    }
}

impl BenchQueue for MutexUnbounded {
    const NAME: &'static str = "Mutex<VecDeque>";
    const KIND: Kind = Kind::Unbounded;
    const ROLE: Role = Role::LockBaseline;
    fn create(_capacity: usize) -> Self {
        Self(Mutex::new(VecDeque::new()))
    }
    fn push(&self, v: u64) -> Result<(), u64> {
        lock(&self.0).push_back(v);
        Ok(())
    }
    fn pop(&self) -> Option<u64> {
        lock(&self.0).pop_front()
    }
}

/// One implementation in the sweep: its labels and how to start a runner.
#[derive(Clone, Copy, Debug)]
pub struct QueueSpec {
    /// Display name.
    pub name: &'static str,
    /// Bounded or unbounded.
    pub kind: Kind,
    /// Place in the comparison.
    pub role: Role,
    /// Starts `pairs` producer/consumer pairs on a new queue of `capacity`.
    pub start: fn(capacity: usize, pairs: usize) -> Box<dyn Runner>,
}

/// Starts a [`PairRunner`] on a new `Q`, boxed.
fn start_runner<Q: BenchQueue>(capacity: usize, pairs: usize) -> Box<dyn Runner> {
    Box::new(PairRunner::new(Q::create(capacity), pairs))
}

/// The [`QueueSpec`] of `Q`.
fn spec<Q: BenchQueue>() -> QueueSpec {
    QueueSpec {
        name: Q::NAME,
        kind: Q::KIND,
        role: Q::ROLE,
        start: start_runner::<Q>,
    }
}

/// Every implementation of `kind`, the subject (`unlocked`) first and the
/// lock baseline last.
pub fn queues(kind: Kind) -> Vec<QueueSpec> {
    match kind {
        Kind::Bounded => vec![
            spec::<unlocked::BoundedQueue<u64>>(),
            spec::<crossbeam_queue::ArrayQueue<u64>>(),
            spec::<CqBounded>(),
            spec::<MutexBounded>(),
        ],
        Kind::Unbounded => vec![
            spec::<unlocked::UnboundedQueue<u64>>(),
            spec::<crossbeam_queue::SegQueue<u64>>(),
            spec::<CqUnbounded>(),
            spec::<MutexUnbounded>(),
        ],
    }
}

/// A kind of queue and, for bounded ones, its capacity.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    /// Short label, e.g. `bounded-64`.
    pub name: &'static str,
    /// Bounded or unbounded.
    pub kind: Kind,
    /// Capacity of bounded queues (ignored by unbounded ones).
    pub capacity: usize,
}

/// The scenarios of the sweep: small and large bounded, and unbounded.
pub const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "bounded-64",
        kind: Kind::Bounded,
        capacity: 64,
    },
    Scenario {
        name: "bounded-65536",
        kind: Kind::Bounded,
        capacity: 65536,
    },
    Scenario {
        name: "unbounded",
        kind: Kind::Unbounded,
        capacity: 0,
    },
];

/// Hardware threads available to this process (1 if unknown).
pub fn cpus() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether `pairs` pairs (2 threads each) outnumber the available cores.
pub fn oversubscribed(pairs: usize) -> bool {
    pairs * 2 > cpus()
}

/// `1-pair`, `2-pairs`, or `4-pairs-oversubscribed` when the threads
/// outnumber the cores.
pub fn pairs_label(pairs: usize) -> String {
    let noun = if pairs == 1 { "pair" } else { "pairs" };
    let tail = if oversubscribed(pairs) {
        "-oversubscribed"
    } else {
        ""
    };
    format!("{pairs}-{noun}{tail}")
}

/// What one run does.
#[derive(Clone, Copy, Debug)]
pub struct Job {
    /// Values each producer pushes (and each consumer pops).
    pub per_producer: u64,
    /// Whether to time one operation in every [`SAMPLE_EVERY`].
    pub sample: bool,
}

/// What one run measured.
#[derive(Debug, Default)]
pub struct RunResult {
    /// From the first worker leaving the start barrier to the last consumer
    /// holding its share.
    pub elapsed: Duration,
    /// Values transferred (pushed and popped).
    pub values: u64,
    /// Sampled push latencies in nanoseconds (empty unless sampling).
    pub push_ns: Vec<u64>,
    /// Sampled pop latencies in nanoseconds (empty unless sampling).
    pub pop_ns: Vec<u64>,
}

impl RunResult {
    /// Throughput in millions of values per second.
    pub fn mops(&self) -> f64 {
        self.values as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }
}

/// A set of started producer/consumer pairs, ready to run jobs.
pub trait Runner {
    /// Runs `job` once, verifies it, and reports what it measured.
    ///
    /// # Panics
    /// If the queue lost, duplicated, corrupted or reordered a value, or a
    /// thread stalled for a minute.
    fn run(&mut self, job: Job) -> RunResult;
}

/// What every consumer saw: enough to detect lost, duplicated or corrupted
/// values cheaply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    /// Values popped.
    count: u64,
    /// Sum of the values popped.
    sum: u128,
    /// Sum of their squares.
    squares: u128,
}

impl Tally {
    /// Adds `v`.
    fn add(&mut self, v: u64) {
        self.count += 1;
        self.sum += u128::from(v);
        self.squares += u128::from(v) * u128::from(v);
    }

    /// Merges `other` in.
    fn merge(&mut self, other: Tally) {
        self.count += other.count;
        self.sum += other.sum;
        self.squares += other.squares;
    }

    /// The tally of every value that `pairs` producers push for `job`.
    fn expected(pairs: u64, n: u64) -> Tally {
        let n128 = u128::from(n);
        let s1 = n128 * n128.saturating_sub(1) / 2;
        let s2 = n128.saturating_sub(1) * n128 * (2 * n128).saturating_sub(1) / 6;
        let mut t = Tally::default();
        for p in 0..pairs {
            let a = u128::from(p) << SEQ_BITS;
            t.count += n;
            t.sum += a * n128 + s1;
            t.squares += a * a * n128 + 2 * a * s1 + s2;
        }
        t
    }
}

/// The encoded value of producer `p`'s `seq`-th push.
fn encode(p: u64, seq: u64) -> u64 {
    (p << SEQ_BITS) | seq
}

/// Spins, then yields, on a full or empty queue; gives up after
/// [`STALL_LIMIT`].
#[derive(Debug, Default)]
struct Backoff {
    /// Failed attempts so far.
    step: u32,
    /// When to give up, set on the first yield.
    deadline: Option<Instant>,
}

impl Backoff {
    /// Waits a little before the next attempt; `false` once stalled.
    fn snooze(&mut self) -> bool {
        self.step = self.step.saturating_add(1);
        if self.step < SPIN_LIMIT {
            std::hint::spin_loop();
            return true;
        }
        thread::yield_now();
        if self.step % 1024 != 0 {
            return true;
        }
        let deadline = *self
            .deadline
            .get_or_insert_with(|| Instant::now() + STALL_LIMIT);
        Instant::now() < deadline
    }
}

/// State shared by the main thread and the workers of a [`PairRunner`].
#[derive(Debug)]
struct Shared<Q> {
    /// The queue under test.
    queue: Q,
    /// Number of pairs.
    pairs: u64,
    /// Releases the workers into a run (or tells them to stop).
    start: Barrier,
    /// Waits for every worker to finish a run.
    done: Barrier,
    /// Values per producer in the current run; 0 tells the workers to exit.
    per_producer: AtomicU64,
    /// Whether the current run samples latencies.
    sample: AtomicBool,
    /// Origin of the timestamps below.
    epoch: Instant,
    /// Earliest start of a worker in this run, in ns since `epoch`.
    first_start: AtomicU64,
    /// Latest finish of a consumer in this run, in ns since `epoch`.
    last_finish: AtomicU64,
    /// What the workers report after each run.
    reports: Mutex<Reports>,
}

/// Everything workers hand back after a run.
#[derive(Debug, Default)]
struct Reports {
    /// Merged consumer tallies.
    tally: Tally,
    /// Problems found: reordered or corrupt values, stalls.
    errors: Vec<String>,
    /// Sampled push latencies (ns).
    push_ns: Vec<u64>,
    /// Sampled pop latencies (ns).
    pop_ns: Vec<u64>,
}

impl<Q> Shared<Q> {
    /// Nanoseconds since `epoch`.
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Locks the reports.
    fn reports(&self) -> std::sync::MutexGuard<'_, Reports> {
        self.reports.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `P` producer and `P` consumer threads over one queue, started once and
/// driven run after run; see the [module docs](self).
#[derive(Debug)]
pub struct PairRunner<Q: BenchQueue> {
    /// State shared with the workers.
    shared: Arc<Shared<Q>>,
    /// The workers, joined on drop.
    workers: Vec<JoinHandle<()>>,
}

impl<Q: BenchQueue> PairRunner<Q> {
    /// Spawns `pairs` producers and `pairs` consumers on `queue`.
    pub fn new(queue: Q, pairs: usize) -> Self {
        assert!(pairs >= 1, "at least one pair");
        let shared = Arc::new(Shared {
            queue,
            pairs: pairs as u64,
            start: Barrier::new(2 * pairs + 1),
            done: Barrier::new(2 * pairs + 1),
            per_producer: AtomicU64::new(0),
            sample: AtomicBool::new(false),
            epoch: Instant::now(),
            first_start: AtomicU64::new(u64::MAX),
            last_finish: AtomicU64::new(0),
            reports: Mutex::new(Reports::default()),
        });
        let workers = (0..2 * pairs as u64)
            .map(|w| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || worker_loop(&shared, w))
            })
            .collect();
        Self { shared, workers }
    }

    /// Checks the workers' reports against what `job` should have produced.
    fn verify(&self, job: Job, reports: &Reports) {
        let name = Q::NAME;
        assert!(
            reports.errors.is_empty(),
            "{name}: broken run: {:?}",
            reports.errors
        );
        let want = Tally::expected(self.shared.pairs, job.per_producer);
        assert_eq!(
            reports.tally, want,
            "{name}: values lost, duplicated or corrupted"
        );
    }
}

impl<Q: BenchQueue> Runner for PairRunner<Q> {
    fn run(&mut self, job: Job) -> RunResult {
        assert!(job.per_producer >= 1 && job.per_producer < 1 << SEQ_BITS);
        let s = &*self.shared;
        *s.reports() = Reports::default();
        s.per_producer.store(job.per_producer, Relaxed);
        s.sample.store(job.sample, Relaxed);
        s.first_start.store(u64::MAX, Relaxed);
        s.last_finish.store(0, Relaxed);
        s.start.wait();
        s.done.wait();
        let reports = std::mem::take(&mut *s.reports());
        self.verify(job, &reports);
        let ns = s.last_finish.load(Relaxed) - s.first_start.load(Relaxed);
        RunResult {
            elapsed: Duration::from_nanos(ns),
            values: s.pairs * job.per_producer,
            push_ns: reports.push_ns,
            pop_ns: reports.pop_ns,
        }
    }
}

impl<Q: BenchQueue> Drop for PairRunner<Q> {
    fn drop(&mut self) {
        self.shared.per_producer.store(0, Relaxed);
        self.shared.start.wait();
        for w in self.workers.drain(..) {
            // A worker panic was already reported on its thread.
            let _ = w.join();
        }
    }
}

/// Body of worker `w`: producers are `0..pairs`, consumers the rest.
fn worker_loop<Q: BenchQueue>(s: &Shared<Q>, w: u64) {
    loop {
        s.start.wait();
        let n = s.per_producer.load(Relaxed);
        if n == 0 {
            return;
        }
        let sample = s.sample.load(Relaxed);
        s.first_start.fetch_min(s.now_ns(), Relaxed);
        if w < s.pairs {
            producer_run(s, w, n, sample);
        } else {
            consumer_run(s, n, sample);
        }
        s.done.wait();
    }
}

/// Producer `p` pushes its `n` values, then reports.
fn producer_run<Q: BenchQueue>(s: &Shared<Q>, p: u64, n: u64, sample: bool) {
    let mut lat = Vec::new();
    let ok = if sample {
        produce::<Q, true>(&s.queue, p, n, &mut lat)
    } else {
        produce::<Q, false>(&s.queue, p, n, &mut lat)
    };
    let mut r = s.reports();
    if !ok {
        r.errors
            .push(format!("producer {p} stalled on a full queue"));
    }
    r.push_ns.append(&mut lat);
}

/// Consumer pops its share of `n` values, stamps its finish, then reports.
fn consumer_run<Q: BenchQueue>(s: &Shared<Q>, n: u64, sample: bool) {
    let mut c = Consumer::new(s.pairs);
    let ok = if sample {
        c.consume::<Q, true>(&s.queue, n)
    } else {
        c.consume::<Q, false>(&s.queue, n)
    };
    s.last_finish.fetch_max(s.now_ns(), Relaxed);
    let mut r = s.reports();
    if !ok {
        r.errors.push("consumer stalled on an empty queue".into());
    }
    r.errors.append(&mut c.errors);
    r.tally.merge(c.tally);
    r.pop_ns.append(&mut c.lat);
}

/// Pushes producer `p`'s `n` values; `false` if it stalled.
fn produce<Q: BenchQueue, const SAMPLE: bool>(q: &Q, p: u64, n: u64, lat: &mut Vec<u64>) -> bool {
    for seq in 0..n {
        let v = encode(p, seq);
        let ok = if SAMPLE && seq % SAMPLE_EVERY == 0 {
            push_timed(q, v, lat)
        } else {
            push_spin(q, v)
        };
        if !ok {
            return false;
        }
    }
    true
}

/// Pushes `v`, retrying while full; `false` if it stalled.
fn push_spin<Q: BenchQueue>(q: &Q, mut v: u64) -> bool {
    let mut backoff = Backoff::default();
    loop {
        match q.push(v) {
            Ok(()) => return true,
            Err(back) => v = back,
        }
        if !backoff.snooze() {
            return false;
        }
    }
}

/// Like [`push_spin`], recording the duration of the successful attempt.
fn push_timed<Q: BenchQueue>(q: &Q, mut v: u64, lat: &mut Vec<u64>) -> bool {
    let mut backoff = Backoff::default();
    loop {
        let t = Instant::now();
        match q.push(v) {
            Ok(()) => {
                lat.push(t.elapsed().as_nanos() as u64);
                return true;
            }
            Err(back) => v = back,
        }
        if !backoff.snooze() {
            return false;
        }
    }
}

/// One consumer's state during a run.
#[derive(Debug)]
struct Consumer {
    /// What it popped.
    tally: Tally,
    /// Per producer: 1 + the last sequence number seen, 0 if none.
    next_seq: Vec<u64>,
    /// Problems found.
    errors: Vec<String>,
    /// Sampled pop latencies (ns).
    lat: Vec<u64>,
}

impl Consumer {
    /// A consumer of values from `pairs` producers.
    fn new(pairs: u64) -> Self {
        Self {
            tally: Tally::default(),
            next_seq: vec![0; pairs as usize],
            errors: Vec::new(),
            lat: Vec::new(),
        }
    }

    /// Pops `n` values; `false` if it stalled.
    fn consume<Q: BenchQueue, const SAMPLE: bool>(&mut self, q: &Q, n: u64) -> bool {
        for i in 0..n {
            let v = if SAMPLE && i % SAMPLE_EVERY == 0 {
                pop_timed(q, &mut self.lat)
            } else {
                pop_spin(q)
            };
            match v {
                Some(v) => self.check(v),
                None => return false,
            }
        }
        true
    }

    /// Tallies `v` and checks it is in order for its producer.
    fn check(&mut self, v: u64) {
        self.tally.add(v);
        let seq = v & ((1 << SEQ_BITS) - 1);
        match self.next_seq.get_mut((v >> SEQ_BITS) as usize) {
            Some(next) if seq >= *next => *next = seq + 1,
            Some(_) if self.errors.len() < 8 => {
                self.errors.push(format!("value {v:#x} out of FIFO order"))
            }
            None if self.errors.len() < 8 => self.errors.push(format!("corrupt value {v:#x}")),
            _ => {}
        }
    }
}

/// Pops a value, retrying while empty; `None` if it stalled.
fn pop_spin<Q: BenchQueue>(q: &Q) -> Option<u64> {
    let mut backoff = Backoff::default();
    loop {
        if let Some(v) = q.pop() {
            return Some(v);
        }
        if !backoff.snooze() {
            return None;
        }
    }
}

/// Like [`pop_spin`], recording the duration of the successful attempt.
fn pop_timed<Q: BenchQueue>(q: &Q, lat: &mut Vec<u64>) -> Option<u64> {
    let mut backoff = Backoff::default();
    loop {
        let t = Instant::now();
        if let Some(v) = q.pop() {
            lat.push(t.elapsed().as_nanos() as u64);
            return Some(v);
        }
        if !backoff.snooze() {
            return None;
        }
    }
}
