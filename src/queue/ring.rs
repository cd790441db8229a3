//! The SCQ index ring: a lock-free FIFO of small integers.
//!
//! This is the "scalable circular queue" of R. Nikolaev, *A Scalable,
//! Portable, and Memory-Efficient Lock-Free FIFO Queue*, DISC 2019
//! (Figure 8, SCQ with a threshold), transcribed for 64-bit entries.
//!
//! A ring of `2n` entries stores at most `n` distinct indices, each below
//! `n`. Producers and consumers take tickets with fetch-and-add on `tail` and
//! `head`; ticket `t` maps to entry `t mod 2n` in *cycle* `t / 2n`. Each entry
//! packs `(cycle, is_safe, index)` into one `AtomicU64` and changes only by
//! compare-and-swap (or an OR that clears the index), so an operation never
//! waits for another: a consumer that arrives at an entry its producer has not
//! filled yet marks the entry so that the late producer must take a new
//! ticket. The `threshold` counter bounds how far consumers may run ahead of
//! producers, which makes the ring livelock-free (lock-free, not just
//! obstruction-free).
//!
//! Bit 63 of `tail` is the `CLOSED` bit: once set, every enqueue that takes a
//! ticket sees it in the value its fetch-and-add returns and fails: it
//! closes the bounded queue.
//!
//! # Memory ordering
//! Every operation on `head`, `tail`, `threshold` and the entries is `SeqCst`.
//! The proof in the paper assumes sequential consistency, and the algorithm
//! relies on it across variables: an enqueuer that finds an unsafe entry
//! compares its ticket with `head` (a store-buffering pattern with the
//! consumer that marked the entry and then moves `head`), and a consumer
//! that finds an empty entry compares with `tail`. Acquire/release alone
//! does not order those pairs. On x86-64 every read-modify-write is already
//! a full barrier and `SeqCst` loads are plain loads, so this costs nothing
//! there. The entry CAS that publishes an index also publishes the value the
//! producer wrote to that index's slot (release half of `SeqCst`), and the
//! consumer's load of the entry acquires it.

use crate::sync::{AtomicI64, AtomicU64, CachePadded, Ordering::SeqCst};

/// Bit 63 of `tail`: the ring is closed.
const CLOSED: u64 = 1 << 63;

/// Why an enqueue did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingClosed;

/// A lock-free FIFO of indices in `0..n`, holding at most `n` of them.
#[derive(Debug)]
pub(crate) struct IndexRing {
    head: CachePadded<AtomicU64>,
    tail: CachePadded<AtomicU64>,
    threshold: CachePadded<AtomicI64>,
    entries: Box<[AtomicU64]>,
    /// log2 of the number of entries (`2n`).
    order: u32,
    /// The threshold value a successful enqueue restores: `3n - 1`.
    threshold_max: i64,
}

/// One entry decoded: `(cycle, is_safe, index)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    cycle: u64,
    safe: bool,
    index: u64,
}

impl IndexRing {
    /// An empty ring for indices in `0..n`. `n` must be a power of two.
    pub(crate) fn new_empty(n: usize) -> Self {
        Self::with_initial(n, 0)
    }

    /// A ring that already holds `0..count` in order, exactly as if they had
    /// been enqueued one by one on an empty ring (used for the free-index
    /// ring). Built with plain stores, not an atomic read-modify-write per
    /// slot.
    pub(crate) fn new_full(n: usize, count: usize) -> Self {
        Self::with_initial(n, count)
    }

    fn with_initial(n: usize, count: usize) -> Self {
        debug_assert!(n.is_power_of_two() && n <= crate::queue::MAX_CAPACITY);
        debug_assert!(count <= n);
        let size = 2 * n as u64;
        let order = size.trailing_zeros();
        let mut ring = IndexRing {
            // Counters start at `size` (cycle 1) and entries in cycle 0, so
            // the first pass of tickets finds older-cycle entries.
            head: CachePadded::new(AtomicU64::new(size)),
            tail: CachePadded::new(AtomicU64::new(size + count as u64)),
            threshold: CachePadded::new(AtomicI64::new(if count == 0 {
                -1
            } else {
                3 * n as i64 - 1
            })),
            entries: Box::new([]),
            order,
            threshold_max: 3 * n as i64 - 1,
        };
        let empty = ring.encode(Entry {
            cycle: 0,
            safe: true,
            index: size - 1,
        });
        let mut raw = vec![empty; size as usize];
        for index in 0..count as u64 {
            // What `enqueue(index)` with ticket `size + index` would store.
            let ticket = size + index;
            raw[ring.entry_slot(ticket)] = ring.encode(Entry {
                cycle: ring.cycle_of(ticket),
                safe: true,
                index,
            });
        }
        ring.entries = raw.into_iter().map(AtomicU64::new).collect();
        ring
    }

    fn size(&self) -> u64 {
        1u64 << self.order
    }

    /// The empty marker `⊥`: every index bit set.
    fn bottom(&self) -> u64 {
        self.size() - 1
    }

    fn decode(&self, raw: u64) -> Entry {
        Entry {
            cycle: raw >> (self.order + 1),
            safe: raw & (1 << self.order) != 0,
            index: raw & self.bottom(),
        }
    }

    fn encode(&self, entry: Entry) -> u64 {
        (entry.cycle << (self.order + 1)) | (u64::from(entry.safe) << self.order) | entry.index
    }

    fn cycle_of(&self, ticket: u64) -> u64 {
        ticket >> self.order
    }

    /// The entry for a ticket. Consecutive tickets are spread over the 16
    /// cache lines of a 2 KiB block (the paper's `cache_remap`, confined to
    /// a block), so neighbouring producers and consumers do not false-share
    /// a line, while the working set still walks the ring in order, which
    /// keeps large rings cache- and prefetch-friendly.
    fn entry(&self, ticket: u64) -> &AtomicU64 {
        &self.entries[self.entry_slot(ticket)]
    }

    /// The position in `entries` of a ticket's entry (see [`Self::entry`]).
    fn entry_slot(&self, ticket: u64) -> usize {
        // 16 entries of 8 bytes per 128 bytes (a prefetch pair of lines),
        // 16 such groups per block.
        const GROUP_BITS: u32 = 4;
        const BLOCK_BITS: u32 = 2 * GROUP_BITS;
        let position = ticket & self.bottom();
        let bits = self.order.min(BLOCK_BITS);
        let slot = if bits > GROUP_BITS {
            let block = position >> bits << bits;
            let within = position & ((1 << bits) - 1);
            let line_bits = bits - GROUP_BITS;
            let line = within & ((1 << line_bits) - 1);
            block | (line << GROUP_BITS) | (within >> line_bits)
        } else {
            position
        };
        slot as usize
    }

    /// Appends `index` (which must be below `n`).
    ///
    /// Fails only when the ring is closed; a ring never holds more than `n`
    /// indices because only `n` distinct ones exist, which is what makes
    /// `2n` entries always enough.
    pub(crate) fn enqueue(&self, index: u64) -> Result<(), RingClosed> {
        self.enqueue_inner(index, false)
    }

    /// Appends `index` even when the ring is closed (the ring protocol does
    /// not depend on the bit). For `force_push`, which must put the slot it
    /// took back.
    pub(crate) fn enqueue_ignoring_close(&self, index: u64) {
        // Cannot fail: closure is ignored.
        let _ = self.enqueue_inner(index, true);
    }

    fn enqueue_inner(&self, index: u64, ignore_close: bool) -> Result<(), RingClosed> {
        debug_assert!(index < self.bottom());
        loop {
            // SeqCst: see the module docs; the ticket order and the CLOSED bit
            // must be in the single total order with the entry updates.
            let raw = self.tail.fetch_add(1, SeqCst);
            if raw & CLOSED != 0 && !ignore_close {
                self.return_ticket(raw);
                return Err(RingClosed);
            }
            let ticket = raw & !CLOSED;
            if self.try_fill(ticket, index) {
                return Ok(());
            }
            crate::sync::spin_loop();
        }
    }

    /// Gives back a ticket that a refused enqueue took from a closed ring,
    /// so `len` stays exact at quiescence. Succeeds only if no other ticket
    /// was taken since (`tail` is still `raw + 1`): the history is then the
    /// same as if the ticket had never been taken. `tail` only grows
    /// otherwise, so the comparison cannot be fooled by ABA. If another
    /// thread took a ticket meanwhile, the ticket stays spent; a consumer
    /// that later finds the ring empty catches `tail` up and absorbs it.
    fn return_ticket(&self, raw: u64) {
        // SeqCst: part of the ticket order (module docs).
        let _ = self
            .tail
            .compare_exchange(raw.wrapping_add(1), raw, SeqCst, SeqCst);
    }

    /// Tries to store `index` in the entry of `ticket`; `false` means the
    /// entry was unusable and the caller takes a new ticket.
    fn try_fill(&self, ticket: u64, index: u64) -> bool {
        let cycle = self.cycle_of(ticket);
        let slot = self.entry(ticket);
        // SeqCst: acquires the entry state left by the consumer of the
        // previous cycle; see the module docs for the cross-variable checks.
        let mut raw = slot.load(SeqCst);
        loop {
            let entry = self.decode(raw);
            let usable = entry.cycle < cycle
                && entry.index == self.bottom()
                // SeqCst: an unsafe entry may be reused only while no
                // consumer has passed this ticket (Dekker-style with the
                // consumer's CAS on the entry then FAA on head).
                && (entry.safe || self.head.load(SeqCst) <= ticket);
            if !usable {
                return false;
            }
            let new = self.encode(Entry {
                cycle,
                safe: true,
                index,
            });
            // SeqCst (release half): publishes the producer's write of the
            // value slot behind `index` to the consumer that loads this entry.
            match slot.compare_exchange(raw, new, SeqCst, SeqCst) {
                Ok(_) => {
                    self.reset_threshold();
                    return true;
                }
                Err(current) => raw = current,
            }
        }
    }

    fn reset_threshold(&self) {
        // SeqCst: a consumer that reads a negative threshold must not miss
        // this enqueue; checking first avoids a store on the hot path when
        // the value is already at its maximum.
        if self.threshold.load(SeqCst) != self.threshold_max {
            self.threshold.store(self.threshold_max, SeqCst);
        }
    }

    /// Like [`dequeue`](Self::dequeue), but first checks with plain loads
    /// whether every ticket producers took has already been taken by a
    /// consumer, and if so returns `None` without writing shared memory.
    ///
    /// For rings that are often empty (the `queued` ring under polling
    /// consumers): a plain empty dequeue writes `head`, an entry, `tail` and
    /// `threshold`, which slows the producers down. Linearizable: if
    /// `tail <= head` when `tail` is read (`head` only grows, so it was still
    /// true then), each completed enqueue's value belongs to the consumer
    /// holding the same ticket, whose dequeue can be ordered before this one.
    pub(crate) fn dequeue_unless_empty(&self) -> Option<u64> {
        // SeqCst: the read of `head` precedes the read of `tail` in the total
        // order, which the argument above needs.
        let head = self.head.load(SeqCst);
        // With a backlog the entry at `head` is already filled: skip the
        // read of `tail`, a line every producer writes, so it does not
        // bounce between cores on every pop.
        // SeqCst: a plain observation; `dequeue` re-reads the entry.
        let filled = self.decode(self.entry(head).load(SeqCst)).cycle == self.cycle_of(head);
        if !filled && (self.tail.load(SeqCst) & !CLOSED) <= head {
            return None;
        }
        self.dequeue()
    }

    /// Removes and returns the oldest index, or `None` if the ring is empty.
    ///
    /// On a closed ring, `None` means that no enqueue is left to land: a
    /// producer that took its ticket before the close but has not filled
    /// its entry yet would otherwise succeed after this "empty" (the
    /// threshold answers "empty" without passing that ticket), after a
    /// consumer saw the ring closed and drained. So where the threshold
    /// would end the dequeue, a closed ring (seen in a `tail` read after
    /// the consumer saw the close) goes on instead until every ticket below
    /// that `tail` is passed: each in-flight producer's entry is then taken
    /// or spoiled, and that producer retries into the `CLOSED` bit. That
    /// loop is bounded by the `tail` it read. An open ring pays nothing more
    /// (found in review).
    pub(crate) fn dequeue(&self) -> Option<u64> {
        // Where a closed ring's dequeue may stop: below this ticket every
        // enqueue came before the close.
        let mut closed_below = None;
        // SeqCst: pairs with `reset_threshold` (see the module docs).
        if self.threshold.load(SeqCst) < 0 {
            // SeqCst: `close` is a FAA on `tail`; a ticket taken before it
            // is below the value read here, in the single total order.
            closed_below = Some(self.closed_end(self.tail.load(SeqCst))?);
        }
        loop {
            // SeqCst: ticket order in the single total order (module docs).
            let ticket = self.head.fetch_add(1, SeqCst);
            if let Some(index) = self.try_take(ticket) {
                return Some(index);
            }
            // SeqCst: compares with tickets producers took (module docs).
            let tail = self.tail.load(SeqCst);
            if (tail & !CLOSED) <= ticket + 1 {
                self.catch_up(tail, ticket + 1);
                self.threshold.fetch_sub(1, SeqCst);
                return None;
            }
            match closed_below {
                // Closed: stop once every earlier ticket is passed.
                Some(end) if ticket + 1 >= end => {
                    // SeqCst: as below.
                    self.threshold.fetch_sub(1, SeqCst);
                    return None;
                }
                Some(_) => {}
                // SeqCst: the bound that makes the ring livelock-free.
                None if self.threshold.fetch_sub(1, SeqCst) <= 0 => {
                    // The `tail` read above came after this call began.
                    let end = self.closed_end(tail)?;
                    if ticket + 1 >= end {
                        return None;
                    }
                    closed_below = Some(end);
                }
                None => {}
            }
            crate::sync::spin_loop();
        }
    }

    /// The ticket count of a closed ring's `tail` word, or `None` if open.
    fn closed_end(&self, tail: u64) -> Option<u64> {
        (tail & CLOSED != 0).then_some(tail & !CLOSED)
    }

    /// Takes the index stored for `ticket`, or marks its entry so that a
    /// late producer of this cycle cannot fill it.
    fn try_take(&self, ticket: u64) -> Option<u64> {
        let cycle = self.cycle_of(ticket);
        let slot = self.entry(ticket);
        // SeqCst (acquire half): pairs with the producer's CAS in `try_fill`,
        // so the value slot behind the index is visible to this thread.
        let mut raw = slot.load(SeqCst);
        loop {
            let entry = self.decode(raw);
            if entry.cycle == cycle {
                // SeqCst: consumes the entry (index := ⊥) in the total order.
                slot.fetch_or(self.bottom(), SeqCst);
                return Some(entry.index);
            }
            if entry.cycle > cycle {
                // This consumer is a whole cycle late: nothing to take here.
                return None;
            }
            let new = if entry.index == self.bottom() {
                // Empty entry of an older cycle: move it to ours, so the
                // producer holding this ticket fails and retries.
                Entry { cycle, ..entry }
            } else {
                // An older cycle's index still waits for its slow consumer:
                // mark it unsafe so this cycle's producer checks `head`.
                Entry {
                    safe: false,
                    ..entry
                }
            };
            // SeqCst: see the module docs (Dekker pair with `try_fill`).
            match slot.compare_exchange(raw, self.encode(new), SeqCst, SeqCst) {
                Ok(_) => return None,
                Err(current) => raw = current,
            }
        }
    }

    /// Moves `tail` up to `head` after consumers overran it, so producers do
    /// not fill entries that consumers already passed.
    fn catch_up(&self, mut tail: u64, mut head: u64) {
        loop {
            let new = head | (tail & CLOSED);
            // SeqCst: part of the ticket order (module docs).
            if self
                .tail
                .compare_exchange(tail, new, SeqCst, SeqCst)
                .is_ok()
            {
                return;
            }
            // SeqCst: re-read both counters in the total order.
            head = self.head.load(SeqCst);
            tail = self.tail.load(SeqCst);
            if (tail & !CLOSED) >= head {
                return;
            }
        }
    }

    /// Sets the CLOSED bit; enqueues that take a ticket afterwards fail.
    pub(crate) fn close(&self) {
        // SeqCst: every later ticket (a FAA on the same word) sees the bit.
        self.tail.fetch_or(CLOSED, SeqCst);
    }

    /// `true` once [`close`](Self::close) has run.
    pub(crate) fn is_closed(&self) -> bool {
        // SeqCst: ordered with the producer tickets and `close` (module docs).
        self.tail.load(SeqCst) & CLOSED != 0
    }

    /// The number of indices in the ring: exact when no operation is in
    /// flight, with one exception: on an open ring, a producer that found its
    /// entry still held by a slow consumer of the previous lap skipped that
    /// ticket, and `len` counts it until a consumer passes it. Under
    /// concurrency, a value some moment during the call could have had.
    pub(crate) fn len(&self, max: usize) -> usize {
        // SeqCst: a consistent-enough pair of counters for an estimate.
        let head = self.head.load(SeqCst);
        let raw_tail = self.tail.load(SeqCst);
        let tail = raw_tail & !CLOSED;
        let count = if raw_tail & CLOSED == 0 {
            tail.saturating_sub(head)
        } else {
            // Enqueues refused by the closed ring spent tickets that could
            // not always be returned (`return_ticket`), so `tail - head`
            // over-counts: count the filled entries instead.
            self.count_filled(head, tail)
        };
        count.min(max as u64) as usize
    }

    /// The number of tickets in `head..tail` whose entry holds an index of
    /// that ticket's cycle. Each entry is visited at most once (the last
    /// `2n` tickets cover the ring), so this costs O(len).
    fn count_filled(&self, head: u64, tail: u64) -> u64 {
        let start = head.max(tail.saturating_sub(self.size()));
        (start..tail)
            .filter(|&ticket| {
                // SeqCst: an observation for an estimate, like `len`'s.
                let entry = self.decode(self.entry(ticket).load(SeqCst));
                entry.cycle == self.cycle_of(ticket) && entry.index != self.bottom()
            })
            .count() as u64
    }

    /// The indices stored in the ring, in no particular order. Only
    /// meaningful when no operation is in flight: then an entry holds an
    /// index exactly when that index is queued (a dequeue always clears the
    /// entry it took, and a stale entry waits only for an in-flight consumer).
    #[cfg(any(test, fuzzing))]
    pub(crate) fn stored_indices(&self) -> Vec<u64> {
        self.entries
            .iter()
            // SeqCst: quiescent read; any ordering would do.
            .map(|entry| self.decode(entry.load(SeqCst)).index)
            .filter(|&index| index != self.bottom())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::IndexRing;

    #[test]
    fn fifo_of_indices() {
        let ring = IndexRing::new_empty(4);
        assert_eq!(ring.dequeue(), None);
        for i in [3, 1, 2, 0] {
            ring.enqueue(i).unwrap();
        }
        assert_eq!(ring.len(4), 4);
        let mut stored = ring.stored_indices();
        stored.sort_unstable();
        assert_eq!(stored, [0, 1, 2, 3]);
        let out: Vec<u64> = std::iter::from_fn(|| ring.dequeue()).collect();
        assert_eq!(out, [3, 1, 2, 0]);
        assert_eq!(ring.len(4), 0);
        assert!(ring.stored_indices().is_empty());
    }

    #[test]
    fn prefilled_ring_equals_enqueued_ring() {
        use super::SeqCst;
        for (n, count) in [(1, 1), (4, 3), (64, 64), (512, 300)] {
            let built = IndexRing::new_full(n, count);
            let enqueued = IndexRing::new_empty(n);
            for index in 0..count as u64 {
                enqueued.enqueue(index).unwrap();
            }
            let raw =
                |r: &IndexRing| -> Vec<u64> { r.entries.iter().map(|e| e.load(SeqCst)).collect() };
            assert_eq!(
                raw(&built),
                raw(&enqueued),
                "entries for n={n} count={count}"
            );
            assert_eq!(built.head.load(SeqCst), enqueued.head.load(SeqCst));
            assert_eq!(built.tail.load(SeqCst), enqueued.tail.load(SeqCst));
            assert_eq!(
                built.threshold.load(SeqCst),
                enqueued.threshold.load(SeqCst)
            );
        }
    }

    #[test]
    fn many_laps_keep_order() {
        let ring = IndexRing::new_full(2, 2);
        // Rotate the two indices through the ring for many cycles.
        for lap in 0..if cfg!(miri) { 20 } else { 10_000 } {
            let a = ring.dequeue().unwrap();
            let b = ring.dequeue().unwrap();
            assert_eq!((a, b), if lap % 2 == 0 { (0, 1) } else { (1, 0) });
            ring.enqueue(b).unwrap();
            ring.enqueue(a).unwrap();
        }
    }

    /// The two halves of an enqueue (ticket, then fill) around a `close`
    /// and a consumer's dequeue: the ticket was taken before the `CLOSED`
    /// bit, so the enqueue is not refused at once; the consumer, after the
    /// close, must take the index or spoil the entry (the producer then
    /// retries and is refused). On a never-used ring (threshold -1) it did
    /// neither: it answered "empty", then the fill succeeded, after a
    /// consumer had seen the ring closed and drained (found in review).
    #[test]
    fn an_enqueue_in_flight_at_close_cannot_land_after_an_empty_dequeue() {
        use super::{SeqCst, CLOSED};
        for warm in [true, false] {
            let ring = IndexRing::new_empty(1);
            if warm {
                ring.enqueue(0).unwrap();
                assert_eq!(ring.dequeue(), Some(0));
            }
            // The producer's first half: its ticket, before the close.
            let raw = ring.tail.fetch_add(1, SeqCst);
            assert_eq!(raw & CLOSED, 0);
            ring.close();
            assert_eq!(ring.dequeue_unless_empty(), None);
            // The producer's second half must fail now.
            assert!(
                !ring.try_fill(raw & !CLOSED, 0),
                "warm={warm}: an enqueue landed after a consumer saw the ring closed and empty"
            );
            assert!(
                ring.enqueue(0).is_err(),
                "warm={warm}: the retry is refused"
            );
            assert_eq!(ring.dequeue(), None);
            assert_eq!(ring.len(1), 0);
        }
    }

    #[test]
    fn close_refuses_later_enqueues_but_keeps_contents() {
        let ring = IndexRing::new_empty(2);
        ring.enqueue(1).unwrap();
        ring.close();
        assert!(ring.is_closed());
        assert!(ring.enqueue(0).is_err());
        ring.enqueue_ignoring_close(0);
        assert_eq!(ring.dequeue(), Some(1));
        assert_eq!(ring.dequeue(), Some(0));
        assert_eq!(ring.dequeue(), None);
        // Failed tickets do not leave the length inflated once a consumer
        // has caught the tail up.
        assert_eq!(ring.len(2), 0);
    }

    #[test]
    fn len_is_exact_after_refused_tickets_that_could_not_be_returned() {
        use super::{SeqCst, CLOSED};
        // Two enqueues refused by a closed ring, as in the race found by
        // the fuzzer: A takes T, B takes T + 1, A's return fails, B's works.
        let ring = IndexRing::new_empty(4);
        ring.enqueue(2).unwrap();
        ring.close();
        let a = ring.tail.fetch_add(1, SeqCst);
        let b = ring.tail.fetch_add(1, SeqCst);
        assert_ne!(a & CLOSED, 0);
        ring.return_ticket(a);
        ring.return_ticket(b);
        assert_eq!(ring.len(4), 1);
        assert_eq!(ring.dequeue(), Some(2));
        assert_eq!(ring.len(4), 0);
    }

    #[test]
    fn empty_dequeues_do_not_break_later_enqueues() {
        let ring = IndexRing::new_empty(1);
        for _ in 0..10 {
            assert_eq!(ring.dequeue(), None);
        }
        ring.enqueue(0).unwrap();
        assert_eq!(ring.dequeue(), Some(0));
    }
}
