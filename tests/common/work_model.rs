//! The sequential reference for `WorkQueue`: the seeds' `MemoryQueue`
//! design ported to Rust (one `Mutex` around a `HashMap` of items and a
//! `VecDeque` of pending ids), with the work queue's documented semantics
//! (leases, attempts, dead letters, stale claims, retry backoff). Used as the oracle by
//! `tests/work.rs`, `tests/shuttle_work.rs` and `fuzz/fuzz_targets/work_queue.rs`.
//!
//! It names nothing from `unlocked` except the public `Clock`,
//! `ItemStatus`, `StatusCounts` and `WorkError` types, so a test can compare
//! results directly.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use unlocked::{Clock, ItemStatus, StatusCounts, WorkError};

/// The model's own statuses: as the public ones, plus "the last lease
/// expired and nobody claimed since" (that claim may still settle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    Pending {
        expired: bool,
    },
    /// Failed, waiting out its retry backoff until `RefItem::not_before`;
    /// in no pending order.
    Delayed,
    Processing,
    Completed,
    Failed {
        expired: bool,
    },
}

impl St {
    fn public(self) -> ItemStatus {
        match self {
            St::Pending { .. } | St::Delayed => ItemStatus::Pending,
            St::Processing => ItemStatus::Processing,
            St::Completed => ItemStatus::Completed,
            St::Failed { .. } => ItemStatus::Failed,
        }
    }
}

#[derive(Clone, Debug)]
struct RefItem<T> {
    data: T,
    status: St,
    attempts: u32,
    seq: u32,
    deadline: u64,
    not_before: u64,
    last_error: Option<Arc<str>>,
}

/// A claim in the model: the item id and which claim of it this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefClaim {
    pub id: u64,
    pub seq: u32,
    pub attempts: u32,
}

/// What `get`/`remove` report: status, attempts, last error, data.
pub type RefSnapshot<T> = (ItemStatus, u32, Option<Arc<str>>, T);

struct Inner<T> {
    items: HashMap<u64, RefItem<T>>,
    order: VecDeque<u64>,
    next_id: u64,
    /// Claims `(id, seq)` that settled their item: settling again is
    /// `AlreadyFinished`, whoever holds the item now.
    settled: std::collections::HashSet<(u64, u32)>,
}

/// The reference work queue.
pub struct RefWorkQueue<T, C> {
    inner: Mutex<Inner<T>>,
    max_size: Option<usize>,
    max_attempts: u32,
    lease: u64,
    /// Retry backoff `(base, max)` in nanoseconds; `None`: no backoff.
    backoff: Option<(u64, u64)>,
    clock: C,
}

impl<T: Clone, C: Clock> RefWorkQueue<T, C> {
    pub fn new(max_size: Option<usize>, max_attempts: u32, lease_nanos: u64, clock: C) -> Self {
        RefWorkQueue {
            inner: Mutex::new(Inner {
                items: HashMap::new(),
                order: VecDeque::new(),
                next_id: 0,
                settled: std::collections::HashSet::new(),
            }),
            max_size,
            max_attempts,
            lease: lease_nanos,
            backoff: None,
            clock,
        }
    }

    /// With an exponential retry backoff from `base` to `max` nanoseconds
    /// (`base == max`: fixed).
    pub fn with_backoff(mut self, base: u64, max: u64) -> Self {
        self.backoff = Some((base, max));
        self
    }

    /// The delay after failed attempt number `attempts` (>= 1).
    fn delay(&self, attempts: u32) -> Option<u64> {
        let (base, max) = self.backoff?;
        let doublings = attempts - 1;
        let doubled = (doublings < 96)
            .then(|| (base as u128).checked_mul(1 << doublings))
            .flatten()
            .unwrap_or(u128::MAX);
        Some(doubled.min(max as u128) as u64)
    }

    fn now(&self) -> u64 {
        self.clock.now().as_nanos() as u64
    }

    /// `Ok(model id)` or `Err(data)` when full.
    pub fn add(&self, data: T) -> Result<u64, T> {
        let mut g = self.inner.lock().unwrap();
        if self.max_size.is_some_and(|m| g.items.len() >= m) {
            return Err(data);
        }
        let id = g.next_id;
        g.next_id += 1;
        g.items.insert(
            id,
            RefItem {
                data,
                status: St::Pending { expired: false },
                attempts: 0,
                seq: 0,
                deadline: 0,
                not_before: 0,
                last_error: None,
            },
        );
        g.order.push_back(id);
        Ok(id)
    }

    /// Claims in id order of promotion (see [`claim_by`](Self::claim_by)).
    pub fn claim(&self) -> Option<(RefClaim, T)> {
        self.claim_by(|id| id)
    }

    /// Claims the next pending item, after putting the items whose backoff
    /// is over at the tail in the order of `key(id)` (the lock-free queue
    /// does so in slot order).
    pub fn claim_by<K: Ord>(&self, key: impl Fn(u64) -> K) -> Option<(RefClaim, T)> {
        let now = self.now();
        let deadline = now.saturating_add(self.lease);
        let mut g = self.inner.lock().unwrap();
        if self.backoff.is_some() {
            Self::promote(&mut g, now, &key);
        }
        while let Some(id) = g.order.pop_front() {
            let Some(item) = g.items.get_mut(&id) else {
                continue;
            };
            if !matches!(item.status, St::Pending { .. }) {
                continue;
            }
            item.status = St::Processing;
            item.attempts += 1;
            item.seq = item.seq.wrapping_add(1);
            item.deadline = item.deadline.max(deadline);
            return Some((
                RefClaim {
                    id,
                    seq: item.seq,
                    attempts: item.attempts,
                },
                item.data.clone(),
            ));
        }
        None
    }

    /// Puts the delayed items due at `now` at the tail, in `key` order.
    fn promote<K: Ord>(inner: &mut Inner<T>, now: u64, key: &impl Fn(u64) -> K) {
        let mut due: Vec<u64> = inner
            .items
            .iter()
            .filter(|(_, i)| i.status == St::Delayed && i.not_before <= now)
            .map(|(id, _)| *id)
            .collect();
        due.sort_by_key(|id| key(*id));
        for id in due {
            inner.items.get_mut(&id).unwrap().status = St::Pending { expired: false };
            inner.order.push_back(id);
        }
    }

    /// Checks the claim; on success applies `next` and returns the old status.
    fn settle(
        &self,
        claim: RefClaim,
        next: impl FnOnce(&mut RefItem<T>, St),
    ) -> Result<St, WorkError> {
        let mut g = self.inner.lock().unwrap();
        let inner = &mut *g;
        let Some(item) = inner.items.get_mut(&claim.id) else {
            return Err(WorkError::Removed);
        };
        if inner.settled.contains(&(claim.id, claim.seq)) {
            return Err(WorkError::AlreadyFinished);
        }
        if item.seq != claim.seq {
            return Err(WorkError::StaleClaim);
        }
        let old = item.status;
        match old {
            St::Processing | St::Pending { expired: true } | St::Failed { expired: true } => {}
            _ => return Err(WorkError::AlreadyFinished),
        }
        next(item, old);
        inner.settled.insert((claim.id, claim.seq));
        if old == St::Processing && matches!(item.status, St::Pending { .. }) {
            inner.order.push_back(claim.id);
        }
        Ok(old)
    }

    pub fn complete(&self, claim: RefClaim) -> Result<(), WorkError> {
        self.settle(claim, |item, _| item.status = St::Completed)
            .map(|_| ())
    }

    pub fn fail(&self, claim: RefClaim, reason: &str) -> Result<ItemStatus, WorkError> {
        let max = self.max_attempts;
        let reason: Arc<str> = Arc::from(reason);
        let mut new = ItemStatus::Pending;
        let now = self.now();
        let not_before = self.delay(claim.attempts).map(|d| now.saturating_add(d));
        self.settle(claim, |item, old| {
            item.status = match old {
                St::Processing if item.attempts >= max => St::Failed { expired: false },
                // An expired lease (reaped or not) adds no wait.
                St::Processing if not_before.is_some() && item.deadline > now => {
                    item.not_before = item.not_before.max(not_before.unwrap());
                    St::Delayed
                }
                St::Processing | St::Pending { .. } => St::Pending { expired: false },
                _ => St::Failed { expired: false },
            };
            item.last_error = Some(reason);
            new = item.status.public();
        })?;
        Ok(new)
    }

    pub fn release(&self, claim: RefClaim) -> Result<(), WorkError> {
        let now = self.now();
        let max = self.max_attempts;
        self.settle(claim, |item, old| match old {
            // An expired lease counts its attempt, reaped or not.
            St::Processing if item.deadline <= now => {
                item.last_error = Some(Arc::from("lease expired"));
                item.status = if item.attempts >= max {
                    St::Failed { expired: false }
                } else {
                    St::Pending { expired: false }
                };
            }
            St::Processing => {
                item.status = St::Pending { expired: false };
                item.attempts -= 1;
            }
            St::Pending { .. } => item.status = St::Pending { expired: false },
            _ => item.status = St::Failed { expired: false },
        })
        .map(|_| ())
    }

    /// Expired leases back to pending (or dead), and delayed items whose
    /// backoff is over to pending, in id order.
    pub fn reap_expired(&self) -> usize {
        self.reap_expired_by(|id| id)
    }

    /// Expired leases back to pending (or dead), re-queued in the order of
    /// `key(id)` (the lock-free queue re-queues in slot order).
    pub fn reap_expired_by<K: Ord>(&self, key: impl Fn(u64) -> K) -> usize {
        let now = self.now();
        let mut g = self.inner.lock().unwrap();
        let inner = &mut *g;
        let mut ids: Vec<u64> = inner.items.keys().copied().collect();
        ids.sort_by_key(|id| key(*id));
        let mut n = 0;
        for id in ids {
            let item = inner.items.get_mut(&id).unwrap();
            if item.status == St::Delayed && item.not_before <= now {
                item.status = St::Pending { expired: false };
                inner.order.push_back(id);
                continue;
            }
            if item.status != St::Processing || item.deadline > now {
                continue;
            }
            n += 1;
            item.last_error = Some(Arc::from("lease expired"));
            if item.attempts >= self.max_attempts {
                item.status = St::Failed { expired: true };
            } else {
                item.status = St::Pending { expired: true };
                inner.order.push_back(id);
            }
        }
        n
    }

    pub fn get(&self, id: u64) -> Option<RefSnapshot<T>> {
        let g = self.inner.lock().unwrap();
        g.items.get(&id).map(|i| {
            (
                i.status.public(),
                i.attempts,
                i.last_error.clone(),
                i.data.clone(),
            )
        })
    }

    pub fn remove(&self, id: u64) -> Option<RefSnapshot<T>> {
        let mut g = self.inner.lock().unwrap();
        g.items
            .remove(&id)
            .map(|i| (i.status.public(), i.attempts, i.last_error, i.data))
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap().items.len()
    }

    pub fn counts(&self) -> StatusCounts {
        let g = self.inner.lock().unwrap();
        let mut c = StatusCounts::default();
        for i in g.items.values() {
            match i.status.public() {
                ItemStatus::Pending => c.pending += 1,
                ItemStatus::Processing => c.processing += 1,
                ItemStatus::Completed => c.completed += 1,
                ItemStatus::Failed => c.failed += 1,
            }
        }
        c
    }

    /// Stored ids in add order.
    pub fn ids(&self) -> Vec<u64> {
        let g = self.inner.lock().unwrap();
        let mut ids: Vec<u64> = g.items.keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}
