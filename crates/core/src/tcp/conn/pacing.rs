//! Pacing: a connection whose congestion control gives a rate (BBR) sends
//! its data segments spread out at that rate instead of in the bursts the
//! window and the ACK clock allow — a window opened in one ACK, or a
//! window's worth at the start of a round, would otherwise arrive at the
//! bottleneck at once and overflow a shallow queue.
//!
//! The schedule: each data segment (new or resent) moves `pace_next` on by
//! its length at the rate, from `now` if the schedule fell behind (no
//! credit is saved up over idle time). While the schedule is no more than
//! one quantum ahead of `now`, segments go; past that, new data and SACK
//! retransmissions wait (the congestion room is zero) until the `Pace`
//! timer at `pace_next`. The quantum — 1 ms of data at the rate, at least
//! two segments — is the burst: as Linux's pacing sizes its bursts (about
//! 1 ms of data per TSO segment at high rates), and what the shard's
//! millisecond timer wheel can release on time. Retransmissions that
//! repair a loss at once (fast retransmit, tail-loss probe) and control
//! segments are not held back; data segments still count against the
//! schedule.

use std::time::Duration;

use super::timers::Timer;
use super::Conn;
use crate::tcp::time::Instant;

/// The least burst a schedule allows ahead of `now`.
const QUANTUM: Duration = Duration::from_millis(1);

impl Conn {
    /// A data segment of `len` bytes went at `now`: moves the schedule on,
    /// and holds what follows if it ran a quantum ahead.
    pub(super) fn pace(&mut self, now: Instant, len: usize) {
        let Some(rate) = self.cc.pacing_rate().filter(|&r| r >= 1.0) else {
            return;
        };
        let per_byte_us = 1e6 / rate;
        let quantum_us =
            (QUANTUM.as_micros() as f64).max(2.0 * self.send_mss() as f64 * per_byte_us);
        let start = self.pace_next.max(now);
        self.pace_next = start + Duration::from_micros((len as f64 * per_byte_us) as u64);
        if self.pace_next.micros() as f64 > now.micros() as f64 + quantum_us {
            self.pacing_hold = true;
            self.timers.set(Timer::Pace, self.pace_next);
        }
    }
}
