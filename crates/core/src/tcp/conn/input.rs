//! SEGMENT ARRIVES for a connection that exists (RFC 9293 §3.10.7.3 for
//! SYN-SENT, §3.10.7.4 for the others), with RFC 5961's checks (exact-match
//! RST, challenge ACKs, ACK range) and RFC 7323 (PAWS, TS.Recent, window
//! scale). LISTEN and CLOSED are the stack's (`stack.rs`).

use super::timers::Timer;
use super::{AckUrgency, Conn, Ctx};
use crate::tcp::congestion::{AckAction, AckSample, Delivery};
use crate::tcp::scoreboard::SackNews;
use crate::tcp::seq::Seq;
use crate::tcp::transition::Trigger;
use crate::tcp::types::{Event, ResetCause, State};
use crate::wire::{Ecn, TcpOptions, TcpRepr};

/// A stateless reply a segment calls for, sent by the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reply {
    /// `<SEQ=seq><CTL=RST>` (RFC 9293 §3.10.7.3/§3.10.7.4 "bad ACK").
    Rst { seq: Seq },
}

/// The sequence space a segment occupies (RFC 9293 §3.4: SYN and FIN count).
fn segment_len(seg: &TcpRepr<'_>) -> usize {
    seg.segment_len()
}

/// Largest MSS we accept from a peer: what fits a 1500-byte (or our
/// configured) MTU; smallest: RFC 9293 §3.7.1's 536 default floor is for
/// absent options, a tiny announced MSS is honoured down to 64.
fn clamp_mss(announced: Option<u16>, ours: u16) -> usize {
    usize::from(announced.unwrap_or(536).clamp(64, ours))
}

impl Conn {
    /// Applies the options of the peer's SYN (RFC 7323 §2.2, §3.2; RFC 2018
    /// §2; RFC 9293 §3.7.1): a feature is on only if both sides offered it.
    pub fn negotiate(&mut self, config: &crate::tcp::TcpConfig, options: &TcpOptions) {
        self.mss = clamp_mss(options.mss, config.mss_for(&self.tuple.remote));
        self.cc.set_mss(self.mss);
        match options.window_scale {
            Some(shift) if config.window_scaling => {
                // RFC 7323 §2.3: a shift above 14 is used as 14.
                self.snd_shift = shift.min(14);
                self.rcv_shift = config.window_shift();
            }
            _ => {
                self.snd_shift = 0;
                self.rcv_shift = 0;
            }
        }
        self.sack_permitted = config.sack && options.sack_permitted;
        match options.timestamps {
            Some(ts) if config.timestamps => {
                self.ts.enabled = true;
                self.ts.recent = ts.tsval;
            }
            _ => self.ts.enabled = false,
        }
    }

    /// RFC 9293 §3.10.7.3: a segment for a connection in SYN-SENT.
    pub fn handle_syn_sent(&mut self, ctx: &mut Ctx<'_>, seg: &TcpRepr<'_>) -> Option<Reply> {
        let ack = Seq(seg.ack_number);
        let seq = Seq(seg.seq_number);
        // First: the ACK bit.
        let ack_ok = seg.flags.ack() && ack > self.snd_una && ack <= self.snd_max;
        if seg.flags.ack() && !ack_ok {
            if seg.flags.rst() {
                return None;
            }
            ctx.stats.drop_bad_ack += 1;
            return Some(Reply::Rst { seq: ack });
        }
        // Second: RST, only with an acceptable ACK: connection refused.
        if seg.flags.rst() {
            if ack_ok {
                ctx.stats.resets_received += 1;
                self.reset(ctx, ResetCause::Refused, false);
            }
            return None;
        }
        // Fourth: SYN.
        if !seg.flags.syn() {
            ctx.stats.drop_bad_flags += 1;
            return None;
        }
        self.irs = seq;
        self.rcv_nxt = seq + 1;
        self.rcv_adv = self.rcv_nxt;
        self.negotiate(ctx.config, &seg.options);
        self.snd_wnd = u32::from(seg.window_len); // never scaled in a SYN
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = seq;
        self.snd_wl2 = ack;
        if ack_ok {
            self.ecn_after_syn_ack(seg.flags);
            ctx.stats.ecn_negotiated += u64::from(self.ecn.enabled);
            self.snd_una = ack;
            self.rtt_sample_on_ack(ctx, seg);
            self.retries = 0;
            self.timers.stop(Timer::Retransmit);
            self.transition(Trigger::RcvSynAck);
            self.ack_urgency = AckUrgency::Now;
            ctx.emit(Event::Connected);
            ctx.stats.opened(self.tuple.is_ipv6());
        } else {
            // Simultaneous open: SYN-RECEIVED, resend our SYN with an ACK.
            self.transition(Trigger::RcvSyn);
            self.snd_nxt = self.iss;
        }
        None
    }

    /// RFC 9293 §3.10.7.4: a segment for a connection in SYN-RECEIVED or a
    /// synchronized state (TIME-WAIT lives in its own table).
    /// `ecn` is the IP header's ECN field.
    pub fn handle_segment(
        &mut self,
        ctx: &mut Ctx<'_>,
        seg: &TcpRepr<'_>,
        ecn: Ecn,
    ) -> Option<Reply> {
        let seq = Seq(seg.seq_number);
        let len = segment_len(seg);

        // A retransmitted SYN in SYN-RECEIVED: our SYN-ACK was lost. Send it
        // again (what Linux does) rather than the plain ACK of the
        // acceptability test.
        if self.state == State::SynReceived && seg.flags.syn() && !seg.flags.ack() {
            if seq == self.irs && !seg.flags.rst() {
                self.snd_nxt = self.iss;
            }
            return None;
        }

        // RFC 7323 §5.3 PAWS, before the sequence check: a segment whose
        // TSval is older than TS.Recent is a duplicate from an old epoch.
        if self.ts.enabled && !seg.flags.rst() {
            if let Some(ts) = seg.options.timestamps {
                if (ts.tsval.wrapping_sub(self.ts.recent) as i32) < 0 {
                    ctx.stats.drop_paws += 1;
                    self.ack_urgency = AckUrgency::Now;
                    return None;
                }
            }
        }

        // First: is the segment acceptable (the four cases of §3.10.7.4)?
        let window = self.receive_window(ctx.pool.is_short());
        let acceptable = match (len, window) {
            (0, 0) => seq == self.rcv_nxt,
            (0, w) => seq.in_range(self.rcv_nxt, self.rcv_nxt + w),
            (_, 0) => false,
            (l, w) => {
                let end = self.rcv_nxt + w;
                seq.in_range(self.rcv_nxt, end) || (seq + (l - 1)).in_range(self.rcv_nxt, end)
            }
        };
        // An old duplicate — data that all arrived before, as the peer
        // resends it after losing our ACKs — fails the test, but its ACK
        // field is as new as any: the peer's view of our data. BSD's
        // tcp_input keeps processing such a segment "for RST or ACK"; here
        // for the ACK only (no RST, no SYN), within a buffer's reach of
        // RCV.NXT, and its data and FIN are ignored. Dropping it whole,
        // as RFC 9293 §3.10.7.4 reads, cost 200 ms timeouts against a
        // Linux peer resending over a lossy path: its every segment was an
        // old duplicate, so none of its ACKs reached us.
        // (How far its end lies behind RCV.NXT, as a signed distance: two
        // numbers 2^31 apart are each "before" the other.)
        let behind = self.rcv_nxt.diff(seq + len);
        let old_duplicate = !acceptable
            && len > 0
            && (0..=self.recv_buf.capacity() as i64).contains(&i64::from(behind))
            && seg.flags.ack()
            && !seg.flags.rst()
            && !seg.flags.syn()
            && self.state.is_synchronized();
        if !acceptable {
            // A zero-window probe lands here too, and gets the ACK it wants.
            if !seg.flags.rst() {
                ctx.stats.drop_out_of_window += 1;
                self.ack_urgency = AckUrgency::Now;
                if len > 0 && behind >= 0 {
                    // All of it arrived before: the ACK says so (RFC 2883
                    // §4.1), and the peer learns its retransmission was
                    // not needed.
                    self.report_duplicate(seq, seq + len);
                }
            }
            if !old_duplicate {
                return None;
            }
        }

        // Second: RST (RFC 5961 §3.2: only an exact match resets; anything
        // else in the window gets a challenge ACK).
        if seg.flags.rst() {
            if seq == self.rcv_nxt {
                ctx.stats.resets_received += 1;
                if self.state == State::SynReceived && self.listener.is_some() {
                    // §3.10.7.4: a passive open returns to LISTEN, silently
                    // (the listener stays; the connection goes).
                    self.transition(Trigger::Reset);
                    self.app_closed = true;
                } else {
                    self.reset(ctx, ResetCause::Peer, false);
                }
            } else {
                self.challenge_ack(ctx);
            }
            return None;
        }

        // Fourth: SYN in a synchronized state (RFC 5961 §4): challenge ACK.
        if seg.flags.syn() {
            self.challenge_ack(ctx);
            return None;
        }

        // Fifth: ACK.
        if !seg.flags.ack() {
            ctx.stats.drop_bad_flags += 1;
            return None;
        }
        let ack = Seq(seg.ack_number);
        if self.state == State::SynReceived {
            if ack > self.snd_una && ack <= self.snd_max {
                self.transition(Trigger::RcvAckOfSyn);
                self.snd_wnd = u32::from(seg.window_len) << self.snd_shift;
                self.max_snd_wnd = self.snd_wnd;
                self.snd_wl1 = seq;
                self.snd_wl2 = ack;
                ctx.stats.opened(self.tuple.is_ipv6());
            } else {
                ctx.stats.drop_bad_ack += 1;
                return Some(Reply::Rst { seq: ack });
            }
        }
        // RFC 5961 §5.2: SND.UNA - MAX.SND.WND <= SEG.ACK <= SND.NXT.
        let oldest = Seq(self.snd_una.0.wrapping_sub(self.max_snd_wnd));
        if ack > self.snd_max || ack < oldest {
            ctx.stats.drop_bad_ack += 1;
            self.ack_urgency = AckUrgency::Now;
            return None;
        }
        // RFC 7323 §4.3: update TS.Recent from an acceptable segment that
        // covers Last.ACK.sent.
        if let Some(ts) = seg.options.timestamps {
            if self.ts.enabled && acceptable && seq <= self.last_ack_sent {
                self.ts.recent = ts.tsval;
            }
        }
        self.process_ack(ctx, seg, ack);
        if self.state == State::Closed {
            return None;
        }

        if old_duplicate {
            return None;
        }
        self.receive_ecn(ctx, seg.flags, ecn);
        // Sixth (URG) is ignored: urgent data is delivered in line.
        // Seventh: segment text.
        if !seg.payload.is_empty() {
            if self.state.can_receive() {
                self.receive_data(ctx, seq, seg.payload);
            } else {
                // Data after the peer's FIN: nothing to do but ACK.
                self.ack_urgency = AckUrgency::Now;
            }
        }
        // Eighth: FIN.
        if seg.flags.fin() {
            let fin_seq = seq + seg.payload.len();
            match self.state {
                State::CloseWait | State::Closing | State::LastAck => {
                    self.ack_urgency = AckUrgency::Now; // a retransmitted FIN
                }
                _ if fin_seq == self.rcv_nxt => self.receive_fin(ctx),
                _ if fin_seq > self.rcv_nxt => self.fin_pending = Some(fin_seq),
                _ => {}
            }
        }
        self.last_activity = ctx.now;
        self.arm_idle(ctx);
        None
    }

    /// RFC 5961 §7: a challenge ACK, within the per-second budget.
    fn challenge_ack(&mut self, ctx: &mut Ctx<'_>) {
        if *ctx.challenge_budget > 0 {
            *ctx.challenge_budget -= 1;
            ctx.stats.challenge_acks += 1;
            self.ack_urgency = AckUrgency::Now;
        } else {
            ctx.stats.challenge_acks_suppressed += 1;
        }
    }

    /// An RTT sample from this ACK folded into the estimator: the echoed
    /// timestamp (RFC 7323 §4.1), or Karn's single timed segment.
    ///
    /// Returns that sample (what HyStart++ reads, on every ACK with
    /// timestamps) and the timed segment's alone, for the path model: it
    /// is measured in microseconds where timestamps tick in milliseconds,
    /// and a path shorter than a millisecond (a LAN, a veth pair) gives
    /// 0 ms timestamp samples — a BBR min RTT of zero, a window of four
    /// segments. The segment is timed with or without timestamps; a
    /// sample that spans a retransmission is only ever too long, which a
    /// min-RTT filter ignores.
    fn rtt_sample_on_ack(
        &mut self,
        ctx: &mut Ctx<'_>,
        seg: &TcpRepr<'_>,
    ) -> (Option<std::time::Duration>, Option<std::time::Duration>) {
        let ack = Seq(seg.ack_number);
        let timed = match self.rtt_probe {
            Some((probe_seq, sent)) if ack > probe_seq => {
                self.rtt_probe = None;
                Some(ctx.now.saturating_since(sent))
            }
            _ => None,
        };
        let rtt = match seg.options.timestamps {
            Some(ts) if self.ts.enabled && ts.tsecr != 0 => {
                let elapsed_ms = self.tsval(ctx.now).wrapping_sub(ts.tsecr);
                (elapsed_ms < 60_000)
                    .then(|| std::time::Duration::from_millis(u64::from(elapsed_ms)))
            }
            _ => timed,
        };
        if let Some(rtt) = rtt {
            self.rtt.sample(rtt);
        }
        (rtt, timed)
    }

    /// §3.10.7.4 "fifth", ESTABLISHED and after: advance SND.UNA, free the
    /// acknowledged data, take in SACK blocks, update the window, drive
    /// loss recovery, congestion control and the close states.
    fn process_ack(&mut self, ctx: &mut Ctx<'_>, seg: &TcpRepr<'_>, ack: Seq) {
        let seq = Seq(seg.seq_number);
        let window = u32::from(seg.window_len) << self.snd_shift;
        let pipe_before = self.pipe();
        let advanced = ack > self.snd_una;
        let acked = if advanced { ack - self.snd_una } else { 0 };
        if advanced {
            let buf_start = self.send_buf_seq();
            if ack > buf_start {
                let data = (ack - buf_start).min(self.send_buf.len());
                self.send_buf.consume(ctx.pool, data);
            }
            self.snd_una = ack;
            if self.snd_nxt < ack {
                self.snd_nxt = ack;
            }
        }
        let (news, sacked_before) = self.take_sack_blocks(ctx, seg);
        // Bytes delivered for the first time (a model-based congestion
        // control's input): newly acknowledged and not SACKed before, and
        // newly SACKed.
        let delivered = acked.saturating_sub(sacked_before) + news.newly_sacked;
        let tail_lost = self.settle_loss_probe(ack);
        if advanced || news.new_bytes {
            // News arrived before a pending probe went out: the ACK clock
            // runs again, the probe is not needed.
            self.tlp_pending = false;
        }
        self.recovery_credit = self.cc.in_loss_recovery() && (advanced || news.new_bytes);
        if news.new_bytes && self.cc.in_loss_recovery() {
            self.detect_lost_retransmissions(ctx);
        }
        let mut timed_rtt = None;
        if advanced {
            self.detect_spurious_timeout(ctx, seg);
            let rtt;
            (rtt, timed_rtt) = self.rtt_sample_on_ack(ctx, seg);
            self.retries = 0;
            let sample = AckSample {
                now: ctx.now,
                rtt,
                srtt: self.rtt.srtt(),
                snd_nxt: self.snd_max,
                ack,
                flight_before: pipe_before,
            };
            if self.cc.on_ack(ack, acked, self.pipe(), &sample) == AckAction::RetransmitFirst {
                self.fast_retransmit_pending = true;
            }
            // Retransmissions of a recovery that ended may still be in
            // flight above SND.UNA (holes above its recovery point were
            // repaired in it too): until they are acknowledged, HighRxt
            // and the round that tells if they were lost stay, so that a
            // recovery starting now does not send them again.
            if self.high_rxt < ack {
                self.high_rxt = ack;
            }
            if !self.cc.in_loss_recovery() && self.high_rxt <= self.snd_una {
                self.rxt_round = None;
            }
            self.tune_send(ctx);
            // RFC 6298 §5.2–5.3.
            if self.flight() == 0 {
                self.timers.stop(Timer::Retransmit);
            } else {
                self.arm_retransmit(ctx.now);
            }
            if self.writable_wanted && self.send_buf.free() >= self.send_buf.capacity() / 2 {
                self.writable_wanted = false;
                ctx.emit(Event::Writable);
            }
        }
        // A duplicate ACK: RFC 5681 §2 (same window), or RFC 6675 §2 (new
        // SACK information; a peer whose window keeps growing, as Linux's
        // autotuning does, sends no other kind).
        let duplicate = !advanced
            && ack == self.snd_una
            && seg.payload.is_empty()
            && !seg.flags.fin()
            && self.flight() > 0
            && (window == self.snd_wnd || news.new_bytes);
        let dup_thresh = duplicate && self.cc.on_duplicate_ack();
        // RFC 6675 §5: DupThresh duplicate ACKs, or SND.UNA lost by the
        // scoreboard's count, start a fast recovery; so does a delivered
        // tail-loss probe with holes below it (RFC 8985 §6.2).
        let head_lost = news.new_bytes
            && self.sacked().is_some_and(|sb| {
                self.snd_una < self.lost_below || sb.is_lost(self.snd_una, self.send_mss())
            });
        let lost = dup_thresh || head_lost || tail_lost;
        if lost && self.cc.may_enter_recovery() && self.flight() > 0 {
            self.enter_fast_recovery(ctx);
        } else if news.new_bytes {
            self.arm_reorder(ctx.now);
        }
        // Only a model-based algorithm reads it: a loss-based one (the
        // default) pays no second walk of the scoreboard per ACK.
        if delivered > 0 && self.cc.model_based() {
            let pipe = self.pipe();
            let delivery = Delivery {
                now: ctx.now,
                bytes: delivered,
                prior_pipe: pipe_before,
                pipe,
                rtt: timed_rtt,
                srtt: self.rtt.srtt(),
                app_limited: self.app_limited(pipe),
            };
            self.cc.on_delivery(&delivery);
        }
        self.congestion_echoed(ctx, seg.flags);
        // Window update: from a newer segment, or the same one with a newer ACK.
        if self.snd_wl1 < seq || (self.snd_wl1 == seq && self.snd_wl2 <= ack) {
            let was_zero = self.snd_wnd == 0;
            self.snd_wnd = window;
            self.max_snd_wnd = self.max_snd_wnd.max(window);
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            if was_zero && window > 0 {
                self.timers.stop(Timer::Persist);
                self.probe_pending = false;
            }
        }
        // Close states driven by the ACK of our FIN.
        if self.fin_acked()
            && matches!(
                self.state,
                State::FinWait1 | State::Closing | State::LastAck
            )
        {
            self.transition(Trigger::RcvAckOfFin);
            match self.state {
                State::FinWait2 => self.arm_idle(ctx),
                State::Closed => {
                    ctx.stats.connections_closed += 1;
                    if !self.app_closed {
                        ctx.emit(Event::Closed);
                    }
                }
                _ => {}
            }
        }
    }

    /// Starts a fast recovery (RFC 6675 §5 steps 4.1–4.3): the algorithm's
    /// reduction, the retransmission of SND.UNA's segment; no probe or
    /// reordering timer meanwhile.
    ///
    /// HighRxt is not set back to SND.UNA (step 4.1 would): where the
    /// previous recovery retransmitted holes above SND.UNA that are not
    /// acknowledged yet, they are in flight, and SND.UNA's segment is one
    /// of them; they go again only once proven lost
    /// (`detect_lost_retransmissions`). With a window that keeps sending
    /// new data during recovery (BBR), resetting it resent 172 of 493
    /// retransmitted segments a second time on the lossy long path of
    /// `tcp_sim`, each reported back by a D-SACK.
    pub fn enter_fast_recovery(&mut self, ctx: &mut Ctx<'_>) {
        let sack = self.sacked().is_some();
        self.cc
            .enter_recovery(self.flight(), self.pipe(), self.snd_max, ctx.now, sack);
        self.high_rxt = self.high_rxt.max(self.snd_una);
        self.tlp = None;
        self.timers.stop(Timer::LossProbe);
        self.timers.stop(Timer::Reorder);
        ctx.stats.fast_retransmits += 1;
        self.fast_retransmit_pending = self.high_rxt <= self.snd_una;
    }

    /// Brings the scoreboard up to the cumulative ACK and takes in the
    /// segment's SACK blocks (RFC 6675 §5 "update the scoreboard").
    /// Also returns how many of the bytes the cumulative ACK now covers
    /// had been SACKed before.
    fn take_sack_blocks(&mut self, ctx: &mut Ctx<'_>, seg: &TcpRepr<'_>) -> (SackNews, usize) {
        let sacked_before = self.scoreboard.advance(self.snd_una);
        let blocks = seg.options.sack_blocks.as_slice();
        if !self.sack_permitted || blocks.is_empty() {
            return (SackNews::default(), sacked_before);
        }
        let news = self.scoreboard.on_sack(blocks, self.snd_una, self.snd_max);
        ctx.stats.dsacks_received += u64::from(news.duplicate);
        (news, sacked_before)
    }

    /// §3.10.7.4 "seventh": place data in the receive buffer, in order or
    /// not, and decide how soon to ACK.
    fn receive_data(&mut self, ctx: &mut Ctx<'_>, seq: Seq, payload: &[u8]) {
        // Trim what we already have (the front) — the window check passed.
        let (seq, payload) = if seq < self.rcv_nxt {
            let skip = (self.rcv_nxt - seq).min(payload.len());
            self.report_duplicate(seq, seq + skip);
            (self.rcv_nxt, &payload[skip..])
        } else {
            (seq, payload)
        };
        if payload.is_empty() {
            self.ack_urgency = AckUrgency::Now;
            return;
        }
        let offset = seq - self.rcv_nxt;
        let written = self.recv_buf.write_at(ctx.pool, offset, payload);
        if written == 0 {
            self.ack_urgency = AckUrgency::Now;
            return;
        }
        // Out of order, or filling a hole: either way an immediate ACK.
        let had_holes = offset > 0 || !self.assembler.is_empty();
        if self
            .assembler
            .add(offset as u32, (offset + written) as u32)
            .is_err()
        {
            ctx.stats.drop_reassembly_full += 1;
            self.ack_urgency = AckUrgency::Now;
            return;
        }
        let contiguous = self.assembler.take_front() as usize;
        if contiguous > 0 {
            self.recv_buf.commit(contiguous);
            self.rcv_nxt += contiguous;
            self.tune_receive(ctx, contiguous);
            if self.recv_closed {
                self.recv_buf.consume(ctx.pool, contiguous);
            } else if !self.readable_signalled {
                self.readable_signalled = true;
                ctx.emit(Event::Readable);
            }
            if let Some(fin_seq) = self.fin_pending {
                if fin_seq == self.rcv_nxt {
                    self.fin_pending = None;
                    self.receive_fin(ctx);
                }
            }
        }
        if had_holes {
            // RFC 5681 §4.2: ACK out-of-order data, and data that fills a
            // hole, at once.
            ctx.stats.out_of_order_segments += u64::from(offset > 0);
            self.ack_urgency = AckUrgency::Now;
            return;
        }
        // RFC 9293 §3.8.6.3: ACK at least every second full-sized segment,
        // and within the delayed-ACK time otherwise.
        if written >= self.mss {
            self.unacked_segments = self.unacked_segments.saturating_add(1);
        }
        if self.unacked_segments >= 2 {
            self.ack_urgency = AckUrgency::Now;
        } else {
            self.delay_ack(ctx);
        }
    }

    /// An ACK due within the delayed-ACK time (unless one is due sooner).
    fn delay_ack(&mut self, ctx: &mut Ctx<'_>) {
        if self.ack_urgency < AckUrgency::Delayed {
            self.ack_urgency = AckUrgency::Delayed;
            self.timers
                .set(Timer::DelayedAck, ctx.now + ctx.config.delayed_ack);
        }
    }

    /// RFC 2883 §4: `[start, end)` arrived twice; the next ACK reports it
    /// as its first SACK block (with SACK on).
    fn report_duplicate(&mut self, start: Seq, end: Seq) {
        if self.sack_permitted && start < end {
            self.dsack = Some((start, end));
        }
    }

    /// §3.10.7.4 "eighth": the peer's FIN, in order.
    fn receive_fin(&mut self, ctx: &mut Ctx<'_>) {
        self.rcv_nxt += 1;
        self.fin_received = true;
        if self.state == State::Established {
            // Towards CLOSE-WAIT: the ACK of the FIN waits like data's,
            // within the delayed-ACK time (RFC 9293 §3.8.6.3, RFC 1122
            // §4.2.3.2), because the application usually closes at once
            // and our FIN then carries it — one segment instead of two
            // (Linux does the same: `tcp_fin` enters "pingpong" mode).
            self.delay_ack(ctx);
        } else {
            // Our FIN went first: this ACK is the last word, due now.
            self.ack_urgency = AckUrgency::Now;
        }
        if !self.app_closed {
            ctx.emit(Event::PeerClosed);
        }
        // Our FIN acknowledged by this segment too: FIN-WAIT-2 first
        // (§3.10.7.4 eighth, FIN-WAIT-1: "If our FIN has been ACKed
        // (perhaps in this segment), then enter TIME-WAIT").
        if self.state == State::FinWait1 && self.fin_acked() {
            self.transition(Trigger::RcvAckOfFin);
        }
        if matches!(
            self.state,
            State::SynReceived | State::Established | State::FinWait1 | State::FinWait2
        ) {
            self.transition(Trigger::RcvFin);
        }
    }
}
