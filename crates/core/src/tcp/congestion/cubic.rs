//! CUBIC's window decisions (RFC 9438): in congestion avoidance the window
//! follows a cubic function of the time since the last congestion event,
//! concave up to the window where that event happened (`W_max`), convex
//! past it; never below what Reno would have reached (the Reno-friendly
//! region, §4.3); β = 0.7 at a congestion event (§4.6), with fast
//! convergence (§4.7).
//!
//! Windows here are in segments as f64, as in the RFC's formulas; the
//! engine's window stays in bytes.

use std::time::Duration;

use super::{AckSample, Controller, Window};
use crate::tcp::time::Instant;

/// §5.1: C = 0.4 (segments per second cubed).
const C: f64 = 0.4;
/// §4.6: the multiplicative decrease factor.
const BETA: f64 = 0.7;
/// §4.3: Reno-friendly additive increase until W_est reaches W_max.
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);
/// The RTT assumed before one is measured (RFC 6298's initial 1 s would
/// make the target jump; 100 ms is a typical Internet path).
const DEFAULT_RTT: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Default)]
pub struct Cubic {
    /// §4.1: the window before the last reduction, segments.
    w_max: f64,
    /// §4.2: when this congestion-avoidance stage started; `None` until its
    /// first ACK.
    t_epoch: Option<Instant>,
    /// §4.2: the window at that start, segments.
    cwnd_epoch: f64,
    /// §4.2: the time to grow from `cwnd_epoch` back to `w_max`, seconds.
    k: f64,
    /// §4.3: what Reno would have reached, segments.
    w_est: f64,
    /// Growth not yet added to the window (below one byte), bytes.
    carry: f64,
}

impl Cubic {
    /// §4.1 eq. 1: W_cubic(t) = C·(t − K)³ + W_max, segments.
    pub fn w_cubic(&self, t: f64) -> f64 {
        C * (t - self.k).powi(3) + self.w_max
    }

    pub fn w_max(&self) -> f64 {
        self.w_max
    }

    pub fn k(&self) -> f64 {
        self.k
    }

    /// §4.3: Reno's estimated window, segments.
    pub fn w_est(&self) -> f64 {
        self.w_est
    }
}

impl Controller for Cubic {
    /// §4.2–§4.5, per ACK in congestion avoidance.
    fn avoid(&mut self, window: &mut Window, acked: usize, sample: &AckSample) {
        let mss = window.mss as f64;
        let cwnd = window.cwnd as f64 / mss;
        let t_epoch = *self.t_epoch.get_or_insert_with(|| {
            // A new stage: §4.2's K from where it starts; with no
            // reduction behind it (slow start ended by HyStart++), W_max is
            // where it starts (K = 0: convex growth from here).
            self.cwnd_epoch = cwnd;
            self.w_est = cwnd;
            self.carry = 0.0;
            if self.w_max <= cwnd {
                self.w_max = cwnd;
                self.k = 0.0;
            } else {
                self.k = ((self.w_max - cwnd) / C).cbrt();
            }
            sample.now
        });
        let t = sample.now.saturating_since(t_epoch).as_secs_f64();
        let rtt = sample
            .srtt
            .or(sample.rtt)
            .unwrap_or(DEFAULT_RTT)
            .as_secs_f64();
        let segments_acked = acked as f64 / mss;
        // §4.3: the Reno-friendly estimate.
        let alpha = if self.w_est >= self.w_max { 1.0 } else { ALPHA };
        self.w_est += alpha * segments_acked / cwnd;
        let next = if self.w_cubic(t) < self.w_est {
            // §4.3: the Reno-friendly region: cwnd = W_est.
            self.w_est
        } else {
            // §4.4–4.5: towards W_cubic(t + RTT), at most 1.5 × cwnd per
            // round trip, never shrinking.
            let target = self.w_cubic(t + rtt).clamp(cwnd, 1.5 * cwnd);
            cwnd + (target - cwnd) / cwnd * segments_acked
        };
        self.carry += (next - cwnd).max(0.0) * mss;
        let grow = self.carry.floor();
        self.carry -= grow;
        window.cwnd += grow as usize;
    }

    /// §4.6–§4.7: W_max from the window now (lowered further when the
    /// previous one was not reached: fast convergence), ssthresh = β·cwnd.
    fn reduce(&mut self, window: &Window, _flight: usize, _now: Instant) -> usize {
        let cwnd = window.cwnd as f64 / window.mss as f64;
        self.w_max = if cwnd < self.w_max {
            cwnd * (1.0 + BETA) / 2.0
        } else {
            cwnd
        };
        self.t_epoch = None;
        (window.cwnd as f64 * BETA) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::seq::Seq;

    const MSS: usize = 1000;

    /// One round trip from time `t` seconds: the whole window
    /// acknowledged, one MSS per ACK, the ACKs spread over the round trip.
    fn round_trip(cubic: &mut Cubic, window: &mut Window, t: f64, rtt: Duration) {
        let acks = window.cwnd / MSS;
        for i in 0..acks {
            let at = t + rtt.as_secs_f64() * i as f64 / acks as f64;
            let sample = AckSample {
                now: Instant((at * 1e6) as u64),
                rtt: Some(rtt),
                srtt: Some(rtt),
                snd_nxt: Seq(0),
                ack: Seq(0),
                flight_before: 0,
            };
            cubic.avoid(window, MSS, &sample);
        }
    }

    /// The window after a loss at 100 segments follows eq. 1 with
    /// K = ∛((100 − 70) / 0.4) s: back to W_max at K, convex past it.
    #[test]
    fn the_window_follows_the_cubic_function() {
        let mut cubic = Cubic::default();
        let mut window = Window {
            cwnd: 100 * MSS,
            ssthresh: usize::MAX,
            mss: MSS,
        };
        let ssthresh = cubic.reduce(&window, 100 * MSS, Instant(0));
        assert_eq!(ssthresh, 70 * MSS, "β = 0.7");
        assert_eq!(cubic.w_max(), 100.0);
        window.cwnd = ssthresh;
        window.ssthresh = ssthresh;
        let rtt = Duration::from_millis(100);
        for round in 0..70 {
            let t = f64::from(round) * rtt.as_secs_f64();
            round_trip(&mut cubic, &mut window, t, rtt);
            let t = t + rtt.as_secs_f64();
            let k = cubic.k();
            assert!((k - 75f64.cbrt()).abs() < 1e-9, "K = {k}");
            // After the round trip that started at t − RTT, the window is
            // W_cubic(t) (it aimed there), to within a segment, or Reno's
            // estimate where that is higher (§4.3: late in this run, as
            // the cubic function is flat around W_max).
            let expected = cubic.w_cubic(t).max(cubic.w_est());
            let got = window.cwnd as f64 / MSS as f64;
            assert!(
                (got - expected).abs() <= 1.0,
                "t = {t:.1}s: cwnd {got:.2} segments, W_cubic {:.2}, W_est {:.2}",
                cubic.w_cubic(t),
                cubic.w_est()
            );
        }
        let at_k = cubic.w_cubic(cubic.k());
        assert!((at_k - 100.0).abs() < 1e-9);
    }

    /// §4.7: a loss before the window got back to W_max lowers W_max
    /// further, releasing bandwidth to newer flows.
    #[test]
    fn fast_convergence() {
        let mut cubic = Cubic::default();
        let window = |segments: usize| Window {
            cwnd: segments * MSS,
            ssthresh: usize::MAX,
            mss: MSS,
        };
        cubic.reduce(&window(100), 0, Instant(0));
        cubic.reduce(&window(80), 0, Instant(0));
        assert!((cubic.w_max() - 80.0 * 1.7 / 2.0).abs() < 1e-9);
    }

    /// §4.3: on a short path (small RTT, small window) Reno's estimate
    /// grows faster than the cubic function: the window follows it.
    #[test]
    fn reno_friendly_region() {
        let mut cubic = Cubic::default();
        let mut window = Window {
            cwnd: 10 * MSS,
            ssthresh: 10 * MSS,
            mss: MSS,
        };
        cubic.reduce(&window, 0, Instant(0));
        window.cwnd = 7 * MSS;
        let rtt = Duration::from_millis(1);
        for i in 0..20 {
            round_trip(&mut cubic, &mut window, f64::from(i) * 0.001, rtt);
        }
        // 20 round trips at α ≈ 0.53 segments each, then 1 past W_max.
        assert!(window.cwnd >= 16 * MSS, "{}", window.cwnd);
        assert!(
            cubic.w_cubic(0.02) < 10.0,
            "the cubic function barely moved"
        );
    }
}
