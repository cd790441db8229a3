//! Differential fuzzing of `BoundedQueue` against a `VecDeque` model.
//!
//! Every return value is compared with the model's, including the value
//! handed back inside `PushError` and the value `force_push` displaces. The
//! values are `Tracked`, so a leak, a double drop or a value that comes out
//! twice fails too. In fuzzing builds the queue's own `validate` runs after
//! every operation.

#![no_main]

use std::collections::VecDeque;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use unlocked::{BoundedQueue, PushError};
use unlocked_fuzz::{Tracked, Tracker};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Capacity is `capacity % 64 + 1`.
    capacity: u8,
    /// Pop everything at the end (and compare), or drop the queue full.
    drain_at_end: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Push(u16),
    ForcePush(u16),
    Pop,
    Len,
    IsEmpty,
    Close,
    IsClosed,
}

/// Checks that `got` is the model's value `(serial, value)` and drops it.
fn same(got: Option<Tracked<'_>>, expected: Option<(u32, u16)>, what: &str) {
    let got_pair = got.as_ref().map(|t| (t.serial, t.value));
    let expected_pair = expected.map(|(s, v)| (s, u32::from(v)));
    assert_eq!(
        got_pair, expected_pair,
        "{what}: got {got:?}, model says (serial, value) = {expected:?}"
    );
}

fn describe<T: std::fmt::Debug>(result: &Result<T, PushError<Tracked<'_>>>) -> String {
    match result {
        Ok(v) => format!("Ok({v:?})"),
        Err(PushError::Full(v)) => format!("Err(Full({v:?}))"),
        Err(PushError::Closed(v)) => format!("Err(Closed({v:?}))"),
    }
}

fuzz_target!(|input: Input| {
    let capacity = usize::from(input.capacity % 64) + 1;
    let pushes = input
        .ops
        .iter()
        .filter(|op| matches!(op, Op::Push(_) | Op::ForcePush(_)))
        .count();
    // Declared before the queue, so it outlives it.
    let tracker = Tracker::new(pushes);
    let queue = BoundedQueue::new(capacity);
    let mut model: VecDeque<(u32, u16)> = VecDeque::new();
    let mut closed = false;
    let mut next_serial = 0u32;
    assert_eq!(queue.capacity(), capacity);

    for (step, &op) in input.ops.iter().enumerate() {
        match op {
            Op::Push(v) => {
                let serial = next_serial;
                next_serial += 1;
                let result = queue.push(tracker.make(serial, u32::from(v)));
                let full = model.len() == capacity;
                let text = describe(&result);
                match (result, closed, full) {
                    (Err(PushError::Closed(back)), true, _)
                    | (Err(PushError::Full(back)), false, true) => {
                        same(Some(back), Some((serial, v)), "value handed back by push")
                    }
                    (Ok(()), false, false) => model.push_back((serial, v)),
                    _ => panic!(
                        "step {step}: push(#{serial}) returned {text}; model: closed={closed}, \
                         len={} of {capacity}",
                        model.len()
                    ),
                }
            }
            Op::ForcePush(v) => {
                let serial = next_serial;
                next_serial += 1;
                let result = queue.force_push(tracker.make(serial, u32::from(v)));
                let full = model.len() == capacity;
                let text = describe(&result);
                match (result, closed) {
                    (Err(PushError::Closed(back)), true) => same(
                        Some(back),
                        Some((serial, v)),
                        "value handed back by force_push",
                    ),
                    (Ok(displaced), false) => {
                        let expected = if full { model.pop_front() } else { None };
                        same(displaced, expected, "value displaced by force_push");
                        model.push_back((serial, v));
                    }
                    _ => panic!(
                        "step {step}: force_push(#{serial}) returned {text}; model: \
                         closed={closed}, len={} of {capacity}",
                        model.len()
                    ),
                }
            }
            Op::Pop => same(queue.pop(), model.pop_front(), "pop"),
            Op::Len => assert_eq!(queue.len(), model.len(), "step {step}: len"),
            Op::IsEmpty => assert_eq!(queue.is_empty(), model.is_empty(), "step {step}: is_empty"),
            Op::Close => {
                queue.close();
                closed = true;
            }
            Op::IsClosed => assert_eq!(queue.is_closed(), closed, "step {step}: is_closed"),
        }
        // Observers are cheap; check them after every operation as well.
        assert_eq!(queue.len(), model.len(), "after step {step} ({op:?}): len");
        assert_eq!(
            queue.is_closed(),
            closed,
            "after step {step} ({op:?}): is_closed"
        );
        #[cfg(fuzzing)]
        queue.validate();
    }

    if input.drain_at_end {
        while let Some(expected) = model.pop_front() {
            same(queue.pop(), Some(expected), "drain");
        }
        same(queue.pop(), None, "pop after drain");
        assert_eq!(queue.len(), 0);
        assert!(queue.is_empty());
        tracker.assert_none_alive();
    } else {
        let mut in_queue: Vec<u32> = model.iter().map(|&(serial, _)| serial).collect();
        in_queue.sort_unstable();
        assert_eq!(
            tracker.alive(),
            in_queue,
            "values alive vs values the model holds"
        );
    }
    drop(queue);
    tracker.assert_none_alive();
});
