//! Retransmission timeout, RFC 6298.

use std::time::Duration;

/// SRTT/RTTVAR estimator and the RTO with exponential backoff.
#[derive(Debug, Clone, Copy)]
pub struct RttEstimator {
    /// Smoothed RTT, µs; `None` before the first sample.
    srtt: Option<u64>,
    /// RTT variation, µs.
    rttvar: u64,
    /// The current RTO before backoff, µs.
    rto: u64,
    /// Consecutive timeouts: the RTO doubles for each (RFC 6298 §5.5).
    backoff: u8,
    min_rto: u64,
    max_rto: u64,
}

/// Clock granularity G of RFC 6298 §2: our clock ticks in µs, but the
/// shard's timers fire with roughly millisecond precision.
const GRANULARITY_US: u64 = 1000;

impl RttEstimator {
    /// RFC 6298 §2.1: before any sample, RTO = `initial` (1 s by default).
    pub fn new(initial: Duration, min: Duration, max: Duration) -> Self {
        Self {
            srtt: None,
            rttvar: 0,
            rto: initial.as_micros() as u64,
            backoff: 0,
            min_rto: min.as_micros() as u64,
            max_rto: max.as_micros() as u64,
        }
    }

    /// RFC 6298 §2.2–2.3: folds in one RTT measurement and resets backoff
    /// (§5.7: a new sample after backoff restarts from the estimate).
    pub fn sample(&mut self, rtt: Duration) {
        let r = (rtt.as_micros() as u64).max(1);
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                // RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R'|; SRTT = 7/8 SRTT + 1/8 R'
                let delta = srtt.abs_diff(r);
                self.rttvar = (3 * self.rttvar + delta) / 4;
                self.srtt = Some((7 * srtt + r) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        // §2.4: RTO = SRTT + max(G, 4 RTTVAR), then clamped.
        self.rto = srtt + (4 * self.rttvar).max(GRANULARITY_US);
        self.backoff = 0;
    }

    /// §5.5: the timer expired; the next RTO is twice as long.
    pub fn on_timeout(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// Consecutive timeouts since the last sample.
    pub fn backoff(&self) -> u8 {
        self.backoff
    }

    /// The RTO to arm now: the estimate clamped to [min, max] (§2.4–2.5),
    /// then doubled per timeout (§5.5) up to max.
    pub fn rto(&self) -> Duration {
        let base = self.rto.clamp(self.min_rto, self.max_rto);
        let backed = base.saturating_mul(1u64 << self.backoff.min(20));
        Duration::from_micros(backed.min(self.max_rto))
    }

    /// Smoothed RTT, if measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt.map(Duration::from_micros)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimator() -> RttEstimator {
        RttEstimator::new(
            Duration::from_secs(1),
            Duration::from_millis(200),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn first_sample_sets_srtt_and_half_variance() {
        let mut rtt = estimator();
        assert_eq!(rtt.rto(), Duration::from_secs(1), "RFC 6298 §2.1");
        rtt.sample(Duration::from_millis(100));
        // SRTT 100 ms, RTTVAR 50 ms, RTO = 100 + 4*50 = 300 ms.
        assert_eq!(rtt.rto(), Duration::from_millis(300));
        assert_eq!(rtt.srtt(), Some(Duration::from_millis(100)));
    }

    #[test]
    fn later_samples_smooth() {
        let mut rtt = estimator();
        rtt.sample(Duration::from_millis(100));
        rtt.sample(Duration::from_millis(200));
        // RTTVAR = 3/4*50 + 1/4*100 = 62.5; SRTT = 7/8*100 + 1/8*200 = 112.5
        assert_eq!(rtt.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(rtt.rto(), Duration::from_micros(112_500 + 250_000));
    }

    #[test]
    fn min_clamp_and_backoff_then_max_clamp() {
        let mut rtt = estimator();
        rtt.sample(Duration::from_micros(50));
        assert_eq!(rtt.rto(), Duration::from_millis(200), "clamped to min_rto");
        rtt.on_timeout();
        assert_eq!(
            rtt.rto(),
            Duration::from_millis(400),
            "§5.5 doubles the clamped RTO"
        );
        for _ in 0..30 {
            rtt.on_timeout();
        }
        assert_eq!(rtt.rto(), Duration::from_secs(60), "clamped to max_rto");
        rtt.sample(Duration::from_millis(100));
        assert_eq!(rtt.backoff(), 0);
    }
}
