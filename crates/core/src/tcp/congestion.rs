//! Congestion control: slow start and congestion avoidance (RFC 5681 §3.1),
//! fast retransmit and NewReno fast recovery (RFC 6582 §3.2).

use super::seq::Seq;

/// Congestion window state, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct NewReno {
    cwnd: usize,
    ssthresh: usize,
    mss: usize,
    /// Bytes acknowledged in congestion avoidance since cwnd last grew.
    acked_in_ca: usize,
    /// In fast recovery until an ACK covers `recover` (RFC 6582 §3.2).
    recover: Option<Seq>,
    dup_acks: u8,
}

/// What the sender should do after an ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckAction {
    Nothing,
    /// Retransmit the segment at SND.UNA now (fast retransmit, or a partial
    /// ACK in recovery).
    RetransmitFirst,
}

impl NewReno {
    /// RFC 5681 §3.1: IW = min(4·MSS, max(2·MSS, 4380)) (RFC 3390), and an
    /// arbitrarily high initial ssthresh.
    pub fn new(mss: usize) -> Self {
        let iw = (4 * mss).min((2 * mss).max(4380));
        Self {
            cwnd: iw,
            ssthresh: usize::MAX,
            mss,
            acked_in_ca: 0,
            recover: None,
            dup_acks: 0,
        }
    }

    pub fn cwnd(&self) -> usize {
        self.cwnd
    }

    pub fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    pub fn in_recovery(&self) -> bool {
        self.recover.is_some()
    }

    /// New data acknowledged: `acked` bytes, ACK number `ack`, with
    /// `flight` bytes still outstanding after it.
    pub fn on_ack(&mut self, ack: Seq, acked: usize, flight: usize) -> AckAction {
        self.dup_acks = 0;
        if let Some(recover) = self.recover {
            if ack >= recover {
                // RFC 6582 §3.2 step 3, full ACK: deflate to min(ssthresh,
                // max(FlightSize, MSS) + MSS).
                self.cwnd = self.ssthresh.min(flight.max(self.mss) + self.mss);
                self.recover = None;
                return AckAction::Nothing;
            }
            // Partial ACK: retransmit the next hole, deflate by the amount
            // acknowledged, add back one MSS if at least one was acked.
            self.cwnd = self.cwnd.saturating_sub(acked);
            if acked >= self.mss {
                self.cwnd += self.mss;
            }
            return AckAction::RetransmitFirst;
        }
        if self.cwnd < self.ssthresh {
            // Slow start counting the bytes acknowledged (RFC 3465), as
            // Linux does, without RFC 5681 §3.1's per-ACK cap of one SMSS:
            // a receiver that coalesces ACKs (GRO, or a whole flight
            // arriving in one batch) acknowledges many segments per ACK,
            // and the cap would turn slow start linear (measured in the
            // simulation: one ACK per flight, +1 MSS per round trip). Never
            // past ssthresh in one step.
            self.cwnd = (self.cwnd + acked).min(self.ssthresh.max(self.cwnd + self.mss));
        } else {
            // Congestion avoidance: one MSS per cwnd of data acknowledged.
            self.acked_in_ca += acked;
            if self.acked_in_ca >= self.cwnd {
                self.acked_in_ca -= self.cwnd;
                self.cwnd += self.mss;
            }
        }
        AckAction::Nothing
    }

    /// A duplicate ACK (RFC 5681 §2 definition) while `flight` bytes are
    /// outstanding and `snd_max` is the highest sequence sent.
    pub fn on_duplicate_ack(&mut self, flight: usize, snd_max: Seq) -> AckAction {
        if self.recover.is_some() {
            // §3.2 step 4: inflate by one MSS for each further dup ACK.
            self.cwnd += self.mss;
            return AckAction::Nothing;
        }
        self.dup_acks += 1;
        if self.dup_acks == 3 {
            // §3.2 steps 1–2: ssthresh = max(FlightSize/2, 2·SMSS),
            // retransmit, cwnd = ssthresh + 3·SMSS.
            self.ssthresh = (flight / 2).max(2 * self.mss);
            self.cwnd = self.ssthresh + 3 * self.mss;
            self.recover = Some(snd_max);
            return AckAction::RetransmitFirst;
        }
        AckAction::Nothing
    }

    /// RFC 5681 §3.1 eq. 4 and the RTO rule: ssthresh = max(FlightSize/2,
    /// 2·SMSS), cwnd = one segment (the loss window).
    pub fn on_retransmit_timeout(&mut self, flight: usize) {
        self.ssthresh = (flight / 2).max(2 * self.mss);
        self.cwnd = self.mss;
        self.recover = None;
        self.dup_acks = 0;
        self.acked_in_ca = 0;
    }

    /// The MSS changed (negotiated after construction).
    pub fn set_mss(&mut self, mss: usize) {
        *self = Self::new(mss);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_window_follows_rfc3390() {
        assert_eq!(NewReno::new(1460).cwnd(), 4380);
        assert_eq!(NewReno::new(536).cwnd(), 2144);
        assert_eq!(NewReno::new(8960).cwnd(), 17920);
    }

    #[test]
    fn slow_start_then_avoidance() {
        let mut cc = NewReno::new(1000);
        let start = cc.cwnd();
        cc.on_ack(Seq(1000), 1000, 0);
        assert_eq!(
            cc.cwnd(),
            start + 1000,
            "slow start grows by one MSS per ACK"
        );
        cc.on_retransmit_timeout(10_000);
        assert_eq!((cc.cwnd(), cc.ssthresh()), (1000, 5000));
        for i in 0..4 {
            cc.on_ack(Seq(2000 + i), 1000, 0);
        }
        assert_eq!(cc.cwnd(), 5000, "back to ssthresh");
        cc.on_ack(Seq(9000), 4999, 0);
        assert_eq!(cc.cwnd(), 5000, "less than a window acked: no growth yet");
        cc.on_ack(Seq(9001), 1, 0);
        assert_eq!(cc.cwnd(), 6000, "a whole window acked: one MSS more");
    }

    #[test]
    fn three_dup_acks_enter_recovery_and_a_full_ack_leaves_it() {
        let mut cc = NewReno::new(1000);
        assert_eq!(cc.on_duplicate_ack(8000, Seq(9000)), AckAction::Nothing);
        assert_eq!(cc.on_duplicate_ack(8000, Seq(9000)), AckAction::Nothing);
        assert_eq!(
            cc.on_duplicate_ack(8000, Seq(9000)),
            AckAction::RetransmitFirst
        );
        assert!(cc.in_recovery());
        assert_eq!(cc.cwnd(), 4000 + 3000);
        cc.on_duplicate_ack(8000, Seq(9000));
        assert_eq!(cc.cwnd(), 8000, "inflated");
        assert_eq!(
            cc.on_ack(Seq(5000), 2000, 4000),
            AckAction::RetransmitFirst,
            "partial ACK"
        );
        assert!(cc.in_recovery());
        assert_eq!(cc.on_ack(Seq(9000), 4000, 0), AckAction::Nothing);
        assert!(!cc.in_recovery());
        assert_eq!(cc.cwnd(), 2000, "min(ssthresh, max(flight, MSS) + MSS)");
    }
}
