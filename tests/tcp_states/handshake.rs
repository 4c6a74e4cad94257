//! LISTEN, SYN-RECEIVED, SYN-SENT and CLOSED (RFC 9293 §3.10.7.1–3).

use std::time::Duration;

use crate::harness::*;
use lastack::tcp::{Event, Refuse, ResetCause, Route, Seq, State};
use lastack::wire::{TcpFlags, TcpOptions};

// =========================================================================
// CLOSED (no listener): §3.10.7.1
// =========================================================================

#[test]
fn closed_port_answers_a_syn_with_rst_ack() {
    let mut h = Harness::new(config());
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN);
    recv!(h, [{ seq: 0, ack: Some(REMOTE_SEQ + 1), flags: TcpFlags::RST }]);
    assert_eq!(h.stack.stats().drop_no_listener, 1);
}

/// A closed listener (a drain, a reload that removed it) refuses new
/// connections — RST, or silence when told to drop — while its established
/// connection goes on; listening on the address again reopens it.
#[test]
fn a_closed_listener_refuses_new_connections_and_keeps_its_own() {
    let (mut h, id) = Harness::established(config());
    let listener = h.listener.unwrap();
    h.stack.close_listener(listener, Refuse::Reset);
    assert!(!h.stack.is_listening(listener));
    send!(h, src_port: 49501, seq: 7000, flags: TcpFlags::SYN);
    recv!(h, [{ seq: 0, ack: Some(7001), flags: TcpFlags::RST }]);
    send!(h, seq: REMOTE_SEQ + 1, ack: Some(LOCAL_SEQ + 1), payload: b"still");
    assert_eq!(h.app_recv(id, 100), b"still", "the established one goes on");
    h.stack.close_listener(listener, Refuse::Drop);
    send!(h, src_port: 49502, seq: 8000, flags: TcpFlags::SYN);
    let sent = h.sent();
    assert!(
        sent.iter().all(|s| s.flags != TcpFlags::RST),
        "dropped, not reset: {sent:#?}"
    );
    assert_eq!(h.stack.stats().refused_closed_listener, 2);
    assert_eq!(h.stack.listen(LOCAL), Ok(listener), "reopened, same id");
    send!(h, src_port: 49503, seq: 9000, flags: TcpFlags::SYN);
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].flags, TcpFlags::SYN, "a SYN-ACK: {sent:#?}");
}

#[test]
fn closed_port_answers_an_ack_with_rst_at_its_ack_number() {
    let mut h = Harness::new(config());
    send!(h, seq: REMOTE_SEQ, ack: Some(777), payload: b"data");
    recv!(h, [{ seq: 777, flags: TcpFlags::RST }]);
}

#[test]
fn closed_port_ignores_an_rst() {
    let mut h = Harness::new(config());
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::RST);
    recv_nothing!(h);
}

// =========================================================================
// LISTEN: §3.10.7.2
// =========================================================================

#[test]
fn listen_answers_syn_with_syn_ack_and_holds_a_half_open_connection() {
    let mut h = Harness::listening(config());
    h.stack.set_next_iss(Seq(LOCAL_SEQ));
    let mss = TcpOptions {
        mss: Some(1400),
        ..SEG.options
    };
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN, options: mss);
    let sent = recv!(h, [{ seq: LOCAL_SEQ, ack: Some(REMOTE_SEQ + 1), flags: TcpFlags::SYN }]);
    assert_eq!(sent[0].options.mss, Some(1460), "we announce our MSS");
    assert_eq!(sent[0].window, 65535);
    assert_eq!(h.stack.syn_queue_len(h.listener.unwrap()), 1);
    assert_eq!(
        h.stack.accept(h.listener.unwrap(), TAG),
        None,
        "not established yet"
    );
}

#[test]
fn listen_ignores_rst() {
    let mut h = Harness::listening(config());
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::RST);
    recv_nothing!(h);
}

#[test]
fn listen_answers_a_stray_ack_with_rst() {
    let mut h = Harness::listening(config());
    send!(h, seq: REMOTE_SEQ, ack: Some(4242));
    recv!(h, [{ seq: 4242, flags: TcpFlags::RST }]);
}

#[test]
fn syn_with_fin_or_rst_is_dropped_and_counted() {
    let mut h = Harness::listening(config());
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN | TcpFlags::FIN);
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN | TcpFlags::RST);
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::empty());
    recv_nothing!(h);
    assert_eq!(h.stack.stats().drop_bad_flags, 3);
    assert_eq!(h.stack.connection_count(), 0);
}

// =========================================================================
// SYN-RECEIVED
// =========================================================================

fn syn_received() -> Harness {
    let mut h = Harness::listening(config());
    h.stack.set_next_iss(Seq(LOCAL_SEQ));
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN);
    recv!(h, [{ seq: LOCAL_SEQ, ack: Some(REMOTE_SEQ + 1), flags: TcpFlags::SYN }]);
    h
}

#[test]
fn syn_received_ack_establishes_and_queues_for_accept() {
    let mut h = syn_received();
    send!(h, seq: REMOTE_SEQ + 1, ack: Some(LOCAL_SEQ + 1));
    recv_nothing!(h);
    let listener = h.listener.unwrap();
    assert_eq!(h.take_events(), [Event::Acceptable(listener)]);
    let id = h.stack.accept(listener, TAG).unwrap();
    assert_eq!(h.stack.state(id), Some(State::Established));
    assert_eq!(h.stack.syn_queue_len(listener), 0);
}

#[test]
fn syn_received_ack_with_data_delivers_it() {
    let mut h = syn_received();
    send!(h, seq: REMOTE_SEQ + 1, ack: Some(LOCAL_SEQ + 1), payload: b"hello");
    let id = h.stack.accept(h.listener.unwrap(), TAG).unwrap();
    assert_eq!(h.app_recv(id, 100), b"hello");
}

/// A connection has no owner, so no events, until it is accepted; what
/// arrived meanwhile (data, the FIN) is reported at `accept`, with the tag
/// given there.
#[test]
fn events_start_at_accept_with_the_owners_tag() {
    let mut h = syn_received();
    send!(h, seq: REMOTE_SEQ + 1, ack: Some(LOCAL_SEQ + 1), payload: b"hello");
    send!(h, seq: REMOTE_SEQ + 6, ack: Some(LOCAL_SEQ + 1), flags: TcpFlags::FIN | TcpFlags::ACK);
    let listener = h.listener.unwrap();
    assert_eq!(
        h.take_events(),
        [Event::Acceptable(listener)],
        "nothing about the connection before it has an owner"
    );
    let tag = lastack::tcp::Tag(0xfeed);
    let id = h.stack.accept(listener, tag).unwrap();
    assert_eq!(
        h.take_events(),
        [Event::Readable(id, tag), Event::PeerClosed(id, tag)]
    );
    assert_eq!(h.app_recv(id, 100), b"hello");
}

#[test]
fn syn_received_bad_ack_gets_rst() {
    let mut h = syn_received();
    send!(h, seq: REMOTE_SEQ + 1, ack: Some(LOCAL_SEQ + 1000));
    recv!(h, [{ seq: LOCAL_SEQ + 1000, flags: TcpFlags::RST }]);
    assert_eq!(
        h.stack.connection_count(),
        1,
        "the half-open connection stays"
    );
}

#[test]
fn syn_received_rst_returns_to_listen_silently() {
    let mut h = syn_received();
    send!(h, seq: REMOTE_SEQ + 1, flags: TcpFlags::RST);
    recv_nothing!(h);
    assert_eq!(h.stack.connection_count(), 0);
    assert_eq!(h.stack.syn_queue_len(h.listener.unwrap()), 0);
    assert!(h.take_events().is_empty(), "the application never saw it");
}

#[test]
fn syn_received_retransmitted_syn_gets_the_syn_ack_again() {
    let mut h = syn_received();
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN);
    recv!(h, [{ seq: LOCAL_SEQ, ack: Some(REMOTE_SEQ + 1), flags: TcpFlags::SYN }]);
}

#[test]
fn syn_ack_is_retransmitted_with_backoff_then_the_entry_expires() {
    let mut h = syn_received();
    let mut waits = Vec::new();
    let mut last = h.now;
    while h.advance_to_next_timer(Duration::from_secs(600)) {
        let sent = h.sent();
        if sent.is_empty() {
            continue;
        }
        assert_eq!(sent[0].flags, TcpFlags::SYN, "a SYN-ACK again");
        waits.push((h.now - last).as_secs());
        last = h.now;
    }
    // Initial RTO 1 s, doubling, synack_retries = 5; then the entry expires.
    assert_eq!(waits, [1, 2, 4, 8, 16]);
    assert_eq!(h.stack.connection_count(), 0);
    assert_eq!(h.stack.syn_queue_len(h.listener.unwrap()), 0);
    assert!(h.take_events().is_empty());
}

#[test]
fn full_accept_queue_drops_the_final_ack_until_the_application_accepts() {
    let mut cfg = config();
    cfg.accept_backlog = 1;
    let mut h = Harness::listening(cfg);
    let listener = h.listener.unwrap();
    // The first client fills the accept queue.
    h.stack.set_next_iss(Seq(LOCAL_SEQ));
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN);
    h.sent();
    send!(h, seq: REMOTE_SEQ + 1, ack: Some(LOCAL_SEQ + 1));
    assert_eq!(h.stack.accept_queue_len(listener), 1);
    // The second completes its handshake, but its ACK is dropped.
    let second = 49501;
    h.stack.set_next_iss(Seq(LOCAL_SEQ + 5000));
    send!(h, src_port: second, seq: REMOTE_SEQ, flags: TcpFlags::SYN);
    recv!(h, [{ seq: LOCAL_SEQ + 5000, ack: Some(REMOTE_SEQ + 1), flags: TcpFlags::SYN }]);
    send!(h, src_port: second, seq: REMOTE_SEQ + 1, ack: Some(LOCAL_SEQ + 5001));
    recv_nothing!(h);
    assert_eq!(h.stack.stats().accept_queue_overflows, 1);
    assert_eq!(h.stack.syn_queue_len(listener), 1, "still half-open");
    // Once the application accepts, the client's next ACK gets in.
    assert!(h.stack.accept(listener, TAG).is_some());
    send!(h, src_port: second, seq: REMOTE_SEQ + 1, ack: Some(LOCAL_SEQ + 5001), payload: b"hi");
    let id = h
        .stack
        .accept(listener, TAG)
        .expect("second connection accepted");
    assert_eq!(h.stack.tuple(id).unwrap().remote.port(), second);
}

#[test]
fn peer_mss_bounds_our_segments() {
    let mut h = Harness::listening(config());
    h.stack.set_next_iss(Seq(LOCAL_SEQ));
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN, options: TcpOptions { mss: Some(536), ..SEG.options });
    h.sent();
    send!(h, seq: REMOTE_SEQ + 1, ack: Some(LOCAL_SEQ + 1));
    let id = h.stack.accept(h.listener.unwrap(), TAG).unwrap();
    h.app_send(id, &[7u8; 1000]);
    let sent = h.sent();
    assert_eq!(
        sent.iter().map(|s| s.payload.len()).collect::<Vec<_>>(),
        [536, 464]
    );
}

// =========================================================================
// SYN-SENT: §3.10.7.3
// =========================================================================

fn syn_sent() -> (Harness, lastack::tcp::ConnId) {
    let mut h = Harness::new(config());
    h.stack.set_next_iss(Seq(LOCAL_SEQ));
    let id = h
        .stack
        .connect(h.now, LOCAL, REMOTE, Route::default(), TAG)
        .unwrap();
    let sent = recv!(h, [{ seq: LOCAL_SEQ, flags: TcpFlags::SYN }]);
    assert_eq!(sent[0].options.mss, Some(1460));
    (h, id)
}

#[test]
fn syn_sent_syn_ack_establishes() {
    let (mut h, id) = syn_sent();
    send!(h, seq: REMOTE_SEQ, ack: Some(LOCAL_SEQ + 1), flags: TcpFlags::SYN);
    recv!(h, [{ seq: LOCAL_SEQ + 1, ack: Some(REMOTE_SEQ + 1) }]);
    assert_eq!(h.take_events(), [Event::Connected(id, TAG)]);
    assert_eq!(h.stack.state(id), Some(State::Established));
}

#[test]
fn syn_sent_rst_with_acceptable_ack_is_a_refusal() {
    let (mut h, id) = syn_sent();
    send!(h, seq: 0, ack: Some(LOCAL_SEQ + 1), flags: TcpFlags::RST);
    recv_nothing!(h);
    assert_eq!(
        h.take_events(),
        [Event::Reset(id, TAG, ResetCause::Refused)]
    );
    assert_eq!(h.stack.state(id), None);
}

#[test]
fn syn_sent_rst_without_acceptable_ack_is_ignored() {
    let (mut h, id) = syn_sent();
    send!(h, seq: 0, ack: Some(LOCAL_SEQ + 99), flags: TcpFlags::RST);
    recv_nothing!(h);
    assert_eq!(h.stack.state(id), Some(State::SynSent));
}

#[test]
fn syn_sent_bad_ack_gets_rst() {
    let (mut h, id) = syn_sent();
    send!(h, seq: REMOTE_SEQ, ack: Some(LOCAL_SEQ + 5), flags: TcpFlags::SYN);
    recv!(h, [{ seq: LOCAL_SEQ + 5, flags: TcpFlags::RST }]);
    assert_eq!(h.stack.state(id), Some(State::SynSent));
}

#[test]
fn simultaneous_open_goes_through_syn_received() {
    let (mut h, id) = syn_sent();
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN);
    recv!(h, [{ seq: LOCAL_SEQ, ack: Some(REMOTE_SEQ + 1), flags: TcpFlags::SYN }]);
    assert_eq!(h.stack.state(id), Some(State::SynReceived));
    send!(h, seq: REMOTE_SEQ + 1, ack: Some(LOCAL_SEQ + 1));
    assert_eq!(h.stack.state(id), Some(State::Established));
}

#[test]
fn syn_is_retransmitted_until_the_limit_then_reset() {
    let (mut h, id) = syn_sent();
    let mut resent = 0;
    while h.advance_to_next_timer(Duration::from_secs(10_000)) {
        resent += h.sent().iter().filter(|s| s.flags == TcpFlags::SYN).count();
    }
    assert_eq!(resent, usize::from(config().max_retransmissions));
    assert_eq!(
        h.take_events(),
        [Event::Reset(id, TAG, ResetCause::Timeout)]
    );
}

#[test]
fn close_in_syn_sent_deletes_the_connection() {
    let (mut h, id) = syn_sent();
    h.stack.close(h.now, id).unwrap();
    recv_nothing!(h);
    assert_eq!(h.stack.connection_count(), 0, "§3.10.4: SYN-SENT -> CLOSED");
    assert_eq!(h.stack.slots_in_use(), 0);
    // A late SYN-ACK finds no connection and is refused.
    send!(h, seq: REMOTE_SEQ, ack: Some(LOCAL_SEQ + 1), flags: TcpFlags::SYN);
    recv!(h, [{ seq: LOCAL_SEQ + 1, flags: TcpFlags::RST }]);
}
