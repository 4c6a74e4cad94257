//! Path MTU discovery from ICMP "fragmentation needed" (RFC 1191), with
//! RFC 5927's checks: only a quote of data in flight is believed, and no
//! MTU below the floor; a believed one lowers the MSS and resends the
//! flight in segments that fit, without cutting the window.

use crate::harness::*;
use lastack::tcp::IcmpOutcome;
use lastack::wire::TcpFlags;

const A: u32 = REMOTE_SEQ + 1; // the peer's next sequence number
const L: u32 = LOCAL_SEQ + 1; // ours
const MSS: u32 = 1460;

/// Established (MSS 1460, no options), three full segments sent; returns
/// them as sent.
fn three_segments_in_flight() -> (Harness, lastack::tcp::ConnId, Vec<Sent>) {
    let (mut h, id) = Harness::established(config());
    h.app_send(id, &[7u8; 3 * MSS as usize]);
    let sent = h.sent();
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|s| s.bytes.len() == 1500));
    (h, id, sent)
}

#[test]
fn a_believed_fragmentation_needed_lowers_the_mss_and_resends_the_flight() {
    let (mut h, id, sent) = three_segments_in_flight();
    let (cwnd, ssthresh) = (
        h.stack.info(id).unwrap().cwnd,
        h.stack.info(id).unwrap().ssthresh,
    );
    h.icmp_too_big(&sent[0].bytes, 1280);
    let info = h.stack.info(id).unwrap();
    assert_eq!(info.mss, 1240, "MTU 1280 less 40 bytes of headers");
    assert_eq!(
        (info.cwnd, info.ssthresh),
        (cwnd, ssthresh),
        "not congestion"
    );
    let resent = h.sent();
    let starts: Vec<u32> = resent.iter().map(|s| s.seq).collect();
    assert_eq!(starts, [L, L + 1240, L + 2480, L + 3720]);
    assert!(resent.iter().all(|s| s.bytes.len() <= 1280));
    assert_eq!(resent[3].payload.len(), 3 * 1460 - 3 * 1240);
    assert_eq!(resent[3].flags, TcpFlags::PSH);
    assert_eq!(h.stack.stats().pmtu_reductions, 1);
    // The messages about the other two segments change nothing more.
    h.icmp_too_big(&sent[1].bytes, 1280);
    h.icmp_too_big(&sent[2].bytes, 1280);
    recv_nothing!(h);
    assert_eq!(h.stack.stats().pmtu_reductions, 1);
    assert_eq!(h.stack.stats().icmp_too_big_received, 3);
    // New data goes in the smaller segments.
    send!(h, seq: A, ack: Some(L + 3 * MSS));
    h.app_send(id, &[8u8; 2000]);
    let sent = h.sent();
    assert_eq!(sent[0].payload.len(), 1240);
}

#[test]
fn a_quote_of_data_not_in_flight_is_ignored() {
    let (mut h, id, sent) = three_segments_in_flight();
    // Acknowledged already: stale.
    send!(h, seq: A, ack: Some(L + MSS));
    h.icmp_too_big(&sent[0].bytes, 1280);
    // Beyond what was sent: forged by someone guessing (RFC 5927 §4.1).
    let mut forged = sent[2].bytes.clone();
    let beyond = (L + 10 * MSS).to_be_bytes();
    forged[24..28].copy_from_slice(&beyond);
    h.icmp_too_big(&forged, 1280);
    // About a connection that does not exist (here: on a host with
    // several shards, the caller relays it to the others), not counted.
    let mut stranger = sent[1].bytes.clone();
    stranger[22..24].copy_from_slice(&1234u16.to_be_bytes());
    assert_eq!(h.icmp_too_big(&stranger, 1280), IcmpOutcome::NoConnection);
    recv_nothing!(h);
    assert_eq!(h.stack.info(id).unwrap().mss, 1460);
    let stats = h.stack.stats();
    assert_eq!(
        (stats.icmp_too_big_received, stats.icmp_too_big_ignored),
        (2, 2)
    );
    assert_eq!(stats.pmtu_reductions, 0);
}

#[test]
fn a_tiny_mtu_is_taken_as_the_floor_and_a_missing_one_as_the_plateau_below() {
    let (mut h, id, sent) = three_segments_in_flight();
    // RFC 5927 §7.2: 68 bytes would make every segment 28 bytes long.
    h.icmp_too_big(&sent[0].bytes, 68);
    assert_eq!(h.stack.info(id).unwrap().mss, 552 - 40);

    // A router older than RFC 1191 gives no MTU: the plateau below the
    // datagram's 1500 bytes is 1492 (RFC 1191 §7), and the next 1006.
    let (mut h, id, sent) = three_segments_in_flight();
    h.icmp_too_big(&sent[0].bytes, 0);
    assert_eq!(h.stack.info(id).unwrap().mss, 1492 - 40);
    let resent = h.sent();
    h.icmp_too_big(&resent[0].bytes, 0);
    assert_eq!(h.stack.info(id).unwrap().mss, 1006 - 40);

    // An MTU that fits what we send changes nothing.
    let (mut h, id, sent) = three_segments_in_flight();
    h.icmp_too_big(&sent[0].bytes, 1500);
    recv_nothing!(h);
    assert_eq!(h.stack.info(id).unwrap().mss, 1460);
}
