//! Path MTU discovery from ICMP (RFC 1191 for IPv4; RFC 8201 is the same
//! for IPv6), with RFC 5927's defences against forged messages.
//!
//! A router that cannot forward a datagram with DF set drops it and says
//! so with the next hop's MTU. Believed only if the quoted sequence number
//! is data in flight (RFC 5927 §4.1: SND.UNA ≤ SEG.SEQ < SND.MAX) — a blind
//! attacker must guess it, as for an RST — and never below
//! [`MIN_PATH_MTU`] (RFC 5927 §7.2: a forged tiny MTU would otherwise make
//! every segment a few bytes). A lower MTU lowers the connection's MSS and
//! resends what was in flight in segments that fit (Linux's
//! `tcp_simple_retransmit`): the datagrams were dropped for their size, not
//! for congestion, so the window is not cut.
//!
//! The MSS is never raised again here: RFC 1191 §6.3's periodic increase
//! and PLPMTUD (RFC 4821) probing are not done.

use super::output::tcp_offset;
use super::{Conn, Ctx};
use crate::tcp::seq::Seq;
use crate::wire::{icmpv6, tcp};

/// The smallest IPv4 path MTU believed (Linux's `ip_rt_min_pmtu`, 552):
/// an ICMP claiming less is taken as this. IPv6's is its minimum link MTU,
/// 1280 ([`icmpv6::MIN_MTU`], RFC 8201 §4).
pub const MIN_PATH_MTU: usize = 552;

/// What a "packet too big" did to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TooBig {
    /// The MSS was lowered and the flight goes again in smaller segments.
    Lowered,
    /// The quoted sequence number is not in flight: stale or forged
    /// (RFC 5927 §4.1), ignored.
    NotInFlight,
    /// Already at or below what the MTU allows.
    NoChange,
}

impl Conn {
    /// A "fragmentation needed" (or ICMPv6 "packet too big") for the
    /// segment that started at `seq`, with path MTU `mtu`.
    pub fn on_packet_too_big(&mut self, ctx: &mut Ctx<'_>, seq: Seq, mtu: usize) -> TooBig {
        let in_flight = self.snd_una <= seq && seq < self.snd_max;
        if !(self.state.is_synchronized() && in_flight) {
            return TooBig::NotInFlight;
        }
        let floor = if self.tuple.is_ipv6() {
            icmpv6::MIN_MTU as usize
        } else {
            MIN_PATH_MTU
        };
        // Less the IP and TCP headers without options (RFC 9293 §3.7.1).
        let mss = mtu.max(floor) - tcp_offset(&self.tuple) - tcp::HEADER_LEN;
        if mss >= self.mss {
            return TooBig::NoChange;
        }
        tracing::debug!(tuple = ?self.tuple, from = self.mss, to = mss, "path MTU lowered");
        self.mss = mss;
        self.cc.set_segment_size(mss);
        // Everything from SND.UNA goes again in segments that fit, the
        // SACKed ranges skipped; Karn: no RTT sample from them.
        self.snd_nxt = self.snd_una;
        self.rtt_probe = None;
        self.tlp = None;
        self.tlp_pending = false;
        ctx.stats.pmtu_reductions += 1;
        TooBig::Lowered
    }
}
