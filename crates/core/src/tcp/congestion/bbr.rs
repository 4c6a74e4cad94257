//! BBR, version 1 (Cardwell et al., "BBR: Congestion-Based Congestion
//! Control", ACM Queue 2016; draft-cardwell-iccrg-bbr-congestion-control-00;
//! Linux's `tcp_bbr.c`, the version these machines run by default).
//!
//! A model of the path instead of a reaction to loss: the bottleneck
//! bandwidth is the highest delivery rate of the last ten rounds
//! (`delivery.rs` samples it once per round), the propagation delay the
//! lowest RTT of the last ten seconds. The sender paces at a gain times
//! that bandwidth and keeps at most a gain times the bandwidth-delay
//! product in flight. Random loss does not shrink the model, which is why
//! BBR keeps a lossy long path full where a loss-based algorithm is held
//! to the Mathis bound.
//!
//! Modes, and what moves between them:
//!
//! | mode       | pacing gain            | window gain | leaves when |
//! |------------|------------------------|-------------|-------------|
//! | STARTUP    | 2/ln 2 ≈ 2.89          | 2.89        | the bandwidth grew < 25 % in 3 rounds → DRAIN |
//! | DRAIN      | 1/2.89                 | 2.89        | in flight ≤ one BDP → PROBE_BW |
//! | PROBE_BW   | 1.25, 0.75, then 1 × 6 | 2           | each phase after min RTT (1.25: and in flight ≥ 1.25 BDP; 0.75: or in flight ≤ BDP) |
//! | PROBE_RTT  | 1                      | 4 segments  | 200 ms and a round at ≤ 4 segments → STARTUP or PROBE_BW |
//!
//! Any mode but PROBE_RTT enters it when the min RTT is 10 s old.
//!
//! Loss: the first round of a fast recovery follows packet conservation
//! (no more in flight than was, plus what each ACK delivers); after it the
//! window grows back towards the model's; when recovery ends the window
//! before it comes back. A retransmission timeout leaves one segment, and
//! the window grows back by what each ACK delivers. ECN echoes do not cut
//! the window (BBR v1 does not use ECN; Linux likewise).
//!
//! Left out of Linux's version: the long-term ("policer") bandwidth
//! estimate, the ACK-aggregation allowance, and the idle-restart rule.

use std::time::Duration;

use super::delivery::{reached, RoundSampler};
use super::{Controller, Delivery, PathModel, Window};
use crate::tcp::time::Instant;

/// STARTUP's gain, 2/ln 2: the smallest that doubles the delivery rate
/// each round.
const HIGH_GAIN: f64 = 2.885;
/// DRAIN's pacing gain: one STARTUP round's queue drained in a round.
const DRAIN_GAIN: f64 = 1.0 / HIGH_GAIN;
/// PROBE_BW's window gain: room for delayed and stretched ACKs.
const CWND_GAIN: f64 = 2.0;
/// PROBE_BW's pacing gains, one phase each (a phase lasts a min RTT).
const PACING_GAINS: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// Rounds the bandwidth filter remembers.
const BW_WINDOW_ROUNDS: u32 = 10;
/// How long a min RTT stands without a lower or equal sample.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// PROBE_RTT's least duration.
const PROBE_RTT_TIME: Duration = Duration::from_millis(200);
/// The smallest window, in segments (two delayed-ACK pairs).
const MIN_WINDOW_SEGMENTS: usize = 4;
/// STARTUP goes on while the bandwidth grows by this much per round...
const FULL_BW_GROWTH: f64 = 1.25;
/// ... and ends after this many rounds without.
const FULL_BW_ROUNDS: u8 = 3;
/// Paced a little below the estimate, so a queue made by a high gain
/// drains (Linux's `bbr_pacing_margin_percent`).
const PACING_MARGIN: f64 = 0.99;
/// Segments the initial window holds (RFC 6928), BBR's window before it
/// has an RTT sample.
const INITIAL_SEGMENTS: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Startup,
    Drain,
    ProbeBw,
    ProbeRtt,
}

/// A running maximum over a window of rounds, kept as the best, second-
/// and third-best samples of successive sub-windows (K. Nichols' windowed
/// min/max filter, as Linux's `lib/win_minmax.c` uses it): O(1) per sample,
/// 24 bytes.
#[derive(Debug, Clone, Copy, Default)]
struct MaxFilter {
    /// (value, round), best first.
    samples: [(f32, u32); 3],
}

impl MaxFilter {
    fn get(&self) -> f64 {
        f64::from(self.samples[0].0)
    }

    fn update(&mut self, value: f64, round: u32, window: u32) {
        let sample = (value as f32, round);
        let age = |s: (f32, u32)| round.wrapping_sub(s.1);
        if sample.0 >= self.samples[0].0 || age(self.samples[2]) > window {
            self.samples = [sample; 3];
            return;
        }
        if sample.0 >= self.samples[1].0 {
            self.samples[1] = sample;
            self.samples[2] = sample;
        } else if sample.0 >= self.samples[2].0 {
            self.samples[2] = sample;
        }
        // The best is older than the window: the second and third move up
        // (twice if the second is too old as well).
        let best_age = age(self.samples[0]);
        if best_age > window {
            self.samples = [self.samples[1], self.samples[2], sample];
            if age(self.samples[0]) > window {
                self.samples = [self.samples[1], self.samples[2], sample];
            }
        } else if self.samples[1].1 == self.samples[0].1 && best_age > window / 4 {
            // A quarter of the window without a second-best: take one.
            self.samples[1] = sample;
            self.samples[2] = sample;
        } else if self.samples[2].1 == self.samples[1].1 && best_age > window / 2 {
            self.samples[2] = sample;
        }
    }
}

/// See the module doc.
#[derive(Debug, Clone, Default)]
pub struct Bbr {
    sampler: RoundSampler,
    bandwidth: MaxFilter,
    /// Rounds counted by the sampler.
    round: u32,
    mode: Mode,
    /// PROBE_BW's phase, an index into [`PACING_GAINS`].
    cycle_index: u8,
    full_bw_reached: bool,
    /// Rounds since the bandwidth last grew by [`FULL_BW_GROWTH`].
    full_bw_rounds: u8,
    /// In the first round of a fast recovery, which ends once the
    /// sampler's delivered count reaches this (what was in flight at its
    /// start has left the network).
    conservation_until: Option<u32>,
    probe_rtt_round_done: bool,
    /// The bandwidth STARTUP last saw grow, bytes/s.
    full_bw: f32,
    /// The window before a recovery, PROBE_RTT or timeout cut it.
    prior_cwnd: u32,
    /// Bytes/s; 0 until the first RTT sample.
    pacing_rate: f32,
    /// Lowest RTT in the window, µs (`u32::MAX`: none yet), and when it
    /// was measured.
    min_rtt_us: u32,
    min_rtt_stamp: Instant,
    /// When this PROBE_BW phase started.
    cycle_stamp: Instant,
    /// When PROBE_RTT may end (`None`: not yet at its low window).
    probe_rtt_done: Option<Instant>,
}

impl Bbr {
    pub fn new() -> Self {
        Self {
            min_rtt_us: u32::MAX,
            ..Self::default()
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The bottleneck bandwidth estimate, bytes/s.
    pub fn bandwidth(&self) -> f64 {
        self.bandwidth.get()
    }

    pub fn min_rtt(&self) -> Option<Duration> {
        (self.min_rtt_us != u32::MAX).then(|| Duration::from_micros(u64::from(self.min_rtt_us)))
    }

    pub fn full_bw_reached(&self) -> bool {
        self.full_bw_reached
    }

    pub fn pacing_gain(&self) -> f64 {
        match self.mode {
            Mode::Startup => HIGH_GAIN,
            Mode::Drain => DRAIN_GAIN,
            Mode::ProbeBw => PACING_GAINS[usize::from(self.cycle_index)],
            Mode::ProbeRtt => 1.0,
        }
    }

    fn cwnd_gain(&self) -> f64 {
        match self.mode {
            Mode::Startup | Mode::Drain => HIGH_GAIN,
            Mode::ProbeBw => CWND_GAIN,
            Mode::ProbeRtt => 1.0,
        }
    }

    /// `gain` × bandwidth × min RTT in bytes (rounded up); the initial
    /// window before any RTT is known.
    fn bdp(&self, gain: f64, mss: usize) -> usize {
        match self.min_rtt() {
            None => INITIAL_SEGMENTS * mss,
            Some(rtt) => (self.bandwidth() * rtt.as_secs_f64() * gain).ceil() as usize,
        }
    }

    /// The in-flight target for `gain`: the BDP plus room for the
    /// segments in hosts (sender, receiver's delayed ACK) that the
    /// bandwidth-delay product does not count, and two more while probing
    /// so that a small BDP still rises above itself.
    fn inflight(&self, gain: f64, mss: usize) -> usize {
        let mut target = self.bdp(gain, mss) + 3 * mss;
        if self.mode == Mode::ProbeBw && self.cycle_index == 0 {
            target += 2 * mss;
        }
        target
    }

    fn save_cwnd(&mut self, cwnd: usize, recovery: bool) {
        let cwnd = cwnd.min(u32::MAX as usize) as u32;
        self.prior_cwnd = if !recovery && self.mode != Mode::ProbeRtt {
            cwnd
        } else {
            self.prior_cwnd.max(cwnd)
        };
    }

    fn enter_probe_bw(&mut self, now: Instant) {
        self.mode = Mode::ProbeBw;
        // A phase other than the draining one, picked from the bytes
        // delivered so far (Linux picks at random; the engine draws no
        // randomness), then moved to the next.
        self.cycle_index = (1 + self.sampler.delivered() % 7) as u8;
        self.advance_cycle(now);
    }

    fn advance_cycle(&mut self, now: Instant) {
        self.cycle_index = (self.cycle_index + 1) % PACING_GAINS.len() as u8;
        self.cycle_stamp = now;
    }

    /// PROBE_BW: the next phase once this one has lasted a min RTT and did
    /// what it is for.
    fn update_cycle(&mut self, now: Instant, prior_pipe: usize, mss: usize) {
        if self.mode != Mode::ProbeBw {
            return;
        }
        let full_length = self
            .min_rtt()
            .is_some_and(|rtt| now.saturating_since(self.cycle_stamp) > rtt);
        let gain = self.pacing_gain();
        let next = if gain > 1.0 {
            full_length && prior_pipe >= self.inflight(gain, mss)
        } else if gain < 1.0 {
            full_length || prior_pipe <= self.inflight(1.0, mss)
        } else {
            full_length
        };
        if next {
            self.advance_cycle(now);
        }
    }

    fn check_full_bw(&mut self, round_start: bool, app_limited: bool) {
        if self.full_bw_reached || !round_start || app_limited {
            return;
        }
        let bw = self.bandwidth();
        if bw >= f64::from(self.full_bw) * FULL_BW_GROWTH {
            self.full_bw = bw as f32;
            self.full_bw_rounds = 0;
            return;
        }
        self.full_bw_rounds += 1;
        self.full_bw_reached = self.full_bw_rounds >= FULL_BW_ROUNDS;
    }

    fn check_drain(&mut self, now: Instant, pipe: usize, mss: usize) {
        if self.mode == Mode::Startup && self.full_bw_reached {
            self.mode = Mode::Drain;
        }
        if self.mode == Mode::Drain && pipe <= self.inflight(1.0, mss) {
            self.enter_probe_bw(now);
        }
    }

    fn update_min_rtt(&mut self, d: &Delivery, window: &mut Window, round_start: bool) {
        // No estimate yet: nothing to expire (the stamp is meaningless).
        let expired = self.min_rtt_us != u32::MAX && d.now > self.min_rtt_stamp + MIN_RTT_WINDOW;
        if let Some(rtt) = d.rtt {
            let us = rtt.as_micros().min(u128::from(u32::MAX - 1)) as u32;
            if us <= self.min_rtt_us || expired {
                self.min_rtt_us = us;
                self.min_rtt_stamp = d.now;
            }
        }
        if expired && self.mode != Mode::ProbeRtt && self.min_rtt_us != u32::MAX {
            self.mode = Mode::ProbeRtt;
            self.save_cwnd(window.cwnd, false);
            self.probe_rtt_done = None;
        }
        if self.mode != Mode::ProbeRtt {
            return;
        }
        // What PROBE_RTT's small window delivers says nothing of the path.
        self.sampler.mark_app_limited(d.pipe);
        match self.probe_rtt_done {
            None if d.pipe <= MIN_WINDOW_SEGMENTS * window.mss => {
                self.probe_rtt_done = Some(d.now + PROBE_RTT_TIME);
                self.probe_rtt_round_done = false;
                self.sampler.restart(d.now, d.pipe);
            }
            None => {}
            Some(done) => {
                self.probe_rtt_round_done |= round_start;
                if self.probe_rtt_round_done && d.now > done {
                    self.min_rtt_stamp = d.now;
                    window.cwnd = window.cwnd.max(self.prior_cwnd as usize);
                    if self.full_bw_reached {
                        self.enter_probe_bw(d.now);
                    } else {
                        self.mode = Mode::Startup;
                    }
                }
            }
        }
    }

    fn set_pacing_rate(&mut self, d: &Delivery, window: &Window) {
        let bw = self.bandwidth();
        let rate = if bw > 0.0 {
            self.pacing_gain() * bw * PACING_MARGIN
        } else {
            // No bandwidth sample yet: the initial window per RTT, at
            // STARTUP's gain.
            match d.srtt.or(d.rtt) {
                Some(rtt) if !rtt.is_zero() => {
                    HIGH_GAIN * window.cwnd as f64 / rtt.as_secs_f64() * PACING_MARGIN
                }
                _ => return,
            }
        };
        if self.full_bw_reached || rate > f64::from(self.pacing_rate) {
            self.pacing_rate = rate as f32;
        }
    }

    fn set_cwnd(&mut self, d: &Delivery, window: &mut Window) {
        let mss = window.mss;
        let acked = d.bytes;
        if self.conservation_until.is_some() {
            window.cwnd = window.cwnd.max(d.pipe + acked);
        } else {
            let target = self.inflight(self.cwnd_gain(), mss);
            if self.full_bw_reached {
                window.cwnd = (window.cwnd + acked).min(target);
            } else if window.cwnd < target
                || (self.sampler.delivered() as usize) < INITIAL_SEGMENTS * mss
            {
                window.cwnd += acked;
            }
            window.cwnd = window.cwnd.max(MIN_WINDOW_SEGMENTS * mss);
        }
        if self.mode == Mode::ProbeRtt {
            window.cwnd = window.cwnd.min(MIN_WINDOW_SEGMENTS * mss);
        }
    }
}

impl Controller for Bbr {
    /// Not used: the model sets the window ([`PathModel::on_delivery`]).
    fn avoid(&mut self, _window: &mut Window, _acked: usize, _sample: &super::AckSample) {}

    /// BBR does not cut the window at a congestion event: ssthresh stays
    /// where it is (Linux's `bbr_ssthresh` likewise).
    fn reduce(&mut self, window: &Window, _flight: usize, _now: Instant) -> usize {
        window.ssthresh
    }

    fn model(&mut self) -> Option<&mut dyn PathModel> {
        Some(self)
    }

    fn pacing_rate(&self) -> Option<f64> {
        (self.pacing_rate > 0.0).then_some(f64::from(self.pacing_rate))
    }
}

impl PathModel for Bbr {
    fn on_delivery(&mut self, window: &mut Window, d: &Delivery) {
        let mss = window.mss;
        let sample = self
            .sampler
            .on_delivery(d.now, d.bytes, d.pipe, d.app_limited);
        let round_start = sample.is_some();
        if self
            .conservation_until
            .is_some_and(|until| reached(self.sampler.delivered(), until))
        {
            self.conservation_until = None;
        }
        let mut app_limited = false;
        if let Some(sample) = sample {
            self.round = self.round.wrapping_add(1);
            app_limited = sample.app_limited;
            if !sample.app_limited || sample.bandwidth >= self.bandwidth() {
                self.bandwidth
                    .update(sample.bandwidth, self.round, BW_WINDOW_ROUNDS);
            }
        }
        self.update_cycle(d.now, d.prior_pipe, mss);
        self.check_full_bw(round_start, app_limited);
        self.check_drain(d.now, d.pipe, mss);
        self.update_min_rtt(d, window, round_start);
        self.set_pacing_rate(d, window);
        if d.bytes > 0 {
            self.set_cwnd(d, window);
        }
    }

    fn on_recovery_start(&mut self, window: &mut Window, pipe: usize) {
        self.save_cwnd(window.cwnd, false);
        self.conservation_until = Some(self.sampler.delivered().wrapping_add(pipe as u32));
        window.cwnd = pipe.max(window.mss);
    }

    fn on_recovery_end(&mut self, window: &mut Window) {
        window.cwnd = window.cwnd.max(self.prior_cwnd as usize);
        self.conservation_until = None;
    }

    fn on_timeout(&mut self, window: &mut Window, recovery: bool) {
        self.save_cwnd(window.cwnd, recovery);
        self.conservation_until = None;
        // STARTUP's growth test starts over (Linux's `bbr_set_state` on
        // TCP_CA_Loss).
        self.full_bw = 0.0;
        window.cwnd = window.mss;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_keeps_the_best_of_the_window() {
        let mut f = MaxFilter::default();
        f.update(10.0, 0, 10);
        f.update(5.0, 1, 10);
        f.update(7.0, 4, 10);
        assert_eq!(f.get(), 10.0);
        f.update(3.0, 10, 10);
        assert_eq!(f.get(), 10.0, "round 0 is still inside the window");
        f.update(4.0, 11, 10);
        assert_eq!(f.get(), 7.0, "10 aged out; the next best of the window");
        f.update(2.0, 30, 10);
        assert_eq!(f.get(), 2.0, "everything aged out");
        f.update(20.0, 31, 10);
        assert_eq!(f.get(), 20.0);
    }
}
