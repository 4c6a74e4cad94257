//! The TCP engine end to end: two stacks in the deterministic simulation
//! (`lastack::tcp::sim`), over links with loss, duplication, reordering and
//! delay. Every segment crosses as bytes with checksums verified.

use std::time::Duration;

use lastack::tcp::sim::{client_addr, server_addr, LinkConfig, Pair, Side};
use lastack::tcp::{ConnId, Event, Instant, Route, State, TcpConfig};

/// The byte at stream offset `i` of the stream from `side`.
fn pattern(side: Side, i: usize) -> u8 {
    let salt = if side == Side::A { 0x3d } else { 0xa7 };
    ((i * 131 + i / 251) as u8) ^ salt
}

/// One connection's progress on one side.
#[derive(Default, Debug)]
struct End {
    conn: Option<ConnId>,
    sent: usize,
    received: usize,
    shut: bool,
    peer_closed: bool,
    closed: bool,
    reset: bool,
}

/// Drives one connection A → B, each side sending `len[side]` bytes then
/// shutting down, both checking every byte they receive.
fn transfer(link: LinkConfig, seed: u64, a_len: usize, b_len: usize) -> Pair {
    let mut pair = Pair::new(TcpConfig::default(), TcpConfig::default(), link, seed);
    let listener = pair.b.listen(server_addr(80)).unwrap();
    let now = pair.now;
    let conn = pair
        .a
        .connect(now, client_addr(40000), server_addr(80), Route::default())
        .unwrap();
    let mut ends = [
        End {
            conn: Some(conn),
            ..Default::default()
        },
        End::default(),
    ];
    let lens = [a_len, b_len];
    let deadline = pair.now + Duration::from_secs(3600);
    let mut chunk = vec![0u8; 65536];
    let mut last_info = [None, None];
    loop {
        for side in [Side::A, Side::B] {
            if let Some(id) = ends[side as usize].conn {
                if let Some(info) = pair.stack(side).info(id) {
                    last_info[side as usize] = Some(info);
                }
            }
        }
        pair.settle(|side, stack, event, _| {
            let end = &mut ends[side as usize];
            match event {
                Event::Acceptable(l) => {
                    assert_eq!(l, listener);
                    end.conn = stack.accept(l);
                }
                Event::PeerClosed(_) => end.peer_closed = true,
                Event::Closed(_) => end.closed = true,
                Event::Reset(_, cause) => panic!(
                    "{side:?} reset: {cause:?}\nA: {:?}\nB: {:?}",
                    last_info[0], last_info[1]
                ),
                _ => {}
            }
        });
        // Pump: read everything, send what fits, shut down when done.
        let now = pair.now;
        for side in [Side::A, Side::B] {
            let end = &mut ends[side as usize];
            let Some(id) = end.conn else { continue };
            let stack = pair.stack(side);
            loop {
                let n = stack.recv(now, id, &mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                for (k, &byte) in chunk[..n].iter().enumerate() {
                    assert_eq!(
                        byte,
                        pattern(side.other(), end.received + k),
                        "{side:?} at {}",
                        end.received + k
                    );
                }
                end.received += n;
            }
            let state = stack.state(id);
            if matches!(state, Some(State::Established | State::CloseWait))
                && end.sent < lens[side as usize]
            {
                let want = (lens[side as usize] - end.sent).min(chunk.len());
                for k in 0..want {
                    chunk[k] = pattern(side, end.sent + k);
                }
                end.sent += stack.send(now, id, &chunk[..want]).unwrap();
            }
            if end.sent == lens[side as usize]
                && !end.shut
                && state.is_some_and(|s| s != State::SynSent && s != State::SynReceived)
            {
                stack.shutdown(now, id).unwrap();
                end.shut = true;
            }
        }
        // Once a side's connection finished and everything was read,
        // release it.
        for side in [Side::A, Side::B] {
            let end = &mut ends[side as usize];
            if end.closed && end.received == lens[side.other() as usize] {
                if let Some(id) = end.conn.take() {
                    pair.stack(side).close(now, id).unwrap();
                }
            }
        }
        let done = ends.iter().all(|e| e.closed && e.conn.is_none())
            && pair.a.slots_in_use() == 0
            && pair.b.slots_in_use() == 0;
        if done {
            break;
        }
        assert!(
            pair.now < deadline,
            "stuck: {ends:?} a={:?} b={:?}",
            pair.a.stats(),
            pair.b.stats()
        );
        if !pair.step(|_, _, _, _| {}) {
            let states = (
                ends[0].conn.and_then(|c| pair.a.state(c)),
                ends[1].conn.and_then(|c| pair.b.state(c)),
            );
            panic!(
                "nothing left to happen but not done: {ends:?} {states:?} tw=({}, {})",
                pair.a.time_wait_count(),
                pair.b.time_wait_count()
            );
        }
    }
    assert_eq!(ends[0].received, b_len);
    assert_eq!(ends[1].received, a_len);
    assert!(ends.iter().all(|e| e.peer_closed && !e.reset));
    pair
}

#[test]
fn one_mebibyte_each_way_on_a_perfect_link() {
    let pair = transfer(
        LinkConfig::with_delay(Duration::from_millis(1)),
        1,
        1 << 20,
        1 << 20,
    );
    assert_eq!(pair.lost, 0);
}

/// 1 MiB and 16 MiB each way at 0, 1, 5 and 20 % loss (with duplication
/// and reordering on the lossy links), byte-exact, every connection closed
/// and released.
#[test]
fn transfers_are_byte_exact_at_every_loss_rate() {
    for (percent, size) in [
        (0, 1 << 20),
        (1, 1 << 20),
        (5, 1 << 20),
        (20, 1 << 20),
        (0, 16 << 20),
        (1, 16 << 20),
        (5, 16 << 20),
        (20, 16 << 20),
    ] {
        let link = if percent == 0 {
            LinkConfig::with_delay(Duration::from_millis(2))
        } else {
            LinkConfig::lossy(percent)
        };
        let started = std::time::Instant::now();
        let pair = transfer(link, 7 + u64::from(percent), size, size);
        println!(
            "{percent:>2}% loss, {:>2} MiB each way: {:.1}s virtual, {} segments lost, {} retransmitted, {:.1}s real",
            size >> 20,
            (pair.now - Instant::from_millis(1_000_000)).as_secs_f64(),
            pair.lost,
            pair.a.stats().retransmitted_segments + pair.b.stats().retransmitted_segments,
            started.elapsed().as_secs_f64()
        );
        if percent > 0 {
            assert!(pair.lost > 0, "the link lost nothing at {percent}%");
        }
    }
}
