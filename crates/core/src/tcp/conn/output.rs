//! What a connection sends next, and writing it (IPv4 or IPv6, by the
//! flow's family, then TCP) into the caller's buffer.
//!
//! Priority, highest first: RST; SYN or SYN-ACK; a fast retransmission
//! (SND.UNA's segment); a tail-loss probe; the retransmission the SACK
//! scoreboard picks (RFC 6675 NextSeg); a zero-window or keepalive probe;
//! new data, or a timeout's resending walk that skips SACKed ranges, with
//! FIN on the last segment; a lone FIN; a pure ACK. Every segment after the SYN
//! carries an ACK, so each one also satisfies a pending ACK. ECN's flags and
//! codepoint are added to the chosen segment (`ecn.rs`).
//!
//! Segments without data (ACK, RST) carry SND.MAX, the highest sequence
//! number sent, not SND.NXT: after a retransmission timeout SND.NXT goes
//! back to SND.UNA, and an ACK numbered there would fail the peer's
//! acceptability test (it has received past it) and be dropped unread.

use super::timers::Timer;
use super::{AckUrgency, Conn};
use crate::tcp::pool::ChunkPool;
use crate::tcp::seq::Seq;
use crate::tcp::time::Instant;
use crate::tcp::types::FourTuple;
use crate::tcp::types::State;
use crate::tcp::TcpConfig;
use crate::wire::{Ecn, IpRepr, SackBlocks, TcpFlags, TcpOptions, TcpPacket, TcpRepr, Timestamps};

/// Most header bytes a segment needs: IPv6 (40, no extension headers) +
/// TCP with 40 bytes of options.
pub(crate) const MAX_HEADERS: usize = crate::wire::ipv6::HEADER_LEN + 60;

/// Where the TCP header starts in a segment of `tuple`'s flow: after the
/// IP header of its family (20 or 40 bytes).
pub(crate) fn tcp_offset(tuple: &FourTuple) -> usize {
    crate::wire::ip::header_len(tuple.is_ipv6())
}

/// Completes a segment whose TCP header and payload (`tcp_len` bytes) sit
/// after the IP header's room ([`tcp_offset`]) in `buf`: fills the TCP
/// checksum over the family's pseudo-header, then writes the IP header.
/// Returns the packet length.
pub(crate) fn finish_segment(buf: &mut [u8], tuple: &FourTuple, tcp_len: usize, ecn: Ecn) -> usize {
    let (src, dst) = (tuple.local.ip(), tuple.remote.ip());
    let start = tcp_offset(tuple);
    TcpPacket::new_unchecked(&mut buf[start..start + tcp_len]).fill_checksum(src, dst);
    IpRepr::tcp(src, dst, tcp_len as u16, ecn).emit(&mut buf[..start]);
    start + tcp_len
}

/// A segment's header fields before they are written.
#[derive(Debug, Clone, Copy)]
struct Plan {
    seq: Seq,
    flags: TcpFlags,
    /// Payload: `len` bytes of the send buffer from `offset`.
    offset: usize,
    len: usize,
    syn_options: bool,
    /// A tail-loss probe (RFC 8985 §7.3).
    loss_probe: bool,
    /// A zero-window probe or one overriding sender SWS avoidance: never
    /// ECN-capable (RFC 3168 §6.1.6).
    window_probe: bool,
}

impl Plan {
    /// A segment of `len` bytes of the send buffer (which starts at
    /// `buf_seq`) from `seq`.
    fn data(seq: Seq, flags: TcpFlags, buf_seq: Seq, len: usize) -> Self {
        Plan {
            seq,
            flags,
            offset: seq - buf_seq,
            len,
            syn_options: false,
            loss_probe: false,
            window_probe: false,
        }
    }

    /// A segment without payload: an ACK, RST, FIN or keepalive probe.
    fn control(seq: Seq, flags: TcpFlags) -> Self {
        Plan {
            seq,
            flags,
            offset: 0,
            len: 0,
            syn_options: false,
            loss_probe: false,
            window_probe: false,
        }
    }
}

impl Conn {
    /// True if [`poll_segment`](Self::poll_segment) would produce a segment.
    pub fn wants_to_send(&self) -> bool {
        self.rst_pending
            || (matches!(self.state, State::SynSent | State::SynReceived)
                && self.snd_nxt == self.iss)
            || self.fast_retransmit_pending
            || self.tlp_pending
            || self.sack_retransmission().is_some()
            || self.probe_pending
            || self.keepalive_pending
            || self.ack_urgency == AckUrgency::Now
            || self.sendable_data() > 0
            || self.fin_sendable()
    }

    /// Payload bytes per segment: the MSS less the options every segment
    /// carries (RFC 9293 §3.7.1 counts the MSS without options; RFC 7323
    /// §3.2: the 12 bytes of timestamps come out of it). Without this a
    /// full segment exceeds the path MTU.
    pub fn send_mss(&self) -> usize {
        self.mss - if self.ts.enabled { 12 } else { 0 }
    }

    /// Payload bytes a segment may carry now: [`send_mss`](Self::send_mss)
    /// less the SACK option that rides along while out-of-order data is
    /// held (RFC 2018 §3; Linux's `tcp_current_mss` does the same). Before,
    /// a full data segment left no room and carried no SACK blocks: with
    /// data flowing both ways over a lossy path, the peer's sender saw none
    /// and fell back to timeouts (a Linux client resent 47 % of 16 MiB).
    pub fn max_payload(&self) -> usize {
        let mut payload = self.send_mss();
        let held = self.assembler.ranges().len() + usize::from(self.dsack.is_some());
        if self.sack_permitted && held > 0 {
            let most = if self.ts.enabled { 3 } else { 4 };
            payload -= 4 + 8 * held.min(most);
        }
        payload
    }

    fn may_send_data(&self) -> bool {
        matches!(
            self.state,
            State::Established
                | State::CloseWait
                | State::FinWait1
                | State::LastAck
                | State::Closing
        )
    }

    /// Where the next segment of new data (or of a timeout's resending
    /// walk, while SND.NXT is behind SND.MAX) starts: SND.NXT, past any
    /// range the peer SACKed.
    fn next_send_seq(&self) -> Seq {
        let next = self.snd_nxt.max(self.send_buf_seq());
        match self.sacked() {
            Some(sb) if next < self.snd_max => sb.skip_sacked(next),
            _ => next,
        }
    }

    /// Bytes of new data that may go now (window, congestion window, and
    /// sender silly-window avoidance, RFC 9293 §3.8.6.2.1), from
    /// [`next_send_seq`](Self::next_send_seq); a resending walk stops at
    /// the next SACKed range.
    fn sendable_data(&self) -> usize {
        if !self.may_send_data() {
            return 0;
        }
        let next = self.next_send_seq();
        let unsent = self.data_end().diff(next).max(0) as usize;
        if unsent == 0 {
            return 0;
        }
        // The peer's window bounds the sequence space, the congestion
        // window what is in the network.
        let receive_room = (self.snd_una + self.snd_wnd as usize).diff(next).max(0) as usize;
        let congestion_room = self.congestion_room();
        let mut len = unsent
            .min(receive_room)
            .min(congestion_room)
            .min(self.max_payload());
        let mut hole_end = false;
        if next < self.snd_max {
            if let Some(end) = self.sacked().and_then(|sb| sb.hole_end(next)) {
                hole_end = len >= end - next;
                len = len.min(end - next);
            }
        }
        // Send a full segment, or everything that is queued, or what fills
        // a hole, or at least half the largest window the peer has offered.
        if len == self.max_payload()
            || len == unsent
            || (len > 0 && hole_end)
            || (len > 0 && len >= self.max_snd_wnd as usize / 2)
        {
            len
        } else {
            0
        }
    }

    /// RFC 6675 §5 (C): in a SACK fast recovery with room in the window
    /// (cwnd − pipe ≥ 1 SMSS), the retransmission NextSeg picks — the first
    /// lost hole above HighRxt (rule 1), or, when no new data can go, the
    /// first hole above it below SACKed data (rule 3) — as (start, length).
    /// The same after a timeout once its resending walk reached SND.MAX:
    /// holes whose resent segments were lost in turn go again without
    /// waiting for the next timeout.
    fn sack_retransmission(&self) -> Option<(Seq, usize)> {
        if !self.cc.in_loss_recovery() || self.snd_nxt < self.snd_max {
            return None;
        }
        let sb = self.sacked()?;
        let mss = self.send_mss();
        if self.congestion_room() < mss {
            return None;
        }
        let from = self.high_rxt.max(self.snd_una);
        let (start, end) = sb.next_lost(from, mss, self.lost_below).or_else(|| {
            (self.sendable_data() == 0)
                .then(|| sb.next_hole(from))
                .flatten()
        })?;
        let buffered = self.data_end().diff(start).max(0) as usize;
        let len = (end - start).min(self.max_payload()).min(buffered);
        (len > 0).then_some((start, len))
    }

    fn fin_sendable(&self) -> bool {
        self.fin_queued
            && self.may_send_data()
            && !self.fin_acked()
            && self.next_send_seq() == self.data_end()
    }

    /// Chooses the next segment, if any.
    fn plan(&mut self) -> Option<Plan> {
        let ack_flags = TcpFlags::ACK;
        if self.rst_pending {
            self.rst_pending = false;
            let seq = self.snd_max;
            return Some(Plan::control(seq, TcpFlags::RST | TcpFlags::ACK));
        }
        match self.state {
            State::SynSent | State::SynReceived if self.snd_nxt == self.iss => {
                let flags = if self.state == State::SynSent {
                    TcpFlags::SYN
                } else {
                    TcpFlags::SYN | TcpFlags::ACK
                };
                return Some(Plan {
                    syn_options: true,
                    ..Plan::control(self.iss, flags)
                });
            }
            State::SynSent | State::SynReceived => {
                return self
                    .take_ack()
                    .then_some(Plan::control(self.snd_max, ack_flags))
            }
            _ => {}
        }
        let buf_seq = self.send_buf_seq();
        if self.fast_retransmit_pending {
            self.fast_retransmit_pending = false;
            let available = self
                .send_buf
                .len()
                .saturating_sub(self.snd_una - buf_seq.min(self.snd_una));
            let mut len = available.min(self.max_payload());
            if let Some(end) = self.sacked().and_then(|sb| sb.hole_end(self.snd_una)) {
                len = len.min(end - self.snd_una);
            }
            let mut flags = ack_flags;
            if self.fin_queued && self.snd_una + len == self.data_end() && self.fin_sent() {
                flags |= TcpFlags::FIN;
            }
            if len > 0 || flags.fin() {
                return Some(Plan::data(self.snd_una, flags, buf_seq, len));
            }
        }
        if self.tlp_pending {
            self.tlp_pending = false;
            if let Some((seq, len, fin)) = self.loss_probe_segment() {
                let mut flags = ack_flags;
                if fin {
                    flags |= TcpFlags::FIN;
                }
                if len > 0 && seq + len == self.data_end() {
                    flags |= TcpFlags::PSH;
                }
                return Some(Plan {
                    loss_probe: true,
                    ..Plan::data(seq, flags, buf_seq, len)
                });
            }
        }
        if let Some((seq, len)) = self.sack_retransmission() {
            return Some(Plan::data(seq, ack_flags, buf_seq, len));
        }
        if self.probe_pending {
            self.probe_pending = false;
            let next = self.snd_nxt.max(buf_seq);
            let unsent = self.data_end().diff(next).max(0) as usize;
            if unsent > 0 && self.may_send_data() {
                // Zero window: one byte past it (RFC 9293 §3.8.6.1). A small
                // window that sender SWS avoidance held back: what fits, now
                // that the override timer ran out (§3.8.6.2.1).
                let room = (self.snd_wnd as usize).saturating_sub(self.flight());
                let len = unsent.min(self.max_payload()).min(room.max(1));
                let mut flags = ack_flags;
                if next + len == self.data_end() {
                    flags |= TcpFlags::PSH;
                }
                return Some(Plan {
                    window_probe: true,
                    ..Plan::data(next, flags, buf_seq, len)
                });
            }
        }
        if self.keepalive_pending {
            self.keepalive_pending = false;
            // §3.8.4: SEG.SEQ = SND.NXT-1, no data: the peer must ACK it.
            let seq = Seq(self.snd_nxt.0.wrapping_sub(1));
            return Some(Plan::control(seq, ack_flags));
        }
        let len = self.sendable_data();
        if len > 0 {
            let seq = self.next_send_seq();
            let mut flags = ack_flags;
            if seq + len == self.data_end() {
                flags |= TcpFlags::PSH;
                if self.fin_queued {
                    flags |= TcpFlags::FIN;
                }
            }
            return Some(Plan::data(seq, flags, buf_seq, len));
        }
        if self.fin_sendable() {
            let flags = TcpFlags::FIN | TcpFlags::ACK;
            return Some(Plan::control(self.data_end(), flags));
        }
        // SND.MAX: never behind what the peer has (see the module doc).
        self.take_ack()
            .then_some(Plan::control(self.snd_max, ack_flags))
    }

    fn take_ack(&mut self) -> bool {
        self.ack_urgency == AckUrgency::Now
    }

    /// Writes the next segment (IP header first) into `buf`, which must
    /// hold at least [`MAX_HEADERS`] + MSS bytes, and updates the send
    /// state. Returns the bytes written.
    pub fn poll_segment(
        &mut self,
        now: Instant,
        config: &TcpConfig,
        pool: &ChunkPool,
        buf: &mut [u8],
    ) -> Option<usize> {
        let mut plan = self.plan()?;
        let ecn = if plan.syn_options {
            plan.flags |= self.syn_ecn_flags(config, plan.flags.ack());
            Ecn::NotEct
        } else if plan.flags.rst() {
            Ecn::NotEct
        } else {
            let new_data = plan.len > 0 && plan.seq >= self.snd_max && !plan.window_probe;
            let (ecn, ecn_flags) = self.segment_ecn(new_data);
            plan.flags |= ecn_flags;
            ecn
        };
        let flags = plan.flags;

        // Options: on SYNs what we offer (or accept); otherwise timestamps
        // and SACK blocks as negotiated.
        let mut options = TcpOptions::default();
        if plan.syn_options {
            options.mss = Some(config.mss_for(&self.tuple.remote));
            let offer_all = self.state == State::SynSent;
            if config.window_scaling && (offer_all || self.rcv_shift > 0 || self.snd_shift > 0) {
                options.window_scale = Some(self.rcv_shift_for_syn(config));
            }
            options.sack_permitted = config.sack && (offer_all || self.sack_permitted);
            if config.timestamps && (offer_all || self.ts.enabled) {
                let tsecr = if offer_all { 0 } else { self.ts.recent };
                options.timestamps = Some(Timestamps {
                    tsval: self.tsval(now),
                    tsecr,
                });
            }
        } else {
            if self.ts.enabled {
                options.timestamps = Some(Timestamps {
                    tsval: self.tsval(now),
                    tsecr: self.ts.recent,
                });
            }
            // SACK blocks ride on a segment only as far as they fit within
            // the MSS beside its payload (a pure ACK has room for all).
            let room = self.mss.saturating_sub(plan.len + options.buffer_len());
            let max_blocks = room.saturating_sub(4) / 8;
            if self.sack_permitted && max_blocks > 0 {
                let mut blocks = SackBlocks::default();
                // A D-SACK first (RFC 2883 §4), then the held ranges.
                if let Some((start, end)) = self.dsack.take() {
                    blocks.push(start.0, end.0);
                }
                let base = self.rcv_nxt;
                let room_left = max_blocks.min(4) - blocks.len();
                self.assembler.sack_blocks(room_left, |start, end| {
                    blocks.push((base + start as usize).0, (base + end as usize).0);
                });
                options.sack_blocks = blocks;
            }
        }

        // The window we advertise: unscaled on SYNs (RFC 7323 §2.2).
        let free = self.receive_window(pool.is_short());
        let window_len = if flags.syn() {
            free.min(65535) as u16
        } else {
            (free >> self.rcv_shift).min(65535) as u16
        };
        let ack_number = if flags.ack() { self.rcv_nxt.0 } else { 0 };
        let repr = TcpRepr {
            src_port: self.tuple.local.port(),
            dst_port: self.tuple.remote.port(),
            seq_number: plan.seq.0,
            ack_number,
            flags,
            window_len,
            urgent_at: 0,
            options,
            payload: &[],
        };
        let tcp_start = tcp_offset(&self.tuple);
        let header_len = repr.emit_header(&mut buf[tcp_start..]);
        let payload_start = tcp_start + header_len;
        let copied = self.send_buf.peek(
            pool,
            plan.offset,
            &mut buf[payload_start..payload_start + plan.len],
        );
        debug_assert_eq!(copied, plan.len);
        let written = finish_segment(buf, &self.tuple, header_len + copied, ecn);
        self.after_send(now, plan, copied, free);
        Some(written)
    }

    /// The shift we announce on our SYN or SYN-ACK.
    fn rcv_shift_for_syn(&mut self, config: &TcpConfig) -> u8 {
        if self.state == State::SynSent {
            self.rcv_shift = config.window_shift();
        }
        self.rcv_shift
    }

    /// Arms the persist timer when data waits and nothing in flight will
    /// bring an ACK to release it: a zero window (§3.8.6.1), or a window
    /// too small for sender SWS avoidance (the override timer of
    /// §3.8.6.2.1). Stops it once data can flow.
    pub fn update_persist(&mut self, now: Instant) {
        let next = self.snd_nxt.max(self.send_buf_seq());
        let waiting = self.may_send_data() && self.data_end().diff(next) > 0;
        if waiting && self.flight() == 0 && self.sendable_data() == 0 {
            if !self.timers.is_set(Timer::Persist) {
                self.timers.set(Timer::Persist, now + self.rtt.rto());
            }
        } else if self.timers.is_set(Timer::Persist) && self.sendable_data() > 0 {
            self.timers.stop(Timer::Persist);
        }
    }

    /// Bookkeeping after a segment went out.
    fn after_send(&mut self, now: Instant, plan: Plan, len: usize, free: usize) {
        let flags = plan.flags;
        if flags.ack() {
            self.ack_urgency = AckUrgency::None;
            self.unacked_segments = 0;
            self.timers.stop(Timer::DelayedAck);
            self.last_ack_sent = self.rcv_nxt;
            let advertised = if flags.syn() {
                free.min(65535)
            } else {
                self.scaled_window_announced = true;
                (free >> self.rcv_shift).min(65535) << self.rcv_shift
            };
            let edge = self.rcv_nxt + advertised;
            if edge > self.rcv_adv {
                self.rcv_adv = edge;
            }
        }
        if flags.rst() {
            return;
        }
        let seq_len = len + usize::from(flags.syn()) + usize::from(flags.fin());
        if seq_len == 0 {
            return;
        }
        self.recovery_credit = false;
        if flags.cwr() {
            self.ecn.cwr_due = false;
        }
        if flags.fin() {
            self.fin_seq = Some(plan.seq + len);
        }
        if len > 0 {
            self.pace(now, len);
        }
        let end = plan.seq + seq_len;
        let retransmission = plan.seq < self.snd_max;
        if end > self.snd_nxt {
            self.snd_nxt = end;
        }
        if end > self.snd_max {
            self.snd_max = end;
        }
        if !retransmission && self.rtt_probe.is_none() {
            self.rtt_probe = Some((plan.seq, now));
        }
        if retransmission {
            if plan.seq == self.snd_una && self.cc.in_timeout_recovery() {
                self.note_timeout_retransmission(self.tsval(now));
            }
            self.retransmitted = self.retransmitted.saturating_add(1);
            self.retransmitted_bytes = self.retransmitted_bytes.saturating_add(len as u32);
            if self.cc.in_loss_recovery() {
                if end > self.high_rxt {
                    self.high_rxt = end;
                }
                self.rxt_round = Some(self.snd_max);
            }
        }
        if plan.loss_probe {
            // RFC 8985 §7.3: the probe in flight, the RTO restarted.
            self.tlp = Some((plan.seq, end));
            self.arm_retransmit(now);
        } else if !self.timers.is_set(Timer::Retransmit) {
            self.arm_retransmit(now);
        } else {
            // §7.2: new data restarts the probe timer (and here a
            // retransmission in fast recovery too, see `arm_loss_probe`).
            self.arm_loss_probe(now);
        }
    }
}
