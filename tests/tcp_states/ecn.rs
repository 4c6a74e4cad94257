//! Explicit Congestion Notification (RFC 3168 §6.1): negotiation on the
//! SYNs (passive, active, through a SYN cookie), ECT(0) on new data only,
//! CE echoed with ECE until CWR, and the sender's answer to an echo — one
//! window cut per window of data, CWR on the next new data, nothing resent.

use std::time::Duration;

use crate::harness::*;
use lastack::tcp::{CookieMode, EcnMode, Event, Route, Seq, TcpConfig};
use lastack::wire::{Ecn, TcpFlags, TcpOptions, Timestamps};

const A: u32 = REMOTE_SEQ + 1; // the peer's next sequence number
const L: u32 = LOCAL_SEQ + 1; // ours
const MSS: u32 = 1460;

/// An ECN-setup SYN's flags (§6.1.1).
fn ecn_setup_syn() -> TcpFlags {
    TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR
}

/// Passive open whose SYN asks for ECN, with `config`; the SYN-ACK's
/// flags are returned with the accepted connection.
fn ecn_established(config: TcpConfig) -> (Harness, lastack::tcp::ConnId, TcpFlags) {
    let mut h = Harness::listening(config);
    h.stack.set_next_iss(Seq(LOCAL_SEQ));
    send!(h, seq: REMOTE_SEQ, flags: ecn_setup_syn(), options: MSS_1460);
    let syn_ack = h.sent();
    assert_eq!(syn_ack.len(), 1);
    assert_eq!(
        syn_ack[0].ecn,
        Ecn::NotEct,
        "§6.1.1: a SYN-ACK is never ECT"
    );
    send!(h, seq: A, ack: Some(L));
    let id = h.stack.accept(h.listener.unwrap(), TAG).expect("accepted");
    h.take_events();
    (h, id, syn_ack[0].flags)
}

#[test]
fn an_ecn_setup_syn_is_answered_with_ece_and_new_data_is_ect() {
    let (mut h, id, syn_ack) = ecn_established(config());
    assert_eq!(
        syn_ack,
        TcpFlags::SYN | TcpFlags::ECE,
        "an ECN-setup SYN-ACK"
    );
    assert!(h.stack.info(id).unwrap().ecn);
    assert_eq!(h.stack.stats().ecn_negotiated, 1);
    h.app_send(id, b"hello");
    let sent = recv!(h, [{ seq: L, ack: Some(A), flags: TcpFlags::PSH, payload: b"hello" }]);
    assert_eq!(sent[0].ecn, Ecn::Ect0);
    // A pure ACK is never ECT (§6.1.4).
    send!(h, seq: A, ack: Some(L + 5), payload: b"x");
    h.advance(Duration::from_millis(40));
    let sent = recv!(h, [{ seq: L + 5, ack: Some(A + 1) }]);
    assert_eq!(sent[0].ecn, Ecn::NotEct);
}

#[test]
fn without_both_flags_or_with_ecn_off_the_syn_ack_declines() {
    // ECE alone is not an ECN-setup SYN (it would be one from a stack
    // that sets reserved bits at random).
    let mut h = Harness::listening(config());
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN | TcpFlags::ECE, options: MSS_1460);
    assert_eq!(h.sent()[0].flags, TcpFlags::SYN);

    let off = TcpConfig {
        ecn: EcnMode::Off,
        ..config()
    };
    let (mut h, id, syn_ack) = ecn_established(off);
    assert_eq!(syn_ack, TcpFlags::SYN);
    assert!(!h.stack.info(id).unwrap().ecn);
    h.app_send(id, b"hello");
    assert_eq!(h.sent()[0].ecn, Ecn::NotEct);
    // A CE mark on a connection without ECN is not echoed.
    send!(h, seq: A, ack: Some(L + 5), payload: b"x", ecn: Ecn::Ce);
    h.advance(Duration::from_millis(40));
    let sent = recv!(h, [{ seq: L + 5, ack: Some(A + 1) }]);
    assert_eq!(sent[0].flags, TcpFlags::empty());
    assert_eq!(h.stack.stats().ce_received, 0);
}

#[test]
fn a_ce_mark_is_echoed_at_once_and_until_the_peers_cwr() {
    let (mut h, _, _) = ecn_established(config());
    // CE: acknowledged at once, with ECE (§6.1.3).
    send!(h, seq: A, ack: Some(L), payload: b"a", ecn: Ecn::Ce);
    recv!(h, [{ seq: L, ack: Some(A + 1), flags: TcpFlags::ECE }]);
    assert_eq!(h.stack.stats().ce_received, 1);
    // Unmarked data: the delayed ACK still echoes.
    send!(h, seq: A + 1, ack: Some(L), payload: b"b", ecn: Ecn::Ect0);
    recv_nothing!(h);
    h.advance(Duration::from_millis(40));
    recv!(h, [{ seq: L, ack: Some(A + 2), flags: TcpFlags::ECE }]);
    // The peer's CWR ends the echo.
    send!(h, seq: A + 2, ack: Some(L), flags: TcpFlags::CWR, payload: b"c", ecn: Ecn::Ect0);
    h.advance(Duration::from_millis(40));
    recv!(h, [{ seq: L, ack: Some(A + 3), flags: TcpFlags::empty() }]);
    // CWR and CE on one segment: congestion again, echo again.
    send!(h, seq: A + 3, ack: Some(L), flags: TcpFlags::CWR, payload: b"d", ecn: Ecn::Ce);
    recv!(h, [{ seq: L, ack: Some(A + 4), flags: TcpFlags::ECE }]);
}

/// ECN negotiated, then ten full segments (the initial window) sent.
fn ten_segments_in_flight_with_ecn() -> (Harness, lastack::tcp::ConnId) {
    let (mut h, id, _) = ecn_established(config());
    h.app_send(id, &[7u8; 10 * MSS as usize]);
    let sent = h.sent();
    assert_eq!(sent.len(), 10);
    assert!(sent.iter().all(|s| s.ecn == Ecn::Ect0));
    (h, id)
}

#[test]
fn an_echo_cuts_the_window_once_per_window_and_the_next_data_carries_cwr() {
    let (mut h, id) = ten_segments_in_flight_with_ecn();
    // Two segments acknowledged with ECE: slow start grows the window by
    // them, then CUBIC's β = 0.7 cuts it (RFC 9438 §4.6).
    send!(h, seq: A, ack: Some(L + 2 * MSS), flags: TcpFlags::ECE);
    let info = h.stack.info(id).unwrap();
    let grown = 12 * MSS as usize;
    assert_eq!(info.cwnd, grown * 7 / 10);
    assert_eq!(info.ssthresh, grown * 7 / 10);
    assert!(!info.in_recovery, "nothing was lost");
    assert_eq!(h.stack.stats().ecn_window_reductions, 1);
    // Eight segments in flight fill the cut window (8.4 segments): the
    // next new data waits, then goes with CWR, once.
    h.app_send(id, &[8u8; 4 * MSS as usize]);
    recv_nothing!(h);
    send!(h, seq: A, ack: Some(L + 3 * MSS), flags: TcpFlags::ECE);
    assert_eq!(
        h.stack.stats().ecn_window_reductions,
        1,
        "the echo goes on until our CWR arrives: the same congestion"
    );
    let sent = h.sent();
    assert_eq!(sent.len(), 1, "one segment of room: {sent:#?}");
    assert_eq!(sent[0].seq, L + 10 * MSS);
    assert_eq!(sent[0].flags, TcpFlags::CWR);
    assert_eq!(sent[0].ecn, Ecn::Ect0);
    send!(h, seq: A, ack: Some(L + 4 * MSS));
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].flags, TcpFlags::empty(), "CWR once");
    assert_eq!(h.stack.stats().retransmitted_segments, 0);
    // Everything sent before the echo acknowledged: a new echo is a new
    // congestion event.
    send!(h, seq: A, ack: Some(L + 10 * MSS), flags: TcpFlags::ECE);
    assert_eq!(h.stack.stats().ecn_window_reductions, 2);
}

#[test]
fn an_echo_in_loss_recovery_cuts_nothing_more() {
    let (mut h, id) = ten_segments_in_flight_with_ecn();
    // Segment 0 lost: three duplicate ACKs start a fast recovery.
    for _ in 0..3 {
        send!(h, seq: A, ack: Some(L));
    }
    let info = h.stack.info(id).unwrap();
    assert!(info.in_recovery);
    let ssthresh = info.ssthresh;
    let sent = h.sent();
    assert_eq!(sent[0].seq, L, "the fast retransmission");
    assert_eq!(
        sent[0].ecn,
        Ecn::NotEct,
        "§6.1.5: a retransmission is never ECT"
    );
    send!(h, seq: A, ack: Some(L), flags: TcpFlags::ECE);
    assert_eq!(h.stack.info(id).unwrap().ssthresh, ssthresh);
    assert_eq!(h.stack.stats().ecn_window_reductions, 0);
}

#[test]
fn a_window_probe_is_not_ect() {
    let (mut h, id, _) = ecn_established(config());
    // The peer's window closes with nothing in flight.
    send!(h, seq: A, ack: Some(L), window: 0);
    h.app_send(id, b"waiting");
    recv_nothing!(h);
    assert!(
        h.advance_to_next_timer(Duration::from_secs(5)),
        "persist timer"
    );
    let sent = recv!(h, [{ seq: L, ack: Some(A), flags: TcpFlags::empty(), payload: b"w" }]);
    assert_eq!(sent[0].ecn, Ecn::NotEct, "§6.1.6");
}

/// Our stack connecting to the peer with `config`; its SYN not yet read.
fn connecting(config: TcpConfig) -> (Harness, lastack::tcp::ConnId) {
    let mut h = Harness::new(config);
    h.stack.set_next_iss(Seq(LOCAL_SEQ));
    let id = h
        .stack
        .connect(h.now, LOCAL, REMOTE, Route::default(), TAG)
        .unwrap();
    (h, id)
}

#[test]
fn an_active_open_asks_for_ecn_once_and_uses_what_the_syn_ack_says() {
    let on = TcpConfig {
        ecn: EcnMode::On,
        ..config()
    };
    let (mut h, id) = connecting(on.clone());
    let syn = recv!(h, [{ seq: LOCAL_SEQ, flags: ecn_setup_syn() }]);
    assert_eq!(syn[0].ecn, Ecn::NotEct);
    send!(h, seq: REMOTE_SEQ, ack: Some(L), flags: TcpFlags::SYN | TcpFlags::ECE, options: MSS_1460);
    recv!(h, [{ seq: L, ack: Some(A) }]);
    assert_eq!(h.take_events(), [Event::Connected(id, TAG)]);
    assert!(h.stack.info(id).unwrap().ecn);
    h.app_send(id, b"GET /");
    assert_eq!(h.sent()[0].ecn, Ecn::Ect0);

    // A SYN-ACK that does not say yes (ECE and CWR both: a reflecting
    // middlebox) leaves ECN off.
    let (mut h, id) = connecting(on.clone());
    h.sent();
    let reflected = TcpFlags::SYN | TcpFlags::ECE | TcpFlags::CWR;
    send!(h, seq: REMOTE_SEQ, ack: Some(L), flags: reflected, options: MSS_1460);
    assert!(!h.stack.info(id).unwrap().ecn);

    // The SYN's retransmission goes without (§6.1.1.1: something on the
    // path may drop ECN-setup SYNs), and ECN stays off.
    let (mut h, id) = connecting(on);
    recv!(h, [{ seq: LOCAL_SEQ, flags: ecn_setup_syn() }]);
    assert!(h.advance_to_next_timer(Duration::from_secs(5)));
    recv!(h, [{ seq: LOCAL_SEQ, flags: TcpFlags::SYN }]);
    send!(h, seq: REMOTE_SEQ, ack: Some(L), flags: TcpFlags::SYN | TcpFlags::ECE, options: MSS_1460);
    assert!(!h.stack.info(id).unwrap().ecn);

    // The default ("accept") does not ask.
    let mut h = Harness::new(config());
    h.stack
        .connect(h.now, LOCAL, REMOTE, Route::default(), TAG)
        .unwrap();
    assert_eq!(h.sent()[0].flags, TcpFlags::SYN);
}

#[test]
fn ecn_survives_a_syn_cookie_through_the_timestamp() {
    let cookies = TcpConfig {
        syn_cookies: CookieMode::Always,
        timestamps: true,
        ..config()
    };
    let mut h = Harness::listening(cookies);
    let options = TcpOptions {
        timestamps: Some(Timestamps {
            tsval: 5555,
            tsecr: 0,
        }),
        ..MSS_1460
    };
    send!(h, seq: REMOTE_SEQ, flags: ecn_setup_syn(), options: options);
    let syn_ack = h.sent();
    assert_eq!(syn_ack[0].flags, TcpFlags::SYN | TcpFlags::ECE);
    assert_eq!(h.stack.connection_count(), 0, "no state kept");
    let tsval = syn_ack[0].options.timestamps.unwrap().tsval;
    let echo = TcpOptions {
        timestamps: Some(Timestamps {
            tsval: 5556,
            tsecr: tsval,
        }),
        ..SEG.options
    };
    let cookie = syn_ack[0].seq;
    send!(h, seq: A, ack: Some(cookie.wrapping_add(1)), options: echo);
    let id = h.stack.accept(h.listener.unwrap(), TAG).expect("rebuilt");
    assert!(h.stack.info(id).unwrap().ecn);
    h.app_send(id, b"hi");
    assert_eq!(h.sent()[0].ecn, Ecn::Ect0);

    // Without timestamps a cookie cannot carry it: declined.
    let mut h = Harness::listening(TcpConfig {
        syn_cookies: CookieMode::Always,
        ..config()
    });
    send!(h, seq: REMOTE_SEQ, flags: ecn_setup_syn(), options: MSS_1460);
    assert_eq!(h.sent()[0].flags, TcpFlags::SYN);
}
