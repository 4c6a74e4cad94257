//! The connection state machine as one table: every state change a
//! connection makes goes through [`next`] (by way of
//! `Conn::transition`), which names what happened ([`Trigger`]) and
//! returns the state the diagram says comes next — or `None` for a change
//! the diagram has no arc for, which is a bug (a debug assertion; release
//! builds log it and keep the state).
//!
//! The arcs are RFC 9293 §3.3.2 Figure 5's:
//!
//! | from | event (Figure 5's label) | to |
//! |---|---|---|
//! | SYN-SENT | rcv SYN,ACK / snd ACK | ESTABLISHED |
//! | SYN-SENT | rcv SYN / snd SYN,ACK (simultaneous open) | SYN-RECEIVED |
//! | SYN-SENT | CLOSE / delete TCB | CLOSED |
//! | SYN-RECEIVED | rcv ACK of SYN | ESTABLISHED |
//! | SYN-RECEIVED | CLOSE / snd FIN | FIN-WAIT-1 |
//! | ESTABLISHED | CLOSE / snd FIN | FIN-WAIT-1 |
//! | ESTABLISHED | rcv FIN / snd ACK | CLOSE-WAIT |
//! | FIN-WAIT-1 | rcv ACK of FIN | FIN-WAIT-2 |
//! | FIN-WAIT-1 | rcv FIN / snd ACK | CLOSING |
//! | FIN-WAIT-2 | rcv FIN / snd ACK | TIME-WAIT |
//! | CLOSING | rcv ACK of FIN | TIME-WAIT |
//! | CLOSE-WAIT | CLOSE / snd FIN | LAST-ACK |
//! | LAST-ACK | rcv ACK of FIN | CLOSED |
//!
//! and the ones the RFC's text adds (the figure "is only a summary"):
//!
//! | from | event | to | where |
//! |---|---|---|---|
//! | SYN-RECEIVED | rcv FIN | CLOSE-WAIT | §3.10.7.4, eighth |
//! | any but CLOSED | RST received, ABORT, or retransmissions exhausted | CLOSED | §3.10.7.4 second, §3.10.5, §3.8.3 R2 |
//! | TIME-WAIT | ABORT (an application still holding a finished connection) | CLOSED | §3.10.5 (an RST there is the TIME-WAIT table's, ignored as RFC 1337 asks) |
//! | SYN-RECEIVED (passive) | half-open connection expired | CLOSED | §3.8.3 R2 for the SYN-ACK |
//! | FIN-WAIT-2 | no FIN within `fin_wait_2_timeout` | CLOSED | not in the RFC: Linux's `tcp_fin_timeout`, a bound in time for a closed connection |
//!
//! LISTEN is the listener's, not a connection's (a passive open's RST
//! "returns to LISTEN" by closing the connection; the listener stays), and
//! TIME-WAIT's 2·MSL timeout is the TIME-WAIT table's: a connection leaves
//! the slab when it gets there.

use super::types::State;

/// What happened to a connection, in Figure 5's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Trigger {
    /// A SYN,ACK acknowledging our SYN.
    RcvSynAck,
    /// A SYN without ACK in SYN-SENT: simultaneous open.
    RcvSyn,
    /// The ACK of our SYN.
    RcvAckOfSyn,
    /// The peer's FIN, in order.
    RcvFin,
    /// The ACK of our FIN.
    RcvAckOfFin,
    /// The application's CLOSE (or half-close): FIN after the data.
    Close,
    /// The end without a FIN exchange: RST received, ABORT, or
    /// retransmissions exhausted.
    Reset,
    /// A timer ended a connection that sends nothing more: a half-open
    /// passive connection, or FIN-WAIT-2 without the peer's FIN.
    Expire,
}

#[cfg(test)]
impl Trigger {
    /// Every trigger, for the table's tests.
    pub const ALL: [Trigger; 8] = [
        Trigger::RcvSynAck,
        Trigger::RcvSyn,
        Trigger::RcvAckOfSyn,
        Trigger::RcvFin,
        Trigger::RcvAckOfFin,
        Trigger::Close,
        Trigger::Reset,
        Trigger::Expire,
    ];
}

/// The state after `trigger` in `from` (see the module doc's tables), or
/// `None` where the diagram has no arc.
pub(crate) fn next(from: State, trigger: Trigger) -> Option<State> {
    use State::*;
    use Trigger::*;
    Some(match (from, trigger) {
        (SynSent, RcvSynAck) => Established,
        (SynSent, RcvSyn) => SynReceived,
        (SynSent, Close) => Closed,
        (SynReceived, RcvAckOfSyn) => Established,
        (SynReceived, Close) | (Established, Close) => FinWait1,
        (SynReceived, RcvFin) | (Established, RcvFin) => CloseWait,
        (FinWait1, RcvAckOfFin) => FinWait2,
        (FinWait1, RcvFin) => Closing,
        (FinWait2, RcvFin) => TimeWait,
        (Closing, RcvAckOfFin) => TimeWait,
        (CloseWait, Close) => LastAck,
        (LastAck, RcvAckOfFin) => Closed,
        (Closed | Listen, Reset) => return None,
        (_, Reset) => Closed,
        (SynReceived, Expire) | (FinWait2, Expire) => Closed,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;
    use Trigger::*;

    /// The whole table, written out once more by hand: every (state,
    /// trigger) pair not listed here has no arc.
    const ARCS: &[(State, Trigger, State)] = &[
        (SynSent, RcvSynAck, Established),
        (SynSent, RcvSyn, SynReceived),
        (SynSent, Close, Closed),
        (SynSent, Reset, Closed),
        (SynReceived, RcvAckOfSyn, Established),
        (SynReceived, Close, FinWait1),
        (SynReceived, RcvFin, CloseWait),
        (SynReceived, Reset, Closed),
        (SynReceived, Expire, Closed),
        (Established, Close, FinWait1),
        (Established, RcvFin, CloseWait),
        (Established, Reset, Closed),
        (FinWait1, RcvAckOfFin, FinWait2),
        (FinWait1, RcvFin, Closing),
        (FinWait1, Reset, Closed),
        (FinWait2, RcvFin, TimeWait),
        (FinWait2, Reset, Closed),
        (FinWait2, Expire, Closed),
        (CloseWait, Close, LastAck),
        (CloseWait, Reset, Closed),
        (Closing, RcvAckOfFin, TimeWait),
        (Closing, Reset, Closed),
        (LastAck, RcvAckOfFin, Closed),
        (LastAck, Reset, Closed),
        (TimeWait, Reset, Closed),
    ];

    #[test]
    fn the_table_is_figure_5_with_the_texts_arcs_and_nothing_else() {
        for from in State::ALL {
            for trigger in Trigger::ALL {
                let listed = ARCS
                    .iter()
                    .find(|&&(f, t, _)| f == from && t == trigger)
                    .map(|&(_, _, to)| to);
                assert_eq!(next(from, trigger), listed, "{from} on {trigger:?}");
            }
        }
    }

    #[test]
    fn every_state_but_listen_and_closed_is_entered_and_every_one_left_for_closed() {
        for state in State::ALL {
            let entered = ARCS.iter().any(|&(_, _, to)| to == state);
            let expected = !matches!(state, Listen | SynSent);
            assert_eq!(
                entered, expected,
                "{state}: SYN-SENT is where a connection starts, LISTEN is the listener's"
            );
        }
        // From every connection state CLOSED or TIME-WAIT is reachable:
        // no state without an end (every one also has a timer, `timers.rs`).
        let connection_states = State::ALL
            .into_iter()
            .filter(|s| !matches!(s, Closed | Listen | TimeWait));
        for start in connection_states {
            let mut seen = vec![start];
            let mut frontier = vec![start];
            while let Some(state) = frontier.pop() {
                for &(from, _, to) in ARCS {
                    if from == state && !seen.contains(&to) {
                        seen.push(to);
                        frontier.push(to);
                    }
                }
            }
            assert!(seen.contains(&Closed), "{start} never ends");
        }
    }
}
