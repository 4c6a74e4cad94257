//! Closing: passive close (CLOSE-WAIT, LAST-ACK), active close (FIN-WAIT-1,
//! FIN-WAIT-2, TIME-WAIT), simultaneous close (CLOSING), half-close, FIN
//! with data, FIN retransmission, out-of-order FIN.

use std::time::Duration;

use crate::harness::*;
use lastack::tcp::{Event, State};
use lastack::wire::TcpFlags;

const A: u32 = REMOTE_SEQ + 1;
const L: u32 = LOCAL_SEQ + 1;

// =========================================================================
// Passive close: the peer closes first (what lastack arranges)
// =========================================================================

#[test]
fn peer_fin_moves_to_close_wait_and_is_acked_within_the_delayed_ack_time() {
    let (mut h, id) = Harness::established(config());
    send!(h, seq: A, ack: Some(L), flags: TcpFlags::FIN);
    assert_eq!(h.stack.state(id), Some(State::CloseWait));
    h.advance(Duration::from_millis(40));
    recv!(h, [{ seq: L, ack: Some(A + 1) }]);
    assert_eq!(h.take_events(), [Event::PeerClosed(id, TAG)]);
    assert!(h.stack.peer_closed(id));
}

#[test]
fn close_wait_can_still_send_then_last_ack_then_closed_without_time_wait() {
    let (mut h, id) = Harness::established(config());
    send!(h, seq: A, ack: Some(L), flags: TcpFlags::FIN);
    h.sent();
    assert_eq!(h.take_events(), [Event::PeerClosed(id, TAG)]);
    h.app_send(id, b"bye");
    recv!(h, [{ seq: L, ack: Some(A + 1), flags: TcpFlags::PSH, payload: b"bye" }]);
    h.stack.shutdown(h.now, id).unwrap();
    recv!(h, [{ seq: L + 3, ack: Some(A + 1), flags: TcpFlags::FIN }]);
    assert_eq!(h.stack.state(id), Some(State::LastAck));
    send!(h, seq: A + 1, ack: Some(L + 4));
    assert_eq!(h.take_events(), [Event::Closed(id, TAG)]);
    assert_eq!(h.stack.connection_count(), 0);
    assert_eq!(h.stack.time_wait_count(), 0);
    h.stack.close(h.now, id).unwrap();
    assert_eq!(h.stack.slots_in_use(), 0);
}

#[test]
fn last_ack_retransmits_the_fin() {
    let (mut h, id) = Harness::established(config());
    send!(h, seq: A, ack: Some(L), flags: TcpFlags::FIN);
    h.sent();
    h.stack.close(h.now, id).unwrap();
    recv!(h, [{ seq: L, ack: Some(A + 1), flags: TcpFlags::FIN }]);
    assert!(h.advance_to_next_timer(Duration::from_secs(5)));
    recv!(h, [{ seq: L, ack: Some(A + 1), flags: TcpFlags::FIN }]);
}

// =========================================================================
// Active close: we close first
// =========================================================================

#[test]
fn fin_wait_1_to_fin_wait_2_to_time_wait() {
    let (mut h, id) = Harness::established(config());
    h.stack.shutdown(h.now, id).unwrap();
    recv!(h, [{ seq: L, ack: Some(A), flags: TcpFlags::FIN }]);
    assert_eq!(h.stack.state(id), Some(State::FinWait1));
    send!(h, seq: A, ack: Some(L + 1));
    assert_eq!(h.stack.state(id), Some(State::FinWait2));
    send!(h, seq: A, ack: Some(L + 1), flags: TcpFlags::FIN);
    recv!(h, [{ seq: L + 1, ack: Some(A + 1) }]);
    assert_eq!(
        h.take_events(),
        [Event::PeerClosed(id, TAG), Event::Closed(id, TAG)]
    );
    assert_eq!(h.stack.time_wait_count(), 1);
    assert_eq!(
        h.stack.state(id),
        Some(State::TimeWait),
        "readable until released"
    );
    h.stack.close(h.now, id).unwrap();
    assert_eq!(h.stack.slots_in_use(), 0);
}

#[test]
fn fin_ack_in_fin_wait_1_goes_straight_to_time_wait() {
    let (mut h, id) = Harness::established(config());
    h.stack.close(h.now, id).unwrap();
    h.sent();
    send!(h, seq: A, ack: Some(L + 1), flags: TcpFlags::FIN);
    recv!(h, [{ seq: L + 1, ack: Some(A + 1) }]);
    assert_eq!(h.stack.time_wait_count(), 1);
    assert_eq!(
        h.stack.slots_in_use(),
        0,
        "closed by the application: freed"
    );
}

#[test]
fn simultaneous_close_passes_closing() {
    let (mut h, id) = Harness::established(config());
    h.stack.shutdown(h.now, id).unwrap();
    recv!(h, [{ seq: L, ack: Some(A), flags: TcpFlags::FIN }]);
    // The peer's FIN crosses ours: it has not seen our FIN yet.
    send!(h, seq: A, ack: Some(L), flags: TcpFlags::FIN);
    recv!(h, [{ seq: L + 1, ack: Some(A + 1) }]);
    assert_eq!(h.stack.state(id), Some(State::Closing));
    send!(h, seq: A + 1, ack: Some(L + 1));
    assert_eq!(h.stack.time_wait_count(), 1);
}

#[test]
fn half_close_still_receives_and_delivers() {
    let (mut h, id) = Harness::established(config());
    h.stack.shutdown(h.now, id).unwrap();
    h.sent();
    send!(h, seq: A, ack: Some(L + 1), payload: b"more data after your FIN");
    assert_eq!(h.stack.state(id), Some(State::FinWait2));
    assert_eq!(h.app_recv(id, 100), b"more data after your FIN");
    assert_eq!(
        h.stack.send(h.now, id, b"x"),
        Err(lastack::tcp::CommandError::SendClosed)
    );
}

#[test]
fn fin_can_carry_data() {
    let (mut h, id) = Harness::established(config());
    send!(h, seq: A, ack: Some(L), flags: TcpFlags::FIN, payload: b"last words");
    h.advance(Duration::from_millis(40));
    recv!(h, [{ seq: L, ack: Some(A + 11) }]);
    assert_eq!(h.app_recv(id, 100), b"last words");
    assert_eq!(h.stack.state(id), Some(State::CloseWait));
}

#[test]
fn our_last_data_segment_carries_the_fin() {
    let (mut h, id) = Harness::established(config());
    h.app_send(id, b"abc");
    h.stack.shutdown(h.now, id).unwrap();
    recv!(h, [{ seq: L, ack: Some(A), flags: TcpFlags::PSH | TcpFlags::FIN, payload: b"abc" }]);
}

#[test]
fn an_out_of_order_fin_waits_for_the_data_before_it() {
    let (mut h, id) = Harness::established(config());
    send!(h, seq: A + 3, ack: Some(L), flags: TcpFlags::FIN, payload: b"def");
    assert_eq!(h.stack.state(id), Some(State::Established));
    send!(h, seq: A, ack: Some(L), payload: b"abc");
    assert_eq!(h.stack.state(id), Some(State::CloseWait));
    let sent = h.sent();
    assert_eq!(
        sent.last().unwrap().ack,
        Some(A + 7),
        "data and FIN acknowledged"
    );
    assert_eq!(h.app_recv(id, 100), b"abcdef");
}

#[test]
fn our_fin_is_retransmitted_until_acked() {
    let (mut h, id) = Harness::established(config());
    h.stack.shutdown(h.now, id).unwrap();
    recv!(h, [{ seq: L, ack: Some(A), flags: TcpFlags::FIN }]);
    assert!(h.advance_to_next_timer(Duration::from_secs(5)));
    recv!(h, [{ seq: L, ack: Some(A), flags: TcpFlags::FIN }]);
    send!(h, seq: A, ack: Some(L + 1));
    assert_eq!(h.stack.state(id), Some(State::FinWait2));
}

#[test]
fn fin_wait_2_of_a_closed_connection_times_out() {
    let mut cfg = config();
    cfg.fin_wait_2_timeout = Duration::from_secs(30);
    let (mut h, id) = Harness::established(cfg);
    h.stack.close(h.now, id).unwrap();
    h.sent();
    send!(h, seq: A, ack: Some(L + 1));
    assert_eq!(h.stack.connection_count(), 1, "FIN-WAIT-2");
    h.advance(Duration::from_secs(29));
    assert_eq!(h.stack.connection_count(), 1, "still waiting");
    h.advance(Duration::from_secs(2));
    assert_eq!(
        h.stack.connection_count(),
        0,
        "the peer never closed: dropped"
    );
    assert_eq!(h.stack.stats().fin_wait_2_timeouts, 1);
    assert_eq!(h.stack.slots_in_use(), 0);
    assert!(h.take_events().is_empty());
}

#[test]
fn abort_sends_rst_and_frees_at_once() {
    let (mut h, id) = Harness::established(config());
    h.stack.abort(h.now, id).unwrap();
    recv!(h, [{ seq: L, ack: Some(A), flags: TcpFlags::RST }]);
    assert_eq!(h.stack.connection_count(), 0);
    assert!(
        h.take_events().is_empty(),
        "no event for what the application did"
    );
    assert_eq!(h.stack.state(id), None);
}

#[test]
fn an_active_open_closes_passively_too() {
    let (mut h, id) = Harness::connected(config());
    send!(h, seq: A, ack: Some(L), flags: TcpFlags::FIN, payload: b"response");
    // The ACK of data and FIN waits for the application's close (below),
    // whose FIN carries it: one segment, not two.
    recv_nothing!(h);
    assert_eq!(
        h.take_events(),
        [Event::Readable(id, TAG), Event::PeerClosed(id, TAG)]
    );
    assert_eq!(h.app_recv(id, 100), b"response");
    h.stack.close(h.now, id).unwrap();
    recv!(h, [{ seq: L, ack: Some(A + 9), flags: TcpFlags::FIN }]);
    send!(h, seq: A + 9, ack: Some(L + 1));
    assert_eq!(h.stack.slots_in_use(), 0);
    assert_eq!(h.stack.time_wait_count(), 0, "the peer closed first");
}

/// The peer's FIN in ESTABLISHED is acknowledged within the delayed-ACK
/// time (RFC 9293 §3.8.6.3): by our FIN when the application closes in
/// that time (one segment instead of two, as Linux), or by a pure ACK
/// when the time is up and the application has not closed.
#[test]
fn the_ack_of_a_fin_waits_for_our_fin_within_the_delayed_ack_time() {
    let (mut h, id) = Harness::established(config());
    send!(h, seq: A, ack: Some(L), flags: TcpFlags::FIN);
    assert_eq!(h.take_events(), [Event::PeerClosed(id, TAG)]);
    recv_nothing!(h);
    h.advance(Duration::from_millis(10));
    recv_nothing!(h);
    h.stack.close(h.now, id).unwrap();
    recv!(h, [{ seq: L, ack: Some(A + 1), flags: TcpFlags::FIN }]);
    send!(h, seq: A + 1, ack: Some(L + 1));
    assert_eq!(h.stack.slots_in_use(), 0);

    // The application does not close: the ACK alone, at 40 ms.
    let (mut h, id) = Harness::established(config());
    send!(h, seq: A, ack: Some(L), flags: TcpFlags::FIN);
    h.take_events();
    h.advance(Duration::from_millis(39));
    recv_nothing!(h);
    h.advance(Duration::from_millis(1));
    recv!(h, [{ seq: L, ack: Some(A + 1) }]);
    assert_eq!(h.stack.state(id), Some(State::CloseWait));
}
