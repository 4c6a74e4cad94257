//! ESTABLISHED: data, ACK policy, reassembly, windows, retransmission.

use std::time::Duration;

use crate::harness::*;
use lastack::tcp::{Event, ResetCause};
use lastack::wire::{TcpFlags, TcpOptions};

const A: u32 = REMOTE_SEQ + 1; // the peer's next sequence number
const L: u32 = LOCAL_SEQ + 1; // ours

fn established() -> (Harness, lastack::tcp::ConnId) {
    Harness::established(config())
}

static MSS_BYTES: [u8; 1460] = [0x42; 1460];

#[test]
fn data_is_acked_after_the_delayed_ack_time_and_readable() {
    let (mut h, id) = established();
    send!(h, seq: A, ack: Some(L), payload: b"abcdef");
    assert_eq!(h.take_events(), [Event::Readable(id, TAG)]);
    recv_nothing!(h);
    h.advance(Duration::from_millis(39));
    recv_nothing!(h);
    h.advance(Duration::from_millis(1));
    recv!(h, [{ seq: L, ack: Some(A + 6) }]);
    assert_eq!(h.app_recv(id, 100), b"abcdef");
}

#[test]
fn every_second_full_segment_is_acked_at_once() {
    let (mut h, _) = established();
    send!(h, seq: A, ack: Some(L), payload: &MSS_BYTES);
    recv_nothing!(h);
    send!(h, seq: A + 1460, ack: Some(L), payload: &MSS_BYTES);
    recv!(h, [{ seq: L, ack: Some(A + 2920) }]);
}

#[test]
fn out_of_order_data_is_acked_at_once_and_reassembled() {
    let (mut h, id) = established();
    send!(h, seq: A + 5, ack: Some(L), payload: b"fghij");
    recv!(h, [{ seq: L, ack: Some(A) }]);
    assert!(h.take_events().is_empty(), "nothing readable yet");
    send!(h, seq: A, ack: Some(L), payload: b"abcde");
    recv!(h, [{ seq: L, ack: Some(A + 10) }]);
    assert_eq!(h.app_recv(id, 100), b"abcdefghij");
}

#[test]
fn duplicate_data_is_not_delivered_twice() {
    let (mut h, id) = established();
    send!(h, seq: A, ack: Some(L), payload: b"abc");
    send!(h, seq: A, ack: Some(L), payload: b"abc");
    recv!(h, [{ seq: L, ack: Some(A + 3) }]);
    // Overlapping: "bcde" where "bc" is old.
    send!(h, seq: A + 1, ack: Some(L), payload: b"bcde");
    assert_eq!(h.app_recv(id, 100), b"abcde");
}

#[test]
fn sack_blocks_describe_out_of_order_data() {
    let (mut h, _) = Harness::sack_established(config(), SEG.options);
    send!(h, seq: A + 10, ack: Some(L), payload: b"xxxxx");
    send!(h, seq: A + 30, ack: Some(L), payload: b"yyyyy");
    let sent = h.sent();
    let last = sent.last().unwrap();
    assert_eq!(last.ack, Some(A));
    // RFC 2018 §4: the most recent block first.
    assert_eq!(
        last.options.sack_blocks.as_slice(),
        &[(A + 30, A + 35), (A + 10, A + 15)]
    );
}

#[test]
fn the_window_shrinks_with_unread_data_and_reopens_when_read() {
    let (mut h, id) = established();
    for i in 0..40u32 {
        send!(h, seq: A + i * 1460, ack: Some(L), payload: &MSS_BYTES);
    }
    let sent = h.sent();
    let window = sent.last().unwrap().window;
    assert_eq!(
        usize::from(window),
        65535 - 40 * 1460,
        "unread data closes the window"
    );
    // Reading it all reopens the window with an update.
    let read = h.app_recv(id, 65535);
    assert_eq!(read.len(), 40 * 1460);
    let update = h.sent();
    assert_eq!(update.len(), 1, "a window update");
    assert_eq!(update[0].window, 65535);
}

#[test]
fn data_beyond_the_window_is_refused_with_an_ack() {
    let (mut h, id) = established();
    send!(h, seq: A + 65535, ack: Some(L), payload: b"z");
    recv!(h, [{ seq: L, ack: Some(A) }]);
    assert_eq!(h.app_recv(id, 10), b"");
    assert_eq!(h.stack.stats().drop_out_of_window, 1);
}

#[test]
fn sent_data_is_segmented_by_the_mss_and_pushed_at_the_end() {
    let (mut h, id) = established();
    h.app_send(id, &[1u8; 3000]);
    let sent = h.sent();
    let lens: Vec<_> = sent
        .iter()
        .map(|s| (s.seq - L, s.payload.len(), s.flags))
        .collect();
    assert_eq!(
        lens,
        [
            (0, 1460, TcpFlags::empty()),
            (1460, 1460, TcpFlags::empty()),
            (2920, 80, TcpFlags::PSH)
        ]
    );
}

#[test]
fn the_initial_congestion_window_limits_the_first_flight() {
    let (mut h, id) = established();
    h.app_send(id, &[1u8; 20_000]);
    let first_flight: usize = h.sent().iter().map(|s| s.payload.len()).sum();
    assert_eq!(first_flight, 14600, "RFC 6928: ten segments of 1460");
}

#[test]
fn unacknowledged_data_is_retransmitted_with_backoff() {
    let (mut h, id) = established();
    h.app_send(id, b"hello");
    recv!(h, [{ seq: L, ack: Some(A), flags: TcpFlags::PSH, payload: b"hello" }]);
    let mut gaps = Vec::new();
    let mut last = h.now;
    for _ in 0..3 {
        assert!(h.advance_to_next_timer(Duration::from_secs(100)));
        recv!(h, [{ seq: L, ack: Some(A), flags: TcpFlags::PSH, payload: b"hello" }]);
        gaps.push((h.now - last).as_millis());
        last = h.now;
    }
    // The handshake's RTT sample (zero here) makes the RTO min_rto, 200 ms;
    // each timeout doubles it (RFC 6298 §2.4, §5.5).
    assert_eq!(gaps, [200, 400, 800]);
    send!(h, seq: A, ack: Some(L + 5));
    assert!(!h.advance_to_next_timer(Duration::from_secs(100)) || h.sent().is_empty());
    assert!(h.stack.stats().retransmitted_segments >= 3);
}

#[test]
fn the_retry_limit_resets_the_connection() {
    let mut cfg = config();
    cfg.max_retransmissions = 3;
    let (mut h, id) = Harness::established(cfg);
    h.app_send(id, b"hello");
    h.sent();
    let mut last = Vec::new();
    while h.advance_to_next_timer(Duration::from_secs(1000)) {
        last = h.sent();
    }
    assert_eq!(
        last.last().map(|s| s.flags),
        Some(TcpFlags::RST),
        "the peer is told"
    );
    assert_eq!(
        h.take_events(),
        [Event::Reset(id, TAG, ResetCause::Timeout)]
    );
    assert_eq!(h.stack.connection_count(), 0);
}

#[test]
fn three_duplicate_acks_trigger_a_fast_retransmit() {
    let (mut h, id) = established();
    // Open the congestion window with a few acknowledged segments first.
    h.app_send(id, &[9u8; 4380]);
    h.sent();
    send!(h, seq: A, ack: Some(L + 4380));
    h.app_send(id, &[8u8; 5840]);
    let flight = h.sent();
    assert!(flight.len() >= 4, "{} segments in flight", flight.len());
    let first = L + 4380;
    for _ in 0..2 {
        send!(h, seq: A, ack: Some(first));
        recv_nothing!(h);
    }
    send!(h, seq: A, ack: Some(first));
    let resent = h.sent();
    assert_eq!(
        resent[0].seq, first,
        "the missing segment again, before any timeout"
    );
    assert_eq!(resent[0].payload.len(), 1460);
    assert_eq!(h.stack.stats().fast_retransmits, 1);
}

#[test]
fn a_zero_window_is_probed_until_it_opens() {
    let (mut h, id) = established();
    send!(h, seq: A, ack: Some(L), window: 0);
    h.app_send(id, b"waiting");
    recv_nothing!(h);
    assert!(
        h.advance_to_next_timer(Duration::from_secs(10)),
        "persist timer armed"
    );
    let probe = h.sent();
    assert_eq!(probe.len(), 1);
    assert_eq!(probe[0].payload, b"w", "one byte past the window");
    send!(h, seq: A, ack: Some(L), window: 0);
    assert!(h.advance_to_next_timer(Duration::from_secs(10)));
    assert_eq!(h.sent().len(), 1, "probed again");
    send!(h, seq: A, ack: Some(L + 1), window: 1000);
    recv!(h, [{ seq: L + 1, ack: Some(A), flags: TcpFlags::PSH, payload: b"aiting" }]);
    assert!(h.stack.stats().zero_window_probes >= 2);
}

#[test]
fn window_updates_follow_the_newest_segment() {
    let (mut h, id) = established();
    send!(h, seq: A, ack: Some(L), window: 3000);
    h.app_send(id, &[5u8; 5000]);
    let sent = h.sent();
    assert_eq!(
        sent.iter().map(|s| s.payload.len()).sum::<usize>(),
        2920,
        "two full segments fit"
    );
    send!(h, seq: A, ack: Some(L + 2920), window: 4000);
    let sent = h.sent();
    assert_eq!(
        sent.iter().map(|s| s.payload.len()).sum::<usize>(),
        2080,
        "the rest"
    );
}

#[test]
fn a_small_window_is_filled_after_the_sws_override_timer() {
    let (mut h, id) = established();
    send!(h, seq: A, ack: Some(L), window: 100);
    h.app_send(id, &[5u8; 300]);
    // Sender SWS avoidance (§3.8.6.2.1): 100 bytes is neither a full
    // segment, nor all the data, nor half the largest window offered.
    recv_nothing!(h);
    assert!(
        h.advance_to_next_timer(Duration::from_secs(5)),
        "override timer armed"
    );
    let sent = h.sent();
    assert_eq!(sent.iter().map(|s| s.payload.len()).sum::<usize>(), 100);
}

#[test]
fn timestamps_are_echoed_and_old_ones_refused() {
    let mut cfg = config();
    cfg.timestamps = true;
    let mut h = Harness::listening(cfg);
    h.stack.set_next_iss(lastack::tcp::Seq(LOCAL_SEQ));
    let ts = |tsval, tsecr| TcpOptions {
        timestamps: Some(lastack::wire::Timestamps { tsval, tsecr }),
        ..SEG.options
    };
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN, options: ts(1000, 0));
    let syn_ack = h.sent();
    let ours = syn_ack[0]
        .options
        .timestamps
        .expect("timestamps negotiated");
    assert_eq!(ours.tsecr, 1000, "our SYN-ACK echoes the peer's TSval");
    send!(h, seq: A, ack: Some(L), options: ts(1001, ours.tsval));
    let id = h.stack.accept(h.listener.unwrap(), TAG).unwrap();
    send!(h, seq: A, ack: Some(L), payload: b"new", options: ts(1005, ours.tsval));
    h.advance(Duration::from_millis(40));
    let ack = h.sent();
    assert_eq!(
        ack[0].options.timestamps.unwrap().tsecr,
        1005,
        "TS.Recent updated"
    );
    // PAWS (RFC 7323 §5): an older TSval is a stale duplicate.
    send!(h, seq: A + 3, ack: Some(L), payload: b"old", options: ts(900, ours.tsval));
    assert_eq!(h.stack.stats().drop_paws, 1);
    assert_eq!(h.app_recv(id, 10), b"new");
}

#[test]
fn keepalive_probes_an_idle_peer_and_resets_a_dead_one() {
    let mut cfg = config();
    cfg.keepalive = Some(Duration::from_secs(10));
    let (mut h, id) = Harness::established(cfg);
    send!(h, seq: A, ack: Some(L), payload: b"x"); // activity arms the timer
    h.advance(Duration::from_millis(40));
    h.sent();
    h.take_events();
    h.advance(Duration::from_secs(10));
    // RFC 9293 §3.8.4: SEG.SEQ = SND.NXT - 1, no data.
    recv!(h, [{ seq: L - 1, ack: Some(A + 1) }]);
    send!(h, seq: A + 1, ack: Some(L)); // the peer answers: alive
    h.advance(Duration::from_secs(9));
    recv_nothing!(h);
    // Now silence: probes every second, then a reset after nine.
    let mut probes = 0;
    while h.advance_to_next_timer(Duration::from_secs(60)) {
        probes += h
            .sent()
            .iter()
            .filter(|s| s.flags == TcpFlags::empty() && s.payload.is_empty())
            .count();
    }
    assert_eq!(probes, 9);
    assert_eq!(
        h.take_events(),
        [Event::Reset(id, TAG, ResetCause::Timeout)]
    );
    assert_eq!(h.stack.stats().keepalive_probes, 10);
}

#[test]
fn acks_with_new_sack_blocks_count_as_duplicates_even_as_the_window_grows() {
    let mut cfg = config();
    cfg.sack = true;
    let mut h = Harness::listening(cfg);
    h.stack.set_next_iss(lastack::tcp::Seq(LOCAL_SEQ));
    let sack_ok = TcpOptions {
        mss: Some(1460),
        sack_permitted: true,
        ..SEG.options
    };
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN, options: sack_ok);
    h.sent();
    send!(h, seq: A, ack: Some(L));
    let id = h.stack.accept(h.listener.unwrap(), TAG).unwrap();
    h.app_send(id, &[3u8; 4380]);
    assert_eq!(h.sent().len(), 3);
    // The first segment is lost; the peer SACKs the others while its
    // window grows with every ACK (as Linux's autotuning does).
    for (i, right) in [(0u16, L + 2920), (1, L + 4380), (2, L + 4380)] {
        let mut blocks = lastack::wire::SackBlocks::default();
        blocks.push(L + 1460, right);
        let options = TcpOptions {
            sack_blocks: blocks,
            ..SEG.options
        };
        send!(h, seq: A, ack: Some(L), window: 60_000 + i * 1000, options: options);
    }
    // Two ACKs brought new SACK information (duplicates), the third
    // neither new SACK nor the same window: not yet three duplicates.
    assert_eq!(h.stack.stats().fast_retransmits, 0);
    let mut blocks = lastack::wire::SackBlocks::default();
    blocks.push(L + 1460, L + 4380);
    let options = TcpOptions {
        sack_blocks: blocks,
        ..SEG.options
    };
    send!(h, seq: A, ack: Some(L), window: 62_000, options: options);
    // Same window as the last one: a classic duplicate, the third.
    let resent = h.sent();
    assert_eq!(
        resent[0].seq, L,
        "the hole, retransmitted before any timeout"
    );
    assert_eq!(h.stack.stats().fast_retransmits, 1);
}

#[test]
fn segments_with_timestamps_and_sack_stay_within_the_mtu() {
    let mut cfg = config();
    cfg.timestamps = true;
    cfg.sack = true;
    let mut h = Harness::listening(cfg);
    h.stack.set_next_iss(lastack::tcp::Seq(LOCAL_SEQ));
    let ts = |tsval| lastack::wire::Timestamps { tsval, tsecr: 0 };
    let syn = TcpOptions {
        mss: Some(1460),
        sack_permitted: true,
        timestamps: Some(ts(1)),
        ..SEG.options
    };
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN, options: syn);
    h.sent();
    let echo = |tsecr| TcpOptions {
        timestamps: Some(lastack::wire::Timestamps { tsval: 2, tsecr }),
        ..SEG.options
    };
    send!(h, seq: A, ack: Some(L), options: echo(0));
    let id = h.stack.accept(h.listener.unwrap(), TAG).unwrap();
    // Out-of-order data so that SACK blocks are due, then a full flight.
    send!(h, seq: A + 100, ack: Some(L), payload: b"x", options: echo(0));
    send!(h, seq: A + 300, ack: Some(L), payload: b"y", options: echo(0));
    h.sent();
    h.app_send(id, &[1u8; 20_000]);
    for segment in h.sent() {
        let tcp_len = 20 + segment.options.buffer_len() + segment.payload.len();
        assert!(
            20 + tcp_len <= 1500,
            "a {}-byte IPv4 packet exceeds a 1500 MTU",
            20 + tcp_len
        );
        // Full data segments make room for the SACK blocks rather than
        // leave them out (RFC 2018 §3; Linux does the same): with data
        // both ways, the peer learns what is missing from them alone.
        assert_eq!(
            segment.options.sack_blocks.as_slice().len(),
            2,
            "{segment:?}"
        );
        assert_eq!(segment.payload.len(), 1460 - 12 - 20, "{segment:?}");
    }
    let first = h.stack.info(id).unwrap();
    assert_eq!(first.mss, 1460);
}

/// A passive open with window scaling (shift 7 from the peer, 256 KiB
/// receive buffer, so our shift is 3), up to ESTABLISHED and accepted.
fn scaled_established() -> (Harness, lastack::tcp::ConnId) {
    let mut cfg = config();
    cfg.window_scaling = true;
    cfg.recv_buffer = 256 * 1024;
    let mut h = Harness::listening(cfg);
    h.stack.set_next_iss(lastack::tcp::Seq(LOCAL_SEQ));
    let options = TcpOptions {
        window_scale: Some(7),
        ..MSS_1460
    };
    send!(h, seq: REMOTE_SEQ, flags: TcpFlags::SYN, options: options);
    let syn_ack = h.sent();
    assert_eq!(syn_ack[0].window, 65535, "a SYN's window is never scaled");
    assert_eq!(syn_ack[0].options.window_scale, Some(3));
    send!(h, seq: A, ack: Some(L));
    let id = h.stack.accept(h.listener.unwrap(), TAG).unwrap();
    h.take_events();
    (h, id)
}

/// With window scaling, the SYN-ACK could only announce 64 KiB; reading a
/// short request does not send a pure window update for the larger real
/// window (the peer has plenty left): the response carries it. One segment
/// per request/response instead of two, which a proxy pays per connection.
#[test]
fn the_first_scaled_window_rides_on_the_response() {
    let (mut h, id) = scaled_established();
    send!(h, seq: A, ack: Some(L), payload: b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(h.app_recv(id, 100).len(), 18);
    recv_nothing!(h);
    h.app_send(id, b"HTTP/1.1 200 OK\r\n\r\n");
    let reply = h.sent();
    assert_eq!(reply.len(), 1, "the response alone");
    assert_eq!(reply[0].ack, Some(A + 18));
    assert_eq!(
        usize::from(reply[0].window) << 3,
        lastack::tcp::config::INITIAL_BUFFER,
        "and it announces the scaled window (the initial one: it grows with use)"
    );
}

/// The rule above does not hold back an update the peer needs: once less
/// than four segments of the announced window are left, reading sends it.
#[test]
fn the_first_scaled_window_is_sent_at_once_when_the_peer_is_short() {
    let (mut h, id) = scaled_established();
    // 60 segments of 1,000 bytes (not full-sized, so none is ACKed at
    // once): 5,535 bytes of the 64 KiB left, under four segments.
    for i in 0..60u32 {
        send!(h, seq: A + i * 1000, ack: Some(L), payload: &MSS_BYTES[..1000]);
    }
    recv_nothing!(h);
    assert_eq!(h.app_recv(id, 256 * 1024).len(), 60_000);
    let update = h.sent();
    assert_eq!(update.len(), 1, "a window update at once");
    assert_eq!(update[0].ack, Some(A + 60_000));
    assert_eq!(
        usize::from(update[0].window) << 3,
        lastack::tcp::config::INITIAL_BUFFER
    );
}
