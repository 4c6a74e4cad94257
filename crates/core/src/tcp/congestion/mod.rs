//! Congestion control: the sender's congestion window.
//!
//! [`Congestion`] holds what every algorithm shares: the window and
//! ssthresh (RFC 5681 §3.1), the initial window (RFC 6928), slow start with
//! HyStart++ (RFC 9406, `hystart.rs`), fast retransmit and NewReno fast
//! recovery (RFC 6582 §3.2), and the retransmission-timeout rule. What an
//! algorithm decides sits behind [`Controller`]: how the window grows in
//! congestion avoidance and how far it shrinks at a congestion event —
//! [`NewReno`] (RFC 5681) and [`Cubic`] (RFC 9438). A model-based
//! algorithm ([`Bbr`]) also implements [`PathModel`]: it sets the window
//! itself from every ACK's [`Delivery`] instead of growing it in slow start
//! and congestion avoidance, decides what a loss does to it, and gives a
//! pacing rate (`conn/pacing.rs` spreads the segments at it). Adding one
//! is a new `Controller` and an [`Algorithm`] variant; the state machine
//! only ever calls [`Congestion`].
//!
//! Units: bytes for windows, the engine's clock for time. Nothing here
//! allocates; a connection carries its controller by value (an enum, not a
//! box, so no allocation per connection), and calls it through a
//! `&mut dyn Controller` borrowed from that enum.

mod bbr;
mod cubic;
mod delivery;
mod hystart;
mod newreno;

use std::time::Duration;

pub use bbr::{Bbr, Mode as BbrMode};
pub use cubic::Cubic;
use hystart::HyStart;
pub use newreno::NewReno;

use super::scoreboard::DUP_THRESH;
use super::seq::Seq;
use super::time::Instant;

/// Which algorithm a connection uses (`[tcp] congestion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlgorithmKind {
    /// RFC 9438, Linux's default.
    #[default]
    Cubic,
    /// RFC 5681 congestion avoidance (one MSS per window per round trip).
    NewReno,
    /// BBR v1 (`bbr.rs`): the window and a pacing rate from a model of
    /// the path, not from loss.
    Bbr,
}

/// The congestion window and slow-start threshold, in bytes, and the MSS
/// they count in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub cwnd: usize,
    pub ssthresh: usize,
    pub mss: usize,
}

/// What one ACK tells an algorithm besides the bytes it acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct AckSample {
    pub now: Instant,
    /// The RTT measured from this ACK, if any (timestamps: every ACK).
    pub rtt: Option<Duration>,
    /// The smoothed RTT, once measured.
    pub srtt: Option<Duration>,
    /// The highest sequence number sent so far: where the current round
    /// ends (HyStart++ rounds).
    pub snd_nxt: Seq,
    /// The ACK number.
    pub ack: Seq,
    /// Bytes that were in flight when this ACK arrived (before it).
    pub flight_before: usize,
}

/// An algorithm's decisions (RFC 5681 §3.1's two places an algorithm
/// differs): growth in congestion avoidance, and the reduction at a
/// congestion event.
pub trait Controller {
    /// Congestion avoidance (`cwnd ≥ ssthresh`, not in recovery): `acked`
    /// bytes newly acknowledged.
    fn avoid(&mut self, window: &mut Window, acked: usize, sample: &AckSample);

    /// A congestion event detected by ACKs (fast retransmit, or an ECN
    /// echo) at `now` with `flight` bytes outstanding: the new ssthresh.
    fn reduce(&mut self, window: &Window, flight: usize, now: Instant) -> usize;

    /// A retransmission timeout: the new ssthresh (cwnd becomes one MSS).
    fn timeout(&mut self, window: &Window, flight: usize, now: Instant) -> usize {
        self.reduce(window, flight, now)
    }

    /// A model-based algorithm: it sets the window itself (see
    /// [`PathModel`]); `avoid` and `reduce` are then not used for it.
    fn model(&mut self) -> Option<&mut dyn PathModel> {
        None
    }

    /// Bytes per second to pace at; `None`: no pacing (the window's
    /// segments go as the ACKs clock them out).
    fn pacing_rate(&self) -> Option<f64> {
        None
    }
}

/// What one ACK delivered, for a model-based algorithm.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub now: Instant,
    /// Bytes this ACK reported delivered for the first time: cumulatively
    /// acknowledged and not SACKed before, or newly SACKed.
    pub bytes: usize,
    /// Bytes in the network (RFC 6675's pipe) before this ACK and after it.
    pub prior_pipe: usize,
    pub pipe: usize,
    /// The RTT this ACK measured to the microsecond (a timed segment's;
    /// not a millisecond timestamp's), and the smoothed one.
    pub rtt: Option<Duration>,
    pub srtt: Option<Duration>,
    /// The sender had nothing more to send though the window had room.
    pub app_limited: bool,
}

/// A model-based algorithm's side of [`Congestion`].
pub trait PathModel {
    /// Every ACK that delivered data, and every ACK that measured an RTT:
    /// update the model, set the window.
    fn on_delivery(&mut self, window: &mut Window, delivery: &Delivery);
    /// A fast recovery starts with `pipe` bytes in the network.
    fn on_recovery_start(&mut self, window: &mut Window, pipe: usize);
    /// A fast recovery, or the recovery after a timeout, is over.
    fn on_recovery_end(&mut self, window: &mut Window);
    /// A retransmission timeout (`recovery`: during loss recovery).
    fn on_timeout(&mut self, window: &mut Window, recovery: bool);
}

/// The configured algorithm, by value.
#[derive(Debug, Clone)]
pub enum Algorithm {
    Cubic(Cubic),
    NewReno(NewReno),
    Bbr(Bbr),
}

impl Algorithm {
    pub fn new(kind: AlgorithmKind) -> Self {
        match kind {
            AlgorithmKind::Cubic => Self::Cubic(Cubic::default()),
            AlgorithmKind::NewReno => Self::NewReno(NewReno::default()),
            AlgorithmKind::Bbr => Self::Bbr(Bbr::new()),
        }
    }

    pub fn kind(&self) -> AlgorithmKind {
        match self {
            Self::Cubic(_) => AlgorithmKind::Cubic,
            Self::NewReno(_) => AlgorithmKind::NewReno,
            Self::Bbr(_) => AlgorithmKind::Bbr,
        }
    }

    fn controller(&mut self) -> &mut dyn Controller {
        match self {
            Self::Cubic(c) => c,
            Self::NewReno(n) => n,
            Self::Bbr(b) => b,
        }
    }

    fn controller_ref(&self) -> &dyn Controller {
        match self {
            Self::Cubic(c) => c,
            Self::NewReno(n) => n,
            Self::Bbr(b) => b,
        }
    }
}

/// What the sender should do after an ACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckAction {
    Nothing,
    /// Retransmit the segment at SND.UNA now (fast retransmit, or a partial
    /// ACK in recovery).
    RetransmitFirst,
}

/// Where a connection stands in loss recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    Open,
    /// Fast recovery until an ACK covers `recover` (RFC 6582 §3.2's
    /// "recover", RFC 6675's RecoveryPoint). With `sack`, RFC 6675: the
    /// window stays at ssthresh and pipe decides what goes; without,
    /// NewReno's inflation by one MSS per duplicate ACK.
    Fast {
        recover: Seq,
        sack: bool,
    },
    /// Congestion Window Reduced (RFC 3168 §6.1.2): the window was cut
    /// for an ECN echo and holds until an ACK covers `recover`, what had
    /// been sent when the echo came (one reduction per window of data).
    /// Nothing is lost: no retransmission, and a loss detected meanwhile
    /// still starts a fast recovery (without cutting the window again).
    Cwr {
        recover: Seq,
    },
    /// After a retransmission timeout, until an ACK covers what had been
    /// sent before it: duplicate ACKs start no fast recovery meanwhile
    /// (RFC 6675 §5.1, RFC 6582 §4).
    Timeout {
        recover: Seq,
    },
}

/// A connection's congestion state (see the module doc).
#[derive(Debug, Clone)]
pub struct Congestion {
    window: Window,
    algorithm: Algorithm,
    slow_start: HyStart,
    /// Segments in the initial window (RFC 6928: 10).
    initial_segments: u16,
    recovery: Recovery,
    dup_acks: u8,
}

impl Congestion {
    /// RFC 6928: IW = min(N·MSS, max(2·MSS, 14600)) for N = 10 (the
    /// bound scales with N when configured otherwise), and an arbitrarily
    /// high initial ssthresh (RFC 5681 §3.1).
    pub fn new(kind: AlgorithmKind, initial_segments: u16, mss: usize) -> Self {
        Self {
            window: Window {
                cwnd: initial_window(initial_segments, mss),
                ssthresh: usize::MAX,
                mss,
            },
            algorithm: Algorithm::new(kind),
            slow_start: HyStart::default(),
            initial_segments,
            recovery: Recovery::Open,
            dup_acks: 0,
        }
    }

    pub fn cwnd(&self) -> usize {
        self.window.cwnd
    }

    pub fn ssthresh(&self) -> usize {
        self.window.ssthresh
    }

    /// In fast recovery.
    pub fn in_recovery(&self) -> bool {
        matches!(self.recovery, Recovery::Fast { .. })
    }

    /// In fast recovery or recovering from a timeout.
    pub fn in_loss_recovery(&self) -> bool {
        matches!(
            self.recovery,
            Recovery::Fast { .. } | Recovery::Timeout { .. }
        )
    }

    /// Neither in fast recovery nor recovering from a timeout: loss
    /// detected now starts a fast recovery.
    pub fn may_enter_recovery(&self) -> bool {
        matches!(self.recovery, Recovery::Open | Recovery::Cwr { .. })
    }

    /// The window was cut for an ECN echo and the data sent before it is
    /// not yet all acknowledged.
    pub fn in_cwr(&self) -> bool {
        matches!(self.recovery, Recovery::Cwr { .. })
    }

    /// An ACK with ECN-Echo (RFC 3168 §6.1.2) with `flight` bytes
    /// outstanding and `snd_max` the highest sequence sent: the same
    /// reduction as a loss (ssthresh from the algorithm — RFC 9438 §4.6's
    /// β for CUBIC, half the flight for NewReno — and cwnd = ssthresh), at
    /// most once per window of data and not during loss recovery, which
    /// has already cut it. True if the window was cut: the next new data
    /// carries CWR.
    pub fn on_congestion_echo(&mut self, flight: usize, snd_max: Seq, now: Instant) -> bool {
        if self.recovery != Recovery::Open {
            return false;
        }
        if self.model_based() {
            // A model-based algorithm keeps its window; CWR still goes, so
            // that the peer stops echoing.
            self.recovery = Recovery::Cwr { recover: snd_max };
            return true;
        }
        let ssthresh = self
            .algorithm
            .controller()
            .reduce(&self.window, flight, now);
        self.window.ssthresh = ssthresh.max(2 * self.window.mss);
        self.window.cwnd = self.window.cwnd.min(self.window.ssthresh);
        self.slow_start.end();
        self.recovery = Recovery::Cwr { recover: snd_max };
        true
    }

    /// New data acknowledged: `acked` bytes, ACK number `ack`, with
    /// `flight` bytes still outstanding after it.
    pub fn on_ack(
        &mut self,
        ack: Seq,
        acked: usize,
        flight: usize,
        sample: &AckSample,
    ) -> AckAction {
        self.dup_acks = 0;
        let mss = self.window.mss;
        let model = self.algorithm.controller().model();
        let model_based = model.is_some();
        match self.recovery {
            Recovery::Fast { recover, sack } if ack >= recover => {
                // RFC 6582 §3.2 step 3, full ACK: deflate to min(ssthresh,
                // max(FlightSize, MSS) + MSS). With SACK the window never
                // inflated: it stays at ssthresh (RFC 6675 §5).
                if let Some(model) = model {
                    model.on_recovery_end(&mut self.window);
                } else if !sack {
                    self.window.cwnd = self.window.ssthresh.min(flight.max(mss) + mss);
                }
                self.recovery = Recovery::Open;
                return AckAction::Nothing;
            }
            Recovery::Fast { sack: true, .. } => return AckAction::Nothing,
            Recovery::Fast { sack: false, .. } => {
                // Partial ACK: retransmit the next hole, deflate by the
                // amount acknowledged, add back one MSS if at least one was
                // acked.
                if !model_based {
                    self.window.cwnd = self.window.cwnd.saturating_sub(acked);
                    if acked >= mss {
                        self.window.cwnd += mss;
                    }
                }
                return AckAction::RetransmitFirst;
            }
            Recovery::Timeout { recover } if ack >= recover => {
                if let Some(model) = model {
                    model.on_recovery_end(&mut self.window);
                }
                self.recovery = Recovery::Open
            }
            Recovery::Cwr { recover } if ack >= recover => self.recovery = Recovery::Open,
            // The reduced window holds for the rest of the window of data
            // (Linux's CWR state grows nothing either).
            Recovery::Cwr { .. } => return AckAction::Nothing,
            Recovery::Timeout { .. } | Recovery::Open => {}
        }
        if model_based {
            return AckAction::Nothing;
        }
        if !self.cwnd_limited(sample.flight_before) {
            // The window was not what held the sender back (the receiver's
            // window, or the application): growing it would only license
            // a burst later (RFC 7661 §4.3; Linux's tcp_is_cwnd_limited).
            return AckAction::Nothing;
        }
        if self.window.cwnd < self.window.ssthresh {
            self.slow_start.on_ack(&mut self.window, acked, sample);
        } else {
            self.algorithm
                .controller()
                .avoid(&mut self.window, acked, sample);
        }
        AckAction::Nothing
    }

    /// Whether `flight` bytes outstanding used the window: in slow start,
    /// at least half of it (the window doubles per round trip); after it,
    /// all but a segment.
    fn cwnd_limited(&self, flight: usize) -> bool {
        let w = &self.window;
        if w.cwnd < w.ssthresh {
            flight.saturating_mul(2) >= w.cwnd
        } else {
            flight.saturating_add(w.mss) >= w.cwnd
        }
    }

    /// A duplicate ACK (RFC 5681 §2, or RFC 6675 §2 with new SACK
    /// information). True once DupThresh of them arrived outside recovery:
    /// time for a fast retransmit. In NewReno's fast recovery, inflates the
    /// window by one MSS (RFC 6582 §3.2 step 4).
    pub fn on_duplicate_ack(&mut self) -> bool {
        let model_based = self.model_based();
        match self.recovery {
            Recovery::Open | Recovery::Cwr { .. } => {
                self.dup_acks = self.dup_acks.saturating_add(1);
                usize::from(self.dup_acks) >= DUP_THRESH
            }
            Recovery::Fast { sack: false, .. } if !model_based => {
                self.window.cwnd += self.window.mss;
                false
            }
            Recovery::Fast { .. } | Recovery::Timeout { .. } => false,
        }
    }

    /// A loss detected by ACKs (DupThresh duplicate ACKs, or RFC 6675's
    /// IsLost at SND.UNA) with `flight` bytes outstanding and `snd_max` the
    /// highest sequence sent: ssthresh from the algorithm (RFC 5681 eq. 4
    /// for NewReno, β·cwnd for CUBIC); cwnd = ssthresh with SACK (RFC 6675
    /// §5 step 4.2), ssthresh + 3·SMSS without (RFC 6582 §3.2 step 2).
    /// Inside a window already cut for an ECN echo the cut is not made
    /// again (Linux's `tcp_enter_recovery` from CWR likewise). A
    /// model-based algorithm sets the window from `pipe`, the bytes still
    /// in the network, instead.
    pub fn enter_recovery(
        &mut self,
        flight: usize,
        pipe: usize,
        snd_max: Seq,
        now: Instant,
        sack: bool,
    ) {
        let in_cwr = self.in_cwr();
        if let Some(model) = self.algorithm.controller().model() {
            model.on_recovery_start(&mut self.window, pipe);
        } else {
            if !in_cwr {
                let ssthresh = self
                    .algorithm
                    .controller()
                    .reduce(&self.window, flight, now);
                self.window.ssthresh = ssthresh.max(2 * self.window.mss);
            }
            self.window.cwnd = self.window.ssthresh;
            if !sack {
                self.window.cwnd += 3 * self.window.mss;
            }
        }
        self.slow_start.end();
        self.recovery = Recovery::Fast {
            recover: snd_max,
            sack,
        };
        self.dup_acks = 0;
    }

    /// The RTO rule (RFC 5681 §3.1, RFC 9438 §4.8): ssthresh from the
    /// algorithm, cwnd = one segment (the loss window). Slow start after it
    /// is the standard one (RFC 9406 §4.3: HyStart++ only for the first).
    /// No fast recovery until `snd_max`, the highest sequence sent, is
    /// acknowledged.
    pub fn on_retransmit_timeout(&mut self, flight: usize, now: Instant, snd_max: Seq) {
        let recovery = self.in_loss_recovery();
        if let Some(model) = self.algorithm.controller().model() {
            model.on_timeout(&mut self.window, recovery);
        } else {
            let ssthresh = self
                .algorithm
                .controller()
                .timeout(&self.window, flight, now);
            self.window.ssthresh = ssthresh.max(2 * self.window.mss);
            self.window.cwnd = self.window.mss;
        }
        self.slow_start.end();
        self.recovery = Recovery::Timeout { recover: snd_max };
        self.dup_acks = 0;
    }

    /// A retransmission timeout found spurious (RFC 4015 §3, `conn/undo.rs`):
    /// the window and ssthresh back to at least what they were before it
    /// (`cwnd`, `ssthresh`), and loss recovery over.
    pub fn undo_timeout(&mut self, cwnd: usize, ssthresh: usize) {
        self.window.cwnd = self.window.cwnd.max(cwnd);
        self.window.ssthresh = self.window.ssthresh.max(ssthresh);
        self.recovery = Recovery::Open;
        self.dup_acks = 0;
    }

    /// An ACK delivered data or measured an RTT: a model-based algorithm
    /// updates its model and sets the window (nothing for the others,
    /// whose window moved in [`on_ack`](Self::on_ack)).
    pub fn on_delivery(&mut self, delivery: &Delivery) {
        if let Some(model) = self.algorithm.controller().model() {
            model.on_delivery(&mut self.window, delivery);
        }
    }

    /// The algorithm models the path ([`PathModel`]): it wants
    /// [`on_delivery`](Self::on_delivery), the others do not.
    pub fn model_based(&mut self) -> bool {
        self.algorithm.controller().model().is_some()
    }

    /// Bytes per second to pace at, if the algorithm paces.
    pub fn pacing_rate(&self) -> Option<f64> {
        self.algorithm.controller_ref().pacing_rate()
    }

    /// The algorithm, for inspection.
    pub fn algorithm(&self) -> &Algorithm {
        &self.algorithm
    }

    /// In the recovery that follows a retransmission timeout.
    pub fn in_timeout_recovery(&self) -> bool {
        matches!(self.recovery, Recovery::Timeout { .. })
    }

    /// The path MTU fell (`conn/pmtu.rs`): the window keeps its bytes and
    /// counts in the smaller segment from now on (at least two of them).
    pub fn set_segment_size(&mut self, mss: usize) {
        self.window.mss = mss;
        self.window.cwnd = self.window.cwnd.max(2 * mss);
    }

    /// The MSS changed (negotiated after construction): a fresh state for it.
    pub fn set_mss(&mut self, mss: usize) {
        *self = Self::new(self.algorithm.kind(), self.initial_segments, mss);
    }
}

/// RFC 6928 §2: min(10·MSS, max(2·MSS, 14600)); for another segment count
/// N, the byte bound scales with it (N · 1460).
pub fn initial_window(segments: u16, mss: usize) -> usize {
    let n = usize::from(segments.max(1));
    (n * mss).min((2 * mss).max(n * 1460))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(now_ms: u64) -> AckSample {
        AckSample {
            now: Instant(now_ms * 1000),
            rtt: None,
            srtt: None,
            snd_nxt: Seq(1 << 30),
            ack: Seq(0),
            flight_before: usize::MAX,
        }
    }

    #[test]
    fn initial_window_follows_rfc6928() {
        assert_eq!(initial_window(10, 1460), 14600);
        assert_eq!(initial_window(10, 536), 5360);
        assert_eq!(initial_window(10, 8960), 17920, "max(2·MSS, 14600)");
        assert_eq!(initial_window(4, 1460), 5840);
        assert_eq!(
            Congestion::new(AlgorithmKind::Cubic, 10, 1460).cwnd(),
            14600
        );
    }

    /// Three duplicate ACKs, as the connection drives it.
    fn three_dup_acks(cc: &mut Congestion, flight: usize, snd_max: Seq, sack: bool) {
        assert!(!cc.on_duplicate_ack());
        assert!(!cc.on_duplicate_ack());
        assert!(cc.on_duplicate_ack(), "DupThresh");
        assert!(cc.may_enter_recovery());
        cc.enter_recovery(flight, flight, snd_max, Instant(0), sack);
    }

    #[test]
    fn three_dup_acks_enter_recovery_and_a_full_ack_leaves_it() {
        let mut cc = Congestion::new(AlgorithmKind::NewReno, 4, 1000);
        three_dup_acks(&mut cc, 8000, Seq(9000), false);
        assert!(cc.in_recovery());
        assert_eq!(cc.cwnd(), 4000 + 3000);
        assert!(!cc.on_duplicate_ack());
        assert_eq!(cc.cwnd(), 8000, "inflated");
        assert_eq!(
            cc.on_ack(Seq(5000), 2000, 4000, &sample(1)),
            AckAction::RetransmitFirst,
            "partial ACK"
        );
        assert!(cc.in_recovery());
        assert_eq!(
            cc.on_ack(Seq(9000), 4000, 0, &sample(2)),
            AckAction::Nothing
        );
        assert!(!cc.in_recovery());
        assert_eq!(cc.cwnd(), 2000, "min(ssthresh, max(flight, MSS) + MSS)");
    }

    #[test]
    fn sack_recovery_holds_the_window_at_ssthresh() {
        let mut cc = Congestion::new(AlgorithmKind::NewReno, 4, 1000);
        three_dup_acks(&mut cc, 8000, Seq(9000), true);
        assert_eq!(cc.cwnd(), 4000, "RFC 6675 §5 step 4.2: cwnd = ssthresh");
        assert!(!cc.on_duplicate_ack());
        assert_eq!(cc.cwnd(), 4000, "no inflation: pipe counts what left");
        assert_eq!(
            cc.on_ack(Seq(5000), 2000, 4000, &sample(1)),
            AckAction::Nothing,
            "NextSeg, not the partial ACK, picks retransmissions"
        );
        cc.on_ack(Seq(9000), 4000, 0, &sample(2));
        assert!(!cc.in_recovery());
        assert_eq!(cc.cwnd(), 4000);
    }

    #[test]
    fn an_ecn_echo_cuts_the_window_once_per_window_of_data() {
        let mut cc = Congestion::new(AlgorithmKind::NewReno, 10, 1000);
        assert!(cc.on_congestion_echo(10_000, Seq(20_000), Instant(0)));
        assert_eq!(cc.ssthresh(), 5000, "RFC 5681 eq. 4: half the flight");
        assert_eq!(cc.cwnd(), 5000);
        assert!(!cc.in_loss_recovery(), "nothing to resend");
        assert!(
            !cc.on_congestion_echo(5000, Seq(25_000), Instant(1)),
            "echoes until our CWR arrives are the same congestion"
        );
        cc.on_ack(Seq(15_000), 1000, 5000, &sample(1));
        assert_eq!(cc.cwnd(), 5000, "no growth in the reduced window");
        cc.on_ack(Seq(20_000), 1000, 5000, &sample(2));
        assert!(
            !cc.in_cwr(),
            "what was in flight at the echo is acknowledged"
        );
        assert!(cc.on_congestion_echo(5000, Seq(30_000), Instant(3)));
        assert_eq!(cc.cwnd(), 2500);

        // A loss inside the reduced window does not cut it again.
        three_dup_acks(&mut cc, 5000, Seq(30_000), true);
        assert!(cc.in_recovery());
        assert_eq!(cc.cwnd(), 2500);
        assert!(
            !cc.on_congestion_echo(2500, Seq(30_000), Instant(4)),
            "loss recovery has cut it"
        );

        // CUBIC's multiplicative decrease is β = 0.7 (RFC 9438 §4.6).
        let mut cubic = Congestion::new(AlgorithmKind::Cubic, 10, 1000);
        assert!(cubic.on_congestion_echo(10_000, Seq(10_000), Instant(0)));
        assert_eq!(cubic.cwnd(), 7000);
    }

    #[test]
    fn no_fast_recovery_until_a_timeouts_flight_is_acknowledged() {
        let mut cc = Congestion::new(AlgorithmKind::Cubic, 10, 1000);
        cc.on_retransmit_timeout(10_000, Instant(0), Seq(20_000));
        for _ in 0..5 {
            assert!(!cc.on_duplicate_ack());
        }
        assert!(!cc.may_enter_recovery());
        cc.on_ack(Seq(19_000), 1000, 0, &sample(1));
        assert!(!cc.may_enter_recovery());
        cc.on_ack(Seq(20_000), 1000, 0, &sample(1));
        assert!(cc.may_enter_recovery());
    }

    #[test]
    fn a_timeout_leaves_one_segment_and_slow_start_climbs_back() {
        let mut cc = Congestion::new(AlgorithmKind::NewReno, 4, 1000);
        cc.on_retransmit_timeout(10_000, Instant(0), Seq(20_000));
        assert_eq!((cc.cwnd(), cc.ssthresh()), (1000, 5000));
        for i in 0..4 {
            cc.on_ack(Seq(2000 + i), 1000, 0, &sample(1));
        }
        assert_eq!(cc.cwnd(), 5000, "back to ssthresh, no further");
    }

    #[test]
    fn cubic_backs_off_less_than_newreno() {
        let mut reno = Congestion::new(AlgorithmKind::NewReno, 10, 1000);
        let mut cubic = Congestion::new(AlgorithmKind::Cubic, 10, 1000);
        for cc in [&mut reno, &mut cubic] {
            three_dup_acks(cc, 10_000, Seq(10_000), false);
        }
        assert_eq!(reno.ssthresh(), 5000, "RFC 5681 eq. 4: FlightSize / 2");
        assert_eq!(cubic.ssthresh(), 7000, "RFC 9438 §4.6: β·cwnd, β = 0.7");
    }
}
