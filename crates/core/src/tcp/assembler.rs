//! Tracks which bytes past RCV.NXT have arrived out of order (RFC 9293
//! §3.10.7.4 "seventh": segments beyond RCV.NXT are held, not dropped), and
//! yields the SACK blocks that describe them (RFC 2018 §4).
//!
//! Offsets are relative to RCV.NXT. At most [`MAX_RANGES`] disjoint ranges are
//! held; a segment that would need more is refused (the sender retransmits
//! it), which bounds memory and work per segment — except a segment at
//! RCV.NXT, which is always taken: it needs no range, it moves RCV.NXT.
//!
//! The ranges live in a vector allocated at the first out-of-order segment
//! (a connection that never sees loss or reordering holds none) and kept
//! for the connection's life. A slow start that overruns a router's queue
//! drops every other segment of a window, hundreds of holes: with eight
//! ranges (the inline array this replaced) the receiver refused 818
//! segments of a 32 MiB transfer that the link had dropped only 334 of,
//! with 64 it refused 706. Linux holds every out-of-order segment its
//! buffer has room for; 512 ranges (4 KiB at most) bound the work per
//! segment (a binary search and one move) and the memory.

/// Most out-of-order ranges held at once.
pub const MAX_RANGES: usize = 512;

/// Disjoint, sorted, non-adjacent ranges `[start, end)` of received bytes.
#[derive(Debug, Clone, Default)]
pub struct Assembler {
    ranges: Vec<(u32, u32)>,
    /// The range that most recently grew: first in SACK (RFC 2018 §4).
    latest: Option<(u32, u32)>,
    /// In-order bytes `[0, front)` that touch no held range, taken while
    /// every range was in use: [`Assembler::take_front`] hands them out.
    front: u32,
}

/// The segment needs a range the assembler has no room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyHoles;

impl Assembler {
    pub fn clear(&mut self) {
        self.ranges.clear();
        self.latest = None;
        self.front = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges
    }

    /// Records bytes `[start, end)` as received.
    pub fn add(&mut self, start: u32, end: u32) -> Result<(), TooManyHoles> {
        if start >= end {
            return Ok(());
        }
        let (first, last) = touching(&self.ranges, start, end);
        if first < last {
            let merged = merge(&mut self.ranges, first, last, start, end);
            self.latest = Some(merged);
            return Ok(());
        }
        if self.ranges.len() == MAX_RANGES {
            if start == 0 {
                // In order, touching no held range: RCV.NXT moves past it
                // without a range (refusing it would stall the connection
                // for good: the sender can only retransmit it).
                self.front = self.front.max(end);
                return Ok(());
            }
            return Err(TooManyHoles);
        }
        self.ranges.insert(first, (start, end));
        self.latest = Some((start, end));
        Ok(())
    }

    /// The bytes now contiguous at RCV.NXT — those `add` took without a
    /// range, and the first range if it starts at 0 or touches them —
    /// removed, with the other ranges shifted down; 0 if none.
    pub fn take_front(&mut self) -> u32 {
        let mut n = std::mem::take(&mut self.front);
        if self.ranges.first().is_some_and(|&(start, _)| start <= n) {
            n = n.max(self.ranges.remove(0).1);
        }
        if n == 0 {
            return 0;
        }
        for range in &mut self.ranges {
            range.0 -= n;
            range.1 -= n;
        }
        self.latest = self
            .latest
            .and_then(|(s, e)| (s >= n).then(|| (s - n, e - n)));
        n
    }

    /// Up to `max` blocks for a SACK option, most recently changed first
    /// (RFC 2018 §4), as offsets.
    pub fn sack_blocks(&self, max: usize, mut emit: impl FnMut(u32, u32)) {
        let mut count = 0;
        if let Some(latest) = self.latest {
            if self.ranges().contains(&latest) && max > 0 {
                emit(latest.0, latest.1);
                count = 1;
            }
        }
        for &range in self.ranges().iter().rev() {
            if count >= max {
                break;
            }
            if Some(range) != self.latest || count == 0 {
                emit(range.0, range.1);
                count += 1;
            }
        }
    }
}

/// The ranges of sorted, disjoint `ranges` that `[start, end)` overlaps
/// or touches, as `first..last` (empty where it would go if none): a
/// binary search for the first, then the run after it. Shared with the
/// sender's SACK scoreboard, which keeps its ranges the same way.
pub(crate) fn touching<T: Copy + PartialOrd>(
    ranges: &[(T, T)],
    start: T,
    end: T,
) -> (usize, usize) {
    let first = ranges.partition_point(|&(_, e)| e < start);
    let mut last = first;
    while last < ranges.len() && ranges[last].0 <= end {
        last += 1;
    }
    (first, last)
}

/// Replaces `ranges[first..last]` (non-empty, from [`touching`]) with
/// their union with `[start, end)`, and returns it.
pub(crate) fn merge<T: Copy + PartialOrd>(
    ranges: &mut Vec<(T, T)>,
    first: usize,
    last: usize,
    start: T,
    end: T,
) -> (T, T) {
    let low = ranges[first].0;
    let high = ranges[last - 1].1;
    let merged = (
        if low < start { low } else { start },
        if high > end { high } else { end },
    );
    ranges.drain(first + 1..last);
    ranges[first] = merged;
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn merges_overlapping_and_touching_ranges() {
        let mut a = Assembler::default();
        a.add(10, 20).unwrap();
        a.add(30, 40).unwrap();
        a.add(20, 30).unwrap();
        assert_eq!(a.ranges(), &[(10, 40)]);
        a.add(5, 12).unwrap();
        a.add(50, 60).unwrap();
        assert_eq!(a.ranges(), &[(5, 40), (50, 60)]);
        assert_eq!(a.take_front(), 0);
        a.add(0, 5).unwrap();
        assert_eq!(a.take_front(), 40);
        assert_eq!(a.ranges(), &[(10, 20)]);
    }

    #[test]
    fn bounded_number_of_holes() {
        let mut a = Assembler::default();
        for i in 0..MAX_RANGES as u32 {
            a.add(10 * i + 1, 10 * i + 2).unwrap();
        }
        assert_eq!(a.add(100_000, 100_001), Err(TooManyHoles));
        assert_eq!(a.add(1, 15), Ok(()), "a merge needs no new slot");
    }

    /// With every range in use, a segment at RCV.NXT that touches none is
    /// still taken (refusing it would stall the connection: found with a
    /// bottleneck queue overflowing in slow start, nine holes and more).
    #[test]
    fn in_order_bytes_are_taken_even_with_every_range_in_use() {
        let mut a = Assembler::default();
        for i in 0..MAX_RANGES as u32 {
            a.add(100 * (i + 1), 100 * (i + 1) + 10).unwrap();
        }
        assert_eq!(a.add(0, 50), Ok(()));
        assert_eq!(a.take_front(), 50);
        assert_eq!(a.ranges()[0], (50, 60), "the others moved down");
        assert_eq!(a.ranges().len(), MAX_RANGES);
        // And one that reaches the first range takes it along.
        assert_eq!(a.add(0, 50), Ok(()));
        assert_eq!(a.take_front(), 60);
        assert_eq!(a.ranges().len(), MAX_RANGES - 1);
        assert_eq!(a.take_front(), 0);
    }

    #[test]
    fn sack_lists_the_latest_block_first() {
        let mut a = Assembler::default();
        a.add(10, 20).unwrap();
        a.add(40, 50).unwrap();
        a.add(25, 30).unwrap();
        let mut blocks = Vec::new();
        a.sack_blocks(3, |s, e| blocks.push((s, e)));
        assert_eq!(blocks, [(25, 30), (40, 50), (10, 20)]);
        let mut two = Vec::new();
        a.sack_blocks(2, |s, e| two.push((s, e)));
        assert_eq!(two, [(25, 30), (40, 50)]);
    }

    proptest! {
        /// Whatever the arrival order, the bytes taken from the front are
        /// exactly the contiguous prefix of what arrived.
        #[test]
        fn reassembly_matches_a_bitmap(segments in proptest::collection::vec((0u32..200, 1u32..30), 0..40)) {
            let mut a = Assembler::default();
            let mut seen = [false; 256];
            let mut delivered = 0u32;
            for (start, len) in segments {
                let (start, end) = (start.max(delivered), (start + len).min(256));
                if start >= end { continue; }
                if a.add(start - delivered, end - delivered).is_ok() {
                    for b in start..end { seen[b as usize] = true; }
                }
                delivered += a.take_front();
                let prefix = seen.iter().take_while(|&&s| s).count() as u32;
                prop_assert_eq!(delivered, prefix);
                prop_assert!(a.ranges().windows(2).all(|w| w[0].1 < w[1].0), "disjoint and sorted");
            }
        }
    }
}
