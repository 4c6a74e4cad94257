//! SACK-based loss recovery (RFC 6675 on RFC 2018's option, RFC 2883
//! D-SACK): the scoreboard decides what is resent, in fast recovery and
//! after a timeout; what the peer holds is never sent again.

use std::time::Duration;

use crate::harness::*;
use lastack::wire::{SackBlocks, TcpFlags, TcpOptions};

const A: u32 = REMOTE_SEQ + 1; // the peer's next sequence number
const L: u32 = LOCAL_SEQ + 1; // ours
const MSS: u32 = 1460;

/// Passive open with SACK permitted on both sides, then ten full segments
/// (the initial window, RFC 6928) sent: segment `i` starts at `L + i·MSS`.
fn ten_segments_in_flight() -> (Harness, lastack::tcp::ConnId) {
    let (mut h, id) = Harness::sack_established(config(), MSS_1460);
    h.app_send(id, &[7u8; 10 * MSS as usize]);
    let flight: Vec<u32> = h.sent().iter().map(|s| s.seq).collect();
    assert_eq!(flight, (0..10).map(|i| L + i * MSS).collect::<Vec<_>>());
    (h, id)
}

/// An ACK of `ack` with these SACK blocks, first the most recent.
fn sack(h: &mut Harness, ack: u32, blocks: &[(u32, u32)]) {
    let mut sack_blocks = SackBlocks::default();
    for &(left, right) in blocks {
        sack_blocks.push(left, right);
    }
    let options = TcpOptions {
        sack_blocks,
        ..SEG.options
    };
    send!(h, seq: A, ack: Some(ack), options: options);
}

/// The receiver's view after receiving the segments in `got` (indices):
/// the cumulative ACK and its SACK blocks, the one holding `latest` first.
fn receiver_view(got: &[u32], latest: u32) -> (u32, Vec<(u32, u32)>) {
    let mut held = [false; 10];
    for &i in got {
        held[i as usize] = true;
    }
    let in_order = held.iter().take_while(|&&h| h).count() as u32;
    let mut ranges = Vec::new();
    let mut i = in_order;
    while i < 10 {
        if held[i as usize] {
            let start = i;
            while i < 10 && held[i as usize] {
                i += 1;
            }
            ranges.push((L + start * MSS, L + i * MSS));
        } else {
            i += 1;
        }
    }
    let latest_seq = L + latest * MSS;
    ranges.sort_by_key(|&(s, e)| !(s <= latest_seq && latest_seq < e));
    (L + in_order * MSS, ranges)
}

/// Runs the timers, losing whatever they send (the reordering window's
/// and the probe's retransmissions), until the `n`th retransmission
/// timeout; returns what that timeout sent.
fn until_timeout(h: &mut Harness, n: u64) -> Vec<Sent> {
    loop {
        assert!(h.advance_to_next_timer(Duration::from_secs(5)), "a timer");
        let sent = h.sent();
        if h.stack.stats().rto_expirations == n {
            return sent;
        }
    }
}

#[test]
fn fast_recovery_resends_only_the_holes() {
    let (mut h, _) = ten_segments_in_flight();
    // Segments 0 and 3 are lost; the others arrive one by one, each
    // answered with the receiver's SACK blocks. No time passes: whatever
    // is resent is resent by fast recovery, not by a timeout.
    let mut got = Vec::new();
    let mut resent = Vec::new();
    for i in [1, 2, 4, 5, 6, 7, 8, 9] {
        got.push(i);
        let (ack, blocks) = receiver_view(&got, i);
        sack(&mut h, ack, &blocks);
        resent.extend(h.sent().iter().map(|s| (s.seq, s.payload.len())));
    }
    assert_eq!(
        resent,
        [(L, 1460), (L + 3 * MSS, 1460)],
        "the two holes, each once, nothing the peer holds"
    );
    assert_eq!(h.stack.stats().fast_retransmits, 1, "one recovery");
    // The retransmissions arrive: everything is acknowledged.
    got.extend([0, 3]);
    sack(&mut h, L + 3 * MSS, &[(L + 4 * MSS, L + 10 * MSS)]);
    sack(&mut h, L + 10 * MSS, &[]);
    recv_nothing!(h);
    assert_eq!(h.stack.stats().retransmitted_bytes, 2 * 1460);
    assert_eq!(h.stack.stats().rto_expirations, 0);
}

#[test]
fn a_hole_is_lost_once_more_than_two_segments_are_sacked_above_it() {
    let (mut h, _) = ten_segments_in_flight();
    // RFC 6675 IsLost: (DupThresh − 1)·SMSS = 2 segments SACKed above
    // segment 0 are not enough, three are — in one ACK, no duplicate count.
    sack(&mut h, L, &[(L + MSS, L + 3 * MSS)]);
    recv_nothing!(h);
    sack(&mut h, L, &[(L + MSS, L + 4 * MSS)]);
    let resent = h.sent();
    assert_eq!(resent.len(), 1);
    assert_eq!((resent[0].seq, resent[0].payload.len()), (L, 1460));
    assert_eq!(h.stack.stats().fast_retransmits, 1);
}

#[test]
fn a_timeout_resends_around_what_the_peer_sacked() {
    let (mut h, _) = ten_segments_in_flight();
    // Segment 2 arrived, segments 0 and 1 did not, nor anything after 2;
    // one duplicate ACK is not enough for a fast retransmit.
    sack(&mut h, L, &[(L + 2 * MSS, L + 3 * MSS)]);
    recv_nothing!(h);
    let first = until_timeout(&mut h, 1);
    assert_eq!(first.len(), 1, "the loss window: one segment");
    assert_eq!(first[0].seq, L);
    // Segment 0 arrives; the window is two segments now: segment 1, then
    // segment 3 — segment 2, which the peer holds, is skipped (no
    // go-back-N over SACKed data, RFC 6675 §5.1).
    sack(&mut h, L + MSS, &[(L + 2 * MSS, L + 3 * MSS)]);
    let next: Vec<u32> = h.sent().iter().map(|s| s.seq).collect();
    assert_eq!(next, [L + MSS, L + 3 * MSS]);
    sack(&mut h, L + 3 * MSS, &[]);
    sack(&mut h, L + 4 * MSS, &[]);
    let rest: Vec<u32> = h.sent().iter().map(|s| s.seq).collect();
    assert!(!rest.contains(&(L + 2 * MSS)), "{rest:?}");
    assert_eq!(
        h.stack.stats().fast_retransmits,
        1,
        "the reordering window's, before the timeout; none inside the timeout's recovery"
    );
}

#[test]
fn a_second_timeout_forgets_the_scoreboard() {
    let (mut h, _) = ten_segments_in_flight();
    // The peer SACKed segment 2, then went silent: two timeouts in a row
    // for the same data. The peer may have reneged (RFC 2018 §8): after
    // the second, segment 2 is resent too.
    sack(&mut h, L, &[(L + 2 * MSS, L + 3 * MSS)]);
    assert_eq!(until_timeout(&mut h, 1)[0].seq, L);
    assert_eq!(until_timeout(&mut h, 2)[0].seq, L);
    sack(&mut h, L + 2 * MSS, &[]);
    let next: Vec<u32> = h.sent().iter().map(|s| s.seq).collect();
    assert_eq!(next[0], L + 2 * MSS, "{next:?}");
}

#[test]
fn a_dsack_is_counted_and_blocks_beyond_the_flight_ignored() {
    let (mut h, _) = ten_segments_in_flight();
    sack(&mut h, L + 10 * MSS, &[]);
    // A duplicate of segment 0 reached the peer: its first block lies
    // below the cumulative ACK (RFC 2883 §4.1).
    sack(&mut h, L + 10 * MSS, &[(L, L + MSS)]);
    assert_eq!(h.stack.stats().dsacks_received, 1);
    // A block for data never sent is not believed.
    sack(&mut h, L + 10 * MSS, &[(L + 20 * MSS, L + 21 * MSS)]);
    assert_eq!(h.stack.stats().dsacks_received, 1);
    recv_nothing!(h);
}

#[test]
fn a_tail_loss_is_found_by_a_probe_before_any_timeout() {
    let (mut h, _) = ten_segments_in_flight();
    // Segments 7, 8 and 9 are lost: the peer acknowledges 0–6, then
    // nothing more comes back to be SACKed.
    h.advance(Duration::from_millis(1));
    sack(&mut h, L + 7 * MSS, &[]);
    recv_nothing!(h);
    assert!(h.advance_to_next_timer(Duration::from_secs(5)));
    let probe = h.sent();
    assert_eq!(
        probe.iter().map(|s| s.seq).collect::<Vec<_>>(),
        [L + 9 * MSS],
        "the last segment, as the probe"
    );
    // Its SACK shows the two holes below it: lost, although only one
    // segment is SACKed above them (RFC 8985 §6.2) — resent at once.
    sack(&mut h, L + 7 * MSS, &[(L + 9 * MSS, L + 10 * MSS)]);
    let resent: Vec<u32> = h.sent().iter().map(|s| s.seq).collect();
    assert_eq!(resent, [L + 7 * MSS, L + 8 * MSS]);
    sack(&mut h, L + 10 * MSS, &[]);
    recv_nothing!(h);
    let stats = h.stack.stats();
    assert_eq!(
        (
            stats.loss_probes,
            stats.fast_retransmits,
            stats.rto_expirations
        ),
        (1, 1, 0)
    );
}

#[test]
fn a_lost_retransmission_is_found_without_a_timeout() {
    let (mut h, conn) = ten_segments_in_flight();
    // Segment 0 is lost; the others are SACKed: fast recovery resends it.
    sack(&mut h, L, &[(L + MSS, L + 10 * MSS)]);
    let resent = h.sent();
    assert_eq!(resent[0].seq, L);
    // The retransmission is lost too. A round trip later, new data sent
    // after it is SACKed while segment 0 is still missing: resent again.
    h.app_send(conn, &[1u8; 1460]);
    let new = h.sent();
    assert_eq!(
        new.iter().map(|s| s.seq).collect::<Vec<_>>(),
        [L + 10 * MSS]
    );
    h.advance(Duration::from_millis(5));
    sack(&mut h, L, &[(L + MSS, L + 11 * MSS)]);
    let again = h.sent();
    assert_eq!(again.first().map(|s| s.seq), Some(L), "{again:?}");
    let stats = h.stack.stats();
    assert_eq!((stats.lost_retransmissions, stats.rto_expirations), (1, 0));
}

#[test]
fn a_hole_is_lost_once_the_reordering_window_passes() {
    let (mut h, _) = ten_segments_in_flight();
    // One segment SACKed above a hole: not lost by RFC 6675's count, and
    // one duplicate ACK is not three. RACK's rule (RFC 8985 §6.2): once
    // the reordering window has passed, the hole is lost.
    h.advance(Duration::from_millis(1));
    sack(&mut h, L + 3 * MSS, &[(L + 4 * MSS, L + 5 * MSS)]);
    recv_nothing!(h);
    let before = h.now;
    assert!(h.advance_to_next_timer(Duration::from_secs(5)));
    assert!(
        h.now - before <= Duration::from_millis(2),
        "{:?}",
        h.now - before
    );
    let resent = h.sent();
    assert_eq!(
        resent.first().map(|s| s.seq),
        Some(L + 3 * MSS),
        "{resent:?}"
    );
    assert_eq!(h.stack.stats().fast_retransmits, 1);
}

#[test]
fn a_duplicate_segment_is_reported_with_a_dsack() {
    let (mut h, _) = ten_segments_in_flight();
    send!(h, seq: A, ack: Some(L + 10 * MSS), payload: b"0123456789");
    h.advance(Duration::from_millis(200));
    let ack = h.sent();
    assert!(ack[0].options.sack_blocks.as_slice().is_empty());
    // The peer resends it (its ACK was lost, say): all of it is old. The
    // ACK's first SACK block names it (RFC 2883 §4.1), once.
    send!(h, seq: A, ack: Some(L + 10 * MSS), payload: b"0123456789");
    let ack = h.sent();
    assert_eq!(ack.len(), 1);
    assert_eq!(ack[0].options.sack_blocks.as_slice(), [(A, A + 10)]);
    // A segment that overlaps what arrived: its old part is reported.
    send!(h, seq: A + 5, ack: Some(L + 10 * MSS), payload: b"56789abcde");
    h.advance(Duration::from_millis(200));
    let ack = h.sent();
    assert_eq!(ack[0].ack, Some(A + 15));
    assert_eq!(ack[0].options.sack_blocks.as_slice(), [(A + 5, A + 10)]);
    send!(h, seq: A + 15, ack: Some(L + 10 * MSS), payload: b"f");
    h.advance(Duration::from_millis(200));
    assert!(
        h.sent()[0].options.sack_blocks.as_slice().is_empty(),
        "once"
    );
}

#[test]
fn an_old_duplicate_still_delivers_its_acknowledgment() {
    let (mut h, id) = ten_segments_in_flight();
    send!(h, seq: A, ack: Some(L), payload: b"0123456789");
    h.advance(Duration::from_millis(200));
    h.sent();
    assert_eq!(h.stack.unacknowledged(id), 10 * MSS as usize);
    // The peer resends those ten bytes (our ACK of them was lost) with an
    // ACK of everything we sent: the data is old, the ACK is news (BSD's
    // tcp_input keeps processing such a segment for its ACK).
    send!(h, seq: A, ack: Some(L + 10 * MSS), payload: b"0123456789");
    assert_eq!(h.stack.unacknowledged(id), 0);
    assert_eq!(h.stack.stats().drop_out_of_window, 1, "its data is dropped");
    assert_eq!(h.app_recv(id, 100), b"0123456789", "once");
    let ack = h.sent();
    assert_eq!(ack[0].ack, Some(A + 10));
    // Its end 2^31 behind RCV.NXT (both "before" each other): not old,
    // not new — dropped (a fuzzer found the distance overflowing).
    send!(h, seq: A.wrapping_add(10 + (1 << 31)), ack: Some(L + 10 * MSS), payload: b"0123456789");
    assert_eq!(h.stack.stats().drop_out_of_window, 2);
    // An old duplicate's RST or SYN is not acted on.
    send!(h, seq: A, flags: TcpFlags::RST, payload: b"0123456789");
    assert_eq!(h.stack.state(id), Some(lastack::tcp::State::Established));
}
