//! RFC 5961: blind reset, SYN and data injection defences.

use crate::harness::*;
use lastack::tcp::{Event, ResetCause, TcpConfig};
use lastack::wire::TcpFlags;

const A: u32 = REMOTE_SEQ + 1;
const L: u32 = LOCAL_SEQ + 1;

#[test]
fn an_rst_at_exactly_rcv_nxt_resets() {
    let (mut h, id) = Harness::established(config());
    send!(h, seq: A, flags: TcpFlags::RST);
    recv_nothing!(h);
    assert_eq!(h.take_events(), [Event::Reset(id, TAG, ResetCause::Peer)]);
    assert_eq!(h.stack.connection_count(), 0);
}

#[test]
fn an_in_window_rst_elsewhere_gets_a_challenge_ack() {
    let (mut h, id) = Harness::established(config());
    send!(h, seq: A + 100, flags: TcpFlags::RST);
    recv!(h, [{ seq: L, ack: Some(A) }]);
    assert!(h.take_events().is_empty());
    assert!(h.stack.state(id).is_some(), "still open");
    assert_eq!(h.stack.stats().challenge_acks, 1);
}

#[test]
fn an_out_of_window_rst_is_ignored() {
    let (mut h, id) = Harness::established(config());
    send!(h, seq: A + 1_000_000, flags: TcpFlags::RST);
    recv_nothing!(h);
    assert!(h.stack.state(id).is_some());
}

#[test]
fn a_syn_in_a_synchronized_state_gets_a_challenge_ack() {
    let (mut h, id) = Harness::established(config());
    send!(h, seq: A + 10, flags: TcpFlags::SYN);
    recv!(h, [{ seq: L, ack: Some(A) }]);
    assert!(h.stack.state(id).is_some());
}

#[test]
fn an_ack_of_unsent_data_is_answered_and_dropped() {
    let (mut h, id) = Harness::established(config());
    send!(h, seq: A, ack: Some(L + 5000), payload: b"injected");
    recv!(h, [{ seq: L, ack: Some(A) }]);
    assert_eq!(h.app_recv(id, 100), b"", "the data was not accepted");
    assert_eq!(h.stack.stats().drop_bad_ack, 1);
}

#[test]
fn an_ack_older_than_the_largest_window_is_dropped() {
    let (mut h, id) = Harness::established(config());
    let too_old = L.wrapping_sub(70_000);
    send!(h, seq: A, ack: Some(too_old), payload: b"x");
    recv!(h, [{ seq: L, ack: Some(A) }]);
    assert_eq!(h.app_recv(id, 100), b"");
}

#[test]
fn challenge_acks_are_rate_limited() {
    let mut cfg: TcpConfig = config();
    cfg.challenge_ack_limit = 3;
    let (mut h, _) = Harness::established(cfg);
    let mut answered = 0;
    for i in 0..10 {
        send!(h, seq: A + 100 + i, flags: TcpFlags::RST);
        answered += h.sent().len();
    }
    assert_eq!(answered, 3);
    assert_eq!(h.stack.stats().challenge_acks, 3);
    assert_eq!(h.stack.stats().challenge_acks_suppressed, 7);
    h.advance(std::time::Duration::from_secs(1));
    send!(h, seq: A + 200, flags: TcpFlags::RST);
    assert_eq!(h.sent().len(), 1, "a new second, a new budget");
}
