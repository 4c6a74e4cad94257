//! Delivery-rate samples for a model-based congestion control: how many
//! bytes the path delivered per second, measured over back-to-back
//! intervals of about one round trip each.
//!
//! draft-cheng-iccrg-delivery-rate-estimation takes a sample on every
//! ACK from per-packet state recorded at send time (Linux keeps it in each
//! skb). A connection here keeps no per-segment records, so the sampler
//! measures per round instead: an interval starts at an ACK, remembering
//! the bytes delivered so far and the bytes then in flight, and ends at the
//! first ACK by which that many more bytes were delivered — the data in
//! flight at the start has reached the peer (or been replaced by later
//! data, where some of it was lost), which is one round trip in the
//! draft's sense ("a packet sent after the round started was delivered").
//! The sample is the bytes delivered over the interval's length; the next
//! interval starts at the same ACK. Over a whole round trip, ACK
//! compression and delayed ACKs average out, so the draft's send-rate
//! bound is not needed; a round is also BBR's unit of time (its bandwidth
//! filter counts rounds), so one sample per round is what it consumes.
//!
//! Application-limited (§3.3 of the draft): a sample whose interval saw
//! the sender with less to send than its window allowed measures the
//! application, not the path; it is marked so, and BBR only takes it if it
//! is higher than what it knows.
//!
//! Counters are `u32` and wrap: one round never delivers 4 GiB.

use crate::tcp::time::Instant;

/// One sample: the path's delivery rate over the round just ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSample {
    /// Bytes per second.
    pub bandwidth: f64,
    /// The sender was application-limited during the interval.
    pub app_limited: bool,
}

/// See the module doc.
#[derive(Debug, Clone, Default)]
pub struct RoundSampler {
    /// Bytes delivered over the connection's life (wrapping).
    delivered: u32,
    /// `delivered` when this interval started, and when it ends.
    start_delivered: u32,
    end_delivered: u32,
    start_time: Instant,
    /// The first delivery started the first interval.
    running: bool,
    /// The sender was application-limited at some ACK of this interval.
    interval_app_limited: bool,
    /// Application-limited until `delivered` passes this (what was in
    /// flight when the application ran dry has been delivered).
    app_limited_until: Option<u32>,
}

/// `a` at or past `b` in wrapping arithmetic.
pub(super) fn reached(a: u32, b: u32) -> bool {
    a.wrapping_sub(b) as i32 >= 0
}

impl RoundSampler {
    /// Bytes delivered so far (wrapping).
    pub fn delivered(&self) -> u32 {
        self.delivered
    }

    /// An ACK that delivered `bytes` for the first time (cumulatively or
    /// by SACK) at `now`, with `pipe` bytes still in flight and the sender
    /// `app_limited` (nothing more to send though the window had room).
    /// Returns the sample of the round this ACK ended, if it ended one.
    pub fn on_delivery(
        &mut self,
        now: Instant,
        bytes: usize,
        pipe: usize,
        app_limited: bool,
    ) -> Option<RateSample> {
        self.delivered = self.delivered.wrapping_add(bytes as u32);
        if app_limited {
            self.mark_app_limited(pipe);
        } else if self
            .app_limited_until
            .is_some_and(|until| reached(self.delivered, until))
        {
            self.app_limited_until = None;
        }
        self.interval_app_limited |= self.app_limited_until.is_some();
        if !self.running {
            self.running = true;
            self.restart(now, pipe);
            return None;
        }
        if bytes == 0 || !reached(self.delivered, self.end_delivered) {
            return None;
        }
        let elapsed = now.saturating_since(self.start_time).as_secs_f64();
        let bytes = self.delivered.wrapping_sub(self.start_delivered);
        let sample = (elapsed > 0.0).then(|| RateSample {
            bandwidth: f64::from(bytes) / elapsed,
            app_limited: self.interval_app_limited,
        });
        self.restart(now, pipe);
        sample
    }

    /// Starts a new interval (a new round) now, with `pipe` bytes in
    /// flight: it ends once that much more was delivered (at least a byte).
    pub fn restart(&mut self, now: Instant, pipe: usize) {
        self.start_delivered = self.delivered;
        self.end_delivered = self.delivered.wrapping_add((pipe as u32).max(1));
        self.start_time = now;
        self.interval_app_limited = self.app_limited_until.is_some();
    }

    /// Samples are application-limited until what is in flight now
    /// (`pipe` bytes) has been delivered (BBR's PROBE_RTT uses this to
    /// ignore the low rates it causes itself).
    pub fn mark_app_limited(&mut self, pipe: usize) {
        self.app_limited_until = Some(self.delivered.wrapping_add(pipe as u32));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    #[test]
    fn a_round_ends_when_its_flight_is_delivered() {
        let mut s = RoundSampler::default();
        assert_eq!(s.on_delivery(ms(0), 1000, 10_000, false), None, "starts");
        // 10,000 bytes in flight at the start: 5 ACKs of 2,000 end it.
        for i in 1..5 {
            assert_eq!(s.on_delivery(ms(10 * i), 2000, 10_000, false), None);
        }
        let sample = s.on_delivery(ms(50), 2000, 12_000, false).unwrap();
        assert_eq!(sample.bandwidth, 10_000.0 / 0.05);
        assert!(!sample.app_limited);
        // The next round: 12,000 bytes.
        assert_eq!(s.on_delivery(ms(80), 11_000, 12_000, false), None);
        let sample = s.on_delivery(ms(100), 1000, 12_000, false).unwrap();
        assert_eq!(sample.bandwidth, 12_000.0 / 0.05);
    }

    #[test]
    fn a_round_that_saw_the_application_run_dry_is_marked() {
        let mut s = RoundSampler::default();
        s.on_delivery(ms(0), 1000, 4000, false);
        s.on_delivery(ms(10), 1000, 3000, true);
        let sample = s.on_delivery(ms(20), 3000, 0, false).unwrap();
        assert!(sample.app_limited);
        // What was in flight at the dry spell (3,000 bytes) is delivered:
        // a later round with the window full again is not marked.
        s.on_delivery(ms(30), 1000, 8000, false);
        let sample = s.on_delivery(ms(40), 8000, 8000, false).unwrap();
        assert!(!sample.app_limited);
    }

    #[test]
    fn counters_wrap() {
        let mut s = RoundSampler {
            delivered: u32::MAX - 500,
            ..Default::default()
        };
        s.on_delivery(ms(0), 0, 2000, false);
        assert_eq!(s.on_delivery(ms(5), 1000, 2000, false), None);
        let sample = s.on_delivery(ms(10), 1000, 2000, false).unwrap();
        assert_eq!(sample.bandwidth, 2000.0 / 0.01);
    }
}
