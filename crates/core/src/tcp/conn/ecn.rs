//! Explicit Congestion Notification (RFC 3168 §6.1), the classic kind:
//! negotiated on the SYNs, ECT(0) on new data, CE marks echoed with ECE
//! until the sender's CWR, and an echo answered as a loss would be, once
//! per window of data, without resending anything. (Accurate ECN, RFC
//! 9768, is a later step.)
//!
//! Transitions of [`EcnState`]:
//!
//! | event | condition | effect |
//! |---|---|---|
//! | our SYN (active open) | `ecn = "on"`, first transmission | ECE+CWR on it, `requested` |
//! | our SYN again | after a timeout | no ECN flags, `requested` cleared (§6.1.1.1: a middlebox may drop ECN-setup SYNs) |
//! | SYN-ACK arrives | `requested`, ECE set, CWR clear | `enabled` |
//! | SYN arrives (passive open) | ECE and CWR set, `ecn` not `"off"` | `enabled`, ECE on our SYN-ACK |
//! | segment arrives | `enabled`, CWR set | `echo` cleared (§6.1.3) |
//! | segment arrives | `enabled`, IP CE | `echo` set, an ACK at once |
//! | ACK arrives | `enabled`, ECE, not SYN | window cut once per window (§6.1.2), `cwr_due` |
//! | new data sent | `enabled` | ECT(0); CWR on it if `cwr_due`, which clears |
//!
//! Never ECT (§6.1.1, §6.1.4–6): SYNs, pure ACKs, retransmissions,
//! window and keepalive probes, RSTs.

use super::{AckUrgency, Conn, Ctx};
use crate::tcp::config::{EcnMode, TcpConfig};
use crate::wire::{Ecn, TcpFlags};

/// A connection's ECN state (see the module doc's table).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct EcnState {
    /// Both sides agreed on the SYNs.
    pub enabled: bool,
    /// Our SYN asked for ECN (active open, before the SYN-ACK).
    pub requested: bool,
    /// A CE mark arrived: our ACKs carry ECE until a segment with CWR.
    pub echo: bool,
    /// The window was cut for the peer's echo: the next new data segment
    /// carries CWR.
    pub cwr_due: bool,
}

/// ECE and CWR together on a SYN: an ECN-setup SYN (§6.1.1).
pub(crate) fn is_ecn_setup_syn(flags: TcpFlags) -> bool {
    flags.syn() && !flags.ack() && flags.ece() && flags.cwr()
}

impl Conn {
    /// A passive open's SYN (§6.1.1): ECN is on when the peer's SYN asks
    /// and the configuration allows.
    pub fn accept_ecn(&mut self, config: &TcpConfig, syn_flags: TcpFlags) {
        self.ecn.enabled = config.ecn != EcnMode::Off && is_ecn_setup_syn(syn_flags);
    }

    /// An active open's SYN-ACK (§6.1.1): ECN is on when our SYN asked
    /// and the peer's SYN-ACK says yes (ECE without CWR).
    pub fn ecn_after_syn_ack(&mut self, flags: TcpFlags) {
        self.ecn.enabled = self.ecn.requested && flags.ece() && !flags.cwr();
        self.ecn.requested = false;
    }

    /// The ECN flags for our SYN or SYN-ACK. A SYN asks only on its first
    /// transmission: a retransmitted one goes without (Linux's fallback,
    /// RFC 3168 §6.1.1.1), and then ECN stays off.
    pub fn syn_ecn_flags(&mut self, config: &TcpConfig, syn_ack: bool) -> TcpFlags {
        if syn_ack {
            return if self.ecn.enabled {
                TcpFlags::ECE
            } else {
                TcpFlags::empty()
            };
        }
        self.ecn.requested = config.ecn == EcnMode::On && self.retries == 0;
        if self.ecn.requested {
            TcpFlags::ECE | TcpFlags::CWR
        } else {
            TcpFlags::empty()
        }
    }

    /// An acceptable segment of a synchronized connection arrived with IP
    /// ECN field `ecn` (§6.1.3): CWR ends our echo, then a CE mark starts
    /// one (both on one segment: congestion again, echo again). The first
    /// mark is acknowledged at once so the sender hears of it a delayed ACK
    /// sooner (Linux's quick-ACK on CE).
    pub fn receive_ecn(&mut self, ctx: &mut Ctx<'_>, flags: TcpFlags, ecn: Ecn) {
        if !self.ecn.enabled {
            return;
        }
        if flags.cwr() {
            self.ecn.echo = false;
        }
        if ecn == Ecn::Ce {
            ctx.stats.ce_received += 1;
            if !self.ecn.echo {
                self.ecn.echo = true;
                self.ack_urgency = AckUrgency::Now;
            }
        }
    }

    /// An ACK with ECE (§6.1.2): cut the window as for a loss (BBR does
    /// not), once per window of data and not in loss recovery (see
    /// [`Congestion::on_congestion_echo`](crate::tcp::congestion::Congestion::on_congestion_echo)).
    pub fn congestion_echoed(&mut self, ctx: &mut Ctx<'_>, flags: TcpFlags) {
        if !self.ecn.enabled || !flags.ece() || flags.syn() {
            return;
        }
        let cwnd = self.cc.cwnd();
        if self
            .cc
            .on_congestion_echo(self.flight(), self.snd_max, ctx.now)
        {
            // A model-based algorithm answers with CWR but keeps its window.
            if self.cc.cwnd() < cwnd {
                ctx.stats.ecn_window_reductions += 1;
            }
            self.ecn.cwr_due = true;
        }
    }

    /// The ECN codepoint and extra flags for a segment after the
    /// handshake: ECE on every one while echoing; ECT(0) and the due CWR
    /// on new data only (`new_data`: payload above SND.MAX, not a probe).
    pub fn segment_ecn(&self, new_data: bool) -> (Ecn, TcpFlags) {
        if !self.ecn.enabled {
            return (Ecn::NotEct, TcpFlags::empty());
        }
        let mut flags = TcpFlags::empty();
        if self.ecn.echo {
            flags |= TcpFlags::ECE;
        }
        if !new_data {
            return (Ecn::NotEct, flags);
        }
        if self.ecn.cwr_due {
            flags |= TcpFlags::CWR;
        }
        (Ecn::Ect0, flags)
    }
}
