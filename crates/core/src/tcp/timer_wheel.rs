//! A hashed timing wheel (Varghese & Lauck, "Hashed and Hierarchical Timing
//! Wheels", 1987, scheme 4) holding one deadline per connection slot.
//!
//! Arming, re-arming and cancelling are O(1) and allocate nothing: each slot
//! index owns one node of an intrusive doubly linked list hanging off the
//! wheel bucket of its deadline's tick. A deadline more than one rotation
//! away waits in its bucket and is skipped until its round comes. Expiry
//! visits only the buckets whose ticks have passed.

use super::time::Instant;

/// Bucket count: one rotation is `WHEEL_SLOTS` ticks.
const WHEEL_SLOTS: usize = 4096;
/// Tick length in µs: 1 ms, well below any TCP timer's needs.
const TICK_US: u64 = 1000;
const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Node {
    prev: u32,
    next: u32,
    at: Instant,
    /// The bucket the node is in, or NIL when not armed.
    bucket: u32,
}

const UNARMED: Node = Node {
    prev: NIL,
    next: NIL,
    at: Instant::ZERO,
    bucket: NIL,
};

/// Deadlines keyed by a dense index (the connection slot).
#[derive(Debug)]
pub struct TimerWheel {
    buckets: Vec<u32>,
    nodes: Vec<Node>,
    /// The earliest tick that may still hold due nodes.
    current: u64,
    armed: usize,
}

fn tick_of(at: Instant) -> u64 {
    at.micros() / TICK_US
}

impl Default for TimerWheel {
    fn default() -> Self {
        Self {
            buckets: vec![NIL; WHEEL_SLOTS],
            nodes: Vec::new(),
            current: 0,
            armed: 0,
        }
    }
}

impl TimerWheel {
    /// Deadlines armed.
    pub fn len(&self) -> usize {
        self.armed
    }

    pub fn is_empty(&self) -> bool {
        self.armed == 0
    }

    /// Arms (or moves) the deadline of `index`.
    pub fn insert(&mut self, index: u32, at: Instant) {
        let i = index as usize;
        if i >= self.nodes.len() {
            self.nodes.resize(i + 1, UNARMED);
        }
        self.remove(index);
        let bucket = (tick_of(at).max(self.current) % WHEEL_SLOTS as u64) as usize;
        let head = self.buckets[bucket];
        self.nodes[i] = Node {
            prev: NIL,
            next: head,
            at,
            bucket: bucket as u32,
        };
        if head != NIL {
            self.nodes[head as usize].prev = index;
        }
        self.buckets[bucket] = index;
        self.armed += 1;
    }

    /// Cancels the deadline of `index`, if armed.
    pub fn remove(&mut self, index: u32) {
        let Some(node) = self.nodes.get(index as usize).copied() else {
            return;
        };
        if node.bucket == NIL {
            return;
        }
        if node.prev != NIL {
            self.nodes[node.prev as usize].next = node.next;
        } else {
            self.buckets[node.bucket as usize] = node.next;
        }
        if node.next != NIL {
            self.nodes[node.next as usize].prev = node.prev;
        }
        self.nodes[index as usize] = UNARMED;
        self.armed -= 1;
    }

    /// The deadline armed for `index`.
    pub fn deadline(&self, index: u32) -> Option<Instant> {
        self.nodes
            .get(index as usize)
            .filter(|n| n.bucket != NIL)
            .map(|n| n.at)
    }

    /// Removes every deadline at or before `now`, appending their indices
    /// to `expired`.
    pub fn expire(&mut self, now: Instant, expired: &mut Vec<u32>) {
        if self.armed == 0 {
            self.current = self.current.max(tick_of(now));
            return;
        }
        let last = tick_of(now);
        // After a long idle gap one full rotation visits every bucket.
        let first = self
            .current
            .max(last.saturating_sub(WHEEL_SLOTS as u64 - 1));
        for tick in first..=last {
            let mut index = self.buckets[(tick % WHEEL_SLOTS as u64) as usize];
            while index != NIL {
                let node = self.nodes[index as usize];
                if node.at <= now {
                    self.remove(index);
                    expired.push(index);
                }
                index = node.next;
            }
        }
        // The current tick is revisited next time: it may hold deadlines
        // later within the same millisecond.
        self.current = last;
    }

    /// The earliest armed deadline if it is before `limit` (at most one
    /// rotation ahead), else `None`. Visits only the buckets up to
    /// `limit`: cheap for a near limit (a loop's longest sleep), unlike
    /// [`TimerWheel::next_deadline`] when everything is far away.
    pub fn next_deadline_before(&self, limit: Instant) -> Option<Instant> {
        if self.armed == 0 {
            return None;
        }
        let last = tick_of(limit).min(self.current + WHEEL_SLOTS as u64 - 1);
        for tick in self.current..=last {
            let mut index = self.buckets[(tick % WHEEL_SLOTS as u64) as usize];
            let mut best: Option<Instant> = None;
            while index != NIL {
                let node = self.nodes[index as usize];
                if tick_of(node.at) <= tick {
                    best = Some(best.map_or(node.at, |b| b.min(node.at)));
                }
                index = node.next;
            }
            if let Some(at) = best {
                return (at < limit).then_some(at);
            }
        }
        None
    }

    /// The earliest armed deadline (exact), or `None`.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.armed == 0 {
            return None;
        }
        for tick in self.current..self.current + WHEEL_SLOTS as u64 {
            let mut index = self.buckets[(tick % WHEEL_SLOTS as u64) as usize];
            let mut best: Option<Instant> = None;
            while index != NIL {
                let node = self.nodes[index as usize];
                // Only deadlines of this round count here; later rounds
                // wait for their own pass.
                if tick_of(node.at) <= tick {
                    best = Some(best.map_or(node.at, |b| b.min(node.at)));
                }
                index = node.next;
            }
            if best.is_some() {
                return best;
            }
        }
        // Everything is more than a rotation away.
        self.nodes
            .iter()
            .filter(|n| n.bucket != NIL)
            .map(|n| n.at)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Instant {
        Instant::from_micros(n * 1000)
    }

    #[test]
    fn fires_in_order_and_exactly_on_time() {
        let mut wheel = TimerWheel::default();
        wheel.insert(1, ms(40));
        wheel.insert(2, Instant::from_micros(10_500));
        wheel.insert(3, ms(200));
        assert_eq!(wheel.next_deadline(), Some(Instant::from_micros(10_500)));
        let mut out = Vec::new();
        wheel.expire(ms(10), &mut out);
        assert!(out.is_empty(), "10.5 ms is not due at 10 ms");
        wheel.expire(Instant::from_micros(10_500), &mut out);
        assert_eq!(out, [2]);
        assert_eq!(wheel.next_deadline(), Some(ms(40)));
        wheel.expire(ms(39), &mut out);
        assert_eq!(out, [2]);
        wheel.expire(ms(40), &mut out);
        assert_eq!(out, [2, 1]);
        assert_eq!(wheel.len(), 1);
    }

    #[test]
    fn moving_and_cancelling_leave_no_stale_entries() {
        let mut wheel = TimerWheel::default();
        for i in 0..100 {
            wheel.insert(7, ms(1000 + i));
        }
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.deadline(7), Some(ms(1099)));
        wheel.remove(7);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn deadlines_beyond_a_rotation_wait_for_their_round() {
        let mut wheel = TimerWheel::default();
        wheel.insert(1, ms(60_000));
        wheel.insert(2, ms(60_000 - 4096 * 5)); // same bucket, earlier round
        let mut out = Vec::new();
        wheel.expire(ms(60_000 - 4096 * 5), &mut out);
        assert_eq!(out, [2]);
        assert_eq!(wheel.next_deadline(), Some(ms(60_000)));
        wheel.expire(ms(59_999), &mut out);
        assert_eq!(out, [2]);
        wheel.expire(ms(70_000), &mut out);
        assert_eq!(out, [2, 1], "a long jump still visits every bucket");
    }

    proptest! {
        /// Against a model: whatever is armed, moved or cancelled, expiry
        /// returns exactly the deadlines that are due, next_deadline is
        /// the minimum, and next_deadline_before sees it when it is near.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec((0u32..20, 0u64..20_000, any::<bool>()), 1..200)) {
            let mut wheel = TimerWheel::default();
            let mut model = std::collections::BTreeMap::<u32, Instant>::new();
            let mut now = Instant::ZERO;
            let mut out = Vec::new();
            for (index, delta, arm) in ops {
                if arm {
                    let at = Instant::from_micros(now.micros() + delta * 37);
                    wheel.insert(index, at);
                    model.insert(index, at);
                } else if delta % 3 == 0 {
                    wheel.remove(index);
                    model.remove(&index);
                } else {
                    now = Instant::from_micros(now.micros() + delta * 11);
                    out.clear();
                    wheel.expire(now, &mut out);
                    let mut due: Vec<u32> = model.iter().filter(|(_, &at)| at <= now).map(|(&i, _)| i).collect();
                    model.retain(|_, at| *at > now);
                    out.sort_unstable();
                    due.sort_unstable();
                    prop_assert_eq!(&out, &due);
                }
                prop_assert_eq!(wheel.next_deadline(), model.values().min().copied());
                let limit = Instant::from_micros(now.micros() + 50_000);
                prop_assert_eq!(
                    wheel.next_deadline_before(limit),
                    model.values().min().copied().filter(|&at| at < limit)
                );
                prop_assert_eq!(wheel.len(), model.len());
            }
        }
    }
}
