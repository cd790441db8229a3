//! Differential fuzzing of `WorkQueue` against the sequential reference
//! (`tests/common/work_model.rs`: the seeds' `Mutex<HashMap + VecDeque>`
//! design with the work queue's semantics), with lease time driven by a
//! `ManualClock` shared by both, so every run is deterministic. The retry
//! backoff (none, fixed or exponential) is measured on the same clock.
//!
//! Every return value is compared: ids (through a map from the model's ids
//! to the queue's), claimed data and attempt numbers, the errors of
//! `complete`/`fail`/`release` (stale, finished, removed), what `get` and
//! `remove` report, `reap_expired`'s count, `len`, `counts` and the set of
//! ids in `snapshot`. Values are `SharedTracked`: at the end, after the queue and
//! every claim are dropped, nothing may be left alive.

#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use unlocked::{Claim, ItemId, ManualClock, RetryBackoff, WorkQueue};

use unlocked_fuzz::{collect_garbage, SharedTracked, Tracker};

#[allow(dead_code)]
#[path = "../../tests/common/work_model.rs"]
mod work_model;

use work_model::{RefClaim, RefWorkQueue};

const LEASE: Duration = Duration::from_millis(100);

#[derive(Arbitrary, Debug)]
struct Input {
    /// 0: unbounded; otherwise `max_size = n % 8 + 1`.
    max_size: u8,
    /// `max_attempts = n % 3 + 1`.
    max_attempts: u8,
    /// Retry backoff, by `n % 3`: none, fixed 50 ms, exponential 20 ms to
    /// 70 ms.
    backoff: u8,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    Add(u16),
    Claim,
    /// `claim_timeout(0)`, after `close` when `closed`: the waiting path.
    ClaimTimeoutZero {
        close_first: bool,
    },
    Complete(u8),
    Fail(u8),
    Release(u8),
    /// The worker vanishes: its claim is dropped unsettled.
    Vanish(u8),
    Remove(u8),
    Get(u8),
    /// Advance the clock by `n` milliseconds, then reap.
    AdvanceAndReap(u8),
    Observe,
}

type Data = (u32, u32);

struct Harness {
    tracker: Arc<Tracker>,
    queue: WorkQueue<SharedTracked>,
    model: RefWorkQueue<Data, ManualClock>,
    clock: ManualClock,
    ids: Vec<(ItemId, u64)>,
    claims: Vec<(Claim<SharedTracked>, RefClaim)>,
    next_serial: u32,
    removed: usize,
}

fn data(t: &SharedTracked) -> Data {
    (t.serial, t.value)
}

impl Harness {
    fn real_id(&self, model_id: u64) -> ItemId {
        self.ids
            .iter()
            .find(|(_, m)| *m == model_id)
            .expect("mapped")
            .0
    }

    /// The model's claim, re-queuing items whose backoff is over in the
    /// queue's order (slot order).
    fn model_claim(&self) -> Option<(RefClaim, Data)> {
        self.model
            .claim_by(|mid: u64| self.real_id(mid).as_u64() as u32)
    }

    fn model_id(&self, id: ItemId) -> u64 {
        self.ids.iter().find(|(r, _)| *r == id).expect("mapped").1
    }

    fn check_claim(
        &mut self,
        got: Option<Claim<SharedTracked>>,
        want: Option<(RefClaim, Data)>,
        step: usize,
    ) {
        match (got, want) {
            (Some(c), Some((mc, d))) => {
                assert_eq!(
                    (data(c.data()), c.attempts()),
                    (d, mc.attempts),
                    "step {step}: claim"
                );
                assert_eq!(self.model_id(c.id()), mc.id, "step {step}: claimed item");
                self.claims.push((c, mc));
            }
            (None, None) => {}
            (g, w) => panic!("step {step}: claim {g:?} vs model {w:?}"),
        }
    }

    fn step(&mut self, op: Op, step: usize) {
        match op {
            Op::Add(v) => {
                let serial = self.next_serial;
                self.next_serial += 1;
                let t = self.tracker.make_shared(serial, v as u32);
                match (self.queue.add(t), self.model.add((serial, v as u32))) {
                    (Ok(id), Ok(mid)) => {
                        assert!(
                            self.ids.iter().all(|(r, _)| *r != id),
                            "step {step}: id {id} reused while stored"
                        );
                        self.ids.push((id, mid));
                    }
                    (Err(full), Err(d)) => {
                        assert_eq!(data(&full.into_inner()), d, "step {step}: full")
                    }
                    (r, m) => panic!("step {step}: add {r:?} vs model {m:?}"),
                }
            }
            Op::Claim => {
                let (got, want) = (self.queue.claim(), self.model_claim());
                self.check_claim(got, want, step);
            }
            Op::ClaimTimeoutZero { close_first } => {
                if close_first {
                    self.queue.close();
                }
                let (got, want) = (self.queue.claim_timeout(Duration::ZERO), self.model_claim());
                self.check_claim(got, want, step);
            }
            Op::Complete(i) | Op::Fail(i) | Op::Release(i) | Op::Vanish(i) => {
                if self.claims.is_empty() {
                    return;
                }
                let i = i as usize % self.claims.len();
                let (c, mc) = &self.claims[i];
                match op {
                    Op::Complete(_) => assert_eq!(
                        self.queue.complete(c),
                        self.model.complete(*mc),
                        "step {step}: complete"
                    ),
                    Op::Fail(_) => assert_eq!(
                        self.queue.fail(c, "fuzz"),
                        self.model.fail(*mc, "fuzz"),
                        "step {step}: fail"
                    ),
                    Op::Release(_) => assert_eq!(
                        self.queue.release(c),
                        self.model.release(*mc),
                        "step {step}: release"
                    ),
                    _ => drop(self.claims.swap_remove(i)),
                }
            }
            Op::Remove(i) | Op::Get(i) => {
                if self.ids.is_empty() {
                    return;
                }
                let (id, mid) = self.ids[i as usize % self.ids.len()];
                let (got, want) = if matches!(op, Op::Remove(_)) {
                    let got = self.queue.remove(id);
                    self.removed += usize::from(got.is_some());
                    (got, self.model.remove(mid))
                } else {
                    (self.queue.get(id), self.model.get(mid))
                };
                let got = got.map(|s| (s.status(), s.attempts(), s.last_error(), data(s.data())));
                assert_eq!(got, want, "step {step}: {op:?}");
            }
            Op::AdvanceAndReap(ms) => {
                self.clock.advance(Duration::from_millis(ms as u64));
                let slot_of = |mid: u64| self.real_id(mid).as_u64() as u32;
                let want = self.model.reap_expired_by(slot_of);
                assert_eq!(self.queue.reap_expired(), want, "step {step}: reap");
            }
            Op::Observe => {
                assert_eq!(self.queue.len(), self.model.len(), "step {step}: len");
                assert_eq!(
                    self.queue.counts(),
                    self.model.counts(),
                    "step {step}: counts"
                );
                let mut live: Vec<u64> = self
                    .queue
                    .snapshot()
                    .iter()
                    .map(|s| self.model_id(s.id()))
                    .collect();
                live.sort_unstable();
                assert_eq!(live, self.model.ids(), "step {step}: snapshot");
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let ops = &input.ops[..input.ops.len().min(512)];
    let tracker = Arc::new(Tracker::new(ops.len()));
    let clock = ManualClock::new();
    let max_size = (input.max_size != 0).then_some(input.max_size as usize % 8 + 1);
    let max_attempts = u32::from(input.max_attempts % 3 + 1);
    let mut b = WorkQueue::builder()
        .max_attempts(max_attempts)
        .lease(LEASE)
        .clock(clock.clone());
    if let Some(m) = max_size {
        b = b.max_size(m);
    }
    let ms = Duration::from_millis;
    let backoff = match input.backoff % 3 {
        0 => None,
        1 => Some((ms(50), ms(50))),
        _ => Some((ms(20), ms(70))),
    };
    let mut model = RefWorkQueue::new(
        max_size,
        max_attempts,
        LEASE.as_nanos() as u64,
        clock.clone(),
    );
    if let Some((base, max)) = backoff {
        b = b.retry_backoff(RetryBackoff::exponential(base, max));
        model = model.with_backoff(base.as_nanos() as u64, max.as_nanos() as u64);
    }
    let mut h = Harness {
        tracker: Arc::clone(&tracker),
        queue: b.build().unwrap(),
        model,
        clock,
        ids: Vec::new(),
        claims: Vec::new(),
        next_serial: 0,
        removed: 0,
    };
    for (step, op) in ops.iter().enumerate() {
        h.step(*op, step);
    }
    h.step(Op::Observe, ops.len());
    let removed = h.removed;
    drop(h);
    // Removed items are freed through the epoch: run those frees now, then
    // every value must be gone.
    for _ in 0..8 {
        collect_garbage(removed);
        if tracker.alive().is_empty() {
            break;
        }
    }
    tracker.assert_none_alive();
});
