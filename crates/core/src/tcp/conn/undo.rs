//! Spurious retransmission timeouts: the Eifel detection algorithm (RFC
//! 3522) with the Eifel response (RFC 4015), where RFC 5682's F-RTO asks
//! for "F-RTO or an equivalent".
//!
//! A timeout that fires while the data is only late — a delay spike on a
//! mobile path, a peer that stalled — costs a collapsed window and a
//! go-back-N of data that was never lost. With timestamps (RFC 7323) the
//! first ACK after the retransmission tells which copy arrived: it echoes
//! the TSval of the segment that made it acknowledge. An echo older than
//! the retransmission's TSval means the original got there (RFC 3522
//! §3.2): the timeout was spurious. Then (RFC 4015 §3, as Linux's
//! `tcp_undo_cwnd_reduction`) the window and ssthresh go back to what they
//! were before it, loss recovery ends, and the resending walk stops: the
//! rest of the flight was not lost either.
//!
//! Without timestamps nothing is detected (F-RTO's probing of new data is
//! not done).

use super::{Conn, Ctx};
use crate::wire::TcpRepr;

/// What the first timeout of a flight replaced, to be put back if it was
/// spurious. Twelve bytes, no `Option` (a connection's state is kept
/// small): a zero window means none is remembered.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RtoUndo {
    /// The congestion window and ssthresh before the timeout (bytes; 0:
    /// nothing remembered; an ssthresh still at its initial infinity is
    /// kept as `u32::MAX`).
    cwnd: u32,
    ssthresh: u32,
    /// TSval of the first retransmission, once it went out (0: not yet; a
    /// clock reading exactly 0 then costs one missed detection).
    retransmitted_at: u32,
}

impl RtoUndo {
    fn is_set(&self) -> bool {
        self.cwnd != 0
    }
}

impl Conn {
    /// The first retransmission timeout of a flight: remembers the window
    /// before it (only with timestamps, which detection needs).
    pub fn remember_before_timeout(&mut self) {
        if self.ts.enabled && !self.rto_undo.is_set() {
            self.rto_undo = RtoUndo {
                cwnd: self.cc.cwnd().clamp(1, u32::MAX as usize) as u32,
                ssthresh: self.cc.ssthresh().min(u32::MAX as usize) as u32,
                retransmitted_at: 0,
            };
        }
    }

    /// A retransmission of SND.UNA's segment after a timeout went out
    /// with `tsval`: the first one is what the peer's echo is compared to.
    pub fn note_timeout_retransmission(&mut self, tsval: u32) {
        let undo = &mut self.rto_undo;
        if undo.is_set() && undo.retransmitted_at == 0 {
            undo.retransmitted_at = tsval;
        }
    }

    /// The first ACK of new data after a timeout (RFC 3522 §3.2): if it
    /// echoes a TSval older than the retransmission's, the original
    /// arrived and the timeout was spurious — undo it (RFC 4015).
    pub fn detect_spurious_timeout(&mut self, ctx: &mut Ctx<'_>, seg: &TcpRepr<'_>) {
        let undo = std::mem::take(&mut self.rto_undo);
        let Some(ts) = seg.options.timestamps else {
            return;
        };
        if !undo.is_set() || undo.retransmitted_at == 0 {
            return;
        }
        if (ts.tsecr.wrapping_sub(undo.retransmitted_at) as i32) >= 0 {
            return; // the retransmission is what arrived: a real loss
        }
        let ssthresh = if undo.ssthresh == u32::MAX {
            usize::MAX
        } else {
            undo.ssthresh as usize
        };
        self.cc.undo_timeout(undo.cwnd as usize, ssthresh);
        if self.snd_nxt < self.snd_max {
            self.snd_nxt = self.snd_max;
        }
        self.retries = 0;
        ctx.stats.spurious_timeouts += 1;
    }
}
