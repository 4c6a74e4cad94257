//! A connection's timers: a fixed table indexed by [`Timer`] (after
//! quinn-proto), and what happens when each fires.

use super::{AckUrgency, Conn, Ctx};
use crate::tcp::time::Instant;
use crate::tcp::transition::Trigger;
use crate::tcp::types::{ResetCause, State};

/// The timers of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// RFC 6298: retransmit SYN, SYN-ACK, data or FIN.
    Retransmit = 0,
    /// RFC 9293 §3.8.6.3: send the delayed ACK.
    DelayedAck = 1,
    /// RFC 9293 §3.8.6.1: probe a zero window.
    Persist = 2,
    /// RFC 9293 §3.8.4 keepalive, and the FIN-WAIT-2 timeout of a closed
    /// connection whose peer never sends FIN.
    Idle = 3,
    /// RFC 8985 §7: send a tail-loss probe.
    LossProbe = 4,
    /// RFC 8985 §6.3: the reordering window after new SACK information
    /// ran out; the holes below the SACKed data are lost.
    Reorder = 5,
    /// Pacing (`pacing.rs`): the schedule lets the next segment go.
    Pace = 6,
}

const TIMERS: usize = 7;
const ALL: [Timer; TIMERS] = [
    Timer::Retransmit,
    Timer::DelayedAck,
    Timer::Persist,
    Timer::Idle,
    Timer::LossProbe,
    Timer::Reorder,
    Timer::Pace,
];

/// Keepalive probes without an answer before the connection is reset.
const KEEPALIVE_PROBES: u8 = 9;

/// Deadlines, one slot per [`Timer`].
#[derive(Debug, Clone, Default)]
pub(crate) struct TimerTable([Option<Instant>; TIMERS]);

impl TimerTable {
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.0[timer as usize] = Some(at);
    }
    pub fn stop(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.0[timer as usize]
    }
    pub fn is_set(&self, timer: Timer) -> bool {
        self.0[timer as usize].is_some()
    }
    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.0.iter().flatten().min().copied()
    }
    pub fn clear(&mut self) {
        self.0 = [None; TIMERS];
    }
}

impl Conn {
    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        for timer in ALL {
            if self.state == State::Closed {
                return;
            }
            if self.timers.get(timer).is_some_and(|at| at <= ctx.now) {
                self.timers.stop(timer);
                match timer {
                    Timer::Retransmit => self.on_retransmit_timeout(ctx),
                    Timer::DelayedAck => self.ack_urgency = AckUrgency::Now,
                    Timer::Persist => self.on_persist_timeout(ctx),
                    Timer::Idle => self.on_idle_timeout(ctx),
                    Timer::LossProbe => self.on_loss_probe_timeout(ctx),
                    Timer::Reorder => self.on_reorder_timeout(ctx),
                    Timer::Pace => self.pacing_hold = false,
                }
            }
        }
    }

    /// RFC 6298 §5.4–5.6 and RFC 5681 §3.1: back off, collapse the window,
    /// go back to SND.UNA. Past the retry limit the connection is reset
    /// (RFC 9293 §3.8.3, R2).
    fn on_retransmit_timeout(&mut self, ctx: &mut Ctx<'_>) {
        if self.flight() == 0 && !matches!(self.state, State::SynSent | State::SynReceived) {
            return;
        }
        let limit = match self.state {
            State::SynReceived => ctx.config.synack_retries,
            _ => ctx.config.max_retransmissions,
        };
        if self.retries >= limit {
            ctx.stats.connection_timeouts += 1;
            if self.state == State::SynReceived && self.listener.is_some() {
                // A half-open passive connection just expires: the
                // application never saw it, the peer never completed it.
                self.app_closed = true;
                self.transition(Trigger::Expire);
                return;
            }
            self.reset(ctx, ResetCause::Timeout, self.state != State::SynSent);
            return;
        }
        self.retries += 1;
        ctx.stats.rto_expirations += 1;
        self.rtt.on_timeout();
        self.remember_before_timeout();
        self.cc
            .on_retransmit_timeout(self.flight(), ctx.now, self.snd_max);
        // Karn: no sample from a retransmitted segment.
        self.rtt_probe = None;
        // Resend from SND.UNA, skipping what the peer SACKed (RFC 6675
        // §5.1 keeps the scoreboard across a timeout) — unless this is the
        // second timeout in a row for the same data: then the peer may have
        // reneged (RFC 2018 §8) and everything goes again.
        self.snd_nxt = self.snd_una;
        self.high_rxt = self.snd_una;
        self.rxt_round = None;
        self.tlp = None;
        self.tlp_pending = false;
        self.timers.stop(Timer::LossProbe);
        self.timers.stop(Timer::Reorder);
        if self.retries > 1 {
            self.scoreboard.clear();
        }
        self.arm_retransmit(ctx.now);
    }

    /// Arms the retransmission timer for the current RTO (§5.1), and the
    /// tail-loss probe's before it where it applies.
    pub fn arm_retransmit(&mut self, now: Instant) {
        self.timers.set(Timer::Retransmit, now + self.rtt.rto());
        self.arm_loss_probe(now);
    }

    /// Data still waits with nothing in flight: a zero-window probe, or
    /// the SWS override (output decides which), backing off like the RTO.
    fn on_persist_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let next = self.snd_nxt.max(self.send_buf_seq());
        if self.data_end().diff(next) > 0 && self.flight() == 0 {
            if self.snd_wnd == 0 {
                ctx.stats.zero_window_probes += 1;
                self.rtt.on_timeout();
            }
            self.probe_pending = true;
        }
    }

    /// Keepalive (§3.8.4) or the FIN-WAIT-2 timeout.
    fn on_idle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        if self.state == State::FinWait2 && self.app_closed {
            // Linux's tcp_fin_timeout: the peer never closed; drop quietly.
            ctx.stats.fin_wait_2_timeouts += 1;
            self.set_closed_quietly();
            return;
        }
        let Some(idle) = ctx.config.keepalive else {
            return;
        };
        if ctx.now.saturating_since(self.last_activity) < idle {
            self.timers.set(Timer::Idle, self.last_activity + idle);
            return;
        }
        if self.keepalive_probes >= KEEPALIVE_PROBES {
            ctx.stats.connection_timeouts += 1;
            self.reset(ctx, ResetCause::Timeout, true);
            return;
        }
        self.keepalive_probes += 1;
        ctx.stats.keepalive_probes += 1;
        self.keepalive_pending = true;
        let interval = (idle / 10).max(std::time::Duration::from_secs(1));
        self.timers.set(Timer::Idle, ctx.now + interval);
    }

    /// Arms the idle timer after activity.
    pub fn arm_idle(&mut self, ctx: &Ctx<'_>) {
        if self.state == State::FinWait2 && self.app_closed {
            if !self.timers.is_set(Timer::Idle) {
                self.timers
                    .set(Timer::Idle, ctx.now + ctx.config.fin_wait_2_timeout);
            }
        } else if let Some(idle) = ctx.config.keepalive {
            if self.state.is_synchronized() {
                self.keepalive_probes = 0;
                self.timers.set(Timer::Idle, ctx.now + idle);
            }
        }
    }

    /// CLOSED without an RST or an error event (FIN-WAIT-2 timeout).
    fn set_closed_quietly(&mut self) {
        self.transition(Trigger::Expire);
    }
}
