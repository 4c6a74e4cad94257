//! NewReno's window decisions: RFC 5681 §3.1 congestion avoidance and
//! equation 4 at a congestion event (the recovery itself, RFC 6582, is
//! shared: [`super::Congestion`]).

use super::{AckSample, Controller, Window};
use crate::tcp::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct NewReno {
    /// Bytes acknowledged in congestion avoidance since cwnd last grew.
    acked_in_ca: usize,
}

impl Controller for NewReno {
    /// One MSS per cwnd of data acknowledged (RFC 5681 §3.1, eq. 3's
    /// byte-counting form, RFC 3465).
    fn avoid(&mut self, window: &mut Window, acked: usize, _sample: &AckSample) {
        self.acked_in_ca += acked;
        if self.acked_in_ca >= window.cwnd {
            self.acked_in_ca -= window.cwnd;
            window.cwnd += window.mss;
        }
    }

    /// RFC 5681 eq. 4: ssthresh = max(FlightSize / 2, 2·SMSS).
    fn reduce(&mut self, window: &Window, flight: usize, _now: Instant) -> usize {
        self.acked_in_ca = 0;
        (flight / 2).max(2 * window.mss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tcp::seq::Seq;

    #[test]
    fn one_mss_per_window_acknowledged() {
        let mut reno = NewReno::default();
        let mut w = Window {
            cwnd: 5000,
            ssthresh: 5000,
            mss: 1000,
        };
        let sample = AckSample {
            now: Instant(0),
            rtt: None,
            srtt: None,
            snd_nxt: Seq(0),
            ack: Seq(0),
            flight_before: 0,
        };
        reno.avoid(&mut w, 4999, &sample);
        assert_eq!(w.cwnd, 5000, "less than a window acked: no growth yet");
        reno.avoid(&mut w, 1, &sample);
        assert_eq!(w.cwnd, 6000, "a whole window acked: one MSS more");
    }
}
