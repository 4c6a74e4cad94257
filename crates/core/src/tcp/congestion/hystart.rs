//! Slow start with HyStart++ (RFC 9406 §4): leave slow start when the
//! round trip time starts to grow (the bottleneck queue is filling), before
//! the overshoot costs a window of losses; a conservative phase (CSS)
//! guards against leaving on a spurious RTT rise.
//!
//! One deviation, as Linux: slow start counts every byte acknowledged (no
//! per-ACK limit L): a receiver that coalesces ACKs (GRO, or a whole flight
//! in one batch) acknowledges many segments per ACK, and with L = 8 (the
//! RFC's value for a sender that does not pace) slow start would crawl.

use std::time::Duration;

use super::{AckSample, Window};
use crate::tcp::seq::Seq;

/// RFC 9406 §4.3 constants.
const MIN_RTT_THRESH: Duration = Duration::from_millis(4);
const MAX_RTT_THRESH: Duration = Duration::from_millis(16);
const MIN_RTT_DIVISOR: u32 = 8;
const N_RTT_SAMPLE: u32 = 8;
const CSS_GROWTH_DIVISOR: usize = 4;
const CSS_ROUNDS: u32 = 5;

/// Where slow start is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowStart {
    /// The first slow start, watched by HyStart++.
    Watched,
    /// Conservative slow start (§4.2): growth at a quarter of the rate for
    /// up to `CSS_ROUNDS` rounds.
    Conservative,
    /// Plain slow start up to a known ssthresh (after a loss or timeout:
    /// §4.3 uses HyStart++ for the initial slow start only), or none left.
    Standard,
}

/// HyStart++'s per-connection state.
#[derive(Debug, Clone)]
pub struct HyStart {
    phase: SlowStart,
    /// The current round ends once this is acknowledged.
    window_end: Option<Seq>,
    last_round_min_rtt: Option<Duration>,
    current_round_min_rtt: Option<Duration>,
    rtt_sample_count: u32,
    /// CSS: the RTT that sent us there, and rounds spent.
    css_baseline_min_rtt: Option<Duration>,
    css_rounds: u32,
    /// CSS growth not yet added (a quarter of the bytes acknowledged).
    css_carry: usize,
}

impl Default for HyStart {
    fn default() -> Self {
        Self {
            phase: SlowStart::Watched,
            window_end: None,
            last_round_min_rtt: None,
            current_round_min_rtt: None,
            rtt_sample_count: 0,
            css_baseline_min_rtt: None,
            css_rounds: 0,
            css_carry: 0,
        }
    }
}

impl HyStart {
    /// A loss or a timeout ended slow start: what follows is standard.
    pub fn end(&mut self) {
        self.phase = SlowStart::Standard;
    }

    /// Slow start's growth for one ACK of `acked` new bytes (`cwnd <
    /// ssthresh`); HyStart++ ends it by setting ssthresh to cwnd.
    pub fn on_ack(&mut self, window: &mut Window, acked: usize, sample: &AckSample) {
        if self.phase == SlowStart::Standard {
            window.cwnd = (window.cwnd + acked).min(window.ssthresh.max(window.cwnd + window.mss));
            return;
        }
        // §4.2: a round ends when its last segment is acknowledged.
        let round_ended = self.window_end.is_none_or(|end| sample.ack >= end);
        if round_ended {
            self.last_round_min_rtt = self.current_round_min_rtt.take();
            self.rtt_sample_count = 0;
            self.window_end = Some(sample.snd_nxt);
            if self.phase == SlowStart::Conservative {
                self.css_rounds += 1;
                if self.css_rounds >= CSS_ROUNDS {
                    // §4.2: CSS lasted CSS_ROUNDS rounds: congestion
                    // avoidance from here.
                    window.ssthresh = window.cwnd;
                    self.phase = SlowStart::Standard;
                    return;
                }
            }
        }
        if let Some(rtt) = sample.rtt {
            self.current_round_min_rtt =
                Some(self.current_round_min_rtt.map_or(rtt, |m| m.min(rtt)));
            self.rtt_sample_count += 1;
        }
        let enough = self.rtt_sample_count >= N_RTT_SAMPLE;
        match self.phase {
            SlowStart::Watched => {
                window.cwnd += acked;
                if let (true, Some(current), Some(last)) =
                    (enough, self.current_round_min_rtt, self.last_round_min_rtt)
                {
                    let thresh = (last / MIN_RTT_DIVISOR).clamp(MIN_RTT_THRESH, MAX_RTT_THRESH);
                    if current >= last + thresh {
                        self.css_baseline_min_rtt = Some(current);
                        self.css_rounds = 0;
                        self.css_carry = 0;
                        self.phase = SlowStart::Conservative;
                    }
                }
            }
            SlowStart::Conservative => {
                self.css_carry += acked;
                window.cwnd += self.css_carry / CSS_GROWTH_DIVISOR;
                self.css_carry %= CSS_GROWTH_DIVISOR;
                if let (true, Some(current), Some(baseline)) = (
                    enough,
                    self.current_round_min_rtt,
                    self.css_baseline_min_rtt,
                ) {
                    if current < baseline {
                        // §4.2: the RTT rise was spurious: back to slow
                        // start.
                        self.css_baseline_min_rtt = None;
                        self.phase = SlowStart::Watched;
                    }
                }
            }
            SlowStart::Standard => unreachable!("handled above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::time::Instant;

    /// Feeds rounds of `acks` ACKs of one MSS each, every ACK carrying an
    /// RTT of `rtt_ms(round)`; returns the phase after each round.
    fn rounds(
        hystart: &mut HyStart,
        window: &mut Window,
        rtt_ms: impl Fn(u32) -> u64,
        count: u32,
    ) -> Vec<SlowStart> {
        let mut phases = Vec::new();
        let mut acked = 0u32;
        for round in 0..count {
            let acks = (window.cwnd / window.mss) as u32;
            for _ in 0..acks {
                acked += window.mss as u32;
                // The sender keeps a window in flight past each ACK.
                let sample = AckSample {
                    now: Instant(u64::from(round) * 100_000),
                    rtt: Some(Duration::from_millis(rtt_ms(round))),
                    srtt: None,
                    snd_nxt: Seq(acked + window.cwnd as u32),
                    ack: Seq(acked),
                    flight_before: window.cwnd,
                };
                hystart.on_ack(window, window.mss, &sample);
                if hystart.phase == SlowStart::Standard {
                    phases.push(hystart.phase);
                    return phases;
                }
            }
            phases.push(hystart.phase);
        }
        phases
    }

    fn window() -> Window {
        Window {
            cwnd: 10_000,
            ssthresh: usize::MAX,
            mss: 1000,
        }
    }

    #[test]
    fn steady_rtt_keeps_slow_start_doubling() {
        let (mut h, mut w) = (HyStart::default(), window());
        let phases = rounds(&mut h, &mut w, |_| 50, 4);
        assert!(
            phases.iter().all(|&p| p == SlowStart::Watched),
            "{phases:?}"
        );
        assert_eq!(w.cwnd, 160_000, "doubled each round");
    }

    /// §4.2: the RTT rises by more than max(4 ms, min(last/8, 16 ms)):
    /// CSS, growth at a quarter, then after CSS_ROUNDS rounds congestion
    /// avoidance with ssthresh = cwnd.
    #[test]
    fn a_rising_rtt_enters_css_then_avoidance() {
        let (mut h, mut w) = (HyStart::default(), window());
        // 50 ms, then 57 ms: +7 ms ≥ max(4, 50/8 = 6.25) ms.
        let phases = rounds(&mut h, &mut w, |r| if r < 2 { 50 } else { 57 }, 20);
        assert_eq!(phases[1], SlowStart::Watched);
        assert_eq!(phases[2], SlowStart::Conservative, "{phases:?}");
        assert_eq!(*phases.last().unwrap(), SlowStart::Standard);
        assert_eq!(w.ssthresh, w.cwnd, "avoidance from the window reached");
        // Left slow start in round 2, after its 8th RTT sample; CSS ends
        // after CSS_ROUNDS round starts.
        let css = phases
            .iter()
            .filter(|&&p| p == SlowStart::Conservative)
            .count();
        assert!(
            (CSS_ROUNDS as usize - 1..=CSS_ROUNDS as usize).contains(&css),
            "{phases:?}"
        );
    }

    #[test]
    fn a_small_rise_is_not_enough() {
        let (mut h, mut w) = (HyStart::default(), window());
        // +5 ms after 50 ms is below the 6.25 ms threshold.
        let phases = rounds(&mut h, &mut w, |r| if r < 2 { 50 } else { 55 }, 4);
        assert!(
            phases.iter().all(|&p| p == SlowStart::Watched),
            "{phases:?}"
        );
    }

    #[test]
    fn a_spurious_rise_returns_to_slow_start() {
        let (mut h, mut w) = (HyStart::default(), window());
        let phases = rounds(&mut h, &mut w, |r| if r == 2 { 60 } else { 50 }, 4);
        assert_eq!(phases[2], SlowStart::Conservative, "{phases:?}");
        assert_eq!(
            phases[3],
            SlowStart::Watched,
            "the RTT fell back below the baseline"
        );
    }
}
