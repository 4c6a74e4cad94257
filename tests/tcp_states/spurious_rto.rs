//! A spurious retransmission timeout, detected by the timestamp echo (RFC
//! 3522, Eifel) and undone (RFC 4015): the original segment was only
//! late, so the window comes back and the resending walk stops.

use std::time::Duration;

use crate::harness::*;
use lastack::tcp::TcpConfig;
use lastack::wire::{TcpFlags, TcpOptions, Timestamps};

const A: u32 = REMOTE_SEQ + 1; // the peer's next sequence number
const L: u32 = LOCAL_SEQ + 1; // ours
const MSS: u32 = 1460 - 12; // timestamps take 12 bytes of each segment

/// The peer's timestamps option: its clock `tsval`, echoing `tsecr`.
fn ts(tsval: u32, tsecr: u32) -> TcpOptions {
    TcpOptions {
        timestamps: Some(Timestamps { tsval, tsecr }),
        ..SEG.options
    }
}

/// Established with timestamps, three full segments sent, then the
/// retransmission timeout and its resend of the first one. Returns the
/// TSval of the originals and of the retransmission, and the window
/// before the timeout.
fn timeout_after_three_segments() -> (Harness, lastack::tcp::ConnId, u32, u32, usize) {
    let mut h = Harness::listening(TcpConfig {
        timestamps: true,
        ..config()
    });
    h.stack.set_next_iss(lastack::tcp::Seq(LOCAL_SEQ));
    let syn = TcpOptions {
        mss: Some(1460),
        ..ts(100, 0)
    };
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN, options: syn);
    let ours = h.sent()[0].options.timestamps.unwrap().tsval;
    send!(h, seq: A, ack: Some(L), options: ts(101, ours));
    let id = h.stack.accept(h.listener.unwrap(), TAG).unwrap();
    h.take_events();
    h.app_send(id, &[7u8; 3 * MSS as usize]);
    let originals = h.sent();
    assert_eq!(originals.len(), 3);
    let original_tsval = originals[0].options.timestamps.unwrap().tsval;
    let cwnd = h.stack.info(id).unwrap().cwnd;
    h.advance(Duration::from_millis(150));
    assert!(h.advance_to_next_timer(Duration::from_secs(2)), "the RTO");
    assert_eq!(h.stack.stats().rto_expirations, 1);
    let resent = h.sent();
    assert_eq!(resent[0].seq, L, "the go-back walk starts at SND.UNA");
    let resent_tsval = resent[0].options.timestamps.unwrap().tsval;
    assert!(resent_tsval > original_tsval);
    assert!(
        h.stack.info(id).unwrap().cwnd < cwnd,
        "the window collapsed"
    );
    (h, id, original_tsval, resent_tsval, cwnd)
}

#[test]
fn an_ack_echoing_the_originals_timestamp_undoes_the_timeout() {
    let (mut h, id, original, _, cwnd) = timeout_after_three_segments();
    // The originals were only late: the peer's ACK of them echoes their
    // TSval, older than the retransmission's.
    send!(h, seq: A, ack: Some(L + 3 * MSS), options: ts(102, original));
    let stats = h.stack.stats();
    assert_eq!(stats.spurious_timeouts, 1);
    let info = h.stack.info(id).unwrap();
    assert!(
        info.cwnd >= cwnd,
        "the window came back: {} < {cwnd}",
        info.cwnd
    );
    assert!(!info.in_recovery);
    // More data goes at the restored window, none of it resent.
    h.app_send(id, &[8u8; 8 * MSS as usize]);
    let sent = h.sent();
    assert_eq!(sent.len(), 8, "a restored window sends eight at once");
    assert_eq!(sent[0].seq, L + 3 * MSS);
    assert_eq!(h.stack.stats().retransmitted_segments, 1);
}

#[test]
fn an_ack_echoing_the_retransmission_keeps_the_timeout() {
    let (mut h, id, _, resent, cwnd) = timeout_after_three_segments();
    send!(h, seq: A, ack: Some(L + MSS), options: ts(102, resent));
    assert_eq!(h.stack.stats().spurious_timeouts, 0);
    assert!(h.stack.info(id).unwrap().cwnd < cwnd, "a real loss");
    // The walk goes on with the rest.
    let sent = h.sent();
    assert_eq!(sent[0].seq, L + MSS);
}
