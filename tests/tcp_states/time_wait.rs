//! TIME-WAIT (RFC 9293 §3.10.7.4, RFC 6191, RFC 1337).

use std::time::Duration;

use crate::harness::*;
use lastack::tcp::Seq;
use lastack::wire::TcpFlags;

const A: u32 = REMOTE_SEQ + 1;
const L: u32 = LOCAL_SEQ + 1;

/// A connection we closed first, now in TIME-WAIT.
fn time_wait() -> Harness {
    let (mut h, id) = Harness::established(config());
    h.stack.close(h.now, id).unwrap();
    h.sent();
    send!(h, seq: A, ack: Some(L + 1), flags: TcpFlags::FIN);
    recv!(h, [{ seq: L + 1, ack: Some(A + 1) }]);
    assert_eq!(h.stack.time_wait_count(), 1);
    h
}

#[test]
fn a_retransmitted_fin_is_acked_again() {
    let mut h = time_wait();
    send!(h, seq: A, ack: Some(L + 1), flags: TcpFlags::FIN);
    recv!(h, [{ seq: L + 1, ack: Some(A + 1) }]);
}

#[test]
fn an_rst_does_not_end_time_wait() {
    let mut h = time_wait();
    send!(h, seq: A + 1, flags: TcpFlags::RST);
    recv_nothing!(h);
    assert_eq!(h.stack.time_wait_count(), 1, "RFC 1337");
}

#[test]
fn entries_expire_after_two_msl() {
    let mut h = time_wait();
    h.advance(config().time_wait - Duration::from_millis(1));
    assert_eq!(h.stack.time_wait_count(), 1);
    h.advance(Duration::from_millis(1));
    assert_eq!(h.stack.time_wait_count(), 0);
}

#[test]
fn a_new_syn_with_a_higher_sequence_reopens_the_tuple() {
    let mut h = time_wait();
    h.stack.set_next_iss(Seq(LOCAL_SEQ + 1_000_000));
    send!(h, seq: A + 100_000, flags: TcpFlags::SYN, options: MSS_1460);
    recv!(h, [{ seq: LOCAL_SEQ + 1_000_000, ack: Some(A + 100_001), flags: TcpFlags::SYN }]);
    assert_eq!(h.stack.time_wait_count(), 0);
    assert_eq!(h.stack.stats().time_wait_reopened, 1);
}

#[test]
fn an_old_syn_gets_an_ack_not_a_connection() {
    let mut h = time_wait();
    send!(h, seq: REMOTE_SEQ - 5, flags: TcpFlags::SYN);
    recv!(h, [{ seq: L + 1, ack: Some(A + 1) }]);
    assert_eq!(h.stack.time_wait_count(), 1);
    assert_eq!(h.stack.connection_count(), 0);
}

/// The table has a cap (Linux's `tcp_max_tw_buckets`): a connection that
/// closes first when it is full is freed without TIME-WAIT, and counted.
#[test]
fn a_full_time_wait_table_frees_the_next_connection_at_once() {
    let mut cfg = config();
    cfg.max_time_wait = 0;
    let (mut h, id) = Harness::established(cfg);
    h.stack.close(h.now, id).unwrap();
    h.sent();
    send!(h, seq: A, ack: Some(L + 1), flags: TcpFlags::FIN);
    recv!(h, [{ seq: L + 1, ack: Some(A + 1) }]);
    assert_eq!(h.stack.time_wait_count(), 0);
    assert_eq!(h.stack.connection_count(), 0);
    assert_eq!(h.stack.stats().time_wait_overflows, 1);
    assert_eq!(h.stack.stats().time_wait_entered, 0);
}
