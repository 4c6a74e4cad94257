//! Loss detection beyond duplicate ACKs, after RACK-TLP (RFC 8985):
//!
//! - **Tail-loss probes** (§7): when the last segments of a flight are
//!   lost, no later segment arrives to be SACKed, and without a probe only
//!   the retransmission timeout would notice. After PTO = 2·SRTT (plus the
//!   peer's delayed-ACK allowance, §7.2) without an ACK, one segment goes
//!   out — new data if the peer's window allows, else the last segment
//!   again — so that its ACK tells, by SACK, what is missing.
//! - **What a delivered probe proves** (§6.2, RACK's rule): a hole below
//!   a probe that the peer SACKed was sent before the probe, at least a PTO
//!   earlier; it is lost, however few bytes are SACKed above it.
//! - **Holes past the reordering window** (§6.2–6.3): a hole below data
//!   the peer SACKed was sent before that data; once the reordering window
//!   (SRTT/4, at least 1 ms) has passed since new SACK information arrived
//!   and the hole is still there, it is lost — without waiting for
//!   DupThresh segments above it, which a small window never sends.
//! - **Lost retransmissions** (§6.2 again): RFC 6675 retransmits a hole
//!   once per recovery, so a retransmission lost in turn waited for the
//!   timeout. When the peer SACKs data first sent after the latest
//!   retransmission while holes retransmitted before it are still missing,
//!   those retransmissions were lost: their holes are lost again and
//!   NextSeg starts over from SND.UNA. (Marking from the round's first
//!   retransmission instead took later ones, still queued behind new
//!   data, for lost: 1553 segments dropped where 345 had been.)
//!
//! RACK proper keeps a send time per segment and judges by time, with a
//! reordering window. This keeps three marks per connection (the probe's
//! range, SND.MAX at the latest retransmission, `lost_below`) and judges by order
//! instead: "sent later, delivered, yet this is missing". It costs no
//! memory per segment; it is wrong where the path reorders by more than
//! a round of retransmissions (a needless retransmission, which a D-SACK
//! then reports). A time test alone misjudged a path whose queue grew
//! during recovery: the round trip of the retransmissions outgrew SRTT and
//! held retransmissions counted as lost.

use std::time::Duration;

use super::timers::Timer;
use super::{Conn, Ctx};
use crate::tcp::seq::Seq;
use crate::tcp::time::Instant;

/// RFC 8985 §7.2 WCDelAckT: the longest a receiver may delay the ACK of a
/// lone segment.
const WORST_CASE_DELAYED_ACK: Duration = Duration::from_millis(200);
/// RFC 8985 §7.2: allowance for a receiver's delayed ACK otherwise.
const DELAYED_ACK_ALLOWANCE: Duration = Duration::from_millis(2);
/// The shortest reordering window (RFC 8985 §6.2 derives it from the
/// RTT; on a path of tens of microseconds that is below any timer's
/// precision).
const MIN_REORDER_WINDOW: Duration = Duration::from_millis(1);

impl Conn {
    /// RFC 8985 §7.2: (re)arms the probe timer after a segment went out or
    /// an ACK acknowledged data — with SACK on, data in flight, an RTT
    /// measured, no probe in flight, and not in a timeout's recovery;
    /// otherwise stops it. (RFC 8985 arms no probe in fast recovery; but a
    /// recovery whose last retransmissions and the segments after them are
    /// lost has nothing but the timeout left — against Linux over a lossy
    /// veth such timeouts were most of what remained: 6–9 per 16 MiB
    /// transfer before, 2–5 after.)
    pub fn arm_loss_probe(&mut self, now: Instant) {
        let srtt = self.rtt.srtt();
        let eligible = self.sack_permitted
            && self.flight() > 0
            && self.tlp.is_none()
            && self.probe_may_help()
            && self.snd_nxt == self.snd_max
            && self.state.is_synchronized();
        match srtt {
            Some(srtt) if eligible => {
                let mut pto = 2 * srtt;
                pto += if self.flight() <= self.send_mss() {
                    WORST_CASE_DELAYED_ACK
                } else {
                    DELAYED_ACK_ALLOWANCE
                };
                self.timers
                    .set(Timer::LossProbe, now + pto.min(self.rtt.rto()));
            }
            _ => self.timers.stop(Timer::LossProbe),
        }
    }

    /// No recovery, or a fast recovery (not a timeout's).
    fn probe_may_help(&self) -> bool {
        self.cc.may_enter_recovery() || self.cc.in_recovery()
    }

    /// The probe timer fired: a probe goes out at the next opportunity.
    pub fn on_loss_probe_timeout(&mut self, ctx: &mut Ctx<'_>) {
        if self.flight() > 0 && self.tlp.is_none() && self.probe_may_help() {
            ctx.stats.loss_probes += 1;
            self.tlp_pending = true;
        }
    }

    /// RFC 8985 §7.3: what the probe sends — a new segment if there is
    /// data the peer's window takes, else the last segment sent again — as
    /// (start, payload length, with FIN).
    pub fn loss_probe_segment(&self) -> Option<(Seq, usize, bool)> {
        let next = self.snd_max.min(self.data_end());
        let unsent = self.data_end().diff(next).max(0) as usize;
        let receive_room = (self.snd_una + self.snd_wnd as usize).diff(next).max(0) as usize;
        if unsent > 0 && receive_room > 0 {
            let len = unsent.min(self.max_payload()).min(receive_room);
            let fin = self.fin_queued && next + len == self.data_end();
            return Some((next, len, fin));
        }
        let end = self.data_end();
        let len = (end - self.send_buf_seq()).min(self.max_payload());
        let start = Seq(end.0.wrapping_sub(len as u32));
        let fin = self.fin_sent() && !self.fin_acked();
        (len > 0 || fin).then_some((start, len, fin))
    }

    /// An ACK arrived while a probe was in flight (after the scoreboard took
    /// its SACK blocks). True if it proves the holes below the probe lost.
    pub fn settle_loss_probe(&mut self, ack: Seq) -> bool {
        let Some((start, end)) = self.tlp else {
            return false;
        };
        if ack >= end {
            // Acknowledged with everything before it: whatever was lost,
            // the probe repaired (RFC 8985 §7.4's reaction to that, a
            // window reduction, is not done).
            self.tlp = None;
            return false;
        }
        let last = Seq(end.0.wrapping_sub(1));
        if self.sacked().is_some_and(|sb| sb.covers(last)) {
            self.tlp = None;
            self.lost_below = self.lost_below.max(start);
            return true;
        }
        false
    }

    /// New SACK information arrived: the reordering window starts (unless
    /// it already runs).
    pub fn arm_reorder(&mut self, now: Instant) {
        if self.timers.is_set(Timer::Reorder) || self.snd_nxt < self.snd_max {
            return;
        }
        let window = self.rtt.srtt().map_or(MIN_REORDER_WINDOW, |srtt| {
            (srtt / 4).max(MIN_REORDER_WINDOW)
        });
        self.timers.set(Timer::Reorder, now + window);
    }

    /// The reordering window ran out: every hole below the highest SACKed
    /// range is lost; a fast recovery starts if none runs.
    pub fn on_reorder_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let Some(highest) = self.sacked().and_then(|sb| sb.ranges().last().copied()) else {
            return;
        };
        if self.snd_nxt < self.snd_max || highest.0 <= self.lost_below {
            return;
        }
        self.lost_below = highest.0;
        if self.cc.may_enter_recovery() && self.flight() > 0 {
            self.enter_fast_recovery(ctx);
        }
    }

    /// In loss recovery, an ACK brought new SACK information: if it SACKed
    /// data first sent after the latest retransmission, what was
    /// retransmitted and is still missing was lost again (see the module
    /// doc).
    pub fn detect_lost_retransmissions(&mut self, ctx: &mut Ctx<'_>) {
        let (Some(round), Some(highest)) = (self.rxt_round, self.scoreboard.highest()) else {
            return;
        };
        if highest <= round || self.high_rxt <= self.snd_una {
            return;
        }
        ctx.stats.lost_retransmissions += 1;
        self.lost_below = self.lost_below.max(self.high_rxt);
        self.high_rxt = self.snd_una;
        self.rxt_round = None;
    }
}
