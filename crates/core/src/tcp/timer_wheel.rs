//! A hierarchical timing wheel (Varghese & Lauck, "Hashed and
//! Hierarchical Timing Wheels", 1987, scheme 7) holding one deadline per
//! connection slot.
//!
//! Arming, re-arming and cancelling are O(1) and allocate nothing: each slot
//! index owns one node of an intrusive doubly linked list hanging off a
//! bucket. Level 0 has a bucket per 1 ms tick for the next 256 ms; each
//! level above has 64 buckets, each 64 times as long as one below (16 s,
//! 17 min, 18.6 h, 49.7 days of reach). A deadline waits in the lowest
//! level that reaches it; when time enters a higher bucket's span, its
//! nodes move down (a cascade, at most four per deadline in its life).
//! Expiry and the search for the next deadline skip empty buckets through
//! per-level occupancy bitmaps, so time passing over idle connections
//! costs O(deadlines due + cascades), never O(connections).
//!
//! The next deadline is exact for level 0 (a bucket is one tick) and for a
//! bucket above whose earliest node (kept per bucket) is still armed; if
//! that node was cancelled since, it is the bucket's start: never later
//! than the real deadline, at worst one early wake-up per level.

use super::time::Instant;

/// Tick length in µs: 1 ms, well below any TCP timer's needs.
const TICK_US: u64 = 1000;
const NIL: u32 = u32::MAX;
/// Levels, and each level's bucket count (a power of two) and tick shift.
const LEVELS: usize = 5;
const SLOTS: [u64; LEVELS] = [256, 64, 64, 64, 64];
const SHIFT: [u32; LEVELS] = [0, 8, 14, 20, 26];
/// Index of each level's first bucket.
const FIRST: [usize; LEVELS] = [0, 256, 320, 384, 448];
const BUCKETS: usize = 512;

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

/// One bucket: its list and the earliest deadline ever added to it since
/// it was last empty (`exact` while that node is still there).
#[derive(Debug, Clone, Copy)]
struct Bucket {
    head: u32,
    min: Instant,
    exact: bool,
}

const EMPTY: Bucket = Bucket {
    head: NIL,
    min: Instant::from_micros(u64::MAX),
    exact: true,
};

/// Deadlines keyed by a dense index (the connection slot).
#[derive(Debug, Clone)]
pub struct TimerWheel {
    buckets: Vec<Bucket>,
    /// Per level, a bit per occupied bucket (level 0: four words).
    occupied: [[u64; 4]; LEVELS],
    nodes: Vec<Node>,
    /// The earliest tick that may still hold due nodes; every node is
    /// placed relative to it.
    current: u64,
    armed: usize,
}

fn tick_of(at: Instant) -> u64 {
    at.micros() / TICK_US
}

impl Default for TimerWheel {
    fn default() -> Self {
        Self {
            buckets: vec![EMPTY; BUCKETS],
            occupied: [[0; 4]; LEVELS],
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

    /// The bucket a deadline at `tick` belongs in now: the lowest level
    /// whose reach from `current` covers it (the top level's last bucket
    /// for what lies beyond).
    fn bucket_for(&self, tick: u64) -> usize {
        let tick = tick.max(self.current);
        for level in 0..LEVELS {
            let ahead = (tick >> SHIFT[level]) - (self.current >> SHIFT[level]);
            if ahead < SLOTS[level] {
                return FIRST[level] + ((tick >> SHIFT[level]) % SLOTS[level]) as usize;
            }
        }
        let top = LEVELS - 1;
        let last = (self.current >> SHIFT[top]) + SLOTS[top] - 1;
        FIRST[top] + (last % SLOTS[top]) as usize
    }

    fn link(&mut self, index: u32, at: Instant) {
        let bucket = self.bucket_for(tick_of(at));
        let head = self.buckets[bucket].head;
        self.nodes[index as usize] = Node {
            prev: NIL,
            next: head,
            at,
            bucket: bucket as u32,
        };
        if head != NIL {
            self.nodes[head as usize].prev = index;
        }
        let b = &mut self.buckets[bucket];
        b.head = index;
        if at < b.min {
            b.min = at;
            b.exact = true;
        }
        let (level, slot) = level_slot(bucket);
        self.occupied[level][slot / 64] |= 1 << (slot % 64);
    }

    fn unlink(&mut self, index: u32) -> Node {
        let node = self.nodes[index as usize];
        let bucket = node.bucket as usize;
        if node.prev != NIL {
            self.nodes[node.prev as usize].next = node.next;
        } else {
            self.buckets[bucket].head = node.next;
        }
        if node.next != NIL {
            self.nodes[node.next as usize].prev = node.prev;
        }
        self.nodes[index as usize] = UNARMED;
        let b = &mut self.buckets[bucket];
        if b.head == NIL {
            *b = EMPTY;
            let (level, slot) = level_slot(bucket);
            self.occupied[level][slot / 64] &= !(1 << (slot % 64));
        } else if node.at == b.min {
            b.exact = false;
        }
        node
    }

    /// Arms (or moves) the deadline of `index`.
    pub fn insert(&mut self, index: u32, at: Instant) {
        let i = index as usize;
        if i >= self.nodes.len() {
            self.nodes.resize(i + 1, UNARMED);
        }
        self.remove(index);
        self.link(index, at);
        self.armed += 1;
    }

    /// Cancels the deadline of `index`, if armed.
    pub fn remove(&mut self, index: u32) {
        match self.nodes.get(index as usize) {
            Some(node) if node.bucket != NIL => {
                self.unlink(index);
                self.armed -= 1;
            }
            _ => {}
        }
    }

    /// Forgets the indices from `len` on (none of them armed), giving
    /// back memory when far fewer are needed.
    pub fn truncate(&mut self, len: usize) {
        debug_assert!(self.nodes.iter().skip(len).all(|n| n.bucket == NIL));
        self.nodes.truncate(len);
        if let Some(keep) = crate::slots::shrink_target(len, self.nodes.capacity()) {
            self.nodes.shrink_to(keep);
        }
    }

    /// The deadline armed for `index`.
    pub fn deadline(&self, index: u32) -> Option<Instant> {
        self.nodes
            .get(index as usize)
            .filter(|n| n.bucket != NIL)
            .map(|n| n.at)
    }

    /// The first occupied bucket of `level` at or after `from` buckets
    /// ahead of the current one (within the level's reach): how far ahead.
    /// Word scans of the occupancy bitmap (at most five words).
    fn next_occupied(&self, level: usize, from: u64) -> Option<u64> {
        let slots = SLOTS[level];
        let base = (self.current >> SHIFT[level]) % slots;
        let mut ahead = from;
        while ahead < slots {
            let pos = (base + ahead) % slots;
            let bit = pos % 64;
            let word = self.occupied[level][(pos / 64) as usize] >> bit;
            // Bits of this word from `pos` to its end (no wrap inside).
            let span = (64 - bit).min(slots - pos);
            let word = if span < 64 {
                word & ((1u64 << span) - 1)
            } else {
                word
            };
            if word != 0 {
                let found = ahead + u64::from(word.trailing_zeros());
                return (found < slots).then_some(found);
            }
            ahead += span;
        }
        None
    }

    /// The first occupied bucket of `level` (above 0) after the current
    /// one: its index, and the tick its span starts at (its cascade).
    fn next_upper(&self, level: usize) -> Option<(usize, u64)> {
        let ahead = self.next_occupied(level, 1)?;
        let block = (self.current >> SHIFT[level]) + ahead;
        Some((
            FIRST[level] + (block % SLOTS[level]) as usize,
            block << SHIFT[level],
        ))
    }

    /// Removes every deadline at or before `now`, appending their indices
    /// to `expired`.
    pub fn expire(&mut self, now: Instant, expired: &mut Vec<u32>) {
        let target = tick_of(now);
        if self.armed == 0 {
            self.current = self.current.max(target);
            return;
        }
        loop {
            // Level 0's bucket for the current tick.
            let bucket = (self.current % SLOTS[0]) as usize;
            let mut index = self.buckets[bucket].head;
            while index != NIL {
                let node = self.nodes[index as usize];
                if node.at <= now {
                    self.remove(index);
                    expired.push(index);
                }
                index = node.next;
            }
            if self.current >= target {
                // The current tick is revisited next time: it may hold
                // deadlines later within the same millisecond.
                return;
            }
            // Jump to the next tick where something happens: an occupied
            // level-0 bucket, the start of an occupied bucket above (its
            // cascade), or the target.
            let mut next = target;
            if let Some(ahead) = self.next_occupied(0, 1) {
                next = next.min(self.current + ahead);
            }
            for level in 1..LEVELS {
                if let Some((_, start)) = self.next_upper(level) {
                    next = next.min(start);
                }
            }
            self.current = next;
            self.cascade();
        }
    }

    /// At a bucket boundary of levels above 0: moves the nodes of each
    /// bucket that starts now down to where they belong (highest first).
    fn cascade(&mut self) {
        for level in (1..LEVELS).rev() {
            if self.current % (1 << SHIFT[level]) != 0 {
                continue;
            }
            let slot = ((self.current >> SHIFT[level]) % SLOTS[level]) as usize;
            let bucket = FIRST[level] + slot;
            let mut index = self.buckets[bucket].head;
            while index != NIL {
                let node = self.unlink(index);
                self.link(index, node.at);
                index = node.next;
            }
        }
    }

    /// The earliest armed deadline if it is before `limit`, else `None`
    /// (see [`TimerWheel::next_deadline`] for how exact it is).
    pub fn next_deadline_before(&self, limit: Instant) -> Option<Instant> {
        self.next_deadline().filter(|&at| at < limit)
    }

    /// The earliest armed deadline, or an earlier instant (module docs:
    /// never later). `None` if nothing is armed.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.armed == 0 {
            return None;
        }
        let mut best: Option<Instant> = None;
        if let Some(ahead) = self.next_occupied(0, 0) {
            // One tick's nodes: their exact minimum.
            let bucket = ((self.current + ahead) % SLOTS[0]) as usize;
            let mut index = self.buckets[bucket].head;
            let mut min = Instant::from_micros(u64::MAX);
            while index != NIL {
                let node = self.nodes[index as usize];
                min = min.min(node.at);
                index = node.next;
            }
            best = Some(min);
        }
        // A bucket above may start within level 0's reach (its nodes not
        // cascaded yet): the first occupied one of each level competes.
        for level in 1..LEVELS {
            if let Some((bucket, start)) = self.next_upper(level) {
                let bucket = &self.buckets[bucket];
                let bound = if bucket.exact {
                    bucket.min
                } else {
                    Instant::from_micros(start * TICK_US)
                };
                best = Some(best.map_or(bound, |b| b.min(bound)));
            }
        }
        best
    }
}

/// A bucket's level and slot within it.
fn level_slot(bucket: usize) -> (usize, usize) {
    let level = FIRST
        .iter()
        .rposition(|&first| bucket >= first)
        .expect("a level");
    (level, bucket - FIRST[level])
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

    #[test]
    fn far_deadlines_wait_in_higher_levels_and_cascade_down() {
        let mut wheel = TimerWheel::default();
        wheel.insert(1, ms(3_600_000)); // an hour: level 3
        wheel.insert(2, ms(20_000)); // 20 s: level 2
        wheel.insert(3, ms(100)); // level 0
        let mut out = Vec::new();
        wheel.expire(ms(100), &mut out);
        assert_eq!(out, [3]);
        assert_eq!(
            wheel.next_deadline(),
            Some(ms(20_000)),
            "exact: the bucket's minimum"
        );
        wheel.expire(ms(19_999), &mut out);
        assert_eq!(out, [3]);
        wheel.expire(ms(20_000), &mut out);
        assert_eq!(out, [3, 2]);
        wheel.expire(ms(3_600_000), &mut out);
        assert_eq!(out, [3, 2, 1]);
        assert!(wheel.is_empty());
    }

    /// A million idle deadlines an hour away: a second of time passing,
    /// millisecond by millisecond, visits none of them.
    #[test]
    fn idle_deadlines_cost_nothing_while_time_passes() {
        let mut wheel = TimerWheel::default();
        for i in 0..1_000_000u32 {
            wheel.insert(i, ms(3_600_000 + u64::from(i % 1000)));
        }
        let mut out = Vec::new();
        let started = std::time::Instant::now();
        for t in 1..=1000 {
            wheel.expire(ms(t), &mut out);
            assert_eq!(wheel.next_deadline_before(ms(t + 100)), None);
        }
        assert!(out.is_empty());
        // Debug builds included, a scan of a million nodes per millisecond
        // would take seconds; skipping empty buckets takes microseconds.
        assert!(started.elapsed() < std::time::Duration::from_millis(500));
        assert_eq!(wheel.len(), 1_000_000);
    }

    proptest! {
        /// Against a model: whatever is armed, moved or cancelled, expiry
        /// returns exactly the deadlines that are due; the next deadline
        /// is never later than the earliest armed one, and waking at it
        /// reaches that deadline within a few early wake-ups (one per
        /// level at most).
        #[test]
        fn matches_a_model(ops in proptest::collection::vec((0u32..20, 0u64..2_000_000, any::<bool>()), 1..200)) {
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
                prop_assert_eq!(wheel.len(), model.len());
                let earliest = model.values().min().copied();
                let next = wheel.next_deadline();
                prop_assert_eq!(next.is_some(), earliest.is_some());
                if let (Some(next), Some(earliest)) = (next, earliest) {
                    prop_assert!(next <= earliest, "{next:?} after {earliest:?}");
                    // Waking at each answer reaches the earliest deadline.
                    let mut probe = wheel.clone();
                    let mut fired = Vec::new();
                    let mut wakes = 0;
                    while fired.is_empty() {
                        let at = probe.next_deadline().unwrap().max(now);
                        probe.expire(at, &mut fired);
                        wakes += 1;
                        prop_assert!(wakes <= LEVELS + 1, "{wakes} wake-ups");
                        if fired.is_empty() {
                            prop_assert!(at < earliest);
                        } else {
                            prop_assert_eq!(at, earliest);
                        }
                    }
                }
            }
        }
    }
}
