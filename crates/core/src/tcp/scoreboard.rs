//! The sender's SACK scoreboard (RFC 6675 §3–§4 on RFC 2018's option):
//! which bytes above SND.UNA the peer reported holding, which of the rest
//! are presumed lost (`IsLost`), where the next retransmission starts
//! (`NextSeg`), and how many bytes are still in the network (`pipe`).
//!
//! The scoreboard is advice, never acknowledgment (RFC 2018 §8): data
//! leaves the send buffer only at the cumulative ACK; SACKed bytes are
//! only skipped when resending.
//!
//! Ranges are absolute sequence numbers, sorted, disjoint and not
//! touching, all above SND.UNA, in a vector allocated at the first SACK
//! block (a connection that never sees loss holds none). A slow start
//! that overruns a router's queue leaves hundreds of holes in one window;
//! with 32 ranges the sender forgot most of what the receiver held and
//! resent twice what the link had dropped. At most [`MAX_SACKED_RANGES`]
//! are kept:
//! when a block would need one more, the highest range is given up (a
//! receiver reports the block it just changed first and keeps repeating
//! its highest ones, RFC 2018 §4, so the information comes back).
//! Forgetting a range costs at most a needless retransmission of it,
//! never a stall; ranges are never merged across a hole, which would make
//! the hole look delivered.

use super::assembler::{merge, touching};
use super::seq::Seq;

/// Most SACKed ranges a connection remembers.
pub const MAX_SACKED_RANGES: usize = 512;

/// RFC 6675 §2 DupThresh: duplicate ACKs, or discontiguous SACKed ranges
/// above a byte, that mark it lost.
pub const DUP_THRESH: usize = 3;

/// What the SACK blocks of one ACK told the scoreboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SackNews {
    /// Some bytes were SACKed for the first time (RFC 6675 §2's
    /// "DupAck" test for an ACK that carries SACK information).
    pub new_bytes: bool,
    /// How many bytes were SACKed for the first time (a delivery-rate
    /// sampler counts them as delivered).
    pub newly_sacked: usize,
    /// The first block was a D-SACK (RFC 2883 §4): it reports a segment
    /// received twice, below the cumulative ACK or inside the second block.
    pub duplicate: bool,
}

/// See the module doc.
#[derive(Debug, Clone, Default)]
pub struct Scoreboard {
    ranges: Vec<(Seq, Seq)>,
}

impl Scoreboard {
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The SACKed ranges `[start, end)`, lowest first.
    pub fn ranges(&self) -> &[(Seq, Seq)] {
        &self.ranges
    }

    pub fn clear(&mut self) {
        self.ranges.clear();
    }

    /// One past the highest SACKed byte.
    pub fn highest(&self) -> Option<Seq> {
        self.ranges().last().map(|&(_, end)| end)
    }

    /// Bytes SACKed in all.
    pub fn sacked_bytes(&self) -> usize {
        self.ranges().iter().map(|&(start, end)| end - start).sum()
    }

    /// The cumulative ACK reached `snd_una`: forgets what it covers.
    /// Returns how many of the bytes it covers had been SACKed (they were
    /// delivered before this ACK).
    pub fn advance(&mut self, snd_una: Seq) -> usize {
        let covered = self.ranges.partition_point(|&(_, end)| end <= snd_una);
        let mut forgotten: usize = self.ranges[..covered]
            .iter()
            .map(|&(start, end)| end - start)
            .sum();
        self.ranges.drain(..covered);
        if let Some(first) = self.ranges.first_mut() {
            if first.0 < snd_una {
                forgotten += snd_una - first.0;
                first.0 = snd_una;
            }
        }
        forgotten
    }

    /// Takes in the SACK blocks of an ACK whose cumulative ACK is
    /// `snd_una` (after [`advance`](Self::advance)); blocks outside
    /// `[snd_una, snd_max]` are not believed, except a first block below
    /// `snd_una`, which is a D-SACK (RFC 2883 §4).
    pub fn on_sack(&mut self, blocks: &[(u32, u32)], snd_una: Seq, snd_max: Seq) -> SackNews {
        let mut news = SackNews::default();
        for (i, &(left, right)) in blocks.iter().enumerate() {
            let (left, right) = (Seq(left), Seq(right));
            if i == 0 {
                let forward = right.diff(left) > 0;
                let inside_second = blocks.get(1).is_some_and(|&(l, r)| {
                    forward && left.diff(Seq(l)) >= 0 && Seq(r).diff(right) >= 0
                });
                if (forward && snd_una.diff(right) >= 0) || inside_second {
                    news.duplicate = true;
                    continue;
                }
            }
            // Believable: a non-empty block within what was sent and not
            // yet acknowledged (a block reaching below SND.UNA is cut).
            // Signed distances, so that numbers 2^31 apart (each "before"
            // the other) are refused rather than taken as a range.
            if !(right.diff(left) > 0 && snd_max.diff(right) >= 0 && right.diff(snd_una) > 0) {
                continue;
            }
            let start = if left.diff(snd_una) < 0 {
                snd_una
            } else {
                left
            };
            let newly = self.insert(start, right);
            news.new_bytes |= newly > 0;
            news.newly_sacked += newly;
        }
        news
    }

    /// Records `[start, end)` as SACKed; returns how many of its bytes
    /// were not before.
    fn insert(&mut self, start: Seq, end: Seq) -> usize {
        let (first, last) = touching(&self.ranges, start, end);
        if first < last {
            let before: usize = self.ranges[first..last].iter().map(|&(s, e)| e - s).sum();
            let merged = merge(&mut self.ranges, first, last, start, end);
            return (merged.1 - merged.0).saturating_sub(before);
        }
        if self.ranges.len() == MAX_SACKED_RANGES {
            if first == self.ranges.len() {
                // Above every range and no room: not kept (see the module doc).
                return end - start;
            }
            self.ranges.pop();
        }
        self.ranges.insert(first, (start, end));
        end - start
    }

    /// Bytes SACKed above `seq` (a byte not SACKed) and in how many ranges.
    fn above(&self, seq: Seq) -> (usize, usize) {
        let mut bytes = 0;
        let mut count = 0;
        for &(start, end) in self.ranges().iter().rev() {
            if end <= seq {
                break;
            }
            bytes += end - start.max(seq);
            count += 1;
        }
        (bytes, count)
    }

    /// RFC 6675 §4 IsLost for an unSACKed byte: DupThresh discontiguous
    /// ranges, or more than (DupThresh − 1)·SMSS bytes, SACKed above it.
    pub fn is_lost(&self, seq: Seq, mss: usize) -> bool {
        let (bytes, count) = self.above(seq);
        lost(bytes, count, mss)
    }

    /// If `seq` is SACKed, the end of its range; otherwise `seq`.
    pub fn skip_sacked(&self, seq: Seq) -> Seq {
        match self
            .ranges
            .get(self.ranges.partition_point(|&(_, end)| end <= seq))
        {
            Some(&(start, end)) if start <= seq => end,
            _ => seq,
        }
    }

    /// Where the hole holding `seq` ends: the start of the first SACKed
    /// range above it, if any.
    pub fn hole_end(&self, seq: Seq) -> Option<Seq> {
        let above = self.ranges.partition_point(|&(start, _)| start <= seq);
        self.ranges.get(above).map(|&(start, _)| start)
    }

    /// The holes below the highest SACKed byte that start at or above
    /// `from` (clipped to it), lowest first, each with whether its bytes
    /// are lost (every byte of a hole has the same SACKed bytes above it;
    /// a hole starting below `lost_below` is lost whatever is above it).
    fn holes_from(
        &self,
        from: Seq,
        mss: usize,
        lost_below: Seq,
    ) -> impl Iterator<Item = (Seq, Seq, bool)> + '_ {
        let ranges = self.ranges();
        let mut above_bytes = self.sacked_bytes();
        let mut lower = from;
        ranges
            .iter()
            .enumerate()
            .filter_map(move |(i, &(start, end))| {
                let hole = (lower.max(from), start);
                let is_lost = lost(above_bytes, ranges.len() - i, mss) || hole.0 < lost_below;
                above_bytes -= end - start;
                lower = end;
                (hole.0 < hole.1).then_some((hole.0, hole.1, is_lost))
            })
    }

    /// RFC 6675 §4 NextSeg rule 1: the first lost hole at or above `from`
    /// (lost by IsLost, or starting below `lost_below`).
    pub fn next_lost(&self, from: Seq, mss: usize, lost_below: Seq) -> Option<(Seq, Seq)> {
        self.holes_from(from, mss, lost_below)
            .find(|&(_, _, is_lost)| is_lost)
            .map(|(start, end, _)| (start, end))
    }

    /// RFC 6675 §4 NextSeg rule 3: the first hole at or above `from`, lost
    /// or not, below the highest SACKed byte.
    pub fn next_hole(&self, from: Seq) -> Option<(Seq, Seq)> {
        self.holes_from(from, usize::MAX / 4, from)
            .next()
            .map(|(start, end, _)| (start, end))
    }

    /// RFC 6675 §4 SetPipe: bytes of `[snd_una, snd_max)` still in the
    /// network — not SACKed, and not lost unless retransmitted (below
    /// `high_rxt`, RFC 6675's HighRxt + 1). Holes starting below
    /// `lost_below` are lost.
    pub fn pipe(
        &self,
        snd_una: Seq,
        snd_max: Seq,
        high_rxt: Seq,
        mss: usize,
        lost_below: Seq,
    ) -> usize {
        let mut pipe = 0;
        let mut upper = snd_max;
        let (mut above_bytes, mut above_count) = (0, 0);
        for &(start, end) in self.ranges().iter().rev() {
            let is_lost = lost(above_bytes, above_count, mss) || end < lost_below;
            pipe += in_network(end, upper, is_lost, high_rxt);
            above_bytes += end - start;
            above_count += 1;
            upper = start;
        }
        let is_lost = lost(above_bytes, above_count, mss) || snd_una < lost_below;
        pipe + in_network(snd_una, upper, is_lost, high_rxt)
    }

    /// Whether `seq` is SACKed.
    pub fn covers(&self, seq: Seq) -> bool {
        self.skip_sacked(seq) != seq
    }

    /// Bytes of `[from, to)` not SACKed.
    pub fn unsacked(&self, from: Seq, to: Seq) -> usize {
        let sacked: usize = self
            .ranges()
            .iter()
            .map(|&(start, end)| {
                let (s, e) = (start.max(from), end.min(to));
                if s < e {
                    e - s
                } else {
                    0
                }
            })
            .sum();
        to.diff(from).max(0) as usize - sacked
    }
}

fn lost(bytes_above: usize, ranges_above: usize, mss: usize) -> bool {
    ranges_above >= DUP_THRESH || bytes_above > (DUP_THRESH - 1) * mss
}

/// The bytes of the hole `[lo, hi)` that count in pipe: all of it if not
/// lost, else what was retransmitted (below `high_rxt`).
fn in_network(lo: Seq, hi: Seq, is_lost: bool, high_rxt: Seq) -> usize {
    if hi <= lo {
        return 0;
    }
    if !is_lost {
        return hi - lo;
    }
    if high_rxt > lo {
        high_rxt.min(hi) - lo
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1000;

    /// A scoreboard over `[base, base + 10⁷)` with the given offsets SACKed.
    fn board(base: u32, blocks: &[(u32, u32)]) -> Scoreboard {
        let mut sb = Scoreboard::default();
        let abs: Vec<_> = blocks
            .iter()
            .map(|&(l, r)| (base.wrapping_add(l), base.wrapping_add(r)))
            .collect();
        for block in abs {
            sb.on_sack(&[block], Seq(base), Seq(base.wrapping_add(10_000_000)));
        }
        sb
    }

    fn rel(sb: &Scoreboard, base: u32) -> Vec<(u32, u32)> {
        sb.ranges()
            .iter()
            .map(|&(s, e)| (s.0.wrapping_sub(base), e.0.wrapping_sub(base)))
            .collect()
    }

    #[test]
    fn blocks_merge_and_the_cumulative_ack_trims() {
        for base in [0, u32::MAX - 5_000] {
            let mut sb = board(base, &[(3000, 4000), (6000, 7000), (4000, 5000)]);
            assert_eq!(rel(&sb, base), [(3000, 5000), (6000, 7000)]);
            assert_eq!(sb.sacked_bytes(), 3000);
            let news = sb.on_sack(
                &[(base.wrapping_add(3500), base.wrapping_add(4500))],
                Seq(base),
                Seq(base.wrapping_add(20_000)),
            );
            assert!(!news.new_bytes, "already known");
            sb.advance(Seq(base) + 4000);
            assert_eq!(rel(&sb, base), [(4000, 5000), (6000, 7000)]);
            sb.advance(Seq(base) + 8000);
            assert!(sb.is_empty());
        }
    }

    #[test]
    fn blocks_outside_the_flight_are_not_believed() {
        let mut sb = Scoreboard::default();
        let news = sb.on_sack(&[(5000, 25_000), (0, 0)], Seq(1000), Seq(20_000));
        assert_eq!(news, SackNews::default());
        assert!(sb.is_empty());
        // 2^31 apart: each end is "before" the other; not a range.
        let news = sb.on_sack(&[(5000, 5000 + (1 << 31))], Seq(1000), Seq(20_000));
        assert_eq!(news, SackNews::default());
        let news = sb.on_sack(&[(10_000 + (1 << 31), 10_000)], Seq(1000), Seq(20_000));
        assert_eq!(news, SackNews::default());
        assert!(sb.is_empty());
    }

    #[test]
    fn a_dsack_is_recognised_and_not_recorded() {
        let mut sb = Scoreboard::default();
        // Below the cumulative ACK (RFC 2883 §4.1 example).
        let news = sb.on_sack(&[(500, 1000)], Seq(1000), Seq(9000));
        assert!(news.duplicate && !news.new_bytes);
        // Inside the second block (§4.2).
        let news = sb.on_sack(&[(3000, 3500), (3000, 5000)], Seq(1000), Seq(9000));
        assert!(news.duplicate && news.new_bytes);
        assert_eq!(sb.ranges(), [(Seq(3000), Seq(5000))]);
    }

    #[test]
    fn when_full_the_highest_range_gives_way() {
        let blocks: Vec<_> = (0..MAX_SACKED_RANGES as u32)
            .map(|i| (1000 + i * 2000, 2000 + i * 2000))
            .collect();
        let mut sb = board(0, &blocks);
        assert_eq!(sb.ranges().len(), MAX_SACKED_RANGES);
        let highest = sb.highest();
        // A new range below the highest: the highest goes.
        assert_eq!(sb.insert(Seq(100), Seq(200)), 100);
        assert_eq!(sb.ranges().len(), MAX_SACKED_RANGES);
        assert!(sb.highest() < highest);
        assert_eq!(sb.ranges()[0], (Seq(100), Seq(200)));
        // A new range above all: reported new, not kept.
        assert_eq!(sb.insert(Seq(5_000_000), Seq(5_000_500)), 500);
        assert!(sb.highest() < Some(Seq(5_000_000)));
    }

    /// What a delivery-rate sampler counts: bytes SACKed for the first
    /// time, and of those the cumulative ACK then covers, the ones SACKed
    /// before (delivered already).
    #[test]
    fn newly_sacked_and_forgotten_bytes_are_counted() {
        let mut sb = Scoreboard::default();
        let news = sb.on_sack(&[(2000, 3000)], Seq(0), Seq(10_000));
        assert_eq!(news.newly_sacked, 1000);
        let news = sb.on_sack(&[(2500, 4000), (6000, 7000)], Seq(0), Seq(10_000));
        assert_eq!(
            news.newly_sacked,
            1000 + 1000,
            "only the new part of an overlap"
        );
        let news = sb.on_sack(&[(2000, 4000)], Seq(0), Seq(10_000));
        assert_eq!(news.newly_sacked, 0);
        assert!(!news.new_bytes);
        assert_eq!(sb.advance(Seq(1000)), 0);
        assert_eq!(sb.advance(Seq(3000)), 1000, "half of [2000, 4000)");
        assert_eq!(sb.advance(Seq(8000)), 1000 + 1000);
        assert!(sb.is_empty());
    }

    #[test]
    fn is_lost_follows_rfc6675() {
        // 2·SMSS SACKed above is not enough, more than that is.
        let sb = board(0, &[(1000, 3000)]);
        assert!(!sb.is_lost(Seq(0), MSS));
        let sb = board(0, &[(1000, 3001)]);
        assert!(sb.is_lost(Seq(0), MSS));
        // Three discontiguous ranges of any size.
        let sb = board(0, &[(1000, 1100), (2000, 2100), (3000, 3100)]);
        assert!(sb.is_lost(Seq(0), MSS));
        assert!(!sb.is_lost(Seq(1500), MSS), "two ranges above");
    }

    #[test]
    fn next_seg_and_pipe() {
        // Holes [0,1000) lost (4000 SACKed above), [2000,3000) lost
        // (3000 above), [5000,6000) not lost (1000 above); tail
        // [7000,10000) in flight.
        let sb = board(0, &[(1000, 2000), (3000, 5000), (6000, 7000)]);
        let (una, max) = (Seq(0), Seq(10_000));
        assert_eq!(sb.next_lost(una, MSS, una), Some((Seq(0), Seq(1000))));
        assert_eq!(
            sb.next_lost(Seq(500), MSS, una),
            Some((Seq(500), Seq(1000)))
        );
        assert_eq!(
            sb.next_lost(Seq(1000), MSS, una),
            Some((Seq(2000), Seq(3000)))
        );
        assert_eq!(sb.next_lost(Seq(3000), MSS, una), None);
        assert_eq!(sb.next_hole(Seq(3000)), Some((Seq(5000), Seq(6000))));
        assert_eq!(sb.next_hole(Seq(7000)), None);
        // Nothing retransmitted: pipe is the hole that is not lost + the tail.
        assert_eq!(sb.pipe(una, max, una, MSS, una), 1000 + 3000);
        // The first hole retransmitted: it counts again.
        assert_eq!(sb.pipe(una, max, Seq(1000), MSS, una), 1000 + 1000 + 3000);
        assert_eq!(
            sb.pipe(una, max, Seq(2500), MSS, una),
            1000 + 500 + 1000 + 3000
        );
        // Everything below 5000 marked lost (a tail-loss probe's rule):
        // the hole at 5000 is not, the one before it is.
        assert_eq!(sb.next_lost(Seq(3000), MSS, Seq(5000)), None);
        assert_eq!(
            sb.next_lost(Seq(3000), MSS, Seq(5001)),
            Some((Seq(5000), Seq(6000)))
        );
        assert_eq!(sb.pipe(una, max, una, MSS, Seq(5001)), 3000);
        assert!(sb.covers(Seq(1000)) && !sb.covers(Seq(2000)));
        assert_eq!(sb.skip_sacked(Seq(1500)), Seq(2000));
        assert_eq!(sb.skip_sacked(Seq(2500)), Seq(2500));
        assert_eq!(sb.hole_end(Seq(2500)), Some(Seq(3000)));
        assert_eq!(sb.hole_end(Seq(7000)), None);
        assert_eq!(sb.unsacked(Seq(0), Seq(4000)), 2000);
        assert_eq!(
            sb.unsacked(Seq(1500), Seq(10_000)),
            10_000 - 1500 - 500 - 2000 - 1000
        );
    }
}
