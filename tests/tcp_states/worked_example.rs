//! The worked example from the project seeds: client ISN 69, server ISN 420.
//! SYN-ACK acks 70, the client ACKs 421; 30 bytes at 70 are acked with 100;
//! 5 bytes at 100 with 105; the server's 10 bytes at 421 with 431; then the
//! close with the FINs at 105 (client) and 431 (server) — four segments
//! when lastack closes first; three when the client does and lastack's FIN
//! carries the ACK of the client's (within the delayed-ACK time).

use std::time::Duration;

use crate::harness::*;
use lastack::tcp::{Event, Route, Seq, State};
use lastack::wire::TcpFlags;

const DATA30: &[u8] = b"012345678901234567890123456789";

/// lastack is the server (ISN 420); the hand-played client closes first.
#[test]
fn lastack_as_server_client_closes_first() {
    let mut h = Harness::listening(config());
    h.stack.set_next_iss(Seq(420));
    send!(h, seq: 69, flags: TcpFlags::SYN);
    recv!(h, [{ seq: 420, ack: Some(70), flags: TcpFlags::SYN }]);
    send!(h, seq: 70, ack: Some(421));
    let id = h.stack.accept(h.listener.unwrap(), TAG).unwrap();

    send!(h, seq: 70, ack: Some(421), payload: DATA30);
    recv_nothing!(h); // delayed ACK
    h.advance(Duration::from_millis(40));
    recv!(h, [{ seq: 421, ack: Some(100) }]);
    assert_eq!(h.app_recv(id, 100), DATA30);

    send!(h, seq: 100, ack: Some(421), payload: b"abcde");
    h.advance(Duration::from_millis(40));
    recv!(h, [{ seq: 421, ack: Some(105) }]);
    assert_eq!(h.app_recv(id, 100), b"abcde");

    h.app_send(id, b"0123456789");
    recv!(h, [{ seq: 421, ack: Some(105), flags: TcpFlags::PSH, payload: b"0123456789" }]);
    send!(h, seq: 105, ack: Some(431));

    // The client closes first: FIN at 105.
    send!(h, seq: 105, ack: Some(431), flags: TcpFlags::FIN);
    recv_nothing!(h); // its ACK waits for our FIN (delayed-ACK time)
    assert_eq!(h.stack.state(id), Some(State::CloseWait));
    assert!(h.take_events().contains(&Event::PeerClosed(id, TAG)));
    h.stack.close(h.now, id).unwrap();
    recv!(h, [{ seq: 431, ack: Some(106), flags: TcpFlags::FIN }]);
    assert_eq!(h.stack.state(id), Some(State::LastAck));
    send!(h, seq: 106, ack: Some(432));
    recv_nothing!(h);
    assert_eq!(h.stack.connection_count(), 0, "CLOSED");
    assert_eq!(
        h.stack.time_wait_count(),
        0,
        "no TIME-WAIT on the side that closed last"
    );
}

/// lastack is the client (ISN 69) and closes first: FIN-WAIT-1, FIN-WAIT-2,
/// TIME-WAIT.
#[test]
fn lastack_as_client_closes_first() {
    let mut h = Harness::new(config());
    h.stack.set_next_iss(Seq(69));
    let id = h
        .stack
        .connect(h.now, LOCAL, REMOTE, Route::default(), TAG)
        .unwrap();
    recv!(h, [{ seq: 69, flags: TcpFlags::SYN }]);
    send!(h, seq: 420, ack: Some(70), flags: TcpFlags::SYN);
    recv!(h, [{ seq: 70, ack: Some(421) }]);

    h.app_send(id, DATA30);
    recv!(h, [{ seq: 70, ack: Some(421), flags: TcpFlags::PSH, payload: DATA30 }]);
    send!(h, seq: 421, ack: Some(100));
    h.app_send(id, b"abcde");
    recv!(h, [{ seq: 100, ack: Some(421), flags: TcpFlags::PSH, payload: b"abcde" }]);
    send!(h, seq: 421, ack: Some(105));

    send!(h, seq: 421, ack: Some(105), payload: b"0123456789");
    h.advance(Duration::from_millis(40));
    recv!(h, [{ seq: 105, ack: Some(431) }]);

    h.stack.close(h.now, id).unwrap();
    recv!(h, [{ seq: 105, ack: Some(431), flags: TcpFlags::FIN }]);
    send!(h, seq: 431, ack: Some(106));
    assert_eq!(h.stack.state(id), Some(State::FinWait2));
    send!(h, seq: 431, ack: Some(106), flags: TcpFlags::FIN);
    recv!(h, [{ seq: 106, ack: Some(432) }]);
    assert_eq!(
        h.stack.time_wait_count(),
        1,
        "TIME-WAIT on the side that closed first"
    );
    assert_eq!(h.stack.connection_count(), 0);
}
