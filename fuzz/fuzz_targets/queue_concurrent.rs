//! Two or three threads run op lists from the input on one shared queue
//! (bounded or unbounded, chosen by the input); afterwards the recorded
//! results must be explainable by some FIFO history.
//!
//! Checked, per run:
//! - a value handed back in a `PushError` is the one pushed; `force_push`
//!   never reports `Full`; `UnboundedQueue::push` never reports `Full`;
//! - closing is sticky as seen by each thread: once a thread closed the
//!   queue, saw `is_closed()`, or had a push refused as `Closed`, its later
//!   pushes are refused as `Closed` and `is_closed()` stays `true`;
//! - `len() <= capacity` for a bounded queue at all times;
//! - every accepted value leaves the queue (pop, displacement by
//!   `force_push`, or the final drain) exactly once, and nothing else does;
//! - per-producer FIFO as observed by each consumer: the values one thread
//!   removes that came from one producer come out in that producer's push
//!   order; and a value still queued at the end is younger than every value
//!   of its producer removed during the run;
//! - at quiescence, `len` is exact (and `validate` passes for a bounded
//!   queue in fuzzing builds); no value leaks or is dropped twice.
//!
//! The schedule is not reproducible, so a crash may need several runs of
//! its input to show again, but every reported violation is a real bug.

#![no_main]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use unlocked::{BoundedQueue, PushError, UnboundedQueue};
use unlocked_fuzz::{collect_garbage, Tracked, Tracker};

/// Most ops a thread runs from its list (the list is repeated).
const MAX_OPS: usize = 64;

#[derive(Arbitrary, Debug)]
enum Kind {
    /// Capacity `capacity % 16 + 1`: small, so pushes meet a full queue.
    Bounded { capacity: u8 },
    /// Segment capacity `segment_capacity % 8 + 1`.
    Unbounded { segment_capacity: u8 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    kind: Kind,
    /// Pop everything at the end, or drop the queue with what is left.
    drain_at_end: bool,
    /// Each thread runs its list `repeat % 8 + 1` times.
    repeat: u8,
    first: Vec<Op>,
    second: Vec<Op>,
    third: Option<Vec<Op>>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Push,
    /// `push` on an unbounded queue.
    ForcePush,
    Pop,
    Len,
    IsEmpty,
    IsClosed,
    Close,
    /// `n % 32 + 1` pushes.
    PushMany(u8),
    /// `n % 32 + 1` pops.
    PopMany(u8),
    Yield,
    /// Busy-waits `n` spin-loop hints, to shift the threads against each other.
    Spin(u8),
}

impl Op {
    fn pushes(self) -> usize {
        match self {
            Op::Push | Op::ForcePush => 1,
            Op::PushMany(n) => usize::from(n % 32) + 1,
            _ => 0,
        }
    }
}

// One per run; boxing would only add an indirection.
#[allow(clippy::large_enum_variant)]
enum Queue<T> {
    Bounded(BoundedQueue<T>),
    Unbounded(UnboundedQueue<T>),
}

impl<T> Queue<T> {
    fn push(&self, value: T) -> Result<(), PushError<T>> {
        match self {
            Queue::Bounded(q) => q.push(value),
            Queue::Unbounded(q) => q.push(value),
        }
    }

    fn force_push(&self, value: T) -> Result<Option<T>, PushError<T>> {
        match self {
            Queue::Bounded(q) => q.force_push(value),
            Queue::Unbounded(q) => q.push(value).map(|()| None),
        }
    }

    fn pop(&self) -> Option<T> {
        match self {
            Queue::Bounded(q) => q.pop(),
            Queue::Unbounded(q) => q.pop(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Queue::Bounded(q) => q.len(),
            Queue::Unbounded(q) => q.len(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Queue::Bounded(q) => q.is_empty(),
            Queue::Unbounded(q) => q.is_empty(),
        }
    }

    fn close(&self) {
        match self {
            Queue::Bounded(q) => q.close(),
            Queue::Unbounded(q) => q.close(),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            Queue::Bounded(q) => q.is_closed(),
            Queue::Unbounded(q) => q.is_closed(),
        }
    }

    fn capacity(&self) -> Option<usize> {
        match self {
            Queue::Bounded(q) => Some(q.capacity()),
            Queue::Unbounded(_) => None,
        }
    }

    fn validate(&self) {
        #[cfg(fuzzing)]
        if let Queue::Bounded(q) = self {
            q.validate();
        }
    }
}

/// The payload a serial carries, to catch a value whose bytes were mixed up.
fn payload(serial: u32) -> u32 {
    serial.wrapping_mul(0x9e37_79b9) ^ 0x5555_5555
}

/// What one thread did.
#[derive(Default)]
struct Log {
    /// Serials whose push (or force_push) was accepted, in push order.
    accepted: Vec<u32>,
    /// Serials this thread took out (pop or displaced), in order.
    removed: Vec<u32>,
    /// Whether this thread called `close`.
    closed: bool,
}

struct Thread<'q, 't> {
    id: usize,
    queue: &'q Queue<Tracked<'t>>,
    tracker: &'t Tracker,
    next_serial: u32,
    /// This thread knows the queue is closed.
    seen_closed: bool,
    log: Log,
}

impl<'t> Thread<'_, 't> {
    fn take(&mut self, value: Tracked<'t>, what: &str) {
        assert_eq!(
            value.value,
            payload(value.serial),
            "thread {}: {what} returned {value:?} with a corrupted payload",
            self.id
        );
        self.log.removed.push(value.serial);
    }

    fn handed_back(&mut self, back: Tracked<'t>, serial: u32, what: &str) {
        assert_eq!(
            (back.serial, back.value),
            (serial, payload(serial)),
            "thread {}: {what} handed back {back:?} instead of #{serial}",
            self.id
        );
    }

    fn push(&mut self, force: bool) {
        let serial = self.next_serial;
        self.next_serial += 1;
        let value = self.tracker.make(serial, payload(serial));
        let id = self.id;
        let was_closed = self.seen_closed;
        let bounded = self.queue.capacity().is_some();
        if force {
            match self.queue.force_push(value) {
                Ok(displaced) => {
                    assert!(
                        !was_closed,
                        "thread {id}: force_push(#{serial}) accepted after this thread saw the \
                         queue closed"
                    );
                    self.log.accepted.push(serial);
                    if let Some(d) = displaced {
                        self.take(d, "force_push (displaced)");
                    }
                }
                Err(PushError::Closed(back)) => {
                    self.handed_back(back, serial, "force_push");
                    self.seen_closed = true;
                }
                Err(PushError::Full(back)) => {
                    panic!("thread {id}: force_push({back:?}) returned Full")
                }
            }
        } else {
            match self.queue.push(value) {
                Ok(()) => {
                    assert!(
                        !was_closed,
                        "thread {id}: push(#{serial}) accepted after this thread saw the queue \
                         closed"
                    );
                    self.log.accepted.push(serial);
                }
                Err(PushError::Closed(back)) => {
                    self.handed_back(back, serial, "push");
                    self.seen_closed = true;
                }
                Err(PushError::Full(back)) => {
                    assert!(
                        bounded,
                        "thread {id}: unbounded push({back:?}) returned Full"
                    );
                    assert!(
                        !was_closed,
                        "thread {id}: push({back:?}) returned Full, not Closed, after this \
                         thread saw the queue closed"
                    );
                    self.handed_back(back, serial, "push (Full)");
                }
            }
        }
    }

    fn pop(&mut self) {
        if let Some(value) = self.queue.pop() {
            self.take(value, "pop");
        }
    }

    fn run(&mut self, ops: &[Op], repeat: usize) {
        for _ in 0..repeat {
            for &op in ops {
                match op {
                    Op::Push => self.push(false),
                    Op::ForcePush => self.push(true),
                    Op::PushMany(n) => {
                        for _ in 0..=n % 32 {
                            self.push(false);
                        }
                    }
                    Op::Pop => self.pop(),
                    Op::PopMany(n) => {
                        for _ in 0..=n % 32 {
                            self.pop();
                        }
                    }
                    Op::Len => {
                        let len = self.queue.len();
                        if let Some(capacity) = self.queue.capacity() {
                            assert!(
                                len <= capacity,
                                "thread {}: len {len} above capacity {capacity}",
                                self.id
                            );
                        }
                    }
                    Op::IsEmpty => {
                        let _ = self.queue.is_empty();
                    }
                    Op::IsClosed => {
                        let closed = self.queue.is_closed();
                        assert!(
                            closed || !self.seen_closed,
                            "thread {}: is_closed() is false after this thread saw it closed",
                            self.id
                        );
                        self.seen_closed |= closed;
                    }
                    Op::Close => {
                        self.queue.close();
                        self.seen_closed = true;
                        self.log.closed = true;
                    }
                    Op::Yield => std::thread::yield_now(),
                    Op::Spin(n) => {
                        for _ in 0..n {
                            std::hint::spin_loop();
                        }
                    }
                }
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let repeat = usize::from(input.repeat % 8) + 1;
    let mut lists: Vec<&[Op]> = vec![&input.first, &input.second];
    if let Some(third) = &input.third {
        lists.push(third);
    }
    let lists: Vec<&[Op]> = lists.iter().map(|l| &l[..l.len().min(MAX_OPS)]).collect();
    // Serials: thread `t` owns `bases[t]..bases[t + 1]`, in push order.
    let mut bases = vec![0usize];
    for list in &lists {
        let pushes: usize = list.iter().map(|op| op.pushes()).sum::<usize>() * repeat;
        bases.push(bases.last().unwrap() + pushes);
    }
    let producer_of = |serial: u32| bases.partition_point(|&b| b <= serial as usize) - 1;

    // Declared before the queue, so it outlives it.
    let tracker = Tracker::new(*bases.last().unwrap());
    let queue = match input.kind {
        Kind::Bounded { capacity } => {
            Queue::Bounded(BoundedQueue::new(usize::from(capacity % 16) + 1))
        }
        Kind::Unbounded { segment_capacity } => Queue::Unbounded(
            UnboundedQueue::with_segment_capacity(usize::from(segment_capacity % 8) + 1),
        ),
    };

    let started = AtomicUsize::new(0);
    let threads = lists.len();
    let logs: Vec<Log> = std::thread::scope(|s| {
        let handles: Vec<_> = lists
            .iter()
            .enumerate()
            .map(|(id, &ops)| {
                let (queue, tracker, started) = (&queue, &tracker, &started);
                let base = bases[id] as u32;
                s.spawn(move || {
                    let mut thread = Thread {
                        id,
                        queue,
                        tracker,
                        next_serial: base,
                        seen_closed: false,
                        log: Log::default(),
                    };
                    // Start together, so the op lists overlap in time.
                    started.fetch_add(1, SeqCst);
                    while started.load(SeqCst) < threads {
                        std::thread::yield_now();
                    }
                    thread.run(ops, repeat);
                    thread.log
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // Quiescent now.
    let closed = logs.iter().any(|log| log.closed);
    assert_eq!(queue.is_closed(), closed, "is_closed after the run");
    queue.validate();
    let accepted: usize = logs.iter().map(|log| log.accepted.len()).sum();
    let removed: usize = logs.iter().map(|log| log.removed.len()).sum();
    assert!(
        removed <= accepted,
        "{removed} values came out but only {accepted} went in"
    );
    assert_eq!(
        queue.len(),
        accepted - removed,
        "len at quiescence: {accepted} accepted, {removed} removed"
    );
    if let Some(capacity) = queue.capacity() {
        assert!(queue.len() <= capacity);
    }

    // The values still queued.
    let remaining: Vec<u32> = if input.drain_at_end {
        let mut drained = Vec::new();
        while let Some(value) = queue.pop() {
            assert_eq!(
                value.value,
                payload(value.serial),
                "drain: corrupted {value:?}"
            );
            drained.push(value.serial);
        }
        assert_eq!(queue.len(), 0, "len after drain");
        assert!(queue.is_empty(), "is_empty after drain");
        tracker.assert_none_alive();
        drained
    } else {
        let alive = tracker.alive();
        drop(queue);
        tracker.assert_none_alive();
        alive
    };

    collect_garbage(*bases.last().unwrap());

    // Every accepted value left exactly once; nothing else left.
    let mut times: HashMap<u32, i32> = HashMap::new();
    for log in &logs {
        for &serial in &log.accepted {
            *times.entry(serial).or_default() += 1;
        }
    }
    let removed_lists = logs
        .iter()
        .map(|log| &log.removed)
        .chain(std::iter::once(&remaining));
    for list in removed_lists.clone() {
        for &serial in list {
            let count = times.entry(serial).or_default();
            *count -= 1;
            assert!(
                *count >= 0,
                "#{serial} (from thread {}) came out more often than it was accepted",
                producer_of(serial)
            );
        }
    }
    let mut lost: Vec<u32> = times
        .iter()
        .filter(|(_, &count)| count != 0)
        .map(|(&serial, _)| serial)
        .collect();
    lost.sort_unstable();
    assert!(lost.is_empty(), "accepted but never came out: {lost:?}");

    // Per-producer FIFO, as each consumer saw it.
    for (consumer, list) in logs.iter().map(|log| &log.removed).enumerate() {
        let mut last: HashMap<usize, u32> = HashMap::new();
        for &serial in list {
            let producer = producer_of(serial);
            if let Some(&previous) = last.get(&producer) {
                assert!(
                    previous < serial,
                    "thread {consumer} took #{serial} after #{previous}, both from thread \
                     {producer}, which pushed them in the other order"
                );
            }
            last.insert(producer, serial);
        }
    }
    // A value still queued at the end must be younger than every value of
    // its producer that was removed during the run.
    let mut newest_removed: HashMap<usize, u32> = HashMap::new();
    for list in logs.iter().map(|log| &log.removed) {
        for &serial in list {
            let entry = newest_removed.entry(producer_of(serial)).or_insert(serial);
            *entry = (*entry).max(serial);
        }
    }
    for &serial in &remaining {
        if let Some(&newest) = newest_removed.get(&producer_of(serial)) {
            assert!(
                serial > newest,
                "#{serial} was still queued at the end, but #{newest}, pushed after it by \
                 the same thread {}, was removed during the run",
                producer_of(serial)
            );
        }
    }
    if input.drain_at_end {
        // The drain itself is one more consumer.
        let mut last: HashMap<usize, u32> = HashMap::new();
        for &serial in &remaining {
            let producer = producer_of(serial);
            if let Some(previous) = last.insert(producer, serial) {
                assert!(
                    previous < serial,
                    "drain: #{serial} came out after #{previous}"
                );
            }
        }
    }
});
