//! Differential fuzzing of `UnboundedQueue` against a `VecDeque` model.
//!
//! Segments are tiny (1 to 8 values, from the input) and `PushMany` /
//! `PopMany` move up to 63 values at once, so segments are linked, drained
//! and retired all the time. Values are `Tracked`: a leak, a double drop or
//! a value that comes out twice fails.

#![no_main]

use std::collections::VecDeque;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use unlocked::{PushError, UnboundedQueue};
use unlocked_fuzz::{collect_garbage, Tracked, Tracker};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Segment capacity is `segment_capacity % 8 + 1`.
    segment_capacity: u8,
    /// Pop everything at the end (and compare), or drop the queue full.
    drain_at_end: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Push(u16),
    Pop,
    Len,
    IsEmpty,
    Close,
    IsClosed,
    /// `n % 64` pushes.
    PushMany(u8),
    /// `n % 64` pops.
    PopMany(u8),
}

/// Checks that `got` is the model's value `(serial, value)` and drops it.
fn same(got: Option<Tracked<'_>>, expected: Option<(u32, u32)>, what: &str, step: usize) {
    let got_pair = got.as_ref().map(|t| (t.serial, t.value));
    assert_eq!(
        got_pair, expected,
        "step {step}: {what}: got {got:?}, model says (serial, value) = {expected:?}"
    );
}

struct Harness<'t> {
    tracker: &'t Tracker,
    queue: UnboundedQueue<Tracked<'t>>,
    model: VecDeque<(u32, u32)>,
    closed: bool,
    next_serial: u32,
}

impl Harness<'_> {
    fn push(&mut self, value: u32, step: usize) {
        let serial = self.next_serial;
        self.next_serial += 1;
        match (
            self.queue.push(self.tracker.make(serial, value)),
            self.closed,
        ) {
            (Ok(()), false) => self.model.push_back((serial, value)),
            (Err(PushError::Closed(back)), true) => same(
                Some(back),
                Some((serial, value)),
                "value handed back by push",
                step,
            ),
            (Ok(()), true) => panic!("step {step}: push(#{serial}) succeeded after close"),
            (Err(PushError::Closed(back)), false) => {
                panic!("step {step}: push({back:?}) returned Closed on an open queue")
            }
            (Err(PushError::Full(back)), _) => {
                panic!("step {step}: push({back:?}) returned Full on an unbounded queue")
            }
        }
    }

    fn pop(&mut self, step: usize) {
        same(self.queue.pop(), self.model.pop_front(), "pop", step);
    }
}

fuzz_target!(|input: Input| {
    let segment_capacity = usize::from(input.segment_capacity % 8) + 1;
    let pushes: usize = input
        .ops
        .iter()
        .map(|op| match op {
            Op::Push(_) => 1,
            Op::PushMany(n) => usize::from(*n % 64),
            _ => 0,
        })
        .sum();
    // Declared before the queue, so it outlives it.
    let tracker = Tracker::new(pushes);
    let mut h = Harness {
        tracker: &tracker,
        queue: UnboundedQueue::with_segment_capacity(segment_capacity),
        model: VecDeque::new(),
        closed: false,
        next_serial: 0,
    };

    for (step, &op) in input.ops.iter().enumerate() {
        match op {
            Op::Push(v) => h.push(u32::from(v), step),
            Op::PushMany(n) => {
                for _ in 0..n % 64 {
                    let value = h.next_serial.wrapping_mul(0x9e37_79b9);
                    h.push(value, step);
                }
            }
            Op::Pop => h.pop(step),
            Op::PopMany(n) => {
                for _ in 0..n % 64 {
                    h.pop(step);
                }
            }
            Op::Len => assert_eq!(h.queue.len(), h.model.len(), "step {step}: len"),
            Op::IsEmpty => assert_eq!(
                h.queue.is_empty(),
                h.model.is_empty(),
                "step {step}: is_empty"
            ),
            Op::Close => {
                h.queue.close();
                h.closed = true;
            }
            Op::IsClosed => assert_eq!(h.queue.is_closed(), h.closed, "step {step}: is_closed"),
        }
        // Check the observers after every operation as well, while `len`
        // (which walks the segments) is cheap.
        if h.model.len() <= 64 {
            assert_eq!(
                h.queue.len(),
                h.model.len(),
                "after step {step} ({op:?}): len"
            );
        }
        assert_eq!(
            h.queue.is_closed(),
            h.closed,
            "after step {step} ({op:?}): is_closed"
        );
    }

    if input.drain_at_end {
        while let Some(expected) = h.model.pop_front() {
            same(h.queue.pop(), Some(expected), "drain", input.ops.len());
        }
        same(h.queue.pop(), None, "pop after drain", input.ops.len());
        assert_eq!(h.queue.len(), 0);
        assert!(h.queue.is_empty());
        tracker.assert_none_alive();
    } else {
        let mut in_queue: Vec<u32> = h.model.iter().map(|&(serial, _)| serial).collect();
        in_queue.sort_unstable();
        assert_eq!(
            tracker.alive(),
            in_queue,
            "values alive vs values the model holds"
        );
    }
    drop(h);
    // Retired segments are freed by the epoch collector, but they hold no
    // values: everything must be dropped by now.
    tracker.assert_none_alive();
    collect_garbage(pushes);
});
